/*
 * jw_process: the object a job's processes are watched through, on the
 * caller's loop: its output pipes, its timers (the stop's grace period,
 * the drain bound, the wait for an empty cgroup), stop and close.
 *
 * The rest of the module lives beside it (process_int.h): spawn.c
 * creates the child, nsinit.c sets up its namespaces, exitwatch.c sees
 * the main process end and holds the module's global state.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobworker/error.h"
#include "process_int.h"

/* One read buffer per process; each read() fills at most this much. */
#define READ_BUF_SIZE (64 * 1024)

/*
 * Reads per readiness event and pipe, so that one chatty job cannot keep
 * the loop from serving the others.
 */
#define READS_PER_EVENT 16

/*
 * Coalescing, as a NIC moderates its interrupts. A job that writes small
 * pieces back to back (4 KiB from head or cat, a line at a time from a
 * line-buffered program) would wake the server for each of them, and each
 * would cost a log write and a small message to every reader. When a read
 * brings less than COALESCE_SMALL and the pipe's previous data came less
 * than COALESCE_MS before, the pipe is busy: it is not watched for
 * COALESCE_MS, and fills in the kernel meanwhile, so that the next read
 * takes many of the job's writes at once. The first write after a quiet
 * COALESCE_MS is read at once; no byte waits longer than about COALESCE_MS
 * (the loop's timers count whole milliseconds); the bytes wait in the
 * pipe, never in our memory, so a reload or a close loses nothing that
 * the pipe did not already hold.
 *
 * A pause is only worth it with a pipe the job does not fill meanwhile:
 * the pipe is grown to COALESCE_PIPE (the default pipe-max-size) when it
 * first turns busy, and a pipe that cannot be grown to COALESCE_LARGE
 * (F_SETPIPE_SZ refused: above /proc/sys/fs/pipe-max-size, or the user's
 * pipe-user-pages-soft spent) is never paused. A pause that finds the pipe
 * half full or more is not repeated: the job writes faster than a pause
 * can hold, and big reads are cheap enough.
 *
 * At most COALESCE_GROWN pipes of a thread are grown at once, so that the
 * pipes' pages count for at most 16 MiB against the server user's
 * pipe-user-pages-soft (64 MiB by default): past that limit, an
 * unprivileged user's new pipes get only two pages.
 */
#define COALESCE_MS 1
#define COALESCE_SMALL (16 * 1024)
#define COALESCE_PIPE (1024 * 1024)
#define COALESCE_LARGE (256 * 1024)
#define COALESCE_GROWN 16

static _Thread_local unsigned grown_pipes;

/*
 * How long the pipes may stay open after the main process ended. Only a
 * process that left the job's group (setsid) can still hold them then.
 */
#define DRAIN_BOUND_MS 2000
/* How often, and for how long, a final status waits for an empty cgroup. */
#define SETTLE_POLL_MS 2
#define SETTLE_BOUND_MS 2000

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void free_process(jw_process_t *p) {
  free(p->command);
  jw__free_vec(p->argv);
  jw__free_vec(p->envp);
  free(p->cwd);
  free(p->buf);
  if (p->status_fd >= 0)
    close(p->status_fd);
  free(p);
}

int jw_process_new(uv_loop_t *loop, const jw_process_options_t *opts,
                   jw_process_t **out) {
  jw_process_t *p;
  int has_path = 0;
  size_t i;
  size_t ne;

  if (loop == NULL || opts == NULL || out == NULL || opts->command == NULL ||
      opts->command[0] == '\0' || (opts->nargs > 0 && opts->args == NULL) ||
      (opts->nenv > 0 && opts->env == NULL))
    return -EINVAL;
  for (i = 0; i < opts->nenv; i++) {
    const char *eq = opts->env[i] == NULL ? NULL : strchr(opts->env[i], '=');
    if (eq == NULL || eq == opts->env[i])
      return -EINVAL;
    if (strncmp(opts->env[i], "PATH=", 5) == 0)
      has_path = 1;
  }
  for (i = 0; i < opts->nargs; i++)
    if (opts->args[i] == NULL)
      return -EINVAL;

  p = calloc(1, sizeof(*p));
  if (p == NULL)
    return -ENOMEM;
  p->loop = loop;
  p->pidfd = -1;
  p->fds[0] = -1;
  p->fds[1] = -1;
  p->status_fd = -1;
  jw__list_init(&p->reap_node);
  p->cgroup = opts->cgroup;
  p->isolation =
      opts->isolation & (JW_ISOLATE_PID | JW_ISOLATE_MOUNT | JW_ISOLATE_NET);
  /*
   * Seeing only its own processes needs a /proc of its own, and seeing
   * only its own network devices a /sys of its own.
   */
  if (p->isolation & (JW_ISOLATE_PID | JW_ISOLATE_NET))
    p->isolation |= JW_ISOLATE_MOUNT;
  p->creds = opts->creds;
  p->on_output = opts->on_output;
  p->on_exit = opts->on_exit;
  p->data = opts->data;
  p->st.state = JW_PROC_INITIAL;

  p->command = strdup(opts->command);
  p->argv = calloc(opts->nargs + 2, sizeof(char *));
  ne = opts->nenv + (has_path ? 0 : 1);
  p->envp = calloc(ne + 1, sizeof(char *));
  if (p->command == NULL || p->argv == NULL || p->envp == NULL)
    goto nomem;
  if ((p->argv[0] = strdup(opts->command)) == NULL)
    goto nomem;
  for (i = 0; i < opts->nargs; i++)
    if ((p->argv[i + 1] = strdup(opts->args[i])) == NULL)
      goto nomem;
  /*
   * The environment is built from nothing: the default PATH unless the
   * request brings its own, then the request's entries. Nothing of the
   * server's environment reaches the job.
   */
  ne = 0;
  if (!has_path && (p->envp[ne++] = strdup("PATH=" JW__DEFAULT_PATH)) == NULL)
    goto nomem;
  for (i = 0; i < opts->nenv; i++)
    if ((p->envp[ne++] = strdup(opts->env[i])) == NULL)
      goto nomem;
  for (i = 0; p->envp[i] != NULL; i++) {
    if (strncmp(p->envp[i], "PATH=", 5) == 0) {
      p->path = p->envp[i] + 5;
      break;
    }
  }
  if (opts->working_dir != NULL && opts->working_dir[0] != '\0' &&
      (p->cwd = strdup(opts->working_dir)) == NULL)
    goto nomem;

  /*
   * The timers exist from the start so that closing a process that never
   * ran still completes from the loop, like any other close.
   */
  uv_timer_init(loop, &p->grace_timer);
  uv_timer_init(loop, &p->drain_timer);
  uv_timer_init(loop, &p->coalesce_timer);
  p->grace_timer.data = p;
  p->drain_timer.data = p;
  p->coalesce_timer.data = p;
  p->open_handles = 3;
  *out = p;
  return 0;

nomem:
  free_process(p);
  return -ENOMEM;
}

static void maybe_finish_close(jw_process_t *p);

void jw__process_handle_closed(uv_handle_t *h) {
  jw_process_t *p = h->data;
  p->open_handles--;
  maybe_finish_close(p);
}

static void maybe_finish_close(jw_process_t *p) {
  if (!p->closing || p->open_handles > 0)
    return;
  if (p->close_cb != NULL)
    p->close_cb(p, p->close_data);
  free_process(p);
}

/*
 * Stops watching a pipe and closes it. uv_close() comes first: stopping a
 * poll handle removes its fd from epoll, which must happen before the fd
 * number can be reused by anything else.
 */
static void close_pipe(jw_process_t *p, int i) {
  if (p->pipe_open[i]) {
    uv_close((uv_handle_t *)&p->pipe_poll[i], jw__process_handle_closed);
    p->pipe_open[i] = 0;
  }
  p->pipe_paused[i] = 0;
  if (p->pipe_cap[i] > 0)
    grown_pipes--;
  p->pipe_cap[i] = 0;
  jw__close_fd(&p->fds[i]);
}

static void on_settle(uv_timer_t *t);

static void maybe_final(jw_process_t *p) {
  if (p->final || p->closing || !p->reaped || p->fds[0] >= 0 || p->fds[1] >= 0)
    return;
  uv_timer_stop(&p->drain_timer);
  /*
   * A killed process closes its pipes before it has finished exiting, so
   * EOF alone does not mean the job's processes are gone. With a cgroup,
   * the status is final only once the cgroup is empty (every process past
   * its exit), so that a Stop answered STOPPED leaves nothing running;
   * SETTLE_BOUND_MS bounds the wait for a process stuck in the kernel.
   */
  if (p->cgroup != NULL && !jw_cgroup_is_empty(p->cgroup)) {
    uint64_t now = uv_now(p->loop);
    if (p->settle_since == 0)
      p->settle_since = now;
    if (now - p->settle_since < SETTLE_BOUND_MS) {
      uv_timer_start(&p->drain_timer, on_settle, SETTLE_POLL_MS, 0);
      return;
    }
  }
  p->final = 1;
  p->st.ended_at_ns = now_ns();
  p->st.exit_code = p->raw_code;
  p->st.signal = p->raw_signal;
  if (p->stop_requested)
    p->st.state = JW_PROC_STOPPED;
  else if (p->raw_signal != 0)
    p->st.state = JW_PROC_SIGNALED;
  else
    p->st.state = JW_PROC_EXITED;
  if (p->on_exit != NULL) {
    jw_proc_status_t st = p->st;
    p->on_exit(p, &st, p->data);
  }
}

/* Hands the buffer's first len bytes, read from pipe i, to the owner. */
static void hand_on(jw_process_t *p, int i, size_t len) {
  if (len > 0 && p->on_output != NULL)
    p->on_output(p, i == JW__PIPE_OUT ? JW_STDOUT : JW_STDERR, p->buf, len,
                 p->data);
}

/*
 * Reads what a pipe has, at most max_reads reads, into the one buffer:
 * what several reads bring is handed on as one piece when it fits. Returns
 * the bytes read; stops when the pipe is empty, at EOF (then closed), or
 * when the process started closing from inside the output callback.
 */
static size_t drain_pipe(jw_process_t *p, int i, int max_reads) {
  size_t total = 0;
  size_t have = 0;

  while (p->fds[i] >= 0 && max_reads-- > 0) {
    ssize_t n = read(p->fds[i], p->buf + have, READ_BUF_SIZE - have);
    /* Taken now: the owner's callback below may change errno. */
    int err = n < 0 ? errno : 0;
    if (err == EINTR)
      continue;
    if (n > 0) {
      have += (size_t)n;
      total += (size_t)n;
      if (have < READ_BUF_SIZE)
        continue;
    }
    hand_on(p, i, have);
    if (p->closing)
      return total;
    have = 0;
    if (err == EAGAIN || err == EWOULDBLOCK)
      return total;
    /* EOF, or an error that ends the stream just the same. */
    if (n <= 0)
      close_pipe(p, i);
  }
  /* Out of reads for this event: what came is handed on, the rest waits. */
  hand_on(p, i, have);
  return total;
}

/*
 * Whether pipe i may be paused: grown for it the first time it is asked
 * (see "Coalescing"), large enough that a pause does not block the job.
 * A pipe refused its size is not asked again; one that found the
 * thread's COALESCE_GROWN pipes taken is, when it turns busy next.
 */
static int pipe_may_pause(jw_process_t *p, int i) {
  int cap;
  if (p->pipe_cap[i] != 0)
    return p->pipe_cap[i] > 0;
  if (grown_pipes >= COALESCE_GROWN)
    return 0;
  cap = fcntl(p->fds[i], F_SETPIPE_SZ, COALESCE_PIPE);
  if (cap < COALESCE_LARGE) {
    p->pipe_cap[i] = -1;
    return 0;
  }
  p->pipe_cap[i] = cap;
  grown_pipes++;
  return 1;
}

static void on_coalesce(uv_timer_t *t);

/* Stops watching pipe i until the coalescing timer fires. */
static void pause_pipe(jw_process_t *p, int i) {
  if (p->fds[i] < 0 || !p->pipe_open[i] || !pipe_may_pause(p, i))
    return;
  uv_poll_stop(&p->pipe_poll[i]);
  p->pipe_paused[i] = 1;
  if (!uv_is_active((uv_handle_t *)&p->coalesce_timer))
    uv_timer_start(&p->coalesce_timer, on_coalesce, COALESCE_MS, 0);
}

static void on_pipe(uv_poll_t *h, int status, int events);

/* Watches a paused pipe again and reads what it gathered. */
static void resume_pipe(jw_process_t *p, int i) {
  if (!p->pipe_paused[i])
    return;
  p->pipe_paused[i] = 0;
  uv_poll_start(&p->pipe_poll[i], UV_READABLE, on_pipe);
  drain_pipe(p, i, READS_PER_EVENT);
}

/*
 * After a read brought got bytes: pauses the pipe when it is busy (a
 * small read soon after the previous one).
 */
static void note_read(jw_process_t *p, int i, size_t got) {
  uint64_t now;
  uint64_t last;
  if (got == 0)
    return;
  now = uv_hrtime();
  last = p->pipe_data_ns[i];
  p->pipe_data_ns[i] = now;
  if (got < COALESCE_SMALL && last != 0 &&
      now - last < (uint64_t)COALESCE_MS * 1000000)
    pause_pipe(p, i);
}

static void on_pipe(uv_poll_t *h, int status, int events) {
  jw_process_t *p = h->data;
  int i = h == &p->pipe_poll[JW__PIPE_OUT] ? JW__PIPE_OUT : JW__PIPE_ERR;
  size_t got;
  (void)status;
  (void)events;
  /*
   * What the other pipe gathered while paused was written before this
   * event: it goes first, so that stdout and stderr stay in the order
   * the server saw them come.
   */
  resume_pipe(p, 1 - i);
  if (p->closing)
    return;
  got = drain_pipe(p, i, READS_PER_EVENT);
  if (p->closing)
    return;
  note_read(p, i, got);
  maybe_final(p);
}

/*
 * The pause is over (jw_process_handover stops it before its end): each
 * paused pipe is read while still unwatched. Still busy, and the pause
 * held what came: it stays paused for another round (no wake-up just to
 * see the next small write). Quiet, or half full or more (the job outruns
 * a pause): watched again, read as it comes.
 */
static void on_coalesce(uv_timer_t *t) {
  jw_process_t *p = t->data;
  int again = 0;
  int i;
  for (i = 0; i < 2; i++) {
    size_t got;
    if (!p->pipe_paused[i])
      continue;
    got = drain_pipe(p, i, READS_PER_EVENT);
    if (p->closing)
      return;
    if (!p->pipe_paused[i]) /* closed at EOF */
      continue;
    if (got > 0)
      p->pipe_data_ns[i] = uv_hrtime();
    if (got > 0 && got < (size_t)p->pipe_cap[i] / 2) {
      again = 1;
      continue;
    }
    p->pipe_paused[i] = 0;
    uv_poll_start(&p->pipe_poll[i], UV_READABLE, on_pipe);
  }
  if (again)
    uv_timer_start(&p->coalesce_timer, on_coalesce, COALESCE_MS, 0);
  maybe_final(p);
}

static void on_settle(uv_timer_t *t) {
  jw_process_t *p = t->data;
  if (!p->closing)
    maybe_final(p);
}

static void on_drain_timeout(uv_timer_t *t) {
  jw_process_t *p = t->data;
  int i;
  /*
   * Something outside the group still holds a pipe. Take what is already
   * in it, then close it so that the job can end.
   */
  for (i = 0; i < 2 && !p->closing; i++) {
    drain_pipe(p, i, 64);
    if (!p->closing)
      close_pipe(p, i);
  }
  if (!p->closing)
    maybe_final(p);
}

/* SIGKILL to the group, and to everything in the cgroup when there is one. */
static void kill_all(jw_process_t *p) {
  kill(-p->st.pid, SIGKILL);
  if (p->cgroup != NULL)
    jw_cgroup_kill(p->cgroup);
}

static void on_grace_timeout(uv_timer_t *t) {
  jw_process_t *p = t->data;
  if (p->started && !p->reaped)
    kill_all(p);
}

int jw__process_main_exit(jw_process_t *p) {
  siginfo_t si;
  int r;

  /*
   * The main process is a zombie now, so its pid, and with it the group
   * id, cannot have been reused: kill what is left of the group before
   * reaping. The job is over, as systemd does for a unit; with a cgroup
   * that includes whatever left the group (setsid).
   */
  kill_all(p);
  r = jw__exitwatch_reap(p, &si);
  if (r < 0) {
    if (errno == EINTR || errno == EAGAIN)
      return -EAGAIN;
    /* ECHILD: someone else reaped it; there is no status to know. */
    si.si_pid = p->st.pid;
    si.si_code = CLD_KILLED;
    si.si_status = SIGKILL;
  }
  if (si.si_pid == 0)
    return -EAGAIN;
  if (si.si_code == CLD_EXITED) {
    p->raw_code = si.si_status;
  } else {
    p->raw_signal = si.si_status;
    p->raw_code = -1;
  }
  /* A namespace's init reports how the command itself ended. */
  if (p->status_fd >= 0) {
    int msg[2];
    ssize_t n;
    do
      n = read(p->status_fd, msg, sizeof(msg));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(msg)) {
      p->raw_code = msg[0];
      p->raw_signal = msg[1];
    }
    jw__close_fd(&p->status_fd);
  }
  p->reaped = 1;
  jw__exitwatch_stop(p);
  uv_timer_stop(&p->grace_timer);
  if (p->closing) {
    maybe_finish_close(p);
    return 0;
  }
  if (p->fds[0] >= 0 || p->fds[1] >= 0)
    uv_timer_start(&p->drain_timer, on_drain_timeout, DRAIN_BOUND_MS, 0);
  maybe_final(p);
  return 0;
}

/* An adopted process that was reaped already: its pipes, then final. */
static void on_adopted_reaped(uv_timer_t *t) {
  jw_process_t *p = t->data;
  if (p->closing)
    return;
  if (p->fds[0] >= 0 || p->fds[1] >= 0)
    uv_timer_start(&p->drain_timer, on_drain_timeout, DRAIN_BOUND_MS, 0);
  maybe_final(p);
}

void jw__process_watch(jw_process_t *proc, jw__reaper_t *reaper) {
  int pid = proc->st.pid;
  int i;

  proc->st.state = JW_PROC_RUNNING;
  proc->started = 1;
  /*
   * uv_poll_init cannot fail for a pipe or a pidfd on Linux, barring
   * memory exhaustion in epoll; in that case the job is killed and ends
   * through the normal path.
   */
  if (!proc->reaped)
    jw__exitwatch_start(proc, reaper);
  for (i = 0; i < 2; i++) {
    if (proc->fds[i] < 0)
      continue;
    if (uv_poll_init(proc->loop, &proc->pipe_poll[i], proc->fds[i]) == 0) {
      proc->pipe_poll[i].data = proc;
      proc->pipe_open[i] = 1;
      proc->open_handles++;
      uv_poll_start(&proc->pipe_poll[i], UV_READABLE, on_pipe);
    } else {
      jw__close_fd(&proc->fds[i]);
    }
  }
  if (proc->reaped) {
    uv_timer_start(&proc->drain_timer, on_adopted_reaped, 0, 0);
    return;
  }
  if (!proc->pid_poll_open && proc->reaper == NULL) {
    kill(-pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    jw__close_fd(&proc->pidfd);
    proc->reaped = 1;
    proc->raw_signal = SIGKILL;
    proc->raw_code = -1;
    for (i = 0; i < 2; i++)
      close_pipe(proc, i);
  }
}

void jw__process_arm_kill(jw_process_t *p, uint64_t ms) {
  p->stop_requested = 1;
  if (!p->reaped)
    uv_timer_start(&p->grace_timer, on_grace_timeout, ms, 0);
}

int jw__process_alloc_buf(jw_process_t *p) {
  if (p->buf == NULL && (p->buf = malloc(READ_BUF_SIZE)) == NULL)
    return -ENOMEM;
  return 0;
}

int jw_process_start(jw_process_t *proc) {
  int outp[2] = {-1, -1};
  int errp[2] = {-1, -1};
  int statfd = -1;
  int pidfd = -1;
  jw__reaper_t *reaper = NULL;
  pid_t pid;
  int err = 0;

  if (proc == NULL)
    return -EINVAL;
  if (proc->started || proc->closing)
    return JW_ECLOSED;
  err = jw__exitwatch_prepare(proc->loop, &reaper);
  if (err < 0)
    return err;
  if ((err = jw__process_alloc_buf(proc)) < 0)
    goto error;
  /*
   * Blocking both ends: the job's write ends must block. The read ends
   * are made non-blocking by uv_poll_init (libuv 1.2.2 on) in
   * jw__process_watch, before anything reads them.
   */
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
    err = -errno;
    goto error;
  }

  pid = jw__spawn(proc, outp[1], errp[1], reaper == NULL ? &pidfd : NULL,
                  &statfd);
  if (pid < 0) {
    err = (int)pid;
    goto error;
  }
  jw__close_fd(&outp[1]);
  jw__close_fd(&errp[1]);

  if (reaper == NULL) {
    proc->pidfd = jw__exitwatch_pidfd(pid, pidfd);
    if (proc->pidfd < 0) {
      err = proc->pidfd;
      proc->pidfd = -1;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
      jw__close_fd(&statfd);
      goto error;
    }
  }

  proc->fds[JW__PIPE_OUT] = outp[0];
  proc->fds[JW__PIPE_ERR] = errp[0];
  outp[0] = -1;
  errp[0] = -1;
  proc->status_fd = statfd;

  proc->st.pid = pid;
  proc->st.started_at_ns = now_ns();
  jw__process_watch(proc, reaper);
  return 0;

error:
  jw__close_fd(&outp[0]);
  jw__close_fd(&outp[1]);
  jw__close_fd(&errp[0]);
  jw__close_fd(&errp[1]);
  jw__exitwatch_abort(reaper);
  return err;
}

int jw_process_signal(jw_process_t *proc, int sig) {
  if (proc == NULL || !proc->started || proc->reaped || proc->closing ||
      proc->handed_over)
    return JW_ECLOSED;
  if (kill(-proc->st.pid, sig) == 0)
    return 0;
  if (errno != ESRCH)
    return -errno;
  /*
   * The main process moved to another group; it still gets the signal.
   * Without a pidfd its pid does: it is not reaped, so not reused.
   */
  if (proc->pidfd < 0)
    return kill(proc->st.pid, sig) < 0 ? -errno : 0;
  if (syscall(SYS_pidfd_send_signal, proc->pidfd, sig, NULL, 0) < 0)
    return -errno;
  return 0;
}

int jw_process_stop(jw_process_t *proc, uint64_t grace_ms) {
  if (proc == NULL || !proc->started || proc->final || proc->closing ||
      proc->handed_over)
    return JW_ECLOSED;
  if (proc->reaped)
    return 0;
  if (proc->stop_requested) {
    /*
     * A second stop with a shorter grace brings the SIGKILL forward (a
     * shutdown does not wait out a client's long grace); never back.
     */
    uv_update_time(proc->loop);
    if (uv_is_active((uv_handle_t *)&proc->grace_timer) &&
        grace_ms < uv_timer_get_due_in(&proc->grace_timer))
      uv_timer_start(&proc->grace_timer, on_grace_timeout, grace_ms, 0);
    return 0;
  }
  proc->stop_requested = 1;
  jw_process_signal(proc, SIGTERM);
  /* The grace period counts from now, not from the loop's cached time. */
  uv_update_time(proc->loop);
  uv_timer_start(&proc->grace_timer, on_grace_timeout, grace_ms, 0);
  return 0;
}

void jw_process_status(const jw_process_t *proc, jw_proc_status_t *out) {
  *out = proc->st;
}

bool jw_process_is_initial_state(const jw_process_t *proc) {
  return proc->st.state == JW_PROC_INITIAL;
}

bool jw_process_is_running_state(const jw_process_t *proc) {
  return proc->st.state == JW_PROC_RUNNING;
}

bool jw_process_is_final_state(const jw_process_t *proc) {
  return proc->final != 0;
}

void jw_process_close(jw_process_t *proc, jw_process_close_cb close_cb,
                      void *data) {
  int i;

  if (proc == NULL || proc->closing)
    return;
  proc->closing = 1;
  proc->close_cb = close_cb;
  proc->close_data = data;
  for (i = 0; i < 2; i++)
    close_pipe(proc, i);
  uv_timer_stop(&proc->grace_timer);
  uv_timer_stop(&proc->drain_timer);
  uv_timer_stop(&proc->coalesce_timer);
  uv_close((uv_handle_t *)&proc->grace_timer, jw__process_handle_closed);
  uv_close((uv_handle_t *)&proc->drain_timer, jw__process_handle_closed);
  uv_close((uv_handle_t *)&proc->coalesce_timer, jw__process_handle_closed);
  /*
   * A process still running is killed; the pidfd watch stays open until
   * it is reaped, so that no zombie is left behind.
   */
  /* Handed over: the child is another owner's now, to watch and reap. */
  if (proc->started && !proc->reaped && !proc->handed_over) {
    kill_all(proc);
    if (proc->pidfd >= 0)
      syscall(SYS_pidfd_send_signal, proc->pidfd, SIGKILL, NULL, 0);
    else
      kill(proc->st.pid, SIGKILL);
  }
}
