/*
 * teleportd: the JobWorker gRPC service on one libuv loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "flags.h"
#include "fs.h"
#include "hash.h"
#include "jobworker/rpc.h"
#include "jobworker/service.h"
#include "jobworker/supervisor.h"
#include "jobworker/users.h"
#include "log.h"
#include "metrics.h"
#include "reload.h"
#include "trim.h"

typedef struct {
  uv_loop_t loop;
  jw_config_t cfg;
  jw_supervisor_t *sup;
  jw_rpc_server_t *srv;
  jw_metrics_t *metrics;
  jw_trim_t trim; /* the heap given back after connections come and go */
  jw_service_t svc;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_signal_t sighup;
  int pending; /* parts of the shutdown still running */
  int shutting_down;
  /* The reload (SIGHUP): the binary to exec, the argv to pass. */
  char self[4096];
  char **argv;
  int reloading;         /* a check or a handover is under way */
  int reload_fd;         /* the listening socket kept for the next process */
  uint64_t hup_at;       /* uv_hrtime() of the SIGHUP, for the log */
  uv_idle_t reload_idle; /* the turn between the flush and the exec */
  uv_check_t reload_check;
} server_t;

/* How long open streams get to take their UNAVAILABLE at a reload. */
#define RELOAD_FLUSH_MS 500

/* The rpc server's callbacks get the service (opts.data): its server. */
#define SERVER_OF(svc_ptr)                                                     \
  ((server_t *)(void *)((char *)(svc_ptr)-offsetof(server_t, svc)))

static void on_event(const jw_rpc_event_t *ev, void *data) {
  char status[32], dur[32];
  server_t *s = SERVER_OF(data);
  jw_metrics_event(s->metrics, ev);
  /* A handshake's memory was just freed, or a connection's. */
  if (ev->event != JW_RPC_EV_RPC)
    jw_trim_note(&s->trim);
  jw_log_level_t level = JW_LOG_INFO;
  if (ev->event == JW_RPC_EV_CONN_OPEN)
    level = JW_LOG_DEBUG;
  else if (ev->event == JW_RPC_EV_CONN_REFUSED)
    level = JW_LOG_WARN;
  else if (ev->event == JW_RPC_EV_RPC && (ev->grpc_status == JW_GRPC_INTERNAL ||
                                          ev->grpc_status == JW_GRPC_UNKNOWN))
    level = JW_LOG_WARN;
  if (!jw_log_enabled(level))
    return;
  snprintf(dur, sizeof(dur), "%.3fms", (double)ev->duration_us / 1000.0);
  if (ev->event == JW_RPC_EV_RPC) {
    const char *m = ev->method ? strrchr(ev->method, '/') : NULL;
    snprintf(status, sizeof(status), "%s",
             jw_grpc_status_name(ev->grpc_status));
    jw_log(level, "event", jw_rpc_event_name(ev->event), "peer", ev->peer, "cn",
           ev->cn, "method", m ? m + 1 : ev->method, "job", ev->tag, "status",
           status, "duration", dur, "error", ev->message, NULL);
  } else {
    jw_log(level, "event", jw_rpc_event_name(ev->event), "peer", ev->peer, "cn",
           ev->cn, "duration", ev->duration_us ? dur : NULL, "reason",
           ev->reason, "error", ev->message, NULL);
  }
}

/* A job dropped output for the first time (its cap, or a failed write). */
/* A job record that cannot be read (at start) or written. */
static void on_record_error(const char *path, int err, const char *why,
                            void *data) {
  (void)data;
  jw_log(JW_LOG_ERROR, "event", "job_record_error", "file", path, "error",
         jw_strerror(err), "msg", why, NULL);
}

static void on_drop(const char *id, const char *owner, int err, void *data) {
  server_t *s = data;
  char cap[32];
  snprintf(cap, sizeof(cap), "%" PRIu64, s->cfg.max_output_bytes);
  if (err == JW_ELIMIT)
    jw_log(JW_LOG_INFO, "event", "output_capped", "job", id, "cn", owner,
           "max_output_bytes", cap, "msg",
           "the job keeps running; further output is dropped", NULL);
  else if (err == -EDQUOT) {
    snprintf(cap, sizeof(cap), "%" PRIu64, s->cfg.max_disk_per_client);
    jw_log(JW_LOG_WARN, "event", "output_disk_capped", "job", id, "cn", owner,
           "max_disk_per_client", cap, "msg",
           "the client's output fills --max-disk-per-client and it has no "
           "finished job left to remove; further output is dropped",
           NULL);
  } else
    jw_log(JW_LOG_ERROR, "event", "output_write_failed", "job", id, "cn", owner,
           "error", jw_strerror(err), "msg",
           "the job keeps running; output that cannot be written is dropped",
           NULL);
}

/* The audit line of a job start (docs/operations.md#audit). */
static void on_job_start(const jw_job_info_t *info, void *data) {
  server_t *s = data;
  char nargs[24], uid[16], gid[16];
  jw_metrics_job_started(s->metrics, info->owner);
  snprintf(nargs, sizeof(nargs), "%zu", info->nargs);
  snprintf(uid, sizeof(uid), "%u", (unsigned)info->uid);
  snprintf(gid, sizeof(gid), "%u", (unsigned)info->gid);
  jw_log(JW_LOG_INFO, "event", "job_start", "owner", info->owner, "job",
         info->id, "command", info->command, "args", nargs, "uid", uid, "gid",
         gid, NULL);
}

/* The audit line of a job end: how it ended and what it used. */
static void on_job_end(const jw_job_info_t *info, void *data) {
  static const char *const states[] = {"initial", "running", "exited",
                                       "signaled", "stopped"};
  server_t *s = data;
  char code[16] = "", sig[16] = "", cpu[24], mem[24], out[24], drop[24],
       dur[32];
  const jw_proc_status_t *p = &info->proc;
  jw_metrics_job_ended(s->metrics, info);
  if (p->state == JW_PROC_EXITED ||
      (p->state == JW_PROC_STOPPED && p->signal == 0))
    snprintf(code, sizeof(code), "%d", p->exit_code);
  if (p->signal != 0)
    snprintf(sig, sizeof(sig), "%d", p->signal);
  snprintf(cpu, sizeof(cpu), "%" PRIu64, info->usage.cpu_usage_ns);
  snprintf(mem, sizeof(mem), "%" PRIu64, info->usage.memory_peak_bytes);
  snprintf(out, sizeof(out), "%" PRIu64, info->output_bytes);
  snprintf(drop, sizeof(drop), "%" PRIu64, info->output_dropped);
  snprintf(dur, sizeof(dur), "%.3fs",
           p->ended_at_ns > p->started_at_ns
               ? (double)(p->ended_at_ns - p->started_at_ns) / 1e9
               : 0.0);
  jw_log(JW_LOG_INFO, "event", "job_end", "owner", info->owner, "job", info->id,
         "state", (unsigned)p->state < 5 ? states[p->state] : "unknown",
         "exit_code", code[0] ? code : NULL, "signal", sig[0] ? sig : NULL,
         "reason", jw_metrics_end_reason(info), "cpu_ns", cpu, "mem_peak", mem,
         "output_bytes", out, "dropped", drop, "duration", dur, NULL);
}

/* Whether cn is one of --metrics-cn's comma-separated names. */
static bool metrics_allowed(const char *list, const char *cn) {
  size_t n = cn != NULL ? strlen(cn) : 0;
  if (list == NULL || n == 0)
    return false;
  for (const char *p = list; *p != '\0';) {
    const char *end = strchr(p, ',');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    if (len == n && memcmp(p, cn, n) == 0)
      return true;
    if (end == NULL)
      break;
    p = end + 1;
  }
  return false;
}

static void add_running(const jw_job_info_t *info, void *data) {
  jw_metrics_live_t *live = data;
  if (info->proc.state == JW_PROC_RUNNING ||
      info->proc.state == JW_PROC_INITIAL) {
    live->running_output_bytes += info->output_bytes;
    live->running_output_dropped += info->output_dropped;
  }
}

static int reply_out(const char *p, size_t n, void *ctx) {
  return jw_rpc_http_reply_append(ctx, p, n);
}

/* GET /metrics: the exposition for --metrics-cn's CNs, 403 for others. */
static void get_metrics(const char *cn, jw_rpc_http_reply_t *reply,
                        void *data) {
  server_t *s = SERVER_OF(data);
  if (!metrics_allowed(s->cfg.metrics_cn, cn)) {
    jw_rpc_http_reply_status(reply, 403);
    jw_rpc_http_reply_printf(
        reply,
        "this client certificate (CN %s) may not read metrics: "
        "teleportd's --metrics-cn lists the CNs that may\n",
        cn != NULL ? cn : "none");
    return;
  }
  jw_metrics_live_t live = {0};
  live.jobs_running = jw_supervisor_running(s->sup);
  jw_supervisor_list(s->sup, NULL, add_running, &live);
  jw_metrics_read_process(&live);
  jw_rpc_http_reply_content_type(reply, JW_METRICS_CONTENT_TYPE);
  jw_metrics_render(s->metrics, &live, reply_out, reply);
}

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void part_done(server_t *s) {
  if (--s->pending > 0)
    return;
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sighup, NULL);
}

/*
 * The open streams have ended (or were cut after their bound): hand the
 * jobs over and become the new binary. Nothing of this process serves
 * any more, so a failure from here on can only end it: the jobs then run
 * on, unwatched, until the next start finds their records.
 */
static void sup_done(jw_supervisor_t *sup, void *data);

static void on_reload_idle(uv_idle_t *h) { (void)h; }

static void reload_handles_closed(uv_handle_t *h) { (void)h; }

/*
 * The turn after the server closed, past the loop's poll: a SIGTERM that
 * its handler caught before the signals were blocked has reached on_signal
 * by now, and any later one is blocked and stays pending across the exec.
 */
static void reload_go(uv_check_t *h) {
  server_t *s = h->data;
  jw_reload_state_t st = {.listen_fd = s->reload_fd};
  char errbuf[512], n[24], ms[32];
  uv_close((uv_handle_t *)&s->reload_idle, reload_handles_closed);
  uv_close((uv_handle_t *)&s->reload_check, reload_handles_closed);
  /* SIGTERM came during the reload: shut down instead of re-executing. */
  if (s->shutting_down) {
    jw_reload_unblock_signals();
    close(s->reload_fd);
    s->reload_fd = -1;
    s->pending = 1;
    jw_service_shutdown(&s->svc);
    jw_supervisor_shutdown(s->sup, sup_done, s);
    return;
  }
  int r = jw_supervisor_handover(s->sup, &st.jobs, &st.njobs);
  if (r != 0) {
    jw_log(JW_LOG_ERROR, "event", "reload_failed", "error", jw_strerror(r),
           "msg", "cannot hand the jobs over; exiting", NULL);
    exit(1);
  }
  snprintf(n, sizeof(n), "%zu", st.njobs);
  snprintf(ms, sizeof(ms), "%.3fms", (double)(uv_hrtime() - s->hup_at) / 1e6);
  jw_log(JW_LOG_INFO, "event", "reload_exec", "binary", s->self, "jobs", n,
         "since_signal", ms, NULL);
  jw_reload_exec(s->self, s->argv, &st, errbuf, sizeof(errbuf));
  jw_log(JW_LOG_ERROR, "event", "reload_failed", "error", errbuf, "msg",
         "exiting; the jobs run on and the next start finds them", NULL);
  exit(1);
}

/*
 * The open streams have ended (or were cut after their bound). A signal
 * that comes from here on must not be lost in the exec: the signals are
 * blocked now, and the handover waits for one more turn of the loop, in
 * which a signal caught just before is dispatched (reload_go).
 */
static void reload_srv_closed(jw_rpc_server_t *srv, void *data) {
  server_t *s = data;
  (void)srv;
  s->srv = NULL;
  jw_reload_block_signals();
  /* The idle handle makes that turn's poll return at once. */
  uv_idle_init(&s->loop, &s->reload_idle);
  uv_check_init(&s->loop, &s->reload_check);
  s->reload_check.data = s;
  uv_idle_start(&s->reload_idle, on_reload_idle);
  uv_check_start(&s->reload_check, reload_go);
}

/* `teleportd --check` answered: go on with the reload, or stay. */
static void reload_checked(int ok, const char *why, void *data) {
  server_t *s = data;
  if (s->shutting_down)
    return;
  if (!ok) {
    s->reloading = 0;
    jw_log(JW_LOG_ERROR, "event", "reload_refused", "binary", s->self, "error",
           why, "msg",
           "the check of the new configuration failed; nothing changed", NULL);
    return;
  }
  s->reload_fd = jw_rpc_server_dup_listen_fd(s->srv);
  if (s->reload_fd < 0) {
    s->reloading = 0;
    jw_log(JW_LOG_ERROR, "event", "reload_refused", "error",
           jw_strerror(s->reload_fd), "msg", "nothing changed", NULL);
    return;
  }
  /*
   * No new connection is accepted from here (the backlog keeps them for
   * the next process); streams end with UNAVAILABLE so that clients
   * reconnect, and what they still have to send gets RELOAD_FLUSH_MS.
   */
  jw_rpc_server_end_calls(s->srv, JW_GRPC_UNAVAILABLE,
                          "teleportd is reloading; reconnect");
  jw_rpc_server_close(s->srv, RELOAD_FLUSH_MS, reload_srv_closed, s);
}

/*
 * SIGHUP (systemd's ExecReload, docker kill -s HUP): check the binary
 * the server was started from with the same flags, then re-execute it
 * with the listening socket and the running jobs (server/reload.h).
 */
static void on_sighup(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  if (s->shutting_down || s->reloading) {
    jw_log(JW_LOG_INFO, "event", "signal", "signal", strsignal(signum), "msg",
           s->shutting_down ? "shutting down; no reload"
                            : "a reload is already under way",
           NULL);
    return;
  }
  if (s->self[0] == '\0' || !s->cfg.durable) {
    /* The next process finds the running jobs through their records. */
    jw_log(JW_LOG_ERROR, "event", "reload_refused", "msg",
           !s->cfg.durable
               ? "a reload keeps jobs through their records: it needs "
                 "--durable true; nothing changed"
               : "the server's own binary was not found at start; nothing "
                 "changed",
           NULL);
    return;
  }
  s->reloading = 1;
  s->hup_at = uv_hrtime();
  jw_log(JW_LOG_INFO, "event", "reload", "signal", strsignal(signum), "binary",
         s->self, NULL);
  int r = jw_reload_check(&s->loop, s->self, s->argv, reload_checked, s);
  if (r != 0) {
    s->reloading = 0;
    jw_log(JW_LOG_ERROR, "event", "reload_refused", "error", uv_strerror(r),
           "msg", "nothing changed", NULL);
  }
}

static void sup_done(jw_supervisor_t *sup, void *data) {
  server_t *s = data;
  jw_log(JW_LOG_INFO, "event", "jobs_stopped", NULL);
  part_done(s);
}

static void srv_done(jw_rpc_server_t *srv, void *data) {
  server_t *s = data;
  jw_log(JW_LOG_INFO, "event", "connections_closed", NULL);
  s->srv = NULL; /* its memory goes when this returns */
  part_done(s);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *s = h->data;
  if (s->shutting_down) {
    jw_log(JW_LOG_INFO, "event", "signal", "signal", strsignal(signum), "msg",
           "already shutting down", NULL);
    return;
  }
  /*
   * The reload already closed the server: the jobs are stopped once its
   * streams are flushed (reload_srv_closed), and nothing is re-executed.
   */
  if (s->reload_fd >= 0) {
    s->shutting_down = 1;
    jw_log(JW_LOG_INFO, "event", "shutdown", "signal", strsignal(signum), "msg",
           "a reload was under way; stopping instead", NULL);
    return;
  }
  s->shutting_down = 1;
  char running[24];
  snprintf(running, sizeof(running), "%zu", jw_supervisor_running(s->sup));
  jw_log(JW_LOG_INFO, "event", "shutdown", "signal", strsignal(signum),
         "running_jobs", running, NULL);
  s->pending = 2;
  /* Health answers NOT_SERVING from now on; Watch calls get that and end,
   * so that they do not hold the server's shutdown. */
  jw_service_shutdown(&s->svc);
  /* Jobs are stopped first so that their output streams can end with OK;
   * the server waits for those streams, but never past the jobs' own
   * grace period plus a margin. */
  jw_supervisor_shutdown(s->sup, sup_done, s);
  jw_rpc_server_close(s->srv, s->cfg.stop_timeout_ms + 5000, srv_done, s);
}

/* Each job holds several fds: raise the soft limit as far as allowed. */
static void raise_nofile(void) {
  struct rlimit rl;
  char buf[48];
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t)rl.rlim_cur);
  jw_log(JW_LOG_INFO, "event", "rlimit", "nofile", buf, NULL);
}

/*
 * StrictModes for the data directory, as sshd checks a user's files: the
 * directory must be ours and writable by nobody else, and every parent up
 * to / must be ours or root's and writable by nobody else unless sticky
 * (/tmp): otherwise someone else could swap the directory or its files
 * for their own. Returns 0, or -1 after printing which directory is wrong.
 */
static int check_dir_modes(const char *dir) {
  char real[4096], *slash;
  struct stat st;
  uid_t me = geteuid();

  if (realpath(dir, real) == NULL) {
    fprintf(stderr, "teleportd: cannot use data directory %s: %s\n", dir,
            strerror(errno));
    return -1;
  }
  for (int top = 1;; top = 0) {
    if (stat(real, &st) != 0) {
      fprintf(stderr, "teleportd: cannot use data directory %s: %s: %s\n", dir,
              real, strerror(errno));
      return -1;
    }
    if (top && !S_ISDIR(st.st_mode)) {
      fprintf(stderr, "teleportd: data directory %s is not a directory\n", dir);
      return -1;
    }
    if (top ? st.st_uid != me : st.st_uid != me && st.st_uid != 0) {
      fprintf(stderr,
              "teleportd: refusing data directory %s: %s is owned by uid %u, "
              "not by teleportd's user (uid %u)%s\n",
              dir, real, (unsigned)st.st_uid, (unsigned)me,
              top ? "" : " or root");
      return -1;
    }
    if ((st.st_mode & 022) != 0 && (top || !(st.st_mode & S_ISVTX))) {
      fprintf(stderr,
              "teleportd: refusing data directory %s: %s is group or world "
              "writable (mode %04o); chmod go-w it or choose another "
              "--data-dir\n",
              dir, real, (unsigned)(st.st_mode & 07777));
      return -1;
    }
    if (strcmp(real, "/") == 0)
      return 0;
    slash = strrchr(real, '/');
    if (slash == real)
      slash[1] = '\0';
    else
      *slash = '\0';
  }
}

/*
 * Whether name is a file this server makes in its data directory and a
 * previous run left for nothing: the temporary file of the uid table, and,
 * unless durable, the jobs' logs and their records' journal (durable, the
 * supervisor restores them and removes what it does not need itself).
 */
static int is_own_leftover(const char *name, bool durable) {
  if (strcmp(name, JW_USERS_TABLE ".tmp") == 0)
    return 1;
  if (durable)
    return 0;
  return jw_supervisor_is_log_name(name) ||
         strcmp(name, JW_SUPERVISOR_JOURNAL) == 0 ||
         strcmp(name, JW_SUPERVISOR_JOURNAL ".tmp") == 0;
}

/*
 * Takes the data directory for this process: two servers sharing one
 * directory would delete each other's logs. What a previous run left for
 * nothing is removed (is_own_leftover); durable records and their logs
 * stay for the supervisor to restore, and nothing else in the directory is
 * touched. Returns the lock fd (kept open for the process's life) or -1
 * after printing why.
 */
static int claim_data_dir(const char *dir, bool durable) {
  char path[4200];
  struct stat st;
  int err = jw__mkdir_p(dir, 0700);
  /* Something else in its place: check_dir_modes says what. */
  if (err != 0 && err != -ENOTDIR) {
    fprintf(stderr, "teleportd: cannot create data directory %s: %s\n", dir,
            strerror(-err));
    return -1;
  }
  if (check_dir_modes(dir) != 0)
    return -1;
  /*
   * Job users must not read it, nor list it (the log names are job ids):
   * a directory an operator made 0755 is tightened.
   */
  if (stat(dir, &st) == 0 && (st.st_mode & 077) != 0) {
    if (chmod(dir, st.st_mode & 07700) != 0) {
      fprintf(stderr, "teleportd: cannot make data directory %s private: %s\n",
              dir, strerror(errno));
      return -1;
    }
    char was[8];
    snprintf(was, sizeof(was), "%04o", (unsigned)(st.st_mode & 07777));
    jw_log(JW_LOG_INFO, "event", "data_dir_mode", "dir", dir, "was", was, "now",
           "0700", NULL);
  }
  snprintf(path, sizeof(path), "%s/teleportd.lock", dir);
  /* Not through a symlink someone left in its place. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    fprintf(
        stderr, "teleportd: cannot use data directory %s: %s: %s\n", dir, path,
        errno == ELOOP ? "it is a symbolic link; remove it" : strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    fprintf(stderr,
            "teleportd: data directory %s is in use by another teleportd; "
            "give this one its own --data-dir\n",
            dir);
    close(fd);
    return -1;
  }
  DIR *d = opendir(dir);
  int removed = 0;
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (is_own_leftover(e->d_name, durable) &&
          unlinkat(dirfd(d), e->d_name, 0) == 0)
        removed++;
    }
    closedir(d);
  }
  if (removed > 0) {
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", removed);
    jw_log(JW_LOG_INFO, "event", "stale_logs_removed", "count", buf, "dir", dir,
           NULL);
  }
  return fd;
}

/*
 * `teleportd --check`: the data directory a server would claim, without
 * its lock (the running server holds it) and without changing anything
 * but a probe file. Returns 0, or -1 after printing why.
 */
static int check_data_dir(const char *dir) {
  char path[4200];
  struct stat st;
  if (stat(dir, &st) != 0) {
    int err = jw__mkdir_p(dir, 0700);
    if (err != 0) {
      fprintf(stderr, "teleportd: cannot create data directory %s: %s\n", dir,
              strerror(-err));
      return -1;
    }
  }
  if (check_dir_modes(dir) != 0)
    return -1;
  snprintf(path, sizeof(path), "%s/.teleportd-check-%ld", dir, (long)getpid());
  int fd =
      open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    fprintf(stderr, "teleportd: data directory %s is not writable: %s\n", dir,
            strerror(errno));
    return -1;
  }
  close(fd);
  unlink(path);
  return 0;
}

/*
 * The cgroup parent's name: one per data directory, so that a restarted
 * server (which holds the same directory's lock) finds what its previous
 * run left, and two servers with their own directories never meet.
 */
static void cgroup_name(const char *dir, char *buf, size_t size) {
  char real[4096];
  const char *p = realpath(dir, real) != NULL ? real : dir;
  snprintf(buf, size, "teleportd-%08" PRIx32, jw__fnv1a32(p, strlen(p)));
}

/* --io-device: MAJ:MIN, a block device, or any file on the disk. */
static int io_device(const char *spec, const char *data_dir, dev_t *out) {
  unsigned ma, mi;
  char tail;
  struct stat st;
  if (spec == NULL || spec[0] == '\0') {
    if (stat(data_dir, &st) != 0)
      return -errno;
    *out = st.st_dev;
    return 0;
  }
  if (sscanf(spec, "%u:%u%c", &ma, &mi, &tail) == 2) {
    *out = makedev(ma, mi);
    return 0;
  }
  if (stat(spec, &st) != 0)
    return -errno;
  *out = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
  return 0;
}

/*
 * Sets up the jobs' cgroups: finds the backend, removes what a previous
 * run left, and checks that the default limits can be enforced. Returns
 * 0, or 2 after printing why the server cannot start.
 */
static int setup_cgroups(server_t *s, int reloaded, jw_cgroup_mgr_t **out) {
  static const char *const names[] = {"memory", "cpu", "io", "pids"};
  static const unsigned bits[] = {JW_CG_MEMORY, JW_CG_CPU, JW_CG_IO,
                                  JW_CG_PIDS};
  char name[64], caps[64] = "", dev[32] = "none";
  jw_cgroup_mgr_options_t o = {.name = name};
  jw_cgroup_mgr_t *mgr;
  int r;

  cgroup_name(s->cfg.data_dir, name, sizeof(name));
  r = io_device(s->cfg.io_device, s->cfg.data_dir, &o.io_device);
  if (r != 0) {
    fprintf(stderr, "teleportd: invalid --io-device \"%s\": %s\n",
            s->cfg.io_device, strerror(-r));
    return 2;
  }
  r = jw_cgroup_mgr_new(&o, &mgr);
  if (r != 0) {
    fprintf(stderr, "teleportd: cannot set up cgroups: %s\n", jw_strerror(r));
    return 2;
  }
  /*
   * teleportd owns its cgroup (a unit with Delegate=yes, a container):
   * when it holds processes, move into a leaf so that the controllers can
   * be enabled for the jobs (the no-internal-process rule).
   */
  r = jw_cgroup_mgr_adopt_self(mgr);
  if (r != 0)
    jw_log(JW_LOG_WARN, "event", "cgroup_move_failed", "error", jw_strerror(r),
           NULL);
  unsigned have = jw_cgroup_mgr_caps(mgr);
  if (!(have & JW_CG_KILL)) {
    jw_log(JW_LOG_WARN, "event", "cgroups_unavailable", "msg",
           "no writable cgroup hierarchy: jobs run as process groups and "
           "requests with limits are refused",
           NULL);
  } else {
    for (size_t i = 0; i < 4; i++)
      if (have & bits[i])
        snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), "%s%s",
                 caps[0] ? "," : "", names[i]);
    if (jw_cgroup_mgr_io_device(mgr) != 0)
      snprintf(dev, sizeof(dev), "%u:%u", major(jw_cgroup_mgr_io_device(mgr)),
               minor(jw_cgroup_mgr_io_device(mgr)));
    jw_log(JW_LOG_INFO, "event", "cgroups", "backend",
           jw_cgroup_mgr_backend(mgr), "limits", caps[0] ? caps : "none",
           "io_device", dev, "parent", name, NULL);
    /* After a reload, what is there is the handed-over jobs'. */
    r = reloaded ? 0 : jw_cgroup_mgr_remove_stale(mgr);
    if (r > 0) {
      char n[16];
      snprintf(n, sizeof(n), "%d", r);
      jw_log(JW_LOG_INFO, "event", "stale_cgroups_removed", "count", n, NULL);
    }
  }
  unsigned missing = jw_cgroup_mgr_missing(mgr, &s->cfg.default_limits);
  for (size_t i = 0; i < 4; i++) {
    if (missing & bits[i]) {
      fprintf(stderr,
              "teleportd: --default-%s is set, but this host cannot enforce "
              "%s limits (cgroup backend: %s%s)\n",
              i == 2 ? "io-read/--default-io-write" : names[i], names[i],
              jw_cgroup_mgr_backend(mgr),
              i == 2 && (have & JW_CG_KILL) ? "; or set --io-device" : "");
      jw_cgroup_mgr_free(mgr);
      return 2;
    }
  }
  *out = mgr;
  return 0;
}

/*
 * Reads who each client's jobs run as (docs/security.md). Returns 0, or 2
 * after printing why the server cannot start.
 */
static int setup_users(server_t *s, jw_users_t **out) {
  char errbuf[600], range[48], n[24], uid[16];
  jw_users_options_t o = {
      .data_dir = s->cfg.data_dir,
      .first = (uid_t)s->cfg.job_uid_first,
      .last = (uid_t)s->cfg.job_uid_last,
      .users_file = s->cfg.users_file != NULL && s->cfg.users_file[0] != '\0'
                        ? s->cfg.users_file
                        : NULL,
      .privileged = geteuid() == 0,
  };
  if (jw_users_open(&o, out, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "teleportd: %s\n", errbuf);
    return 2;
  }
  snprintf(uid, sizeof(uid), "%u", (unsigned)geteuid());
  if (!o.privileged) {
    jw_log(JW_LOG_WARN, "event", "job_users", "uid", uid, "msg",
           "teleportd is not root: every job runs as teleportd's own user, "
           "so clients' jobs are not kept apart by the host",
           NULL);
    return 0;
  }
  snprintf(range, sizeof(range), "%u-%u", (unsigned)o.first, (unsigned)o.last);
  snprintf(n, sizeof(n), "%zu", jw_users_allocated(*out));
  jw_log(JW_LOG_INFO, "event", "job_users", "uid_range", range, "allocated", n,
         "users_file", o.users_file, NULL);
  return 0;
}

/*
 * Without --default-pids, a job gets systemd's DefaultTasksMax: 15% of
 * the kernel's pid/thread maximum, so that a fork bomb cannot take the
 * host (never more than --max-pids).
 */
static void default_pids(server_t *s, jw_cgroup_mgr_t *mgr) {
  char buf[24];
  int64_t p;
  if (s->cfg.default_pids_set || !(jw_cgroup_mgr_caps(mgr) & JW_CG_PIDS))
    return;
  p = jw_cgroup_default_pids();
  if (s->cfg.max_limits.pids > 0 && p > s->cfg.max_limits.pids)
    p = s->cfg.max_limits.pids;
  if (p <= 0)
    return;
  s->cfg.default_limits.pids = p;
  snprintf(buf, sizeof(buf), "%" PRId64, p);
  jw_log(JW_LOG_INFO, "event", "default_pids", "pids", buf, "msg",
         "15% of min(kernel.pid_max, kernel.threads-max); set --default-pids "
         "to change it",
         NULL);
}

int main(int argc, char **argv) {
  static server_t s;
  char errbuf[512];
  jw_tls_ctx_t *tls = NULL;
  jw_cgroup_mgr_t *cgroups = NULL;
  jw_users_t *users = NULL;
  int rc = 1;

  jw_reload_state_t handed = {.listen_fd = -1};
  int r = jw_flags_parse(&s.cfg, argc, argv);
  if (r != 0)
    return r == 1 ? 0 : 2;
  jw_log_set_level(s.cfg.log_level);
  signal(SIGPIPE, SIG_IGN);
  s.argv = argv;
  s.reload_fd = -1;
  if (!s.cfg.check && jw_reload_self_path(s.self, sizeof(s.self)) != 0)
    s.self[0] = '\0';
  if (!s.cfg.check && jw_reload_take(&handed, errbuf, sizeof(errbuf)) < 0) {
    fprintf(stderr, "teleportd: %s\n", errbuf);
    return 2;
  }

  if (jw_tls_ctx_new_server(s.cfg.cacert, s.cfg.cert, s.cfg.key, &tls, errbuf,
                            sizeof(errbuf)) != 0) {
    fprintf(stderr, "teleportd: %s\n", errbuf);
    return 2;
  }
  if (s.cfg.crl != NULL && s.cfg.crl[0] != '\0' &&
      jw_tls_ctx_set_crl(tls, s.cfg.crl, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "teleportd: --crl: %s\n", errbuf);
    jw_tls_ctx_free(tls);
    return 2;
  }
  struct sockaddr_storage ss;
  if (jw_rpc_listen_addr_parse(s.cfg.addr, &ss) != 0) {
    fprintf(stderr,
            "teleportd: invalid --addr \"%s\": want IP:PORT, e.g. "
            "127.0.0.1:3000, [::1]:3000 or 0.0.0.0:3000\n",
            s.cfg.addr);
    jw_tls_ctx_free(tls);
    return 2;
  }
  if (s.cfg.check) {
    jw_tls_ctx_free(tls);
    if (check_data_dir(s.cfg.data_dir) != 0)
      return 2;
    printf("configuration ok\n");
    return 0;
  }
  int lockfd = claim_data_dir(s.cfg.data_dir, s.cfg.durable);
  if (lockfd < 0) {
    jw_tls_ctx_free(tls);
    return 2;
  }
  if (setup_users(&s, &users) != 0) {
    jw_tls_ctx_free(tls);
    close(lockfd);
    return 2;
  }
  if (setup_cgroups(&s, handed.listen_fd >= 0, &cgroups) != 0) {
    jw_users_free(users);
    jw_tls_ctx_free(tls);
    close(lockfd);
    return 2;
  }
  default_pids(&s, cgroups);

  size_t nmethods;
  const jw_rpc_method_t *methods = jw_service_methods(&nmethods);
  const char *names[64];
  size_t nnames = 0;
  for (size_t i = 0; i < nmethods && nnames < 63; i++)
    names[nnames++] = methods[i].path;
  names[nnames++] = "/metrics";
  if (jw_metrics_new(names, nnames, 0, &s.metrics) != 0) {
    fprintf(stderr, "teleportd: out of memory\n");
    jw_cgroup_mgr_free(cgroups);
    jw_users_free(users);
    jw_tls_ctx_free(tls);
    close(lockfd);
    return 2;
  }

  uv_loop_init(&s.loop);
  jw_trim_init(&s.trim, &s.loop, 0, NULL);
  jw_supervisor_options_t sopts = {
      .max_running = (size_t)s.cfg.max_jobs,
      .max_running_per_owner = (size_t)s.cfg.max_jobs_per_client,
      .max_output_bytes = s.cfg.max_output_bytes,
      .max_finished_per_owner = (size_t)s.cfg.max_finished_per_client,
      .max_disk_per_owner = s.cfg.max_disk_per_client,
      .on_drop = on_drop,
      .on_job_start = on_job_start,
      .on_job_end = on_job_end,
      .data = &s,
      .data_dir = s.cfg.data_dir,
      .stop_grace_ms = s.cfg.stop_timeout_ms ? s.cfg.stop_timeout_ms : 1,
      .cgroups = cgroups,
      .durable = s.cfg.durable,
      .keep_env = s.cfg.keep_env,
      .on_record_error = on_record_error,
      .handover = handed.jobs,
      .nhandover = handed.njobs,
  };
  r = jw_supervisor_new(&s.loop, &sopts, &s.sup);
  if (r != 0) {
    fprintf(stderr, "teleportd: cannot use data directory %s: %s\n",
            s.cfg.data_dir, jw_strerror(r));
    rc = 2;
    goto out;
  }
  s.svc.sup = s.sup;
  s.svc.cgroups = cgroups;
  s.svc.default_limits = s.cfg.default_limits;
  s.svc.max_limits = s.cfg.max_limits;
  s.svc.allow_isolation = s.cfg.allow_isolation;
  s.svc.max_jobs = (size_t)s.cfg.max_jobs;
  s.svc.max_jobs_per_client = (size_t)s.cfg.max_jobs_per_client;
  s.svc.request_limits.max_args = (size_t)s.cfg.max_args;
  s.svc.request_limits.max_env = (size_t)s.cfg.max_env;
  s.svc.request_limits.max_request_strings = (size_t)s.cfg.max_request_strings;
  s.svc.users = users;
  s.svc.max_stop_timeout_ms = s.cfg.max_stop_timeout_ms;
  static const jw_rpc_http_get_t gets[] = {{"/metrics", get_metrics}};
  jw_rpc_server_options_t ropts = {
      .addr = s.cfg.addr,
      .tls = tls,
      .methods = methods,
      .nmethods = nmethods,
      .data = &s.svc,
      .on_event = on_event,
      .max_connections = s.cfg.max_connections,
      .max_concurrent_streams = (uint32_t)s.cfg.max_streams,
      .handshake_timeout_ms = s.cfg.handshake_timeout_ms,
      .max_message_bytes = (size_t)s.cfg.max_request_bytes,
      .request_timeout_ms = s.cfg.request_timeout_ms,
      .idle_timeout_ms = s.cfg.idle_timeout_ms,
      .max_connections_per_client = (uint32_t)s.cfg.max_connections_per_client,
      .http_gets = gets,
      .nhttp_gets = 1,
      .adopt_listen_fd = handed.listen_fd >= 0,
      .listen_fd = handed.listen_fd,
  };
  r = jw_rpc_server_start(&s.loop, &ropts, &s.srv);
  if (r != 0) {
    if (r == JW_EINVAL) {
      fprintf(stderr,
              "teleportd: invalid --addr \"%s\": want HOST:PORT, e.g. "
              "127.0.0.1:3000 or [::1]:3000\n",
              s.cfg.addr);
      rc = 2;
    } else {
      fprintf(stderr, "teleportd: cannot listen on %s: %s%s\n", s.cfg.addr,
              jw_strerror(r),
              r == -EADDRINUSE ? " (another process listens there: stop it, "
                                 "or give another --addr)"
                               : "");
    }
    goto out;
  }
  raise_nofile();
  char port[16];
  snprintf(port, sizeof(port), "%d", jw_rpc_server_port(s.srv));
  jw_log(JW_LOG_INFO, "event", handed.listen_fd >= 0 ? "reloaded" : "listening",
         "addr", s.cfg.addr, "port", port, "data_dir", s.cfg.data_dir,
         "running_jobs",
         handed.listen_fd >= 0 ? (snprintf(errbuf, sizeof(errbuf), "%zu",
                                           jw_supervisor_running(s.sup)),
                                  errbuf)
                               : NULL,
         NULL);
  jw_reload_state_free(&handed);

  uv_signal_init(&s.loop, &s.sigterm);
  uv_signal_init(&s.loop, &s.sigint);
  uv_signal_init(&s.loop, &s.sighup);
  s.sigterm.data = s.sigint.data = s.sighup.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  jw_reload_unblock_signals();

  uv_run(&s.loop, UV_RUN_DEFAULT);
  rc = 0;
  jw_log(JW_LOG_INFO, "event", "exit", NULL);
out:
  if (s.srv != NULL) {
    jw_rpc_server_close(s.srv, 0, NULL, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
  }
  if (s.sup != NULL) {
    /*
     * Stops what still runs; the memory goes once the loop is done. Durable
     * records and their logs stay for the next start.
     */
    jw_supervisor_close(s.sup, s.cfg.durable, NULL, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
  }
  jw_cgroup_mgr_free(cgroups);
  jw_users_free(users);
  jw_metrics_free(s.metrics);
  uv_walk(&s.loop, close_walk, NULL);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  uv_loop_close(&s.loop);
  jw_tls_ctx_free(tls);
  close(lockfd);
  return rc;
}
