/*
 * jw_supervisor: the policy over the job table (jobtable.c): starting,
 * stopping, retention, the disk caps, shutdown and close.
 *
 * A job holds its process until the process is final, then only its final
 * status and its output log, so a finished job costs a few hundred bytes
 * and one descriptor.
 *
 * Lifetime: the supervisor owns two timers from jw_supervisor_new on (the
 * next-turn queue of stop callbacks, and the retries of cgroup removals),
 * and every job's process until its handles are closed. jw_supervisor_close
 * waits for all of them and frees the memory only after its callback, so
 * nothing the loop still holds points into freed memory.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cgroup_int.h"
#include "fs.h"
#include "jobtable_int.h"
#include "jobworker/supervisor.h"
#include "list.h"
#include "logname.h"
#include "precond.h"
#include "process_int.h"
#include "supervisor_int.h"

#define DEFAULT_GRACE_MS JW_SUPERVISOR_DEFAULT_STOP_GRACE_MS

/*
 * A job's cgroup can only be removed once its last process is gone; a
 * process killed in the middle of I/O may take a moment. Removal is
 * retried this often, this many times (then left to the next start).
 */
#define CG_RETRY_MS 100
#define CG_RETRY_MAX 300

/*
 * Every this often, the pooled cgroups beyond what the last period took
 * from the pool are removed, at most POOL_TRIM_MAX at a time: an idle
 * server keeps none for long, a busy one the few its Starts reuse.
 */
#define POOL_TRIM_MS 1000
#define POOL_TRIM_MAX 16

/*
 * A stop request's private part lives in the caller's struct (no
 * allocation, so a stop cannot fail for memory): link_ is a jw__list_t.
 */
_Static_assert(sizeof(((jw_stop_req_t *)0)->link_) == sizeof(jw__list_t),
               "jw_stop_req_t.link_ holds a jw__list_t");
#define REQ_LINK(req) ((jw__list_t *)(void *)(req)->link_)
#define REQ_OF(node)                                                           \
  ((jw_stop_req_t *)(void *)((char *)(node)-offsetof(jw_stop_req_t, link_)))

int jw_supervisor_new(uv_loop_t *loop, const jw_supervisor_options_t *opts,
                      jw_supervisor_t **out) {
  jw_supervisor_t *sup;
  int err;

  if (loop == NULL || opts == NULL || out == NULL || opts->data_dir == NULL ||
      opts->data_dir[0] == '\0')
    return -EINVAL;
  /* The jobs' /dev/null, opened once before the first Start needs it. */
  err = jw__devnull_fd();
  if (err < 0)
    return err;
  err = jw__mkdir_p(opts->data_dir, 0700);
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
  sup->on_job_start = opts->on_job_start;
  sup->on_job_end = opts->on_job_end;
  sup->durable = opts->durable;
  sup->keep_env = opts->keep_env;
  sup->on_record_error = opts->on_record_error;
  if (jw_cgroup_mgr_caps(opts->cgroups) & JW_CG_KILL)
    sup->cgroups = opts->cgroups;
  jw__list_init(&sup->defer_queue);
  jw__list_init(&sup->retries);
  sup->data_dir = strdup(opts->data_dir);
  if (sup->data_dir == NULL || jw__jobtable_init(&sup->table) < 0) {
    free(sup->data_dir);
    free(sup);
    return -ENOMEM;
  }
  /* Timers cannot fail to initialise on a valid loop. */
  uv_timer_init(loop, &sup->defer);
  sup->defer.data = sup;
  if (sup->cgroups != NULL) {
    uv_timer_init(loop, &sup->cg_timer);
    sup->cg_timer.data = sup;
    uv_timer_init(loop, &sup->pool_timer);
    sup->pool_timer.data = sup;
    sup->cg_timer_open = 1;
  }
  jw__durable_init(sup);
  /*
   * The spawn block (spawn.c), while the descriptor table is still small:
   * without it every Start copies the table. Released with sup.
   */
  sup->spawn_block = jw__spawn_reserve() == 0;
  /* Nothing of it is on the loop yet but timers: a close frees it all. */
  if (sup->durable && (err = jw__supervisor_restore(sup, opts)) < 0) {
    jw_supervisor_close(sup, 1, NULL, NULL);
    return err;
  }
  *out = sup;
  return 0;
}

static struct job *find_job(const jw_supervisor_t *sup, const char *id) {
  return job_of(jw__jobtable_find(&sup->table, id));
}

/* Looks a job up and checks its owner (owner NULL skips the check). */
static int lookup(jw_supervisor_t *sup, const char *id, const char *owner,
                  struct job **out) {
  struct job *j = find_job(sup, id);
  if (j == NULL)
    return JW_ENOTFOUND;
  if (owner != NULL && strcmp(owner, owner_name(j)) != 0)
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

void jw__job_fill_info(struct job *j, jw_job_info_t *info) {
  info->id = j->e.id;
  info->owner = owner_name(j);
  info->command = j->command;
  info->args = (const char *const *)j->args;
  info->nargs = j->nargs;
  if (j->e.final || j->proc == NULL)
    info->proc = j->status;
  else
    jw_process_status(j->proc, &info->proc);
  info->output_bytes = jw_outlog_bytes(j->log);
  info->output_dropped = jw_outlog_dropped(j->log);
  info->limits = j->limits;
  info->isolation = j->isolation;
  info->uid = j->uid;
  info->gid = j->gid;
  if (!j->e.final && j->cg != NULL) {
    uint64_t now = uv_hrtime();
    if (j->usage_at == 0 || now - j->usage_at >= USAGE_TTL_NS) {
      jw_cgroup_usage(j->cg, &j->usage);
      j->usage_at = now;
    }
  }
  info->usage = j->usage;
  jw__job_control_info(j, info);
}

/*
 * Completes a job's stop requests one at a time from the head, so that a
 * callback may cancel or add requests while we go.
 */
void jw__job_fire_stops(struct job *j, int err) {
  jw_job_info_t info;
  jw__list_t *n;
  while ((n = jw__list_first(&j->stops)) != NULL) {
    jw_stop_req_t *req = REQ_OF(n);
    jw__list_remove(n);
    req->job_ = NULL;
    jw__job_fill_info(j, &info);
    req->cb_(req, err, &info);
  }
  jw__job_fire_waits(j, err);
}

static void flush_deferred(jw_supervisor_t *sup) {
  jw__list_t *n;
  while ((n = jw__list_first(&sup->defer_queue)) != NULL) {
    jw__list_remove(n);
    jw__job_fire_stops(jw__list_data(n, struct job, deferred), 0);
  }
}

static void close_handles(jw_supervisor_t *sup);

static int shutdown_complete(const jw_supervisor_t *sup) {
  return sup->shutting_down && sup->table.nrunning == 0 &&
         sup->closing_procs == 0 && jw__list_empty(&sup->retries);
}

/*
 * The next turn: stop callbacks of final jobs, then the end of a shutdown
 * (reported from here so that done_cb never runs inside a call of ours).
 */
static void on_defer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  flush_deferred(sup);
  if (!sup->done_due || sup->done || !shutdown_complete(sup))
    return;
  sup->done = 1;
  if (sup->done_cb != NULL)
    sup->done_cb(sup, sup->done_data);
  if (sup->closing)
    close_handles(sup);
}

static void maybe_shutdown_done(jw_supervisor_t *sup) {
  if (sup->done || sup->done_due || !shutdown_complete(sup))
    return;
  sup->done_due = 1;
  uv_timer_start(&sup->defer, on_defer, 0, 0);
}

static int defer_stops(jw_supervisor_t *sup, struct job *j) {
  if (sup->done)
    return JW_ECLOSED;
  if (!jw__list_linked(&j->deferred))
    jw__list_insert_tail(&sup->defer_queue, &j->deferred);
  uv_timer_start(&sup->defer, on_defer, 0, 0);
  return 0;
}

static void on_cg_timer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &sup->retries) {
    struct cg_retry *r = jw__list_data(n, struct cg_retry, node);
    jw_cgroup_kill(r->cg);
    if (jw_cgroup_remove(r->cg) == 0 || ++r->tries >= CG_RETRY_MAX) {
      /* Given up: the next start of the server removes it. */
      if (r->tries >= CG_RETRY_MAX)
        jw_cgroup_free(r->cg);
      jw__list_remove(n);
      free(r);
    }
  }
  if (!jw__list_empty(&sup->retries))
    uv_timer_start(&sup->cg_timer, on_cg_timer, CG_RETRY_MS, 0);
  else
    maybe_shutdown_done(sup);
}

static void on_pool_timer(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  uint64_t taken = sup->cgroups->pool_taken - sup->pool_taken_seen;
  sup->pool_taken_seen = sup->cgroups->pool_taken;
  if (jw__cgroup_pool_trim(sup->cgroups, (size_t)taken, POOL_TRIM_MAX) > 0)
    uv_timer_start(&sup->pool_timer, on_pool_timer, POOL_TRIM_MS, 0);
}

/*
 * The cgroup of a final job of owner's: its usage into *usage, and into
 * the pool for the next Start when it can be reused (cgroup_pool.c), else
 * removed.
 */
static void recycle_cgroup(jw_supervisor_t *sup, jw_cgroup_t *cg,
                           const char *owner, jw_usage_t *usage) {
  int err = -ECANCELED;
  if (sup->cg_timer_open && !sup->shutting_down)
    err = jw__cgroup_pool_put(cg, owner, usage);
  else
    jw_cgroup_usage(cg, usage);
  if (err < 0) {
    jw__supervisor_release_cgroup(sup, cg);
    return;
  }
  if (!uv_is_active((uv_handle_t *)&sup->pool_timer)) {
    sup->pool_taken_seen = sup->cgroups->pool_taken;
    uv_timer_start(&sup->pool_timer, on_pool_timer, POOL_TRIM_MS, 0);
  }
}

/*
 * Removes a job's cgroup, now or, while killed processes are still
 * leaving it, from a timer.
 */
void jw__supervisor_release_cgroup(jw_supervisor_t *sup, jw_cgroup_t *cg) {
  struct cg_retry *r;
  if (cg == NULL || jw_cgroup_remove(cg) == 0)
    return;
  jw_cgroup_kill(cg);
  if (!sup->cg_timer_open || (r = calloc(1, sizeof(*r))) == NULL) {
    jw_cgroup_free(cg);
    return;
  }
  r->cg = cg;
  jw__list_insert_tail(&sup->retries, &r->node);
  if (!uv_is_active((uv_handle_t *)&sup->cg_timer))
    uv_timer_start(&sup->cg_timer, on_cg_timer, CG_RETRY_MS, 0);
}

static void on_proc_closed(jw_process_t *proc, void *data) {
  jw_supervisor_t *sup = data;
  (void)proc;
  sup->closing_procs--;
  maybe_shutdown_done(sup);
}

void jw__job_on_closed(jw_process_t *proc, void *data) {
  struct job *j = data;
  jw_supervisor_t *sup = j->sup;
  (void)proc;
  j->proc = NULL;
  /* Removed by the retention while its process was closing. */
  if (j->removed)
    jw__job_free(j);
  sup->closing_procs--;
  maybe_shutdown_done(sup);
}

void jw__job_on_exit(jw_process_t *proc, const jw_proc_status_t *st,
                     void *data) {
  struct job *j = data;
  jw_supervisor_t *sup = j->sup;

  j->status = *st;
  jw__jobtable_set_final(&sup->table, &j->e);
  j->fin_seq = ++sup->seq;
  /* The figures come from the cgroup, so they are read before it goes. */
  if (j->cg != NULL) {
    jw_cgroup_t *cg = j->cg;
    j->cg = NULL;
    recycle_cgroup(sup, cg, owner_name(j), &j->usage);
  }
  /*
   * The close is counted before any callback of ours runs, so that a
   * shutdown started from one of them waits for it.
   */
  sup->closing_procs++;
  jw_process_close(proc, jw__job_on_closed, j);
  jw__job_control_end(j);
  /* Everything the pipes carried is in the log; readers may see the end. */
  jw_outlog_finish(j->log);
  (void)jw__job_save(j, 1);
  if (sup->on_job_end != NULL) {
    jw_job_info_t info;
    jw__job_fill_info(j, &info);
    sup->on_job_end(&info, sup->drop_data);
  }
  jw__job_fire_stops(j, 0);
  /* A stop callback may have removed nothing: the job is still listed. */
  if (j->e.owner != NULL)
    jw__supervisor_retain_finished(sup, j->e.owner);
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

void jw__job_process_options(struct job *j, jw_process_options_t *po) {
  memset(po, 0, sizeof(*po));
  po->on_output = jw__job_on_output;
  po->on_exit = jw__job_on_exit;
  po->data = j;
  po->cgroup = j->cg;
}

int jw_supervisor_start(jw_supervisor_t *sup, const char *owner,
                        const jw_job_spec_t *spec, char id_out[JW_ID_LEN + 1]) {
  jw_process_options_t po;
  jw__owner_t *o;
  struct job *j;
  char *path = NULL;
  size_t i;
  int err;

  if (sup == NULL || spec == NULL || id_out == NULL)
    return JW_EINVAL;
  if (sup->shutting_down || sup->handed_over)
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
  if (sup->max_running > 0 && sup->table.nrunning >= sup->max_running)
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
  j->uid = spec->creds.set_ids ? spec->creds.uid : geteuid();
  j->gid = spec->creds.set_ids ? spec->creds.gid : getegid();
  jw__list_init(&j->stops);
  jw__list_init(&j->deferred);
  o = jw__jobtable_owner_get(&sup->table, owner != NULL ? owner : "");
  j->command = strdup(spec->command);
  j->args = calloc(spec->nargs + 1, sizeof(char *));
  if (o == NULL || j->command == NULL || j->args == NULL) {
    err = -ENOMEM;
    goto fail;
  }
  for (i = 0; i < spec->nargs; i++) {
    if ((j->args[i] = strdup(spec->args[i])) == NULL) {
      err = -ENOMEM;
      goto fail;
    }
  }
  if (sup->durable && (err = jw__job_keep_spec(j, spec)) < 0)
    goto fail;
  err = make_id(sup, j->e.id);
  if (err < 0)
    goto fail;
  path = jw__supervisor_log_path(sup->data_dir, j->e.id);
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
    if (jw__cgroup_pool_take(sup->cgroups, o->name, &spec->limits, &j->cg) ==
        0) {
      snprintf(j->cg_name, sizeof(j->cg_name), "%s", j->cg->name);
      err = 0;
    } else {
      memcpy(j->cg_name, "cg-", 3);
      if ((err = random_hex(j->cg_name + 3, JW_ID_LEN / 2)) < 0)
        goto fail;
      err = jw_cgroup_create(sup->cgroups, j->cg_name, &spec->limits, &j->cg);
    }
    if (err < 0) {
      if (err != -ENOMEM)
        err = JW_EUNSUPPORTED;
      goto fail;
    }
  }

  jw__job_process_options(j, &po);
  po.command = spec->command;
  po.args = spec->args;
  po.nargs = spec->nargs;
  po.env = spec->env;
  po.nenv = spec->nenv;
  po.working_dir = spec->working_dir;
  po.isolation = spec->isolation;
  po.creds = spec->creds;
  /*
   * The record is on disk before the process exists (a crash from here on
   * finds its cgroup by name) and the Start is answered only after it.
   */
  j->status.state = JW_PROC_RUNNING;
  j->age_seq = ++sup->seq;
  if (sup->durable && (err = jw__job_save_as(j, o->name, 0)) < 0)
    goto fail;
  err = jw_process_new(sup->loop, &po, &j->proc);
  if (err < 0) {
    if (err == -EINVAL)
      err = JW_EINVAL;
    goto fail;
  }
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
  /* It has used nothing yet: no need to read its cgroup for the event. */
  j->usage_at = uv_hrtime();
  jw__jobtable_insert(&sup->table, &j->e, o);
  jw__job_control_start(j, spec);
  /* Its pid goes into the journal at the next flush, if it still runs. */
  if (sup->durable)
    jw__job_stale(j);
  memcpy(id_out, j->e.id, JW_ID_LEN + 1);
  if (sup->on_job_start != NULL) {
    jw_job_info_t info;
    jw__job_fill_info(j, &info);
    sup->on_job_start(&info, sup->drop_data);
  }
  return 0;

fail:
  jw__supervisor_release_cgroup(sup, j->cg);
  jw_outlog_close(j->log, 1);
  jw__job_unsave(sup, j);
  free(path);
  jw__jobtable_owner_put(&sup->table, o);
  jw__job_free(j);
  return err;
}

int jw_supervisor_status(jw_supervisor_t *sup, const char *id,
                         const char *owner, jw_job_info_t *info) {
  struct job *j;
  int err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  jw__job_fill_info(j, info);
  return 0;
}

int jw_supervisor_stop(jw_supervisor_t *sup, jw_stop_req_t *req, const char *id,
                       const char *owner, jw_stop_cb cb) {
  return jw_supervisor_stop_grace(sup, req, id, owner, 0, cb);
}

void jw_supervisor_stop_cancel(jw_stop_req_t *req) {
  if (req == NULL || req->job_ == NULL)
    return;
  jw__list_remove(REQ_LINK(req));
  req->job_ = NULL;
}

size_t jw_supervisor_list(jw_supervisor_t *sup, const char *owner,
                          void (*fn)(const jw_job_info_t *info, void *data),
                          void *data) {
  jw_job_info_t info;
  jw__list_t *head, *node;
  size_t n = 0;

  /* One owner's jobs are on a list of their own: the others are not seen. */
  if (owner != NULL) {
    jw__owner_t *o = jw__jobtable_owner(&sup->table, owner);
    if (o == NULL)
      return 0;
    head = &o->jobs;
  } else {
    head = &sup->table.jobs;
  }
  jw__list_foreach(node, head) {
    struct job *j = job_of(owner != NULL ? jw__jobent_of_owner(node)
                                         : jw__jobent_of_age(node));
    jw__job_fill_info(j, &info);
    n++;
    if (fn != NULL)
      fn(&info, data);
  }
  return n;
}

int jw_supervisor_subscribe(jw_supervisor_t *sup, const char *id,
                            const char *owner, jw_outlog_notify_cb notify_cb,
                            void *data, jw_outlog_reader_t **out) {
  struct job *j;
  int err;

  if (sup == NULL || out == NULL)
    return JW_EINVAL;
  err = lookup(sup, id, owner, &j);
  if (err < 0)
    return err;
  return jw_outlog_reader_open(j->log, notify_cb, data, out);
}

size_t jw_supervisor_running(const jw_supervisor_t *sup) {
  return sup->table.nrunning;
}

size_t jw_supervisor_running_owner(const jw_supervisor_t *sup,
                                   const char *owner) {
  const jw__owner_t *o;
  if (owner == NULL)
    return sup->table.nrunning;
  o = jw__jobtable_owner(&sup->table, owner);
  return o != NULL ? o->nrunning : 0;
}

/* Stops every running job; the shutdown completes when all are final. */
static void begin_shutdown(jw_supervisor_t *sup) {
  jw__list_t *n;
  sup->shutting_down = 1;
  jw__list_foreach(n, &sup->table.jobs) {
    struct job *j = job_of(jw__jobent_of_age(n));
    if (!j->e.final && j->proc != NULL) {
      if (j->ctl.stop_reason == JW_END_NONE)
        j->ctl.stop_reason = JW_END_SERVER_SHUTDOWN;
      jw_process_stop(j->proc, sup->grace_ms);
    }
  }
  maybe_shutdown_done(sup);
}

int jw_supervisor_shutdown(jw_supervisor_t *sup,
                           void (*done_cb)(jw_supervisor_t *sup, void *data),
                           void *data) {
  if (sup == NULL)
    return JW_EINVAL;
  if (sup->shutting_down)
    return JW_ECLOSED;
  sup->done_cb = done_cb;
  sup->done_data = data;
  begin_shutdown(sup);
  return 0;
}

/* The last handle is closed: nothing of the loop points here any more. */
static void on_handle_closed(uv_handle_t *h) {
  jw__supervisor_handle_closed(h->data);
}

void jw__supervisor_handle_closed(jw_supervisor_t *sup) {
  jw__list_t *n, *tmp;

  if (--sup->handles_closing > 0)
    return;
  /* Pending stops learn that their job is gone before it goes. */
  jw__list_foreach(n, &sup->table.jobs)
      jw__job_fire_stops(job_of(jw__jobent_of_age(n)), JW_ECANCELED);
  if (sup->close_cb != NULL)
    sup->close_cb(sup, sup->close_data);
  if (sup->keep_logs)
    jw__durable_flush_now(sup);
  jw__list_foreach_safe(n, tmp, &sup->table.jobs) {
    struct job *j = job_of(jw__jobent_of_age(n));
    jw_cgroup_free(j->cg);
    jw__jobtable_remove(&sup->table, &j->e);
    jw_outlog_close(j->log, !sup->keep_logs);
    jw__job_free(j);
  }
  /* Records go with their logs: kept together or removed together. */
  jw__durable_end(sup);
  jw__jobtable_destroy(&sup->table);
  if (sup->spawn_block)
    jw__spawn_release();
  free(sup->data_dir);
  free(sup);
}

static void close_handles(jw_supervisor_t *sup) {
  sup->handles_closing = 1;
  uv_close((uv_handle_t *)&sup->defer, on_handle_closed);
  if (sup->cg_timer_open) {
    sup->cg_timer_open = 0;
    sup->handles_closing += 2;
    uv_close((uv_handle_t *)&sup->cg_timer, on_handle_closed);
    uv_close((uv_handle_t *)&sup->pool_timer, on_handle_closed);
    /* A server that stops leaves no empty cgroup behind. */
    jw__cgroup_pool_trim(sup->cgroups, 0, SIZE_MAX);
  }
  jw__supervisor_control_close(sup, on_handle_closed);
  sup->handles_closing += jw__durable_close(sup);
}

void jw_supervisor_close(jw_supervisor_t *sup, int keep_logs,
                         void (*close_cb)(jw_supervisor_t *sup, void *data),
                         void *data) {
  if (sup == NULL)
    return;
  JW__CHECK(!sup->closing, "jw_supervisor_close: called twice");
  sup->closing = 1;
  /* Handed-over jobs' logs are the next process's. */
  sup->keep_logs = keep_logs || sup->handed_over;
  sup->close_cb = close_cb;
  sup->close_data = data;
  if (sup->done)
    close_handles(sup);
  else if (!sup->shutting_down)
    begin_shutdown(sup);
}

int jw__supervisor_lookup(jw_supervisor_t *sup, const char *id,
                          const char *owner, struct job **out) {
  return lookup(sup, id, owner, out);
}

int jw__supervisor_defer(jw_supervisor_t *sup, struct job *j) {
  return defer_stops(sup, j);
}
