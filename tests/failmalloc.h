/*
 * failmalloc: makes the Nth allocation from now fail, to test that every
 * allocation failing in turn yields an error return and leaks nothing
 * (as nghttp2's failmalloc_test does). Generic: any suite may use it.
 *
 * The program must be linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,
 *   --wrap=strndup
 * (failmalloc_link_args in tests/meson.build), so that the calls of the
 * code linked into it statically (lib/, the test itself) go through the
 * wrappers below; shared libraries (libuv, nghttp2, OpenSSL, libc itself)
 * are not affected. Arm only around the code under test, and assert
 * nothing while armed: Check's own allocations would fail too.
 * Include this header in exactly one file of that program: it defines
 * the wrappers.
 *
 * Typical use, with op() the calls under test:
 *
 *   for (n = 0;; n++) {
 *     failmalloc_arm(n);
 *     err = op();
 *     calls = failmalloc_disarm();
 *     if (n >= calls) break;          (nothing failed: op() succeeded)
 *     ck_assert_int_eq(err, -ENOMEM); (and undo what op() did, if any)
 *   }
 *
 * Leaks show under LSan (the ASan build) when the program exits.
 */
#ifndef JW_TESTS_FAILMALLOC_H
#define JW_TESTS_FAILMALLOC_H

#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

/* Whether the wrappers count; the calls since arming; the one to fail. */
static int failmalloc_armed;
static size_t failmalloc_calls;
static size_t failmalloc_fail_at;

/* Counts a call; whether it is the one to fail. */
static int failmalloc_fail_now(void) {
  if (!failmalloc_armed)
    return 0;
  return failmalloc_calls++ == failmalloc_fail_at;
}

/* Makes allocation n (0 the next one) fail, and only that one. */
static inline void failmalloc_arm(size_t n) {
  failmalloc_calls = 0;
  failmalloc_fail_at = n;
  failmalloc_armed = 1;
}

/* Stops failing; returns how many allocations were made since arming. */
static inline size_t failmalloc_disarm(void) {
  failmalloc_armed = 0;
  return failmalloc_calls;
}

/* Whether the allocation to fail came (and failed) since the last arming. */
static inline int failmalloc_failed(void) {
  return failmalloc_calls > failmalloc_fail_at;
}

void *__wrap_malloc(size_t size) {
  return failmalloc_fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size) {
  return failmalloc_fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size) {
  return failmalloc_fail_now() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s) {
  return failmalloc_fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n) {
  return failmalloc_fail_now() ? NULL : __real_strndup(s, n);
}

#endif /* JW_TESTS_FAILMALLOC_H */
