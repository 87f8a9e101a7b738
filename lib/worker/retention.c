/*
 * What a job may keep: its output up to max_output_bytes, its owner's logs
 * up to max_disk_per_owner (the owner's finished jobs go first, the one
 * that finished first first) and max_finished_per_owner finished jobs.
 */
#include <errno.h>
#include <stdlib.h>

#include "jobtable_int.h"
#include "supervisor_int.h"

/* Tells the embedder, once per reason, that a job drops output. */
static void report_drop(struct job *j, int err) {
  unsigned bit = err == JW_ELIMIT ? DROP_CAP
                 : err == -EDQUOT ? DROP_DISK
                                  : DROP_WRITE;
  if (!(j->drops_reported & bit)) {
    j->drops_reported |= bit;
    if (j->sup->on_drop != NULL)
      j->sup->on_drop(j->e.id, owner_name(j), err, j->sup->drop_data);
  }
}

/*
 * How much of len bytes of output the job may write under its owner's
 * disk cap: room is made by removing the owner's finished jobs, the one
 * that finished first first; what still does not fit is not written.
 */
static size_t disk_room(jw_supervisor_t *sup, struct job *j, size_t len) {
  uint64_t max = sup->max_disk_per_owner;
  uint64_t need = (uint64_t)len + JW_OUTLOG_RECORD_HDR;
  jw__owner_t *o = j->e.owner;
  if (max == 0 || o == NULL)
    return len;
  while (o->disk + need > max) {
    jw__jobent_t *victim = jw__jobtable_first_finished(o, &j->e);
    if (victim == NULL)
      break;
    jw__supervisor_remove_job(sup, job_of(victim));
  }
  if (o->disk + need <= max)
    return len;
  if (o->disk + JW_OUTLOG_RECORD_HDR >= max)
    return 0;
  return (size_t)(max - o->disk - JW_OUTLOG_RECORD_HDR);
}

void jw__job_on_output(jw_process_t *proc, jw_stream_t stream, const char *buf,
                       size_t len, void *data) {
  struct job *j = data;
  jw_supervisor_t *sup = j->sup;
  (void)proc;
  /*
   * What is dropped (past a cap, or a failed write) is counted in
   * output_dropped; the job goes on, and its embedder hears of it once.
   */
  size_t want = len, keep;
  int err = 0;
  /* Past its own cap nothing is written, so nothing needs room. */
  if (sup->max_output_bytes > 0) {
    uint64_t b = jw_outlog_bytes(j->log);
    uint64_t left = b < sup->max_output_bytes ? sup->max_output_bytes - b : 0;
    if (left < want)
      want = (size_t)left;
  }
  keep = want > 0 ? disk_room(sup, j, want) : 0;
  if (keep > 0)
    err = jw_outlog_append(j->log, stream, buf, keep);
  if (err == JW_ECLOSED)
    return;
  jw__jobtable_set_disk(&j->e, jw_outlog_disk_bytes(j->log));
  if (err < 0)
    report_drop(j, err);
  if (want < len) {
    jw_outlog_drop(j->log, len - want);
    report_drop(j, JW_ELIMIT);
  }
  if (keep < want) {
    jw_outlog_drop(j->log, want - keep);
    report_drop(j, -EDQUOT);
  }
}

void jw__job_free(struct job *j) {
  size_t i;
  free(j->command);
  if (j->args != NULL)
    for (i = 0; i < j->nargs; i++)
      free(j->args[i]);
  free(j->args);
  if (j->env != NULL)
    for (i = 0; i < j->nenv; i++)
      free(j->env[i]);
  free(j->env);
  free(j->working_dir);
  jw__list_remove(&j->stale);
  free(j);
}

/*
 * Removes a finished job: out of the table, its pending stops answered,
 * its log file unlinked (a subscriber still reading keeps the data until
 * it closes). The memory goes now, or once the job's process handles are
 * closed.
 */
void jw__supervisor_remove_job(jw_supervisor_t *sup, struct job *j) {
  jw__list_remove(&j->deferred);
  jw__job_fire_stops(j, 0);
  /* Its file's name goes now; its space once the last reader closes. */
  jw__jobtable_remove(&sup->table, &j->e);
  jw_outlog_close(j->log, 1);
  jw__job_unsave(sup, j);
  j->log = NULL;
  j->removed = 1;
  if (j->proc == NULL)
    jw__job_free(j);
}

/*
 * Keeps at most max_finished_per_owner finished jobs of owner o: removes
 * those that finished first (a job that just finished is never the one).
 */
void jw__supervisor_retain_finished(jw_supervisor_t *sup, jw__owner_t *o) {
  if (sup->max_finished_per_owner == 0)
    return;
  while (o->nfinished > sup->max_finished_per_owner) {
    /* o goes with its last job: never here, as n > max >= 1 stay. */
    jw__supervisor_remove_job(sup,
                              job_of(jw__jobtable_first_finished(o, NULL)));
  }
}
