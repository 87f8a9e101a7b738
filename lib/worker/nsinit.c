/*
 * jw_process's namespaces: what a child with namespaces of its own sets
 * up in them before the command runs (a private /proc and /sys, the
 * loopback interface), and the minimal init that is PID 1 of a job's PID
 * namespace. Like the rest of the child's code (spawn.c), it runs on the
 * server's memory (a copy of it for the init) and only makes system calls
 * on data the parent prepared.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_int.h"

/* Brings the loopback interface of a new network namespace up. */
static void loopback_up(int report_fd) {
  struct ifreq ifr;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    jw__child_fail(report_fd, errno);
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
    jw__child_fail(report_fd, errno);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
    jw__child_fail(report_fd, errno);
  close(s);
}

/*
 * The mounts and interfaces of a child's new namespaces, before anything
 * of the job runs.
 */
void jw__nsinit_setup(const struct jw__child_args *a, int report_fd) {
  if (a->isolation & JW_ISOLATE_MOUNT) {
    /*
     * Mounts made here stay here; the host's still propagate in. The new
     * /proc belongs to the job's PID namespace when it has one. The kernel
     * ignores the type of a propagation change; it is "none" rather than
     * NULL because valgrind before 3.20 reads it as a string.
     */
    if (mount("none", "/", "none", MS_REC | MS_SLAVE, NULL) < 0)
      jw__child_fail(report_fd, errno);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
        0)
      jw__child_fail(report_fd, errno);
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
      jw__child_fail(report_fd, errno);
  }
  if (a->isolation & JW_ISOLATE_NET)
    loopback_up(report_fd);
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
__attribute__((noreturn)) void jw__nsinit_run(const struct jw__child_args *a,
                                              int report_fd, int null_fd,
                                              int status_fd) {
  const uint64_t all = ~(uint64_t)0;
  int oom_fd;
  pid_t job;

  jw__child_set_mask(all);
  prctl(PR_SET_NAME, "jw-init", 0, 0, 0);

  job = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0, 0, 0, 0);
  if (job < 0)
    jw__child_fail(report_fd, errno);
  if (job == 0) {
    if (setpgid(0, 0) < 0)
      jw__child_fail(report_fd, errno);
    jw__child_set_mask(0);
    jw__child_drop_privileges(a, report_fd, 1); /* the init */
    if (a->cwd != NULL && chdir(a->cwd) < 0)
      jw__child_fail(report_fd, errno);
    jw__child_exec_command(a, report_fd);
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
    jw__child_write_str(oom_fd, "-1000", 5);
    close(oom_fd);
  }
  jw__child_drop_privileges(a, report_fd, 0);

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
      jw__child_write_str(status_fd, (const char *)msg, sizeof(msg));
      _exit(msg[1] != 0 ? 128 + msg[1] : msg[0]);
    }
  }
}
