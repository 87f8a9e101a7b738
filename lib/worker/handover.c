/*
 * A reload's handover of running jobs: jw_supervisor_handover gives every
 * running job's process away (jw_process_handover) for an execve(2) to
 * pass on, and jw__job_adopt takes one back in the next process, from
 * the job's restored record (restore.c) and what the previous process
 * handed over.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobworker/supervisor.h"
#include "supervisor_int.h"

/*
 * Checks that n more descriptors can be opened, by opening them and
 * closing them again. Returns 0 or -errno (-EMFILE).
 */
static int reserve_fds(size_t n) {
  int *fds = n > 0 ? malloc(n * sizeof(*fds)) : NULL;
  size_t k;
  int err = 0;
  if (n > 0 && fds == NULL)
    return -ENOMEM;
  for (k = 0; k < n; k++) {
    if ((fds[k] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
      err = -errno;
      break;
    }
  }
  while (k > 0)
    close(fds[--k]);
  free(fds);
  return err;
}

int jw_supervisor_handover(jw_supervisor_t *sup, jw_job_handover_t **out,
                           size_t *n) {
  jw_job_handover_t *hs;
  struct job **handed;
  jw__list_t *node;
  size_t count = 0, i = 0;
  int err = 0;

  if (sup == NULL || out == NULL || n == NULL)
    return JW_EINVAL;
  if (sup->shutting_down || sup->handed_over || sup->closing)
    return JW_ECLOSED;
  jw__list_foreach(node, &sup->table.jobs) {
    struct job *j = job_of(jw__jobent_of_age(node));
    if (!j->e.final && j->proc != NULL)
      count++;
  }
  hs = calloc(count > 0 ? count : 1, sizeof(*hs));
  handed = calloc(count > 0 ? count : 1, sizeof(*handed));
  if (hs == NULL || handed == NULL) {
    free(hs);
    free(handed);
    return -ENOMEM;
  }
  /*
   * A process handed over is no longer watched here, so the handover must
   * not fail half way: the descriptors it will dup (four per job at most)
   * are reserved first and given back just before, on this thread.
   */
  if ((err = reserve_fds(4 * count)) < 0) {
    free(hs);
    free(handed);
    return err;
  }
  jw__list_foreach(node, &sup->table.jobs) {
    struct job *j = job_of(jw__jobent_of_age(node));
    jw_process_handover_t ph;
    jw_job_handover_t *h;
    if (j->e.final || j->proc == NULL)
      continue;
    /*
     * Only running out of descriptors after all can refuse one: that job
     * stays here, and the next process ends it as found running.
     */
    if (jw_process_handover(j->proc, &ph) < 0)
      continue;
    handed[i] = j;
    h = &hs[i++];
    memcpy(h->id, j->e.id, sizeof(h->id));
    h->proc = ph;
    h->stop_reason = ph.stop_requested ? j->ctl.stop_reason : JW_END_NONE;
    if (ph.stop_requested && h->stop_reason == JW_END_NONE)
      h->stop_reason = JW_END_STOPPED;
    /* Its record as of now (counters, pid), for the next process. */
    (void)jw__job_save(j, 1);
  }
  /*
   * Every record and log on disk before the exec. The records are in the
   * journal's page cache already, so the next process finds them either
   * way; the fsync is for a power loss right after. With a flush in the
   * thread pool still running (it owns the pending list) the next one,
   * in the next process, syncs them.
   */
  if (!sup->flush_busy)
    jw__durable_flush_now(sup);
  /* Every record and log on disk, for the next process to find. */
  sup->handed_over = 1;
  /* Out of the running count, so that a close completes without them. */
  for (size_t k = 0; k < i; k++) {
    struct job *j = handed[k];
    jw__jobtable_set_final(&sup->table, &j->e);
    sup->closing_procs++;
    jw_process_close(j->proc, jw__job_on_closed, j);
  }
  free(handed);
  *out = hs;
  *n = i;
  return 0;
}

/* Closes what a handover entry passed on, when nothing adopts it. */
static void close_entry(const jw_job_handover_t *h) {
  const int fds[] = {h->proc.pidfd, h->proc.out_fd, h->proc.err_fd,
                     h->proc.status_fd};
  for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

int jw__job_adopt(jw_supervisor_t *sup, struct job *j,
                  const jw_job_handover_t *h) {
  jw_process_options_t po;
  jw_process_handover_t ph;
  int err;

  /* The record and the handover must name the same process. */
  if (h->proc.pid <= 0 || h->proc.pid != j->status.pid) {
    close_entry(h);
    return -ESRCH;
  }
  jw__job_process_options(j, &po);
  po.command = j->command;
  po.isolation = j->isolation;
  ph = h->proc;
  ph.stop_requested = h->stop_reason != JW_END_NONE;
  /* The start time is the record's, not the sender's word. */
  ph.started_at_ns = j->status.started_at_ns;
  err = jw_process_adopt(sup->loop, &po, &ph, &j->proc);
  if (err < 0) {
    close_entry(h);
    j->proc = NULL;
    return err;
  }
  j->ctl.stop_reason = h->stop_reason;
  jw_process_status(j->proc, &j->status);
  jw__job_control_adopted(j);
  return 0;
}
