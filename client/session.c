/*
 * One connection to teleportd, driven to completion one call at a time on
 * a loop of its own. This is where failures meet the user: every code
 * from lib/rpc and every gRPC status becomes one line on stderr that says
 * what went wrong in the user's terms and, where we can tell, what to do.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* A library or system error code as text. */
static const char *errstr(int err) {
  if (err <= JW_ERR_BASE)
    return jw_strerror(err);
  return uv_strerror(err);
}

/* Case-insensitive substring test for classifying library sentences. */
static bool mentions(const char *text, const char *word) {
  return text != NULL && strcasestr(text, word) != NULL;
}

/*
 * Checks that a certificate or key file can be read before OpenSSL is
 * asked to, so the message names the flag and the file.
 */
static int check_file(const char *path, const char *what, const char *flag) {
  struct stat st;
  int fd;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "teleport: cannot read the %s %s (%s): %s\n", what, path,
            flag, strerror(errno));
    return CLI_EXIT_FAIL;
  }
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    fprintf(stderr, "teleport: the %s %s (%s) is a directory, not a file\n",
            what, path, flag);
    close(fd);
    return CLI_EXIT_FAIL;
  }
  close(fd);
  return CLI_EXIT_OK;
}

/* detail without a leading prefix, when it has it. */
static const char *after(const char *detail, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(detail, prefix, n) == 0 ? detail + n : detail;
}

/* Says why the server's certificate was not accepted. */
static void report_verify(const cli_session_t *s, const char *detail) {
  const cli_conn_t *c = s->conn;
  const char *why = after(detail, "certificate verify failed: ");

  if (mentions(why, "mismatch")) {
    fprintf(stderr,
            "teleport: the server's certificate is not valid for the host in "
            "--addr %s (%s): connect by a name or address the certificate "
            "lists\n",
            c->addr_norm, why);
  } else if (mentions(why, "expired") || mentions(why, "not yet valid")) {
    fprintf(stderr,
            "teleport: the server's certificate is outside its validity "
            "period (%s)\n",
            why);
  } else {
    fprintf(stderr,
            "teleport: the server's certificate is not signed by %s (%s)\n",
            c->cacert, why[0] ? why : "verification failed");
  }
}

/*
 * Says why the TLS handshake failed. A certificate alert from the server
 * after ours went out means it refused our certificate; a handshake that
 * never looked like TLS means something else listens at the address.
 */
static void report_tls(const cli_session_t *s, const char *detail) {
  const cli_conn_t *c = s->conn;
  const char *alert = strstr(detail, "alert: ");
  int n;

  if (mentions(detail, "refused this client certificate")) {
    /* "... (TLS alert: unknown ca)": keep the alert's name. */
    n = alert != NULL ? (int)strcspn(alert + 7, ")") : 0;
    fprintf(stderr,
            "teleport: the server refused this client certificate %s%s%.*s%s: "
            "is it signed by the CA teleportd trusts, and not expired?\n",
            c->cert, n ? " (TLS alert: " : "", n, alert ? alert + 7 : "",
            n ? ")" : "");
    return;
  }
  if (mentions(detail, "wrong version") || mentions(detail, "packet length") ||
      mentions(detail, "record layer") || mentions(detail, "http request")) {
    fprintf(stderr,
            "teleport: %s does not speak TLS as teleportd does (%s): is it "
            "teleportd?\n",
            c->addr_norm, after(detail, "TLS handshake failed: "));
    return;
  }
  if (mentions(detail, "ALPN") || mentions(detail, "no application protocol")) {
    fprintf(stderr,
            "teleport: %s does not speak HTTP/2 (%s): is it teleportd?\n",
            c->addr_norm, detail);
    return;
  }
  fprintf(stderr, "teleport: the TLS handshake with %s failed: %s\n",
          c->addr_norm, detail[0] ? detail : "no reason given");
}

static void report_connect(const cli_session_t *s, int err) {
  const cli_conn_t *c = s->conn;
  const char *detail = s->client ? jw_rpc_client_error(s->client) : "";

  if (detail == NULL)
    detail = "";
  switch (err) {
  case UV_ECONNREFUSED:
    fprintf(stderr,
            "teleport: connection refused at %s: is teleportd running?\n",
            c->addr_norm);
    return;
  case UV_ETIMEDOUT:
    fprintf(stderr,
            "teleport: timed out connecting to %s: is the address right and "
            "the port open?\n",
            c->addr_norm);
    return;
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_EAI_FAIL:
  case UV_EAI_NODATA:
  case UV_ENOENT:
    fprintf(stderr, "teleport: cannot resolve the host in --addr %s: %s\n",
            c->addr_norm, errstr(err));
    return;
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_EADDRNOTAVAIL:
    fprintf(stderr, "teleport: cannot reach %s: %s\n", c->addr_norm,
            errstr(err));
    return;
  case UV_ECONNRESET:
  case UV_EOF:
  case UV_EPIPE:
    fprintf(stderr,
            "teleport: %s closed the connection during the handshake: it "
            "may have refused this client certificate %s, or it is not "
            "teleportd\n",
            c->addr_norm, c->cert);
    return;
  case JW_EVERIFY:
    report_verify(s, detail);
    return;
  case JW_ETLS:
    report_tls(s, detail);
    return;
  case JW_EHTTP2:
    fprintf(stderr,
            "teleport: %s does not speak HTTP/2 as teleportd does (is it "
            "teleportd?)%s%s\n",
            c->addr_norm, detail[0] ? ": " : "", detail);
    return;
  default:
    /* The library's sentence may already say "cannot connect to ...". */
    if (strncmp(detail, "cannot connect to ", 18) == 0)
      fprintf(stderr, "teleport: %s\n", detail);
    else
      fprintf(stderr, "teleport: cannot connect to %s: %s\n", c->addr_norm,
              detail[0] ? detail : errstr(err));
    return;
  }
}

static void on_connect(jw_rpc_client_t *cli, int err, void *data) {
  cli_session_t *s = data;

  s->connect_err = err;
  s->connect_done = true;
  uv_stop(&s->loop);
}

static void on_closed(jw_rpc_client_t *cli, void *data) {
  cli_session_t *s = data;

  s->client = NULL;
  s->closed = true;
  uv_stop(&s->loop);
}

/*
 * Every callback that sets a flag we wait on also calls uv_stop: without it
 * a flag set from a timer or a pending callback, which run before the poll,
 * would leave uv_run blocked in the poll with nothing left to come.
 */
bool cli_session_run_until(cli_session_t *s, const bool *flag) {
  while (!*flag) {
    if (uv_run(&s->loop, UV_RUN_DEFAULT) == 0 && !*flag) {
      fprintf(stderr, "teleport: internal error: nothing left to wait for\n");
      return false;
    }
  }
  return true;
}

int cli_session_open(cli_session_t *s, const cli_conn_t *conn) {
  jw_rpc_client_options_t opts;
  char errbuf[512] = "";
  int err;

  memset(s, 0, sizeof(*s));
  s->conn = conn;
  if (check_file(conn->cacert, "CA certificate", "--cacert") != 0 ||
      check_file(conn->cert, "client certificate", "--cert") != 0 ||
      check_file(conn->key, "client key", "--key") != 0)
    return CLI_EXIT_FAIL;

  err = jw_tls_ctx_new_client(conn->cacert, conn->cert, conn->key, &s->tls,
                              errbuf, sizeof(errbuf));
  if (err != 0) {
    fprintf(stderr, "teleport: %s\n", errbuf[0] ? errbuf : errstr(err));
    return CLI_EXIT_FAIL;
  }
  err = uv_loop_init(&s->loop);
  if (err != 0) {
    fprintf(stderr, "teleport: cannot set up the event loop: %s\n",
            uv_strerror(err));
    return CLI_EXIT_FAIL;
  }
  s->loop_ready = true;

  memset(&opts, 0, sizeof(opts));
  opts.addr = conn->addr_norm;
  opts.tls = s->tls;
  err = jw_rpc_client_new(&s->loop, &opts, &s->client);
  if (err != 0) {
    s->client = NULL;
    fprintf(stderr, "teleport: invalid address '%s': %s\n", conn->addr_norm,
            errstr(err));
    return CLI_EXIT_FAIL;
  }
  err = jw_rpc_client_connect(s->client, on_connect, s);
  if (err == 0) {
    if (!cli_session_run_until(s, &s->connect_done))
      return CLI_EXIT_FAIL;
    err = s->connect_err;
  }
  if (err != 0) {
    report_connect(s, err);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

void cli_session_close(cli_session_t *s) {
  if (s->client != NULL) {
    jw_rpc_client_close(s->client, on_closed, s);
    cli_session_run_until(s, &s->closed);
    s->client = NULL;
  }
  if (s->loop_ready) {
    /* Let any close callback still due run before the loop goes. */
    uv_run(&s->loop, UV_RUN_NOWAIT);
    uv_loop_close(&s->loop);
    s->loop_ready = false;
  }
  if (s->tls != NULL) {
    jw_tls_ctx_free(s->tls);
    s->tls = NULL;
  }
}

void cli_method_path(char *buf, size_t len, const char *method) {
  if (method[0] == '/')
    snprintf(buf, len, "%s", method);
  else
    snprintf(buf, len, "/jobworker.v1.JobWorker/%s", method);
}

void cli_report_status(const cli_session_t *s, const char *method,
                       const char *id, int grpc_status, const char *message) {
  const char *addr = s->conn->addr_norm;
  const char *msg = message != NULL ? message : "";
  const char *sep = msg[0] ? ": " : "";

  switch (grpc_status) {
  case JW_GRPC_NOT_FOUND:
    if (id != NULL) {
      fprintf(stderr, "teleport: job %s not found\n", id);
      return;
    }
    break;
  case JW_GRPC_PERMISSION_DENIED:
    if (id != NULL) {
      fprintf(stderr, "teleport: job %s belongs to another client\n", id);
      return;
    }
    break;
  case JW_GRPC_INVALID_ARGUMENT:
    /* teleportd's messages already say "cannot start "x": why". */
    if (strcmp(method, "Start") == 0 && strncmp(msg, "cannot start", 12) == 0)
      fprintf(stderr, "teleport: %s\n", msg);
    else if (strcmp(method, "Start") == 0)
      fprintf(stderr, "teleport: cannot start the job%s%s\n", sep, msg);
    else
      fprintf(stderr, "teleport: the server rejected the request%s%s\n", sep,
              msg);
    return;
  case JW_GRPC_UNAUTHENTICATED:
    fprintf(stderr,
            "teleport: the server did not accept the identity in %s%s%s\n",
            s->conn->cert, sep, msg);
    return;
  case JW_GRPC_RESOURCE_EXHAUSTED:
    fprintf(stderr, "teleport: the server is at a limit%s%s\n", sep, msg);
    return;
  case JW_GRPC_UNAVAILABLE:
    fprintf(stderr, "teleport: the server at %s is unavailable%s%s\n", addr,
            sep, msg);
    return;
  case JW_GRPC_DEADLINE_EXCEEDED:
    fprintf(stderr, "teleport: %s did not answer %s in time%s%s\n", addr,
            method, sep, msg);
    return;
  case JW_GRPC_UNIMPLEMENTED:
    fprintf(stderr,
            "teleport: %s does not implement %s (is it teleportd, and as "
            "new as this client?)%s%s\n",
            addr, method, sep, msg);
    return;
  case JW_GRPC_CANCELLED:
    fprintf(stderr, "teleport: the %s call was cancelled%s%s\n", method, sep,
            msg);
    return;
  default:
    break;
  }
  fprintf(stderr, "teleport: server error: %s%s%s\n",
          jw_grpc_status_name(grpc_status), sep, msg);
}

typedef struct {
  uv_loop_t *loop;
  bool done;
  int status;
  char *message;
  uint8_t *resp;
  size_t resp_len;
  int nmsgs;
} unary_t;

static void unary_on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                         void *data) {
  unary_t *u = data;

  /* A unary answer has one message; keep the first, count the rest. */
  if (u->nmsgs++ > 0)
    return;
  u->resp = malloc(len ? len : 1);
  if (u->resp == NULL)
    return;
  memcpy(u->resp, msg, len);
  u->resp_len = len;
}

static void unary_on_done(jw_rpc_ccall_t *call, int grpc_status,
                          const char *message, void *data) {
  unary_t *u = data;

  u->status = grpc_status;
  u->message = strdup(message != NULL ? message : "");
  u->done = true;
  uv_stop(u->loop);
}

int cli_session_unary(cli_session_t *s, const char *method,
                      const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, const char *id,
                      uint64_t timeout_ms, ProtobufCMessage **out) {
  char path[128];
  uint8_t *buf;
  size_t len;
  unary_t u;
  int err, rc = CLI_EXIT_FAIL;

  *out = NULL;
  memset(&u, 0, sizeof(u));
  u.loop = &s->loop;
  len = protobuf_c_message_get_packed_size(req);
  buf = malloc(len ? len : 1);
  if (buf == NULL) {
    fprintf(stderr, "teleport: out of memory\n");
    return CLI_EXIT_FAIL;
  }
  protobuf_c_message_pack(req, buf);
  cli_method_path(path, sizeof(path), method);

  err = jw_rpc_client_call(s->client, path, buf, len, timeout_ms, unary_on_msg,
                           unary_on_done, &u, NULL);
  free(buf);
  if (err != 0) {
    fprintf(stderr, "teleport: cannot send the %s request to %s: %s\n", method,
            s->conn->addr_norm, errstr(err));
    return CLI_EXIT_FAIL;
  }
  if (!cli_session_run_until(s, &u.done))
    goto out;

  if (u.status != JW_GRPC_OK) {
    cli_report_status(s, method, id, u.status, u.message);
  } else if (u.nmsgs != 1 || u.resp == NULL) {
    fprintf(stderr,
            "teleport: the server answered %s with %d messages instead of "
            "one\n",
            method, u.nmsgs);
  } else {
    *out = protobuf_c_message_unpack(desc, NULL, u.resp_len, u.resp);
    if (*out == NULL) {
      fprintf(stderr,
              "teleport: the server's answer to %s is not a valid %s "
              "message\n",
              method, desc->short_name);
    } else {
      rc = CLI_EXIT_OK;
    }
  }
out:
  free(u.resp);
  free(u.message);
  return rc;
}
