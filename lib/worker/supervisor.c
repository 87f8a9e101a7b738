/*
 * jw_supervisor: the table of jobs.
 *
 * Jobs live in a hash table keyed by id (for lookups) and in a list by age
 * (for listing oldest first). A job holds its process until the process is
 * final, then only its final status and its output log, so a finished job
 * costs a few hundred bytes and one descriptor.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobworker/supervisor.h"
#include "logname.h"

#define DEFAULT_GRACE_MS JW_SUPERVISOR_DEFAULT_STOP_GRACE_MS
#define INITIAL_BUCKETS 64
#define COPY_BUF_SIZE (64 * 1024)

/*
 * A job's cgroup can only be removed once its last process is gone; a
 * process killed in the middle of I/O may take a moment. Removal is
 * retried this often, this many times (then left to the next start).
 */
#define CG_RETRY_MS 100
#define CG_RETRY_MAX 300

/* What one owner's jobs hold in common: the disk their logs take. */
struct owner {
  char *name;
  uint64_t disk; /* bytes of its jobs' logs still in the table */
  size_t refs;   /* jobs pointing here */
  struct owner *next;
};

struct job {
  char id[JW_ID_LEN + 1];
  char *owner; /* "" when started without an owner */
  struct owner *acct;
  uint64_t disk;      /* bytes of its log counted in acct->disk */
  uint64_t final_seq; /* when it became final, in the supervisor's order */
  char *command;
  char **args;
  size_t nargs;
  jw_supervisor_t *sup;
  jw_process_t *proc; /* NULL once closed */
  jw_outlog_t *log;
  jw_proc_status_t status; /* the final status, once final */
  int final;
  jw_stop_req_t *stops; /* pending stop requests, first = oldest */
  jw_stop_req_t *stops_tail;
  struct job *older;
  struct job *newer;
  struct job *hnext;
  struct job *dnext; /* in the deferred-callback queue */
  int deferred;
  jw_cgroup_t *cg; /* NULL without one, and once final */
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
  struct cg_retry *next;
};

struct jw_sub_s {
  jw_outlog_reader_t *reader;
  jw_sub_notify_cb cb;
  void *data;
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
  /*
   * Counts jobs becoming final. The retention goes by it rather than by
   * ended_at_ns, which follows the wall clock (stepped by NTP or by hand).
   */
  uint64_t final_seq;
  struct owner *owners;
  void (*on_drop)(const char *id, const char *owner, int err, void *data);
  void *drop_data;
  struct job **buckets;
  size_t nbuckets;
  size_t njobs;
  size_t nrunning;
  struct job *oldest;
  struct job *newest;
  /*
   * A zero timer that runs stop callbacks for jobs already final "on the
   * next turn". It is created with the first job, so that a supervisor
   * that never ran one can be freed without running the loop.
   */
  uv_timer_t defer;
  int defer_state; /* 0 none, 1 open, 2 closing, 3 closed */
  struct job *defer_head;
  struct job *defer_tail;
  size_t closing_procs;
  jw_cgroup_mgr_t *cgroups;
  uv_timer_t cg_timer; /* retries removals; open with defer, if cgroups */
  int cg_timer_open;
  struct cg_retry *retries;
  int timers_closing;
  int shutting_down;
  int done;
  void (*done_cb)(jw_supervisor_t *sup, void *data);
  void *done_data;
};

/* mkdir -p with mode 0700 for the parts it creates. */
static int make_dirs(const char *path) {
  char *p = strdup(path);
  struct stat st;
  char *s;
  int err = 0;

  if (p == NULL)
    return -ENOMEM;
  for (s = p + 1;; s++) {
    if (*s != '/' && *s != '\0')
      continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0700) < 0 && errno != EEXIST) {
      err = -errno;
      break;
    }
    *s = c;
    if (c == '\0')
      break;
  }
  free(p);
  if (err == 0 && stat(path, &st) < 0)
    err = -errno;
  if (err == 0 && !S_ISDIR(st.st_mode))
    err = -ENOTDIR;
  return err;
}

int jw_supervisor_new(uv_loop_t *loop, const jw_supervisor_options_t *opts,
                      jw_supervisor_t **out) {
  jw_supervisor_t *sup;
  int err;

  if (loop == NULL || opts == NULL || out == NULL || opts->data_dir == NULL ||
      opts->data_dir[0] == '\0')
    return -EINVAL;
  err = make_dirs(opts->data_dir);
  if (err < 0)
    return err;
  sup = calloc(1, sizeof(*sup));
  if (sup == NULL)
    return -ENOMEM;
  sup->loop = loop;
  sup->grace_ms = opts->stop_grace_ms != 0 ? opts->stop_grace_ms
                                           : (uint64_t)DEFAULT_GRACE_MS;
  sup->max_running = opts->max_running;
  sup->max_running_per_owner = opts->max_running_per_owner;
  sup->max_output_bytes = opts->max_output_bytes;
  sup->max_finished_per_owner = opts->max_finished_per_owner;
  sup->max_disk_per_owner = opts->max_disk_per_owner;
  sup->on_drop = opts->on_drop;
  sup->drop_data = opts->data;
  if (jw_cgroup_mgr_caps(opts->cgroups) & JW_CG_KILL)
    sup->cgroups = opts->cgroups;
  sup->data_dir = strdup(opts->data_dir);
  sup->nbuckets = INITIAL_BUCKETS;
  sup->buckets = calloc(sup->nbuckets, sizeof(*sup->buckets));
  if (sup->data_dir == NULL || sup->buckets == NULL) {
    free(sup->data_dir);
    free(sup->buckets);
    free(sup);
    return -ENOMEM;
  }
  *out = sup;
  return 0;
}

static size_t hash_id(const char *id) {
  uint64_t h = 1469598103934665603ULL;
  for (; *id != '\0'; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211ULL;
  return (size_t)h;
}

static struct job *find_job(const jw_supervisor_t *sup, const char *id) {
  struct job *j;
  if (id == NULL)
    return NULL;
  for (j = sup->buckets[hash_id(id) & (sup->nbuckets - 1)]; j != NULL;
       j = j->hnext)
    if (strcmp(j->id, id) == 0)
      return j;
  return NULL;
}

/* Doubles the table; on allocation failure the old one simply stays. */
static void grow_table(jw_supervisor_t *sup) {
  size_t n = sup->nbuckets * 2;
  struct job **b = calloc(n, sizeof(*b));
  size_t i;
  if (b == NULL)
    return;
  for (i = 0; i < sup->nbuckets; i++) {
    struct job *j = sup->buckets[i];
    while (j != NULL) {
      struct job *next = j->hnext;
      size_t k = hash_id(j->id) & (n - 1);
      j->hnext = b[k];
      b[k] = j;
      j = next;
    }
  }
  free(sup->buckets);
  sup->buckets = b;
  sup->nbuckets = n;
}

/* The owner record for name, made on first use; NULL when out of memory. */
static struct owner *owner_get(jw_supervisor_t *sup, const char *name) {
  struct owner *o;
  for (o = sup->owners; o != NULL; o = o->next)
    if (strcmp(o->name, name) == 0)
      break;
  if (o == NULL) {
    o = calloc(1, sizeof(*o));
    if (o == NULL || (o->name = strdup(name)) == NULL) {
      free(o);
      return NULL;
    }
    o->next = sup->owners;
    sup->owners = o;
  }
  o->refs++;
  return o;
}

static void owner_put(jw_supervisor_t *sup, struct owner *o) {
  struct owner **pp;
  if (o == NULL || --o->refs > 0)
    return;
  for (pp = &sup->owners; *pp != NULL && *pp != o; pp = &(*pp)->next)
    ;
  if (*pp == o)
    *pp = o->next;
  free(o->name);
  free(o);
}

static void insert_job(jw_supervisor_t *sup, struct job *j) {
  size_t k;
  if (sup->njobs + 1 > sup->nbuckets)
    grow_table(sup);
  k = hash_id(j->id) & (sup->nbuckets - 1);
  j->hnext = sup->buckets[k];
  sup->buckets[k] = j;
  j->older = sup->newest;
  if (sup->newest != NULL)
    sup->newest->newer = j;
  else
    sup->oldest = j;
  sup->newest = j;
  sup->njobs++;
}

/* Looks a job up and checks its owner (owner NULL skips the check). */
static int lookup(jw_supervisor_t *sup, const char *id, const char *owner,
                  struct job **out) {
  struct job *j = find_job(sup, id);
  if (j == NULL)
    return JW_ENOTFOUND;
  if (owner != NULL && strcmp(owner, j->owner) != 0)
    return JW_EOWNER;
  *out = j;
  return 0;
}

/*
 * A running job's usage comes from cgroup files, opened and parsed on each
 * read; a storm of Status calls would spend most of the server's time
 * there, so a read is reused for this long.
 */
#define USAGE_TTL_NS (100u * 1000 * 1000)

static void fill_info(struct job *j, jw_job_info_t *info) {
  info->id = j->id;
  info->owner = j->owner;
  info->command = j->command;
  info->args = (const char *const *)j->args;
  info->nargs = j->nargs;
  if (j->final || j->proc == NULL)
    info->proc = j->status;
  else
    jw_process_status(j->proc, &info->proc);
  info->output_bytes = jw_outlog_bytes(j->log);
  info->output_dropped = jw_outlog_dropped(j->log);
  info->limits = j->limits;
  info->isolation = j->isolation;
  info->uid = j->uid;
  info->gid = j->gid;
  if (!j->final && j->cg != NULL) {
    uint64_t now = uv_hrtime();
    if (j->usage_at == 0 || now - j->usage_at >= USAGE_TTL_NS) {
      jw_cgroup_usage(j->cg, &j->usage);
      j->usage_at = now;
    }
  }
  info->usage = j->usage;
}

/*
 * Completes a job's stop requests one at a time from the head, so that a
 * callback may cancel or add requests while we go.
 */
static void fire_stops(struct job *j, int err) {
  jw_job_info_t info;
  while (j->stops != NULL) {
    jw_stop_req_t *req = j->stops;
    j->stops = req->next;
    if (j->stops != NULL)
      j->stops->prev = NULL;
    else
      j->stops_tail = NULL;
    req->next = req->prev = NULL;
    req->job = NULL;
    fill_info(j, &info);
    req->cb(req, err, &info);
  }
}

static void flush_deferred(jw_supervisor_t *sup) {
  while (sup->defer_head != NULL) {
    struct job *j = sup->defer_head;
    sup->defer_head = j->dnext;
    if (sup->defer_head == NULL)
      sup->defer_tail = NULL;
    j->dnext = NULL;
    j->deferred = 0;
    fire_stops(j, 0);
  }
}

static void on_defer(uv_timer_t *t) { flush_deferred(t->data); }

static int ensure_defer(jw_supervisor_t *sup) {
  if (sup->defer_state == 0) {
    uv_timer_init(sup->loop, &sup->defer);
    sup->defer.data = sup;
    sup->defer_state = 1;
    if (sup->cgroups != NULL) {
      uv_timer_init(sup->loop, &sup->cg_timer);
      sup->cg_timer.data = sup;
      sup->cg_timer_open = 1;
    }
  }
  return sup->defer_state == 1 || sup->defer_state == 2 ? 0 : JW_ECLOSED;
}

static int defer_stops(jw_supervisor_t *sup, struct job *j) {
  int err = ensure_defer(sup);
  if (err < 0)
    return err;
  if (!j->deferred) {
    j->deferred = 1;
    if (sup->defer_tail != NULL)
      sup->defer_tail->dnext = j;
    else
      sup->defer_head = j;
    sup->defer_tail = j;
  }
  /* While closing, the close callback flushes the queue instead. */
  if (sup->defer_state == 1)
    uv_timer_start(&sup->defer, on_defer, 0, 0);
  return 0;
}

static void on_defer_closed(uv_handle_t *h) {
  jw_supervisor_t *sup = h->data;
  if (--sup->timers_closing > 0)
    return;
  flush_deferred(sup);
  sup->defer_state = 3;
  sup->done = 1;
  if (sup->done_cb != NULL)
    sup->done_cb(sup, sup->done_data);
}

static void maybe_shutdown_done(jw_supervisor_t *sup) {
  if (!sup->shutting_down || sup->nrunning > 0 || sup->closing_procs > 0 ||
      sup->retries != NULL || sup->defer_state >= 2)
    return;
  ensure_defer(sup);
  sup->defer_state = 2;
  sup->timers_closing = 1;
  if (sup->cg_timer_open) {
    sup->cg_timer_open = 0;
    sup->timers_closing++;
    uv_close((uv_handle_t *)&sup->cg_timer, on_defer_closed);
  }
  uv_close((uv_handle_t *)&sup->defer, on_defer_closed);
}

static void on_cg_timer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  struct cg_retry **pp = &sup->retries;
  while (*pp != NULL) {
    struct cg_retry *r = *pp;
    jw_cgroup_kill(r->cg);
    if (jw_cgroup_remove(r->cg) == 0 || ++r->tries >= CG_RETRY_MAX) {
      /* Given up: the next start of the server removes it. */
      if (r->tries >= CG_RETRY_MAX)
        jw_cgroup_free(r->cg);
      *pp = r->next;
      free(r);
    } else {
      pp = &r->next;
    }
  }
  if (sup->retries != NULL)
    uv_timer_start(&sup->cg_timer, on_cg_timer, CG_RETRY_MS, 0);
  else
    maybe_shutdown_done(sup);
}

/*
 * Removes a job's cgroup, now or, while killed processes are still
 * leaving it, from a timer.
 */
static void release_cgroup(jw_supervisor_t *sup, jw_cgroup_t *cg) {
  struct cg_retry *r;
  if (cg == NULL || jw_cgroup_remove(cg) == 0)
    return;
  jw_cgroup_kill(cg);
  if (!sup->cg_timer_open || (r = calloc(1, sizeof(*r))) == NULL) {
    jw_cgroup_free(cg);
    return;
  }
  r->cg = cg;
  r->next = sup->retries;
  sup->retries = r;
  if (!uv_is_active((uv_handle_t *)&sup->cg_timer))
    uv_timer_start(&sup->cg_timer, on_cg_timer, CG_RETRY_MS, 0);
}

static void on_proc_closed(jw_process_t *proc, void *data) {
  jw_supervisor_t *sup = data;
  (void)proc;
  sup->closing_procs--;
  maybe_shutdown_done(sup);
}

static void free_job(struct job *j);

static void on_job_closed(jw_process_t *proc, void *data) {
  struct job *j = data;
  jw_supervisor_t *sup = j->sup;
  (void)proc;
  j->proc = NULL;
  /* Removed by the retention while its process was closing. */
  if (j->removed)
    free_job(j);
  sup->closing_procs--;
  maybe_shutdown_done(sup);
}

static void remove_job(jw_supervisor_t *sup, struct job *j);

/*
 * The owner's finished job that became final first (not except), or
 * NULL.
 */
static struct job *first_finished(jw_supervisor_t *sup, const char *owner,
                                  const struct job *except, size_t *n) {
  struct job *first = NULL, *j;
  *n = 0;
  for (j = sup->oldest; j != NULL; j = j->newer) {
    if (!j->final || j == except || strcmp(j->owner, owner) != 0)
      continue;
    (*n)++;
    if (first == NULL || j->final_seq < first->final_seq)
      first = j;
  }
  return first;
}

/* Tells the embedder, once per reason, that a job drops output. */
static void report_drop(struct job *j, int err) {
  unsigned bit = err == JW_ELIMIT ? DROP_CAP
                 : err == -EDQUOT ? DROP_DISK
                                  : DROP_WRITE;
  if (!(j->drops_reported & bit)) {
    j->drops_reported |= bit;
    if (j->sup->on_drop != NULL)
      j->sup->on_drop(j->id, j->owner, err, j->sup->drop_data);
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
  size_t n;
  if (max == 0 || j->acct == NULL)
    return len;
  while (j->acct->disk + need > max) {
    struct job *victim = first_finished(sup, j->owner, j, &n);
    if (victim == NULL)
      break;
    remove_job(sup, victim);
  }
  if (j->acct->disk + need <= max)
    return len;
  if (j->acct->disk + JW_OUTLOG_RECORD_HDR >= max)
    return 0;
  return (size_t)(max - j->acct->disk - JW_OUTLOG_RECORD_HDR);
}

static void on_output(jw_process_t *proc, jw_stream_t stream, const char *buf,
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
  if (j->acct != NULL) {
    uint64_t now = jw_outlog_disk_bytes(j->log);
    j->acct->disk += now - j->disk;
    j->disk = now;
  }
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

/* Takes a job out of the deferred-callback queue. */
static void undefer(jw_supervisor_t *sup, struct job *j) {
  struct job **pp = &sup->defer_head;
  struct job *prev = NULL;
  if (!j->deferred)
    return;
  while (*pp != NULL && *pp != j) {
    prev = *pp;
    pp = &(*pp)->dnext;
  }
  if (*pp == j) {
    *pp = j->dnext;
    if (sup->defer_tail == j)
      sup->defer_tail = prev;
  }
  j->dnext = NULL;
  j->deferred = 0;
}

/*
 * Removes a finished job: out of the table and the list, its pending
 * stops answered, its log file unlinked (a subscriber still reading keeps
 * the data until it closes). The memory goes now, or once the job's
 * process handles are closed.
 */
static void remove_job(jw_supervisor_t *sup, struct job *j) {
  struct job **pp = &sup->buckets[hash_id(j->id) & (sup->nbuckets - 1)];
  while (*pp != NULL && *pp != j)
    pp = &(*pp)->hnext;
  if (*pp == j)
    *pp = j->hnext;
  if (j->older != NULL)
    j->older->newer = j->newer;
  else
    sup->oldest = j->newer;
  if (j->newer != NULL)
    j->newer->older = j->older;
  else
    sup->newest = j->older;
  sup->njobs--;
  undefer(sup, j);
  fire_stops(j, 0);
  /* Its file's name goes now; its space once the last reader closes. */
  if (j->acct != NULL) {
    j->acct->disk -= j->disk;
    j->disk = 0;
  }
  jw_outlog_release(j->log, 1);
  j->log = NULL;
  j->removed = 1;
  if (j->proc == NULL)
    free_job(j);
}

/*
 * Keeps at most max_finished_per_owner finished jobs of owner: removes
 * those that finished first (a job that just finished is never the one).
 */
static void retain_finished(jw_supervisor_t *sup, const char *owner) {
  if (sup->max_finished_per_owner == 0)
    return;
  for (;;) {
    size_t n;
    struct job *first = first_finished(sup, owner, NULL, &n);
    if (n <= sup->max_finished_per_owner || first == NULL)
      return;
    remove_job(sup, first);
  }
}

static void on_exit_cb(jw_process_t *proc, const jw_proc_status_t *st,
                       void *data) {
  struct job *j = data;
  jw_supervisor_t *sup = j->sup;

  j->status = *st;
  j->final = 1;
  j->final_seq = ++sup->final_seq;
  sup->nrunning--;
  /* The figures come from the cgroup, so they are read before it goes. */
  if (j->cg != NULL) {
    jw_cgroup_t *cg = j->cg;
    jw_cgroup_usage(cg, &j->usage);
    j->cg = NULL;
    release_cgroup(sup, cg);
  }
  /*
   * The close is counted before any callback of ours runs, so that a
   * shutdown started from one of them waits for it.
   */
  sup->closing_procs++;
  jw_process_close(proc, on_job_closed, j);
  /* Everything the pipes carried is in the log; readers may see the end. */
  jw_outlog_finish(j->log);
  fire_stops(j, 0);
  retain_finished(sup, j->owner);
  maybe_shutdown_done(sup);
}

/* Writes 2 * nbytes random hex digits and a NUL. Returns 0 or -errno. */
static int random_hex(char *out, size_t nbytes) {
  static const char hex[] = "0123456789abcdef";
  unsigned char raw[JW_ID_LEN / 2];
  size_t got = 0, i;

  if (nbytes > sizeof(raw))
    return -EINVAL;
  while (got < nbytes) {
    ssize_t n = getrandom(raw + got, nbytes - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    got += (size_t)n;
  }
  for (i = 0; i < nbytes; i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 15];
  }
  out[2 * nbytes] = '\0';
  return 0;
}

static int make_id(jw_supervisor_t *sup, char out[JW_ID_LEN + 1]) {
  int tries, err;

  for (tries = 0; tries < 8; tries++) {
    if ((err = random_hex(out, JW_ID_LEN / 2)) < 0)
      return err;
    if (find_job(sup, out) == NULL)
      return 0;
  }
  return -EEXIST;
}

static void free_job(struct job *j) {
  size_t i;
  owner_put(j->sup, j->acct);
  free(j->owner);
  free(j->command);
  if (j->args != NULL)
    for (i = 0; i < j->nargs; i++)
      free(j->args[i]);
  free(j->args);
  free(j);
}

int jw_supervisor_start(jw_supervisor_t *sup, const char *owner,
                        const jw_job_spec_t *spec, char id_out[JW_ID_LEN + 1]) {
  jw_process_options_t po;
  struct job *j;
  char *path = NULL;
  size_t i;
  int err;

  if (sup == NULL || spec == NULL || id_out == NULL)
    return JW_EINVAL;
  if (sup->shutting_down)
    return JW_ECLOSED;
  if (spec->command == NULL || spec->command[0] == '\0' ||
      (spec->nargs > 0 && spec->args == NULL) ||
      (spec->nenv > 0 && spec->env == NULL))
    return JW_EINVAL;
  for (i = 0; i < spec->nargs; i++)
    if (spec->args[i] == NULL)
      return JW_EINVAL;
  for (i = 0; i < spec->nenv; i++) {
    const char *eq = spec->env[i] == NULL ? NULL : strchr(spec->env[i], '=');
    if (eq == NULL || eq == spec->env[i])
      return JW_EINVAL;
  }
  if (spec->limits.memory_bytes < 0 || spec->limits.cpu_millis < 0 ||
      spec->limits.io_read_bps < 0 || spec->limits.io_write_bps < 0 ||
      spec->limits.pids < 0)
    return JW_EINVAL;
  if ((spec->limits.memory_bytes > 0 || spec->limits.cpu_millis > 0 ||
       spec->limits.io_read_bps > 0 || spec->limits.io_write_bps > 0 ||
       spec->limits.pids > 0) &&
      (sup->cgroups == NULL ||
       jw_cgroup_mgr_missing(sup->cgroups, &spec->limits) != 0))
    return JW_EUNSUPPORTED;
  if (sup->max_running > 0 && sup->nrunning >= sup->max_running)
    return JW_ELIMIT;
  if (sup->max_running_per_owner > 0 &&
      jw_supervisor_running_owner(sup, owner != NULL ? owner : "") >=
          sup->max_running_per_owner)
    return JW_ELIMIT;

  j = calloc(1, sizeof(*j));
  if (j == NULL)
    return -ENOMEM;
  j->sup = sup;
  j->nargs = spec->nargs;
  j->limits = spec->limits;
  j->isolation = spec->isolation;
  j->uid = spec->set_ids ? spec->uid : geteuid();
  j->gid = spec->set_ids ? spec->gid : getegid();
  j->owner = strdup(owner != NULL ? owner : "");
  j->acct = owner_get(sup, owner != NULL ? owner : "");
  j->command = strdup(spec->command);
  j->args = calloc(spec->nargs + 1, sizeof(char *));
  if (j->owner == NULL || j->acct == NULL || j->command == NULL ||
      j->args == NULL) {
    err = -ENOMEM;
    goto fail;
  }
  for (i = 0; i < spec->nargs; i++) {
    if ((j->args[i] = strdup(spec->args[i])) == NULL) {
      err = -ENOMEM;
      goto fail;
    }
  }
  err = make_id(sup, j->id);
  if (err < 0)
    goto fail;
  path = jw__supervisor_log_path(sup->data_dir, j->id);
  if (path == NULL) {
    err = -ENOMEM;
    goto fail;
  }
  err = jw_outlog_create(path, &j->log);
  if (err < 0)
    goto fail;
  jw_outlog_set_max(j->log, sup->max_output_bytes);
  if (sup->cgroups != NULL) {
    /*
     * Not named after the job: /proc/PID/cgroup is world-readable, and
     * another tenant's job must not learn this job's id from it.
     */
    char cg_name[JW_ID_LEN + 4] = "cg-";
    if ((err = random_hex(cg_name + 3, JW_ID_LEN / 2)) < 0)
      goto fail;
    err = jw_cgroup_create(sup->cgroups, cg_name, &spec->limits, &j->cg);
    if (err < 0) {
      if (err != -ENOMEM)
        err = JW_EUNSUPPORTED;
      goto fail;
    }
  }

  memset(&po, 0, sizeof(po));
  po.command = spec->command;
  po.args = spec->args;
  po.nargs = spec->nargs;
  po.env = spec->env;
  po.nenv = spec->nenv;
  po.working_dir = spec->working_dir;
  po.on_output = on_output;
  po.on_exit = on_exit_cb;
  po.data = j;
  po.cgroup = j->cg;
  po.isolation = spec->isolation;
  po.set_ids = spec->set_ids;
  po.uid = spec->uid;
  po.gid = spec->gid;
  po.no_new_privs = spec->no_new_privs;
  err = jw_process_new(sup->loop, &po, &j->proc);
  if (err < 0) {
    if (err == -EINVAL)
      err = JW_EINVAL;
    goto fail;
  }
  ensure_defer(sup);
  err = jw_process_start(j->proc);
  if (err < 0) {
    /* The process's own handles close on the loop; count them. */
    sup->closing_procs++;
    jw_process_close(j->proc, on_proc_closed, sup);
    j->proc = NULL;
    goto fail;
  }
  free(path);
  jw_process_status(j->proc, &j->status);
  insert_job(sup, j);
  sup->nrunning++;
  memcpy(id_out, j->id, JW_ID_LEN + 1);
  return 0;

fail:
  if (j->cg != NULL) {
    ensure_defer(sup);
    release_cgroup(sup, j->cg);
  }
  if (j->log != NULL)
    jw_outlog_free(j->log, 1);
  free(path);
  free_job(j);
  return err;
}

int jw_supervisor_status(jw_supervisor_t *sup, const char *id,
                         const char *owner, jw_job_info_t *info) {
  struct job *j;
  int err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  fill_info(j, info);
  return 0;
}

int jw_supervisor_stop(jw_supervisor_t *sup, jw_stop_req_t *req, const char *id,
                       const char *owner, jw_stop_cb cb) {
  struct job *j;
  int err;

  if (sup == NULL || req == NULL || cb == NULL)
    return JW_EINVAL;
  err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  if (j->final) {
    err = defer_stops(sup, j);
    if (err < 0)
      return err;
  } else {
    jw_process_stop(j->proc, sup->grace_ms);
  }
  req->cb = cb;
  req->job = j;
  req->next = NULL;
  req->prev = j->stops_tail;
  if (j->stops_tail != NULL)
    j->stops_tail->next = req;
  else
    j->stops = req;
  j->stops_tail = req;
  return 0;
}

void jw_supervisor_stop_cancel(jw_stop_req_t *req) {
  struct job *j;
  if (req == NULL || req->job == NULL)
    return;
  j = req->job;
  if (req->prev != NULL)
    req->prev->next = req->next;
  else
    j->stops = req->next;
  if (req->next != NULL)
    req->next->prev = req->prev;
  else
    j->stops_tail = req->prev;
  req->next = req->prev = NULL;
  req->job = NULL;
}

size_t jw_supervisor_list(jw_supervisor_t *sup, const char *owner,
                          void (*fn)(const jw_job_info_t *info, void *data),
                          void *data) {
  jw_job_info_t info;
  size_t n = 0;
  struct job *j;

  for (j = sup->oldest; j != NULL; j = j->newer) {
    if (owner != NULL && strcmp(owner, j->owner) != 0)
      continue;
    fill_info(j, &info);
    n++;
    if (fn != NULL)
      fn(&info, data);
  }
  return n;
}

static void on_reader_notify(jw_outlog_reader_t *reader, void *data) {
  jw_sub_t *sub = data;
  (void)reader;
  if (sub->cb != NULL)
    sub->cb(sub, sub->data);
}

int jw_supervisor_subscribe(jw_supervisor_t *sup, const char *id,
                            const char *owner, jw_sub_notify_cb notify_cb,
                            void *data, jw_sub_t **out) {
  struct job *j;
  jw_sub_t *sub;
  int err;

  if (sup == NULL || out == NULL)
    return JW_EINVAL;
  err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  sub = calloc(1, sizeof(*sub));
  if (sub == NULL)
    return -ENOMEM;
  sub->cb = notify_cb;
  sub->data = data;
  err = jw_outlog_reader_open(j->log, on_reader_notify, sub, &sub->reader);
  if (err < 0) {
    free(sub);
    return err;
  }
  *out = sub;
  return 0;
}

ssize_t jw_sub_read(jw_sub_t *sub, void *buf, size_t len, jw_stream_t *stream) {
  if (sub == NULL)
    return -EINVAL;
  return jw_outlog_read(sub->reader, buf, len, stream);
}

uint64_t jw_sub_dropped(const jw_sub_t *sub) {
  return sub != NULL ? jw_outlog_reader_dropped(sub->reader) : 0;
}

void jw_sub_close(jw_sub_t *sub) {
  if (sub == NULL)
    return;
  jw_outlog_reader_close(sub->reader);
  free(sub);
}

/* Writes all of buf to fd, waiting for the fd when it is non-blocking. */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT, .revents = 0};
      poll(&pfd, 1, -1);
      continue;
    }
    if (n < 0)
      return -errno;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

ssize_t jw_supervisor_get_output(jw_supervisor_t *sup, const char *id,
                                 const char *owner, int out_fd, int err_fd) {
  jw_outlog_reader_t *r;
  jw_stream_t stream;
  struct job *j;
  ssize_t total = 0;
  char *buf;
  int err;

  if (sup == NULL)
    return JW_EINVAL;
  err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  buf = malloc(COPY_BUF_SIZE);
  if (buf == NULL)
    return -ENOMEM;
  err = jw_outlog_reader_open(j->log, NULL, NULL, &r);
  if (err < 0) {
    free(buf);
    return err;
  }
  for (;;) {
    ssize_t n = jw_outlog_read(r, buf, COPY_BUF_SIZE, &stream);
    if (n == 0 || n == JW_EAGAIN)
      break;
    if (n < 0) {
      total = n;
      break;
    }
    err = write_all(stream == JW_STDERR ? err_fd : out_fd, buf, (size_t)n);
    if (err < 0) {
      total = err;
      break;
    }
    total += n;
  }
  jw_outlog_reader_close(r);
  free(buf);
  return total;
}

size_t jw_supervisor_running(const jw_supervisor_t *sup) {
  return sup->nrunning;
}

size_t jw_supervisor_running_owner(const jw_supervisor_t *sup,
                                   const char *owner) {
  size_t n = 0;
  const struct job *j;
  for (j = sup->oldest; j != NULL; j = j->newer)
    if (!j->final && (owner == NULL || strcmp(owner, j->owner) == 0))
      n++;
  return n;
}

void jw_supervisor_shutdown(jw_supervisor_t *sup,
                            void (*done_cb)(jw_supervisor_t *sup, void *data),
                            void *data) {
  struct job *j;

  if (sup == NULL || sup->shutting_down)
    return;
  sup->shutting_down = 1;
  sup->done_cb = done_cb;
  sup->done_data = data;
  for (j = sup->oldest; j != NULL; j = j->newer)
    if (!j->final && j->proc != NULL)
      jw_process_stop(j->proc, sup->grace_ms);
  maybe_shutdown_done(sup);
}

void jw_supervisor_free(jw_supervisor_t *sup, int keep_logs) {
  struct job *j;

  if (sup == NULL)
    return;
  /* Pending stops learn that their job is gone before it goes. */
  for (j = sup->oldest; j != NULL; j = j->newer)
    fire_stops(j, JW_ECANCELED);
  while (sup->retries != NULL) {
    struct cg_retry *r = sup->retries;
    sup->retries = r->next;
    jw_cgroup_free(r->cg);
    free(r);
  }
  j = sup->oldest;
  while (j != NULL) {
    struct job *next = j->newer;
    jw_cgroup_free(j->cg);
    jw_outlog_free(j->log, !keep_logs);
    free_job(j);
    j = next;
  }
  free(sup->buckets);
  free(sup->data_dir);
  free(sup);
}
