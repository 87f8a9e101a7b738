/*
 * Internals of jw_process shared by its four files:
 *
 * - process.c: the object (jw_process_t), its pipes, timers, stop, close;
 * - spawn.c: the child, from the candidate lookup to the exec;
 * - nsinit.c: what a child with namespaces does in them (mounts, lo, the
 *   PID namespace's init);
 * - exitwatch.c: how the end of the main process is seen (a pidfd, or the
 *   SIGCHLD fallback), with every piece of the module's global state.
 *
 * One header rather than one per file: the files are one module, and they
 * share two structures (the process and what its child is given), which
 * per-file headers would only pass around between each other.
 */
#ifndef JOBWORKER_PROCESS_INT_H
#define JOBWORKER_PROCESS_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "cgroup_int.h"
#include "jobworker/process.h"
#include "list.h"

#define JW__DEFAULT_PATH                                                       \
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum { JW__PIPE_OUT = 0, JW__PIPE_ERR = 1 };

/* The SIGCHLD watch of one loop (exitwatch.c), on hosts without pidfds. */
typedef struct jw__reaper_s jw__reaper_t;

struct jw_process_s {
  uv_loop_t *loop;
  char *command;
  char **argv; /* argv[0] is the command; NULL-terminated */
  char **envp; /* NULL-terminated */
  char *cwd;
  const char *path; /* the PATH used for lookup; points into envp */
  jw_cgroup_t *cgroup;
  unsigned isolation;
  jw_credentials_t creds;
  int status_fd; /* the init's report of how the command ended; or -1 */
  jw_process_output_cb on_output;
  jw_process_exit_cb on_exit;
  void *data;

  jw_proc_status_t st;
  int pidfd;
  int fds[2]; /* our read ends of stdout and stderr; -1 once closed */
  char *buf;

  uv_poll_t pid_poll;
  jw__reaper_t *reaper; /* without pidfds: the loop's SIGCHLD watch, or NULL */
  jw__list_t reap_node; /* in the reaper's list of unreaped processes */
  uv_poll_t pipe_poll[2];
  uv_timer_t grace_timer;
  uv_timer_t drain_timer; /* pipes held from outside; then the settle */
  /*
   * A busy pipe's pause (process.c, "Coalescing"): while it runs, a pipe
   * marked pipe_paused is not watched and fills up in the kernel.
   */
  uv_timer_t coalesce_timer;
  uint64_t pipe_data_ns[2]; /* uv_hrtime() of the last read with data */
  uint64_t settle_since; /* uv_now() when the wait for an empty cgroup began */
  int open_handles;

  unsigned started : 1;
  unsigned reaped : 1;
  unsigned stop_requested : 1;
  unsigned final : 1;
  unsigned closing : 1;
  unsigned pid_poll_open : 1;
  unsigned handed_over : 1; /* jw_process_handover: not ours to kill or reap */
  unsigned pipe_open[2];
  unsigned pipe_paused[2];
  /* Grown for pauses: the capacity; -1 refused; 0 not asked (process.c). */
  int pipe_cap[2];

  int raw_code;
  int raw_signal;
  jw_process_close_cb close_cb;
  void *close_data;
};

/* What the child needs, prepared by the parent before vfork(). */
struct jw__child_args {
  char **cands; /* NULL-terminated candidate paths for execve() */
  char **argv;
  char **envp;
  const char *cwd;
  int null_fd;
  int out_fd;
  int err_fd;
  int report_fd;
  pid_t parent;
  jw_credentials_t creds;
  /* The job's cgroups (none: nv1 0, fds -1), namespaces, init's pipe. */
  const jw__cg_spawn_t *cg;
  unsigned isolation;
  int status_fd;
  /*
   * Not 0: the child shares our descriptor table and first takes one of
   * its own with the descriptors below this number only (spawn.c).
   */
  unsigned keep_below;
};

static inline void jw__close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

/* Frees a NULL-terminated vector of strings and the vector itself. */
void jw__free_vec(char **v);

/*
 * The process's one /dev/null (O_RDONLY, O_CLOEXEC), every job's stdin:
 * opened at the first call and kept for the process's life, so a Start
 * opens nothing for it. Returns the fd or -errno (tried again next call).
 */
int jw__devnull_fd(void);

/* process.c */

/* A handle of p is closed: p is freed once the last one is (when closing). */
void jw__process_handle_closed(uv_handle_t *h);

/*
 * The main process has ended (it is a zombie): reap it and finish.
 * Returns 0, or -EAGAIN when there was nothing to reap yet (try again at
 * the next event). p may have been freed when this returns 0.
 */
int jw__process_main_exit(jw_process_t *p);

/*
 * Watches a process whose fds, pid and pidfd are set: its exit (through
 * reaper where the host has no pidfds) unless it is reaped already, and
 * its pipes. A reaped one is finished from the loop, after its pipes.
 */
void jw__process_watch(jw_process_t *p, jw__reaper_t *reaper);

/* A stop is under way: SIGKILL after ms, without a SIGTERM now. */
void jw__process_arm_kill(jw_process_t *p, uint64_t ms);

/* Allocates p's read buffer. Returns 0 or -ENOMEM. */
int jw__process_alloc_buf(jw_process_t *p);

/* spawn.c */

/*
 * Starts p's command with its stdout and stderr on out_fd and err_fd.
 * Returns the child's pid, or -errno with nothing left behind (no child,
 * no descriptor). *pidfd gets the pidfd clone3() made, or -1 (pidfd
 * NULL: none is wanted); *status_fd the non-blocking read end of the
 * init's report (JW_ISOLATE_PID), or -1.
 */
pid_t jw__spawn(const jw_process_t *p, int out_fd, int err_fd, int *pidfd,
                int *status_fd);

/*
 * Reserves the spawn block (spawn.c): a few descriptors low in the
 * table, so that a spawn's child does not copy the whole table. Called
 * while the table is small (jw_supervisor_new); until then, and where it
 * fails, spawns copy the table as fork does. Each successful call is
 * matched by jw__spawn_release; the last release closes the block.
 * 0 or -errno.
 */
int jw__spawn_reserve(void);
void jw__spawn_release(void);

/*
 * For the children of spawn.c and nsinit.c, which share the parent's
 * memory or a copy of it: they make system calls on prepared data only.
 */

/* Reports err on report_fd and exits with 127. */
__attribute__((noreturn)) void jw__child_fail(int report_fd, int err);
/* Moves fd to a number >= 3 so that dup2() onto 0..2 cannot clobber it. */
int jw__child_lift_fd(int fd, int report_fd);
/* Sets the signal mask with a raw system call. */
void jw__child_set_mask(uint64_t mask);
/* Writes s in full; 0, or -1 with errno set. */
int jw__child_write_str(int fd, const char *s, size_t len);
/* Becomes the job's user (creds.set_ids), then no_new_privs. */
void jw__child_drop_privileges(const struct jw__child_args *a, int report_fd,
                               pid_t parent);
/* Runs the command (execvp-style over the candidates) or reports why not. */
__attribute__((noreturn)) void
jw__child_exec_command(const struct jw__child_args *a, int report_fd);

/* nsinit.c */

/*
 * In a child with a mount or network namespace of its own: the mounts its
 * namespaces need (/proc, /sys) and the loopback interface up. Fails the
 * child through report_fd.
 */
void jw__nsinit_setup(const struct jw__child_args *a, int report_fd);

/* Becomes PID 1 of the job's PID namespace; runs the command as its child. */
__attribute__((noreturn)) void jw__nsinit_run(const struct jw__child_args *a,
                                              int report_fd, int null_fd,
                                              int status_fd);

/* exitwatch.c */

/*
 * Gets ready to watch the exit of a process of loop about to be spawned.
 * *reaper is NULL where pidfds work; otherwise it holds a reference on the
 * loop's SIGCHLD watch, made before the child exists so that no SIGCHLD
 * of the child can come before the handler. Returns 0 or a negative code.
 */
int jw__exitwatch_prepare(uv_loop_t *loop, jw__reaper_t **reaper);

/* Drops what jw__exitwatch_prepare took, when the spawn failed. */
void jw__exitwatch_abort(jw__reaper_t *reaper);

/*
 * Opens a pidfd for pid unless the spawn gave one (pidfd >= 0). Returns
 * the CLOEXEC pidfd or -errno.
 */
int jw__exitwatch_pidfd(pid_t pid, int pidfd);

/*
 * Starts watching p's main process: on its reaper's list, or through a
 * poll handle on p->pidfd. Without reaper, p->pid_poll_open says whether
 * the watch could start.
 */
void jw__exitwatch_start(jw_process_t *p, jw__reaper_t *reaper);

/*
 * Reaps p's main process without blocking: waitid() by pidfd or by pid.
 * Returns what waitid() returns (errno set), si filled in.
 */
int jw__exitwatch_reap(const jw_process_t *p, siginfo_t *si);

/*
 * Ends the watch on the main process: the pidfd's poll handle, or the
 * reference on the reaper, which counts as one of the process's handles
 * so that a closed process is not freed before it is reaped. The process
 * is off the reaper's list by then.
 */
void jw__exitwatch_stop(jw_process_t *p);

#endif /* JOBWORKER_PROCESS_INT_H */
