/*
 * What the Check suites share: knobs for slow runs (tools/valgrind.sh),
 * a sleep that signals do not cut short, a bounded way to run a loop,
 * descriptor counting, temp-tree removal and the suite runner.
 *
 * JW_TEST_SCALE=N (a divisor, default 1) divides the data volumes and
 * counts that some tests push through (bytes of output, number of jobs),
 * so that a run under valgrind ends in minutes. It changes nothing that is
 * asserted: bounds stay as they are, and expected values are the scaled
 * volume itself.
 */
#ifndef JW_TESTS_TEST_COMMON_H
#define JW_TESTS_TEST_COMMON_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "jobworker/process.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define JW_TEST_HAVE_VALGRIND_H 1
#endif
#endif

/*
 * The PATH every job starts with, as docs/protocol.md promises it: the
 * expected value (written here, not taken from the library, so that a
 * change to the library's default fails the tests).
 */
#define DEFAULT_PATH                                                           \
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The divisor from JW_TEST_SCALE; 1 when unset or not a positive number. */
static inline uint64_t test_scale(void) {
  const char *s = getenv("JW_TEST_SCALE");
  char *end;
  unsigned long long v;

  if (s == NULL || *s == '\0')
    return 1;
  v = strtoull(s, &end, 10);
  return *end == '\0' && v > 0 ? (uint64_t)v : 1;
}

/* n divided by the scale, but never below floor (nor below 1). */
static inline uint64_t scaled(uint64_t n, uint64_t floor) {
  uint64_t v = n / test_scale();
  if (v < floor)
    v = floor;
  return v > 0 ? v : 1;
}

/*
 * JW_FORCE_NO_PIDFD=1 (tools/valgrind.sh sets it where valgrind lacks
 * pidfd_open) makes every suite watch its jobs through the SIGCHLD
 * fallback. The library reads no environment, so the suites pass it on
 * through jw_process_configure, before main and so before any start.
 */
__attribute__((constructor)) static void test_configure_process(void) {
  const char *s = getenv("JW_FORCE_NO_PIDFD");
  jw_process_config_t cfg = {.no_pidfd = s != NULL && strcmp(s, "1") == 0};
  if (jw_process_configure(&cfg) != 0)
    abort();
}

/*
 * Whether this process runs under valgrind: its own client request when
 * the header is there, else JW_UNDER_VALGRIND=1, which tools/valgrind.sh
 * sets. Only checks that valgrind itself makes meaningless (the growth of
 * RSS, which its shadow memory inflates) may depend on this.
 */
static inline int under_valgrind(void) {
  const char *s = getenv("JW_UNDER_VALGRIND");
#ifdef JW_TEST_HAVE_VALGRIND_H
  if (RUNNING_ON_VALGRIND)
    return 1;
#endif
  return s != NULL && strcmp(s, "1") == 0;
}

/*
 * Sleeps ms milliseconds in full. usleep() returns early when a signal
 * handler runs, and on hosts without pidfds lib/worker handles SIGCHLD:
 * a job ending would cut short the time a test gives another to start.
 */
static inline void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000,
                        .tv_nsec = (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static inline void test_tick(uv_timer_t *t) { (void)t; }

/* A predicate for test_run_until: the int that arg points to is set. */
static inline int test_flag_set(void *arg) { return *(int *)arg != 0; }

/*
 * Runs loop until pred(arg) holds or timeout_ms passed, and returns pred's
 * last answer. A 20 ms tick keeps UV_RUN_ONCE from blocking in the poll
 * past the deadline when nothing else would wake the loop.
 */
static inline int test_run_until(uv_loop_t *loop, int (*pred)(void *),
                                 void *arg, uint64_t timeout_ms) {
  uv_timer_t t;
  uint64_t deadline = uv_hrtime() / 1000000 + timeout_ms;
  int ok;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, test_tick, 20, 20);
  while (!(ok = pred(arg)) && uv_hrtime() / 1000000 < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

/* Open descriptors of this process, not counting the one used to look. */
static inline int test_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1;
}

static inline int test_rm_entry(const char *p, const struct stat *st, int flag,
                                struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

/* Removes a test's temporary tree, depth first, not following links. */
static inline void test_rm_tree(const char *path) {
  nftw(path, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Runs a suite and returns main's exit status. libuv opens process-wide
 * descriptors with the first loop; one is opened and closed first so that
 * the tests' descriptor counts compare like with like.
 */
static inline int test_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  uv_loop_t loop;
  int failed;
  uv_loop_init(&loop);
  uv_loop_close(&loop);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* JW_TESTS_TEST_COMMON_H */
