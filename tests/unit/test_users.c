/*
 * Unit tests for jw_users: uids allocated per client CN and kept across
 * restarts, the users file (accounts, root, refusals, malformed lines),
 * and the policy of a teleportd that is not root.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_common.h"
#include "jobworker/error.h"
#include "jobworker/users.h"

/* Far above the accounts of any test host. */
#define FIRST 300000
#define LAST 300009

static char dir[] = "/tmp/jw-users-XXXXXX";
static char users_path[160];
static char errbuf[512];

static void setup(void) {
  strcpy(dir, "/tmp/jw-users-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(users_path, sizeof(users_path), "%s/users", dir);
  errbuf[0] = '\0';
}

static void teardown(void) { test_rm_tree(dir); }

static void write_users(const char *text) {
  FILE *f = fopen(users_path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static int open_users(const char *file, bool privileged, uid_t first,
                      uid_t last, jw_users_t **out) {
  jw_users_options_t o = {.data_dir = dir,
                          .first = first,
                          .last = last,
                          .users_file = file,
                          .privileged = privileged};
  errbuf[0] = '\0';
  return jw_users_open(&o, out, errbuf, sizeof(errbuf));
}

/*
 * Each new CN gets a uid of its own from the range (gid the same), the
 * same CN always the same one, also after a restart; the table is 0600.
 */
START_TEST(test_allocate_and_keep) {
  static const char *const cns[] = {"alice", "bob", "with space",
                                    "100%\nnewline"};
  jw_user_t got[4], again;
  jw_users_t *u;
  struct stat st;
  char table[200];

  ck_assert_int_eq(open_users(NULL, true, FIRST, LAST, &u), 0);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(jw_users_lookup(u, cns[i], &got[i]), 0);
    ck_assert(got[i].set_ids);
    ck_assert_uint_ge(got[i].uid, FIRST);
    ck_assert_uint_le(got[i].uid, LAST);
    ck_assert_uint_eq(got[i].gid, got[i].uid);
    for (int k = 0; k < i; k++)
      ck_assert_uint_ne(got[i].uid, got[k].uid);
  }
  ck_assert_int_eq(jw_users_lookup(u, "alice", &again), 0);
  ck_assert_uint_eq(again.uid, got[0].uid);
  ck_assert_uint_eq(jw_users_allocated(u), 4);
  jw_users_free(u);

  snprintf(table, sizeof(table), "%s/%s", dir, JW_USERS_TABLE);
  ck_assert_int_eq(stat(table, &st), 0);
  ck_assert_int_eq(st.st_mode & 0777, 0600);

  /* A restart: the same uids, and a new client does not take one. */
  ck_assert_int_eq(open_users(NULL, true, FIRST, LAST, &u), 0);
  ck_assert_uint_eq(jw_users_allocated(u), 4);
  for (int i = 3; i >= 0; i--) {
    ck_assert_int_eq(jw_users_lookup(u, cns[i], &again), 0);
    ck_assert_uint_eq(again.uid, got[i].uid);
  }
  ck_assert_int_eq(jw_users_lookup(u, "carol", &again), 0);
  for (int i = 0; i < 4; i++)
    ck_assert_uint_ne(again.uid, got[i].uid);
  jw_users_free(u);
}
END_TEST

/* A full range refuses the next new client and allocates nothing. */
START_TEST(test_range_exhausted) {
  jw_user_t a, b, c;
  jw_users_t *u;
  ck_assert_int_eq(open_users(NULL, true, FIRST, FIRST + 1, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "a", &a), 0);
  ck_assert_int_eq(jw_users_lookup(u, "b", &b), 0);
  ck_assert_int_eq(jw_users_lookup(u, "c", &c), JW_ELIMIT);
  ck_assert_int_eq(jw_users_lookup(u, "a", &c), 0);
  ck_assert_uint_eq(c.uid, a.uid);
  ck_assert_uint_eq(jw_users_allocated(u), 2);
  jw_users_free(u);
}
END_TEST

/* The users file: root, UID:GID, a CN with spaces, a refusal. */
START_TEST(test_users_file) {
  jw_user_t r;
  jw_users_t *u;

  write_users("# operators\n"
              "\n"
              "admin root\n"
              "ci bot 1234:5678\n"
              "  mallory   -  \n"
              "numbers 0\n");
  ck_assert_int_eq(open_users(users_path, true, FIRST, LAST, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "admin", &r), 0);
  ck_assert(r.set_ids);
  ck_assert_uint_eq(r.uid, 0);
  ck_assert_uint_eq(r.gid, 0);
  ck_assert_int_eq(jw_users_lookup(u, "ci bot", &r), 0);
  ck_assert(r.set_ids);
  ck_assert_uint_eq(r.uid, 1234);
  ck_assert_uint_eq(r.gid, 5678);
  ck_assert_int_eq(jw_users_lookup(u, "mallory", &r), JW_EOWNER);
  ck_assert_int_eq(jw_users_lookup(u, "numbers", &r), 0);
  ck_assert_uint_eq(r.uid, 0);
  /* Not listed: allocated, and the listed ones took no uid. */
  ck_assert_int_eq(jw_users_lookup(u, "other", &r), 0);
  ck_assert_uint_eq(r.uid, FIRST);
  ck_assert_uint_eq(jw_users_allocated(u), 1);
  jw_users_free(u);
}
END_TEST

/*
 * A client the users file starts mapping elsewhere keeps its allocated
 * uid reserved: nobody else gets it, and it gets it back once the file no
 * longer lists it. A uid of the range the file names is not allocated.
 */
START_TEST(test_users_file_reserves) {
  jw_user_t alice, r;
  jw_users_t *u;

  ck_assert_int_eq(open_users(NULL, true, FIRST, FIRST + 2, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "alice", &alice), 0);
  jw_users_free(u);

  write_users("alice root\ncarol 300001\n");
  ck_assert_int_eq(open_users(users_path, true, FIRST, FIRST + 2, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "alice", &r), 0);
  ck_assert_uint_eq(r.uid, 0);
  ck_assert_int_eq(jw_users_lookup(u, "bob", &r), 0);
  ck_assert_uint_ne(r.uid, alice.uid);
  ck_assert_uint_ne(r.uid, 300001);
  ck_assert_int_eq(jw_users_lookup(u, "dave", &r), JW_ELIMIT);
  jw_users_free(u);

  ck_assert_int_eq(open_users(NULL, true, FIRST, FIRST + 2, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "alice", &r), 0);
  ck_assert_uint_eq(r.uid, alice.uid);
  jw_users_free(u);

  /* The file giving an allocated uid to another client is refused. */
  write_users("carol 300000\n");
  ck_assert_int_eq(open_users(users_path, true, FIRST, FIRST + 2, &u),
                   JW_EINVAL);
  ck_assert_ptr_nonnull(strstr(errbuf, "another client"));
}
END_TEST

static void expect_bad_file(const char *text, const char *want) {
  jw_users_t *u = NULL;
  write_users(text);
  ck_assert_int_eq(open_users(users_path, true, FIRST, LAST, &u), JW_EINVAL);
  ck_assert_ptr_null(u);
  ck_assert_msg(strstr(errbuf, want) != NULL, "\"%s\" not in \"%s\"", want,
                errbuf);
}

/* A malformed users file is refused, naming the file and the line. */
START_TEST(test_users_file_malformed) {
  char want[200];
  snprintf(want, sizeof(want), "%s:3:", users_path);
  expect_bad_file("a root\n# x\nlonely\n", want);
  expect_bad_file("a root\n\nb jw-no-such-user-xyz\n", want);
  expect_bad_file("a root\nb 12\na 13\n", want);
  expect_bad_file("a root\nb 12\nc 1:x\n", want);
  expect_bad_file("a root\nb 12\nc 99999999999\n", want);
  ck_assert_ptr_nonnull(strstr(errbuf, "UID"));
}
END_TEST

/* A missing users file, a bad range, a damaged table: refused. */
START_TEST(test_open_errors) {
  jw_users_t *u = NULL;
  char table[200];
  FILE *f;

  ck_assert_int_eq(open_users("/nonexistent/users", true, FIRST, LAST, &u),
                   -ENOENT);
  ck_assert_ptr_nonnull(strstr(errbuf, "/nonexistent/users"));
  ck_assert_int_eq(open_users(NULL, true, 0, LAST, &u), JW_EINVAL);
  ck_assert_int_eq(open_users(NULL, true, LAST, FIRST, &u), JW_EINVAL);
  ck_assert_int_eq(
      open_users(NULL, true, FIRST, FIRST + JW_USERS_MAX_RANGE, &u), JW_EINVAL);
  snprintf(table, sizeof(table), "%s/%s", dir, JW_USERS_TABLE);
  f = fopen(table, "w");
  ck_assert_ptr_nonnull(f);
  fputs("300000 alice\nnonsense\n", f);
  fclose(f);
  ck_assert_int_eq(open_users(NULL, true, FIRST, LAST, &u), JW_EINVAL);
  ck_assert_ptr_nonnull(strstr(errbuf, ":2:"));
  ck_assert_ptr_null(u);
}
END_TEST

/*
 * Not root: jobs keep teleportd's credentials and nothing is recorded; a
 * refusal still holds; a mapping to another account cannot be honoured.
 */
START_TEST(test_unprivileged) {
  jw_user_t r;
  jw_users_t *u;
  char table[200], line[64];
  struct stat st;

  snprintf(line, sizeof(line), "me %u\nmallory -\n", (unsigned)geteuid());
  write_users(line);
  ck_assert_int_eq(open_users(users_path, false, FIRST, LAST, &u), 0);
  ck_assert_int_eq(jw_users_lookup(u, "alice", &r), 0);
  ck_assert(!r.set_ids);
  ck_assert_int_eq(jw_users_lookup(u, "me", &r), 0);
  ck_assert(!r.set_ids);
  ck_assert_int_eq(jw_users_lookup(u, "mallory", &r), JW_EOWNER);
  jw_users_free(u);
  snprintf(table, sizeof(table), "%s/%s", dir, JW_USERS_TABLE);
  ck_assert_int_ne(stat(table, &st), 0);

  snprintf(line, sizeof(line), "other %u\n", (unsigned)geteuid() + 1);
  write_users(line);
  ck_assert_int_eq(open_users(users_path, false, FIRST, LAST, &u), JW_EINVAL);
  ck_assert_ptr_nonnull(strstr(errbuf, "not root"));
}
END_TEST

static Suite *users_suite(void) {
  Suite *s = suite_create("users");
  TCase *tc = test_tcase(s, "core", setup, teardown, 0);
  const TTest *const tc_tests[] = {
      test_allocate_and_keep,    test_range_exhausted,
      test_users_file,           test_users_file_reserves,
      test_users_file_malformed, test_open_errors,
      test_unprivileged,         NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(users_suite()); }
