/*
 * jw_process over a reload: handing a running child over (its pipes and
 * pidfd dup'd for an execve(2) to pass on) and adopting one this program
 * already has. The adopted process is then the same object as a started
 * one (process.c): the same exit watch, pipes, stop and close.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobworker/error.h"
#include "process_int.h"

/* Makes fd close-on-exec and, for a pipe, non-blocking. Returns 0/-errno. */
static int own_fd(int fd, int nonblock) {
  if (fd < 0)
    return 0;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
    return -errno;
  if (nonblock) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
      return -errno;
  }
  return 0;
}

/*
 * Whether pid is a child of ours that has not been reaped: waitid with
 * WNOWAIT leaves a zombie as it is. Returns 0 or -ECHILD.
 */
static int is_our_child(int pid) {
  siginfo_t si;
  int r;
  memset(&si, 0, sizeof(si));
  do
    r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : 0;
}

int jw_process_adopt(uv_loop_t *loop, const jw_process_options_t *opts,
                     const jw_process_handover_t *h, jw_process_t **out) {
  jw__reaper_t *reaper = NULL;
  jw_process_t *p = NULL;
  int pidfd = -1;
  int err;

  if (h == NULL || out == NULL || h->pid <= 0)
    return -EINVAL;
  if (!h->reaped && (err = is_our_child(h->pid)) < 0)
    return err;
  if ((err = jw_process_new(loop, opts, &p)) < 0)
    return err;
  if ((err = jw__process_alloc_buf(p)) < 0)
    goto error;
  if (!h->reaped) {
    if ((err = jw__exitwatch_prepare(loop, &reaper)) < 0)
      goto error;
    /*
     * Where pidfds work, the exit is watched through one: the handed one,
     * or one opened now (the child is unreaped, so its pid is still it).
     */
    if (reaper == NULL) {
      pidfd = h->pidfd >= 0 ? h->pidfd : jw__exitwatch_pidfd(h->pid, -1);
      if (pidfd < 0) {
        err = pidfd;
        goto error;
      }
      if ((err = own_fd(pidfd, 0)) < 0)
        goto error;
    }
  }
  if ((err = own_fd(h->out_fd, 1)) < 0 || (err = own_fd(h->err_fd, 1)) < 0 ||
      (err = own_fd(h->status_fd, 1)) < 0)
    goto error;

  p->pidfd = pidfd;
  p->fds[JW__PIPE_OUT] = h->out_fd;
  p->fds[JW__PIPE_ERR] = h->err_fd;
  p->status_fd = h->status_fd;
  p->st.pid = h->pid;
  p->st.started_at_ns = h->started_at_ns;
  if (h->reaped) {
    p->reaped = 1;
    if (WIFEXITED(h->wstatus)) {
      p->raw_code = WEXITSTATUS(h->wstatus);
    } else {
      p->raw_signal = WIFSIGNALED(h->wstatus) ? WTERMSIG(h->wstatus) : SIGKILL;
      p->raw_code = -1;
    }
  }
  jw__process_watch(p, reaper);
  /*
   * Without pidfds the exit is seen at a SIGCHLD, and one the child sent
   * before this program watched for it (during the exec) is gone: one of
   * our own makes the loop's watch look at every process it waits for.
   */
  if (reaper != NULL)
    kill(getpid(), SIGCHLD);
  if (h->stop_requested)
    jw__process_arm_kill(p, h->kill_in_ms);
  *out = p;
  return 0;

error:
  /* The caller's fds stay the caller's: only what was opened here goes. */
  if (pidfd >= 0 && pidfd != h->pidfd)
    close(pidfd);
  jw__exitwatch_abort(reaper);
  p->status_fd = -1;
  jw_process_close(p, NULL, NULL);
  return err;
}

/* Dups fd to one that an execve(2) passes on. Returns it, -1, or -errno. */
static int dup_for_exec(int fd) {
  int d;
  if (fd < 0)
    return -1;
  d = fcntl(fd, F_DUPFD, 3);
  return d < 0 ? -errno : d;
}

int jw_process_handover(jw_process_t *proc, jw_process_handover_t *h) {
  int fds[4] = {-1, -1, -1, -1};
  const int src[4] = {proc->pidfd, proc->fds[JW__PIPE_OUT],
                      proc->fds[JW__PIPE_ERR], proc->status_fd};
  int i;

  if (!proc->started || proc->final || proc->closing || proc->handed_over)
    return JW_ECLOSED;
  for (i = 0; i < 4; i++) {
    if ((fds[i] = dup_for_exec(src[i])) < -1) {
      int err = fds[i];
      while (--i >= 0)
        if (fds[i] >= 0)
          close(fds[i]);
      return err;
    }
  }
  memset(h, 0, sizeof(*h));
  h->pid = proc->st.pid;
  h->pidfd = fds[0];
  h->out_fd = fds[1];
  h->err_fd = fds[2];
  h->status_fd = fds[3];
  h->started_at_ns = proc->st.started_at_ns;
  h->reaped = proc->reaped;
  if (proc->reaped)
    h->wstatus = proc->raw_signal != 0 ? proc->raw_signal & 0x7f
                                       : (proc->raw_code & 0xff) << 8;
  h->stop_requested = proc->stop_requested;
  if (proc->stop_requested && uv_is_active((uv_handle_t *)&proc->grace_timer))
    h->kill_in_ms = uv_timer_get_due_in(&proc->grace_timer);

  /*
   * Nothing here reads the pipes, reaps the child or kills it from now
   * on: the next owner does. Off the reaper's list first, as the watch's
   * end expects.
   */
  proc->handed_over = 1;
  for (i = 0; i < 2; i++)
    if (proc->pipe_open[i])
      uv_poll_stop(&proc->pipe_poll[i]);
  uv_timer_stop(&proc->grace_timer);
  uv_timer_stop(&proc->drain_timer);
  uv_timer_stop(&proc->coalesce_timer);
  if (proc->reaper != NULL)
    jw__list_remove(&proc->reap_node);
  if (!proc->reaped)
    jw__exitwatch_stop(proc);
  return 0;
}
