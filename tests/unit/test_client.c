/*
 * The client role (lib/rpc/client.c, ccall.c) at its edges: addresses it
 * refuses, a server that is not there, and closing with calls in flight,
 * against a real server on 127.0.0.1.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "jobworker/client.h"
#include "jobworker/server.h"
#include "rpc_test.h"

static uv_loop_t loop;
static jw_tls_ctx_t *ctls;

static void setup(void) {
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ctls = rpc_test_tls(false);
}

static void teardown(void) {
  jw_tls_ctx_free(ctls);
  ck_assert_int_eq(rpc_test_drain(&loop), 0);
}

static bool closed;
static int nclosed;
static int ndone_at_close;
static int ndone;

static void close_cb(jw_rpc_client_t *cli, void *data) {
  closed = true;
  nclosed++;
  ndone_at_close = ndone;
}

static bool connect_seen;
static int connect_err;
static void connect_cb(jw_rpc_client_t *cli, int err, void *data) {
  connect_seen = true;
  connect_err = err;
}

static jw_rpc_client_options_t options(const char *addr) {
  jw_rpc_client_options_t o = {0};
  o.addr = addr;
  o.tls = ctls;
  return o;
}

START_TEST(test_bad_addresses_are_refused) {
  static const char *bad[] = {"",       "host",       ":3000", "[::1]",
                              "h:x",    "h:65536",    "a:b:c", "[]:1",
                              "[::1]x", "127.0.0.1:", NULL};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    jw_rpc_client_options_t o = options(bad[i]);
    jw_rpc_client_t *cli = (jw_rpc_client_t *)&loop;
    ck_assert_msg(jw_rpc_client_new(&loop, &o, &cli) == JW_EINVAL,
                  "accepted '%s'", bad[i] ? bad[i] : "(null)");
    ck_assert_ptr_null(cli);
  }
  /* A server's TLS context is no client's. */
  jw_tls_ctx_t *stls = rpc_test_tls(true);
  jw_rpc_client_options_t o = options("127.0.0.1:1");
  jw_rpc_client_t *cli;
  o.tls = stls;
  ck_assert_int_eq(jw_rpc_client_new(&loop, &o, &cli), JW_EINVAL);
  ck_assert_ptr_null(cli);
  jw_tls_ctx_free(stls);
}
END_TEST

static void done_count(jw_rpc_ccall_t *call, int status, const char *msg,
                       void *data) {
  ndone++;
  *(int *)data = status;
}

START_TEST(test_connect_refused) {
  /* A port that was free a moment ago: bound, read, closed. */
  uv_tcp_t t;
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char addr[64];
  uv_tcp_init(&loop, &t);
  uv_ip4_addr("127.0.0.1", 0, &a);
  ck_assert_int_eq(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
  uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d",
           ntohs(((struct sockaddr_in *)&ss)->sin_port));
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);

  jw_rpc_client_options_t o = options(addr);
  jw_rpc_client_t *cli;
  ck_assert_int_eq(jw_rpc_client_new(&loop, &o, &cli), 0);
  connect_seen = false;
  ck_assert_int_eq(jw_rpc_client_connect(cli, connect_cb, NULL), 0);
  /* Not connected: a call is refused at once, with no on_done. */
  int st = -1;
  ndone = 0;
  ck_assert_int_eq(jw_rpc_client_call(cli, "/t.T/Echo", NULL, 0, 0, NULL,
                                      done_count, &st, NULL),
                   JW_ECLOSED);
  ck_assert(rpc_test_run_until(&loop, &connect_seen, 20000));
  ck_assert_int_eq(connect_err, UV_ECONNREFUSED);
  char want[128];
  snprintf(want, sizeof(want), "cannot connect to %s: connection refused",
           addr);
  ck_assert_str_eq(jw_rpc_client_error(cli), want);
  /* Connecting twice is a caller's error, not a second attempt. */
  ck_assert_int_eq(jw_rpc_client_connect(cli, connect_cb, NULL), JW_EINVAL);
  closed = false;
  nclosed = 0;
  jw_rpc_client_close(cli, close_cb, NULL);
  ck_assert(rpc_test_run_until(&loop, &closed, 10000));
  ck_assert_int_eq(nclosed, 1);
  ck_assert_int_eq(ndone, 0);
}
END_TEST

/* ---- A server whose handler never answers ---------------------------- */

static int nhandled;
static int ncanceled;

static void on_cancel(jw_rpc_call_t *call, void *data) { ncanceled++; }

static void h_hang(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {
  nhandled++;
  jw_rpc_call_on_cancel(call, on_cancel, NULL);
}

static const jw_rpc_method_t methods[] = {{"/t.T/Hang", h_hang, 0}};

static bool handled3(void) { return nhandled == 3; }
static bool canceled3(void) { return ncanceled == 3; }

START_TEST(test_close_with_calls_in_flight) {
  jw_tls_ctx_t *stls = rpc_test_tls(true);
  jw_rpc_server_options_t so = {0};
  jw_rpc_server_t *srv;
  char addr[64];
  so.addr = "127.0.0.1:0";
  so.tls = stls;
  so.methods = methods;
  so.nmethods = 1;
  ck_assert_int_eq(jw_rpc_server_start(&loop, &so, &srv), 0);
  jw_tls_ctx_free(stls);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", jw_rpc_server_port(srv));

  jw_rpc_client_options_t o = options(addr);
  o.server_name = "localhost";
  jw_rpc_client_t *cli;
  ck_assert_int_eq(jw_rpc_client_new(&loop, &o, &cli), 0);
  connect_seen = false;
  ck_assert_int_eq(jw_rpc_client_connect(cli, connect_cb, NULL), 0);
  ck_assert(rpc_test_run_until(&loop, &connect_seen, 20000));
  ck_assert_msg(connect_err == 0, "%s", jw_rpc_client_error(cli));

  int status[3] = {-1, -1, -1};
  nhandled = ncanceled = ndone = 0;
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(jw_rpc_client_call(cli, "/t.T/Hang", (const uint8_t *)"x",
                                        1, 0, NULL, done_count, &status[i],
                                        NULL),
                     0);
  ck_assert(rpc_test_run_pred(&loop, handled3, 20000));
  ck_assert_int_eq(ndone, 0);

  closed = false;
  nclosed = 0;
  jw_rpc_client_close(cli, close_cb, NULL);
  /* Closing: no new call, and the ones in flight end from the loop. */
  ck_assert_int_eq(jw_rpc_client_call(cli, "/t.T/Hang", NULL, 0, 0, NULL,
                                      done_count, &status[0], NULL),
                   JW_ECLOSED);
  ck_assert_int_eq(ndone, 0);
  ck_assert(rpc_test_run_until(&loop, &closed, 20000));
  ck_assert_int_eq(nclosed, 1);
  /* Every call ended exactly once, before close_cb, as UNAVAILABLE. */
  ck_assert_int_eq(ndone, 3);
  ck_assert_int_eq(ndone_at_close, 3);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(status[i], JW_GRPC_UNAVAILABLE);

  /* The server saw the client go: each handler hears of its call. */
  ck_assert(rpc_test_run_pred(&loop, canceled3, 20000));
  rpc_test_stop_server(&loop, srv);
}
END_TEST

int main(void) {
  Suite *s = suite_create("client");
  TCase *tc = test_tcase(s, "client", setup, teardown, 120);
  const TTest *const tc_tests[] = {test_bad_addresses_are_refused,
                                   test_connect_refused,
                                   test_close_with_calls_in_flight, NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
