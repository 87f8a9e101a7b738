/*
 * jw_strerror (lib/common/error.c): the sentence an embedder logs for
 * every code the library returns.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobworker/error.h"
#include "rpc_test.h"

static const int codes[] = {
    JW_ENOTFOUND, JW_EOWNER,    JW_ECLOSED,      JW_EAGAIN,
    JW_ELIMIT,    JW_ECANCELED, JW_EINVAL,       JW_ETLS,
    JW_EHTTP2,    JW_EVERIFY,   JW_EUNSUPPORTED,
};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

START_TEST(test_every_code_has_its_own_sentence) {
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = jw_strerror(codes[i]);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_gt(strlen(s), 3);
    ck_assert_str_ne(s, "unknown error");
    ck_assert_str_ne(s, jw_strerror(0));
    for (size_t j = 0; j < i; j++)
      ck_assert_msg(strcmp(s, jw_strerror(codes[j])) != 0,
                    "codes %d and %d share \"%s\"", codes[i], codes[j], s);
  }
  ck_assert_str_eq(jw_strerror(0), "success");
  ck_assert_str_eq(jw_strerror(JW_ENOTFOUND), "job not found");
  ck_assert_str_eq(jw_strerror(JW_EINVAL), "invalid argument");
}
END_TEST

START_TEST(test_system_errors_say_what_errno_says) {
  ck_assert_str_eq(jw_strerror(-ENOENT), strerror(ENOENT));
  ck_assert_str_eq(jw_strerror(-ENOMEM), strerror(ENOMEM));
  ck_assert_str_eq(jw_strerror(-EADDRINUSE), strerror(EADDRINUSE));
  /* A system error never reads as one of the library's own. */
  for (size_t i = 0; i < NCODES; i++)
    ck_assert_str_ne(jw_strerror(-ENOENT), jw_strerror(codes[i]));
}
END_TEST

START_TEST(test_unknown_codes_fall_back) {
  /* Past the last code, below the range, positive: never NULL. */
  const int unknown[] = {JW_EUNSUPPORTED - 1,
                         JW_ERR_BASE - 1000,
                         JW_ERR_BASE,
                         JW_ERR_BASE - 12345,
                         1,
                         42,
                         -2147483647 - 1};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    const char *s = jw_strerror(unknown[i]);
    ck_assert_ptr_nonnull(s);
    if (unknown[i] > 0 || unknown[i] <= JW_ERR_BASE)
      ck_assert_str_eq(s, "unknown error");
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("error");
  TCase *tc = test_tcase(s, "strerror", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_every_code_has_its_own_sentence,
                                   test_system_errors_say_what_errno_says,
                                   test_unknown_codes_fall_back, NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
