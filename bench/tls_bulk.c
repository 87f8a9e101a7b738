/*
 * jw-tlsbulk: the machine's TLS bulk throughput, the ceiling that output
 * streaming is held to. One TLS 1.3 connection over loopback with the
 * benchmark's certificates (client certificate required, as teleportd
 * does), TLS_AES_256_GCM_SHA384, blocking sockets, the server writing
 * --bytes in 64 KiB SSL_write calls (16 KiB records) and the client
 * reading them. The server runs in this process, the client in a child;
 * each can be pinned to a CPU. Prints one JSON object.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WRITE_SIZE (64 * 1024)

typedef struct {
  const char *cacert, *cert, *key, *client_cert, *client_key;
  uint64_t bytes;
  int server_cpu, client_cpu;
} opts_t;

static void die_ssl(const char *what) {
  fprintf(stderr, "jw-tlsbulk: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static void pin(int cpu) {
  if (cpu < 0)
    return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0)
    fprintf(stderr, "jw-tlsbulk: cannot pin to CPU %d: %s\n", cpu,
            strerror(errno));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static SSL_CTX *make_ctx(int server, const char *cacert, const char *cert,
                         const char *key) {
  SSL_CTX *ctx =
      SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == NULL)
    die_ssl("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384") != 1)
    die_ssl("SSL_CTX_set_ciphersuites");
  if (SSL_CTX_load_verify_locations(ctx, cacert, NULL) != 1)
    die_ssl("loading the CA");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
    die_ssl("loading the certificate");
  SSL_CTX_set_verify(ctx,
                     server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                            : SSL_VERIFY_PEER,
                     NULL);
  /* No session tickets: nothing but the bulk transfer on the wire. */
  if (server)
    SSL_CTX_set_num_tickets(ctx, 0);
  return ctx;
}

static int run_client(const opts_t *o, int port) {
  pin(o->client_cpu);
  SSL_CTX *ctx = make_ctx(0, o->cacert, o->client_cert, o->client_key);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    perror("jw-tlsbulk: connect");
    return 1;
  }
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set1_host(ssl, "127.0.0.1");
  if (SSL_connect(ssl) != 1)
    die_ssl("SSL_connect");
  static uint8_t buf[WRITE_SIZE];
  uint64_t got = 0;
  while (got < o->bytes) {
    int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0)
      die_ssl("SSL_read");
    got += (uint64_t)n;
  }
  /* The acknowledgement stops the server's clock. */
  if (SSL_write(ssl, "k", 1) != 1)
    die_ssl("SSL_write");
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  return 0;
}

int main(int argc, char **argv) {
  opts_t o = {.bytes = 1ULL << 30, .server_cpu = -1, .client_cpu = -1};
  static const struct option longopts[] = {
      {"cacert", required_argument, NULL, 'a'},
      {"cert", required_argument, NULL, 'c'},
      {"key", required_argument, NULL, 'k'},
      {"client-cert", required_argument, NULL, 'C'},
      {"client-key", required_argument, NULL, 'K'},
      {"bytes", required_argument, NULL, 'b'},
      {"server-cpu", required_argument, NULL, 's'},
      {"client-cpu", required_argument, NULL, 'l'},
      {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'a':
      o.cacert = optarg;
      break;
    case 'c':
      o.cert = optarg;
      break;
    case 'k':
      o.key = optarg;
      break;
    case 'C':
      o.client_cert = optarg;
      break;
    case 'K':
      o.client_key = optarg;
      break;
    case 'b':
      o.bytes = strtoull(optarg, NULL, 10);
      break;
    case 's':
      o.server_cpu = atoi(optarg);
      break;
    case 'l':
      o.client_cpu = atoi(optarg);
      break;
    default:
      return 2;
    }
  }
  if (!o.cacert || !o.cert || !o.key || !o.client_cert || !o.client_key ||
      o.bytes == 0) {
    fprintf(stderr, "usage: jw-tlsbulk --cacert F --cert F --key F "
                    "--client-cert F --client-key F [--bytes N] "
                    "[--server-cpu N] [--client-cpu N]\n");
    return 2;
  }

  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t salen = sizeof(sa);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(lfd, 1) != 0 ||
      getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
    perror("jw-tlsbulk: listen");
    return 1;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("jw-tlsbulk: fork");
    return 1;
  }
  if (pid == 0) {
    close(lfd);
    _exit(run_client(&o, ntohs(sa.sin_port)));
  }

  pin(o.server_cpu);
  SSL_CTX *ctx = make_ctx(1, o.cacert, o.cert, o.key);
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) {
    perror("jw-tlsbulk: accept");
    return 1;
  }
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1)
    die_ssl("SSL_accept");
  static uint8_t buf[WRITE_SIZE];
  double t0 = now_s();
  uint64_t left = o.bytes;
  while (left > 0) {
    int n = left < sizeof(buf) ? (int)left : (int)sizeof(buf);
    int w = SSL_write(ssl, buf, n);
    if (w <= 0)
      die_ssl("SSL_write");
    left -= (uint64_t)w;
  }
  char ack;
  if (SSL_read(ssl, &ack, 1) != 1)
    die_ssl("SSL_read");
  double t1 = now_s();
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "jw-tlsbulk: the client failed\n");
    return 1;
  }
  printf("{\"bytes\":%llu,\"seconds\":%.6f,\"mib_s\":%.1f,"
         "\"version\":\"%s\",\"cipher\":\"%s\"}\n",
         (unsigned long long)o.bytes, t1 - t0,
         (double)o.bytes / (1024.0 * 1024.0) / (t1 - t0), SSL_get_version(ssl),
         SSL_get_cipher_name(ssl));
  SSL_free(ssl);
  close(fd);
  close(lfd);
  SSL_CTX_free(ctx);
  return 0;
}
