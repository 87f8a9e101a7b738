/*
 * jw_process's spawn: from the candidate lookup to the exec.
 *
 * The child is created with clone(CLONE_VM | CLONE_VFORK) on a stack of
 * its own, as glibc's posix_spawn does: no page tables are copied (a fork
 * of the server copies them, and the exec then tears the copy down), and
 * the parent is suspended until the child has called execve() or _exit(),
 * so by the time clone() returns the start either succeeded or failed.
 * The child reports a failure's errno in memory it shares with the parent
 * (child_report); no read of a pipe has to wait for the child to be
 * scheduled. The child shares our memory until it execs, so it only makes
 * system calls on data the parent prepared: no allocation, no stdio, and
 * raw system calls where glibc's wrappers would act on every thread of
 * the process (the id changes). It joins its cgroups itself, by writing
 * to the cgroup.procs files the parent opened, before anything of the job
 * runs. (Not CLONE_INTO_CGROUP: clone3() has no wrapper that runs a
 * function on a new stack, and see below.) It shares our descriptor table
 * too (CLONE_FILES) and first takes a small one of its own, holding only
 * what the parent staged for it (the spawn block, below): a copy of the
 * whole table, closed again by the exec, would cost every Start about
 * 0.1 ms per 1,000 descriptors the server holds.
 *
 * A process with a PID namespace of its own stays behind as the
 * namespace's init (nsinit.c) after its child execs, so it must not share
 * our memory: it is created with clone3(), fork-style, and joins its
 * cgroups by the same writes as the others, before anything of the job
 * runs. Not with CLONE_INTO_CGROUP: the kernel here (6.18) SIGKILLs a
 * child cloned that way into a cgroup whose cgroup.kill was ever written,
 * which a reused cgroup (cgroup_pool.c) always was at its last job's end.
 * The parent learns the outcome from a CLOEXEC error
 * pipe, read until the exec closes it. The same pipe serves where the
 * kernel (or valgrind) turns a CLONE_VM | CLONE_VFORK clone into a fork.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_int.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
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

/* The kernel's struct sigaction layout, for a raw rt_sigaction call. */
struct kernel_sigaction {
  void *handler;
  unsigned long flags;
  void *restorer;
  uint64_t mask;
};

/*
 * A CLONE_VM child's report, in the parent's frame: ran says the child
 * shares our memory (it is 0 where the clone was turned into a fork), err
 * the errno of the step that failed, 0 when it exec'd.
 */
struct child_report {
  volatile int ran;
  volatile int err;
};

/*
 * The report of the child being spawned by this thread, or NULL. The
 * child of clone(CLONE_VM) runs on its parent thread's TLS, so it sees the
 * pointer its parent set; two threads spawning at once each have theirs.
 */
static __thread struct child_report *child_report;

/*
 * The child's stack. It lives in the frame of the suspended parent, which
 * keeps it inside the thread's stack (where sanitizers expect a stack);
 * the child needs a few KiB, sanitizer-inflated frames a few more.
 */
#define CHILD_STACK_SIZE (64 * 1024)

void jw__free_vec(char **v) {
  if (v == NULL)
    return;
  for (char **p = v; *p != NULL; p++)
    free(*p);
  free(v);
}

/*
 * Builds the execvp-style candidate list: the command itself when it holds
 * a '/', otherwise each PATH directory joined with it (an empty entry is
 * the working directory, as execvp does).
 */
static char **build_candidates(const jw_process_t *p) {
  const char *path = p->path != NULL ? p->path : JW__DEFAULT_PATH;
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
      jw__free_vec(c);
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

__attribute__((noreturn)) void jw__child_fail(int report_fd, int err) {
  ssize_t r;
  if (child_report != NULL)
    child_report->err = err;
  if (report_fd < 0)
    _exit(127);
  do
    r = write(report_fd, &err, sizeof(err));
  while (r < 0 && errno == EINTR);
  _exit(127);
}

/*
 * Moves fd to a number >= 3 so that dup2() onto 0..2 cannot clobber it;
 * -1 (no report pipe) stays -1.
 */
int jw__child_lift_fd(int fd, int report_fd) {
  int nfd;
  if (fd < 0 || fd >= 3)
    return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0)
    jw__child_fail(report_fd, errno);
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

void jw__child_set_mask(uint64_t mask) {
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, NULL, sizeof(uint64_t));
}

/*
 * Points 0, 1 and 2 at /dev/null and the output pipes. Returns the report
 * fd, moved out of their way; *null_out gets /dev/null's other number.
 */
static int setup_stdio(const struct jw__child_args *a, int *null_out) {
  int report_fd = jw__child_lift_fd(a->report_fd, a->report_fd);
  int null_fd = jw__child_lift_fd(a->null_fd, report_fd);
  int out_fd = jw__child_lift_fd(a->out_fd, report_fd);
  int err_fd = jw__child_lift_fd(a->err_fd, report_fd);
  if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
    jw__child_fail(report_fd, errno);
  if (null_out != NULL)
    *null_out = null_fd;
  return report_fd;
}

/* Runs the command (execvp-style over the candidates) or reports why not. */
__attribute__((noreturn)) void
jw__child_exec_command(const struct jw__child_args *a, int report_fd) {
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
      jw__child_fail(report_fd, err);
    }
  }
  jw__child_fail(report_fd, got_eacces ? EACCES : err);
}

/*
 * Becomes the job's user: no supplementary groups, then the gid, then the
 * uid (the group calls need the privilege the uid change gives up), and
 * no_new_privs last. Raw system calls: glibc's wrappers change the ids of
 * every thread of the process through a signal broadcast, and in a vfork
 * child "the process" is the server's threads. Leaving uid 0 clears the
 * permitted, effective and ambient capabilities (no SECBIT_KEEP_CAPS).
 */
void jw__child_drop_privileges(const struct jw__child_args *a, int report_fd,
                               pid_t parent) {
  if (a->creds.set_ids) {
    if (syscall(SYS_setgroups, 0, NULL) < 0 ||
        syscall(SYS_setresgid, a->creds.gid, a->creds.gid, a->creds.gid) < 0 ||
        syscall(SYS_setresuid, a->creds.uid, a->creds.uid, a->creds.uid) < 0)
      jw__child_fail(report_fd, errno);
    /*
     * A change of credentials clears the parent-death signal: set it
     * again, and see again that the parent did not go meanwhile (parent
     * 0: outside a new PID namespace, where getppid() says 0).
     */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
      jw__child_fail(report_fd, errno);
    if (parent != 0 && getppid() != parent)
      jw__child_fail(report_fd, ESRCH);
    /*
     * A clone3() child is a copy of the server's memory until it execs
     * (the namespace's init for good): the job's user must not be able
     * to read it through ptrace or /proc/PID/mem, whatever the host's
     * fs.suid_dumpable says. The exec'd command is dumpable again.
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
      jw__child_fail(report_fd, errno);
  }
  if (a->creds.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    jw__child_fail(report_fd, errno);
}

int jw__child_write_str(int fd, const char *s, size_t len) {
  ssize_t n;
  do
    n = write(fd, s, len);
  while (n < 0 && errno == EINTR);
  return n == (ssize_t)len ? 0 : -1;
}

/*
 * The child between the clone and execve(). join_v2 says to join the
 * cgroup2 directory by writing to its cgroup.procs (every caller does
 * now; see the top of the file). Only a child with a PID
 * namespace of its own is a copy of the parent, and only that one keeps
 * running, as the namespace's init; every other shares our memory and
 * writes nothing to it but its report (and the thread's errno, which the
 * parent saves around the clone).
 */
static __attribute__((noreturn)) void
child_clone_main(const struct jw__child_args *a, int join_v2) {
  int report_fd = a->report_fd;
  int status_fd = -1;
  int null_fd;
  size_t i;

  /*
   * A child sharing our descriptor table takes a table of its own before
   * it touches a descriptor: only the ones below keep_below (what the
   * parent staged there, see struct fd_block), not the server's hundreds,
   * which the exec would then close one by one.
   */
  if (a->keep_below > 0 &&
      syscall(SYS_close_range, a->keep_below, ~0U, CLOSE_RANGE_UNSHARE) < 0 &&
      unshare(CLONE_FILES) < 0)
    jw__child_fail(report_fd, errno);

  reset_signals();
  if (!(a->isolation & JW_ISOLATE_PID))
    jw__child_set_mask(0);

  /* Into the job's cgroups before anything of the job runs. */
  if (join_v2 && a->cg->v2_procs >= 0 &&
      jw__child_write_str(a->cg->v2_procs, "0", 1))
    jw__child_fail(report_fd, errno);
  for (i = 0; i < a->cg->nv1; i++)
    if (jw__child_write_str(a->cg->v1_procs[i], "0", 1) < 0)
      jw__child_fail(report_fd, errno);

  if (setpgid(0, 0) < 0)
    jw__child_fail(report_fd, errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
    jw__child_fail(report_fd, errno);
  /* In a new PID namespace the parent is outside it: getppid() is 0. */
  if (!(a->isolation & JW_ISOLATE_PID) && getppid() != a->parent)
    jw__child_fail(report_fd, ESRCH);

  if (a->isolation & (JW_ISOLATE_MOUNT | JW_ISOLATE_NET))
    jw__nsinit_setup(a, report_fd);

  /* Out of the way of 0..2 first, like the others in setup_stdio. */
  if (a->status_fd >= 0)
    status_fd = jw__child_lift_fd(a->status_fd, report_fd);
  report_fd = setup_stdio(a, &null_fd);
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (a->isolation & JW_ISOLATE_PID)
    jw__nsinit_run(a, report_fd, null_fd, status_fd);
  jw__child_drop_privileges(a, report_fd, a->parent);
  if (a->cwd != NULL && chdir(a->cwd) < 0)
    jw__child_fail(report_fd, errno);
  jw__child_exec_command(a, report_fd);
}

/*
 * Creates the child with clone3(), fork-style (no CLONE_VM): into its
 * cgroup, with its namespaces and a pidfd (none when pidfd is NULL: the
 * SIGCHLD fallback watches it). Falls back to clone() on kernels without
 * clone3 (the child then joins its cgroup itself).
 */
static __attribute__((noinline)) pid_t
spawn_clone(const struct jw__child_args *a, int *pidfd) {
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
  pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
  if (pid == 0)
    child_clone_main(a, 1);
  /* ENOSYS: no clone3 (before 5.3, or a seccomp filter). */
  if (pid < 0 && (errno == ENOSYS || errno == E2BIG)) {
    if (pidfd != NULL)
      *pidfd = -1;
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(ns | SIGCHLD), 0, 0, 0, 0);
    if (pid == 0)
      child_clone_main(a, 1);
  }
  return pid;
}

static int child_vm_main(void *arg) {
  child_report->ran = 1;
  child_clone_main(arg, 1);
}

/*
 * Creates the child with clone(CLONE_VM | CLONE_VFORK) on a stack of its
 * own, with its mount and network namespaces (not a PID namespace: see
 * the top of the file) and a pidfd (none when pidfd is NULL). Returns
 * once the child has exec'd or exited; *report says which.
 */
static __attribute__((noinline)) pid_t spawn_vm(const struct jw__child_args *a,
                                                int *pidfd,
                                                struct child_report *report) {
  char stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  pid_t pid;

  if (a->isolation & JW_ISOLATE_MOUNT)
    flags |= CLONE_NEWNS;
  if (a->isolation & JW_ISOLATE_NET)
    flags |= CLONE_NEWNET;
  if (a->keep_below > 0)
    flags |= CLONE_FILES;
  child_report = report;
  pid = clone(child_vm_main, stack + sizeof(stack),
              flags | (pidfd != NULL ? CLONE_PIDFD : 0), (void *)a, pidfd);
  /* EINVAL with CLONE_PIDFD: a kernel before 5.2; the exit watch copes. */
  if (pid < 0 && errno == EINVAL && pidfd != NULL) {
    *pidfd = -1;
    pid = clone(child_vm_main, stack + sizeof(stack), flags, (void *)a);
  }
  child_report = NULL;
  return pid;
}

/*
 * Whether clone(CLONE_VM | CLONE_VFORK) really shares our memory here: 0
 * not known yet, 1 it does, -1 it is turned into a fork (valgrind does
 * that), where a child's report can come only through the pipe. Found
 * once per process, by a child that only writes a flag and exits.
 */
static atomic_int vm_shares;

static int probe_main(void *arg) {
  *(volatile int *)arg = 1;
  _exit(0);
}

static __attribute__((noinline)) int clone_vm_shares(void) {
  int known = atomic_load(&vm_shares);
  if (known != 0)
    return known > 0;
  char stack[4096] __attribute__((aligned(16)));
  volatile int ran = 0;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int saved_errno = errno;
  pid_t pid = clone(probe_main, stack + sizeof(stack),
                    CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)&ran);
  errno = saved_errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pid > 0)
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
  /* Without a clone at all, no spawn succeeds either: the pipe is safe. */
  known = pid > 0 && ran ? 1 : -1;
  atomic_store(&vm_shares, known);
  return known > 0;
}

static atomic_int devnull = -1;

int jw__devnull_fd(void) {
  int fd = atomic_load(&devnull);
  int none = -1;

  if (fd >= 0)
    return fd;
  fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  /* Two threads' first calls race: one fd is kept, the other closed. */
  if (!atomic_compare_exchange_strong(&devnull, &none, fd)) {
    close(fd);
    fd = none;
  }
  return fd;
}

/*
 * The spawn block: descriptors reserved low in our table, each a copy of
 * /dev/null while no spawn uses it. A child that shares our memory gets
 * our descriptor table shared too (CLONE_FILES), not copied: the parent
 * first puts what the child needs (/dev/null, the output pipes, the
 * cgroup.procs files) into the block, and the child's first call takes a
 * table of its own holding only the descriptors below the block's top
 * (close_range(CLOSE_RANGE_UNSHARE)). Otherwise every spawn copies the
 * whole table and the exec closes each descriptor in it again, a cost
 * that grows with every connection and job the server holds (about 0.1
 * ms per 1,000 descriptors here). The block is reserved while the table
 * is small (jw_supervisor_new), so its top stays low; one spawn at a time
 * uses it (the lock). A spawn that cannot (not reserved, in use by
 * another thread's spawn, a fork-style child) copies the table.
 */
#define BLOCK_NULL 0
#define BLOCK_OUT 1
#define BLOCK_ERR 2
#define BLOCK_V2 3
#define BLOCK_V1 4
#define BLOCK_SIZE (BLOCK_V1 + JW__CG_MAX_HIER)

static struct fd_block {
  pthread_mutex_t lock;
  int fd[BLOCK_SIZE];
  atomic_uint top; /* one past the highest: 0 while not reserved */
  unsigned users;  /* jw__spawn_reserve calls not yet released */
} block = {.lock = PTHREAD_MUTEX_INITIALIZER};

int jw__spawn_reserve(void) {
  int null_fd = jw__devnull_fd();
  int fd[BLOCK_SIZE];
  unsigned top = 0;
  int err = 0;
  size_t i;

  if (null_fd < 0)
    return null_fd;
  pthread_mutex_lock(&block.lock);
  if (atomic_load(&block.top) > 0) {
    block.users++;
    goto out;
  }
  for (i = 0; i < BLOCK_SIZE; i++) {
    fd[i] = fcntl(null_fd, F_DUPFD_CLOEXEC, 3);
    if (fd[i] < 0) {
      err = -errno;
      while (i-- > 0)
        close(fd[i]);
      goto out;
    }
    if ((unsigned)fd[i] + 1 > top)
      top = (unsigned)fd[i] + 1;
  }
  memcpy(block.fd, fd, sizeof(fd));
  atomic_store(&block.top, top);
  block.users = 1;
out:
  pthread_mutex_unlock(&block.lock);
  return err;
}

void jw__spawn_release(void) {
  pthread_mutex_lock(&block.lock);
  if (block.users > 0 && --block.users == 0) {
    atomic_store(&block.top, 0);
    for (size_t i = 0; i < BLOCK_SIZE; i++)
      close(block.fd[i]);
  }
  pthread_mutex_unlock(&block.lock);
}

/* Points slot i of the block at fd (O_CLOEXEC); 0 or -1. */
static int block_put(size_t i, int fd) {
  int r;
  do
    r = dup3(fd, block.fd[i], O_CLOEXEC);
  while (r < 0 && (errno == EINTR || errno == EBUSY));
  return r < 0 ? -1 : 0;
}

/*
 * Points the output pipes' slots back at /dev/null, so that their read
 * ends see EOF once the job's copies close. The cgroup slots keep their
 * copies until the next spawn replaces them or the block is closed: a
 * cgroup.procs file is no writer anyone waits on.
 */
static void block_clear(void) {
  (void)block_put(BLOCK_OUT, block.fd[BLOCK_NULL]);
  (void)block_put(BLOCK_ERR, block.fd[BLOCK_NULL]);
}

/*
 * Puts the child's descriptors into the block (locked; the caller calls
 * block_unstage after the clone) and points a and *staged at them.
 * Returns 0, or -1 where the block is not to be used: a is then as it
 * was.
 */
static int block_stage(struct jw__child_args *a, jw__cg_spawn_t *staged) {
  int ok;
  size_t i;

  if (atomic_load(&block.top) == 0 || pthread_mutex_trylock(&block.lock) != 0)
    return -1;
  *staged = *a->cg;
  ok = block_put(BLOCK_OUT, a->out_fd) == 0 &&
       block_put(BLOCK_ERR, a->err_fd) == 0 &&
       (staged->v2_procs < 0 || block_put(BLOCK_V2, staged->v2_procs) == 0);
  for (i = 0; ok && i < staged->nv1; i++)
    ok = block_put(BLOCK_V1 + i, staged->v1_procs[i]) == 0;
  if (!ok) {
    block_clear();
    pthread_mutex_unlock(&block.lock);
    return -1;
  }
  if (staged->v2_procs >= 0)
    staged->v2_procs = block.fd[BLOCK_V2];
  for (i = 0; i < staged->nv1; i++)
    staged->v1_procs[i] = block.fd[BLOCK_V1 + i];
  a->null_fd = block.fd[BLOCK_NULL];
  a->out_fd = block.fd[BLOCK_OUT];
  a->err_fd = block.fd[BLOCK_ERR];
  a->cg = staged;
  a->keep_below = atomic_load(&block.top);
  return 0;
}

/* After the clone: the child has a table of its own or is gone. */
static void block_unstage(void) {
  block_clear();
  pthread_mutex_unlock(&block.lock);
}

pid_t jw__spawn(const jw_process_t *p, int out_fd, int err_fd, int *pidfd,
                int *status_fd) {
  struct jw__child_args a;
  struct child_report report = {0, 0};
  int rep[2] = {-1, -1};
  int statp[2] = {-1, -1};
  int null_fd = -1;
  int use_fork = (p->isolation & JW_ISOLATE_PID) != 0;
  jw__cg_spawn_t cgs, staged;
  int in_block = 0;
  char **cands;
  sigset_t all, old;
  pid_t pid = -1;
  int err = 0;
  int saved_errno;
  int code;
  ssize_t n;

  if (pidfd != NULL)
    *pidfd = -1;
  *status_fd = -1;
  cgs.v2_procs = -1;
  cgs.nv1 = 0;
  cgs.kept = 0;
  cands = build_candidates(p);
  if (cands == NULL)
    return -ENOMEM;
  if ((null_fd = jw__devnull_fd()) < 0) {
    err = null_fd;
    goto out;
  }
  /*
   * The report pipe is made only where the child will not share our
   * memory (a fork-style clone, or a CLONE_VM clone that this process
   * turns into a fork: clone_vm_shares), and read until the exec closes
   * it (EOF) or the report; a child sharing our memory reports there
   * alone, with report_fd -1.
   */
  if ((use_fork || !clone_vm_shares()) && pipe2(rep, O_CLOEXEC) < 0) {
    err = -errno;
    goto out;
  }
  err = jw__cgroup_spawn_open(p->cgroup, &cgs);
  if (err < 0)
    goto out;
  if ((p->isolation & JW_ISOLATE_PID) &&
      (pipe2(statp, O_CLOEXEC) < 0 ||
       fcntl(statp[0], F_SETFL, O_NONBLOCK) < 0)) {
    err = -errno;
    goto out;
  }

  a = (struct jw__child_args){.cands = cands,
                              .argv = p->argv,
                              .envp = p->envp,
                              .cwd = p->cwd,
                              .null_fd = null_fd,
                              .out_fd = out_fd,
                              .err_fd = err_fd,
                              .report_fd = rep[1],
                              .parent = getpid(),
                              .creds = p->creds,
                              .cg = &cgs,
                              .isolation = p->isolation,
                              .status_fd = statp[1]};
  /* The block, where the child shares our memory (and so the table). */
  if (!use_fork && rep[1] < 0)
    in_block = block_stage(&a, &staged) == 0;

  /*
   * No signal handler of ours may run in the child while it shares our
   * memory; the child resets every disposition before unblocking.
   */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  saved_errno = errno;
  pid = use_fork ? spawn_clone(&a, pidfd) : spawn_vm(&a, pidfd, &report);
  if (pid < 0)
    err = -errno;
  errno = saved_errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (in_block)
    block_unstage();
  if (pid < 0)
    goto out;

  jw__close_fd(&rep[1]);
  jw__close_fd(&statp[1]);

  if (report.ran) {
    /* It shared our memory: it has exec'd or exited by now. */
    code = report.err;
    n = code != 0 ? (ssize_t)sizeof(code) : 0;
  } else {
    /*
     * A fork-style child: the read waits for the exec or the report; the
     * child does nothing else first. (A fork made meanwhile by another
     * thread holds the write end too, until that child execs.)
     */
    do
      n = read(rep[0], &code, sizeof(code));
    while (n < 0 && errno == EINTR);
  }
  if (n == (ssize_t)sizeof(code)) {
    /* It has called _exit() (an init right after its child did). */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    if (pidfd != NULL)
      jw__close_fd(pidfd);
    err = -code;
    goto out;
  }
  *status_fd = statp[0];
  statp[0] = -1;

out:
  jw__close_fd(&rep[0]);
  jw__close_fd(&rep[1]);
  jw__close_fd(&statp[0]);
  jw__close_fd(&statp[1]);
  jw__cgroup_spawn_close(&cgs);
  jw__free_vec(cands);
  return err < 0 ? err : pid;
}
