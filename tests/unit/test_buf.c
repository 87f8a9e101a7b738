/*
 * Unit tests for lib/common/buf.[ch] (the capped growth policy) and
 * lib/common/fs.[ch].
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_common.h"
#include "buf.h"
#include "fs.h"
#include "jobworker/error.h"

START_TEST(test_grow_policy) {
  /* From nothing: the minimum, then doubling. */
  ck_assert_uint_eq(jw__buf_grow_cap(0, 1, 16384, 1 << 20), 16384);
  ck_assert_uint_eq(jw__buf_grow_cap(16384, 16385, 16384, 1 << 20), 32768);
  ck_assert_uint_eq(jw__buf_grow_cap(16384, 100000, 16384, 1 << 20), 131072);
  /* Already big enough: unchanged. */
  ck_assert_uint_eq(jw__buf_grow_cap(65536, 1000, 16384, 1 << 20), 65536);
  /* Clamped to the cap, never past it; over it is refused. */
  ck_assert_uint_eq(jw__buf_grow_cap(524288, 600000, 16384, 700000), 700000);
  ck_assert_uint_eq(jw__buf_grow_cap(0, 700001, 16384, 700000), 0);
  /* No overflow near SIZE_MAX. */
  ck_assert_uint_eq(jw__buf_grow_cap(SIZE_MAX / 2 + 1, SIZE_MAX, 1, SIZE_MAX),
                    SIZE_MAX);
}
END_TEST

START_TEST(test_reserve_capped) {
  jw__buf_t b = {0};
  ck_assert_int_eq(jw__buf_reserve(&b, 10, 64, 256), 0);
  ck_assert_uint_eq(b.cap, 64);
  b.len = 200;
  ck_assert_int_eq(jw__buf_reserve(&b, 56, 64, 256), 0);
  ck_assert_uint_eq(b.cap, 256);
  ck_assert_int_eq(jw__buf_reserve(&b, 57, 64, 256), JW_ELIMIT);
  ck_assert_uint_eq(b.cap, 256);
  ck_assert_int_eq(jw__buf_reserve(&b, SIZE_MAX, 64, SIZE_MAX), JW_ELIMIT);
  jw__buf_free(&b);
  ck_assert_ptr_null(b.base);
  ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_mkdir_p) {
  char dir[] = "/tmp/jw-test-fs-XXXXXX";
  char path[256], file[256];
  struct stat st;
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/a/b/c", dir);
  ck_assert_int_eq(jw__mkdir_p(path, 0700), 0);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert(S_ISDIR(st.st_mode));
  ck_assert_int_eq(st.st_mode & 0777, 0700);
  /* Again: nothing to do. */
  ck_assert_int_eq(jw__mkdir_p(path, 0700), 0);
  /* A file in the way. */
  snprintf(file, sizeof(file), "%s/f", dir);
  FILE *f = fopen(file, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  ck_assert_int_eq(jw__mkdir_p(file, 0700), -ENOTDIR);
  snprintf(path, sizeof(path), "%s/f/x", dir);
  ck_assert_int_eq(jw__mkdir_p(path, 0700), -ENOTDIR);
  ck_assert_int_eq(jw__mkdir_p("", 0700), -ENOENT);
  unlink(file);
  snprintf(path, sizeof(path), "%s/a/b/c", dir);
  rmdir(path);
  snprintf(path, sizeof(path), "%s/a/b", dir);
  rmdir(path);
  snprintf(path, sizeof(path), "%s/a", dir);
  rmdir(path);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("buf");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_grow_policy, test_reserve_capped,
                                   test_mkdir_p, NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
