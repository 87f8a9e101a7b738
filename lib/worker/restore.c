/*
 * The restore at jw_supervisor_new with durable records: every record in
 * the data directory becomes a job again, with its log.
 *
 * Finished jobs come back as they were, in the order they were started
 * (the table's age list) and the order they became final (the
 * retention's), both kept in the records as sequence numbers rather than
 * taken from the wall clock. A record still RUNNING is a job whose server
 * went away while it ran: unless the process that exec'd this one handed
 * it over (jw__job_adopt), what is left of it is killed through its cgroup
 * (or its pid, when that pid still is the process the record names), its
 * log is cut back to the last whole record, and it becomes final with
 * JW_END_SERVER_CRASH.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_int.h"
#include "logname.h"
#include "supervisor_int.h"

static void report(jw_supervisor_t *sup, const char *path, int err,
                   const char *why) {
  if (sup->on_record_error != NULL)
    sup->on_record_error(path, err, why, sup->drop_data);
}

static char **dup_strs(const char *const *v, size_t n) {
  char **out = calloc(n + 1, sizeof(char *));
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if ((out[i] = strdup(v[i])) == NULL) {
      while (i > 0)
        free(out[--i]);
      free(out);
      return NULL;
    }
  }
  return out;
}

/* The job a record describes, in the table (running, as it was started). */
static int restore_job(jw_supervisor_t *sup, const jw__record_t *r,
                       struct job **out) {
  struct job *j = calloc(1, sizeof(*j));
  jw__owner_t *o;
  char *path;
  int err;

  if (j == NULL)
    return -ENOMEM;
  j->sup = sup;
  jw__list_init(&j->stops);
  jw__list_init(&j->deferred);
  memcpy(j->e.id, r->id, JW_ID_LEN + 1);
  j->command = strdup(r->command);
  j->args = dup_strs(r->args, r->nargs);
  j->nargs = r->nargs;
  if (r->working_dir[0] != '\0')
    j->working_dir = strdup(r->working_dir);
  /* Env values stay on disk only while the operator asks for it. */
  if (sup->keep_env && r->nenv > 0) {
    j->env = dup_strs(r->env, r->nenv);
    j->nenv = j->env != NULL ? r->nenv : 0;
  }
  if (j->command == NULL || j->args == NULL ||
      (r->working_dir[0] != '\0' && j->working_dir == NULL) ||
      (sup->keep_env && r->nenv > 0 && j->env == NULL)) {
    jw__job_free(j);
    return -ENOMEM;
  }
  j->limits = r->limits;
  j->isolation = r->isolation;
  j->uid = (uid_t)r->uid;
  j->gid = (gid_t)r->gid;
  j->status = r->proc;
  j->usage = r->usage;
  j->end_reason = r->end_reason;
  snprintf(j->cg_name, sizeof(j->cg_name), "%s", r->cg_name);
  j->pid_start = r->pid_start;
  j->age_seq = r->age_seq;
  j->fin_seq = r->fin_seq;

  path = jw__supervisor_log_path(sup->data_dir, r->id);
  if (path == NULL) {
    jw__job_free(j);
    return -ENOMEM;
  }
  /* A log lost with the power is an empty one: the record still counts. */
  err = jw_outlog_reopen(path, &j->log, NULL);
  if (err == -ENOENT)
    err = jw_outlog_create(path, &j->log);
  if (err < 0) {
    report(sup, path, err, "cannot open the job's output log");
    free(path);
    jw__job_free(j);
    return err == -ENOMEM ? err : 1;
  }
  free(path);
  jw_outlog_set_max(j->log, sup->max_output_bytes);
  jw_outlog_drop(j->log, r->output_dropped);
  o = jw__jobtable_owner_get(&sup->table, r->owner);
  if (o == NULL) {
    jw_outlog_close(j->log, 0);
    jw__job_free(j);
    return -ENOMEM;
  }
  jw__jobtable_insert(&sup->table, &j->e, o);
  jw__jobtable_set_disk(&j->e, jw_outlog_disk_bytes(j->log));
  *out = j;
  return 0;
}

static const jw_job_handover_t *handover_of(const jw_supervisor_options_t *o,
                                            const char *id) {
  for (size_t i = 0; o->handover != NULL && i < o->nhandover; i++)
    if (strcmp(o->handover[i].id, id) == 0)
      return &o->handover[i];
  return NULL;
}

/* A job that was running when its server went away. */
static void reconcile(jw_supervisor_t *sup, struct job *j,
                      const jw_supervisor_options_t *opts) {
  const jw_job_handover_t *h = handover_of(opts, j->e.id);
  jw_cgroup_t *cg = NULL;
  struct timespec now;
  int pid = j->status.pid;

  if (j->cg_name[0] != '\0' && sup->cgroups != NULL)
    (void)jw__cgroup_open_existing(sup->cgroups, j->cg_name, &cg);
  if (h != NULL) {
    j->cg = cg;
    if (jw__job_adopt(sup, j, h) == 0)
      return;
    cg = j->cg;
    j->cg = NULL;
  }
  /*
   * Its cgroup holds whatever it started, also what left its process
   * group; without one, the group, but only while the pid is still the
   * job's own process (the same start time), never a reused one.
   */
  if (cg != NULL) {
    jw_cgroup_kill(cg);
    jw_cgroup_usage(cg, &j->usage);
    jw__supervisor_release_cgroup(sup, cg);
  }
  if (pid > 0 && j->pid_start != 0 &&
      jw__record_pid_start(pid) == j->pid_start) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
  }
  jw_outlog_finish(j->log);
  clock_gettime(CLOCK_REALTIME, &now);
  j->status.state = JW_PROC_STOPPED;
  j->status.exit_code = 0;
  j->status.signal = SIGKILL;
  j->status.ended_at_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
  j->end_reason = JW_END_SERVER_CRASH;
  jw__jobtable_set_final(&sup->table, &j->e);
  j->fin_seq = ++sup->seq;
  (void)jw__job_save(j, 1);
  /* Its end, for audit logs and metrics, as for any other job. */
  if (sup->on_job_end != NULL) {
    jw_job_info_t info;
    jw__job_fill_info(j, &info);
    sup->on_job_end(&info, sup->drop_data);
  }
}

static int by_age(const void *a, const void *b) {
  const jw__record_t *x = a, *y = b;
  if (x->age_seq != y->age_seq)
    return x->age_seq < y->age_seq ? -1 : 1;
  return strcmp(x->id, y->id);
}

static int by_fin(const void *a, const void *b) {
  const jw__record_t *x = *(const jw__record_t *const *)a;
  const jw__record_t *y = *(const jw__record_t *const *)b;
  if (x->fin_seq != y->fin_seq)
    return x->fin_seq < y->fin_seq ? -1 : 1;
  return strcmp(x->id, y->id);
}

/* What the journal's walk collects: every entry, in order. */
struct entry {
  size_t pos; /* its place in the journal */
  int del;    /* a removal (rec unused) */
  jw__record_t rec;
};

struct walk {
  jw_supervisor_t *sup;
  struct entry *e;
  size_t n, cap;
  int err;
};

static struct entry *add_entry(struct walk *w) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    struct entry *ne = realloc(w->e, cap * sizeof(*ne));
    if (ne == NULL) {
      w->err = -ENOMEM;
      return NULL;
    }
    w->e = ne;
    w->cap = cap;
  }
  w->e[w->n].pos = w->n;
  return &w->e[w->n++];
}

static void on_record(jw__record_t *rec, void *data) {
  struct entry *e = add_entry(data);
  if (e == NULL) {
    jw__record_free(rec);
    return;
  }
  e->del = 0;
  e->rec = *rec;
}

static void on_delete(const char *id, void *data) {
  struct entry *e = add_entry(data);
  if (e == NULL)
    return;
  e->del = 1;
  memset(&e->rec, 0, sizeof(e->rec));
  memcpy(e->rec.id, id, JW_ID_LEN + 1);
}

static void on_bad(uint64_t off, int err, const char *why, void *data) {
  struct walk *w = data;
  char where[4300];
  snprintf(where, sizeof(where), "%s/%s at byte %" PRIu64, w->sup->data_dir,
           JW__JOURNAL, off);
  report(w->sup, where, err, why);
}

/* By id, then by place: the last entry of each id is the one that counts. */
static int by_id(const void *a, const void *b) {
  const struct entry *x = a, *y = b;
  int c = strcmp(x->rec.id, y->rec.id);
  if (c != 0)
    return c;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Reads the journal's entries: the latest record of each job, in *out. */
static int read_all(jw_supervisor_t *sup, jw__record_t **out, size_t *n) {
  const size_t max = (size_t)1 << 30;
  struct walk w = {sup, NULL, 0, 0, 0};
  jw__journal_visitor_t v = {on_record, on_delete, on_bad, &w};
  unsigned char *buf = NULL;
  jw__record_t *recs;
  size_t len = 0, cap = 0, i, k;
  char path[4200];
  int fd, err = 0;

  *out = NULL;
  *n = 0;
  snprintf(path, sizeof(path), "%s/%s", sup->data_dir, JW__JOURNAL_TMP);
  unlink(path); /* a rewrite a crash cut short: the journal is whole */
  snprintf(path, sizeof(path), "%s/%s", sup->data_dir, JW__JOURNAL);
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  for (;;) {
    ssize_t r;
    if (len == cap) {
      unsigned char *nb;
      if (cap >= max) {
        report(sup, path, -EFBIG, "journal over 1 GiB: the rest is not read");
        break;
      }
      cap = cap ? cap * 2 : 65536;
      if ((nb = realloc(buf, cap)) == NULL) {
        err = -ENOMEM;
        break;
      }
      buf = nb;
    }
    r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      err = -errno;
      break;
    }
    if (r == 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  if (err == 0)
    err = jw__journal_parse(buf, len, &v);
  free(buf);
  if (err == 0)
    err = w.err;
  if (w.n > 1)
    qsort(w.e, w.n, sizeof(*w.e), by_id);
  recs = w.n > 0 ? calloc(w.n, sizeof(*recs)) : NULL;
  if (w.n > 0 && recs == NULL && err == 0)
    err = -ENOMEM;
  for (i = 0, k = 0; i < w.n; i++) {
    int last = i + 1 == w.n || strcmp(w.e[i + 1].rec.id, w.e[i].rec.id) != 0;
    if (last && !w.e[i].del && recs != NULL)
      recs[k++] = w.e[i].rec;
    else if (!w.e[i].del)
      jw__record_free(&w.e[i].rec);
  }
  free(w.e);
  *out = recs;
  *n = k;
  return err;
}

/*
 * Removes the logs whose job has no record: a start that failed, or one
 * a crash cut short before its record was written. Nothing else here.
 */
static void sweep_logs(jw_supervisor_t *sup) {
  DIR *d = opendir(sup->data_dir);
  struct dirent *e;
  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    char id[JW_ID_LEN + 1];
    if (!jw_supervisor_is_log_name(e->d_name))
      continue;
    memcpy(id, e->d_name, JW_ID_LEN);
    id[JW_ID_LEN] = '\0';
    if (jw__jobtable_find(&sup->table, id) == NULL)
      unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

int jw__supervisor_restore(jw_supervisor_t *sup,
                           const jw_supervisor_options_t *opts) {
  jw__record_t *recs = NULL, **fin = NULL;
  struct job **jobs = NULL;
  size_t n = 0, nfin = 0, i;
  int err = read_all(sup, &recs, &n);

  if (err == 0 && n > 0 &&
      ((fin = calloc(n, sizeof(*fin))) == NULL ||
       (jobs = calloc(n, sizeof(*jobs))) == NULL))
    err = -ENOMEM;
  if (err == 0 && n > 1)
    qsort(recs, n, sizeof(*recs), by_age);
  for (i = 0; err == 0 && i < n; i++) {
    int r = restore_job(sup, &recs[i], &jobs[i]);
    if (r < 0)
      err = r;
    if (recs[i].age_seq > sup->seq)
      sup->seq = recs[i].age_seq;
    if (recs[i].fin_seq > sup->seq)
      sup->seq = recs[i].fin_seq;
    if (r == 0 && recs[i].proc.state != JW_PROC_RUNNING)
      fin[nfin++] = &recs[i];
  }
  /* The finished ones become final in the order they did before. */
  if (err == 0) {
    if (nfin > 1)
      qsort(fin, nfin, sizeof(*fin), by_fin);
    for (i = 0; i < nfin; i++) {
      struct job *j = job_of(jw__jobtable_find(&sup->table, fin[i]->id));
      jw__jobtable_set_final(&sup->table, &j->e);
      jw_outlog_finish(j->log);
    }
    /* The journal holds these records only from now on. */
    err = jw__journal_rewrite(sup);
    sweep_logs(sup);
  }
  if (err == 0) {
    for (i = 0; i < n; i++)
      if (jobs[i] != NULL && !jobs[i]->e.final)
        reconcile(sup, jobs[i], opts);
    /* The retention may be tighter than when they were kept. */
    for (i = 0; i < n; i++) {
      struct job *j = job_of(jw__jobtable_find(&sup->table, recs[i].id));
      if (j != NULL && j->e.owner != NULL)
        jw__supervisor_retain_finished(sup, j->e.owner);
    }
  }
  for (i = 0; i < n; i++)
    jw__record_free(&recs[i]);
  free(recs);
  free(fin);
  free(jobs);
  return err;
}
