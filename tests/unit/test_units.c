/*
 * The unit parsers (lib/common/units.c) of teleportd's flags and the CLI:
 * sizes, CPU amounts and durations, exactly the forms docs/isolation.md
 * and --help describe.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "../test_common.h"
#include "jobworker/units.h"

#define MIB (1024 * 1024)

START_TEST(test_parse_size_and_cpus) {
  int64_t v;
  ck_assert_int_eq(jw_parse_size("512M", &v), 0);
  ck_assert_int_eq(v, 512LL * MIB);
  ck_assert_int_eq(jw_parse_size("64MiB", &v), 0);
  ck_assert_int_eq(v, 64LL * MIB);
  ck_assert_int_eq(jw_parse_size("1G", &v), 0);
  ck_assert_int_eq(v, 1024LL * MIB);
  ck_assert_int_eq(jw_parse_size("10k", &v), 0);
  ck_assert_int_eq(v, 10240);
  ck_assert_int_eq(jw_parse_size("4096", &v), 0);
  ck_assert_int_eq(v, 4096);
  ck_assert_int_eq(jw_parse_size("1.5G", &v), 0);
  ck_assert_int_eq(v, 1536LL * MIB);
  ck_assert_int_eq(jw_parse_size("12X", &v), -EINVAL);
  ck_assert_int_eq(jw_parse_size("", &v), -EINVAL);
  ck_assert_int_eq(jw_parse_size("-1M", &v), -EINVAL);
  ck_assert_int_eq(jw_parse_cpus("0.5", &v), 0);
  ck_assert_int_eq(v, 500);
  ck_assert_int_eq(jw_parse_cpus("2", &v), 0);
  ck_assert_int_eq(v, 2000);
  ck_assert_int_eq(jw_parse_cpus("250m", &v), 0);
  ck_assert_int_eq(v, 250);
  ck_assert_int_eq(jw_parse_cpus("0.2", &v), 0);
  ck_assert_int_eq(v, 200);
  ck_assert_int_eq(jw_parse_cpus("half", &v), -EINVAL);
}
END_TEST

/*
 * Only what docs/isolation.md describes parses: strtod's nan, inf, hex,
 * exponents, signs and spaces do not ("--max-memory nan" once lifted the
 * maximum, "--default-memory nan" made every Start fail), nor does a value
 * past the largest. Exact values, fractions rounded as documented.
 */
START_TEST(test_parse_strict) {
  static const char *const bad_sizes[] = {"nan",
                                          "NaN",
                                          "inf",
                                          "-inf",
                                          "infinity",
                                          "0x10",
                                          "0x1p4",
                                          "1e3",
                                          "1E3",
                                          "1e3M",
                                          "+1M",
                                          "-0",
                                          " 1M",
                                          "1M ",
                                          "1 M",
                                          ".5M",
                                          "5.M",
                                          "1..5M",
                                          "1.5",
                                          "1.5B",
                                          "M",
                                          "1MM",
                                          "1Mi",
                                          "1MiBB",
                                          "1mb",
                                          "1KB2",
                                          "9223372036854775808",
                                          "8388608T",
                                          "99999999999999999999999",
                                          "1\n",
                                          "",
                                          "1,5M",
                                          "1_000"};
  static const char *const bad_cpus[] = {
      "nan",     "inf",         "0x1",      "1e2", "-1",  "+1", " 1",
      "1 ",      ".5",          "2.",       "1mm", "1M",  "1k", "250 m",
      "1000001", "1000000.001", "1000001m", "",    "half"};
  int64_t v;
  for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
    ck_assert_msg(jw_parse_size(bad_sizes[i], &v) == -EINVAL, "size '%s'",
                  bad_sizes[i]);
  for (size_t i = 0; i < sizeof(bad_cpus) / sizeof(bad_cpus[0]); i++)
    ck_assert_msg(jw_parse_cpus(bad_cpus[i], &v) == -EINVAL, "cpus '%s'",
                  bad_cpus[i]);
  static const struct {
    const char *s;
    int64_t v;
  } sizes[] = {{"0", 0},
               {"007", 7},
               {"4096B", 4096},
               {"1K", 1024},
               {"1KB", 1024},
               {"1KiB", 1024},
               {"2t", 2LL << 40},
               {"0.5K", 512},
               {"1.0009765625K", 1025},
               {"1.00097656249K", 1024}, /* rounded down to a byte */
               {"0.1M", 104857},
               {"8388607T", 8388607LL << 40},
               {"9223372036854775807", INT64_MAX},
               {"1.000000000000000000000000001G", 1LL << 30}};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    ck_assert_msg(jw_parse_size(sizes[i].s, &v) == 0, "size '%s'", sizes[i].s);
    ck_assert_msg(v == sizes[i].v, "size '%s' = %lld", sizes[i].s,
                  (long long)v);
  }
  static const struct {
    const char *s;
    int64_t v;
  } cpus[] = {{"0", 0},
              {"1", 1000},
              {"0.25", 250},
              {"0.0005", 1},
              {"0.00049", 0},
              {"1.2345", 1235},
              {"10m", 10},
              {"2.5m", 3},
              {"1000000", 1000000000},
              {"1000000m", 1000000}};
  for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++) {
    ck_assert_msg(jw_parse_cpus(cpus[i].s, &v) == 0, "cpus '%s'", cpus[i].s);
    ck_assert_msg(v == cpus[i].v, "cpus '%s' = %lld", cpus[i].s, (long long)v);
  }
}
END_TEST

START_TEST(test_duration_forms) {
  static const struct {
    const char *s;
    uint64_t ms;
  } ok[] = {{"10s", 10000},
            {"500ms", 500},
            {"2m", 120000},
            {"1h", 3600000},
            {"7", 7000},
            {"0.25s", 250},
            {"0", 0},
            {"1.5m", 90000},
            {"0ms", 0},
            {"0.0015s", 1},
            {"1.9999ms", 1},
            {"0.001h", 3600},
            {"8760h", 31536000000ULL}};
  static const char *const bad[] = {
      "",      "s",     "-1",   "1d",  "1 s",  "10S",  "x10", "8761h",
      "1e400", "nan",   "-nan", "inf", "0x10", "1e3",  " 5",  "+5",
      ".",     "1.2.3", ".5s",  "5.s", "1s ",  "1ms\n"};
  uint64_t ms;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    ck_assert_msg(jw_parse_duration(ok[i].s, &ms) == 0, "%s", ok[i].s);
    ck_assert_uint_eq(ms, ok[i].ms);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(jw_parse_duration(bad[i], &ms) < 0, "%s accepted", bad[i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("units");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_parse_size_and_cpus, test_parse_strict,
                                   test_duration_forms, NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
