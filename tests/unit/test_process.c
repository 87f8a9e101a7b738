/*
 * Unit tests for the jw_process object (process.c): exit states, signals,
 * stopping, the output pipes, closing, and every allocation of
 * jw_process_new and jw_process_start failing in turn. The spawn, the
 * namespaces and the exit watch have suites of their own (test_spawn.c,
 * test_nsinit.c, test_exitwatch.c).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "../failmalloc.h"
#include "process_harness.h"

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
  ck_assert_int_eq(count_procs(NULL, 0), 0);
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
  launch(&loop, &c, argv);
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
  launch(&loop, &c, argv);
  ck_assert_int_eq(jw_process_stop(c.proc, 10000), 0);
  ck_assert_int_eq(jw_process_stop(c.proc, 10000), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGTERM);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_stop_kill_after_grace) {
  static const char *const argv[] = {
      "sh", "-c", "trap '' TERM; echo ready; sleep 100", NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  uint64_t t0;
  pid_t pgid;
  launch(&loop, &c, argv);
  jw_process_status(c.proc, &st);
  pgid = st.pid;
  /* The shell has installed its trap once it says so. */
  wait_output(&loop, &c, "ready\n", 10000);
  t0 = uv_hrtime() / 1000000;
  ck_assert_int_eq(jw_process_stop(c.proc, 500), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGKILL);
  ck_assert_uint_ge(c.exit_ms - t0, 450);
  ck_assert_uint_lt(c.exit_ms - t0, 1500);
  ck_assert_int_eq(count_procs(&pgid, 1), 0);
  finish(&loop, &c);
}
END_TEST

/*
 * The stop leaves nothing of the job running: the two children it had
 * (their pids printed before "ready", and checked alive in the job's
 * group before the stop) are gone after it.
 */
START_TEST(test_stop_kills_children) {
  static const char *const argv[] = {
      "sh", "-c", "sleep 100 & echo $!; sleep 100 & echo $!; echo ready; wait",
      NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  int kids[2];
  int i;
  launch(&loop, &c, argv);
  jw_process_status(c.proc, &st);
  wait_output(&loop, &c, "ready\n", 10000);
  ck_assert_int_eq(sscanf(c.out[0].data, "%d\n%d\n", &kids[0], &kids[1]), 2);
  for (i = 0; i < 2; i++) {
    ck_assert_int_eq(kill(kids[i], 0), 0);
    ck_assert(!test_pid_gone(kids[i]));
    ck_assert_int_eq(getpgid(kids[i]), st.pid);
  }
  ck_assert_int_eq(jw_process_stop(c.proc, 5000), 0);
  ck_assert(run_until(&loop, &c.exits, 5000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(count_procs(&st.pid, 1), 0);
  for (i = 0; i < 2; i++)
    ck_assert(test_pid_gone(kids[i]));
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
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
  ck_assert_int_eq(count_procs(&c.st.pid, 1), 0);
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

/*
 * A burst of small writes makes the pipe busy, and busy pipes are read in
 * pauses (process.c, "Coalescing"); a line written once the burst is
 * over, while the job keeps running, still arrives (the pause ends by
 * itself, it does not wait for more output or for the exit), and nothing
 * of the burst is lost or reordered.
 */
START_TEST(test_line_after_burst_arrives) {
  static const char *const argv[] = {
      "sh", "-c",
      "i=0; while [ $i -lt 3000 ]; do echo burst$i; i=$((i+1)); done; "
      "head -c 4000000 /dev/zero | tr '\\0' z; sleep 0.2; echo quiet-line; "
      "exec sleep 60",
      NULL};
  uv_loop_t loop;
  struct ctx c;
  struct out_buf want;
  char line[32];
  int i;
  launch(&loop, &c, argv);
  wait_output(&loop, &c, "quiet-line", 20000);
  ck_assert_int_eq(c.exits, 0);
  memset(&want, 0, sizeof(want));
  for (i = 0; i < 3000; i++) {
    snprintf(line, sizeof(line), "burst%d\n", i);
    out_add(&want, line, strlen(line));
  }
  ck_assert_uint_eq(c.out[0].len, want.len + 4000000 + strlen("quiet-line\n"));
  ck_assert(memcmp(c.out[0].data, want.data, want.len) == 0);
  for (i = 0; i < 4000000; i++)
    if (c.out[0].data[want.len + (size_t)i] != 'z')
      break;
  ck_assert_int_eq(i, 4000000);
  ck_assert_str_eq(c.out[0].data + want.len + 4000000, "quiet-line\n");
  free(want.data);
  finish(&loop, &c);
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
 * A Start takes no descriptor but its two pipes and its pidfd (or, where
 * exits are watched through SIGCHLD, libuv's signal pipe, two): with only
 * those free below RLIMIT_NOFILE it succeeds. It once opened /dev/null
 * and a report pipe too, three more at once, and failed with EMFILE.
 */
START_TEST(test_start_needs_only_its_fds) {
  static const char *const argv[] = {"true", NULL};
  struct rlimit old, lim;
  uv_loop_t loop;
  struct ctx c;
  int fill[1024];
  int nfill = 0;
  int top = -1;
  const char *np = getenv("JW_FORCE_NO_PIDFD");
  int need = np != NULL && strcmp(np, "1") == 0 ? 6 : 5;
  int fd;
  int err;
  DIR *d;
  struct dirent *e;

  /* valgrind keeps descriptors of its own at the top of the range, and
   * its clone(CLONE_VM) is a fork that reports through a pipe. */
  if (under_valgrind())
    SKIP("valgrind holds descriptors of its own near the limit");
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.' && atoi(e->d_name) > top)
      top = atoi(e->d_name);
  closedir(d);
  ck_assert_int_lt(top, 1000);
  /* Every number below the highest taken, so those above are all. */
  while (nfill < (int)(sizeof(fill) / sizeof(fill[0]))) {
    fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (fd > top) {
      close(fd);
      break;
    }
    fill[nfill++] = fd;
  }
  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
  lim = old;
  lim.rlim_cur = (rlim_t)(top + 1 + need);
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
  err = start(&loop, &c, argv, NULL, 0, NULL);
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
  while (nfill > 0)
    close(fill[--nfill]);
  ck_assert_int_eq(err, 0);
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 0);
  finish(&loop, &c);
}
END_TEST

START_TEST(test_close_running) {
  static const char *const argv[] = {"sh", "-c", "sleep 100 & sleep 100", NULL};
  uv_loop_t loop;
  struct ctx c;
  jw_proc_status_t st;
  int fds = test_count_fds();
  launch(&loop, &c, argv);
  jw_process_status(c.proc, &st);
  finish(&loop, &c);
  ck_assert_int_eq(c.exits, 0);
  ck_assert_int_eq(count_procs(&st.pid, 1), 0);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
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
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/*
 * Creates and starts a job with allocation n failing. Returns how many
 * allocations the two calls made; a call that failed was an -ENOMEM that
 * left nothing behind: no descriptor, no child, the initial state, and a
 * process that still closes (LSan sees any leak when the test exits).
 */
static size_t new_start_failing(size_t n) {
  static const char *const args[] = {"-c", "echo $A$B"};
  static const char *const env[] = {"A=1", "B=2"};
  jw_process_options_t o;
  uv_loop_t loop;
  struct ctx c;
  size_t calls;
  int fds = test_count_fds();
  int err;

  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.command = "sh";
  o.args = args;
  o.nargs = 2;
  o.env = env;
  o.nenv = 2;
  o.working_dir = "/";
  o.on_output = on_output;
  o.on_exit = on_exit_cb;
  o.data = &c;
  failmalloc_arm(n);
  err = jw_process_new(&loop, &o, &c.proc);
  if (err == 0)
    err = jw_process_start(c.proc);
  calls = failmalloc_disarm();
  if (n >= calls) {
    /* Nothing failed: the job runs as usual. */
    ck_assert_int_eq(err, 0);
    ck_assert(run_until(&loop, &c.exits, 20000));
    ck_assert_int_eq(c.st.exit_code, 0);
    ck_assert_str_eq(c.out[0].data, "12\n");
    finish(&loop, &c);
  } else {
    ck_assert_msg(err == -ENOMEM, "allocation %zu of %zu failed: %d", n, calls,
                  err);
    if (c.proc != NULL) {
      ck_assert(jw_process_is_initial_state(c.proc));
      finish(&loop, &c);
    } else {
      ck_assert_int_eq(uv_loop_close(&loop), 0);
    }
  }
  ck_assert_int_eq(test_count_fds(), fds);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
  return calls;
}

/* Fails allocation 0, 1, 2, ... until the calls make no more. */
static void fail_each_allocation(void) {
  size_t n, calls = 0;
  for (n = 0; n < 1000; n++) {
    calls = new_start_failing(n);
    if (n >= calls)
      break;
  }
  ck_assert_uint_lt(n, 1000);
  /* The process, its strings and vectors, the read buffer, the lookup. */
  ck_assert_uint_ge(calls, 10);
}

/*
 * Forks sh -c script in a process group of its own with stdout and
 * stderr on two pipes, as a previous owner would have started it, and
 * fills h with what jw_process_adopt needs.
 */
static void fork_child(const char *script, jw_process_handover_t *h) {
  int out[2], err[2];
  pid_t pid;
  ck_assert_int_eq(pipe(out), 0);
  ck_assert_int_eq(pipe(err), 0);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(out[1]);
    close(err[0]);
    close(err[1]);
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  close(out[1]);
  close(err[1]);
  memset(h, 0, sizeof(*h));
  h->pid = pid;
  h->pidfd = -1;
  h->out_fd = out[0];
  h->err_fd = err[0];
  h->status_fd = -1;
  h->started_at_ns = 1;
}

static void adopt(uv_loop_t *loop, struct ctx *c,
                  const jw_process_handover_t *h) {
  static const char *const argv[] = {"sh", NULL};
  jw_process_options_t o;
  memset(&o, 0, sizeof(o));
  TEST_SET_COMMAND(&o, argv, NULL, 0, NULL);
  o.on_output = on_output;
  o.on_exit = on_exit_cb;
  o.data = c;
  ck_assert_int_eq(jw_process_adopt(loop, &o, h, &c->proc), 0);
  ck_assert(jw_process_is_running_state(c->proc));
}

/* A child forked outside the module streams, exits and is reaped. */
START_TEST(test_adopt_forked) {
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx c;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fork_child("echo out; echo err >&2; exit 7", &h);
  adopt(&loop, &c, &h);
  ck_assert_int_eq(c.exits, 0); /* never from the call */
  ck_assert(run_until(&loop, &c.exits, 10000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 7);
  ck_assert_int_eq(c.st.pid, h.pid);
  ck_assert_str_eq(c.out[JW_STDOUT].data, "out\n");
  ck_assert_str_eq(c.out[JW_STDERR].data, "err\n");
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/* Stopping an adopted process reaches its group, as for a started one. */
START_TEST(test_adopt_stop) {
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx c;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fork_child("trap '' TERM; echo ready; sleep 100 & wait", &h);
  adopt(&loop, &c, &h);
  wait_output(&loop, &c, "ready", 10000);
  ck_assert_int_eq(jw_process_stop(c.proc, 100), 0);
  ck_assert(run_until(&loop, &c.exits, 10000));
  ck_assert_int_eq(c.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(c.st.signal, SIGKILL);
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/* A pid that is not our child is refused, and its fds stay the caller's. */
START_TEST(test_adopt_not_child) {
  static const char *const argv[] = {"sh", NULL};
  jw_process_handover_t h = {
      .pid = 1, .pidfd = -1, .out_fd = -1, .err_fd = -1, .status_fd = -1};
  jw_process_options_t o;
  jw_process_t *p = NULL;
  uv_loop_t loop;
  memset(&o, 0, sizeof(o));
  TEST_SET_COMMAND(&o, argv, NULL, 0, NULL);
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  ck_assert_int_eq(jw_process_adopt(&loop, &o, &h, &p), -ECHILD);
  ck_assert_ptr_null(p);
  h.pid = 0;
  ck_assert_int_eq(jw_process_adopt(&loop, &o, &h, &p), -EINVAL);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/*
 * A started process handed over to a second one on the same loop: the
 * same pid, every byte of its output exactly once, in order, its exit
 * seen by the new owner only; closing the old one kills nothing.
 */
START_TEST(test_handover_output_exact) {
  static const char *const argv[] = {
      "sh", "-c",
      "i=0; while [ $i -lt 400 ]; do echo line$i; i=$((i+1)); "
      "[ $i = 200 ] && sleep 0.3; done; exit 4",
      NULL};
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx a, b;
  char want[8192];
  size_t n = 0;
  int i;
  launch(&loop, &a, argv);
  wait_output(&loop, &a, "line199\n", 10000);
  ck_assert_int_eq(jw_process_handover(a.proc, &h), 0);
  ck_assert_int_eq(jw_process_handover(a.proc, &h), JW_ECLOSED);
  ck_assert_int_eq(jw_process_stop(a.proc, 100), JW_ECLOSED);
  ck_assert_int_eq(jw_process_signal(a.proc, SIGTERM), JW_ECLOSED);
  jw_process_status(a.proc, &a.st);
  ck_assert_int_eq(h.pid, a.st.pid);
  ck_assert_int_eq(fcntl(h.out_fd, F_GETFD) & FD_CLOEXEC, 0);
  /* -1 where the kernel (or valgrind) has no pidfd_open. */
  if (h.pidfd >= 0)
    ck_assert_int_eq(fcntl(h.pidfd, F_GETFD) & FD_CLOEXEC, 0);
  jw_process_close(a.proc, on_close, &a);
  ck_assert(run_until(&loop, &a.closes, 10000));
  memset(&b, 0, sizeof(b));
  adopt(&loop, &b, &h);
  ck_assert(run_until(&loop, &b.exits, 20000));
  ck_assert_int_eq(a.exits, 0);
  ck_assert_int_eq(b.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(b.st.exit_code, 4);
  ck_assert_int_eq(b.st.pid, h.pid);
  for (i = 0; i < 400; i++)
    n += (size_t)snprintf(want + n, sizeof(want) - n, "line%d\n", i);
  ck_assert_uint_eq(a.out[JW_STDOUT].len + b.out[JW_STDOUT].len, n);
  ck_assert(memcmp(want, a.out[JW_STDOUT].data, a.out[JW_STDOUT].len) == 0);
  ck_assert(memcmp(want + a.out[JW_STDOUT].len, b.out[JW_STDOUT].data,
                   b.out[JW_STDOUT].len) == 0);
  ctx_free(&a);
  finish(&loop, &b);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/* A stop under way goes on in the new owner: SIGKILL at its deadline. */
START_TEST(test_handover_pending_stop) {
  static const char *const argv[] = {
      "sh", "-c", "trap '' TERM; echo ready; sleep 100 & wait; sleep 100",
      NULL};
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx a, b;
  launch(&loop, &a, argv);
  wait_output(&loop, &a, "ready", 10000);
  ck_assert_int_eq(jw_process_stop(a.proc, 300), 0);
  ck_assert_int_eq(jw_process_handover(a.proc, &h), 0);
  ck_assert(h.stop_requested);
  ck_assert_uint_gt(h.kill_in_ms, 0);
  ck_assert_uint_le(h.kill_in_ms, 300);
  jw_process_close(a.proc, on_close, &a);
  ck_assert(run_until(&loop, &a.closes, 10000));
  memset(&b, 0, sizeof(b));
  adopt(&loop, &b, &h);
  ck_assert(run_until(&loop, &b.exits, 10000));
  ck_assert_int_eq(b.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(b.st.signal, SIGKILL);
  ctx_free(&a);
  finish(&loop, &b);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/*
 * Without pidfds (the SIGCHLD fallback), a child that ended before it was
 * adopted, whose SIGCHLD nobody watched, is still seen to end.
 */
START_TEST(test_adopt_exited_no_pidfd) {
  jw_process_config_t force = {.no_pidfd = true};
  const char *fork_mode = getenv("CK_FORK");
  jw_process_handover_t h;
  siginfo_t si;
  uv_loop_t loop;
  struct ctx c;
  if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
    return;
  ck_assert_int_eq(jw_process_configure(&force), 0);
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fork_child("echo gone; exit 9", &h);
  /* A zombie now, its SIGCHLD already delivered to nobody. */
  memset(&si, 0, sizeof(si));
  ck_assert_int_eq(waitid(P_PID, (id_t)h.pid, &si, WEXITED | WNOWAIT), 0);
  adopt(&loop, &c, &h);
  ck_assert(run_until(&loop, &c.exits, 10000));
  ck_assert_int_eq(c.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(c.st.exit_code, 9);
  ck_assert_str_eq(c.out[JW_STDOUT].data, "gone\n");
  finish(&loop, &c);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/*
 * A job in a PID namespace of its own: its init's report of how the
 * command ended is handed over too, so the new owner sees the command's
 * signal, not the init's exit.
 */
START_TEST(test_handover_pid_namespace) {
  static const char *const argv[] = {
      "sh", "-c", "echo ready; sleep 0.5; kill -USR1 $$", NULL};
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx a, b;
  int err;
  memset(&a, 0, sizeof(a));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  creds_isolation = JW_ISOLATE_PID;
  err = start(&loop, &a, argv, NULL, 0, NULL);
  creds_isolation = 0;
  if (err == -EPERM || err == -EINVAL) {
    /* No CAP_SYS_ADMIN here: nothing to hand over. */
    finish(&loop, &a);
    return;
  }
  ck_assert_int_eq(err, 0);
  wait_output(&loop, &a, "ready", 10000);
  ck_assert_int_eq(jw_process_handover(a.proc, &h), 0);
  ck_assert_int_ge(h.status_fd, 0);
  jw_process_close(a.proc, on_close, &a);
  ck_assert(run_until(&loop, &a.closes, 10000));
  memset(&b, 0, sizeof(b));
  adopt(&loop, &b, &h);
  ck_assert(run_until(&loop, &b.exits, 10000));
  ck_assert_int_eq(b.st.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(b.st.signal, SIGUSR1);
  ctx_free(&a);
  finish(&loop, &b);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/* A child the previous owner reaped: its status and what its pipes held. */
START_TEST(test_adopt_reaped) {
  jw_process_handover_t h;
  uv_loop_t loop;
  struct ctx c;
  int ws;
  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fork_child("echo last words; kill -USR1 $$", &h);
  ck_assert_int_eq(waitpid(h.pid, &ws, 0), h.pid);
  h.reaped = true;
  h.wstatus = ws;
  adopt(&loop, &c, &h);
  ck_assert(run_until(&loop, &c.exits, 10000));
  ck_assert_int_eq(c.st.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(c.st.signal, SIGUSR1);
  ck_assert_str_eq(c.out[JW_STDOUT].data, "last words\n");
  finish(&loop, &c);
}
END_TEST

/*
 * jw_process_adopt with allocation n failing: -ENOMEM, the child and its
 * fds still the caller's (adopted by a second try, which then ends it);
 * returns how many allocations the call made.
 */
static size_t adopt_failing(size_t n) {
  static const char *const argv[] = {"sh", NULL};
  jw_process_handover_t h;
  jw_process_options_t o;
  uv_loop_t loop;
  struct ctx c;
  size_t calls;
  int err;

  memset(&c, 0, sizeof(c));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  fork_child("echo adopted", &h);
  memset(&o, 0, sizeof(o));
  TEST_SET_COMMAND(&o, argv, NULL, 0, NULL);
  o.on_output = on_output;
  o.on_exit = on_exit_cb;
  o.data = &c;
  failmalloc_arm(n);
  err = jw_process_adopt(&loop, &o, &h, &c.proc);
  calls = failmalloc_disarm();
  if (n < calls) {
    ck_assert_msg(err == -ENOMEM, "allocation %zu of %zu failed: %d", n, calls,
                  err);
    ck_assert_int_ge(fcntl(h.out_fd, F_GETFD), 0);
    ck_assert_int_ge(fcntl(h.err_fd, F_GETFD), 0);
    ck_assert_int_eq(jw_process_adopt(&loop, &o, &h, &c.proc), 0);
  } else {
    ck_assert_int_eq(err, 0);
  }
  ck_assert(run_until(&loop, &c.exits, 20000));
  ck_assert_str_eq(c.out[JW_STDOUT].data, "adopted\n");
  finish(&loop, &c);
  return calls;
}

START_TEST(test_failmalloc_adopt) {
  size_t n, calls = 0;
  int fds = test_count_fds();
  for (n = 0; n < 100; n++) {
    calls = adopt_failing(n);
    if (n >= calls)
      break;
  }
  ck_assert_uint_lt(n, 100);
  ck_assert_uint_ge(calls, 4);
  ck_assert_int_eq(test_count_fds(), fds);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

START_TEST(test_failmalloc) { fail_each_allocation(); }
END_TEST

/*
 * The same with exits watched by the SIGCHLD fallback, whose reaper is
 * allocated by the start. Each Check test is a fresh fork, so forcing the
 * fallback here changes no other test; without fork mode it would.
 */
START_TEST(test_failmalloc_no_pidfd) {
  jw_process_config_t force = {.no_pidfd = true};
  const char *fork_mode = getenv("CK_FORK");

  if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
    return;
  ck_assert_int_eq(jw_process_configure(&force), 0);
  fail_each_allocation();
}
END_TEST

static Suite *process_suite(void) {
  Suite *s = suite_create("process");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 60);
  const TTest *const tc_tests[] = {test_exit_code,
                                   test_signaled,
                                   test_signal_group,
                                   test_stop_term,
                                   test_stop_kill_after_grace,
                                   test_stop_kills_children,
                                   test_group_killed_on_main_exit,
                                   test_setsid_escapee_bounded,
                                   test_stdout_stderr_apart,
                                   test_binary_output_exact,
                                   test_line_after_burst_arrives,
                                   test_new_invalid,
                                   test_start_needs_only_its_fds,
                                   test_close_running,
                                   test_close_from_output_cb,
                                   test_adopt_forked,
                                   test_adopt_stop,
                                   test_adopt_not_child,
                                   test_handover_output_exact,
                                   test_handover_pending_stop,
                                   test_adopt_reaped,
                                   test_adopt_exited_no_pidfd,
                                   test_handover_pid_namespace,
                                   test_failmalloc,
                                   test_failmalloc_no_pidfd,
                                   test_failmalloc_adopt,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(process_suite()); }
