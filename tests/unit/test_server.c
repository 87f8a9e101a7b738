/*
 * The server role's lifetime (lib/rpc/server.c) without a client: the
 * defaults of zero options, listen addresses good and bad, a start that
 * fails leaving nothing behind, a shutdown with no connection, and a
 * listening socket handed from one server to the next (a reload).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "jobworker/client.h"
#include "jobworker/server.h"
#include "rpc_test.h"
#include "server_int.h"

static uv_loop_t loop;
static jw_tls_ctx_t *tls;

static void h_nop(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                  void *data) {
  jw_rpc_call_fail(call, JW_GRPC_UNIMPLEMENTED, "nop");
}

static const jw_rpc_method_t methods[] = {{"/t.T/Nop", h_nop, 0}};

static void setup(void) {
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  tls = rpc_test_tls(true);
}

static void teardown(void) {
  jw_tls_ctx_free(tls);
  ck_assert_int_eq(rpc_test_drain(&loop), 0);
}

static jw_rpc_server_options_t options(const char *addr) {
  jw_rpc_server_options_t o = {0};
  o.addr = addr;
  o.tls = tls;
  o.methods = methods;
  o.nmethods = 1;
  return o;
}

static bool done;
static int ndone;
static void done_cb(jw_rpc_server_t *srv, void *data) {
  done = true;
  ndone++;
}

static void stop(jw_rpc_server_t *srv) {
  done = false;
  ndone = 0;
  jw_rpc_server_close(srv, 1000, done_cb, NULL);
  ck_assert(rpc_test_run_until(&loop, &done, 10000));
  ck_assert_int_eq(ndone, 1);
}

START_TEST(test_zero_options_get_the_documented_defaults) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_server_t *srv;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), 0);
  /* server.h documents each of these as the value 0 stands for. */
  ck_assert_uint_eq(srv->opts.max_connections, 1024);
  ck_assert_uint_eq(srv->opts.max_concurrent_streams, 100);
  ck_assert_uint_eq(srv->opts.handshake_timeout_ms, 10000);
  ck_assert_uint_eq(srv->opts.idle_timeout_ms, 300000);
  ck_assert_uint_eq(srv->opts.max_message_bytes, 4u << 20);
  ck_assert_uint_eq(srv->opts.max_buffered_request_bytes, 8u << 20);
  ck_assert_uint_eq(srv->opts.max_pending_output_bytes, 1u << 20);
  ck_assert_uint_eq(srv->opts.request_timeout_ms, 30000);
  ck_assert_uint_eq(srv->opts.max_connections_per_client, 32);
  ck_assert_int_gt(jw_rpc_server_port(srv), 0);
  stop(srv);
}
END_TEST

START_TEST(test_one_message_always_fits_the_request_budget) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_server_t *srv;
  o.max_message_bytes = 16u << 20;
  o.max_buffered_request_bytes = 1u << 20;
  o.max_connections = 7;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), 0);
  ck_assert_uint_eq(srv->opts.max_buffered_request_bytes, 16u << 20);
  ck_assert_uint_eq(srv->opts.max_connections, 7); /* set ones are kept */
  stop(srv);
}
END_TEST

START_TEST(test_listen_addresses) {
  struct sockaddr_storage ss;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  char ip[64];

  ck_assert_int_eq(jw_rpc_listen_addr_parse("127.0.0.1:3000", &ss), 0);
  ck_assert_int_eq(ss.ss_family, AF_INET);
  ck_assert_int_eq(ntohs(a4->sin_port), 3000);
  ck_assert_int_eq(jw_rpc_listen_addr_parse(":3001", &ss), 0);
  uv_ip4_name(a4, ip, sizeof(ip));
  ck_assert_str_eq(ip, "0.0.0.0"); /* every IPv4 address */
  ck_assert_int_eq(ntohs(a4->sin_port), 3001);
  ck_assert_int_eq(jw_rpc_listen_addr_parse("localhost:80", &ss), 0);
  uv_ip4_name(a4, ip, sizeof(ip));
  ck_assert_str_eq(ip, "127.0.0.1");
  ck_assert_int_eq(jw_rpc_listen_addr_parse("[::1]:443", &ss), 0);
  ck_assert_int_eq(ss.ss_family, AF_INET6);
  ck_assert_int_eq(ntohs(a6->sin6_port), 443);

  static const char *bad[] = {
      NULL,        "",          "3000",         "127.0.0.1",
      "[::1]",     "::1:3000",  "host:",        "127.0.0.1:65536",
      "1.2.3.4:x", "[::1]x:80", "[]:80",        "example.org:80",
      "[::1:80",   "1.2.3:80",  "127.0.0.1:-1", "999.1.1.1:80",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(jw_rpc_listen_addr_parse(bad[i], &ss) == JW_EINVAL,
                  "accepted '%s'", bad[i] ? bad[i] : "(null)");
}
END_TEST

START_TEST(test_bad_start_leaves_nothing) {
  jw_rpc_server_t *srv = (jw_rpc_server_t *)&loop; /* overwritten */
  jw_rpc_server_options_t o = options("no-port");
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), JW_EINVAL);
  ck_assert_ptr_null(srv);
  o = options("127.0.0.1:0");
  o.tls = NULL;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), JW_EINVAL);
  o = options("127.0.0.1:0");
  o.methods = NULL;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), JW_EINVAL);
  ck_assert_int_eq(jw_rpc_server_start(&loop, NULL, &srv), JW_EINVAL);
  ck_assert_ptr_null(srv);
}
END_TEST

START_TEST(test_address_in_use_is_reported_and_cleaned_up) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_server_t *first, *second = NULL;
  char addr[64];
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &first), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", jw_rpc_server_port(first));
  o.addr = addr;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &second), UV_EADDRINUSE);
  ck_assert_ptr_null(second);
  /* The failed server's handle closes from the loop (teardown checks that
   * the loop is left empty, and LeakSanitizer that it was freed). */
  stop(first);
}
END_TEST

START_TEST(test_shutdown_with_no_connections) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_server_t *srv;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), 0);
  done = false;
  ndone = 0;
  jw_rpc_server_close(srv, 60000, done_cb, NULL);
  ck_assert(!done); /* from the loop, never from inside the call */
  jw_rpc_server_close(srv, 60000, done_cb, NULL); /* again: no effect */
  /* Nothing to wait for: done well before the 60 s grace period. */
  uint64_t t0 = uv_hrtime();
  ck_assert(rpc_test_run_until(&loop, &done, 30000));
  ck_assert_uint_lt(uv_hrtime() - t0, 30000000000ull);
  ck_assert_int_eq(ndone, 1);
}
END_TEST

static jw_rpc_server_t *adopted;
static bool accepted(void) { return adopted->nconns > 0; }

/*
 * The first server's listening socket, dup'd, outlives its close: a
 * connection made in between waits in the backlog, and the second server
 * adopts the socket (same port) and accepts it.
 */
START_TEST(test_listen_fd_handed_to_next_server) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_server_t *first, *second;
  struct sockaddr_in sin;
  int port, fd, c;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &first), 0);
  port = jw_rpc_server_port(first);
  fd = jw_rpc_server_dup_listen_fd(first);
  ck_assert_int_ge(fd, 3);
  ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  stop(first);
  /* Closed: the server has no listener to give any more. */
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(c, 0);
  ck_assert_int_eq(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
  o.adopt_listen_fd = true;
  o.listen_fd = fd;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &second), 0);
  ck_assert_int_eq(jw_rpc_server_port(second), port);
  ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  /* The waiting connection is accepted (its handshake then starts). */
  adopted = second;
  ck_assert(rpc_test_run_pred(&loop, accepted, 10000));
  ck_assert_uint_eq(second->nconns, 1);
  close(c);
  stop(second);
}
END_TEST

static bool connected;
static int connect_err;
static void connect_cb(jw_rpc_client_t *cli, int err, void *data) {
  connected = true;
  connect_err = err;
}

static bool cli_closed;
static void cli_close_cb(jw_rpc_client_t *cli, void *data) {
  cli_closed = true;
}

static jw_rpc_server_t *idle_srv;
static bool server_conn_open(void) {
  if (jw__list_empty(&idle_srv->conns))
    return false;
  sconn_t *sc = SCONN_OF(jw__list_first(&idle_srv->conns));
  return sc->opened && !sc->c.writing && sc->c.gather.len == 0;
}

/*
 * Starts idle_srv and connects a client to it, TLS and SETTINGS done and
 * the server's side open: the client and its TLS context, for the caller
 * to close and free.
 */
static jw_rpc_client_t *idle_connect(jw_tls_ctx_t **ctls) {
  jw_rpc_server_options_t o = options("127.0.0.1:0");
  jw_rpc_client_t *cli;
  char addr[64];
  *ctls = rpc_test_tls(false);
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &idle_srv), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", jw_rpc_server_port(idle_srv));
  jw_rpc_client_options_t co = {.addr = addr, .tls = *ctls};
  ck_assert_int_eq(jw_rpc_client_new(&loop, &co, &cli), 0);
  connected = false;
  ck_assert_int_eq(jw_rpc_client_connect(cli, connect_cb, NULL), 0);
  ck_assert(rpc_test_run_until(&loop, &connected, 20000));
  ck_assert_msg(connect_err == 0, "%s", jw_rpc_client_error(cli));
  ck_assert(rpc_test_run_pred(&loop, server_conn_open, 10000));
  return cli;
}

/*
 * What an idle connection holds outside OpenSSL once TLS is up and the
 * SETTINGS are exchanged, as jw-load idle leaves it: no write or input
 * buffer, and of nghttp2's session its small blocks (5 KiB) and a page
 * or two of its mapped blocks, those the SETTINGS touched. A frame buffer
 * on the heap (16 KiB) or an input buffer kept is over the bound.
 */
#define IDLE_HELD_MAX(page) (8 * 1024 + 2 * (page))

/* The loop's handles whose memory lies in [lo, lo + len). */
typedef struct {
  uintptr_t lo, hi;
  int n;
} inside_t;

static void count_inside(uv_handle_t *h, void *arg) {
  inside_t *in = arg;
  if ((uintptr_t)h >= in->lo && (uintptr_t)h < in->hi)
    in->n++;
}

static int handles_inside(const void *p, size_t len) {
  inside_t in = {(uintptr_t)p, (uintptr_t)p + len, 0};
  uv_walk(&loop, count_inside, &in);
  return in.n;
}

START_TEST(test_idle_connection_holds_little) {
  jw_tls_ctx_t *ctls;
  jw_rpc_client_t *cli = idle_connect(&ctls);
  /* Let the SETTINGS and their ACKs cross. */
  bool never = false;
  rpc_test_run_until(&loop, &never, 100);
  sconn_t *sc = SCONN_OF(jw__list_first(&idle_srv->conns));
  ck_assert(sc->c.tls_up);
  ck_assert_uint_eq(sc->c.gather.cap + sc->c.inflight.cap + sc->c.pend.cap, 0);
  size_t held = jw__conn_held(&sc->c);
  size_t max = IDLE_HELD_MAX((size_t)sysconf(_SC_PAGESIZE));
  ck_assert_msg(held <= max, "an idle connection holds %zu bytes (at most %zu)",
                held, max);
  /* Of libuv's handles it has its socket's alone (248 bytes on x86-64):
   * its next-turn work is on the server's one queue and its timeouts on
   * the server's sweep, not a uv_idle_t and a uv_timer_t of its own. */
  ck_assert_int_eq(handles_inside(sc, sizeof(*sc)), 1);
  /* The CA certificate the client sent beside its own (an OpenSSL client
   * adds it from its trust store) is freed once verified; the client's
   * certificate and the identity taken from it stay. */
  STACK_OF(X509) *sent = SSL_get_peer_cert_chain(sc->c.ssl);
  ck_assert(sent == NULL || sk_X509_num(sent) == 0);
  ck_assert_ptr_nonnull(SSL_get0_peer_certificate(sc->c.ssl));
  ck_assert_ptr_nonnull(sc->cn);
  cli_closed = false;
  jw_rpc_client_close(cli, cli_close_cb, NULL);
  ck_assert(rpc_test_run_until(&loop, &cli_closed, 20000));
  stop(idle_srv);
  jw_tls_ctx_free(ctls);
}
END_TEST

/*
 * A connection that stayed quiet for a sweep or two has given its frame
 * buffer's pages back (jw__conn_quiet): of what IDLE_HELD_MAX allows, the
 * page the SETTINGS touched in it is gone, and only nghttp2's small
 * blocks and its stream table's page stay.
 */
#define QUIET_HELD_MAX(page) (8 * 1024 + (page))

static sconn_t *quiet_sc;
static bool conn_quiet(void) {
  return jw__conn_held(&quiet_sc->c) <=
         QUIET_HELD_MAX((size_t)sysconf(_SC_PAGESIZE));
}

START_TEST(test_quiet_connection_gives_back_its_frame_buffer) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  jw_tls_ctx_t *ctls;
  jw_rpc_client_t *cli = idle_connect(&ctls);
  quiet_sc = SCONN_OF(jw__list_first(&idle_srv->conns));
  /* Two sweeps do; a loaded machine gets forty times that. */
  ck_assert_msg(rpc_test_run_pred(&loop, conn_quiet, 40 * JW__SERVER_SWEEP_MS),
                "a quiet connection holds %zu bytes (at most %zu)",
                jw__conn_held(&quiet_sc->c), QUIET_HELD_MAX(page));
  /* A frame sent writes the buffer again, and the next quiet spell gives
   * it back again; the connection works throughout. */
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(
        nghttp2_submit_ping(quiet_sc->c.h2, NGHTTP2_FLAG_NONE, NULL), 0);
    jw__conn_flush(&quiet_sc->c);
    ck_assert_msg(!conn_quiet(), "the PING did not touch the frame buffer");
    ck_assert(rpc_test_run_pred(&loop, conn_quiet, 40 * JW__SERVER_SWEEP_MS));
  }
  ck_assert(!quiet_sc->c.dead && !quiet_sc->c.closing);
  cli_closed = false;
  jw_rpc_client_close(cli, cli_close_cb, NULL);
  ck_assert(rpc_test_run_until(&loop, &cli_closed, 20000));
  stop(idle_srv);
  jw_tls_ctx_free(ctls);
}
END_TEST

int main(void) {
  Suite *s = suite_create("server");
  TCase *tc = test_tcase(s, "server", setup, teardown, 0);
  const TTest *const tc_tests[] = {
      test_zero_options_get_the_documented_defaults,
      test_one_message_always_fits_the_request_budget,
      test_listen_addresses,
      test_bad_start_leaves_nothing,
      test_address_in_use_is_reported_and_cleaned_up,
      test_shutdown_with_no_connections,
      test_listen_fd_handed_to_next_server,
      test_idle_connection_holds_little,
      test_quiet_connection_gives_back_its_frame_buffer,
      NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
