/*
 * What the supervisor's files share: the job and the supervisor, and the
 * calls between supervisor.c (the API, start, stop, shutdown, close) and
 * retention.c (output caps, disk caps, the finished-job retention). Also
 * the test-only jw__supervisor_get_output (getoutput.c).
 */
#ifndef JW_WORKER_SUPERVISOR_INT_H
#define JW_WORKER_SUPERVISOR_INT_H

#include <sys/types.h>
#include <uv.h>

#include "jobtable_int.h"
#include "jobworker/supervisor.h"
#include "list.h"
#include "record.h"

/* A job's part of job control (control.c). */
struct jw__job_ctl {
  jw__list_t waits; /* pending jw_wait_req_t, oldest first */
  jw__list_t timed; /* in the supervisor's ctl.timed while its limit runs */
  uint64_t timeout_ms;
  uint64_t deadline;           /* uv_now() when the limit passes */
  jw_end_reason_t stop_reason; /* why a stop was asked for (first wins) */
  jw_end_reason_t end_reason;
  uint64_t signals; /* bit sig - 1: sent by jw_supervisor_signal */
};

/* The supervisor's part (control.c): the timer of run-time limits. */
struct jw__sup_ctl {
  uv_timer_t timer;
  int timer_open;
  jw__list_t timed; /* jobs with a limit pending, any order */
};

struct job {
  jw__jobent_t e; /* id, owner, place in the table */
  char *command;
  char **args;
  size_t nargs;
  jw_supervisor_t *sup;
  jw_process_t *proc; /* NULL once closed */
  jw_outlog_t *log;
  jw_proc_status_t status; /* the final status, once final */
  jw__list_t stops;        /* pending stop requests, oldest first */
  jw__list_t deferred;     /* in the next-turn queue; linked: queued */
  jw_cgroup_t *cg;         /* NULL without one, and once final */
  jw_limits_t limits;
  unsigned isolation;
  uid_t uid; /* the credentials it runs with */
  gid_t gid;
  jw_usage_t usage;        /* read at the end; cached while running */
  uint64_t usage_at;       /* uv_hrtime() of the cached read, 0: none */
  unsigned drops_reported; /* DROP_* bits already passed to on_drop */
  int removed; /* out of the table; freed once its process is closed */
  struct jw__job_ctl ctl; /* job control: control.c */
  /* What its record keeps beyond the status (durable.c). */
  char *working_dir; /* NULL: inherited */
  char **env;        /* only with keep_env; nenv entries */
  size_t nenv;
  char cg_name[JW__REC_MAX_CG_NAME + 1]; /* its cgroup's; "": none */
  uint64_t pid_start;                    /* jw__record_pid_start(pid) */
  uint64_t age_seq; /* the order of starts, kept across restarts */
  uint64_t fin_seq; /* the order jobs became final in; 0 until then */
  uint32_t rec_len; /* bytes of its last record in the journal; 0: none */
  jw__list_t stale; /* in sup->stale: its record lacks its pid */
};

#define DROP_CAP 1
#define DROP_WRITE 2
#define DROP_DISK 4

/* A cgroup whose removal is being retried. */
struct cg_retry {
  jw_cgroup_t *cg;
  int tries;
  jw__list_t node;
};

struct jw_supervisor_s {
  uv_loop_t *loop;
  char *data_dir;
  uint64_t grace_ms;
  size_t max_running;
  size_t max_running_per_owner;
  uint64_t max_output_bytes;
  size_t max_finished_per_owner;
  uint64_t max_disk_per_owner;
  void (*on_drop)(const char *id, const char *owner, int err, void *data);
  void *drop_data; /* the options' data, for every callback */
  void (*on_job_start)(const jw_job_info_t *info, void *data);
  void (*on_job_end)(const jw_job_info_t *info, void *data);
  /*
   * The jobs. The retention goes by the order in which they became final
   * rather than by ended_at_ns, which follows the wall clock (stepped by
   * NTP or by hand).
   */
  jw__jobtable_t table;
  /* A zero timer: stop callbacks of final jobs run "on the next turn". */
  uv_timer_t defer;
  jw__list_t defer_queue;
  size_t closing_procs; /* processes whose handles are still closing */
  jw_cgroup_mgr_t *cgroups;
  uv_timer_t cg_timer; /* retries removals; open while cg_timer_open */
  int cg_timer_open;
  jw__list_t retries;
  /* Removes the pooled cgroups a busy period left; open with cg_timer. */
  uv_timer_t pool_timer;
  uint64_t pool_taken_seen; /* the manager's pool_taken at the last tick */
  int shutting_down;        /* no more starts; every job is being stopped */
  int done_due; /* shutdown complete as of now: report from the loop */
  int done;     /* shutdown complete and reported */
  void (*done_cb)(jw_supervisor_t *sup, void *data);
  void *done_data;
  int closing; /* jw_supervisor_close was called */
  int handles_closing;
  int keep_logs;
  int handed_over; /* jw_supervisor_handover: its running jobs are gone */
  void (*close_cb)(jw_supervisor_t *sup, void *data);
  void *close_data;
  struct jw__sup_ctl ctl;
  /* Durable records (durable.c, restore.c). */
  int durable;
  int keep_env;
  int spawn_block; /* holds a jw__spawn_reserve, released when freed */
  void (*on_record_error)(const char *path, int err, const char *why,
                          void *data);
  uint64_t seq;                /* the last age_seq or fin_seq given */
  int jfd;                     /* the journal, open to append to; -1: none */
  uint64_t jsize;              /* bytes of whole entries in it */
  uint64_t jdead;              /* bytes of entries a later one replaced */
  int jdirty;                  /* appended to since the last flush */
  uint64_t compact_min;        /* rewritten once jdead passes it (and half) */
  jw__list_t stale;            /* jobs whose record is behind (their pid) */
  uv_timer_t flush_timer;      /* the next batched fsync; open while durable */
  uv_work_t flush_work;        /* the fsync in the thread pool */
  int flush_busy;              /* flush_work is queued */
  int sync_fd;                 /* what flush_work fsyncs (a dup), or -1 */
  char (*pend)[JW_ID_LEN + 1]; /* final jobs whose logs await a flush */
  size_t npend, pend_cap;
  char (*syncing)[JW_ID_LEN + 1]; /* the logs flush_work fsyncs */
  size_t nsyncing;
};

static inline struct job *job_of(jw__jobent_t *e) {
  return e != NULL ? jw__list_data(e, struct job, e) : NULL;
}

/* The job's owner ("" when started without one, and once removed). */
static inline const char *owner_name(const struct job *j) {
  return j->e.owner != NULL ? j->e.owner->name : "";
}

/* Fills info with the job's status now (jw_supervisor_status). */
void jw__job_fill_info(struct job *j, jw_job_info_t *info);

/* Answers the job's pending stops with err (0: its final status). */
void jw__job_fire_stops(struct job *j, int err);

/* The supervisor.c internals control.c builds on. */
int jw__supervisor_lookup(jw_supervisor_t *sup, const char *id,
                          const char *owner, struct job **out);
int jw__supervisor_defer(jw_supervisor_t *sup, struct job *j);

/*
 * control.c's hooks: a job started with spec (arms its run-time limit);
 * a job final (its end reason, from its status and usage); its info;
 * answers its waits with err; closes the timer (counted in
 * handles_closing, closed with close_cb).
 */
void jw__job_control_start(struct job *j, const jw_job_spec_t *spec);
/* Arms the job's run-time limit to pass in in_ms. */
void jw__job_control_arm(struct job *j, uint64_t in_ms);
/*
 * Arms what is left of an adopted job's limit (j->ctl.timeout_ms, from
 * its record), counted from its start on the wall clock.
 */
void jw__job_control_adopted(struct job *j);
void jw__job_control_end(struct job *j);
void jw__job_control_info(const struct job *j, jw_job_info_t *info);
void jw__job_fire_waits(struct job *j, int err);
void jw__supervisor_control_close(jw_supervisor_t *sup, uv_close_cb close_cb);

/*
 * The process options every job's process has, started or adopted: the
 * supervisor's callbacks with j as their data, and its cgroup. The rest
 * is zero.
 */
void jw__job_process_options(struct job *j, jw_process_options_t *po);

/* Frees a job that is out of the table and has no process. */
void jw__job_free(struct job *j);

/* The process's close callback: the job has no process any more. */
void jw__job_on_closed(jw_process_t *proc, void *data);

/* The process's exit callback: the job becomes final. */
void jw__job_on_exit(jw_process_t *proc, const jw_proc_status_t *st,
                     void *data);

/* The process's output callback: the caps, then the log. */
void jw__job_on_output(jw_process_t *proc, jw_stream_t stream, const char *buf,
                       size_t len, void *data);

/*
 * Removes a finished job: out of the table, its pending stops answered,
 * its log closed and unlinked; freed now or once its process is closed.
 */
void jw__supervisor_remove_job(jw_supervisor_t *sup, struct job *j);

/* Keeps at most max_finished_per_owner of o's finished jobs. */
void jw__supervisor_retain_finished(jw_supervisor_t *sup, jw__owner_t *o);

/* Removes a job's cgroup, now or (processes still leaving it) later. */
void jw__supervisor_release_cgroup(jw_supervisor_t *sup, jw_cgroup_t *cg);

/* One of the supervisor's handles or requests is closed (done). */
void jw__supervisor_handle_closed(jw_supervisor_t *sup);

/*
 * Durable records (durable.c). jw__job_save appends the job's record as
 * it is now to the journal and queues the journal's fsync for the next
 * flush (at most FLUSH_MS from now); with_log also fsyncs its log then,
 * when the log holds a byte. Returns 0 or -errno (also reported to
 * on_record_error). Does nothing without durable.
 */
int jw__job_save(struct job *j, int with_log);

/* Marks the job's record as behind: appended again at the next flush. */
void jw__job_stale(struct job *j);

/*
 * Rewrites the journal with the records of the jobs in the table only
 * (restore.c at start, durable.c once replaced entries take most of it)
 * and opens it to append to. Returns 0 or -errno.
 */
int jw__journal_rewrite(jw_supervisor_t *sup);

/* The same, for a job not in the table yet (its owner named here). */
int jw__job_save_as(struct job *j, const char *owner, int with_log);

/* Keeps what a record needs of the spec (working dir; env with keep_env). */
int jw__job_keep_spec(struct job *j, const jw_job_spec_t *spec);

/* Appends the job's removal to the journal (with durable). */
void jw__job_unsave(jw_supervisor_t *sup, struct job *j);

/* Opens the flush timer (with durable). */
void jw__durable_init(jw_supervisor_t *sup);

/*
 * Begins closing the flush timer and waits for a flush in flight; each
 * ends with jw__supervisor_handle_closed. Returns how many there are.
 */
int jw__durable_close(jw_supervisor_t *sup);

/* fsyncs what is pending now, on the calling thread (the last close). */
void jw__durable_flush_now(jw_supervisor_t *sup);

/*
 * Frees what durable.c holds at the supervisor's end; without keep_logs
 * the journal goes too (the logs went with their jobs).
 */
void jw__durable_end(jw_supervisor_t *sup);

/*
 * Restores the jobs whose records are in the data directory (restore.c):
 * finished ones as they were, running ones adopted from opts->handover
 * (jw__job_adopt) or killed and made final with JW_END_SERVER_CRASH.
 * A record that cannot be read is reported to on_record_error and left
 * where it is. Returns 0 or -ENOMEM.
 */
int jw__supervisor_restore(jw_supervisor_t *sup,
                           const jw_supervisor_options_t *opts);

/*
 * Adopts a job that was running in the process that exec'd this one
 * (handover.c): j is in the table as running, with its record's fields,
 * its log reopened for appending and its cgroup (j->cg) opened when it had
 * one; h is its handover entry (h->id is j's id). On success j->proc is
 * the adopted process and the job goes on as if started here. Returns 0,
 * or a negative code: the restore then ends the job as a crashed one.
 */
int jw__job_adopt(jw_supervisor_t *sup, struct job *j,
                  const jw_job_handover_t *h);

/*
 * For tests: writes all output the job has so far, stdout records to
 * out_fd and stderr records to err_fd (the same fd is fine), blocking on
 * those fds. Returns the bytes written, JW_ENOTFOUND, JW_EOWNER or
 * -errno.
 */
ssize_t jw__supervisor_get_output(jw_supervisor_t *sup, const char *id,
                                  const char *owner, int out_fd, int err_fd);

#endif /* JW_WORKER_SUPERVISOR_INT_H */
