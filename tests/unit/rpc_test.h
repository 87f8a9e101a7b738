/*
 * What the lib/rpc unit suites (conn, server, client, rpc_failmalloc,
 * error) share: test certificates from JW_TEST_CERTS, TLS contexts made
 * of them, bounded ways to run the loop until something happened, and
 * the suite runner.
 */
#ifndef JW_TESTS_RPC_TEST_H
#define JW_TESTS_RPC_TEST_H

#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "../test_common.h"
#include "jobworker/server.h"
#include "jobworker/tls.h"

/* A file of the test certificates (tests/make-certs.sh). */
static inline const char *rpc_test_cert(const char *name) {
  static char bufs[4][512];
  static int i;
  const char *dir = getenv("JW_TEST_CERTS");
  char *b = bufs[i++ % 4];
  ck_assert_msg(dir != NULL, "JW_TEST_CERTS is not set");
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

/* The server's (server.cert) or a client's (alice.cert) TLS context. */
static inline jw_tls_ctx_t *rpc_test_tls(bool server) {
  char err[256] = "";
  jw_tls_ctx_t *t = NULL;
  int rc = server ? jw_tls_ctx_new_server(
                        rpc_test_cert("ca.cert"), rpc_test_cert("server.cert"),
                        rpc_test_cert("server.key"), &t, err, sizeof(err))
                  : jw_tls_ctx_new_client(
                        rpc_test_cert("ca.cert"), rpc_test_cert("alice.cert"),
                        rpc_test_cert("alice.key"), &t, err, sizeof(err));
  ck_assert_msg(rc == 0, "%s", err);
  return t;
}

static inline void rpc_test_tick(uv_timer_t *t) { (void)t; }

/*
 * Runs loop until *flag is true or timeout_ms passed; returns *flag. A
 * 10 ms tick bounds every poll, so that the deadline is checked.
 */
static inline bool rpc_test_run_until(uv_loop_t *loop, const bool *flag,
                                      uint64_t timeout_ms) {
  uv_timer_t t;
  uint64_t deadline = uv_hrtime() + timeout_ms * 1000000;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, rpc_test_tick, 10, 10);
  while (!*(const volatile bool *)flag && uv_hrtime() < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

/* Runs loop until pred() holds or timeout_ms passed; returns pred(). */
static inline bool rpc_test_run_pred(uv_loop_t *loop, bool (*pred)(void),
                                     uint64_t timeout_ms) {
  uint64_t deadline = uv_hrtime() + timeout_ms * 1000000;
  bool never = false;
  while (!pred() && uv_hrtime() < deadline)
    rpc_test_run_until(loop, &never, 10);
  return pred();
}

static inline void rpc_test_server_done(jw_rpc_server_t *srv, void *data) {
  *(bool *)data = true;
}

/* Closes srv and waits (bounded) for its close callback; then it is gone. */
static inline void rpc_test_stop_server(uv_loop_t *loop, jw_rpc_server_t *srv) {
  bool done = false;
  jw_rpc_server_close(srv, 1000, rpc_test_server_done, &done);
  ck_assert(rpc_test_run_until(loop, &done, 10000));
}

static inline void rpc_test_watchdog(uv_timer_t *t) { uv_stop(t->loop); }

/*
 * Runs loop until nothing is left in it, for at most 10 s (an unref'd
 * watchdog stops it), and returns uv_loop_close: 0 when every handle the
 * test and the library opened was closed.
 */
static inline int rpc_test_drain(uv_loop_t *loop) {
  uv_timer_t w;
  uv_timer_init(loop, &w);
  uv_timer_start(&w, rpc_test_watchdog, 10000, 0);
  uv_unref((uv_handle_t *)&w);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&w, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return uv_loop_close(loop);
}

/*
 * Runs the suite and returns main's exit status. SIGPIPE is ignored, as
 * every embedder that serves over the network does (docs/library.md).
 */
static inline int rpc_test_main(Suite *s) {
  signal(SIGPIPE, SIG_IGN);
  return test_run_suite(s);
}

#endif /* JW_TESTS_RPC_TEST_H */
