/*
 * jw_supervisor: the table of jobs. The design document's Supervisor API.
 *
 * Lifetime (the rule of every object of libjobworker that holds loop
 * handles, as libuv's uv_close): jw_supervisor_new, then one
 * jw_supervisor_close, whose callback runs from the loop once nothing of
 * the supervisor is left on it; the memory goes when the callback returns.
 * Run the loop until then. jw_supervisor_shutdown before it is optional:
 * it stops the jobs but keeps the records (status, list, output) for as
 * long as the embedder still serves them. Readers (subscribers) and stop
 * requests are the caller's: a reader keeps reading to the end after its
 * job or the supervisor is gone, until jw_outlog_reader_close. Breaking a
 * precondition that would corrupt memory (closing twice) aborts with a
 * message naming the call.
 *
 * Each job has a random 128-bit id (32 lowercase hex digits), an owner (a
 * string the caller passes; the server uses the client certificate CN), a
 * process and an output log under the data directory. Every call that
 * takes an owner checks it: a job of another owner gives JW_EOWNER. Pass
 * owner NULL to skip the check (embedding programs, tests).
 */
#ifndef JOBWORKER_SUPERVISOR_H
#define JOBWORKER_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "jobworker/cgroup.h"
#include "jobworker/error.h"
#include "jobworker/outlog.h"
#include "jobworker/process.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JW_ID_LEN 32
/* What a 0 stop_grace_ms stands for (teleportd's --stop-timeout default). */
#define JW_SUPERVISOR_DEFAULT_STOP_GRACE_MS 10000

typedef struct jw_supervisor_s jw_supervisor_t;

/* Why a job ended: recorded with it (JW_END_NONE while it runs). */
typedef enum {
  JW_END_NONE = 0,
  JW_END_EXITED,          /* the command exited by itself */
  JW_END_SIGNALED,        /* a signal nobody asked for ended it */
  JW_END_STOPPED,         /* a client stopped it (jw_supervisor_stop) */
  JW_END_TIMED_OUT,       /* its run time limit passed */
  JW_END_OOM_KILLED,      /* the kernel's OOM killer ended it */
  JW_END_SERVER_SHUTDOWN, /* stopped by jw_supervisor_shutdown */
  JW_END_SERVER_CRASH     /* found running in its record at start */
} jw_end_reason_t;

/*
 * The name of a reason, as teleport's status --json spells it ("exited",
 * "timed_out", "server_crash", ...); "" for NONE and unknown values. The
 * values are the wire's EndReason numbers (proto/jobworker.proto).
 */
const char *jw_end_reason_name(jw_end_reason_t r);

/*
 * A running job handed from one process to the next over exec(2) (a
 * reload): the new supervisor adopts it instead of ending it. The fds are
 * inherited (not close-on-exec) and become the new supervisor's.
 */
typedef struct {
  char id[JW_ID_LEN + 1];
  /*
   * Why a stop was asked for; JW_END_NONE: none (then proc.stop_requested
   * is false, and it is true otherwise).
   */
  jw_end_reason_t stop_reason;
  /* The process, as jw_process_handover gave it (its start time aside). */
  jw_process_handover_t proc;
} jw_job_handover_t;
typedef struct jw_stop_req_s jw_stop_req_t;
typedef struct jw_job_info_s jw_job_info_t;

typedef struct {
  const char *data_dir;   /* required; created if missing (0700) */
  uint64_t stop_grace_ms; /* SIGTERM -> SIGKILL; 0: the default above */
  size_t max_running;     /* jobs not yet final; 0: no limit (JW_ELIMIT) */
  /* Jobs not yet final per owner; 0: no limit (JW_ELIMIT). */
  size_t max_running_per_owner;
  /*
   * Output bytes kept per job; past it further output is dropped (the job
   * keeps running; jw_job_info_t.output_dropped counts it). 0: no cap.
   */
  uint64_t max_output_bytes;
  /*
   * Finished jobs kept per owner: when one more finishes, the one that
   * finished first (in the order jobs became final, not by the wall
   * clock) is removed with its log. A subscriber still reading it reads
   * to the end; a pending stop gets its callback first. 0: all.
   */
  size_t max_finished_per_owner;
  /*
   * Bytes one owner's logs may take on disk (payloads and record
   * headers). When a write would pass it, the owner's finished jobs are
   * removed, the one that finished first first, as by the retention;
   * when none is left the output that does not fit is dropped (counted
   * in output_dropped). A log a subscriber still reads counts no more
   * once its job is removed. 0: no cap.
   */
  uint64_t max_disk_per_owner;
  /*
   * Called the first time a job drops output for a reason: err is
   * JW_ELIMIT (max_output_bytes), -EDQUOT (max_disk_per_owner) or the
   * write error (-ENOSPC, -EIO, ...). May be NULL. data is passed through.
   */
  void (*on_drop)(const char *id, const char *owner, int err, void *data);
  /*
   * Called once a job started (from jw_supervisor_start, before it
   * returns) and once it is final (its output all in its log, its usage
   * read; before its stop callbacks), with its status; for audit logs and
   * metrics. Either may be NULL. They must not close the supervisor.
   */
  void (*on_job_start)(const jw_job_info_t *info, void *data);
  void (*on_job_end)(const jw_job_info_t *info, void *data);
  void *data;
  /*
   * Where jobs get their cgroups (NULL, or a manager without JW_CG_KILL:
   * jobs run without one, as plain process groups, and limits are
   * refused). Owned by the caller; free it after the supervisor's close
   * callback.
   */
  jw_cgroup_mgr_t *cgroups;
  /*
   * Durable records: every job's record (jw_job_info_t and its working
   * directory) is kept in data_dir beside its log, written before
   * jw_supervisor_start returns and again when the job is final, and
   * jw_supervisor_new restores the jobs it finds there: finished ones as
   * they were, running ones (the previous process ended while they ran)
   * killed through their cgroup and made final with JW_END_SERVER_CRASH,
   * unless they are in handover. Off: jobs live in memory only and their
   * logs are removed at close.
   */
  bool durable;
  bool keep_env; /* also write env values into records (they carry secrets) */
  /*
   * Called when a record cannot be written (err: -ENOSPC, ...) or, at
   * jw_supervisor_new, read (err: -EBADMSG for a torn or corrupt one, which
   * is then left where it is and its job not restored); path names the
   * file, why says what was wrong. May be NULL. data is the options' data.
   */
  void (*on_record_error)(const char *path, int err, const char *why,
                          void *data);
  const jw_job_handover_t *handover; /* running jobs to adopt; may be NULL */
  size_t nhandover;
} jw_supervisor_options_t;

typedef struct {
  const char *command;
  const char *const *args;
  size_t nargs;
  const char *const *env;
  size_t nenv;
  const char *working_dir; /* NULL or "": inherit */
  jw_limits_t limits;      /* all 0: none */
  unsigned isolation;      /* JW_ISOLATE_* */
  jw_credentials_t creds;  /* the Unix user the job runs as */
  /*
   * The longest the job may run, in ms: then it is stopped as by
   * jw_supervisor_stop and ends with JW_END_TIMED_OUT. 0: no limit.
   */
  uint64_t timeout_ms;
} jw_job_spec_t;

/*
 * A job's status. The pointers point into the supervisor and stay valid
 * until the job is removed or the supervisor freed; copy what you keep.
 */
struct jw_job_info_s {
  const char *id;
  const char *owner;
  const char *command;
  const char *const *args;
  size_t nargs;
  jw_proc_status_t proc;
  uint64_t output_bytes;
  uint64_t output_dropped;
  jw_limits_t limits; /* as started; 0: no limit */
  unsigned isolation;
  uid_t uid; /* the job's user and group: the spec's, or the caller's */
  gid_t gid;
  /*
   * From the job's cgroup: live while it runs, read once at its end
   * (before the cgroup is removed) after. Zero without a cgroup.
   */
  jw_usage_t usage;
  jw_end_reason_t end_reason; /* JW_END_NONE until final */
  bool stopping;       /* SIGTERM sent (a stop or the timeout), not final */
  uint64_t output_cap; /* max_output_bytes; 0: none */
  uint64_t timeout_ms; /* the spec's; 0: none */
};

/*
 * Called once the job is final, with its final status; err is 0, or
 * JW_ECANCELED when the supervisor was closed first.
 */
typedef void (*jw_stop_cb)(jw_stop_req_t *req, int err,
                           const jw_job_info_t *info);

/*
 * A pending stop, owned by the caller (libuv-style request): it must stay
 * valid until its callback runs or jw_supervisor_stop_cancel is called.
 */
struct jw_stop_req_s {
  void *data; /* the caller's */
  /*
   * Private, the supervisor's while the request is pending. Plain
   * pointers, as libuv's reserved fields, so that this header exposes no
   * internal type and its layout no internal header: link_ is the
   * supervisor's list node.
   */
  jw_stop_cb cb_;
  void *job_;
  void *link_[2];
};

/*
 * Creates a supervisor on loop (it holds a timer on it from now on: end it
 * with jw_supervisor_close). Returns 0 or -errno.
 *
 * The first supervisor of the process also reserves 12 descriptors (of
 * /dev/null, close-on-exec) for its spawns, and the last one closed
 * closes them: a job's child keeps only those and the ones below them,
 * rather than a copy of the whole table. Create it early, while the
 * table is small.
 */
int jw_supervisor_new(uv_loop_t *loop, const jw_supervisor_options_t *opts,
                      jw_supervisor_t **out);

/*
 * Starts a job for owner. On success writes the id (JW_ID_LEN chars plus
 * NUL) into id_out and returns 0. Returns JW_EINVAL for a bad spec (empty
 * command, env entry without '=', a negative limit), the start errno as a
 * negative code (-ENOENT, -EACCES, -EPERM for namespaces without the
 * privilege, ...) when the command cannot be started; nothing is kept on
 * failure. JW_EUNSUPPORTED when a limit needs a cgroup controller the
 * host does not offer or the job's cgroup cannot be made, JW_ELIMIT when
 * max_running jobs, or max_running_per_owner jobs of owner, are running
 * (jw_supervisor_running_owner tells which), JW_ECLOSED once shutdown
 * or close began.
 *
 * With a cgroup manager every job runs in a cgroup of its own (limits or
 * not), named by a random token unrelated to its id ("cg-" and 32 hex
 * digits); the cgroup is removed once the job is final.
 */
int jw_supervisor_start(jw_supervisor_t *sup, const char *owner,
                        const jw_job_spec_t *spec, char id_out[JW_ID_LEN + 1]);

/*
 * Fills info with the job's current status. Returns 0, JW_ENOTFOUND or
 * JW_EOWNER.
 */
int jw_supervisor_status(jw_supervisor_t *sup, const char *id,
                         const char *owner, jw_job_info_t *info);

/*
 * Stops the job (SIGTERM to its group, SIGKILL after the grace period) and
 * calls req's callback once it is final; for a job that is already final
 * the callback runs from the loop on the next turn. Returns 0, JW_EINVAL,
 * JW_ENOTFOUND or JW_EOWNER (and then the callback is never called);
 * JW_ECLOSED once shutdown has completed (every job is final then: use
 * status).
 */
int jw_supervisor_stop(jw_supervisor_t *sup, jw_stop_req_t *req, const char *id,
                       const char *owner, jw_stop_cb cb);

/* Forgets a pending stop request; its callback will not run. */
void jw_supervisor_stop_cancel(jw_stop_req_t *req);

/*
 * jw_supervisor_stop with a grace period of its own: SIGKILL grace_ms
 * after SIGTERM (0: the supervisor's stop_grace_ms). A stop already under
 * way is hastened to the earlier SIGKILL, never delayed. Same returns.
 */
int jw_supervisor_stop_grace(jw_supervisor_t *sup, jw_stop_req_t *req,
                             const char *id, const char *owner,
                             uint64_t grace_ms, jw_stop_cb cb);

typedef struct jw_wait_req_s jw_wait_req_t;

/*
 * Called once the job is final, with its final status (err 0); with
 * JW_ENOTFOUND when the job was removed first (jw_supervisor_remove, the
 * retention, a disk cap), JW_ECANCELED when the supervisor was closed.
 */
typedef void (*jw_wait_cb)(jw_wait_req_t *req, int err,
                           const jw_job_info_t *info);

/* A pending wait, owned by the caller, as jw_stop_req_t. */
struct jw_wait_req_s {
  void *data; /* the caller's */
  jw_wait_cb cb_;
  void *job_;
  void *link_[2];
};

/*
 * Calls req's callback once the job is final, without stopping it; for a
 * job that is already final from the loop on the next turn. Returns 0,
 * JW_EINVAL, JW_ENOTFOUND or JW_EOWNER (the callback is then never
 * called), JW_ECLOSED once shutdown has completed.
 */
int jw_supervisor_wait(jw_supervisor_t *sup, jw_wait_req_t *req, const char *id,
                       const char *owner, jw_wait_cb cb);

/* Forgets a pending wait; its callback will not run. */
void jw_supervisor_wait_cancel(jw_wait_req_t *req);

/*
 * Sends sig (1..64) to the job's process group. A job that a signal sent
 * this way ends has JW_END_STOPPED. Returns 0, JW_EINVAL (sig out of
 * range), JW_ENOTFOUND, JW_EOWNER, JW_ECLOSED when the job is final (or
 * its main process has ended and its output is being drained), or -errno.
 */
int jw_supervisor_signal(jw_supervisor_t *sup, const char *id,
                         const char *owner, int sig);

/*
 * Removes a finished job: its record and its log go (readers open on the
 * log read what they have; the service ends its streams with NOT_FOUND),
 * its pending waits get JW_ENOTFOUND. Returns 0, JW_EINVAL, JW_ENOTFOUND,
 * JW_EOWNER, or -EBUSY while the job is not final.
 */
int jw_supervisor_remove(jw_supervisor_t *sup, const char *id,
                         const char *owner);

/*
 * Calls fn for each of owner's jobs (every job when owner is NULL), oldest
 * first. Returns the number of jobs visited.
 */
size_t jw_supervisor_list(jw_supervisor_t *sup, const char *owner,
                          void (*fn)(const jw_job_info_t *info, void *data),
                          void *data);

/*
 * Subscribes to a job's output (WatchOutput): returns a reader of the
 * job's log (jw_outlog_read, jw_outlog_reader_dropped, and
 * jw_outlog_reader_close to unsubscribe, safe at any time, also from
 * notify_cb). It replays everything written so far, then new output, then
 * the end (a read of 0) once the job is final; notify_cb says when a read
 * that returned JW_EAGAIN can go on. The reader is the caller's: it keeps
 * reading to the end after the job is removed or the supervisor closed.
 * Returns 0, JW_EINVAL, JW_ENOTFOUND, JW_EOWNER or -errno.
 */
int jw_supervisor_subscribe(jw_supervisor_t *sup, const char *id,
                            const char *owner, jw_outlog_notify_cb notify_cb,
                            void *data, jw_outlog_reader_t **out);

/*
 * jw_supervisor_subscribe from byte offset of the job's output on (see
 * jw_outlog_reader_open_at). Same returns.
 */
int jw_supervisor_subscribe_at(jw_supervisor_t *sup, const char *id,
                               const char *owner, uint64_t offset,
                               jw_outlog_notify_cb notify_cb, void *data,
                               jw_outlog_reader_t **out);

/* Number of jobs not yet final. */
size_t jw_supervisor_running(const jw_supervisor_t *sup);

/* Number of owner's jobs not yet final (all jobs' for owner NULL). */
size_t jw_supervisor_running_owner(const jw_supervisor_t *sup,
                                   const char *owner);

/*
 * Shuts down: stops every running job (SIGTERM, grace, SIGKILL) and waits
 * for them to be final and for their handles to close; subscribers are
 * told of the end (they read to it). done_cb runs from the loop then. The
 * records stay: status, list and subscribe go on working until
 * jw_supervisor_close. New starts fail with JW_ECLOSED. Returns 0,
 * JW_EINVAL, or JW_ECLOSED when shutdown or close had begun (done_cb is
 * then never called).
 */
int jw_supervisor_shutdown(jw_supervisor_t *sup,
                           void (*done_cb)(jw_supervisor_t *sup, void *data),
                           void *data);

/*
 * Hands every running job over to the next process of this program, for
 * a reload (execve(2) with the same data directory): fills *out with one
 * malloc'd entry per running job (*n of them; free(*out) when done) whose
 * descriptors are new, not close-on-exec, and the caller's; stops
 * watching those jobs, so that nothing here reads their output, reaps or
 * kills them; and writes every job's record and log to disk (fsync)
 * before it returns, so that the next process finds them. Pass the
 * entries as jw_supervisor_options_t.handover to the next supervisor.
 * Afterwards sup only serves to be closed (jw_supervisor_close, which then
 * kills nothing and keeps every log) or left behind by execve(2); Start
 * is refused with JW_ECLOSED. Returns 0, JW_EINVAL, JW_ECLOSED (shut down
 * or handed over already), -ENOMEM or -errno (then nothing was handed
 * over and every job still runs here).
 */
int jw_supervisor_handover(jw_supervisor_t *sup, jw_job_handover_t **out,
                           size_t *n);

/*
 * Ends the supervisor: shuts down first if that has not begun (without a
 * done_cb of its own; one given to jw_supervisor_shutdown still runs
 * first), then closes its handles. close_cb, which may be NULL, runs from
 * the loop when nothing of the supervisor is left on it; the records can
 * still be read inside it. When it returns the supervisor is freed: the
 * jobs' log files are removed unless keep_logs (readers still open keep
 * reading to the end), and pending stop requests got their callback with
 * JW_ECANCELED. Safe from any of the supervisor's callbacks. A NULL sup
 * is ignored; a second close of the same supervisor aborts with a message.
 */
void jw_supervisor_close(jw_supervisor_t *sup, int keep_logs,
                         void (*close_cb)(jw_supervisor_t *sup, void *data),
                         void *data);

/*
 * Whether name is the file name the supervisor gives a job's log in its
 * data directory (the id, JW_ID_LEN lowercase hex digits, and ".log"):
 * what a server may sweep from the directory after a crash.
 */
int jw_supervisor_is_log_name(const char *name);

/*
 * The file in the data directory that holds the jobs' durable records (a
 * journal; its rewrite goes to this name and ".tmp" first).
 */
#define JW_SUPERVISOR_JOURNAL "jobs.journal"

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_SUPERVISOR_H */
