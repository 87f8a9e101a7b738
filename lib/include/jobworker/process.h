/*
 * jw_process: one job's processes. The design document's Process API.
 *
 * A process runs a command by PATH lookup (no shell) in a new process group,
 * with stdin from /dev/null, stdout and stderr on two non-blocking pipes, a
 * clean environment (a default PATH plus the caller's KEY=VALUE entries)
 * and an optional working directory. Its exit is watched through a pidfd
 * on the caller's loop. When the main process ends, what is left of its
 * group is killed, both pipes are drained to EOF, and only then is the
 * status final and the exit callback called.
 */
#ifndef JOBWORKER_PROCESS_H
#define JOBWORKER_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "jobworker/cgroup.h"
#include "jobworker/outlog.h" /* jw_stream_t */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct jw_process_s jw_process_t;

/* Namespaces a job gets of its own (jw_process_options_t.isolation). */
enum {
  JW_ISOLATE_PID = 1 << 0,
  JW_ISOLATE_MOUNT = 1 << 1,
  JW_ISOLATE_NET = 1 << 2,
};

typedef enum {
  JW_PROC_INITIAL = 0, /* created, not started */
  JW_PROC_RUNNING,     /* started; not final yet (includes draining) */
  JW_PROC_EXITED,      /* ended by itself; exit_code is set */
  JW_PROC_SIGNALED,    /* killed by a signal nobody asked for; signal set */
  JW_PROC_STOPPED      /* ended after jw_process_stop; signal or exit_code */
} jw_proc_state_t;

typedef struct {
  jw_proc_state_t state;
  int pid;
  int exit_code;
  int signal;
  int64_t started_at_ns; /* CLOCK_REALTIME, ns since the epoch */
  int64_t ended_at_ns;   /* 0 until final */
} jw_proc_status_t;

/*
 * Called for every chunk read from the job's stdout or stderr, in arrival
 * order. buf is only valid during the call. This is the C form of the
 * design document's WithStdOutWriters/WithStdErrWriters.
 */
typedef void (*jw_process_output_cb)(jw_process_t *proc, jw_stream_t stream,
                                     const char *buf, size_t len, void *data);

/* Called once, when the process is final (exited and both pipes at EOF). */
typedef void (*jw_process_exit_cb)(jw_process_t *proc,
                                   const jw_proc_status_t *status, void *data);

/* Called once the process's handles are closed; proc may be freed then. */
typedef void (*jw_process_close_cb)(jw_process_t *proc, void *data);

/*
 * The credentials a command runs with. With set_ids false (the default)
 * it keeps the caller's. With set_ids true the child drops every
 * supplementary group and takes gid, then uid, as its real, effective and
 * saved ids, after joining its cgroup and setting up its namespaces (which
 * need the caller's privilege) and before entering working_dir and
 * exec'ing: the user must be able to do both, or the start fails with
 * that errno (-EACCES). Leaving uid 0 drops every capability; setting them
 * needs CAP_SETUID/CAP_SETGID (-EPERM).
 */
typedef struct {
  bool set_ids;
  uid_t uid;
  gid_t gid;
  /*
   * PR_SET_NO_NEW_PRIVS for the command: exec'ing a set-user-ID program
   * or one with file capabilities gains nothing.
   */
  bool no_new_privs;
} jw_credentials_t;

typedef struct {
  const char *command;     /* required: a name looked up in PATH, or a path */
  const char *const *args; /* argv[1..]; may be NULL when nargs is 0 */
  size_t nargs;
  const char *const *env; /* "KEY=VALUE" entries added to the default PATH */
  size_t nenv;
  const char *working_dir;        /* NULL or "": inherit */
  jw_process_output_cb on_output; /* may be NULL */
  jw_process_exit_cb on_exit;     /* may be NULL */
  void *data;                     /* passed to the callbacks */
  /*
   * The cgroup the process starts in (NULL: the server's own). It must
   * outlive the process. With one, the end of the main process and the
   * stop's SIGKILL reach every process in the cgroup, not only the group.
   */
  jw_cgroup_t *cgroup;
  /*
   * JW_ISOLATE_* namespaces of its own (needs CAP_SYS_ADMIN). With
   * JW_ISOLATE_PID the main process is a minimal init (PID 1 in the
   * namespace) that runs the command as its child, reaps orphans,
   * forwards signals to the command's process group, and passes on how
   * the command ended; it implies JW_ISOLATE_MOUNT, whose fresh /proc is
   * what lets the job see only its own processes. JW_ISOLATE_NET implies
   * it too: its fresh /sys shows only the namespace's devices (lo).
   */
  unsigned isolation;
  jw_credentials_t creds; /* all zero: the caller's */
} jw_process_options_t;

/* Process-wide settings of the process module (jw_process_configure). */
typedef struct {
  /*
   * Watch exits through the SIGCHLD fallback even where pidfds work
   * (docs/library.md, "Hosts without pidfds"): for tests of the fallback,
   * and for running under a valgrind that lacks pidfd_open without making
   * it warn at every probe. Not a setting a server needs.
   */
  bool no_pidfd;
} jw_process_config_t;

/*
 * Applies cfg to every process of this program. Call it before the first
 * jw_process_start (or jw_supervisor_start): how exits are watched is
 * decided once, at the first start. Returns 0, or JW_EINVAL when that
 * decision was already made and differs from what cfg asks. It also opens
 * the jobs' /dev/null (O_CLOEXEC), which the program keeps from then on.
 */
int jw_process_configure(const jw_process_config_t *cfg);

/*
 * Creates a process in the initial state. Copies everything in opts.
 * Returns 0, -EINVAL for a missing command or an env entry without '=',
 * or -ENOMEM.
 */
int jw_process_new(uv_loop_t *loop, const jw_process_options_t *opts,
                   jw_process_t **out);

/*
 * Starts the process. Returns 0, or the errno of the failure as a negative
 * code (-ENOENT command not found, -EACCES not executable or a directory,
 * or not reachable by the job's user, -ENOENT/-ENOTDIR bad working
 * directory, -EPERM namespaces or set_ids without the privilege, ...). On
 * failure nothing is left behind: no child, no fd, and the process stays in the
 * initial state.
 */
int jw_process_start(jw_process_t *proc);

/*
 * Sends sig to the whole process group. Returns 0, JW_ECLOSED when the
 * process is not running (also once the main process has exited and only
 * the pipes are being drained), or -errno.
 */
int jw_process_signal(jw_process_t *proc, int sig);

/*
 * Stops the process: SIGTERM to the group now, SIGKILL to the group after
 * grace_ms if it is still running. The final status arrives through the
 * exit callback with state JW_PROC_STOPPED. A stop already under way is
 * not repeated, but a shorter grace_ms brings its SIGKILL forward. Returns
 * 0 (also when a stop is already under way) or JW_ECLOSED when the process
 * is not running.
 */
int jw_process_stop(jw_process_t *proc, uint64_t grace_ms);

/* Copies the current status into out. */
void jw_process_status(const jw_process_t *proc, jw_proc_status_t *out);

bool jw_process_is_initial_state(const jw_process_t *proc);
bool jw_process_is_running_state(const jw_process_t *proc);
bool jw_process_is_final_state(const jw_process_t *proc);

/*
 * Closes the process's handles. A running process is killed (SIGKILL to
 * the group) and reaped first. close_cb (may be NULL) runs from the loop
 * once every handle is closed; the process memory is freed after it
 * returns. The exit callback is not called after jw_process_close.
 */
void jw_process_close(jw_process_t *proc, jw_process_close_cb close_cb,
                      void *data);

/*
 * A running process passed from one jw_process_t to another, possibly in
 * the same program after an execve(2) (a reload): the child stays ours
 * with the same pid, and its pipes buffer what it writes meanwhile.
 */
typedef struct {
  int pid;
  int pidfd;     /* -1: none (hosts without pidfds; the pid is used) */
  int out_fd;    /* the stdout pipe's read end; -1: at EOF */
  int err_fd;    /* the stderr pipe's read end; -1: at EOF */
  int status_fd; /* a PID namespace init's report (JW_ISOLATE_PID); or -1 */
  bool reaped;   /* the previous owner reaped it: wstatus is how it ended */
  int wstatus;   /* as waitpid(2) gives it, when reaped */
  bool stop_requested; /* jw_process_stop was called: it ends STOPPED */
  uint64_t kill_in_ms; /* with stop_requested: SIGKILL in this long; 0 now */
  int64_t started_at_ns;
} jw_process_handover_t;

/*
 * Makes a process for a child this program already has, instead of
 * starting one: opts gives the callbacks, the cgroup and the command (for
 * the status; it is not run), h the child. The fds in h become the
 * process's (made close-on-exec and non-blocking) on success, and stay the
 * caller's on failure. From then on it is watched, streamed, stopped and
 * closed like a started process; a pending stop's SIGKILL comes after
 * h->kill_in_ms, without a second SIGTERM. Callbacks run from the loop,
 * never from this call. Returns 0, -EINVAL (no pid, or no pidfd and no
 * pid where the host has pidfds and the pid is gone), -ECHILD (pid is not
 * a child of this program), -ENOMEM or -errno.
 */
int jw_process_adopt(uv_loop_t *loop, const jw_process_options_t *opts,
                     const jw_process_handover_t *h, jw_process_t **out);

/*
 * Hands a running process over: fills h with new descriptors (dup'd, not
 * close-on-exec, for an execve(2) to pass on) and its state, and stops
 * watching it, so that nothing of this process reads its pipes or reaps
 * it any more. Afterwards proc only serves to be closed, which then
 * neither kills nor reaps the child, and its exit callback is not called;
 * jw_process_signal and jw_process_stop give JW_ECLOSED.
 * Returns 0, JW_ECLOSED when it is not running (final, closing, handed
 * over, or never started), or -errno (h holds no descriptor then).
 */
int jw_process_handover(jw_process_t *proc, jw_process_handover_t *h);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_PROCESS_H */
