/*
 * Job control over the supervisor: stop with a grace of its own, wait,
 * signal, remove, the run-time limit (timeout) and why each job ended.
 *
 * The run-time limits share one supervisor timer (no handle per job, so a
 * job's memory never waits for a close callback of its own): it is due at
 * the earliest deadline of the jobs on sup->ctl.timed, an unordered list
 * of at most max_running jobs that is walked when it fires.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "list.h"
#include "process_int.h"
#include "supervisor_int.h"

/* Request links live in the caller's struct: no allocation, as stops. */
_Static_assert(sizeof(((jw_wait_req_t *)0)->link_) == sizeof(jw__list_t),
               "jw_wait_req_t.link_ holds a jw__list_t");
_Static_assert(sizeof(((jw_stop_req_t *)0)->link_) == sizeof(jw__list_t),
               "jw_stop_req_t.link_ holds a jw__list_t");
#define LINK(req) ((jw__list_t *)(void *)(req)->link_)
#define WAIT_OF(node)                                                          \
  ((jw_wait_req_t *)(void *)((char *)(node)-offsetof(jw_wait_req_t, link_)))

/*
 * Finds the caller's job for a call, unless sup is NULL or the call's
 * other arguments are bad (bad_args). Returns 0 with *j set, or -errno
 * (JW_EINVAL, or the lookup's: not found, another owner's).
 */
static int find_job(jw_supervisor_t *sup, bool bad_args, const char *id,
                    const char *owner, struct job **j) {
  if (sup == NULL || bad_args)
    return JW_EINVAL;
  return jw__supervisor_lookup(sup, id, owner, j);
}

/* Asks the job's process to stop, remembering the first reason asked. */
static void stop_job(struct job *j, uint64_t grace_ms, jw_end_reason_t why) {
  if (j->ctl.stop_reason == JW_END_NONE)
    j->ctl.stop_reason = why;
  jw_process_stop(j->proc, grace_ms != 0 ? grace_ms : j->sup->grace_ms);
}

int jw_supervisor_stop_grace(jw_supervisor_t *sup, jw_stop_req_t *req,
                             const char *id, const char *owner,
                             uint64_t grace_ms, jw_stop_cb cb) {
  struct job *j;
  int err;

  err = find_job(sup, req == NULL || cb == NULL, id, owner, &j);
  if (err < 0)
    return err;
  if (j->e.final) {
    err = jw__supervisor_defer(sup, j);
    if (err < 0)
      return err;
  } else {
    stop_job(j, grace_ms, JW_END_STOPPED);
  }
  req->cb_ = cb;
  req->job_ = j;
  jw__list_insert_tail(&j->stops, LINK(req));
  return 0;
}

int jw_supervisor_wait(jw_supervisor_t *sup, jw_wait_req_t *req, const char *id,
                       const char *owner, jw_wait_cb cb) {
  struct job *j;
  int err;

  err = find_job(sup, req == NULL || cb == NULL, id, owner, &j);
  if (err < 0)
    return err;
  /* Answered with the job's stops: at its end, or on the next turn. */
  if (j->e.final && (err = jw__supervisor_defer(sup, j)) < 0)
    return err;
  if (j->ctl.waits.next == NULL)
    jw__list_init(&j->ctl.waits);
  req->cb_ = cb;
  req->job_ = j;
  jw__list_insert_tail(&j->ctl.waits, LINK(req));
  return 0;
}

void jw_supervisor_wait_cancel(jw_wait_req_t *req) {
  if (req == NULL || req->job_ == NULL)
    return;
  jw__list_remove(LINK(req));
  req->job_ = NULL;
}

void jw__job_fire_waits(struct job *j, int err) {
  jw_job_info_t info;
  jw__list_t *n;
  if (j->ctl.waits.next == NULL)
    return;
  /* One at a time from the head: a callback may cancel or add waits. */
  while ((n = jw__list_first(&j->ctl.waits)) != NULL) {
    jw_wait_req_t *req = WAIT_OF(n);
    jw__list_remove(n);
    req->job_ = NULL;
    jw__job_fill_info(j, &info);
    req->cb_(req, err, &info);
  }
}

int jw_supervisor_signal(jw_supervisor_t *sup, const char *id,
                         const char *owner, int sig) {
  struct job *j;
  int err;

  err = find_job(sup, sig < 1 || sig > 64, id, owner, &j);
  if (err < 0)
    return err;
  if (j->e.final || j->proc == NULL)
    return JW_ECLOSED;
  err = jw_process_signal(j->proc, sig);
  if (err == 0)
    j->ctl.signals |= 1ULL << (sig - 1);
  return err;
}

int jw_supervisor_subscribe_at(jw_supervisor_t *sup, const char *id,
                               const char *owner, uint64_t offset,
                               jw_outlog_notify_cb notify_cb, void *data,
                               jw_outlog_reader_t **out) {
  struct job *j;
  int err;

  err = find_job(sup, out == NULL, id, owner, &j);
  if (err < 0)
    return err;
  return jw_outlog_reader_open_at(j->log, offset, notify_cb, data, out);
}

int jw_supervisor_remove(jw_supervisor_t *sup, const char *id,
                         const char *owner) {
  struct job *j;
  int err;

  err = find_job(sup, false, id, owner, &j);
  if (err < 0)
    return err;
  if (!j->e.final)
    return -EBUSY;
  jw__supervisor_remove_job(sup, j);
  return 0;
}

static void on_timeout(uv_timer_t *t);

/* Starts the timer for the earliest deadline on the list, or stops it. */
static void rearm(jw_supervisor_t *sup) {
  uint64_t first = UINT64_MAX, now = uv_now(sup->loop);
  jw__list_t *n;
  jw__list_foreach(n, &sup->ctl.timed) {
    struct job *j = jw__list_data(n, struct job, ctl.timed);
    if (j->ctl.deadline < first)
      first = j->ctl.deadline;
  }
  if (first == UINT64_MAX)
    uv_timer_stop(&sup->ctl.timer);
  else
    uv_timer_start(&sup->ctl.timer, on_timeout, first > now ? first - now : 0,
                   0);
}

/* Stops every job whose limit passed, as a client's Stop would. */
static void on_timeout(uv_timer_t *t) {
  jw_supervisor_t *sup = t->data;
  uint64_t now = uv_now(sup->loop);
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &sup->ctl.timed) {
    struct job *j = jw__list_data(n, struct job, ctl.timed);
    if (j->ctl.deadline > now)
      continue;
    jw__list_remove(n);
    if (!j->e.final && j->proc != NULL)
      stop_job(j, 0, JW_END_TIMED_OUT);
  }
  rearm(sup);
}

void jw__job_control_start(struct job *j, const jw_job_spec_t *spec) {
  j->ctl.timeout_ms = spec->timeout_ms;
  if (spec->timeout_ms != 0)
    jw__job_control_arm(j, spec->timeout_ms);
}

void jw__job_control_adopted(struct job *j) {
  struct timespec ts;
  int64_t now_ns, ran_ms;
  if (j->ctl.timeout_ms == 0)
    return;
  /* What is left of the limit: it counts from the job's start. */
  clock_gettime(CLOCK_REALTIME, &ts);
  now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  ran_ms = now_ns > j->status.started_at_ns
               ? (now_ns - j->status.started_at_ns) / 1000000
               : 0;
  jw__job_control_arm(j, (uint64_t)ran_ms < j->ctl.timeout_ms
                             ? j->ctl.timeout_ms - (uint64_t)ran_ms
                             : 1);
}

void jw__job_control_arm(struct job *j, uint64_t in_ms) {
  jw_supervisor_t *sup = j->sup;
  uint64_t now;

  if (!sup->ctl.timer_open) {
    /* A timer cannot fail to initialise on a valid loop. */
    uv_timer_init(sup->loop, &sup->ctl.timer);
    sup->ctl.timer.data = sup;
    sup->ctl.timer_open = 1;
    jw__list_init(&sup->ctl.timed);
  }
  /* The limit counts from the start, not from the loop's cached time. */
  uv_update_time(sup->loop);
  now = uv_now(sup->loop);
  j->ctl.deadline = in_ms > UINT64_MAX - now ? UINT64_MAX - 1 : now + in_ms;
  jw__list_insert_tail(&sup->ctl.timed, &j->ctl.timed);
  rearm(sup);
}

/* Why a job ended, from how it ended and what was asked of it. */
static jw_end_reason_t end_reason(const struct job *j) {
  const jw_proc_status_t *st = &j->status;
  switch (st->state) {
  case JW_PROC_EXITED:
    return JW_END_EXITED;
  case JW_PROC_STOPPED:
    if (j->ctl.stop_reason != JW_END_NONE)
      return j->ctl.stop_reason;
    return j->sup->shutting_down ? JW_END_SERVER_SHUTDOWN : JW_END_STOPPED;
  case JW_PROC_SIGNALED:
    if (st->signal >= 1 && st->signal <= 64 &&
        (j->ctl.signals & (1ULL << (st->signal - 1))))
      return JW_END_STOPPED;
    if (st->signal == SIGKILL && j->usage.oom_killed)
      return JW_END_OOM_KILLED;
    return JW_END_SIGNALED;
  default:
    return JW_END_NONE;
  }
}

void jw__job_control_end(struct job *j) {
  j->ctl.end_reason = end_reason(j);
  if (jw__list_linked(&j->ctl.timed)) {
    jw__list_remove(&j->ctl.timed);
    rearm(j->sup);
  }
}

void jw__job_control_info(const struct job *j, jw_job_info_t *info) {
  info->end_reason = j->e.final ? j->ctl.end_reason : JW_END_NONE;
  info->stopping = !j->e.final && j->proc != NULL && j->proc->stop_requested;
  info->output_cap = j->sup->max_output_bytes;
  info->timeout_ms = j->ctl.timeout_ms;
}

void jw__supervisor_control_close(jw_supervisor_t *sup, uv_close_cb close_cb) {
  if (!sup->ctl.timer_open)
    return;
  sup->ctl.timer_open = 0;
  sup->handles_closing++;
  uv_close((uv_handle_t *)&sup->ctl.timer, close_cb);
}

const char *jw_end_reason_name(jw_end_reason_t r) {
  static const char *const names[] = {
      [JW_END_NONE] = "",
      [JW_END_EXITED] = "exited",
      [JW_END_SIGNALED] = "signaled",
      [JW_END_STOPPED] = "stopped",
      [JW_END_TIMED_OUT] = "timed_out",
      [JW_END_OOM_KILLED] = "oom_killed",
      [JW_END_SERVER_SHUTDOWN] = "server_shutdown",
      [JW_END_SERVER_CRASH] = "server_crash",
  };
  if ((unsigned)r >= sizeof(names) / sizeof(names[0]))
    return "";
  return names[r];
}
