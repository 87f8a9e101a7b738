/*
 * Integration tests for lib/rpc: a server and its clients on one
 * in-process loop, with a small test service, over real TLS 1.3 and
 * HTTP/2 on 127.0.0.1. Certificates come from JW_TEST_CERTS; the odd ones
 * (another CA, a serverAuth-only certificate, one without a CN) are made
 * once per run with the openssl command into a temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "../test_common.h"
#include "jobworker/rpc.h"
#include "server_test.h"
#include "tls_int.h"

static const char *certdir;
static char extradir[] = "/tmp/jw-rpc-certs-XXXXXX";

static const char *path_in(const char *dir, const char *name) {
  static char bufs[8][512];
  static int i;
  char *b = bufs[i++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

#define CERT(n) path_in(certdir, n)
#define EXTRA(n) path_in(extradir, n)

/* ---- The test service ------------------------------------------------- */

static int g_cancels;
static uint64_t g_pulled;
static int g_events_rpc;
static char g_last_tag[64];
static char g_last_event_cn[64];

static uint8_t pattern(uint64_t i) {
  return (uint8_t)((i * 2654435761u) >> 13);
}

static void h_echo(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {
  if (len >= 5 && memcmp(req, "fail:", 5) == 0) {
    /* "fail:CODE:MESSAGE" */
    char buf[1024];
    memcpy(buf, req, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
    buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
    char *colon = strchr(buf + 5, ':');
    ck_assert_ptr_nonnull(colon);
    ck_assert_int_eq(jw_rpc_call_fail(call, atoi(buf + 5), colon + 1), 0);
    return;
  }
  jw_rpc_call_set_tag(call, "echo-tag");
  ck_assert_int_eq(jw_rpc_call_reply(call, req, len), 0);
}

static void h_whoami(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                     void *data) {
  const char *cn = jw_rpc_call_cn(call);
  ck_assert_int_eq(jw_rpc_call_reply(call, (const uint8_t *)cn, strlen(cn)), 0);
}

static void on_cancel_count(jw_rpc_call_t *call, void *data) { g_cancels++; }

static void h_hang(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {
  jw_rpc_call_on_cancel(call, on_cancel_count, NULL);
}

typedef struct {
  uint64_t total; /* UINT64_MAX: for ever */
  uint64_t sent;
  unsigned pulls;
  bool eagain;
  bool fill; /* every message as large as the pull's room */
} stream_t;

static void stream_cancel(jw_rpc_call_t *call, void *data) {
  g_cancels++;
  free(data);
}

static ssize_t stream_pull(jw_rpc_call_t *call, uint8_t *buf, size_t cap,
                           void *data) {
  stream_t *st = data;
  /* rpc.h: a pull gets at least JW_RPC_PULL_MIN and at most the message
   * maximum. */
  ck_assert_uint_ge(cap, JW_RPC_PULL_MIN);
  ck_assert_uint_le(cap, JW_RPC_STREAM_MSG_MAX);
  st->pulls++;
  if (st->eagain && st->pulls % 3 == 0) {
    /* Not ready "yet": and ready again at once, from inside the pull. */
    jw_rpc_call_resume(call);
    return JW_EAGAIN;
  }
  if (st->sent == st->total) {
    free(st);
    return 0;
  }
  uint64_t n = st->total - st->sent;
  size_t want = st->fill ? cap : (st->pulls * 7919) % JW_RPC_STREAM_MSG_MAX + 1;
  if (n > want)
    n = want;
  if (n > cap)
    n = cap;
  for (uint64_t i = 0; i < n; i++)
    buf[i] = pattern(st->sent + i);
  st->sent += n;
  g_pulled += n;
  return (ssize_t)n;
}

/*
 * The request is "BYTES[e|f]": how much to stream, 'e' to mix in EAGAIN,
 * 'f' for messages that fill each pull.
 */
static void h_stream(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                     void *data) {
  char buf[32];
  stream_t *st = calloc(1, sizeof(*st));
  memcpy(buf, req, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
  buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
  st->total =
      strcmp(buf, "forever") == 0 ? UINT64_MAX : strtoull(buf, NULL, 10);
  st->eagain = strchr(buf, 'e') != NULL && st->total != UINT64_MAX;
  st->fill = strchr(buf, 'f') != NULL && st->total != UINT64_MAX;
  jw_rpc_call_on_cancel(call, stream_cancel, st);
  ck_assert_int_eq(jw_rpc_call_stream(call, stream_pull, st), 0);
}

typedef struct {
  uv_timer_t t;
  jw_rpc_call_t *call;
} slow_t;

static void slow_closed(uv_handle_t *h) { free(h); }

static void slow_fire(uv_timer_t *t) {
  slow_t *s = (slow_t *)t;
  jw_rpc_call_reply(s->call, (const uint8_t *)"slow", 4);
  uv_close((uv_handle_t *)t, slow_closed);
}

static void slow_cancel(jw_rpc_call_t *call, void *data) {
  slow_t *s = data;
  g_cancels++;
  uv_timer_stop(&s->t);
  uv_close((uv_handle_t *)&s->t, slow_closed);
}

/* Replies after the number of milliseconds in the request. */
static void h_slow(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {
  uv_loop_t *loop = data;
  slow_t *s = calloc(1, sizeof(*s));
  char buf[16] = {0};
  memcpy(buf, req, len < 15 ? len : 15);
  s->call = call;
  uv_timer_init(loop, &s->t);
  uv_timer_start(&s->t, slow_fire, strtoull(buf, NULL, 10), 0);
  jw_rpc_call_on_cancel(call, slow_cancel, s);
}

static const jw_rpc_method_t methods[] = {
    {"/test.Svc/Echo", h_echo, 0}, {"/test.Svc/WhoAmI", h_whoami, 0},
    {"/test.Svc/Hang", h_hang, 0}, {"/test.Svc/Stream", h_stream, 0},
    {"/test.Svc/Slow", h_slow, 0},
};

static void on_event(const jw_rpc_event_t *ev, void *data) {
  ck_assert_str_ne(jw_rpc_event_name(ev->event), "unknown");
  if (ev->event == JW_RPC_EV_RPC) {
    g_events_rpc++;
    snprintf(g_last_tag, sizeof(g_last_tag), "%s", ev->tag ? ev->tag : "");
    ck_assert_ptr_nonnull(ev->method);
  }
  if (ev->event == JW_RPC_EV_CONN_OPEN)
    snprintf(g_last_event_cn, sizeof(g_last_event_cn), "%s",
             ev->cn ? ev->cn : "");
}

/* ---- Fixture ---------------------------------------------------------- */

static uv_loop_t loop;
static jw_tls_ctx_t *stls;
static jw_rpc_server_t *srv;
static bool srv_done;
static char addr[64];
/*
 * The fixture's own timers, never on the stack: a failed assertion leaves
 * a wait early, and teardown still finds them in a sane state.
 */
static uv_timer_t tick;      /* bounds every poll while a test waits */
static uv_timer_t run_timer; /* run_for */
static bool run_fired;

static void start_server_with(const char *ca, const char *cert, const char *key,
                              size_t max_msg, uint32_t max_conns,
                              uint64_t hs_timeout) {
  char err[256] = "";
  ck_assert_msg(jw_tls_ctx_new_server(ca, cert, key, &stls, err, sizeof(err)) ==
                    0,
                "%s", err);
  jw_rpc_server_options_t o = {0};
  o.addr = "127.0.0.1:0";
  o.tls = stls;
  o.methods = methods;
  o.nmethods = sizeof(methods) / sizeof(methods[0]);
  o.data = &loop;
  o.on_event = on_event;
  o.max_message_bytes = max_msg;
  o.max_connections = max_conns;
  o.handshake_timeout_ms = hs_timeout;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &o, &srv), 0);
  /* The server keeps what it needs: the caller's context can go. */
  jw_tls_ctx_free(stls);
  stls = NULL;
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", jw_rpc_server_port(srv));
}

static void start_server(size_t max_msg, uint32_t max_conns,
                         uint64_t hs_timeout) {
  start_server_with(CERT("ca.cert"), CERT("server.cert"), CERT("server.key"),
                    max_msg, max_conns, hs_timeout);
}

/* A server under the second CA, for the odd client certificates. */
static void start_server2(void) {
  start_server_with(EXTRA("ca2.cert"), EXTRA("server2.cert"),
                    EXTRA("server2.key"), 0, 0, 0);
}

static void setup(void) {
  g_cancels = 0;
  g_pulled = 0;
  g_events_rpc = 0;
  g_last_tag[0] = '\0';
  srv_done = false;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &tick);
  uv_timer_init(&loop, &run_timer);
}

static void srv_done_cb(jw_rpc_server_t *s, void *data) { srv_done = true; }

static void wait_for(volatile bool *flag);

static void teardown(void) {
  uv_timer_stop(&run_timer);
  if (srv != NULL) {
    jw_rpc_server_close(srv, 0, srv_done_cb, NULL);
    wait_for(&srv_done);
    srv = NULL;
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&run_timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static void tick_cb(uv_timer_t *t) { (void)t; }

/*
 * Runs the loop until pred(arg) holds, failing after 20 s.
 *
 * UV_RUN_ONCE alone can block for good: in libuv 1.44 a timer already due
 * when a turn starts runs first, and the turn then polls with no timeout
 * if nothing else is pending. When that timer is what the test waits for
 * (run_for's) and only the listener is left, the turn never returns; on a
 * loaded machine the timer is often due by the time the turn starts. The
 * repeating tick bounds every poll.
 */
static void wait_until(bool (*pred)(const void *arg), const void *arg) {
  uint64_t start = uv_hrtime();
  bool mine = !uv_is_active((uv_handle_t *)&tick);
  if (mine)
    uv_timer_start(&tick, tick_cb, 10, 10);
  while (!pred(arg) && uv_hrtime() - start < 20000000000ull)
    uv_run(&loop, UV_RUN_ONCE);
  if (mine)
    uv_timer_stop(&tick);
  ck_assert_msg(pred(arg), "timed out");
}

static bool flag_set(const void *arg) { return *(const volatile bool *)arg; }

static bool cancel_seen(const void *arg) {
  (void)arg;
  return g_cancels > 0;
}

/* Runs the loop until *flag is set, failing after 20 s. */
static void wait_for(volatile bool *flag) {
  wait_until(flag_set, (const void *)flag);
}

static void run_for_cb(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop for ms milliseconds. */
static void run_for(uint64_t ms) {
  run_fired = false;
  run_timer.data = &run_fired;
  uv_timer_start(&run_timer, run_for_cb, ms, 0);
  wait_for(&run_fired);
}

/* ---- Client helpers --------------------------------------------------- */

typedef struct {
  jw_rpc_client_t *cli;
  bool connected;
  int err;
  bool closed;
} cl_t;

static void on_connect(jw_rpc_client_t *cli, int err, void *data) {
  cl_t *c = data;
  c->connected = true;
  c->err = err;
}

/* A client TLS context of ca, cert and key. */
static jw_tls_ctx_t *client_tls(const char *ca, const char *cert,
                                const char *key) {
  char err[256] = "";
  jw_tls_ctx_t *tls;
  ck_assert_msg(jw_tls_ctx_new_client(ca, cert, key, &tls, err, sizeof(err)) ==
                    0,
                "%s", err);
  return tls;
}

/* Connects c to the server with tls (freed here); returns the error. */
static int client_open_tls(cl_t *c, jw_tls_ctx_t *tls) {
  memset(c, 0, sizeof(*c));
  jw_rpc_client_options_t o = {0};
  o.addr = addr;
  o.tls = tls;
  ck_assert_int_eq(jw_rpc_client_new(&loop, &o, &c->cli), 0);
  jw_tls_ctx_free(tls);
  ck_assert_int_eq(jw_rpc_client_connect(c->cli, on_connect, c), 0);
  wait_for(&c->connected);
  return c->err;
}

static int client_open_ca(cl_t *c, const char *ca, const char *cert,
                          const char *key) {
  return client_open_tls(c, client_tls(ca, cert, key));
}

static int client_open(cl_t *c, const char *name) {
  char cert[64], key[64];
  snprintf(cert, sizeof(cert), "%s.cert", name);
  snprintf(key, sizeof(key), "%s.key", name);
  return client_open_ca(c, CERT("ca.cert"), CERT(cert), CERT(key));
}

static void on_client_closed(jw_rpc_client_t *cli, void *data) {
  ((cl_t *)data)->closed = true;
}

static void client_close(cl_t *c) {
  jw_rpc_client_close(c->cli, on_client_closed, c);
  wait_for(&c->closed);
}

typedef struct {
  bool done;
  int status;
  char msg[1024];
  uint8_t *buf;
  size_t len;
  size_t nmsgs;
  bool check_pattern;
  bool bad_pattern;
  bool cancel_on_msg;
  bool pause_on_first;
  jw_rpc_ccall_t *call;
} res_t;

static void on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                   void *data) {
  res_t *r = data;
  r->nmsgs++;
  if (r->check_pattern) {
    for (size_t i = 0; i < len; i++)
      if (msg[i] != pattern(r->len + i))
        r->bad_pattern = true;
  } else {
    r->buf = realloc(r->buf, r->len + len + 1);
    memcpy(r->buf + r->len, msg, len);
    r->buf[r->len + len] = '\0';
  }
  r->len += len;
  if (r->cancel_on_msg)
    jw_rpc_ccall_cancel(call);
}

static void on_done(jw_rpc_ccall_t *call, int status, const char *message,
                    void *data) {
  res_t *r = data;
  ck_assert(!r->done);
  ck_assert_ptr_nonnull(message);
  r->done = true;
  r->status = status;
  snprintf(r->msg, sizeof(r->msg), "%s", message);
}

static void call(cl_t *c, const char *path, const void *req, size_t len,
                 uint64_t timeout_ms, res_t *r) {
  ck_assert_int_eq(jw_rpc_client_call(c->cli, path, req, len, timeout_ms,
                                      on_msg, on_done, r, &r->call),
                   0);
}

static void call_wait(cl_t *c, const char *path, const void *req, size_t len,
                      uint64_t timeout_ms, res_t *r) {
  call(c, path, req, len, timeout_ms, r);
  wait_for(&r->done);
}

/* A server with the default limits, and alice's connection to it. */
static void start_as_alice(cl_t *c) {
  start_server(0, 0, 0);
  ck_assert_int_eq(client_open(c, "alice"), 0);
}

/* One call as alice to a new server, the client closed after its end. */
static void call_as_alice(const char *path, const char *req, size_t len,
                          res_t *r) {
  cl_t c;
  start_as_alice(&c);
  call_wait(&c, path, req, len, 0, r);
  client_close(&c);
}

/* The connection carries on: an Echo on c still answers OK. */
static void assert_carries_on(cl_t *c) {
  res_t after = {0};
  call_wait(c, "/test.Svc/Echo", "x", 1, 0, &after);
  ck_assert_int_eq(after.status, JW_GRPC_OK);
  free(after.buf);
}

/*
 * start_as_alice, then a Stream call with req (its answer's bytes checked
 * into r) under way: the caller waits for r->done.
 */
static void start_stream(cl_t *c, const char *req, uint64_t timeout_ms,
                         res_t *r) {
  start_as_alice(c);
  r->check_pattern = true;
  call(c, "/test.Svc/Stream", req, strlen(req), timeout_ms, r);
}

/* ---- Tests ------------------------------------------------------------ */

START_TEST(test_unary_ok) {
  cl_t c;
  res_t r = {0}, w = {0};
  start_as_alice(&c);
  ck_assert_str_eq(jw_rpc_client_error(c.cli), "");
  call_wait(&c, "/test.Svc/Echo", "hello", 5, 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  ck_assert_str_eq(r.msg, "");
  ck_assert_uint_eq(r.nmsgs, 1);
  ck_assert_str_eq((char *)r.buf, "hello");
  call_wait(&c, "/test.Svc/WhoAmI", "", 0, 5000, &w);
  ck_assert_int_eq(w.status, JW_GRPC_OK);
  ck_assert_str_eq((char *)w.buf, "alice");
  ck_assert_str_eq(g_last_event_cn, "alice");
  client_close(&c);
  run_for(20);
  ck_assert_int_ge(g_events_rpc, 2);
  free(r.buf);
  free(w.buf);
}
END_TEST

/*
 * Many calls on one connection at once, unary replies of many sizes
 * interleaved with two streams: every call gets its own answer whole, in
 * whatever order they complete. The sanitizer builds check the
 * connection's output counter against a walk of its calls on every I/O
 * event meanwhile.
 */
#define NMANY 120

START_TEST(test_many_calls_interleaved_on_one_connection) {
  cl_t c;
  static res_t r[NMANY];
  static char req[NMANY][4100];
  res_t s[2] = {{0}};
  memset(r, 0, sizeof(r));
  start_as_alice(&c);
  s[0].check_pattern = s[1].check_pattern = true;
  call(&c, "/test.Svc/Stream", "700000", 6, 0, &s[0]);
  for (size_t i = 0; i < NMANY; i++) {
    size_t len = 1 + (i * 613) % 4096;
    memset(req[i], 'a' + (int)(i % 26), len);
    req[i][len] = '\0';
    call(&c, "/test.Svc/Echo", req[i], len, 0, &r[i]);
    if (i == NMANY / 2)
      call(&c, "/test.Svc/Stream", "300000e", 7, 0, &s[1]);
  }
  for (size_t i = 0; i < NMANY; i++) {
    wait_for(&r[i].done);
    ck_assert_msg(r[i].status == JW_GRPC_OK, "call %zu: %d %s", i, r[i].status,
                  r[i].msg);
    ck_assert_uint_eq(r[i].nmsgs, 1);
    ck_assert_uint_eq(r[i].len, strlen(req[i]));
    ck_assert_mem_eq(r[i].buf, req[i], r[i].len);
    free(r[i].buf);
  }
  for (int i = 0; i < 2; i++) {
    wait_for(&s[i].done);
    ck_assert_int_eq(s[i].status, JW_GRPC_OK);
    ck_assert(!s[i].bad_pattern);
  }
  ck_assert_uint_eq(s[0].len, 700000);
  ck_assert_uint_eq(s[1].len, 300000);
  assert_carries_on(&c);
  client_close(&c);
}
END_TEST

START_TEST(test_empty_request_and_reply) {
  res_t r = {0};
  call_as_alice("/test.Svc/Echo", "", 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  ck_assert_uint_eq(r.nmsgs, 1);
  ck_assert_uint_eq(r.len, 0);
  free(r.buf);
}
END_TEST

START_TEST(test_error_status_and_message) {
  static const struct {
    int code;
    const char *msg;
  } cases[] = {
      {JW_GRPC_NOT_FOUND, "no job 1234"},
      {JW_GRPC_PERMISSION_DENIED, "caf\xc3\xa9 100% \xe2\x9c\x93\n\ttabs"},
      {JW_GRPC_INVALID_ARGUMENT, "%41 is not A; %zz stays; \x7f\x01"},
      {JW_GRPC_RESOURCE_EXHAUSTED, ""},
  };
  cl_t c;
  start_server(0, 0, 0);
  ck_assert_int_eq(client_open(&c, "bob"), 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char req[256];
    res_t r = {0};
    int n =
        snprintf(req, sizeof(req), "fail:%d:%s", cases[i].code, cases[i].msg);
    call_wait(&c, "/test.Svc/Echo", req, (size_t)n, 0, &r);
    ck_assert_int_eq(r.status, cases[i].code);
    ck_assert_str_eq(r.msg, cases[i].msg);
    ck_assert_uint_eq(r.nmsgs, 0);
    free(r.buf);
  }
  client_close(&c);
}
END_TEST

START_TEST(test_unknown_method) {
  res_t r = {0};
  call_as_alice("/test.Svc/Nope", "x", 1, &r);
  ck_assert_int_eq(r.status, JW_GRPC_UNIMPLEMENTED);
  ck_assert_ptr_nonnull(strstr(r.msg, "/test.Svc/Nope"));
}
END_TEST

START_TEST(test_oversize_request) {
  cl_t c;
  res_t r = {0}, ok = {0}, big = {0};
  start_server(1024, 0, 0);
  ck_assert_int_eq(client_open(&c, "alice"), 0);
  uint8_t *req = calloc(1, 2u << 20);
  call_wait(&c, "/test.Svc/Echo", req, 1025, 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_RESOURCE_EXHAUSTED);
  /* A 2 MiB request is refused from its prefix, not after buffering. */
  call_wait(&c, "/test.Svc/Echo", req, 2u << 20, 0, &big);
  ck_assert_int_eq(big.status, JW_GRPC_RESOURCE_EXHAUSTED);
  /* The connection is still fine afterwards. */
  call_wait(&c, "/test.Svc/Echo", req, 1024, 0, &ok);
  ck_assert_int_eq(ok.status, JW_GRPC_OK);
  ck_assert_uint_eq(ok.len, 1024);
  free(req);
  free(ok.buf);
  client_close(&c);
}
END_TEST

START_TEST(test_default_limit_4mib) {
  cl_t c;
  res_t r = {0};
  start_as_alice(&c);
  size_t n = (4u << 20) + 1;
  uint8_t *req = calloc(1, n);
  call_wait(&c, "/test.Svc/Echo", req, n, 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_RESOURCE_EXHAUSTED);
  free(req);
  client_close(&c);
}
END_TEST

static void stream_test(const char *req, uint64_t total) {
  cl_t c;
  res_t r = {0};
  start_stream(&c, req, 0, &r);
  wait_for(&r.done);
  ck_assert_msg(r.status == JW_GRPC_OK, "status %d: %s", r.status, r.msg);
  ck_assert_uint_eq(r.len, total);
  ck_assert(!r.bad_pattern);
  if (total > JW_RPC_STREAM_MSG_MAX)
    ck_assert_uint_gt(r.nmsgs, 1);
  client_close(&c);
}

START_TEST(test_stream_bytes_exact) { stream_test("8388608", 8388608); }
END_TEST

START_TEST(test_stream_eagain_resume) { stream_test("3000000e", 3000000); }
END_TEST

START_TEST(test_stream_empty) { stream_test("0", 0); }
END_TEST

/* TLS records the counting client read, and their payload bytes. */
static uint64_t g_records, g_record_bytes;

static void count_records(int write_p, int version, int content_type,
                          const void *buf, size_t len, SSL *ssl, void *arg) {
  const uint8_t *h = buf;
  if (!write_p && content_type == SSL3_RT_HEADER && len == 5) {
    g_records++;
    g_record_bytes += (uint64_t)h[3] << 8 | h[4];
  }
}

/*
 * A stream's output reaches the client in full TLS records: a full DATA
 * frame with its header is one record of 16,384 bytes, so 8 MiB of
 * messages take about 8 MiB / 16 KiB records, not twice as many (a
 * 16,384-byte payload and its 9-byte header made a full record and one of
 * 9 bytes). Each record costs a seal here and an open at the client.
 */
START_TEST(test_stream_fills_tls_records) {
  const uint64_t total = 8u << 20;
  jw_tls_ctx_t *tls =
      client_tls(CERT("ca.cert"), CERT("alice.cert"), CERT("alice.key"));
  cl_t c;
  res_t r = {0};
  start_server(0, 0, 0);
  SSL_CTX_set_msg_callback(jw__tls_ctx_ssl(tls), count_records);
  ck_assert_int_eq(client_open_tls(&c, tls), 0);
  /* The handshake's records and the session tickets are not counted. */
  assert_carries_on(&c);
  g_records = g_record_bytes = 0;
  r.check_pattern = true;
  call(&c, "/test.Svc/Stream", "8388608f", 8, 0, &r);
  wait_for(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  ck_assert_uint_eq(r.len, total);
  ck_assert(!r.bad_pattern);
  /* Every record but a handful (the response headers, the trailers, the
   * last partial frame) carries a full frame. */
  /* A record's plaintext less a frame header and the gRPC prefix. */
  uint64_t full = total / (SSL3_RT_MAX_PLAIN_LENGTH - 9 - 5);
  ck_assert_msg(g_records <= full + 16,
                "%" PRIu64 " records for %" PRIu64
                " bytes of messages (%" PRIu64
                " payload bytes): at most %" PRIu64 " expected",
                g_records, total, g_record_bytes, full + 16);
  client_close(&c);
}
END_TEST

START_TEST(test_paused_client_holds_server) {
  cl_t c;
  res_t r = {0};
  start_stream(&c, "16777216", 0, &r);
  jw_rpc_ccall_pause(r.call, true);
  /*
   * The server stops pulling once one stream window (1 MiB) is in flight
   * and one message is buffered. How long it takes to get there is the
   * machine's (under valgrind beside another test run, over 300 ms), so
   * the test waits until 100 ms pass without a byte pulled, for 30 s at
   * most, and then checks where it stopped.
   */
  uint64_t held, t0 = uv_hrtime();
  do {
    held = g_pulled;
    run_for(100);
  } while (g_pulled != held && uv_hrtime() - t0 < 30000000000ull);
  ck_assert_uint_eq(g_pulled, held);
  ck_assert_uint_le(g_pulled, (1u << 20) + 2 * (JW_RPC_STREAM_MSG_MAX + 5));
  ck_assert_uint_eq(r.len, 0);
  ck_assert(!r.done);
  jw_rpc_ccall_pause(r.call, false);
  wait_for(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  ck_assert_uint_eq(r.len, 16777216);
  ck_assert(!r.bad_pattern);
  client_close(&c);
}
END_TEST

START_TEST(test_cancel_mid_stream) {
  cl_t c;
  res_t r = {0};
  r.cancel_on_msg = true;
  start_stream(&c, "forever", 0, &r);
  wait_for(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_CANCELLED);
  wait_until(cancel_seen, NULL);
  ck_assert_int_eq(g_cancels, 1);
  assert_carries_on(&c);
  client_close(&c);
  ck_assert_int_eq(g_cancels, 1);
}
END_TEST

START_TEST(test_deadline) {
  cl_t c;
  res_t r = {0};
  start_as_alice(&c);
  uint64_t t0 = uv_hrtime();
  call_wait(&c, "/test.Svc/Hang", "x", 1, 100, &r);
  ck_assert_int_eq(r.status, JW_GRPC_DEADLINE_EXCEEDED);
  ck_assert_uint_ge(uv_hrtime() - t0, 90000000ull);
  wait_until(cancel_seen, NULL);
  ck_assert_int_eq(g_cancels, 1);
  client_close(&c);
}
END_TEST

/*
 * A server stream under way when its deadline passes: the handler hears
 * of it once, its pull is not called again (stream_cancel frees what the
 * pull uses), and the call ends with DEADLINE_EXCEEDED.
 */
START_TEST(test_stream_deadline) {
  cl_t c;
  res_t r = {0};
  start_stream(&c, "forever", 200, &r);
  wait_for(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_DEADLINE_EXCEEDED);
  ck_assert(!r.bad_pattern);
  wait_until(cancel_seen, NULL);
  assert_carries_on(&c);
  ck_assert_int_eq(g_cancels, 1);
  client_close(&c);
}
END_TEST

START_TEST(test_client_disconnect_cancels) {
  cl_t c;
  res_t r = {0};
  start_as_alice(&c);
  call(&c, "/test.Svc/Hang", "x", 1, 0, &r);
  run_for(50);
  client_close(&c);
  ck_assert(r.done);
  ck_assert_int_eq(r.status, JW_GRPC_UNAVAILABLE);
  wait_until(cancel_seen, NULL);
  ck_assert_int_eq(g_cancels, 1);
}
END_TEST

START_TEST(test_two_clients_identities) {
  cl_t a, b;
  res_t ra = {0}, rb = {0};
  start_server(0, 0, 0);
  ck_assert_int_eq(client_open(&a, "alice"), 0);
  ck_assert_int_eq(client_open(&b, "bob"), 0);
  call(&a, "/test.Svc/WhoAmI", "", 0, 0, &ra);
  call(&b, "/test.Svc/WhoAmI", "", 0, 0, &rb);
  wait_for(&ra.done);
  wait_for(&rb.done);
  ck_assert_str_eq((char *)ra.buf, "alice");
  ck_assert_str_eq((char *)rb.buf, "bob");
  free(ra.buf);
  free(rb.buf);
  client_close(&a);
  client_close(&b);
}
END_TEST

/*
 * Starts the default server and opens a connection that must fail with
 * want (the certificate paths are evaluated first: path_in keeps 8).
 * Returns the client's error text.
 */
static const char *open_refused(cl_t *c, const char *ca, const char *cert,
                                const char *key, int want) {
  start_server(0, 0, 0);
  ck_assert_int_eq(client_open_ca(c, ca, cert, key), want);
  return jw_rpc_client_error(c->cli);
}

START_TEST(test_untrusted_server_ca) {
  cl_t c;
  open_refused(&c, EXTRA("ca2.cert"), CERT("alice.cert"), CERT("alice.key"),
               JW_EVERIFY);
  ck_assert_msg(strncmp(jw_rpc_client_error(c.cli),
                        "certificate verify failed: ", 27) == 0,
                "%s", jw_rpc_client_error(c.cli));
  res_t r = {0};
  ck_assert_int_eq(jw_rpc_client_call(c.cli, "/test.Svc/Echo", NULL, 0, 0,
                                      on_msg, on_done, &r, NULL),
                   JW_ECLOSED);
  client_close(&c);
}
END_TEST

START_TEST(test_wrong_server_name) {
  cl_t c;
  char err[256];
  jw_tls_ctx_t *tls;
  start_server(0, 0, 0);
  ck_assert_int_eq(jw_tls_ctx_new_client(CERT("ca.cert"), CERT("alice.cert"),
                                         CERT("alice.key"), &tls, err,
                                         sizeof(err)),
                   0);
  memset(&c, 0, sizeof(c));
  jw_rpc_client_options_t o = {0};
  o.addr = addr;
  o.tls = tls;
  o.server_name = "not-the-server.example";
  ck_assert_int_eq(jw_rpc_client_new(&loop, &o, &c.cli), 0);
  jw_tls_ctx_free(tls);
  ck_assert_int_eq(jw_rpc_client_connect(c.cli, on_connect, &c), 0);
  wait_for(&c.connected);
  ck_assert_int_eq(c.err, JW_EVERIFY);
  client_close(&c);
}
END_TEST

START_TEST(test_unknown_client_ca) {
  cl_t c;
  const char *e = open_refused(&c, CERT("ca.cert"), EXTRA("mallory.cert"),
                               EXTRA("mallory.key"), JW_ETLS);
  ck_assert_msg(strstr(e, "the server refused this client certificate") &&
                    strstr(e, "unknown ca"),
                "%s", e);
  client_close(&c);
}
END_TEST

START_TEST(test_server_auth_only_cert_refused) {
  cl_t c;
  start_server2();
  int err = client_open_ca(&c, EXTRA("ca2.cert"), EXTRA("srvonly.cert"),
                           EXTRA("srvonly.key"));
  ck_assert_msg(err == JW_ETLS, "%d %s", err, jw_rpc_client_error(c.cli));
  ck_assert_ptr_nonnull(strstr(jw_rpc_client_error(c.cli),
                               "the server refused this client certificate"));
  client_close(&c);
}
END_TEST

START_TEST(test_no_cn_unauthenticated) {
  cl_t c;
  res_t r = {0};
  start_server2();
  ck_assert_int_eq(client_open_ca(&c, EXTRA("ca2.cert"), EXTRA("nocn.cert"),
                                  EXTRA("nocn.key")),
                   0);
  call_wait(&c, "/test.Svc/WhoAmI", "", 0, 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_UNAUTHENTICATED);
  ck_assert_uint_eq(r.nmsgs, 0);
  client_close(&c);
}
END_TEST

START_TEST(test_connection_refused) {
  cl_t c;
  /* Bind then close a server to find a port nobody listens on. */
  start_server(0, 0, 0);
  jw_rpc_server_close(srv, 0, srv_done_cb, NULL);
  wait_for(&srv_done);
  srv = NULL;
  ck_assert_int_eq(client_open(&c, "alice"), UV_ECONNREFUSED);
  ck_assert_ptr_nonnull(strstr(jw_rpc_client_error(c.cli), "refused"));
  client_close(&c);
}
END_TEST

START_TEST(test_connection_cap) {
  cl_t a, b;
  res_t r = {0};
  start_server(0, 1, 0);
  ck_assert_int_eq(client_open(&a, "alice"), 0);
  ck_assert_int_ne(client_open(&b, "bob"), 0);
  call_wait(&a, "/test.Svc/WhoAmI", "", 0, 0, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  free(r.buf);
  client_close(&a);
  client_close(&b);
}
END_TEST

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t req;
  bool eof;
  bool closed;
} raw_t;

static void raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  static char buf[4096];
  *b = uv_buf_init(buf, sizeof(buf));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n < 0)
    ((raw_t *)s->data)->eof = true;
}

static void raw_connected(uv_connect_t *req, int status) {
  ck_assert_int_eq(status, 0);
  uv_read_start(req->handle, raw_alloc, raw_read);
}

static void raw_closed(uv_handle_t *h) { ((raw_t *)h->data)->closed = true; }

START_TEST(test_handshake_timeout) {
  raw_t raw = {0};
  struct sockaddr_in sa;
  start_server(0, 0, 100);
  uv_ip4_addr("127.0.0.1", jw_rpc_server_port(srv), &sa);
  uv_tcp_init(&loop, &raw.tcp);
  raw.tcp.data = &raw;
  ck_assert_int_eq(
      uv_tcp_connect(&raw.req, &raw.tcp, (struct sockaddr *)&sa, raw_connected),
      0);
  uint64_t t0 = uv_hrtime();
  wait_for(&raw.eof);
  ck_assert_uint_ge(uv_hrtime() - t0, 80000000ull);
  uv_close((uv_handle_t *)&raw.tcp, raw_closed);
  wait_for(&raw.closed);
}
END_TEST

START_TEST(test_shutdown_with_calls_in_flight) {
  cl_t c;
  res_t slow = {0}, hang = {0}, late = {0};
  start_as_alice(&c);
  call(&c, "/test.Svc/Slow", "100", 3, 0, &slow);
  call(&c, "/test.Svc/Hang", "x", 1, 0, &hang);
  run_for(30);
  jw_rpc_server_close(srv, 400, srv_done_cb, NULL);
  /* After GOAWAY no new call is taken. */
  run_for(20);
  int rc = jw_rpc_client_call(c.cli, "/test.Svc/Echo", (const uint8_t *)"x", 1,
                              0, on_msg, on_done, &late, NULL);
  wait_for(&slow.done);
  /* The call in progress finished normally. */
  ck_assert_int_eq(slow.status, JW_GRPC_OK);
  ck_assert_str_eq((char *)slow.buf, "slow");
  wait_for(&srv_done);
  /* The one that never ends was cut off at the timeout. */
  ck_assert_int_eq(g_cancels, 1);
  wait_for(&hang.done);
  ck_assert_int_ne(hang.status, JW_GRPC_OK);
  if (rc == 0) {
    wait_for(&late.done);
    ck_assert_int_eq(late.status, JW_GRPC_UNAVAILABLE);
  }
  srv = NULL;
  client_close(&c);
  free(slow.buf);
}
END_TEST

/* ---- Plaintext HTTP/2 against the server connection code -------------- */

typedef struct {
  int headers_frames;
  bool end_stream_on_headers;
  int data_frames;
  char status[64];
  char ctype[64];
  char grpc_status[64];
  bool closed;
  uint32_t rst_code;
} h2res_t;

static int t_on_header(nghttp2_session *s, const nghttp2_frame *f,
                       const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud) {
  h2res_t *r = ud;
  char v[64];
  snprintf(v, sizeof(v), "%.*s", (int)valuelen, value);
  if (namelen == 7 && memcmp(name, ":status", 7) == 0)
    snprintf(r->status, sizeof(r->status), "%s", v);
  if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
    snprintf(r->ctype, sizeof(r->ctype), "%s", v);
  if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
    snprintf(r->grpc_status, sizeof(r->grpc_status), "%s", v);
  return 0;
}

static int t_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  h2res_t *r = ud;
  if (f->hd.stream_id != 1)
    return 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    r->headers_frames++;
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
      r->end_stream_on_headers = true;
  }
  if (f->hd.type == NGHTTP2_DATA)
    r->data_frames++;
  return 0;
}

static int t_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  ((h2res_t *)ud)->closed = true;
  ((h2res_t *)ud)->rst_code = code;
  return 0;
}

/*
 * Sends one request over the plaintext test connection and collects the
 * response frames with an nghttp2 client session.
 */
static void raw_request(const char *cn, const char *path, const char *ctype,
                        const uint8_t *body, size_t len, h2res_t *r) {
  nghttp2_session_callbacks *cbs;
  nghttp2_session *cs;
  jw__conn_t *conn;
  memset(r, 0, sizeof(*r));
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, t_on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, t_on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, t_on_close);
  nghttp2_session_client_new(&cs, cbs, r);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(cs, NGHTTP2_FLAG_NONE, NULL, 0);
  nghttp2_nv nva[5] = {
      {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
      {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
      {(uint8_t *)":authority", (uint8_t *)"t", 10, 1, 0},
      {(uint8_t *)"content-type", (uint8_t *)ctype, 12,
       ctype ? strlen(ctype) : 0, 0},
  };
  ck_assert_int_eq(jw__server_test_conn(srv, cn, &conn), 0);
  nghttp2_submit_headers(cs, len == 0 ? NGHTTP2_FLAG_END_STREAM : 0, -1, NULL,
                         nva, ctype ? 5 : 4, NULL);
  size_t off = 0;
  for (int round = 0; round < 50 && !r->closed; round++) {
    const uint8_t *out;
    ssize_t n;
    if (off < len && round > 0) {
      /* Body bytes as a DATA frame, built by hand: 1 KiB at a time. */
      size_t chunk = len - off < 1024 ? len - off : 1024;
      uint8_t hdr[9] = {0,
                        (uint8_t)(chunk >> 8),
                        (uint8_t)chunk,
                        0,
                        (uint8_t)(off + chunk == len ? 1 : 0),
                        0,
                        0,
                        0,
                        1};
      jw__conn_input(conn, hdr, 9);
      jw__conn_input(conn, body + off, chunk);
      off += chunk;
    }
    while ((n = nghttp2_session_mem_send(cs, &out)) > 0)
      jw__conn_input(conn, out, (size_t)n);
    jw__conn_flush(conn);
    if (conn->gather.len > 0) {
      ck_assert_int_ge(
          nghttp2_session_mem_recv(cs, conn->gather.base, conn->gather.len), 0);
      conn->gather.len = 0;
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  jw__server_test_close(conn);
  nghttp2_session_del(cs);
  run_for(1);
}

/* The answer's :status, content-type and grpc-status ("": none). */
static void assert_answer(const h2res_t *r, const char *status,
                          const char *ctype, const char *grpc_status) {
  ck_assert_str_eq(r->status, status);
  ck_assert_str_eq(r->ctype, ctype);
  ck_assert_str_eq(r->grpc_status, grpc_status);
}

START_TEST(test_trailers_only_on_error) {
  h2res_t r;
  start_server(0, 0, 0);
  raw_request("alice", "/test.Svc/Nope", "application/grpc", NULL, 0, &r);
  ck_assert(r.closed);
  ck_assert_int_eq(r.headers_frames, 1);
  ck_assert(r.end_stream_on_headers);
  ck_assert_int_eq(r.data_frames, 0);
  assert_answer(&r, "200", "application/grpc", "12");
}
END_TEST

START_TEST(test_bad_content_type_415) {
  h2res_t r;
  uint8_t body[3000];
  memset(body, 'x', sizeof(body));
  start_server(0, 0, 0);
  /* A plain HTTP answer with a text body, not a gRPC Trailers-Only one. */
  raw_request("alice", "/test.Svc/Echo", "text/plain", NULL, 0, &r);
  assert_answer(&r, "415", "text/plain; charset=utf-8", "");
  ck_assert_int_ge(r.data_frames, 1);
  raw_request("alice", "/test.Svc/Echo", NULL, NULL, 0, &r);
  ck_assert_str_eq(r.status, "415");
  ck_assert_int_ge(r.data_frames, 1);
  /* The body is read and thrown away; the answer follows its end. */
  raw_request("alice", "/test.Svc/Echo", "application/json", body, sizeof(body),
              &r);
  ck_assert_str_eq(r.status, "415");
  ck_assert_int_ge(r.data_frames, 1);
}
END_TEST

START_TEST(test_unary_cardinality) {
  h2res_t r;
  uint8_t two[12] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b'};
  start_server(0, 0, 0);
  /* No message at all. */
  raw_request("alice", "/test.Svc/Echo", "application/grpc", NULL, 0, &r);
  ck_assert_str_eq(r.grpc_status, "12");
  /* Two messages for a unary method. */
  raw_request("alice", "/test.Svc/Echo", "application/grpc+proto", two, 12, &r);
  ck_assert_str_eq(r.grpc_status, "12");
  /* The request ends inside a message. */
  raw_request("alice", "/test.Svc/Echo", "application/grpc", two, 8, &r);
  ck_assert_str_eq(r.grpc_status, "13");
  /* Compressed flag without grpc-encoding. */
  uint8_t comp[6] = {1, 0, 0, 0, 1, 'a'};
  raw_request("alice", "/test.Svc/Echo", "application/grpc", comp, 6, &r);
  ck_assert_str_eq(r.grpc_status, "13");
  /* A prefix split across DATA frames still makes one message. */
  uint8_t big[3000];
  memset(big, 'z', sizeof(big));
  big[0] = 0;
  big[1] = 0;
  big[2] = 0;
  big[3] = (uint8_t)((sizeof(big) - 5) >> 8);
  big[4] = (uint8_t)(sizeof(big) - 5);
  raw_request("alice", "/test.Svc/Echo", "application/grpc", big, sizeof(big),
              &r);
  ck_assert_str_eq(r.grpc_status, "0");
  ck_assert_int_eq(r.headers_frames, 2);
  ck_assert_int_ge(r.data_frames, 1);
}
END_TEST

/* ---- Suite ------------------------------------------------------------ */

/* Runs a shell command in the extra directory; exits the run on failure. */
static void sh(const char *cmd) {
  char full[2048];
  snprintf(full, sizeof(full), "cd %s && ( %s ) >/dev/null 2>&1", extradir,
           cmd);
  if (system(full) != 0) {
    fprintf(stderr, "failed: %s\n", full);
    exit(EXIT_FAILURE);
  }
}

/* Makes the odd certificates once per run, with EC keys for speed. */
static void make_extra_certs(void) {
  const char *newkey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";
  char cmd[1024];
  if (mkdtemp(extradir) == NULL) {
    perror("mkdtemp");
    exit(EXIT_FAILURE);
  }
  snprintf(cmd, sizeof(cmd),
           "openssl req -x509 %s -nodes -keyout ca2.key -out ca2.cert "
           "-days 2 -subj /CN=other-ca -addext "
           "basicConstraints=critical,CA:TRUE -addext "
           "keyUsage=critical,keyCertSign,cRLSign",
           newkey);
  sh(cmd);
  snprintf(cmd, sizeof(cmd),
           "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n'"
           " > client.ext && printf "
           "'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > "
           "srvonly.ext && printf 'basicConstraints=CA:FALSE\\n"
           "extendedKeyUsage=serverAuth\\nsubjectAltName=DNS:localhost,"
           "IP:127.0.0.1,IP:0:0:0:0:0:0:0:1\\n' > server.ext");
  sh(cmd);
  struct {
    const char *name, *subj, *ext;
  } certs[] = {
      {"server2", "/CN=localhost", "server.ext"},
      {"mallory", "/CN=mallory", "client.ext"},
      {"srvonly", "/CN=eve", "srvonly.ext"},
      {"nocn", "/O=jobworker/OU=nobody", "client.ext"},
  };
  for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++) {
    snprintf(cmd, sizeof(cmd),
             "openssl req %s -nodes -keyout %s.key -out %s.csr -subj %s && "
             "openssl x509 -req -in %s.csr -CA ca2.cert -CAkey ca2.key "
             "-CAcreateserial -out %s.cert -days 2 -extfile %s",
             newkey, certs[i].name, certs[i].name, certs[i].subj, certs[i].name,
             certs[i].name, certs[i].ext);
    sh(cmd);
  }
}

static void remove_extra_certs(void) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", extradir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", extradir);
}

int main(void) {
  certdir = getenv("JW_TEST_CERTS");
  if (certdir == NULL || access(path_in(certdir, "ca.cert"), R_OK) != 0) {
    fprintf(stderr, "JW_TEST_CERTS does not hold ca.cert: skipping\n");
    return 77;
  }
  make_extra_certs();

  Suite *s = suite_create("rpc");
  TCase *tc = test_tcase(s, "core", setup, teardown, 60);
  const TTest *const tc_tests[] = {
      test_unary_ok,
      test_many_calls_interleaved_on_one_connection,
      test_empty_request_and_reply,
      test_error_status_and_message,
      test_unknown_method,
      test_oversize_request,
      test_default_limit_4mib,
      test_stream_bytes_exact,
      test_stream_eagain_resume,
      test_stream_empty,
      test_stream_fills_tls_records,
      test_paused_client_holds_server,
      test_cancel_mid_stream,
      test_deadline,
      test_stream_deadline,
      test_client_disconnect_cancels,
      test_two_clients_identities,
      test_untrusted_server_ca,
      test_wrong_server_name,
      test_unknown_client_ca,
      test_server_auth_only_cert_refused,
      test_no_cn_unauthenticated,
      test_connection_refused,
      test_connection_cap,
      test_handshake_timeout,
      test_shutdown_with_calls_in_flight,
      test_trailers_only_on_error,
      test_bad_content_type_415,
      test_unary_cardinality,
      NULL};
  test_add_tests(tc, tc_tests);

  int rc = test_run_suite(s);
  if (!getenv("KEEP"))
    remove_extra_certs();
  return rc;
}
