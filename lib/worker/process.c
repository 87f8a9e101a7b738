/*
 * jw_process: spawning a job and watching it on the caller's loop.
 *
 * The child is created with vfork(): the parent is suspended until the
 * child has called execve() or _exit(), so by the time vfork() returns the
 * start either succeeded or failed, and a CLOEXEC error pipe tells which,
 * with the exact errno (where vfork() is a plain fork, as under valgrind,
 * reading that pipe to EOF waits for the exec). vfork() copies no page tables,
 * which matters for a server with a large (or sanitizer-inflated) address space
 * starting many jobs. The child shares our memory until it execs, so it only
 * makes system calls on data the parent prepared: no allocation, no stdio.
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
 *
 * A process with a cgroup or namespaces of its own is created with
 * clone3() instead: CLONE_INTO_CGROUP puts it in its cgroup2 directory
 * before it runs a single instruction, CLONE_NEWPID/NEWNS/NEWNET give it
 * its namespaces, and CLONE_PIDFD hands back the pidfd. clone3() has no
 * vfork-style variant usable from C (the child would need a stack of its
 * own), so this child is a copy-on-write fork; it still only makes system
 * calls on data the parent prepared. The parent learns the outcome from
 * the same error pipe, read until the exec closes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_int.h"
#include "jobworker/error.h"
#include "jobworker/process.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* The kernel's struct clone_args (clone3), version 2 (with cgroup). */
struct clone3_args {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};

#define DEFAULT_PATH                                                           \
  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* One read buffer per process; each read() fills at most this much. */
#define READ_BUF_SIZE (64 * 1024)

/*
 * Reads per readiness event and pipe, so that one chatty job cannot keep
 * the loop from serving the others.
 */
#define READS_PER_EVENT 16

/*
 * How long the pipes may stay open after the main process ended. Only a
 * process that left the job's group (setsid) can still hold them then.
 */
#define DRAIN_BOUND_MS 2000
/* How often, and for how long, a final status waits for an empty cgroup. */
#define SETTLE_POLL_MS 2
#define SETTLE_BOUND_MS 2000

enum { PIPE_OUT = 0, PIPE_ERR = 1 };

/*
 * The SIGCHLD watch of one loop, used only on hosts without pidfds. It
 * lives while a process of the loop holds a reference: from just before
 * the spawn (so that no SIGCHLD of the child can come before the handler)
 * until that process is reaped.
 */
typedef struct reaper_s {
  uv_signal_t sig;
  uv_loop_t *loop;
  struct reaper_s *next;        /* in the list of every loop's reaper */
  struct jw_process_s *waiting; /* started and not reaped yet */
  size_t refs;
  int scanning;
} reaper_t;

struct jw_process_s {
  uv_loop_t *loop;
  char *command;
  char **argv; /* argv[0] is the command; NULL-terminated */
  char **envp; /* NULL-terminated */
  char *cwd;
  const char *path; /* the PATH used for lookup; points into envp */
  jw_cgroup_t *cgroup;
  unsigned isolation;
  bool set_ids;
  uid_t uid;
  gid_t gid;
  bool no_new_privs;
  int status_fd; /* the init's report of how the command ended; or -1 */
  jw_process_output_cb on_output;
  jw_process_exit_cb on_exit;
  void *data;

  jw_proc_status_t st;
  int pidfd;
  int fds[2]; /* our read ends of stdout and stderr; -1 once closed */
  char *buf;

  uv_poll_t pid_poll;
  reaper_t *reaper; /* without pidfds: the loop's SIGCHLD watch, or NULL */
  struct jw_process_s *reap_prev;
  struct jw_process_s *reap_next; /* in reaper->waiting */
  uv_poll_t pipe_poll[2];
  uv_timer_t grace_timer;
  uv_timer_t drain_timer; /* pipes held from outside; then the settle */
  uint64_t settle_since;  /* uv_now() when the wait for an empty cgroup began */
  int open_handles;

  unsigned started : 1;
  unsigned reaped : 1;
  unsigned stop_requested : 1;
  unsigned final : 1;
  unsigned closing : 1;
  unsigned pid_poll_open : 1;
  unsigned pipe_open[2];

  int raw_code;
  int raw_signal;
  jw_process_close_cb close_cb;
  void *close_data;
};

/* What the child needs, prepared by the parent before vfork(). */
struct child_args {
  char **cands; /* NULL-terminated candidate paths for execve() */
  char **argv;
  char **envp;
  const char *cwd;
  int null_fd;
  int out_fd;
  int err_fd;
  int report_fd;
  pid_t parent;
  bool set_ids;
  uid_t uid;
  gid_t gid;
  bool no_new_privs;
  /* The clone3() path only. */
  const jw__cg_spawn_t *cg;
  unsigned isolation;
  int status_fd;
};

/* The kernel's struct sigaction layout, for a raw rt_sigaction call. */
struct kernel_sigaction {
  void *handler;
  unsigned long flags;
  void *restorer;
  uint64_t mask;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether the host has pidfds: 0 not known yet, 1 yes, 2 no. */
static atomic_int pidfd_support;

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

  /* Not forcing the fallback leaves the choice to the probe. */
  if (!cfg->no_pidfd)
    return 0;
  if (atomic_compare_exchange_strong(&pidfd_support, &known, 2))
    return 0;
  return known == 2 ? 0 : JW_EINVAL;
}

static void free_vec(char **v) {
  if (v == NULL)
    return;
  for (char **p = v; *p != NULL; p++)
    free(*p);
  free(v);
}

static void free_process(jw_process_t *p) {
  free(p->command);
  free_vec(p->argv);
  free_vec(p->envp);
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
  p->cgroup = opts->cgroup;
  p->isolation =
      opts->isolation & (JW_ISOLATE_PID | JW_ISOLATE_MOUNT | JW_ISOLATE_NET);
  /*
   * Seeing only its own processes needs a /proc of its own, and seeing
   * only its own network devices a /sys of its own.
   */
  if (p->isolation & (JW_ISOLATE_PID | JW_ISOLATE_NET))
    p->isolation |= JW_ISOLATE_MOUNT;
  p->set_ids = opts->set_ids;
  p->uid = opts->uid;
  p->gid = opts->gid;
  p->no_new_privs = opts->no_new_privs;
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
  if (!has_path && (p->envp[ne++] = strdup("PATH=" DEFAULT_PATH)) == NULL)
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
  p->grace_timer.data = p;
  p->drain_timer.data = p;
  p->open_handles = 2;
  *out = p;
  return 0;

nomem:
  free_process(p);
  return -ENOMEM;
}

/*
 * Builds the execvp-style candidate list: the command itself when it holds
 * a '/', otherwise each PATH directory joined with it (an empty entry is
 * the working directory, as execvp does).
 */
static char **build_candidates(const jw_process_t *p) {
  const char *path = p->path != NULL ? p->path : DEFAULT_PATH;
  size_t clen = strlen(p->command);
  size_t n = 1;
  size_t i = 0;
  char **c;
  const char *s;

  if (strchr(p->command, '/') != NULL) {
    c = calloc(2, sizeof(char *));
    if (c == NULL || (c[0] = strdup(p->command)) == NULL) {
      free(c);
      return NULL;
    }
    return c;
  }
  for (s = path; *s != '\0'; s++)
    if (*s == ':')
      n++;
  c = calloc(n + 1, sizeof(char *));
  if (c == NULL)
    return NULL;
  s = path;
  for (;;) {
    const char *end = strchr(s, ':');
    size_t dlen = end != NULL ? (size_t)(end - s) : strlen(s);
    char *cand = malloc(dlen + clen + 2);
    if (cand == NULL) {
      free_vec(c);
      return NULL;
    }
    if (dlen == 0) {
      memcpy(cand, p->command, clen + 1);
    } else {
      memcpy(cand, s, dlen);
      cand[dlen] = '/';
      memcpy(cand + dlen + 1, p->command, clen + 1);
    }
    c[i++] = cand;
    if (end == NULL)
      break;
    s = end + 1;
  }
  return c;
}

static __attribute__((noreturn)) void child_fail(int report_fd, int err) {
  ssize_t r;
  do
    r = write(report_fd, &err, sizeof(err));
  while (r < 0 && errno == EINTR);
  _exit(127);
}

/* Moves fd to a number >= 3 so that dup2() onto 0..2 cannot clobber it. */
static int lift_fd(int fd, int report_fd) {
  int nfd;
  if (fd >= 3)
    return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0)
    child_fail(report_fd, errno);
  return nfd;
}

/*
 * Default dispositions for every signal (the server may ignore SIGPIPE;
 * a job must not inherit that). Raw system calls, because libc's wrappers
 * refuse the signals it reserves.
 */
static void reset_signals(void) {
  struct kernel_sigaction dfl;
  int sig;

  memset(&dfl, 0, sizeof(dfl));
  for (sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP)
      continue;
    syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));
  }
}

static void set_mask(uint64_t mask) {
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof(uint64_t));
}

/*
 * Points 0, 1 and 2 at /dev/null and the output pipes. Returns the report
 * fd, moved out of their way; *null_out gets /dev/null's other number.
 */
static int setup_stdio(const struct child_args *a, int *null_out) {
  int report_fd = lift_fd(a->report_fd, a->report_fd);
  int null_fd = lift_fd(a->null_fd, report_fd);
  int out_fd = lift_fd(a->out_fd, report_fd);
  int err_fd = lift_fd(a->err_fd, report_fd);
  if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
    child_fail(report_fd, errno);
  if (null_out != NULL)
    *null_out = null_fd;
  return report_fd;
}

/* Runs the command (execvp-style over the candidates) or reports why not. */
static __attribute__((noreturn)) void exec_command(const struct child_args *a,
                                                   int report_fd) {
  int got_eacces = 0;
  int err = ENOENT;

  for (char **c = a->cands; *c != NULL; c++) {
    execve(*c, a->argv, a->envp);
    err = errno;
    switch (err) {
    case EACCES:
      got_eacces = 1;
      break;
    case ENOENT:
    case ENOTDIR:
    case ESTALE:
    case ENODEV:
    case ETIMEDOUT:
      break;
    default:
      child_fail(report_fd, err);
    }
  }
  child_fail(report_fd, got_eacces ? EACCES : err);
}

/*
 * Becomes the job's user: no supplementary groups, then the gid, then the
 * uid (the group calls need the privilege the uid change gives up), and
 * no_new_privs last. Raw system calls: glibc's wrappers change the ids of
 * every thread of the process through a signal broadcast, and in a vfork
 * child "the process" is the server's threads. Leaving uid 0 clears the
 * permitted, effective and ambient capabilities (no SECBIT_KEEP_CAPS).
 */
static void drop_privileges(const struct child_args *a, int report_fd,
                            pid_t parent) {
  if (a->set_ids) {
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0 ||
        syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
      child_fail(report_fd, errno);
    /*
     * A change of credentials clears the parent-death signal: set it
     * again, and see again that the parent did not go meanwhile (parent
     * 0: outside a new PID namespace, where getppid() says 0).
     */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
      child_fail(report_fd, errno);
    if (parent != 0 && getppid() != parent)
      child_fail(report_fd, ESRCH);
    /*
     * A clone3() child is a copy of the server's memory until it execs
     * (the namespace's init for good): the job's user must not be able
     * to read it through ptrace or /proc/PID/mem, whatever the host's
     * fs.suid_dumpable says. The exec'd command is dumpable again.
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
      child_fail(report_fd, errno);
  }
  if (a->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail(report_fd, errno);
}

/*
 * The child between vfork() and execve(). It runs on the parent's memory,
 * so it writes nothing but the error report and errno.
 */
static __attribute__((noreturn)) void child_main(const struct child_args *a) {
  int report_fd = a->report_fd;

  reset_signals();
  set_mask(0);

  if (setpgid(0, 0) < 0)
    child_fail(report_fd, errno);
  /*
   * The job dies with the server, even when the server is SIGKILLed. If
   * the parent went away before the prctl, getppid() shows it.
   */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    child_fail(report_fd, errno);
  if (getppid() != a->parent)
    child_fail(report_fd, ESRCH);

  report_fd = setup_stdio(a, NULL);
  /*
   * Every other descriptor is closed by execve(): ours are CLOEXEC
   * already, and this catches any an embedding program opened without it.
   */
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);

  /* The working directory as the job's user: it must be able to enter it. */
  drop_privileges(a, report_fd, a->parent);
  if (a->cwd != NULL && chdir(a->cwd) < 0)
    child_fail(report_fd, errno);
  exec_command(a, report_fd);
}

/* Brings the loopback interface of a new network namespace up. */
static void loopback_up(int report_fd) {
  struct ifreq ifr;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    child_fail(report_fd, errno);
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
    child_fail(report_fd, errno);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
    child_fail(report_fd, errno);
  close(s);
}

static int write_str(int fd, const char *s, size_t len) {
  ssize_t n;
  do
    n = write(fd, s, len);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)len ? 0 : -1;
}

/*
 * PID 1 of a job's PID namespace. It runs the command as its child in a
 * process group of its own, forwards every signal it gets to that group,
 * reaps every orphan, and once the command ended reports how on
 * status_fd and exits (the kernel then kills what is left in the
 * namespace). PID 1 cannot die of a signal it raises itself, so the
 * report is what carries a signal death to the parent. Signals stay
 * blocked and are taken with sigtimedwait: a blocked signal is queued
 * even for a namespace's init.
 */
static __attribute__((noreturn)) void run_init(const struct child_args *a,
                                               int report_fd, int null_fd,
                                               int status_fd) {
  const uint64_t all = ~(uint64_t)0;
  int oom_fd;
  pid_t job;

  set_mask(all);
  prctl(PR_SET_NAME, "jw-init", 0, 0, 0);

  job = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0, 0, 0, 0);
  if (job < 0)
    child_fail(report_fd, errno);
  if (job == 0) {
    if (setpgid(0, 0) < 0)
      child_fail(report_fd, errno);
    set_mask(0);
    drop_privileges(a, report_fd, 1); /* the init */
    if (a->cwd != NULL && chdir(a->cwd) < 0)
      child_fail(report_fd, errno);
    exec_command(a, report_fd);
  }

  /*
   * The init is a copy of the server: keep the OOM killer on the job's
   * own processes (best effort: it needs CAP_SYS_RESOURCE). Only after
   * the job was cloned, which so keeps the server's score and the floor
   * an unprivileged process may lower it to (oom_score_adj_min). Then
   * the init needs no privilege: it runs as the job's user, so nothing
   * in the job's namespace is more privileged than the job. A failure
   * here fails the start; the job dies with the namespace.
   */
  oom_fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom_fd >= 0) {
    write_str(oom_fd, "-1000", 5);
    close(oom_fd);
  }
  drop_privileges(a, report_fd, 0);

  /* Hold nothing of the job's: the pipes must reach EOF without us. */
  dup2(null_fd, 1);
  dup2(null_fd, 2);
  close(report_fd);
  if (status_fd != 3) {
    dup2(status_fd, 3);
    status_fd = 3;
  }
  syscall(SYS_close_range, 4U, ~0U, 0U);

  for (;;) {
    siginfo_t si;
    int sig =
        (int)syscall(SYS_rt_sigtimedwait, &all, &si, NULL, sizeof(uint64_t));
    if (sig < 0)
      continue;
    if (sig != SIGCHLD) {
      if (kill(-job, sig) < 0)
        kill(job, sig);
      continue;
    }
    for (;;) {
      int ws;
      pid_t w = (pid_t)syscall(SYS_wait4, -1, &ws, WNOHANG, NULL);
      if (w <= 0)
        break;
      if (w != job)
        continue;
      int msg[2] = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -1,
                    WIFSIGNALED(ws) ? WTERMSIG(ws) : 0};
      write_str(status_fd, (const char *)msg, sizeof(msg));
      _exit(msg[1] != 0 ? 128 + msg[1] : msg[0]);
    }
  }
}

/*
 * The child of clone3() (or of clone() where clone3 is missing, then
 * join_v2 says to join the cgroup2 directory by hand). It is a copy of
 * the parent, so it may keep running as the namespace's init.
 */
static __attribute__((noreturn)) void
child_clone_main(const struct child_args *a, int join_v2) {
  int report_fd = a->report_fd;
  int status_fd = -1;
  int null_fd;
  size_t i;

  reset_signals();
  if (!(a->isolation & JW_ISOLATE_PID))
    set_mask(0);

  /* Into the v1 controllers' cgroups before anything of the job runs. */
  if (join_v2 && a->cg->v2_procs >= 0 && write_str(a->cg->v2_procs, "0", 1))
    child_fail(report_fd, errno);
  for (i = 0; i < a->cg->nv1; i++)
    if (write_str(a->cg->v1_procs[i], "0", 1) < 0)
      child_fail(report_fd, errno);

  if (setpgid(0, 0) < 0)
    child_fail(report_fd, errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    child_fail(report_fd, errno);
  /* In a new PID namespace the parent is outside it: getppid() is 0. */
  if (!(a->isolation & JW_ISOLATE_PID) && getppid() != a->parent)
    child_fail(report_fd, ESRCH);

  if (a->isolation & JW_ISOLATE_MOUNT) {
    /*
     * Mounts made here stay here; the host's still propagate in. The new
     * /proc belongs to the job's PID namespace when it has one. The kernel
     * ignores the type of a propagation change; it is "none" rather than
     * NULL because valgrind before 3.20 reads it as a string.
     */
    if (mount("none", "/", "none", MS_REC | MS_SLAVE, NULL) < 0)
      child_fail(report_fd, errno);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
        0)
      child_fail(report_fd, errno);
    /*
     * With a network namespace, a fresh sysfs too: it shows that
     * namespace's devices (lo) instead of the host's. Without one a new
     * sysfs would be the host's own superblock again (the kernel refuses
     * to stack it on itself, EBUSY), so /sys stays as it is. The new one
     * covers what was mounted under the host's /sys, /sys/fs/cgroup too.
     */
    if ((a->isolation & JW_ISOLATE_NET) &&
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) < 0)
      child_fail(report_fd, errno);
  }
  if (a->isolation & JW_ISOLATE_NET)
    loopback_up(report_fd);

  /* Out of the way of 0..2 first, like the others in setup_stdio. */
  if (a->status_fd >= 0)
    status_fd = lift_fd(a->status_fd, report_fd);
  report_fd = setup_stdio(a, &null_fd);
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (a->isolation & JW_ISOLATE_PID)
    run_init(a, report_fd, null_fd, status_fd);
  drop_privileges(a, report_fd, a->parent);
  if (a->cwd != NULL && chdir(a->cwd) < 0)
    child_fail(report_fd, errno);
  exec_command(a, report_fd);
}

/*
 * Creates the child with clone3(), fork-style (no CLONE_VM): into its
 * cgroup, with its namespaces and a pidfd (none when pidfd is NULL: the
 * SIGCHLD fallback watches it). Falls back to clone() on kernels without
 * clone3 (the child then joins its cgroup itself).
 */
static __attribute__((noinline)) pid_t spawn_clone(const struct child_args *a,
                                                   int *pidfd) {
  uint64_t ns = 0;
  struct clone3_args ca;
  pid_t pid;

  if (a->isolation & JW_ISOLATE_PID)
    ns |= CLONE_NEWPID;
  if (a->isolation & JW_ISOLATE_MOUNT)
    ns |= CLONE_NEWNS;
  if (a->isolation & JW_ISOLATE_NET)
    ns |= CLONE_NEWNET;
  memset(&ca, 0, sizeof(ca));
  ca.flags = ns;
  if (pidfd != NULL) {
    ca.flags |= CLONE_PIDFD;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
  }
  ca.exit_signal = SIGCHLD;
  if (a->cg->v2_dir >= 0) {
    ca.flags |= CLONE_INTO_CGROUP;
    ca.cgroup = (uint64_t)a->cg->v2_dir;
  }
  pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
  if (pid == 0)
    child_clone_main(a, 0);
  /*
   * ENOSYS: no clone3 (before 5.3, or a seccomp filter); E2BIG or EINVAL
   * with CLONE_INTO_CGROUP: a kernel before 5.7.
   */
  if (pid < 0 && (errno == ENOSYS || errno == E2BIG ||
                  (errno == EINVAL && (ca.flags & CLONE_INTO_CGROUP)))) {
    if (pidfd != NULL)
      *pidfd = -1;
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(ns | SIGCHLD), 0, 0, 0, 0);
    if (pid == 0)
      child_clone_main(a, 1);
  }
  return pid;
}

/*
 * vfork() lives in a function of its own so that nothing in a bigger
 * frame has to survive the child running on it.
 */
static __attribute__((noinline)) pid_t spawn_child(const struct child_args *a) {
  pid_t pid = vfork();
  if (pid == 0)
    child_main(a);
  return pid;
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static void maybe_finish_close(jw_process_t *p);

static void on_handle_closed(uv_handle_t *h) {
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
    uv_close((uv_handle_t *)&p->pipe_poll[i], on_handle_closed);
    p->pipe_open[i] = 0;
  }
  close_fd(&p->fds[i]);
}

/* Every loop's reaper (hosts without pidfds); found by the loop. */
static reaper_t *reapers;
static pthread_mutex_t reapers_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_sigchld(uv_signal_t *h, int signum);

static void on_reaper_closed(uv_handle_t *h) { free(h->data); }

/*
 * Takes a reference on the loop's reaper, making it and starting its
 * SIGCHLD watch for the first. Returns 0 or a negative code.
 */
static int reaper_get(uv_loop_t *loop, reaper_t **out) {
  reaper_t *r;
  int err = 0;

  pthread_mutex_lock(&reapers_lock);
  for (r = reapers; r != NULL && r->loop != loop; r = r->next)
    ;
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
    err = uv_signal_start(&r->sig, on_sigchld, SIGCHLD);
    if (err < 0) {
      uv_close((uv_handle_t *)&r->sig, on_reaper_closed);
      goto out;
    }
    r->next = reapers;
    reapers = r;
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
static void reaper_maybe_close(reaper_t *r) {
  reaper_t **pp;

  if (r->refs > 0 || r->scanning)
    return;
  pthread_mutex_lock(&reapers_lock);
  for (pp = &reapers; *pp != r; pp = &(*pp)->next)
    ;
  *pp = r->next;
  pthread_mutex_unlock(&reapers_lock);
  uv_close((uv_handle_t *)&r->sig, on_reaper_closed);
}

/* Drops a reference taken by reaper_get. */
static void reaper_put(reaper_t *r) {
  r->refs--;
  reaper_maybe_close(r);
}

/* Puts a started process on its reaper's list of unreaped processes. */
static void reaper_watch(reaper_t *r, jw_process_t *p) {
  p->reaper = r;
  p->reap_prev = NULL;
  p->reap_next = r->waiting;
  if (r->waiting != NULL)
    r->waiting->reap_prev = p;
  r->waiting = p;
  p->open_handles++;
}

static void reaper_unlink(reaper_t *r, jw_process_t *p) {
  if (p->reap_prev != NULL)
    p->reap_prev->reap_next = p->reap_next;
  else
    r->waiting = p->reap_next;
  if (p->reap_next != NULL)
    p->reap_next->reap_prev = p->reap_prev;
  p->reap_prev = p->reap_next = NULL;
}

/*
 * Ends the watch on the main process: the pidfd's poll handle, or the
 * reference on the reaper, which counts as one of the process's handles
 * so that a closed process is not freed before it is reaped. The caller
 * has taken the process off the reaper's list.
 */
static void close_pidfd(jw_process_t *p) {
  if (p->pid_poll_open) {
    uv_close((uv_handle_t *)&p->pid_poll, on_handle_closed);
    p->pid_poll_open = 0;
  }
  close_fd(&p->pidfd);
  if (p->reaper != NULL) {
    reaper_t *r = p->reaper;
    p->reaper = NULL;
    p->open_handles--;
    reaper_put(r);
  }
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

/*
 * Reads what a pipe has, at most max_reads times. Returns when the pipe
 * is empty, at EOF (then closed), or when the process started closing
 * from inside the output callback.
 */
static void drain_pipe(jw_process_t *p, int i, int max_reads) {
  while (max_reads-- > 0 && p->fds[i] >= 0) {
    ssize_t n = read(p->fds[i], p->buf, READ_BUF_SIZE);
    if (n > 0) {
      if (p->on_output != NULL) {
        p->on_output(p, i == PIPE_OUT ? JW_STDOUT : JW_STDERR, p->buf,
                     (size_t)n, p->data);
        if (p->closing)
          return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    /* EOF, or an error that ends the stream just the same. */
    close_pipe(p, i);
  }
}

static void on_pipe(uv_poll_t *h, int status, int events) {
  jw_process_t *p = h->data;
  int i = h == &p->pipe_poll[PIPE_OUT] ? PIPE_OUT : PIPE_ERR;
  (void)status;
  (void)events;
  drain_pipe(p, i, READS_PER_EVENT);
  if (!p->closing)
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

/*
 * The main process has ended (it is a zombie): reap it and finish.
 * Returns 0, or -EAGAIN when there was nothing to reap yet (try again at
 * the next event). p may have been freed when this returns 0.
 */
static int on_main_exit(jw_process_t *p) {
  siginfo_t si;
  int r;

  /*
   * The main process is a zombie now, so its pid, and with it the group
   * id, cannot have been reused: kill what is left of the group before
   * reaping. The job is over, as systemd does for a unit; with a cgroup
   * that includes whatever left the group (setsid).
   */
  kill_all(p);
  memset(&si, 0, sizeof(si));
  if (p->pidfd >= 0)
    r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG);
  else
    do
      r = waitid(P_PID, (id_t)p->st.pid, &si, WEXITED | WNOHANG);
    while (r < 0 && errno == EINTR);
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
    close_fd(&p->status_fd);
  }
  p->reaped = 1;
  close_pidfd(p);
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

static void on_pidfd(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  on_main_exit(h->data);
}

/*
 * Whether p's main process has ended, asked without reaping it (WNOWAIT),
 * so that its pid and group id stay ours until on_main_exit has killed
 * what is left of the group. ECHILD (someone else reaped it) counts as
 * ended too: on_main_exit finds the same and ends the job.
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
  reaper_t *r = h->data;
  jw_process_t *ended = NULL;
  jw_process_t *p, *next;
  (void)signum;

  r->scanning = 1;
  for (p = r->waiting; p != NULL; p = next) {
    next = p->reap_next;
    if (main_ended(p)) {
      reaper_unlink(r, p);
      p->reap_next = ended;
      ended = p;
    }
  }
  while ((p = ended) != NULL) {
    ended = p->reap_next;
    p->reap_next = NULL;
    /*
     * Nothing to reap after all, which a zombie seen with WNOWAIT should
     * not allow: back on the list, for the next SIGCHLD.
     */
    if (on_main_exit(p) < 0) {
      p->reap_next = r->waiting;
      if (r->waiting != NULL)
        r->waiting->reap_prev = p;
      r->waiting = p;
    }
  }
  r->scanning = 0;
  reaper_maybe_close(r);
}

int jw_process_start(jw_process_t *proc) {
  struct child_args a;
  int outp[2] = {-1, -1};
  int errp[2] = {-1, -1};
  int rep[2] = {-1, -1};
  int statp[2] = {-1, -1};
  int null_fd = -1;
  int pidfd = -1;
  int use_clone;
  jw__cg_spawn_t cgs;
  reaper_t *reaper = NULL;
  char **cands = NULL;
  sigset_t all, old;
  pid_t pid;
  int err = 0;
  int code;
  ssize_t n;
  int i;

  if (proc == NULL)
    return -EINVAL;
  if (proc->started || proc->closing)
    return JW_ECLOSED;
  use_clone = proc->cgroup != NULL || proc->isolation != 0;
  cgs.v2_dir = cgs.v2_procs = -1;
  cgs.nv1 = 0;

  err = have_pidfd();
  if (err < 0)
    return err;
  /*
   * Without pidfds the loop's SIGCHLD watch must be there before the
   * child exists, or its SIGCHLD could come first and be missed.
   */
  if (err == 0 && (err = reaper_get(proc->loop, &reaper)) < 0)
    return err;
  err = 0;
  if (proc->buf == NULL && (proc->buf = malloc(READ_BUF_SIZE)) == NULL) {
    err = -ENOMEM;
    goto error;
  }
  cands = build_candidates(proc);
  if (cands == NULL) {
    err = -ENOMEM;
    goto error;
  }
  /*
   * The report is read until the exec closes it (EOF), after vfork() as
   * after clone3(): where vfork() is really a fork (valgrind makes it one;
   * POSIX allows it), the child may not have exec'd yet when it returns.
   */
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
      pipe2(rep, O_CLOEXEC) < 0 ||
      (null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    err = -errno;
    goto error;
  }
  if (use_clone) {
    err = jw__cgroup_spawn_open(proc->cgroup, &cgs);
    if (err < 0)
      goto error;
    if ((proc->isolation & JW_ISOLATE_PID) &&
        (pipe2(statp, O_CLOEXEC) < 0 ||
         fcntl(statp[0], F_SETFL, O_NONBLOCK) < 0)) {
      err = -errno;
      goto error;
    }
  }
  if (fcntl(outp[0], F_SETFL, O_NONBLOCK) < 0 ||
      fcntl(errp[0], F_SETFL, O_NONBLOCK) < 0) {
    err = -errno;
    goto error;
  }

  memset(&a, 0, sizeof(a));
  a.cands = cands;
  a.argv = proc->argv;
  a.envp = proc->envp;
  a.cwd = proc->cwd;
  a.null_fd = null_fd;
  a.out_fd = outp[1];
  a.err_fd = errp[1];
  a.report_fd = rep[1];
  a.parent = getpid();
  a.set_ids = proc->set_ids;
  a.uid = proc->uid;
  a.gid = proc->gid;
  a.no_new_privs = proc->no_new_privs;
  a.cg = &cgs;
  a.isolation = proc->isolation;
  a.status_fd = statp[1];

  /*
   * No signal handler of ours may run in the child while it shares our
   * memory; the child resets every disposition before unblocking.
   */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = use_clone ? spawn_clone(&a, reaper == NULL ? &pidfd : NULL)
                  : spawn_child(&a);
  if (pid < 0)
    err = -errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid < 0)
    goto error;

  close_fd(&outp[1]);
  close_fd(&errp[1]);
  close_fd(&rep[1]);
  close_fd(&statp[1]);
  close_fd(&null_fd);
  jw__cgroup_spawn_close(&cgs);

  /*
   * After vfork() the child has exec'd or exited by now, so the read ends
   * at once: a report means it failed, EOF that it exec'd. Where vfork()
   * is a fork, and after clone3(), the read waits for the exec or the
   * report; the child does nothing else first. (A fork made meanwhile by
   * another thread holds the write end too, until that child execs.)
   */
  do
    n = read(rep[0], &code, sizeof(code));
  while (n < 0 && errno == EINTR);
  close_fd(&rep[0]);
  if (n == (ssize_t)sizeof(code)) {
    /* It has called _exit() (an init right after its child did). */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    close_fd(&pidfd);
    err = -code;
    goto error;
  }

  if (reaper == NULL) {
    proc->pidfd = pidfd >= 0 ? pidfd : (int)syscall(SYS_pidfd_open, pid, 0);
    if (proc->pidfd < 0) {
      err = -errno;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
      goto error;
    }
    fcntl(proc->pidfd, F_SETFD, FD_CLOEXEC);
  }

  proc->fds[PIPE_OUT] = outp[0];
  proc->fds[PIPE_ERR] = errp[0];
  outp[0] = -1;
  errp[0] = -1;
  proc->status_fd = statp[0];
  statp[0] = -1;
  free_vec(cands);

  proc->st.pid = pid;
  proc->st.started_at_ns = now_ns();
  proc->st.state = JW_PROC_RUNNING;
  proc->started = 1;

  /*
   * uv_poll_init cannot fail for a pipe or a pidfd on Linux, barring
   * memory exhaustion in epoll; in that case the job is killed and ends
   * through the normal path.
   */
  if (reaper != NULL) {
    /* The reference taken before the spawn is the process's from now. */
    reaper_watch(reaper, proc);
  } else if (uv_poll_init(proc->loop, &proc->pid_poll, proc->pidfd) == 0) {
    proc->pid_poll.data = proc;
    proc->pid_poll_open = 1;
    proc->open_handles++;
    uv_poll_start(&proc->pid_poll, UV_READABLE, on_pidfd);
  }
  for (i = 0; i < 2; i++) {
    if (uv_poll_init(proc->loop, &proc->pipe_poll[i], proc->fds[i]) == 0) {
      proc->pipe_poll[i].data = proc;
      proc->pipe_open[i] = 1;
      proc->open_handles++;
      uv_poll_start(&proc->pipe_poll[i], UV_READABLE, on_pipe);
    } else {
      close_fd(&proc->fds[i]);
    }
  }
  if (!proc->pid_poll_open && proc->reaper == NULL) {
    kill(-pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    close_fd(&proc->pidfd);
    proc->reaped = 1;
    proc->raw_signal = SIGKILL;
    proc->raw_code = -1;
    for (i = 0; i < 2; i++)
      close_pipe(proc, i);
  }
  return 0;

error:
  close_fd(&outp[0]);
  close_fd(&outp[1]);
  close_fd(&errp[0]);
  close_fd(&errp[1]);
  close_fd(&rep[0]);
  close_fd(&rep[1]);
  close_fd(&statp[0]);
  close_fd(&statp[1]);
  close_fd(&null_fd);
  jw__cgroup_spawn_close(&cgs);
  free_vec(cands);
  if (reaper != NULL)
    reaper_put(reaper);
  return err;
}

int jw_process_signal(jw_process_t *proc, int sig) {
  if (proc == NULL || !proc->started || proc->reaped || proc->closing)
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
  if (proc == NULL || !proc->started || proc->final || proc->closing)
    return JW_ECLOSED;
  if (proc->stop_requested || proc->reaped)
    return 0;
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
  uv_close((uv_handle_t *)&proc->grace_timer, on_handle_closed);
  uv_close((uv_handle_t *)&proc->drain_timer, on_handle_closed);
  /*
   * A process still running is killed; the pidfd watch stays open until
   * it is reaped, so that no zombie is left behind.
   */
  if (proc->started && !proc->reaped) {
    kill_all(proc);
    if (proc->pidfd >= 0)
      syscall(SYS_pidfd_send_signal, proc->pidfd, SIGKILL, NULL, 0);
    else
      kill(proc->st.pid, SIGKILL);
  }
}
