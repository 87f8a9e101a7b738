/*
 * nghttp2's failmalloc_test idea for the lib/rpc suites: the program is
 * linked with --wrap=malloc,calloc,realloc,strdup,strndup, so that every
 * allocation the library's own (static) code makes goes through here,
 * and fm_arm(n) makes the nth of them from now fail. Allocations inside
 * the shared libraries (libuv, nghttp2, OpenSSL) are theirs and are not
 * counted. A test arms only around the code it tests, and asserts nothing
 * while armed: Check's own allocations would fail too.
 */
#ifndef JW_TESTS_FAILMALLOC_RPC_H
#define JW_TESTS_FAILMALLOC_RPC_H

#include <stdbool.h>
#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long fm_countdown; /* 0: nothing fails */
static bool fm_failed;    /* the armed allocation came and failed */

/* Makes the nth allocation from now fail (n >= 1). */
static inline void fm_arm(long n) {
  fm_countdown = n;
  fm_failed = false;
}

static inline void fm_disarm(void) { fm_countdown = 0; }

static inline bool fm_fail(void) {
  if (fm_countdown <= 0 || --fm_countdown > 0)
    return false;
  fm_failed = true;
  return true;
}

void *__wrap_malloc(size_t n) { return fm_fail() ? NULL : __real_malloc(n); }

void *__wrap_calloc(size_t n, size_t size) {
  return fm_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n) {
  return fm_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s) {
  return fm_fail() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n) {
  return fm_fail() ? NULL : __real_strndup(s, n);
}

#define FM_LINK_ARGS                                                           \
  "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,"              \
  "--wrap=strndup"

#endif /* JW_TESTS_FAILMALLOC_RPC_H */
