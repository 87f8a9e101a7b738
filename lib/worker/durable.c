/*
 * Durable records: a job's record appended to the journal (record.h) before
 * its process starts and when it is final, and the batched fsync that
 * makes the appends survive a power loss.
 *
 * An append is one pwrite(2) on the loop: into the page cache, cheap, and
 * done before jw_supervisor_start returns, so an answered Start survives a
 * crash of teleportd. Surviving a crash of the machine takes an fsync,
 * which waits for the disk: that is done in the thread pool, for every
 * append since the last flush at once, at most FLUSH_MS after the first of
 * them. A power loss loses at most the records of that last stretch
 * (docs/operations.md). The pid of a job that has started is appended at
 * that flush too (jw__job_stale), not at once, and its start time read
 * then: a job that ends sooner needs only its final record.
 *
 * Entries that a later one replaced are counted; once they take more than
 * half of the journal (and a few MiB), it is rewritten with the current
 * records only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"
#include "supervisor_int.h"

#define FLUSH_MS 100

#define COMPACT_MIN (4u * 1024 * 1024)

static void report(jw_supervisor_t *sup, int err, const char *why) {
  char path[4200];
  if (sup->on_record_error == NULL)
    return;
  snprintf(path, sizeof(path), "%s/%s", sup->data_dir, JW__JOURNAL);
  sup->on_record_error(path, err, why, sup->drop_data);
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

static void on_flush_timer(uv_timer_t *t);

/* fsyncs a file by path; one removed since has nothing left to keep. */
static int sync_path(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  int err = 0;
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  if (fsync(fd) < 0)
    err = -errno;
  close(fd);
  return err;
}

static void flush_work(uv_work_t *w) {
  jw_supervisor_t *sup = w->data;
  char path[4200];
  /* Only the thread touches these until flush_done. */
  for (size_t i = 0; i < sup->nsyncing; i++) {
    snprintf(path, sizeof(path), "%s/%s.log", sup->data_dir, sup->syncing[i]);
    (void)sync_path(path);
  }
  if (sup->sync_fd >= 0)
    (void)fdatasync(sup->sync_fd);
  /* New logs' names, and the journal's after a rewrite. */
  if (sup->nsyncing > 0)
    (void)sync_path(sup->data_dir);
}

static void flush_done(uv_work_t *w, int status) {
  jw_supervisor_t *sup = w->data;
  (void)status;
  sup->flush_busy = 0;
  if (sup->sync_fd >= 0)
    close(sup->sync_fd);
  sup->sync_fd = -1;
  free(sup->syncing);
  sup->syncing = NULL;
  sup->nsyncing = 0;
  /* The close counted this flush (it was in flight then). */
  if (sup->handles_closing > 0) {
    jw__supervisor_handle_closed(sup);
    return;
  }
  /* Appended while this flush ran: the next one is due. */
  if (sup->jdirty || sup->npend > 0 || !jw__list_empty(&sup->stale))
    uv_timer_start(&sup->flush_timer, on_flush_timer, FLUSH_MS, 0);
}

static void flush_due(jw_supervisor_t *sup) {
  if (!sup->flush_busy && !uv_is_active((uv_handle_t *)&sup->flush_timer) &&
      !uv_is_closing((uv_handle_t *)&sup->flush_timer))
    uv_timer_start(&sup->flush_timer, on_flush_timer, FLUSH_MS, 0);
}

/* Hands what is pending to the thread pool, unless a flush runs. */
static void on_flush_timer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  jw__list_t *n;
  if (sup->flush_busy)
    return;
  /* Started jobs still running get their pid into the journal. */
  while ((n = jw__list_first(&sup->stale)) != NULL)
    (void)jw__job_save(jw__list_data(n, struct job, stale), 0);
  /* Those appends go with this flush: flush_done re-arms what is left. */
  uv_timer_stop(t);
  if (!sup->jdirty && sup->npend == 0)
    return;
  sup->sync_fd =
      sup->jdirty && sup->jfd >= 0 ? fcntl(sup->jfd, F_DUPFD_CLOEXEC, 0) : -1;
  sup->jdirty = 0;
  sup->syncing = sup->pend;
  sup->nsyncing = sup->npend;
  sup->pend = NULL;
  sup->npend = sup->pend_cap = 0;
  sup->flush_work.data = sup;
  if (uv_queue_work(sup->loop, &sup->flush_work, flush_work, flush_done) < 0) {
    /* Cannot fail on a live loop; if it did, sync here rather than not. */
    flush_work(&sup->flush_work);
    sup->flush_busy = 1;
    flush_done(&sup->flush_work, 0);
    return;
  }
  sup->flush_busy = 1;
}

static void queue_log_sync(jw_supervisor_t *sup, const char *id) {
  if (sup->npend == sup->pend_cap) {
    size_t cap = sup->pend_cap ? sup->pend_cap * 2 : 16;
    char(*p)[JW_ID_LEN + 1] = realloc(sup->pend, cap * sizeof(*p));
    if (p == NULL)
      return; /* the log is then only as durable as the page cache */
    sup->pend = p;
    sup->pend_cap = cap;
  }
  memcpy(sup->pend[sup->npend++], id, JW_ID_LEN + 1);
}

/* Appends len bytes at the journal's end, whole or not at all. */
static int append(jw_supervisor_t *sup, const unsigned char *buf, size_t len) {
  size_t done = 0;
  if (sup->jfd < 0)
    return -EBADF;
  while (done < len) {
    ssize_t n =
        pwrite(sup->jfd, buf + done, len - done, (off_t)(sup->jsize + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = n < 0 ? -errno : -ENOSPC;
      /* No half entry stays: the next append starts where this did. */
      while (ftruncate(sup->jfd, (off_t)sup->jsize) < 0 && errno == EINTR)
        ;
      return err;
    }
    done += (size_t)n;
  }
  sup->jsize += len;
  sup->jdirty = 1;
  return 0;
}

static void fill_record(const struct job *j, const char *owner,
                        jw__record_t *r) {
  memset(r, 0, sizeof(*r));
  memcpy(r->id, j->e.id, JW_ID_LEN + 1);
  r->owner = owner;
  r->command = j->command;
  r->args = (const char *const *)j->args;
  r->nargs = j->nargs;
  r->working_dir = j->working_dir != NULL ? j->working_dir : "";
  r->env = (const char *const *)j->env;
  r->nenv = j->nenv;
  r->limits = j->limits;
  r->isolation = j->isolation;
  r->uid = (uint32_t)j->uid;
  r->gid = (uint32_t)j->gid;
  r->proc = j->status;
  if (!j->e.final)
    r->proc.state = JW_PROC_RUNNING;
  if (r->proc.started_at_ns == 0) {
    /*
     * Written before the process starts (a Start is answered only once
     * its record is): now is when it starts, to within the spawn, and
     * what a crash before the next flush leaves as its start.
     */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->proc.started_at_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  }
  r->output_bytes = j->log != NULL ? jw_outlog_bytes(j->log) : 0;
  r->output_dropped = j->log != NULL ? jw_outlog_dropped(j->log) : 0;
  r->usage = j->usage;
  r->end_reason = j->e.final ? j->ctl.end_reason : JW_END_NONE;
  r->cg_name = j->cg_name;
  r->pid_start = j->pid_start;
  r->age_seq = j->age_seq;
  r->fin_seq = j->e.final ? j->fin_seq : 0;
  r->timeout_ms = j->ctl.timeout_ms;
}

/*
 * Most of the journal replaced: the current records alone, in a new one.
 * Before an append, never after: a job not in the table yet (a start)
 * would lose the record just appended.
 */
static void maybe_compact(jw_supervisor_t *sup) {
  if (sup->jdead > sup->compact_min && sup->jdead > sup->jsize / 2 &&
      !sup->closing)
    (void)jw__journal_rewrite(sup);
}

int jw__job_save_as(struct job *j, const char *owner, int with_log) {
  jw_supervisor_t *sup = j->sup;
  jw__record_t r;
  unsigned char *buf;
  size_t len;
  int err;

  if (!sup->durable)
    return 0;
  maybe_compact(sup);
  jw__list_remove(&j->stale);
  /*
   * The pid's start time, what a restart checks before it kills that pid:
   * read from /proc once, by the first record of the running job that has
   * its pid (the flush after the Start). Not at the Start: a job that ends
   * before that flush never needs it.
   */
  if (!j->e.final && j->pid_start == 0 && j->status.pid > 0)
    j->pid_start = jw__record_pid_start(j->status.pid);
  fill_record(j, owner, &r);
  err = jw__record_encode(&r, &buf, &len);
  if (err == 0) {
    err = append(sup, buf, len);
    free(buf);
  }
  if (err < 0) {
    report(sup, err, "cannot append the job's record");
    return err;
  }
  sup->jdead += j->rec_len;
  j->rec_len = (uint32_t)len;
  /*
   * A log without a byte has nothing to keep: one the power took is
   * reopened empty (restore.c), as it was. Jobs that print nothing then
   * cost the flush no open, fsync and close of their own.
   */
  if (with_log && j->log != NULL && jw_outlog_disk_bytes(j->log) > 0)
    queue_log_sync(sup, j->e.id);
  flush_due(sup);
  return 0;
}

int jw__job_save(struct job *j, int with_log) {
  return jw__job_save_as(j, owner_name(j), with_log);
}

void jw__job_stale(struct job *j) {
  if (!j->sup->durable)
    return;
  if (!jw__list_linked(&j->stale))
    jw__list_insert_tail(&j->sup->stale, &j->stale);
  flush_due(j->sup);
}

void jw__job_unsave(jw_supervisor_t *sup, struct job *j) {
  unsigned char del[JW__DEL_LEN];
  if (!sup->durable || j->rec_len == 0)
    return;
  jw__list_remove(&j->stale);
  maybe_compact(sup);
  jw__record_encode_del(j->e.id, del);
  if (append(sup, del, sizeof(del)) < 0) {
    report(sup, -EIO, "cannot append a job's removal");
    return;
  }
  sup->jdead += j->rec_len + sizeof(del);
  j->rec_len = 0;
  flush_due(sup);
}

/* Writes all of buf to fd at its offset. */
static int write_full(int fd, const unsigned char *buf, size_t len) {
  return jw__write_all(fd, (const char *)buf, len);
}

int jw__journal_rewrite(jw_supervisor_t *sup) {
  char tmp[4200], dst[4200];
  jw__list_t *n;
  uint64_t size = 0;
  int fd, err = 0;

  snprintf(tmp, sizeof(tmp), "%s/%s", sup->data_dir, JW__JOURNAL_TMP);
  snprintf(dst, sizeof(dst), "%s/%s", sup->data_dir, JW__JOURNAL);
  fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return -errno;
  jw__list_foreach(n, &sup->table.jobs) {
    struct job *j = job_of(jw__jobent_of_age(n));
    jw__record_t r;
    unsigned char *buf;
    size_t len;
    fill_record(j, owner_name(j), &r);
    if ((err = jw__record_encode(&r, &buf, &len)) < 0)
      break;
    err = write_full(fd, buf, len);
    free(buf);
    if (err < 0)
      break;
    j->rec_len = (uint32_t)len;
    size += len;
  }
  /* On disk before it replaces the old one, which stays whole till then. */
  if (err == 0 && fsync(fd) < 0)
    err = -errno;
  if (err == 0 && rename(tmp, dst) < 0)
    err = -errno;
  if (err < 0) {
    close(fd);
    unlink(tmp);
    report(sup, err, "cannot rewrite the journal");
    return err;
  }
  (void)sync_path(sup->data_dir);
  if (sup->jfd >= 0)
    close(sup->jfd);
  sup->jfd = fd;
  sup->jsize = size;
  sup->jdead = 0;
  return 0;
}

void jw__durable_init(jw_supervisor_t *sup) {
  sup->jfd = -1;
  sup->sync_fd = -1;
  sup->compact_min = COMPACT_MIN;
  jw__list_init(&sup->stale);
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
  jw__list_t *n;
  if (!sup->durable)
    return;
  while ((n = jw__list_first(&sup->stale)) != NULL)
    (void)jw__job_save(jw__list_data(n, struct job, stale), 0);
  sup->syncing = sup->pend;
  sup->nsyncing = sup->npend;
  sup->pend = NULL;
  sup->npend = sup->pend_cap = 0;
  sup->sync_fd = sup->jdirty ? sup->jfd : -1;
  sup->flush_work.data = sup;
  flush_work(&sup->flush_work);
  free(sup->syncing);
  sup->syncing = NULL;
  sup->nsyncing = 0;
  sup->sync_fd = -1;
  sup->jdirty = 0;
}

void jw__durable_end(jw_supervisor_t *sup) {
  char path[4200];
  free(sup->pend);
  sup->pend = NULL;
  if (sup->jfd >= 0)
    close(sup->jfd);
  sup->jfd = -1;
  if (sup->durable && !sup->keep_logs) {
    snprintf(path, sizeof(path), "%s/%s", sup->data_dir, JW__JOURNAL);
    unlink(path);
  }
}
