/*
 * What the lib/rpc unit suites (conn, server, client, rpc_failmalloc)
 * share: test certificates from JW_TEST_CERTS and a bounded way to run
 * the loop until something happened.
 */
#ifndef JW_TESTS_RPC_TEST_H
#define JW_TESTS_RPC_TEST_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

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

#endif /* JW_TESTS_RPC_TEST_H */
