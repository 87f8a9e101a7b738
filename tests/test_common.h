/*
 * What the Check suites share: knobs for slow runs (tools/valgrind.sh),
 * a bounded way to run a loop, descriptor and process counting, temp-tree
 * removal, the tests' own UTF-8 check, test cases and the suite runner.
 *
 * JW_TEST_SCALE=N (a divisor, default 1) divides the data volumes and
 * counts that some tests push through (bytes of output, number of jobs),
 * so that a run under valgrind ends in minutes. It changes nothing that is
 * asserted: bounds stay as they are, and expected values are the scaled
 * volume itself.
 */
#ifndef JW_TESTS_TEST_COMMON_H
#define JW_TESTS_TEST_COMMON_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "jobworker/process.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define JW_TEST_HAVE_VALGRIND_H 1
#endif
#endif

/*
 * The PATH every job starts with, as docs/protocol.md promises it: the
 * expected value (written here, not taken from the library, so that a
 * change to the library's default fails the tests).
 */
#define DEFAULT_PATH                                                           \
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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
 * JW_FORCE_NO_PIDFD=1 (tools/valgrind.sh sets it where valgrind lacks
 * pidfd_open) makes every suite watch its jobs through the SIGCHLD
 * fallback. The library reads no environment, so the suites pass it on
 * through jw_process_configure, before main and so before any start.
 * The reference is weak: a suite that links no process code (lib/common,
 * lib/rpc) starts no job, and this header serves it all the same.
 */
#pragma weak jw_process_configure
__attribute__((constructor)) static void test_configure_process(void) {
  const char *s = getenv("JW_FORCE_NO_PIDFD");
  jw_process_config_t cfg = {.no_pidfd = s != NULL && strcmp(s, "1") == 0};
  if (jw_process_configure == NULL)
    return;
  if (jw_process_configure(&cfg) != 0)
    abort();
}

/*
 * Whether this process runs under valgrind: its own client request when
 * the header is there, else JW_UNDER_VALGRIND=1, which tools/valgrind.sh
 * sets. Only checks that valgrind itself makes meaningless (the growth of
 * RSS, which its shadow memory inflates; the pages and descriptors a
 * spawn takes, where valgrind turns clone(CLONE_VM) into a fork and keeps
 * descriptors of its own) may depend on this.
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
 * Ends the test here as passed, saying why on stdout: for what the host
 * cannot do (no such controller, no namespaces for us).
 */
#define SKIP(why)                                                              \
  do {                                                                         \
    printf("SKIP %s: %s\n", __func__, (why));                                  \
    fflush(stdout);                                                            \
    return;                                                                    \
  } while (0)

/*
 * Whether s[0..n) is UTF-8 (RFC 3629): no overlong forms, surrogates or
 * code points over U+10FFFF. The tests' own check, independent of the
 * library's, for the oracles of the log and request suites and fuzzers.
 */
static inline bool test_utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i], need, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      need = 1, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
      need = 2, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
      need = 3, min = 0x10000;
    else
      return false;
    if (n - i <= need)
      return false;
    unsigned cp = c & (0x3fu >> need);
    for (unsigned k = 1; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += need + 1;
  }
  return true;
}

/*
 * How much of a cut log line (n bytes, its newline included) comes before
 * its cut marks: the "..." of a value cut (its quote closed), and the
 * " ..." of pairs left out. *marked tells whether it had one.
 */
static inline size_t test_log_uncut_len(const char *buf, size_t n,
                                        bool *marked) {
  size_t k = n - 1;
  *marked = false;
  if (k >= 4 && memcmp(buf + k - 4, " ...", 4) == 0)
    k -= 4, *marked = true;
  if (k > 0 && buf[k - 1] == '"')
    k--;
  if (k >= 3 && memcmp(buf + k - 3, "...", 3) == 0)
    k -= 3, *marked = true;
  return k;
}

/* The value of a lowercase hex digit, or -1. */
static inline int test_hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Runs a shell command, returns its first output line (or ""). */
static inline void test_sh_line(const char *cmd, char *buf, size_t size) {
  FILE *p = popen(cmd, "re");
  buf[0] = '\0';
  if (p == NULL)
    return;
  if (fgets(buf, (int)size, p) == NULL)
    buf[0] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  pclose(p);
}

/*
 * Sets the command of o (a jw_process_options_t or a jw_job_spec_t: both
 * name its fields so): command, args and nargs from argv, NULL-terminated,
 * and env (nenv entries) and working_dir.
 */
#define TEST_SET_COMMAND(o, argv, envv, n_env, cwd)                            \
  do {                                                                         \
    size_t test_n_ = 0;                                                        \
    while ((argv)[test_n_] != NULL)                                            \
      test_n_++;                                                               \
    (o)->command = (argv)[0];                                                  \
    (o)->args = (argv) + 1;                                                    \
    (o)->nargs = test_n_ - 1;                                                  \
    (o)->env = (envv);                                                         \
    (o)->nenv = (n_env);                                                       \
    (o)->working_dir = (cwd);                                                  \
  } while (0)

static inline void test_tick(uv_timer_t *t) { (void)t; }

/* A predicate for test_run_until: the int that arg points to is set. */
static inline int test_flag_set(void *arg) { return *(int *)arg != 0; }

/*
 * Runs loop until pred(arg) holds or timeout_ms passed, and returns pred's
 * last answer. A 20 ms tick keeps UV_RUN_ONCE from blocking in the poll
 * past the deadline when nothing else would wake the loop.
 */
static inline int test_run_until(uv_loop_t *loop, int (*pred)(void *),
                                 void *arg, uint64_t timeout_ms) {
  uv_timer_t t;
  uint64_t deadline = uv_hrtime() / 1000000 + timeout_ms;
  int ok;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, test_tick, 20, 20);
  while (!(ok = pred(arg)) && uv_hrtime() / 1000000 < deadline)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

/* Open descriptors of this process, not counting the one used to look. */
static inline int test_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1;
}

/*
 * Whether pid is gone: no such process, or a zombie (a dead process that
 * nobody has reaped yet runs nothing).
 */
static inline int test_pid_gone(pid_t pid) {
  char path[64], buf[512];
  char *p;
  FILE *f;
  int gone = 1;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 1;
  if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL)
    gone = p[2] == 'Z' || p[2] == 'X';
  fclose(f);
  return gone;
}

/*
 * Counts our children (zombies included) plus live processes whose group
 * is one of pgids; *one gets one of the live ones, or 0. A dead process
 * reparented to init counts as gone even before init reaps it.
 */
static inline int test_count_procs_now(const pid_t *pgids, size_t n,
                                       pid_t *one) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int count = 0;
  ck_assert_ptr_nonnull(d);
  *one = 0;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512];
    int ppid, pgrp;
    char state;
    char *p;
    FILE *f;
    size_t i;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    f = fopen(path, "re");
    if (f == NULL)
      continue;
    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) &&
        sscanf(p + 2, "%c %d %d", &state, &ppid, &pgrp) == 3) {
      int live = state != 'Z' && state != 'X';
      int counted = ppid == getpid();
      for (i = 0; i < n && !counted && live; i++)
        counted = pgrp == pgids[i];
      if (counted) {
        count++;
        if (live)
          *one = (pid_t)atoi(e->d_name);
      }
    }
    fclose(f);
  }
  closedir(d);
  return count;
}

/*
 * The same, allowing a SIGKILL already sent a moment to take effect (the
 * kernel delivers it asynchronously): while a live one is left, waits for
 * it to end through its pidfd, at most 100 times 100 ms. A zombie child
 * is counted at once: only its parent's reaping ends it.
 */
static inline int count_procs(const pid_t *pgids, size_t n) {
  int tries, count = 0;
  for (tries = 0; tries < 100; tries++) {
    pid_t one;
    struct pollfd pfd;
    count = test_count_procs_now(pgids, n, &one);
    if (count == 0 || one == 0)
      break;
    pfd.fd = (int)syscall(SYS_pidfd_open, one, 0);
    pfd.events = POLLIN;
    if (pfd.fd >= 0) {
      poll(&pfd, 1, 100);
      close(pfd.fd);
    } else if (errno != ESRCH) {
      /* No pidfds here (old valgrind): look again a little later. */
      struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
      nanosleep(&ts, NULL);
    }
  }
  return count;
}

static inline int test_rm_entry(const char *p, const struct stat *st, int flag,
                                struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

/* Removes a test's temporary tree, depth first, not following links. */
static inline void test_rm_tree(const char *path) {
  nftw(path, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Adds to s a test case called name: setup and teardown (NULL: none) run
 * around each of its tests in the test's process, and each test may take
 * timeout_s seconds (0: Check's default).
 */
static inline TCase *test_tcase(Suite *s, const char *name, void (*setup)(void),
                                void (*teardown)(void), double timeout_s) {
  TCase *tc = tcase_create(name);
  if (setup != NULL || teardown != NULL)
    tcase_add_checked_fixture(tc, setup, teardown);
  if (timeout_s > 0)
    tcase_set_timeout(tc, timeout_s);
  suite_add_tcase(s, tc);
  return tc;
}

/* Adds the tests of the NULL-terminated list to tc, in order. */
static inline void test_add_tests(TCase *tc, const TTest *const *list) {
  for (; *list != NULL; list++)
    tcase_add_test(tc, *list);
}

/*
 * Runs a suite and returns main's exit status. libuv opens process-wide
 * descriptors with the first loop; one is opened and closed first so that
 * the tests' descriptor counts compare like with like.
 */
static inline int test_run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  uv_loop_t loop;
  int failed;
  uv_loop_init(&loop);
  uv_loop_close(&loop);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * Runs the NULL-terminated list of tests as one case ("core") of the named
 * suite, setup and teardown (NULL: none) around each, each test taking at
 * most timeout_s seconds (0: Check's default). Returns main's exit status.
 */
static inline int test_run_list(const char *name, void (*setup)(void),
                                void (*teardown)(void), double timeout_s,
                                const TTest *const *list) {
  Suite *s = suite_create(name);
  test_add_tests(test_tcase(s, "core", setup, teardown, timeout_s), list);
  return test_run_suite(s);
}

/*
 * Runs the tests as one case ("core") of the named suite, with a timeout
 * in seconds (0: Check's default). TEST_RUN_CORE takes the tests as
 * arguments.
 */
static inline int test_run_core(const char *name, double timeout,
                                const TTest *const *tests, size_t n) {
  Suite *s = suite_create(name);
  TCase *tc = tcase_create("core");
  if (timeout > 0)
    tcase_set_timeout(tc, timeout);
  for (size_t i = 0; i < n; i++)
    tcase_add_test(tc, tests[i]);
  suite_add_tcase(s, tc);
  return test_run_suite(s);
}
#define TEST_RUN_CORE(name, timeout, ...)                                      \
  do {                                                                         \
    const TTest *tests_[] = {__VA_ARGS__};                                     \
    return test_run_core(name, timeout, tests_,                                \
                         sizeof(tests_) / sizeof(tests_[0]));                  \
  } while (0)

#endif /* JW_TESTS_TEST_COMMON_H */
