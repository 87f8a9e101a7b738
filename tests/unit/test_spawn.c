/*
 * Unit tests for jw_process's spawn (spawn.c): the environment, the PATH
 * lookup, the working directory, what the child inherits (descriptors,
 * signal dispositions and mask), the credentials it runs with, and the
 * errno of every start failure with nothing left behind.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../../lib/worker/process_int.h"
#include "process_harness.h"

START_TEST(test_clean_env) {
  static const char *const argv[] = {"env", NULL};
  static const char *const env[] = {"FOO=bar", "EMPTY="};
  uv_loop_t loop;
  struct ctx c;
  setenv("JW_SECRET_OF_THE_SERVER", "leak", 1);
  run_job(&loop, &c, argv, env, 2, NULL);
  ck_assert_int_eq(c.st.exit_code, 0);
  ck_assert_str_eq(c.out[0].data, "PATH=" DEFAULT_PATH "\nFOO=bar\nEMPTY=\n");
  finish(&loop, &c);
}
END_TEST

START_TEST(test_env_path_used_for_lookup) {
  static const char *const argv[] = {"env", NULL};
  static const char *const env[] = {"PATH=/nonexistent:/usr/bin:/bin"};
  static const char *const argv2[] = {"env", NULL};
  static const char *const env2[] = {"PATH=/nonexistent"};
  uv_loop_t loop;
  struct ctx c;
  int before = test_count_fds();
  run_job(&loop, &c, argv, env, 1, NULL);
  ck_assert_str_eq(c.out[0].data, "PATH=/nonexistent:/usr/bin:/bin\n");
  finish(&loop, &c);

  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv2, env2, 1, NULL), -ENOENT);
  finish(&loop, &c);
  ck_assert_int_eq(test_count_fds(), before);
}
END_TEST

START_TEST(test_working_dir) {
  static const char *const argv[] = {"pwd", NULL};
  uv_loop_t loop;
  struct ctx c;
  run_job(&loop, &c, argv, NULL, 0, "/usr/bin");
  ck_assert_str_eq(c.out[0].data, "/usr/bin\n");
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stdin_devnull_and_fds_closed) {
  /*
   * A descriptor we leave open without CLOEXEC must not reach the job:
   * it sees 0, 1, 2 and the one ls opens to list them.
   */
  static const char *const argv[] = {"sh", "-c", "cat; ls /proc/self/fd", NULL};
  uv_loop_t loop;
  struct ctx c;
  int fd = open("/dev/null", O_RDONLY);
  ck_assert_int_ge(fd, 0);
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_str_eq(c.out[0].data, "0\n1\n2\n3\n");
  close(fd);
  finish(&loop, &c);
}
END_TEST

/* A field of the job's /proc/self/status, as grep printed it. */
static unsigned long long status_field(const char *out, const char *name,
                                       int base) {
  const char *p = strstr(out, name);
  ck_assert_msg(p != NULL, "no %s in %s", name, out);
  return strtoull(p + strlen(name) + 2, NULL, base);
}

/*
 * The job starts with default dispositions and nothing blocked, whatever
 * the server ignores or blocks, in a process group of its own. It reads
 * its own status, so there is nothing to wait for but its end.
 */
START_TEST(test_signals_reset) {
  static const char *const argv[] = {
      "grep", "-E", "^(Pid|NSpgid|SigBlk|SigIgn):", "/proc/self/status", NULL};
  uv_loop_t loop;
  struct ctx c;
  sigset_t set, old;

  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, &old);
  launch(&loop, &c, argv);
  sigprocmask(SIG_SETMASK, &old, NULL);
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.exit_code, 0);
  ck_assert_uint_eq(status_field(c.out[0].data, "SigIgn", 16), 0);
  ck_assert_uint_eq(status_field(c.out[0].data, "SigBlk", 16), 0);
  ck_assert_uint_eq(status_field(c.out[0].data, "NSpgid", 10),
                    (unsigned long long)c.st.pid);
  ck_assert_uint_eq(status_field(c.out[0].data, "Pid", 10),
                    (unsigned long long)c.st.pid);
  finish(&loop, &c);
  signal(SIGPIPE, SIG_DFL);
}
END_TEST

/*
 * A spawn does not copy the server's descriptor table into the child:
 * with 1,100 descriptors open (a server with as many connections and
 * jobs), the job's table is still a small one (FDSize in its
 * /proc/self/status, the table's size: 64 for a fresh process). Copied,
 * it would be at least 1,100, and the exec would close each of them: a
 * Start's cost would grow with every descriptor the server holds. The
 * block is reserved first, as jw_supervisor_new does while the table is
 * small. Valgrind turns the clone into a fork, which copies the table.
 */
START_TEST(test_child_table_not_copied) {
  static const char *const argv[] = {"grep", "^FDSize:", "/proc/self/status",
                                     NULL};
  enum { NFDS = 1100 };
  static int fds[NFDS];
  struct rlimit rl;
  uv_loop_t loop;
  struct ctx c;
  int null_fd;

  if (under_valgrind())
    SKIP("valgrind turns clone(CLONE_VM) into a fork");
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < NFDS + 64) {
    if (rl.rlim_max < NFDS + 64)
      SKIP("RLIMIT_NOFILE's hard limit is below 1,164");
    rl.rlim_cur = NFDS + 64;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ck_assert_int_eq(jw__spawn_reserve(), 0);
  null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ck_assert_int_ge(null_fd, 0);
  for (int i = 0; i < NFDS; i++) {
    fds[i] = fcntl(null_fd, F_DUPFD_CLOEXEC, 0);
    ck_assert_int_ge(fds[i], 0);
  }
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.exit_code, 0);
  ck_assert_msg(status_field(c.out[0].data, "FDSize", 10) <= 64,
                "the job's table: %s", c.out[0].data);
  finish(&loop, &c);
  for (int i = 0; i < NFDS; i++)
    close(fds[i]);
  close(null_fd);
  jw__spawn_release();
}
END_TEST

/* Start failures: the errno, nothing left behind, the initial state. */
static void expect_start_failure(const char *const *argv, const char *cwd,
                                 int want) {
  uv_loop_t loop;
  struct ctx c;
  int fds;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fds = test_count_fds();
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, cwd), want);
  ck_assert(jw_process_is_initial_state(c.proc));
  ck_assert_int_eq(test_count_fds(), fds);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
  ck_assert_int_eq(jw_process_stop(c.proc, 100), JW_ECLOSED);
  ck_assert_int_eq(jw_process_signal(c.proc, SIGTERM), JW_ECLOSED);
  finish(&loop, &c);
  ck_assert_int_eq(c.exits, 0);
}

START_TEST(test_start_failures) {
  static const char *const missing[] = {"jw-no-such-command-xyz", NULL};
  static const char *const missing_path[] = {"/nonexistent/bin/x", NULL};
  static const char *const dir[] = {"/tmp", NULL};
  char plain[] = "/tmp/jw-test-noexec-XXXXXX";
  const char *noexec[] = {plain, NULL};
  int fd = mkstemp(plain);
  ck_assert_int_ge(fd, 0);
  close(fd);
  chmod(plain, 0644);
  static const char *const ok[] = {"true", NULL};
  expect_start_failure(missing, NULL, -ENOENT);
  expect_start_failure(missing_path, NULL, -ENOENT);
  expect_start_failure(dir, NULL, -EACCES);
  expect_start_failure(noexec, NULL, -EACCES);
  expect_start_failure(ok, "/nonexistent-dir", -ENOENT);
  expect_start_failure(ok, plain, -ENOTDIR);
  unlink(plain);
}
END_TEST

/* An id far from any account a test host has. */
#define JOB_ID 231071

/*
 * A job given a uid and gid runs as exactly that: no supplementary
 * groups, no capabilities, no_new_privs. Without them it keeps ours.
 */
START_TEST(test_credentials) {
  static const char *const argv[] = {
      "sh", "-c",
      "id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status",
      NULL};
  char want[256];
  uv_loop_t loop;
  struct ctx c;

  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.exit_code, 0);
  snprintf(want, sizeof(want), "%u\n%u\n", (unsigned)geteuid(),
           (unsigned)getegid());
  ck_assert_int_eq(strncmp(c.out[0].data, want, strlen(want)), 0);
  ck_assert_ptr_nonnull(strstr(c.out[0].data, "NoNewPrivs:\t0\n"));
  finish(&loop, &c);

  if (geteuid() != 0)
    return; /* setting ids needs root; the rest is the root case */
  creds.set_ids = true;
  creds.uid = JOB_ID;
  creds.gid = JOB_ID + 1;
  creds.no_new_privs = true;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  creds.set_ids = creds.no_new_privs = false;
  ck_assert_int_eq(c.st.exit_code, 0);
  snprintf(want, sizeof(want),
           "%d\n%d\n%d\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n", JOB_ID,
           JOB_ID + 1, JOB_ID + 1);
  ck_assert_str_eq(c.out[0].data, want);
  finish(&loop, &c);
}
END_TEST

/*
 * The job's user must be able to enter the working directory and reach
 * the command itself: root's 0700 directory is neither, and the start
 * fails with EACCES instead of running as root there.
 */
START_TEST(test_credentials_access) {
  char dir[] = "/tmp/jw-test-private-XXXXXX";
  char cmd[64];
  const char *const in_dir[] = {cmd, NULL};
  static const char *const ok[] = {"true", NULL};
  int fd;

  if (geteuid() != 0)
    return;
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(chmod(dir, 0700), 0);
  snprintf(cmd, sizeof(cmd), "%s/run", dir);
  fd = open(cmd, O_WRONLY | O_CREAT | O_EXCL, 0755);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "#!/bin/sh\n", 10), 10);
  close(fd);
  creds.set_ids = true;
  creds.uid = JOB_ID;
  creds.gid = JOB_ID;
  expect_start_failure(ok, dir, -EACCES);
  expect_start_failure(in_dir, NULL, -EACCES);
  creds.set_ids = false;
  unlink(cmd);
  rmdir(dir);
}
END_TEST

static Suite *spawn_suite(void) {
  Suite *s = suite_create("spawn");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 60);
  const TTest *const tc_tests[] = {
      test_clean_env,          test_env_path_used_for_lookup,
      test_working_dir,        test_stdin_devnull_and_fds_closed,
      test_signals_reset,      test_child_table_not_copied,
      test_start_failures,     test_credentials,
      test_credentials_access, NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(spawn_suite()); }
