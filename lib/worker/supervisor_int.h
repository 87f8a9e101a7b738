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
  int shutting_down; /* no more starts; every job is being stopped */
  int done_due;      /* shutdown complete as of now: report from the loop */
  int done;          /* shutdown complete and reported */
  void (*done_cb)(jw_supervisor_t *sup, void *data);
  void *done_data;
  int closing; /* jw_supervisor_close was called */
  int handles_closing;
  int keep_logs;
  int handed_over; /* jw_supervisor_handover: its running jobs are gone */
  void (*close_cb)(jw_supervisor_t *sup, void *data);
  void *close_data;
};

static inline struct job *job_of(jw__jobent_t *e) {
  return e != NULL ? jw__list_data(e, struct job, e) : NULL;
}

/* The job's owner ("" when started without one, and once removed). */
static inline const char *owner_name(const struct job *j) {
  return j->e.owner != NULL ? j->e.owner->name : "";
}

/* Answers the job's pending stops with err (0: its final status). */
void jw__job_fire_stops(struct job *j, int err);

/* Frees a job that is out of the table and has no process. */
void jw__job_free(struct job *j);

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

/*
 * For tests: writes all output the job has so far, stdout records to
 * out_fd and stderr records to err_fd (the same fd is fine), blocking on
 * those fds. Returns the bytes written, JW_ENOTFOUND, JW_EOWNER or
 * -errno.
 */
ssize_t jw__supervisor_get_output(jw_supervisor_t *sup, const char *id,
                                  const char *owner, int out_fd, int err_fd);

#endif /* JW_WORKER_SUPERVISOR_INT_H */
