/*
 * teleportd's Prometheus metrics (docs/operations.md#metrics): counters
 * fed by the rpc server's events and the supervisor's job starts and
 * ends, rendered in the text exposition format 0.0.4 with the live
 * figures (running jobs, process metrics) read at scrape time.
 *
 * Every label has a bounded set of values: methods are the ones passed
 * to jw_metrics_new (anything else counts as "other"), codes the 17 gRPC
 * statuses, reasons fixed words, owners at most max_owners distinct CNs.
 */
#ifndef TELEPORTD_METRICS_H
#define TELEPORTD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobworker/server.h"
#include "jobworker/supervisor.h"

/* What a 0 max_owners stands for. */
#define JW_METRICS_DEFAULT_MAX_OWNERS 10000

typedef struct jw_metrics_s jw_metrics_t;

/* The figures read when a scrape comes (jw_metrics_read_process). */
typedef struct {
  uint64_t jobs_running;
  /* Output of the jobs still running (finished ones are counted at their
   * end by jw_metrics_job_ended). */
  uint64_t running_output_bytes;
  uint64_t running_output_dropped;
  bool have_process; /* the process_* figures below were read */
  double cpu_seconds;
  uint64_t resident_bytes;
  uint64_t virtual_bytes;
  uint64_t open_fds;
  uint64_t max_fds;
  double start_time_seconds;
} jw_metrics_live_t;

/*
 * Creates the counters. methods (copied) are the RPC paths counted by
 * name; max_owners caps the distinct owners of
 * teleportd_jobs_started_total (0: the default): past it the jobs of an
 * owner not yet tracked count under owner="" (no client has an empty CN).
 * Returns 0 or -ENOMEM.
 */
int jw_metrics_new(const char *const *methods, size_t nmethods,
                   size_t max_owners, jw_metrics_t **out);

void jw_metrics_free(jw_metrics_t *m);

/* Counts an rpc server event (connections, handshake failures, RPCs). */
void jw_metrics_event(jw_metrics_t *m, const jw_rpc_event_t *ev);

/* Counts a job start for owner. */
void jw_metrics_job_started(jw_metrics_t *m, const char *owner);

/* Counts a job's end: its end reason and its final output figures. */
void jw_metrics_job_ended(jw_metrics_t *m, const jw_job_info_t *info);

/*
 * The end reason of a final job, one of "exited" (exit code 0), "failed"
 * (another exit code), "signaled", "stopped", "oom" (its cgroup's OOM
 * killer ended it).
 */
const char *jw_metrics_end_reason(const jw_job_info_t *info);

/* Reads the process_* figures of this process from /proc/self. */
void jw_metrics_read_process(jw_metrics_live_t *live);

/*
 * Writes the exposition to out (called with pieces of text; a non-zero
 * return stops the rendering and is returned). Returns 0 or that code.
 */
int jw_metrics_render(const jw_metrics_t *m, const jw_metrics_live_t *live,
                      int (*out)(const char *s, size_t n, void *ctx),
                      void *ctx);

/* The content-type of the exposition. */
#define JW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* TELEPORTD_METRICS_H */
