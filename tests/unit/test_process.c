/*
 * Unit tests for jw_process: spawning, exit states, stopping, output
 * pipes, start failures, and what the child inherits.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../test_common.h"
#include "jobworker/error.h"
#include "jobworker/process.h"

/*
 * Counts processes that are our children (zombies included) or live
 * members of process group pgid (when pgid > 0). A dead member reparented
 * to init is gone for our purpose, even before init reaps it.
 */
static int count_procs_now(pid_t pgid) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512];
    int ppid, pgrp;
    char state;
    char *p;
    FILE *f;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    f = fopen(path, "r");
    if (f == NULL)
      continue;
    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) &&
        sscanf(p + 2, "%c %d %d", &state, &ppid, &pgrp) == 3) {
      if (ppid == getpid() ||
          (pgid > 0 && pgrp == pgid && state != 'Z' && state != 'X'))
        n++;
    }
    fclose(f);
  }
  closedir(d);
  return n;
}

/*
 * The same, allowing a SIGKILL already sent a moment to take effect: the
 * kernel delivers it asynchronously.
 */
static int count_procs(pid_t pgid) {
  int i, n = 0;
  for (i = 0; i < 100; i++) {
    n = count_procs_now(pgid);
    if (n == 0)
      break;
    usleep(10000);
  }
  return n;
}

struct out_buf {
  char *data;
  size_t len;
  size_t cap;
};

static void out_add(struct out_buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->data = realloc(b->data, b->cap);
    ck_assert_ptr_nonnull(b->data);
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

struct ctx {
  struct out_buf out[2];
  jw_proc_status_t st;
  int exits;
  int closes;
  uint64_t exit_ms;
  jw_process_t *proc;
  int close_in_output;
};

static void on_output(jw_process_t *proc, jw_stream_t stream, const char *buf,
                      size_t len, void *data) {
  struct ctx *c = data;
  out_add(&c->out[stream], buf, len);
  (void)proc;
}

static void on_exit_cb(jw_process_t *proc, const jw_proc_status_t *st,
                       void *data) {
  struct ctx *c = data;
  ck_assert(jw_process_is_final_state(proc));
  c->st = *st;
  c->exits++;
  c->exit_ms = uv_hrtime() / 1000000;
}

static void on_close(jw_process_t *proc, void *data) {
  struct ctx *c = data;
  (void)proc;
  c->closes++;
}

static void ctx_free(struct ctx *c) {
  free(c->out[0].data);
  free(c->out[1].data);
}

/* Runs the loop until *flag is set or timeout_ms passed. */
static int run_until(uv_loop_t *loop, int *flag, uint64_t timeout_ms) {
  return test_run_until(loop, test_flag_set, flag, timeout_ms);
}

/* The credentials start() asks for; all zero: the caller's. */
static struct {
  bool set_ids;
  uid_t uid;
  gid_t gid;
  bool no_new_privs;
} creds;

/* Starts argv[0] with argv[1..] and the given env/cwd. */
static int start(uv_loop_t *loop, struct ctx *c, const char *const *argv,
                 const char *const *env, size_t nenv, const char *cwd) {
  jw_process_options_t o;
  size_t n = 0;
  int err;
  while (argv[n] != NULL)
    n++;
  memset(&o, 0, sizeof(o));
  o.command = argv[0];
  o.args = argv + 1;
  o.nargs = n - 1;
  o.env = env;
  o.nenv = nenv;
  o.working_dir = cwd;
  o.on_output = on_output;
  o.on_exit = on_exit_cb;
  o.data = c;
  o.set_ids = creds.set_ids;
  o.uid = creds.uid;
  o.gid = creds.gid;
  o.no_new_privs = creds.no_new_privs;
  err = jw_process_new(loop, &o, &c->proc);
  ck_assert_int_eq(err, 0);
  ck_assert(jw_process_is_initial_state(c->proc));
  return jw_process_start(c->proc);
}

/* Closes the process, runs the loop empty and closes it. */
static void finish(uv_loop_t *loop, struct ctx *c) {
  jw_process_close(c->proc, on_close, c);
  ck_assert(run_until(loop, &c->closes, 10000));
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(loop), 0);
  ck_assert_int_eq(c->closes, 1);
  ctx_free(c);
}

/* Runs argv to completion and returns its context. */
static void run_job(uv_loop_t *loop, struct ctx *c, const char *const *argv,
                    const char *const *env, size_t nenv, const char *cwd) {
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(uv_loop_init(loop), 0);
  ck_assert_int_eq(start(loop, c, argv, env, nenv, cwd), 0);
  ck_assert(jw_process_is_running_state(c->proc));
  ck_assert(run_until(loop, &c->exits, 20000));
}

START_TEST(test_exit_code) {
  static const char *const argv[] = {"sh", "-c", "exit 3", NULL};
  uv_loop_t loop;
  struct ctx c;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 3);
  ck_assert_int_eq(c.st.signal, 0);
  ck_assert_int_gt(c.st.pid, 0);
  ck_assert_int_gt(c.st.started_at_ns, 0);
  ck_assert_int_ge(c.st.ended_at_ns, c.st.started_at_ns);
  ck_assert_int_eq(c.exits, 1);
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(0), 0);
}
END_TEST

START_TEST(test_signaled) {
  static const char *const argv[] = {"sh", "-c", "kill -KILL $$", NULL};
  uv_loop_t loop;
  struct ctx c;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(c.st.signal, SIGKILL);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_signal_group) {
  static const char *const argv[] = {"sleep", "100", NULL};
  uv_loop_t loop;
  struct ctx c;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  ck_assert_int_eq(jw_process_signal(c.proc, SIGUSR1), 0);
  ck_assert(run_until(&loop, &c.exits, 10000));
  /* A signal that nobody asked for through stop: SIGNALED. */
  ck_assert_int_eq(c.st.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(c.st.signal, SIGUSR1);
  ck_assert_int_eq(jw_process_signal(c.proc, SIGTERM), JW_ECLOSED);
  ck_assert_int_eq(jw_process_stop(c.proc, 100), JW_ECLOSED);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stop_term) {
  static const char *const argv[] = {"sleep", "100", NULL};
  uv_loop_t loop;
  struct ctx c;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  ck_assert_int_eq(jw_process_stop(c.proc, 10000), 0);
  ck_assert_int_eq(jw_process_stop(c.proc, 10000), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGTERM);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stop_kill_after_grace) {
  static const char *const argv[] = {"sh", "-c", "trap '' TERM; sleep 100",
                                     NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  uint64_t t0;
  pid_t pgid;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  jw_process_status(c.proc, &st);
  pgid = st.pid;
  /* Let the shell install its trap before the stop. */
  sleep_ms(200);
  t0 = uv_hrtime() / 1000000;
  ck_assert_int_eq(jw_process_stop(c.proc, 500), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGKILL);
  ck_assert_uint_ge(c.exit_ms - t0, 450);
  ck_assert_uint_lt(c.exit_ms - t0, 1500);
  ck_assert_int_eq(count_procs(pgid), 0);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stop_kills_children) {
  static const char *const argv[] = {"sh", "-c", "sleep 100 & sleep 100", NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  jw_process_status(c.proc, &st);
  sleep_ms(100);
  ck_assert_int_eq(jw_process_stop(c.proc, 5000), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(count_procs(st.pid), 0);
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(0), 0);
}
END_TEST

START_TEST(test_group_killed_on_main_exit) {
  /* The background sleep keeps the pipes open; the job must not wait. */
  static const char *const argv[] = {"sh", "-c", "sleep 100 & echo done", NULL};
  uv_loop_t loop;
  struct ctx c;
  uint64_t t0 = uv_hrtime() / 1000000;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 0);
  ck_assert_str_eq(c.out[0].data, "done\n");
  ck_assert_uint_lt(c.exit_ms - t0, 1900);
  ck_assert_int_eq(count_procs(c.st.pid), 0);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_setsid_escapee_bounded) {
  /*
   * A process that left the group holds the pipes; the job still ends,
   * after the drain bound. The escapee lives on for a short while only.
   */
  static const char *const argv[] = {
      "sh", "-c", "setsid sleep 4 & sleep 0.3; echo before; exit 5", NULL};
  uv_loop_t loop;
  struct ctx c;
  uint64_t t0 = uv_hrtime() / 1000000;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 5);
  ck_assert_str_eq(c.out[0].data, "before\n");
  ck_assert_uint_ge(c.exit_ms - t0, 2000);
  ck_assert_uint_lt(c.exit_ms - t0, 3900);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stdout_stderr_apart) {
  static const char *const argv[] = {
      "sh", "-c",
      "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; "
      "i=$((i+1)); done",
      NULL};
  uv_loop_t loop;
  struct ctx c;
  struct out_buf want[2];
  char line[32];
  int i;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  memset(want, 0, sizeof(want));
  for (i = 0; i < 2000; i++) {
    snprintf(line, sizeof(line), "out%d\n", i);
    out_add(&want[0], line, strlen(line));
    snprintf(line, sizeof(line), "err%d\n", i);
    out_add(&want[1], line, strlen(line));
  }
  ck_assert_uint_eq(c.out[0].len, want[0].len);
  ck_assert_uint_eq(c.out[1].len, want[1].len);
  ck_assert(memcmp(c.out[0].data, want[0].data, want[0].len) == 0);
  ck_assert(memcmp(c.out[1].data, want[1].data, want[1].len) == 0);
  free(want[0].data);
  free(want[1].data);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_binary_output_exact) {
  static const char *const argv[] = {"head", "-c", "3000000", "/dev/urandom",
                                     NULL};
  uv_loop_t loop;
  struct ctx c;
  run_job(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_uint_eq(c.out[0].len, 3000000);
  ck_assert_uint_eq(c.out[1].len, 0);
  finish(&loop, &c);
}
END_TEST

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

static int status_field(pid_t pid, const char *name, unsigned long long *v) {
  char path[64], line[256];
  FILE *f;
  int found = 0;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, name, strlen(name)) == 0 &&
        sscanf(line + strlen(name), ": %llx", v) == 1)
      found = 1;
  fclose(f);
  return found;
}

START_TEST(test_signals_reset) {
  static const char *const argv[] = {"sleep", "100", NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  unsigned long long ign = 1, blk = 1;
  sigset_t set, old;
  int i;

  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, &old);
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  sigprocmask(SIG_SETMASK, &old, NULL);
  jw_process_status(c.proc, &st);
  /* Wait for the exec to show in /proc. */
  for (i = 0; i < 100; i++) {
    char path[64], comm[64] = "";
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/comm", st.pid);
    f = fopen(path, "r");
    if (f != NULL) {
      if (fgets(comm, sizeof(comm), f) == NULL)
        comm[0] = '\0';
      fclose(f);
    }
    if (strcmp(comm, "sleep\n") == 0)
      break;
    usleep(10000);
  }
  ck_assert(status_field(st.pid, "SigIgn", &ign));
  ck_assert(status_field(st.pid, "SigBlk", &blk));
  ck_assert_uint_eq(ign, 0);
  ck_assert_uint_eq(blk, 0);
  ck_assert_int_eq(getpgid(st.pid), st.pid);
  ck_assert_int_eq(jw_process_stop(c.proc, 1000), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  finish(&loop, &c);
  signal(SIGPIPE, SIG_DFL);
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
  ck_assert_int_eq(count_procs(0), 0);
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

START_TEST(test_new_invalid) {
  uv_loop_t loop;
  jw_process_options_t o;
  jw_process_t *p = NULL;
  static const char *const bad_env[] = {"NOEQUALS"};
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  ck_assert_int_eq(jw_process_new(&loop, &o, &p), -EINVAL);
  o.command = "";
  ck_assert_int_eq(jw_process_new(&loop, &o, &p), -EINVAL);
  o.command = "true";
  o.env = bad_env;
  o.nenv = 1;
  ck_assert_int_eq(jw_process_new(&loop, &o, &p), -EINVAL);
  ck_assert_ptr_null(p);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

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
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
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
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  /* A host (or valgrind) without pidfds, or JW_FORCE_NO_PIDFD=1. */
  fallback = sigchld_handled();
  ck_assert_int_eq(jw_process_configure(&force), fallback ? 0 : JW_EINVAL);
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_close_running) {
  static const char *const argv[] = {"sh", "-c", "sleep 100 & sleep 100", NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  int fds = test_count_fds();
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(start(&loop, &c, argv, NULL, 0, NULL), 0);
  jw_process_status(c.proc, &st);
  finish(&loop, &c);
  ck_assert_int_eq(c.exits, 0);
  ck_assert_int_eq(count_procs(st.pid), 0);
  ck_assert_int_eq(count_procs(0), 0);
  ck_assert_int_eq(test_count_fds(), fds);
}
END_TEST

static void close_in_output(jw_process_t *proc, jw_stream_t stream,
                            const char *buf, size_t len, void *data) {
  struct ctx *c = data;
  (void)stream;
  (void)buf;
  (void)len;
  jw_process_close(proc, on_close, c);
}

START_TEST(test_close_from_output_cb) {
  static const char *const args[] = {"/dev/zero"};
  uv_loop_t loop;
  struct ctx c;
  jw_process_options_t o;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.command = "cat";
  o.args = args;
  o.nargs = 1;
  o.on_output = close_in_output;
  o.on_exit = on_exit_cb;
  o.data = &c;
  ck_assert_int_eq(jw_process_new(&loop, &o, &c.proc), 0);
  ck_assert_int_eq(jw_process_start(c.proc), 0);
  ck_assert(run_until(&loop, &c.closes, 10000));
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(c.exits, 0);
  ck_assert_int_eq(c.closes, 1);
  ck_assert_int_eq(count_procs(0), 0);
}
END_TEST

static Suite *process_suite(void) {
  Suite *s = suite_create("process");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_exit_code);
  tcase_add_test(tc, test_signaled);
  tcase_add_test(tc, test_signal_group);
  tcase_add_test(tc, test_stop_term);
  tcase_add_test(tc, test_stop_kill_after_grace);
  tcase_add_test(tc, test_stop_kills_children);
  tcase_add_test(tc, test_group_killed_on_main_exit);
  tcase_add_test(tc, test_setsid_escapee_bounded);
  tcase_add_test(tc, test_stdout_stderr_apart);
  tcase_add_test(tc, test_binary_output_exact);
  tcase_add_test(tc, test_clean_env);
  tcase_add_test(tc, test_env_path_used_for_lookup);
  tcase_add_test(tc, test_working_dir);
  tcase_add_test(tc, test_stdin_devnull_and_fds_closed);
  tcase_add_test(tc, test_signals_reset);
  tcase_add_test(tc, test_start_failures);
  tcase_add_test(tc, test_credentials);
  tcase_add_test(tc, test_credentials_access);
  tcase_add_test(tc, test_new_invalid);
  tcase_add_test(tc, test_configure_no_pidfd);
  tcase_add_test(tc, test_configure_after_start_refused);
  tcase_add_test(tc, test_close_running);
  tcase_add_test(tc, test_close_from_output_cb);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(process_suite()); }
