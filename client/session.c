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

const char *cli_call_error(int err) {
  /* The library's "closed" is the connection's, not the call's. */
  if (err == JW_ECLOSED || err == UV_ENOTCONN)
    return "the connection was closed";
  return errstr(err);
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
            c->files.cacert, why[0] ? why : "verification failed");
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
            c->files.cert, n ? " (TLS alert: " : "", n, alert ? alert + 7 : "",
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
            c->addr_norm, c->files.cert);
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

/* Makes a client and connects it; returns 0 or the connect error. */
static int session_connect(cli_session_t *s) {
  jw_rpc_client_options_t opts;
  int err;

  memset(&opts, 0, sizeof(opts));
  opts.addr = s->conn->addr_norm;
  opts.tls = s->tls;
  s->connect_done = false;
  s->closed = false;
  err = jw_rpc_client_new(&s->loop, &opts, &s->client);
  if (err != 0) {
    s->client = NULL;
    return err;
  }
  err = jw_rpc_client_connect(s->client, on_connect, s);
  if (err == 0) {
    if (!cli_session_run_until(s, &s->connect_done))
      return JW_EINVAL;
    err = s->connect_err;
  }
  return err;
}

int cli_session_open(cli_session_t *s, const cli_conn_t *conn) {
  char errbuf[512] = "";
  int err;

  memset(s, 0, sizeof(*s));
  s->conn = conn;
  if (check_file(conn->files.cacert, "CA certificate", "--cacert") != 0 ||
      check_file(conn->files.cert, "client certificate", "--cert") != 0 ||
      check_file(conn->files.key, "client key", "--key") != 0)
    return CLI_EXIT_FAIL;

  err = jw_tls_ctx_new_client(conn->files.cacert, conn->files.cert,
                              conn->files.key, &s->tls, errbuf, sizeof(errbuf));
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

  err = session_connect(s);
  if (err != 0 && s->client == NULL) {
    fprintf(stderr, "teleport: invalid address '%s': %s\n", conn->addr_norm,
            errstr(err));
    return CLI_EXIT_FAIL;
  }
  if (err != 0) {
    report_connect(s, err);
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}

/* Closes the session's client, if any, and waits until it is gone. */
static void drop_client(cli_session_t *s) {
  if (s->client != NULL) {
    s->closed = false;
    jw_rpc_client_close(s->client, on_closed, s);
    cli_session_run_until(s, &s->closed);
    s->client = NULL;
  }
}

/*
 * The connect errors a server that is restarting or reloading gives: no
 * one listening yet, or a connection cut during the handshake. Anything
 * else (a certificate refused, a name that does not resolve) will not get
 * better by waiting.
 */
static bool transient(int err) {
  switch (err) {
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_EOF:
  case UV_EPIPE:
  case UV_ETIMEDOUT:
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_EAI_AGAIN:
    return true;
  default:
    return false;
  }
}

static void on_backoff(uv_timer_t *t) {
  cli_session_t *s = t->data;

  s->backoff_fired = true;
  uv_stop(&s->loop);
}

static void on_backoff_closed(uv_handle_t *h) {
  cli_session_t *s = h->data;

  s->backoff_closed = true;
  uv_stop(&s->loop);
}

/* Sleeps ms on the session's loop; an abort (Ctrl-C) ends it early. */
static void backoff_sleep(cli_session_t *s, uint64_t ms) {
  uv_timer_t t;

  uv_timer_init(&s->loop, &t);
  t.data = s;
  s->backoff_fired = false;
  s->backoff_closed = false;
  uv_timer_start(&t, on_backoff, ms, 0);
  while (!s->backoff_fired && !(s->abort != NULL && *s->abort))
    uv_run(&s->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, on_backoff_closed);
  cli_session_run_until(s, &s->backoff_closed);
}

void cli_session_progress(cli_session_t *s) { s->in_outage = false; }

int cli_session_reconnect(cli_session_t *s, const char *why) {
  uint64_t budget = s->conn->reconnect_ms, start, delay = 100;
  int err = 0;

  drop_client(s);
  if (budget == 0) {
    fprintf(stderr, "teleport: lost the connection to %s%s%s\n",
            s->conn->addr_norm, why[0] ? ": " : "", why);
    return CLI_EXIT_FAIL;
  }
  fprintf(stderr,
          "teleport: lost the connection to %s%s%s%s; reconnecting for up to "
          "%gs\n",
          s->conn->addr_norm, why[0] ? " (" : "", why, why[0] ? ")" : "",
          (double)budget / 1000);
  /*
   * One outage lasts until the caller made progress again (cli_session_
   * progress): a server that accepts us and then fails every call at once
   * must not keep us here forever, one fresh budget per reconnect.
   */
  uv_update_time(&s->loop);
  if (!s->in_outage) {
    s->in_outage = true;
    s->outage_start = uv_now(&s->loop);
  }
  start = s->outage_start;
  if (uv_now(&s->loop) - start >= budget)
    goto give_up;
  for (;;) {
    if (s->abort != NULL && *s->abort)
      return CLI_EXIT_DETACHED;
    err = session_connect(s);
    if (err == 0) {
      fprintf(stderr, "teleport: reconnected to %s\n", s->conn->addr_norm);
      s->reconnects++;
      return CLI_EXIT_OK;
    }
    if (s->client == NULL || !transient(err))
      break;
    drop_client(s);
    uv_update_time(&s->loop);
    if (uv_now(&s->loop) - start >= budget)
      break;
    /* 0.1 s, doubling up to 2 s: a reload is back in well under a
     * second, a restart in a few; no need to hammer either. */
    if (delay > budget - (uv_now(&s->loop) - start))
      delay = budget - (uv_now(&s->loop) - start);
    backoff_sleep(s, delay);
    delay = delay * 2 > 2000 ? 2000 : delay * 2;
  }
  if (s->client != NULL)
    report_connect(s, err);
  else
    fprintf(stderr, "teleport: cannot reconnect to %s: %s\n",
            s->conn->addr_norm, errstr(err));
give_up:
  if (err == 0 || transient(err))
    fprintf(stderr, "teleport: gave up reconnecting to %s after %gs\n",
            s->conn->addr_norm, (double)budget / 1000);
  drop_client(s);
  return CLI_EXIT_FAIL;
}

void cli_session_close(cli_session_t *s) {
  drop_client(s);
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
    if (id != NULL && s->reconnects > 0) {
      /* Known before the connection was lost: the server let it go. */
      fprintf(stderr,
              "teleport: job %s not found after reconnecting: the server no "
              "longer has it (restarted without its record, or it was "
              "removed)\n",
              id);
      return;
    }
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
  case JW_GRPC_FAILED_PRECONDITION:
    if (id != NULL && strcmp(method, "Signal") == 0) {
      fprintf(stderr, "teleport: job %s has already ended\n", id);
      return;
    }
    if (id != NULL && strcmp(method, "Remove") == 0) {
      fprintf(stderr,
              "teleport: job %s is still running; stop it first "
              "('teleport stop %s')\n",
              id, id);
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
            s->conn->files.cert, sep, msg);
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

/*
 * One call, nothing printed: CLI_EXIT_OK with u filled in (u->status says
 * how the call ended), or err set when the call could not be sent.
 */
static int unary_once(cli_session_t *s, const char *path, const uint8_t *buf,
                      size_t len, uint64_t timeout_ms, unary_t *u, int *err) {
  memset(u, 0, sizeof(*u));
  u->loop = &s->loop;
  *err = s->client != NULL
             ? jw_rpc_client_call(s->client, path, buf, len, timeout_ms,
                                  unary_on_msg, unary_on_done, u, NULL)
             : UV_ENOTCONN;
  if (*err != 0)
    return CLI_EXIT_FAIL;
  if (!cli_session_run_until(s, &u->done))
    return CLI_EXIT_FAIL;
  return CLI_EXIT_OK;
}

bool cli_session_worth_again(const cli_session_t *s, bool ended,
                             int grpc_status) {
  if (!ended)
    return true; /* the connection failed before the call ended */
  return grpc_status == JW_GRPC_UNAVAILABLE &&
         (s->client == NULL || jw_rpc_client_going_away(s->client));
}

int cli_session_call(cli_session_t *s, const char *method,
                     const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *desc, const char *id,
                     uint64_t timeout_ms, bool retry, ProtobufCMessage **out) {
  char path[128];
  uint8_t *buf;
  size_t len;
  unary_t u;
  int err, rc = CLI_EXIT_FAIL;
  uint64_t start;

  *out = NULL;
  len = protobuf_c_message_get_packed_size(req);
  buf = malloc(len ? len : 1);
  if (buf == NULL) {
    fprintf(stderr, "teleport: out of memory\n");
    return CLI_EXIT_FAIL;
  }
  protobuf_c_message_pack(req, buf);
  cli_method_path(path, sizeof(path), method);
  uv_update_time(&s->loop);
  start = uv_now(&s->loop);

  for (;;) {
    uint64_t left = timeout_ms;
    if (timeout_ms > 0) {
      /* The deadline is the caller's, across reconnects. */
      uv_update_time(&s->loop);
      left = uv_now(&s->loop) - start >= timeout_ms
                 ? 1
                 : timeout_ms - (uv_now(&s->loop) - start);
    }
    rc = unary_once(s, path, buf, len, left, &u, &err);
    if (!retry || !cli_session_worth_again(s, rc == CLI_EXIT_OK, u.status)) {
      if (rc == CLI_EXIT_OK)
        cli_session_progress(s);
      break;
    }
    /* The connection went away under an idempotent call: again. */
    rc = cli_session_reconnect(s, rc == CLI_EXIT_OK ? u.message
                                                    : cli_call_error(err));
    free(u.resp);
    free(u.message);
    memset(&u, 0, sizeof(u));
    if (rc != CLI_EXIT_OK) {
      free(buf);
      return rc;
    }
  }
  free(buf);
  if (rc != CLI_EXIT_OK) {
    if (err != 0)
      fprintf(stderr, "teleport: cannot send the %s request to %s: %s\n",
              method, s->conn->addr_norm, errstr(err));
    goto out;
  }
  rc = CLI_EXIT_FAIL;
  s->last_status = u.status;
  if (u.status != JW_GRPC_OK) {
    if (!(s->quiet_deadline && u.status == JW_GRPC_DEADLINE_EXCEEDED))
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

int cli_session_unary(cli_session_t *s, const char *method,
                      const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, const char *id,
                      uint64_t timeout_ms, ProtobufCMessage **out) {
  return cli_session_call(s, method, req, desc, id, timeout_ms, false, out);
}
