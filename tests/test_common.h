/*
 * What the Check suites share: knobs for slow runs (tools/valgrind.sh)
 * and a sleep that signals do not cut short.
 *
 * JW_TEST_SCALE=N (a divisor, default 1) divides the data volumes and
 * counts that some tests push through (bytes of output, number of jobs),
 * so that a run under valgrind ends in minutes. It changes nothing that is
 * asserted: bounds stay as they are, and expected values are the scaled
 * volume itself.
 */
#ifndef JW_TESTS_TEST_COMMON_H
#define JW_TESTS_TEST_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define JW_TEST_HAVE_VALGRIND_H 1
#endif
#endif

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

#endif /* JW_TESTS_TEST_COMMON_H */
