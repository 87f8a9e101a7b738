/*
 * What a user types into teleport, checked (client/names.c): job ids by
 * prefix, the nearest command to a typo, --addr with a scheme, signals by
 * name or number.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../../client/names.h"
#include "rpc_test.h"

static const char *const ids[] = {
    "0123456789abcdef0123456789abcdef",
    "0123ffffffffffffffffffffffffffff",
    "89abcdef0123456789abcdef01234567",
};
#define NIDS (sizeof(ids) / sizeof(ids[0]))

START_TEST(test_id_kinds) {
  ck_assert_int_eq(cli_id_kind(ids[0]), CLI_ID_FULL);
  ck_assert_int_eq(cli_id_kind("0123456789ABCDEF0123456789ABCDEF"),
                   CLI_ID_FULL);
  ck_assert_int_eq(cli_id_kind("0123"), CLI_ID_PREFIX);
  ck_assert_int_eq(cli_id_kind("0123456789abcdef0123456789abcde"),
                   CLI_ID_PREFIX);
  ck_assert_int_eq(cli_id_kind("012"), CLI_ID_SHORT);
  ck_assert_int_eq(cli_id_kind("a"), CLI_ID_SHORT);
  /* Not hex, or longer than an id: the server decides (not found). */
  ck_assert_int_eq(cli_id_kind("nope"), CLI_ID_OTHER);
  ck_assert_int_eq(cli_id_kind("0123456789abcdef0123456789abcdef0"),
                   CLI_ID_OTHER);
  ck_assert_int_eq(cli_id_kind(""), CLI_ID_OTHER);
  ck_assert_int_eq(cli_id_kind("01 3"), CLI_ID_OTHER);
}
END_TEST

START_TEST(test_id_prefix_match) {
  size_t first = 99;

  ck_assert_uint_eq(cli_id_match("89ab", ids, NIDS, &first), 1);
  ck_assert_uint_eq(first, 2);
  ck_assert_uint_eq(cli_id_match("89AB", ids, NIDS, &first), 1);
  /* Two share 0123: ambiguous, the first of them reported. */
  ck_assert_uint_eq(cli_id_match("0123", ids, NIDS, &first), 2);
  ck_assert_uint_eq(first, 0);
  ck_assert_uint_eq(cli_id_match("01234", ids, NIDS, &first), 1);
  ck_assert_uint_eq(first, 0);
  first = 99;
  ck_assert_uint_eq(cli_id_match("ffff", ids, NIDS, &first), 0);
  ck_assert_uint_eq(first, 99);
  ck_assert_uint_eq(cli_id_match("0123", ids, 0, &first), 0);
}
END_TEST

static const char *const cmds[] = {
    "start", "status", "output", "stop",   "list", "ls",     "wait",
    "kill",  "rm",     "health", "config", "help", "version"};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void near(const char *word, const char *want) {
  const char *got = cli_suggest(word, cmds, NCMDS);
  if (want == NULL)
    ck_assert_msg(got == NULL, "'%s' suggested '%s'", word, got);
  else
    ck_assert_msg(got != NULL && strcmp(got, want) == 0,
                  "'%s' suggested '%s', not '%s'", word, got ? got : "nothing",
                  want);
}

START_TEST(test_suggest) {
  near("stauts", "status");
  near("outptu", "output");
  near("lsit", "list");
  near("wiat", "wait");
  near("remove", NULL);
  near("sta", "start"); /* a prefix: the first command it starts */
  near("outp", "output");
  near("frobnicate", NULL);
  near("x", NULL);
  near("", NULL);
  near("rn", "rm");
  /* A word far longer than any command is no typo of one. */
  near("statusstatusstatusstatusstatusstatusstatus", NULL);
}
END_TEST

static void addr_ok(const char *in, const char *want) {
  char out[300];
  const char *why = NULL;
  ck_assert_msg(cli_addr_normalize(in, out, sizeof(out), &why) == 0, "'%s': %s",
                in, why ? why : "?");
  ck_assert_str_eq(out, want);
}

static void addr_bad(const char *in, const char *want_why) {
  char out[300];
  const char *why = NULL;
  ck_assert_msg(cli_addr_normalize(in, out, sizeof(out), &why) != 0,
                "accepted '%s'", in);
  ck_assert_ptr_nonnull(why);
  ck_assert_msg(strstr(why, want_why) != NULL, "'%s': %s", in, why);
}

START_TEST(test_addr) {
  addr_ok("host:4000", "host:4000");
  addr_ok("host", "host:3000");
  addr_ok(":4000", "127.0.0.1:4000");
  addr_ok("[::1]", "[::1]:3000");
  addr_ok("https://build1.example:3000", "build1.example:3000");
  addr_ok("https://build1.example:3000/", "build1.example:3000");
  addr_ok("HTTPS://h", "h:3000");
  addr_ok("https://[::1]:5000", "[::1]:5000");
  addr_bad("http://h:3000", "https://");
  addr_bad("grpc://h:3000", "https://");
  addr_bad("https://h:3000/api", "path");
  addr_bad("https://", "");
  addr_bad("h:99999", "port");
  addr_bad("h:0", "port");
}
END_TEST

START_TEST(test_addr_too_long) {
  char in[400], out[300];
  const char *why = NULL;

  memset(in, 'a', sizeof(in) - 1);
  in[sizeof(in) - 1] = '\0';
  memcpy(in, "https://", 8);
  ck_assert_int_ne(cli_addr_normalize(in, out, sizeof(out), &why), 0);
  ck_assert_ptr_nonnull(why);
  /* Right at the output buffer's edge: a fit, then one byte too many. */
  memset(in, 'b', 20);
  strcpy(in + 20, ":1");
  ck_assert_int_eq(cli_addr_normalize(in, out, 23, &why), 0);
  ck_assert_int_ne(cli_addr_normalize(in, out, 22, &why), 0);
}
END_TEST

START_TEST(test_signals) {
  /* Names with or without SIG in any case, and numbers 1 to 64; -1 else. */
  static const struct {
    const char *arg;
    int want;
  } cases[] = {
      {"TERM", SIGTERM}, {"SIGUSR1", SIGUSR1},
      {"usr2", SIGUSR2}, {"sigkill", SIGKILL},
      {"9", 9},          {"64", 64},
      {"0", -1},         {"65", -1},
      {"9x", -1},        {"SIG", -1},
      {"BOGUS", -1},     {"", -1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    ck_assert_msg(cli_parse_signal(cases[i].arg) == cases[i].want,
                  "'%s': %d, not %d", cases[i].arg,
                  cli_parse_signal(cases[i].arg), cases[i].want);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli_names");
  TCase *tc = test_tcase(s, "cli_names", NULL, NULL, 0);
  const TTest *const tc_tests[] = {
      test_id_kinds,      test_id_prefix_match, test_suggest, test_addr,
      test_addr_too_long, test_signals,         NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
