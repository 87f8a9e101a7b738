/*
 * jw_process's exit watch: how the end of a job's main process is seen,
 * and every piece of the module's global state.
 *
 * The exit is seen through a pidfd watched by a uv_poll_t and reaped with
 * waitid(P_PIDFD); there is no SIGCHLD handler and no polling timer.
 *
 * Only where the host has no pidfds (pidfd_open or waitid(P_PIDFD) fail
 * with ENOSYS or EINVAL: kernels before 5.4, valgrind before 3.20, some
 * sandboxes) is the exit seen another way: one uv_signal_t for SIGCHLD per
 * loop, shared by that loop's processes while any of them is unreaped. On
 * each SIGCHLD it asks waitid(P_PID) about each of those processes by pid,
 * never waitpid(-1), so that an embedding program's own children are still
 * left to it. That is the only case with a SIGCHLD handler; the check is
 * made once and its answer kept (jw_process_configure's no_pidfd forces
 * the fallback; it is a test knob).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobworker/error.h"
#include "process_int.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/*
 * The SIGCHLD watch of one loop, used only on hosts without pidfds. It
 * lives while a process of the loop holds a reference: from just before
 * the spawn (so that no SIGCHLD of the child can come before the handler)
 * until that process is reaped.
 */
struct jw__reaper_s {
  uv_signal_t sig;
  uv_loop_t *loop;
  jw__list_t node;    /* in the list of every loop's reaper */
  jw__list_t waiting; /* started and not reaped yet (reap_node) */
  size_t refs;
  int scanning;
};

/* Whether the host has pidfds: 0 not known yet, 1 yes, 2 no. */
static atomic_int pidfd_support;

/* Every loop's reaper (hosts without pidfds); found by the loop. */
static jw__list_t reapers = {&reapers, &reapers};
static pthread_mutex_t reapers_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Finds out, once, whether exits can be watched through pidfds. Returns 1
 * (yes), 0 (no: the SIGCHLD fallback), or -errno when the probe itself
 * failed for want of a resource; that answer is not kept.
 */
static int have_pidfd(void) {
  int known = atomic_load(&pidfd_support);
  siginfo_t si;
  int fd, ok;

  if (known != 0)
    return known == 1;
  if ((fd = (int)syscall(SYS_pidfd_open, getpid(), 0)) < 0) {
    /* ENOSYS, or EPERM from a seccomp filter: no pidfds here. */
    if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
      return -errno;
    ok = 0;
  } else {
    /*
     * waitid(P_PIDFD) came one release after pidfd_open (5.4, not 5.3).
     * We are not our own child: ECHILD says the kernel knows P_PIDFD,
     * EINVAL that it does not.
     */
    memset(&si, 0, sizeof(si));
    ok = waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0 &&
         errno == ECHILD;
    close(fd);
  }
  atomic_store(&pidfd_support, ok ? 1 : 2);
  return ok;
}

/*
 * The library reads no environment: the fallback is forced through this
 * call, before the first start has made the choice.
 */
int jw_process_configure(const jw_process_config_t *cfg) {
  int known = 0;

  /*
   * The jobs' /dev/null is opened here too, where a program sets the
   * module up, so no start adds it to the fds the program counts later.
   * A failure is seen, and tried again, at the first start.
   */
  (void)jw__devnull_fd();
  /* Not forcing the fallback leaves the choice to the probe. */
  if (!cfg->no_pidfd)
    return 0;
  if (atomic_compare_exchange_strong(&pidfd_support, &known, 2))
    return 0;
  return known == 2 ? 0 : JW_EINVAL;
}

static void on_sigchld(uv_signal_t *h, int signum);

static void on_reaper_closed(uv_handle_t *h) { free(h->data); }

/*
 * Takes a reference on the loop's reaper, making it and starting its
 * SIGCHLD watch for the first. Returns 0 or a negative code.
 */
static int reaper_get(uv_loop_t *loop, jw__reaper_t **out) {
  jw__reaper_t *r = NULL;
  jw__list_t *n;
  int err = 0;

  pthread_mutex_lock(&reapers_lock);
  jw__list_foreach(n, &reapers) {
    r = jw__list_data(n, jw__reaper_t, node);
    if (r->loop == loop)
      break;
    r = NULL;
  }
  if (r == NULL) {
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
      err = -ENOMEM;
      goto out;
    }
    err = uv_signal_init(loop, &r->sig);
    if (err < 0) {
      free(r);
      goto out;
    }
    r->sig.data = r;
    r->loop = loop;
    jw__list_init(&r->waiting);
    err = uv_signal_start(&r->sig, on_sigchld, SIGCHLD);
    if (err < 0) {
      uv_close((uv_handle_t *)&r->sig, on_reaper_closed);
      goto out;
    }
    jw__list_insert_head(&reapers, &r->node);
  }
  r->refs++;
  *out = r;
out:
  pthread_mutex_unlock(&reapers_lock);
  return err;
}

/*
 * Closes the reaper once no process holds it (which also puts SIGCHLD
 * back to its default), but not in the middle of a scan: the scan calls
 * this again when it is done.
 */
static void reaper_maybe_close(jw__reaper_t *r) {
  if (r->refs > 0 || r->scanning)
    return;
  pthread_mutex_lock(&reapers_lock);
  jw__list_remove(&r->node);
  pthread_mutex_unlock(&reapers_lock);
  uv_close((uv_handle_t *)&r->sig, on_reaper_closed);
}

/* Drops a reference taken by reaper_get. */
static void reaper_put(jw__reaper_t *r) {
  r->refs--;
  reaper_maybe_close(r);
}

int jw__exitwatch_prepare(uv_loop_t *loop, jw__reaper_t **reaper) {
  int err = have_pidfd();

  *reaper = NULL;
  if (err < 0)
    return err;
  /*
   * Without pidfds the loop's SIGCHLD watch must be there before the
   * child exists, or its SIGCHLD could come first and be missed.
   */
  if (err == 0 && (err = reaper_get(loop, reaper)) < 0)
    return err;
  return 0;
}

void jw__exitwatch_abort(jw__reaper_t *reaper) {
  if (reaper != NULL)
    reaper_put(reaper);
}

int jw__exitwatch_pidfd(pid_t pid, int pidfd) {
  int fd = pidfd >= 0 ? pidfd : (int)syscall(SYS_pidfd_open, pid, 0);
  /* Close-on-exec already: CLONE_PIDFD and pidfd_open both set it. */
  if (fd < 0)
    return -errno;
  return fd;
}

static void on_pidfd(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  jw__process_main_exit(h->data);
}

void jw__exitwatch_start(jw_process_t *p, jw__reaper_t *reaper) {
  /*
   * uv_poll_init cannot fail for a pidfd on Linux, barring memory
   * exhaustion in epoll; the caller then kills the job.
   */
  if (reaper != NULL) {
    /*
     * On its reaper's list of unreaped processes. The reference taken
     * before the spawn is the process's from now.
     */
    p->reaper = reaper;
    jw__list_insert_head(&reaper->waiting, &p->reap_node);
    p->open_handles++;
  } else if (uv_poll_init(p->loop, &p->pid_poll, p->pidfd) == 0) {
    p->pid_poll.data = p;
    p->pid_poll_open = 1;
    p->open_handles++;
    uv_poll_start(&p->pid_poll, UV_READABLE, on_pidfd);
  }
}

int jw__exitwatch_reap(const jw_process_t *p, siginfo_t *si) {
  int r;

  memset(si, 0, sizeof(*si));
  if (p->pidfd >= 0)
    r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, si, WEXITED | WNOHANG);
  else
    do
      r = waitid(P_PID, (id_t)p->st.pid, si, WEXITED | WNOHANG);
    while (r < 0 && errno == EINTR);
  return r;
}

void jw__exitwatch_stop(jw_process_t *p) {
  if (p->pid_poll_open) {
    uv_close((uv_handle_t *)&p->pid_poll, jw__process_handle_closed);
    p->pid_poll_open = 0;
  }
  jw__close_fd(&p->pidfd);
  if (p->reaper != NULL) {
    jw__reaper_t *r = p->reaper;
    p->reaper = NULL;
    p->open_handles--;
    reaper_put(r);
  }
}

/*
 * Whether p's main process has ended, asked without reaping it (WNOWAIT),
 * so that its pid and group id stay ours until jw__process_main_exit has
 * killed what is left of the group. ECHILD (someone else reaped it) counts
 * as ended too: jw__process_main_exit finds the same and ends the job.
 */
static int main_ended(const jw_process_t *p) {
  siginfo_t si;
  int r;

  memset(&si, 0, sizeof(si));
  do
    r = waitid(P_PID, (id_t)p->st.pid, &si, WEXITED | WNOHANG | WNOWAIT);
  while (r < 0 && errno == EINTR);
  return r < 0 ? errno == ECHILD : si.si_pid != 0;
}

/*
 * A SIGCHLD, on a host without pidfds: one or more children ended, maybe
 * not ours. Every ended process of this loop is first moved off the
 * waiting list, then finished: the callbacks that finishing runs may
 * start and close processes, and so change the list.
 */
static void on_sigchld(uv_signal_t *h, int signum) {
  jw__reaper_t *r = h->data;
  jw__list_t ended;
  jw__list_t *n, *tmp;
  (void)signum;

  jw__list_init(&ended);
  r->scanning = 1;
  jw__list_foreach_safe(n, tmp, &r->waiting) {
    if (main_ended(jw__list_data(n, jw_process_t, reap_node))) {
      jw__list_remove(n);
      jw__list_insert_tail(&ended, n);
    }
  }
  while ((n = jw__list_first(&ended)) != NULL) {
    jw__list_remove(n);
    /*
     * Nothing to reap after all, which a zombie seen with WNOWAIT should
     * not allow: back on the list, for the next SIGCHLD.
     */
    if (jw__process_main_exit(jw__list_data(n, jw_process_t, reap_node)) < 0)
      jw__list_insert_head(&r->waiting, n);
  }
  r->scanning = 0;
  reaper_maybe_close(r);
}
