/*
 * Every allocation of lib/rpc failing in turn (tests/failmalloc.h) while a
 * server starts and while a client call runs end to end: each yields an
 * error, a call's on_done still runs exactly once, and nothing leaks (the
 * loop closes empty; LeakSanitizer checks the memory at exit).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../failmalloc.h"
#include "jobworker/client.h"
#include "jobworker/server.h"
#include "rpc_test.h"
#include "server_int.h"

/* More than either path allocates: the loops end before it. */
#define FM_MAX 400

static uv_loop_t loop;
static jw_tls_ctx_t *stls, *ctls;

static void h_echo(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {
  /* A reply that cannot be built fails the call itself. */
  jw_rpc_call_reply(call, req, len);
}

/* Never answers: only the call's deadline ends it. */
static void h_hang(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                   void *data) {}

static const jw_rpc_method_t methods[] = {{"/t.T/Echo", h_echo, 0},
                                          {"/t.T/Hang", h_hang, 0},
                                          {"/t.T/Third", h_echo, 0}};

static void tls_setup(void) {
  stls = rpc_test_tls(true);
  ctls = rpc_test_tls(false);
}

static void tls_teardown(void) {
  failmalloc_disarm();
  jw_tls_ctx_free(stls);
  jw_tls_ctx_free(ctls);
}

static jw_rpc_server_options_t server_options(void) {
  jw_rpc_server_options_t o = {0};
  o.addr = "127.0.0.1:0";
  o.tls = stls;
  o.methods = methods;
  o.nmethods = sizeof(methods) / sizeof(methods[0]);
  return o;
}

START_TEST(test_server_start) {
  long n;
  for (n = 1; n <= FM_MAX; n++) {
    jw_rpc_server_options_t o = server_options();
    jw_rpc_server_t *srv = NULL;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    failmalloc_arm((size_t)n - 1);
    int rc = jw_rpc_server_start(&loop, &o, &srv);
    failmalloc_disarm();
    if (!failmalloc_failed()) {
      /* Past the last allocation: the start succeeds. */
      ck_assert_int_eq(rc, 0);
      rpc_test_stop_server(&loop, srv);
      ck_assert_int_eq(rpc_test_drain(&loop), 0);
      break;
    }
    ck_assert_msg(rc == -ENOMEM, "allocation %ld failed, start returned %d", n,
                  rc);
    ck_assert_ptr_null(srv);
    ck_assert_int_eq(rpc_test_drain(&loop), 0);
  }
  ck_assert_int_gt(n, 1);
  ck_assert_int_le(n, FM_MAX);
}
END_TEST

static bool connected;
static int connect_err;
static void connect_cb(jw_rpc_client_t *cli, int err, void *data) {
  connected = true;
  connect_err = err;
}

static int nmsg;
static bool msg_ok;
static void on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                   void *data) {
  nmsg++;
  msg_ok = len == 5 && memcmp(msg, "hello", 5) == 0;
}

static int ndone;
static bool msg_null;
static int done_status;
static bool done;
static void on_done(jw_rpc_ccall_t *call, int status, const char *msg,
                    void *data) {
  ndone++;
  done = true;
  done_status = status;
  msg_null = msg == NULL; /* no assertion while armed: Check allocates */
}

static bool cli_closed;
static void cli_close_cb(jw_rpc_client_t *cli, void *data) {
  cli_closed = true;
}

/*
 * One call per allocation failing in turn, each on a new server and
 * client. hang: the server stops reading the connection, and the call's
 * 300 ms deadline must end it whatever failed.
 */
static void client_call(bool hang) {
  long n;
  bool call_ok = false;
  for (n = 1; n <= FM_MAX; n++) {
    jw_rpc_server_options_t so = server_options();
    jw_rpc_server_t *srv;
    jw_rpc_client_t *cli;
    char addr[64];
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(jw_rpc_server_start(&loop, &so, &srv), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", jw_rpc_server_port(srv));
    jw_rpc_client_options_t co = {.addr = addr, .tls = ctls};
    ck_assert_int_eq(jw_rpc_client_new(&loop, &co, &cli), 0);
    connected = false;
    ck_assert_int_eq(jw_rpc_client_connect(cli, connect_cb, NULL), 0);
    ck_assert(rpc_test_run_until(&loop, &connected, 20000));
    ck_assert_msg(connect_err == 0, "%s", jw_rpc_client_error(cli));
    if (hang) {
      /* The server stops reading: only the client's timer can end it. */
      ck_assert(!jw__list_empty(&srv->conns));
      sconn_t *sc = jw__list_data(jw__list_first(&srv->conns), sconn_t, node);
      jw__conn_read_pause(&sc->c, true);
    }

    /* From here on, on both sides of the call, allocation n fails. */
    ndone = nmsg = 0;
    msg_ok = false;
    done = false;
    failmalloc_arm((size_t)n - 1);
    int rc = jw_rpc_client_call(cli, hang ? "/t.T/Hang" : "/t.T/Echo",
                                (const uint8_t *)"hello", 5, hang ? 300 : 20000,
                                on_msg, on_done, NULL, NULL);
    bool ended = rc == 0 && rpc_test_run_until(&loop, &done, 30000);
    failmalloc_disarm();
    ck_assert_msg(rc != 0 || ended, "allocation %ld: the call never ended", n);
    bool failed = failmalloc_failed();
    if (rc != 0) {
      ck_assert_msg(failed && rc == -ENOMEM,
                    "allocation %ld: the call returned %d", n, rc);
    } else {
      /*
       * on_done once. OK means the reply arrived whole: a failure after it
       * (a later write of either side) may still end the connection.
       */
      ck_assert_int_eq(ndone, 1);
      ck_assert(!msg_null);
      if (!failed)
        ck_assert_int_eq(done_status,
                         hang ? JW_GRPC_DEADLINE_EXCEEDED : JW_GRPC_OK);
      if (done_status == JW_GRPC_OK)
        ck_assert_msg(nmsg == 1 && msg_ok,
                      "allocation %ld: OK without the reply", n);
    }
    cli_closed = false;
    jw_rpc_client_close(cli, cli_close_cb, NULL);
    ck_assert(rpc_test_run_until(&loop, &cli_closed, 20000));
    rpc_test_stop_server(&loop, srv);
    ck_assert_int_eq(ndone, rc == 0 ? 1 : 0);
    ck_assert_int_eq(rpc_test_drain(&loop), 0);
    if (!failed) {
      call_ok = true;
      break;
    }
  }
  ck_assert(call_ok);
  ck_assert_int_gt(n, 3); /* the call path does allocate */
}

START_TEST(test_client_call) { client_call(false); }
END_TEST

START_TEST(test_client_call_deadline) { client_call(true); }
END_TEST

int main(void) {
  Suite *s = suite_create("rpc_failmalloc");
  TCase *tc = test_tcase(s, "failmalloc", tls_setup, tls_teardown, 600);
  const TTest *const tc_tests[] = {test_server_start, test_client_call,
                                   test_client_call_deadline, NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
