/*
 * Durable records: a job's record written at its start and when it is
 * final (record.c has the format), and the batched fsync that makes the
 * writes survive a power loss.
 *
 * A write is a write(2) and a rename(2) on the loop: into the page cache,
 * cheap, and done before jw_supervisor_start returns, so an answered Start
 * survives a crash of teleportd. Surviving a crash of the machine takes an
 * fsync of the file and of the directory, which waits for the disk: that
 * is done in the thread pool, for every record written since the last
 * flush together, at most FLUSH_MS after the first of them. A power loss
 * loses at most the records of that last stretch (docs/operations.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervisor_int.h"

#define FLUSH_MS 100

static void report(jw_supervisor_t *sup, const char *id, int err,
                   const char *why) {
  char *path;
  if (sup->on_record_error == NULL)
    return;
  path = jw__record_path(sup->data_dir, id);
  sup->on_record_error(path != NULL ? path : id, err, why, sup->drop_data);
  free(path);
}

int jw__job_keep_spec(struct job *j, const jw_job_spec_t *spec) {
  size_t i;
  if (spec->working_dir != NULL && spec->working_dir[0] != '\0' &&
      (j->working_dir = strdup(spec->working_dir)) == NULL)
    return -ENOMEM;
  if (!j->sup->keep_env || spec->nenv == 0)
    return 0;
  if ((j->env = calloc(spec->nenv, sizeof(char *))) == NULL)
    return -ENOMEM;
  for (i = 0; i < spec->nenv; i++) {
    if ((j->env[i] = strdup(spec->env[i])) == NULL)
      return -ENOMEM;
    j->nenv = i + 1;
  }
  return 0;
}

jw_end_reason_t jw__job_end_reason(const struct job *j,
                                   const jw_proc_status_t *st) {
  if (st->state == JW_PROC_STOPPED)
    return j->stop_reason != JW_END_NONE ? j->stop_reason : JW_END_STOPPED;
  /* A kill nobody asked for, in a cgroup whose OOM count went up. */
  if (st->state == JW_PROC_SIGNALED)
    return j->usage.oom_killed ? JW_END_OOM_KILLED : JW_END_SIGNALED;
  return JW_END_EXITED;
}

static void on_flush_timer(uv_timer_t *t);

static void flush_work(uv_work_t *w) {
  jw_supervisor_t *sup = w->data;
  /* Only the thread touches syncing; the loop waits for after_work. */
  (void)jw__record_sync(sup->data_dir, sup->syncing, sup->nsyncing);
}

static void flush_done(uv_work_t *w, int status) {
  jw_supervisor_t *sup = w->data;
  (void)status;
  sup->flush_busy = 0;
  free(sup->syncing);
  sup->syncing = NULL;
  sup->nsyncing = 0;
  /* The close counted this flush (it was in flight then). */
  if (sup->handles_closing > 0) {
    jw__supervisor_handle_closed(sup);
    return;
  }
  /* Written while this flush ran: the next one is due. */
  if (sup->npend > 0)
    uv_timer_start(&sup->flush_timer, on_flush_timer, FLUSH_MS, 0);
}

/* Hands what is pending to the thread pool, unless a flush runs. */
static void on_flush_timer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  if (sup->flush_busy || sup->npend == 0)
    return;
  sup->syncing = sup->pend;
  sup->nsyncing = sup->npend;
  sup->pend = NULL;
  sup->npend = sup->pend_cap = 0;
  sup->flush_work.data = sup;
  if (uv_queue_work(sup->loop, &sup->flush_work, flush_work, flush_done) < 0) {
    /* Cannot fail on a live loop; if it did, sync here rather than not. */
    (void)jw__record_sync(sup->data_dir, sup->syncing, sup->nsyncing);
    free(sup->syncing);
    sup->syncing = NULL;
    sup->nsyncing = 0;
    return;
  }
  sup->flush_busy = 1;
}

static void queue_sync(jw_supervisor_t *sup, const char *id, int with_log) {
  size_t i;
  for (i = 0; i < sup->npend; i++) {
    if (memcmp(sup->pend[i].id, id, JW_ID_LEN) == 0) {
      sup->pend[i].with_log |= with_log;
      return;
    }
  }
  if (sup->npend == sup->pend_cap) {
    size_t cap = sup->pend_cap ? sup->pend_cap * 2 : 16;
    jw__record_sync_t *p = realloc(sup->pend, cap * sizeof(*p));
    if (p == NULL) {
      /* Not batched, then: synced now, on the loop. */
      jw__record_sync_t one;
      memcpy(one.id, id, JW_ID_LEN + 1);
      one.with_log = with_log;
      (void)jw__record_sync(sup->data_dir, &one, 1);
      return;
    }
    sup->pend = p;
    sup->pend_cap = cap;
  }
  memcpy(sup->pend[sup->npend].id, id, JW_ID_LEN + 1);
  sup->pend[sup->npend].with_log = with_log;
  sup->npend++;
  if (!sup->flush_busy && !uv_is_active((uv_handle_t *)&sup->flush_timer) &&
      !uv_is_closing((uv_handle_t *)&sup->flush_timer))
    uv_timer_start(&sup->flush_timer, on_flush_timer, FLUSH_MS, 0);
}

int jw__job_save_as(struct job *j, const char *owner, int with_log) {
  jw_supervisor_t *sup = j->sup;
  jw__record_t r;
  int err;

  if (!sup->durable)
    return 0;
  memset(&r, 0, sizeof(r));
  memcpy(r.id, j->e.id, JW_ID_LEN + 1);
  r.owner = owner;
  r.command = j->command;
  r.args = (const char *const *)j->args;
  r.nargs = j->nargs;
  r.working_dir = j->working_dir != NULL ? j->working_dir : "";
  r.env = (const char *const *)j->env;
  r.nenv = j->nenv;
  r.limits = j->limits;
  r.isolation = j->isolation;
  r.uid = (uint32_t)j->uid;
  r.gid = (uint32_t)j->gid;
  r.proc = j->status;
  if (!j->e.final)
    r.proc.state = JW_PROC_RUNNING;
  r.output_bytes = j->log != NULL ? jw_outlog_bytes(j->log) : 0;
  r.output_dropped = j->log != NULL ? jw_outlog_dropped(j->log) : 0;
  r.usage = j->usage;
  r.end_reason = j->e.final ? j->end_reason : JW_END_NONE;
  r.cg_name = j->cg_name;
  r.pid_start = j->pid_start;
  r.age_seq = j->age_seq;
  r.fin_seq = j->e.final ? j->fin_seq : 0;
  err = jw__record_write(sup->data_dir, &r);
  if (err < 0) {
    report(sup, j->e.id, err, "cannot write the job's record");
    return err;
  }
  queue_sync(sup, j->e.id, with_log);
  return 0;
}

int jw__job_save(struct job *j, int with_log) {
  return jw__job_save_as(j, owner_name(j), with_log);
}

void jw__job_unsave(jw_supervisor_t *sup, const struct job *j) {
  char *path;
  if (!sup->durable || j->e.id[0] == '\0')
    return;
  path = jw__record_path(sup->data_dir, j->e.id);
  if (path != NULL)
    unlink(path);
  free(path);
}

void jw__durable_init(jw_supervisor_t *sup) {
  if (!sup->durable)
    return;
  uv_timer_init(sup->loop, &sup->flush_timer);
  sup->flush_timer.data = sup;
}

static void on_timer_closed(uv_handle_t *h) {
  jw__supervisor_handle_closed(h->data);
}

int jw__durable_close(jw_supervisor_t *sup) {
  if (!sup->durable)
    return 0;
  uv_close((uv_handle_t *)&sup->flush_timer, on_timer_closed);
  return 1 + sup->flush_busy;
}

void jw__durable_flush_now(jw_supervisor_t *sup) {
  if (!sup->durable || sup->npend == 0)
    return;
  (void)jw__record_sync(sup->data_dir, sup->pend, sup->npend);
  sup->npend = 0;
}
