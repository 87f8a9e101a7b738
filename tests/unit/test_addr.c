/*
 * The one address parser (lib/common/addr.c) that the server's listen
 * address, the client library and the teleport CLI share.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "jobworker/error.h"
#include "rpc_test.h"

static void ok(const char *in, const char *host, int port, bool ipv6) {
  jw__addr_t a;
  const char *why = "unset";
  ck_assert_msg(jw__addr_parse(in, &a, &why) == 0, "'%s': %s", in, why);
  ck_assert_ptr_null(why);
  ck_assert_str_eq(a.host, host);
  ck_assert_int_eq(a.port, port);
  ck_assert_int_eq(a.ipv6, ipv6);
}

static void bad(const char *in, const char *want_why) {
  jw__addr_t a;
  const char *why = NULL;
  ck_assert_msg(jw__addr_parse(in, &a, &why) == JW_EINVAL, "accepted '%s'",
                in ? in : "(null)");
  ck_assert_ptr_nonnull(why);
  ck_assert_str_eq(why, want_why);
}

START_TEST(test_forms) {
  ok("127.0.0.1:3000", "127.0.0.1", 3000, false);
  ok("example.org:443", "example.org", 443, false);
  ok(":80", "", 80, false);
  ok("host", "host", -1, false);
  ok("[::1]:8080", "::1", 8080, true);
  ok("[fe80::1]", "fe80::1", -1, true);
  ok("::1", "::1", -1, true); /* bare IPv6: no port */
  ok("h:0", "h", 0, false);
  ok("h:65535", "h", 65535, false);
  ok("h:00080", "h", 80, false);
}
END_TEST

START_TEST(test_errors_say_what_is_wrong) {
  bad(NULL, "it is empty");
  bad("", "it is empty");
  bad("[", "an IPv6 address goes in brackets: [::1]:3000");
  bad("[]:80", "an IPv6 address goes in brackets: [::1]:3000");
  bad("h:", jw__addr_bad_port);
  bad("h:65536", jw__addr_bad_port);
  bad("h:-1", jw__addr_bad_port);
  bad("h:8o", jw__addr_bad_port);
  bad("h:99999999999999999999", jw__addr_bad_port);
  bad("[::1]x", jw__addr_bad_port);
  bad("[::1]:", jw__addr_bad_port);
  char long_host[JW__ADDR_HOST_MAX + 8];
  memset(long_host, 'a', JW__ADDR_HOST_MAX + 1);
  strcpy(long_host + JW__ADDR_HOST_MAX + 1, ":80");
  bad(long_host, "it is too long");
  /* One shorter is the longest host taken. */
  strcpy(long_host + JW__ADDR_HOST_MAX, ":80");
  long_host[JW__ADDR_HOST_MAX] = '\0';
  char want[JW__ADDR_HOST_MAX + 1];
  strcpy(want, long_host);
  long_host[JW__ADDR_HOST_MAX] = ':';
  ok(long_host, want, 80, false);
}
END_TEST

START_TEST(test_split_requires_a_port) {
  char host[16];
  int port = -7;
  ck_assert_int_eq(jw__addr_split("[::1]:9", host, sizeof(host), &port), 0);
  ck_assert_str_eq(host, "::1");
  ck_assert_int_eq(port, 9);
  ck_assert_int_eq(jw__addr_split("host", host, sizeof(host), &port),
                   JW_EINVAL);
  ck_assert_int_eq(jw__addr_split("::1", host, sizeof(host), &port), JW_EINVAL);
  /* A host longer than the caller's buffer is refused, not cut. */
  ck_assert_int_eq(
      jw__addr_split("a-rather-long-host:1", host, sizeof(host), &port),
      JW_EINVAL);
}
END_TEST

int main(void) {
  Suite *s = suite_create("addr");
  TCase *tc = test_tcase(s, "addr", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_forms, test_errors_say_what_is_wrong,
                                   test_split_requires_a_port, NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
