/*
 * Unit tests for jw_process's namespaces (nsinit.c): a PID namespace and
 * its init (what the job sees, how the command's end is passed on, the
 * stop's signal forwarded, orphans reaped, the init's credentials), a
 * mount namespace with its own /proc, a network namespace with lo up, and
 * the fresh /sys of the two together.
 *
 * Namespaces need CAP_SYS_ADMIN: where they are refused, a case prints
 * "SKIP <case>: <reason>" and returns; it never passes silently.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "process_harness.h"

/*
 * Starts argv with the namespaces of iso on a new loop. Returns 0, or 1
 * after printing a skip (the loop and the process are closed then).
 */
static int start_isolated(const char *func, uv_loop_t *loop, struct ctx *c,
                          const char *const *argv, unsigned iso) {
  int err;
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(uv_loop_init(loop), 0);
  creds_isolation = iso;
  err = start(loop, c, argv, NULL, 0, NULL);
  creds_isolation = 0;
  if (err == -EPERM || err == -EINVAL || err == -ENOSPC) {
    printf("SKIP %s: namespaces refused (%s); they need CAP_SYS_ADMIN\n", func,
           strerror(-err));
    fflush(stdout);
    finish(loop, c);
    return 1;
  }
  ck_assert_int_eq(err, 0);
  return 0;
}

/* Runs argv with the namespaces of iso to its end; 1 after a skip. */
static int run_isolated(const char *func, uv_loop_t *loop, struct ctx *c,
                        const char *const *argv, unsigned iso) {
  if (start_isolated(func, loop, c, argv, iso))
    return 1;
  ck_assert(run_until(loop, &c->exits, 20000));
  return 0;
}

/* The job's stdout, "" when it printed nothing. */
static const char *out_of(const struct ctx *c) {
  return c->out[0].data != NULL ? c->out[0].data : "";
}

/* PID isolation: ps -e inside shows only the job's processes. */
START_TEST(test_pid_isolation) {
  static const char *const argv[] = {"ps", "-e", "-o", "pid=,comm=", NULL};
  uv_loop_t loop;
  struct ctx c;
  char *out, *line, *save = NULL;
  int n = 0, saw_ps = 0;

  if (run_isolated(__func__, &loop, &c, argv, JW_ISOLATE_PID))
    return;
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_msg(c.st.exit_code == 0, "ps failed: %s", c.out[1].data);
  out = strdup(out_of(&c));
  ck_assert_ptr_nonnull(out);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    long pid = strtol(line, NULL, 10);
    n++;
    ck_assert_msg(pid == 1 || pid == 2, "a foreign process: %s", line);
    if (strstr(line, "ps") != NULL && pid == 2)
      saw_ps = 1;
  }
  ck_assert_int_eq(n, 2);
  ck_assert(saw_ps);
  free(out);
  finish(&loop, &c);
}
END_TEST

/*
 * A PID-isolated job of an unprivileged user: its init runs as that user
 * too, and the job cannot make itself immune to the OOM killer through
 * the init's privileged OOM score (the floor it would inherit).
 */
START_TEST(test_pid_isolation_unprivileged) {
  static const char *const argv[] = {
      "sh", "-c",
      "id -u; grep '^Uid:' /proc/1/status | cut -f2; "
      "(echo -1000 >/proc/self/oom_score_adj) 2>/dev/null && echo LOWERED; "
      "echo end",
      NULL};
  uv_loop_t loop;
  struct ctx c;
  int skipped;

  if (geteuid() != 0)
    SKIP("running a job as another user needs root");
  creds.set_ids = true;
  creds.uid = creds.gid = 231071;
  creds.no_new_privs = true;
  skipped = run_isolated(__func__, &loop, &c, argv, JW_ISOLATE_PID);
  creds.set_ids = creds.no_new_privs = false;
  creds.uid = creds.gid = 0;
  if (skipped)
    return;
  ck_assert_int_eq(c.st.exit_code, 0);
  ck_assert_str_eq(out_of(&c), "231071\n231071\nend\n");
  finish(&loop, &c);
}
END_TEST

/*
 * The init of a PID namespace passes on how the command ended, forwards
 * the stop's SIGTERM, and reaps orphans.
 */
START_TEST(test_pid_init_status_and_signals) {
  static const char *const code[] = {"sh", "-c", "exit 7", NULL};
  static const char *const sig[] = {"sh", "-c", "kill -TERM $$", NULL};
  static const char *const slp[] = {"sh", "-c", "echo ready; exec sleep 1000",
                                    NULL};
  static const char *const orphan[] = {
      "sh", "-c", "(sleep 0.1 &); sleep 0.6; ps -e -o stat= | grep -c Z", NULL};
  uv_loop_t loop;
  struct ctx c;
  uint64_t t0;

  if (run_isolated(__func__, &loop, &c, code, JW_ISOLATE_PID))
    return;
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 7);
  finish(&loop, &c);

  ck_assert_int_eq(run_isolated(__func__, &loop, &c, sig, JW_ISOLATE_PID), 0);
  ck_assert_int_eq(c.st.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(c.st.signal, SIGTERM);
  finish(&loop, &c);

  ck_assert_int_eq(start_isolated(__func__, &loop, &c, slp, JW_ISOLATE_PID), 0);
  /* The command runs (the init has cloned it) once it says so. */
  wait_output(&loop, &c, "ready\n", 10000);
  t0 = uv_hrtime() / 1000000;
  ck_assert_int_eq(jw_process_stop(c.proc, 2000), 0);
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGTERM);
  /* Ended by the forwarded SIGTERM, not by the SIGKILL after the grace. */
  ck_assert_uint_lt(c.exit_ms - t0, 1900);
  finish(&loop, &c);

  ck_assert_int_eq(run_isolated(__func__, &loop, &c, orphan, JW_ISOLATE_PID),
                   0);
  ck_assert_str_eq(out_of(&c), "0\n");
  finish(&loop, &c);
}
END_TEST

/*
 * Mount isolation: a mount the job makes stays in its namespace, and its
 * /proc is a mount of its own.
 */
START_TEST(test_mount_isolation) {
  char dir[] = "/tmp/jw-ns-XXXXXX";
  char script[1200], marker[400];
  const char *argv[] = {"sh", "-c", script, NULL};
  uv_loop_t loop;
  struct ctx c;
  struct stat st;
  char host_proc[32];
  char *out;

  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(script, sizeof(script),
           "mount -t tmpfs jwtest %s && touch %s/inside && ls %s && "
           "awk '$5 == \"/proc\" { id = $1 } END { print id }' "
           "/proc/self/mountinfo",
           dir, dir, dir);
  test_sh_line("awk '$5 == \"/proc\" { id = $1 } END { print id }' "
               "/proc/self/mountinfo",
               host_proc, sizeof(host_proc));
  if (run_isolated(__func__, &loop, &c, argv, JW_ISOLATE_MOUNT)) {
    rmdir(dir);
    return;
  }
  out = strdup(out_of(&c));
  ck_assert_ptr_nonnull(out);
  ck_assert_msg(c.st.exit_code == 0, "job failed: %s", out);
  ck_assert_msg(strncmp(out, "inside\n", 7) == 0, "output: %s", out);
  /* The topmost /proc mount inside is not the host's. */
  out[strcspn(out + 7, "\n") + 7] = '\0';
  ck_assert_str_ne(out + 7, host_proc);
  free(out);
  snprintf(marker, sizeof(marker), "%s/inside", dir);
  ck_assert_int_ne(stat(marker, &st), 0);
  ck_assert_int_eq(rmdir(dir), 0);
  finish(&loop, &c);
}
END_TEST

/* Network isolation: only lo, and it is up. */
START_TEST(test_net_isolation) {
  static const char *const argv[] = {
      "sh", "-c", "cat /proc/net/dev; ip -o link show lo 2>/dev/null", NULL};
  uv_loop_t loop;
  struct ctx c;
  char *out, *line, *save = NULL;
  int ifaces = 0, lo = 0, up = 0;

  if (run_isolated(__func__, &loop, &c, argv, JW_ISOLATE_NET))
    return;
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  out = strdup(out_of(&c));
  ck_assert_ptr_nonnull(out);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    char name[64];
    if (strstr(line, "<") != NULL) {
      up = strstr(line, ",UP") != NULL || strstr(line, "<UP") != NULL;
      continue;
    }
    if (strchr(line, '|') != NULL || sscanf(line, " %63[^:]:", name) != 1)
      continue;
    ifaces++;
    if (strcmp(name, "lo") == 0)
      lo = 1;
  }
  ck_assert_int_eq(ifaces, 1);
  ck_assert(lo);
  if (access("/sbin/ip", X_OK) == 0 || access("/usr/sbin/ip", X_OK) == 0 ||
      access("/bin/ip", X_OK) == 0)
    ck_assert_msg(up, "lo is not up");
  else
    printf("SKIP %s (lo up part): no ip(8) on this host\n", __func__);
  free(out);
  finish(&loop, &c);
}
END_TEST

/*
 * Mount and network isolation: the job's /sys is a fresh sysfs, so it
 * lists the devices of its own network namespace (lo), not the host's.
 */
START_TEST(test_sys_isolation) {
  static const char *const argv[] = {"ls", "/sys/class/net", NULL};
  uv_loop_t loop;
  struct ctx c;

  if (run_isolated(__func__, &loop, &c, argv,
                   JW_ISOLATE_MOUNT | JW_ISOLATE_NET))
    return;
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_str_eq(out_of(&c), "lo\n");
  finish(&loop, &c);
}
END_TEST

static Suite *nsinit_suite(void) {
  Suite *s = suite_create("nsinit");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 120);
  const TTest *const tc_tests[] = {test_pid_isolation,
                                   test_pid_init_status_and_signals,
                                   test_pid_isolation_unprivileged,
                                   test_mount_isolation,
                                   test_net_isolation,
                                   test_sys_isolation,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(nsinit_suite()); }
