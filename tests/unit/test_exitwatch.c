/*
 * Unit tests for jw_process's exit watch (exitwatch.c): the choice
 * between pidfds and the SIGCHLD fallback that jw_process_configure
 * makes, and the fallback's handler living only while a job is unreaped.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "process_harness.h"

/*
 * Whether SIGCHLD has a handler: the exit fallback's uv_signal_t installs
 * one while a job of the loop is unreaped; the pidfd path never does.
 */
static int sigchld_handled(void) {
  struct sigaction sa;
  ck_assert_int_eq(sigaction(SIGCHLD, NULL, &sa), 0);
  return sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
}

/*
 * The library reads no environment: jw_process_configure's no_pidfd,
 * before the first start, is what makes exits go through the SIGCHLD
 * fallback. Each Check test is a fresh fork, so the choice made here is
 * this test's alone; without fork mode the test would change the others.
 */
START_TEST(test_configure_no_pidfd) {
  static const char *const argv[] = {"sh", "-c", "sleep 0.2; exit 4", NULL};
  jw_process_config_t force = {.no_pidfd = true};
  jw_process_config_t probe = {.no_pidfd = false};
  const char *fork_mode = getenv("CK_FORK");
  uv_loop_t loop;
  struct ctx c;

  if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
    return;
  ck_assert_int_eq(jw_process_configure(&force), 0);
  ck_assert_int_eq(jw_process_configure(&force), 0);
  ck_assert_int_eq(jw_process_configure(&probe), 0);
  launch(&loop, &c, argv);
  ck_assert(sigchld_handled());
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 4);
  finish(&loop, &c);
  ck_assert(!sigchld_handled());
}
END_TEST

/*
 * The first start decides how exits are watched; asking for the fallback
 * after pidfds were chosen is refused rather than half applied.
 */
START_TEST(test_configure_after_start_refused) {
  static const char *const argv[] = {"sh", "-c", "sleep 0.2", NULL};
  jw_process_config_t force = {.no_pidfd = true};
  const char *fork_mode = getenv("CK_FORK");
  uv_loop_t loop;
  struct ctx c;
  int fallback;

  if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
    return;
  launch(&loop, &c, argv);
  /* A host (or valgrind) without pidfds, or JW_FORCE_NO_PIDFD=1. */
  fallback = sigchld_handled();
  ck_assert_int_eq(jw_process_configure(&force), fallback ? 0 : JW_EINVAL);
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  finish(&loop, &c);
}
END_TEST

static Suite *exitwatch_suite(void) {
  Suite *s = suite_create("exitwatch");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 60);
  tcase_add_test(tc, test_configure_no_pidfd);
  tcase_add_test(tc, test_configure_after_start_refused);
  return s;
}

int main(void) { return test_run_suite(exitwatch_suite()); }
