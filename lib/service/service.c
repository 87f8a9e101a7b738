#include "jobworker/service.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "health.h"
#include "jobworker.pb-c.h"
#include "reflection.h"
#include "request.h"
#include "service_int.h"

#define PATH_PREFIX "/jobworker.v1.JobWorker/"

/* Bytes of header room before a JobOutput's data: tag plus a 3-byte
 * length varint (enough for JW_RPC_STREAM_MSG_MAX). */
#define OUTPUT_HEADROOM 4
/* Bytes after a JobOutput's data: the stream (2) and the offset (11). */
#define OUTPUT_TAILROOM 13
/* The data of one JobOutput: the message cap less header and trailer. */
#define OUTPUT_CHUNK_MAX                                                       \
  (JW_RPC_STREAM_MSG_MAX - OUTPUT_HEADROOM - OUTPUT_TAILROOM)

typedef struct {
  jw_outlog_reader_t *sub;
  jw_rpc_call_t *call;
  bool eof;     /* the last message (dropped_bytes) was sent */
  uint64_t end; /* no_follow of a running job: stop at this offset */
  char id[JW_ID_LEN + 1];
} output_stream_t;

typedef struct {
  jw_stop_req_t req;
  jw_rpc_call_t *call;
} stop_call_t;

static Jobworker__V1__EndReason map_reason(jw_end_reason_t r) {
  switch (r) {
  case JW_END_EXITED:
    return JOBWORKER__V1__END_REASON__END_REASON_EXITED;
  case JW_END_SIGNALED:
    return JOBWORKER__V1__END_REASON__END_REASON_SIGNALED;
  case JW_END_STOPPED:
    return JOBWORKER__V1__END_REASON__END_REASON_STOPPED;
  case JW_END_TIMED_OUT:
    return JOBWORKER__V1__END_REASON__END_REASON_TIMED_OUT;
  case JW_END_OOM_KILLED:
    return JOBWORKER__V1__END_REASON__END_REASON_OOM_KILLED;
  case JW_END_SERVER_SHUTDOWN:
    return JOBWORKER__V1__END_REASON__END_REASON_SERVER_SHUTDOWN;
  case JW_END_SERVER_CRASH:
    return JOBWORKER__V1__END_REASON__END_REASON_SERVER_CRASH;
  default:
    return JOBWORKER__V1__END_REASON__END_REASON_UNSPECIFIED;
  }
}

static Jobworker__V1__JobState map_state(jw_proc_state_t s) {
  switch (s) {
  case JW_PROC_RUNNING:
    return JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING;
  case JW_PROC_EXITED:
    return JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED;
  case JW_PROC_SIGNALED:
    return JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED;
  case JW_PROC_STOPPED:
    return JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED;
  default:
    return JOBWORKER__V1__JOB_STATE__JOB_STATE_UNSPECIFIED;
  }
}

/*
 * The message borrows the info's strings and lim; pack it before they can
 * go.
 */
void jw__svc_fill_status(Jobworker__V1__JobStatus *st,
                         Jobworker__V1__Limits *lim,
                         const jw_job_info_t *info) {
  jobworker__v1__job_status__init(st);
  st->id = (char *)info->id;
  st->owner = (char *)info->owner;
  st->command = (char *)info->command;
  st->n_args = info->nargs;
  st->args = (char **)info->args;
  st->state = info->stopping ? JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPING
                             : map_state(info->proc.state);
  st->end_reason = map_reason(info->end_reason);
  st->output_cap_bytes = info->output_cap;
  st->timeout_ms = (int64_t)info->timeout_ms;
  st->pid = info->proc.pid;
  st->exit_code = info->proc.exit_code;
  st->signal = info->proc.signal;
  st->started_at_unix_nano = info->proc.started_at_ns;
  st->ended_at_unix_nano = info->proc.ended_at_ns;
  st->output_bytes = info->output_bytes;
  st->output_dropped_bytes = info->output_dropped;
  jobworker__v1__limits__init(lim);
  lim->memory_bytes = info->limits.memory_bytes;
  lim->cpu_millis = info->limits.cpu_millis;
  lim->io_read_bps = info->limits.io_read_bps;
  lim->io_write_bps = info->limits.io_write_bps;
  lim->pids = info->limits.pids;
  if (lim->memory_bytes || lim->cpu_millis || lim->io_read_bps ||
      lim->io_write_bps || lim->pids)
    st->limits = lim;
  st->oom_killed = info->usage.oom_killed;
  st->cpu_usage_ns = info->usage.cpu_usage_ns;
  st->memory_peak_bytes = info->usage.memory_peak_bytes;
}

/*
 * Packs msg and sends it as the call's one reply. jw_rpc_call_reply
 * copies the bytes, so a reply that fits (a JobStatus, most Lists) is
 * packed on the stack rather than into a buffer of its own.
 */
static void reply_msg(jw_rpc_call_t *call, const ProtobufCMessage *msg) {
  uint8_t small[2048];
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = n <= sizeof(small) ? small : malloc(n);
  if (buf == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  protobuf_c_message_pack(msg, buf);
  jw_rpc_call_reply(call, buf, n);
  if (buf != small)
    free(buf);
}

void jw__svc_reply_status(jw_rpc_call_t *call, const jw_job_info_t *info) {
  Jobworker__V1__JobStatus st;
  Jobworker__V1__Limits lim;
  jw__svc_fill_status(&st, &lim, info);
  reply_msg(call, &st.base);
}

/* Maps a supervisor lookup failure to the status a client can act on. */
void jw__svc_fail_lookup(jw_rpc_call_t *call, int err, const char *id) {
  char q[80], msg[160];
  jw_request_quote(id, q, sizeof(q));
  if (err == JW_ENOTFOUND) {
    snprintf(msg, sizeof(msg), "job %s not found", q);
    jw_rpc_call_fail(call, JW_GRPC_NOT_FOUND, msg);
  } else if (err == JW_EOWNER) {
    snprintf(msg, sizeof(msg), "job %s belongs to another client", q);
    jw_rpc_call_fail(call, JW_GRPC_PERMISSION_DENIED, msg);
  } else {
    snprintf(msg, sizeof(msg), "job %s: %s", q, jw_strerror(err));
    jw_rpc_call_fail(call, JW_GRPC_INTERNAL, msg);
  }
}

static const char *const cap_names[] = {"memory", "cpu", "io", "pids"};

/*
 * Works out the job's limits: the request's, the server's default where
 * it left a field at 0, each checked against the server's maximum and
 * against what the host can enforce. Returns 0, or the gRPC status to
 * fail with after writing a sentence into msg.
 */
static int resolve_limits(const jw_service_t *svc,
                          const Jobworker__V1__JobRequest *r, jw_limits_t *out,
                          char *msg, size_t size) {
  const Jobworker__V1__Limits *rl = r->limits;
  struct {
    const char *name;
    const char *flag;
    int64_t req, def, max, min;
    int64_t *out;
  } f[] = {
      {"memory_bytes", "--max-memory", rl ? rl->memory_bytes : 0,
       svc->default_limits.memory_bytes, svc->max_limits.memory_bytes,
       1024 * 1024, &out->memory_bytes},
      {"cpu_millis", "--max-cpus", rl ? rl->cpu_millis : 0,
       svc->default_limits.cpu_millis, svc->max_limits.cpu_millis, 10,
       &out->cpu_millis},
      {"io_read_bps", "--max-io-read", rl ? rl->io_read_bps : 0,
       svc->default_limits.io_read_bps, svc->max_limits.io_read_bps, 1,
       &out->io_read_bps},
      {"io_write_bps", "--max-io-write", rl ? rl->io_write_bps : 0,
       svc->default_limits.io_write_bps, svc->max_limits.io_write_bps, 1,
       &out->io_write_bps},
      {"pids", "--max-pids", rl ? rl->pids : 0, svc->default_limits.pids,
       svc->max_limits.pids, 1, &out->pids},
  };

  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    if (f[i].req < 0) {
      snprintf(msg, size, "limits.%s must not be negative (0: the default)",
               f[i].name);
      return JW_GRPC_INVALID_ARGUMENT;
    }
    if (f[i].req > 0 && f[i].req < f[i].min) {
      snprintf(msg, size, "limits.%s %lld is below the smallest limit, %lld",
               f[i].name, (long long)f[i].req, (long long)f[i].min);
      return JW_GRPC_INVALID_ARGUMENT;
    }
    if (f[i].max > 0 && f[i].req > f[i].max) {
      snprintf(msg, size,
               "limits.%s %lld is over the server's maximum %lld (%s)",
               f[i].name, (long long)f[i].req, (long long)f[i].max, f[i].flag);
      return JW_GRPC_INVALID_ARGUMENT;
    }
    *f[i].out = f[i].req > 0 ? f[i].req : f[i].def;
  }
  unsigned missing = jw_cgroup_mgr_missing(svc->cgroups, out);
  if (missing != 0) {
    static const unsigned bits[] = {JW_CG_MEMORY, JW_CG_CPU, JW_CG_IO,
                                    JW_CG_PIDS};
    const char *what = "";
    for (size_t i = 0; i < 4; i++)
      if (missing & bits[i]) {
        what = cap_names[i];
        break;
      }
    if (missing & JW_CG_IO && svc->cgroups != NULL &&
        (jw_cgroup_mgr_caps(svc->cgroups) & JW_CG_KILL) &&
        jw_cgroup_mgr_io_device(svc->cgroups) == 0)
      snprintf(msg, size,
               "io limits need an io device on the server (--io-device)");
    else
      snprintf(msg, size,
               "this host cannot enforce %s limits (cgroup backend: %s)", what,
               jw_cgroup_mgr_backend(svc->cgroups));
    return JW_GRPC_FAILED_PRECONDITION;
  }
  return 0;
}

/* Which running-job limit a JW_ELIMIT start hit, with its flag and value. */
static const char *limit_reason(const jw_service_t *svc, const char *cn,
                                char *buf, size_t size) {
  if (svc->max_jobs_per_client > 0 &&
      jw_supervisor_running_owner(svc->sup, cn) >= svc->max_jobs_per_client)
    snprintf(buf, size,
             "running jobs per client limit reached "
             "(--max-jobs-per-client=%zu)",
             svc->max_jobs_per_client);
  else
    snprintf(buf, size, "running jobs limit reached (--max-jobs=%zu)",
             svc->max_jobs);
  return buf;
}

static void on_start(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                     void *data) {
  jw_service_t *svc = data;
  char msg[256], q[80], lim[96], why_buf[160];
  Jobworker__V1__JobRequest *r;
  int rcode = jw_request_decode_start(req, len, &svc->request_limits, &r, msg,
                                      sizeof(msg));
  if (rcode != 0) {
    jw_rpc_call_fail(call, rcode, msg);
    return;
  }
  jw_limits_t limits;
  int lcode = resolve_limits(svc, r, &limits, msg, sizeof(msg));
  if (lcode != 0) {
    jw_rpc_call_fail(call, lcode, msg);
    goto done;
  }
  unsigned iso = 0;
  if (r->isolation != NULL)
    iso = (r->isolation->pid ? JW_ISOLATE_PID : 0) |
          (r->isolation->mount ? JW_ISOLATE_MOUNT : 0) |
          (r->isolation->network ? JW_ISOLATE_NET : 0);
  if (iso != 0 && !svc->allow_isolation) {
    jw_rpc_call_fail(call, JW_GRPC_FAILED_PRECONDITION,
                     "isolation is disabled on this server "
                     "(--allow-isolation=false)");
    goto done;
  }
  jw_user_t user = {0};
  if (svc->users != NULL) {
    int uerr = jw_users_lookup(svc->users, jw_rpc_call_cn(call), &user);
    if (uerr != 0) {
      int code = JW_GRPC_INTERNAL;
      const char *why = why_buf;
      snprintf(why_buf, sizeof(why_buf),
               "cannot be given a uid: the server cannot record it (%s)",
               jw_strerror(uerr));
      if (uerr == JW_EOWNER || uerr == JW_EINVAL)
        code = JW_GRPC_PERMISSION_DENIED,
        why = "may not run jobs on this server";
      else if (uerr == JW_ELIMIT)
        code = JW_GRPC_RESOURCE_EXHAUSTED,
        why = "needs a uid of its own and --job-uid-range has none left";
      snprintf(msg, sizeof(msg), "client %s %s",
               jw_request_quote(jw_rpc_call_cn(call), q, sizeof(q)), why);
      jw_rpc_call_fail(call, code, msg);
      goto done;
    }
  }
  jw_job_spec_t spec = jw_request_job_spec(r);
  spec.limits = limits;
  spec.isolation = iso;
  spec.creds.set_ids = user.set_ids;
  spec.creds.uid = user.uid;
  spec.creds.gid = user.gid;
  spec.creds.no_new_privs = true;
  char id[JW_ID_LEN + 1];
  int err = jw_supervisor_start(svc->sup, jw_rpc_call_cn(call), &spec, id);
  if (err != 0) {
    int code = JW_GRPC_INVALID_ARGUMENT;
    const char *why = jw_strerror(err);
    if (err == -ENOENT)
      why = "command not found";
    else if (err == -EACCES && user.set_ids)
      snprintf(why_buf, sizeof(why_buf),
               "permission denied: the job's user (uid %u) cannot execute it "
               "or enter the working directory",
               (unsigned)user.uid),
          why = why_buf;
    else if (err == -EACCES)
      why = "permission denied (not an executable file)";
    else if (err == -ENOEXEC)
      why = "not an executable format";
    else if (err == -E2BIG)
      why = "arguments and environment too long for the system";
    else if (err == -EMFILE || err == -ENFILE)
      code = JW_GRPC_RESOURCE_EXHAUSTED,
      why = "the server is out of file descriptors";
    else if (err == -EAGAIN || err == -ENOMEM)
      code = JW_GRPC_RESOURCE_EXHAUSTED,
      why = "the server is out of processes or memory";
    else if (err == JW_ELIMIT)
      code = JW_GRPC_RESOURCE_EXHAUSTED,
      why = limit_reason(svc, jw_rpc_call_cn(call), lim, sizeof(lim));
    else if (err == JW_ECLOSED)
      code = JW_GRPC_UNAVAILABLE, why = "the server is shutting down";
    else if (err == JW_EUNSUPPORTED)
      code = JW_GRPC_FAILED_PRECONDITION,
      why = "cannot give the job a cgroup with these limits on this host";
    else if (iso != 0 && (err == -EPERM || err == -EINVAL || err == -ENOSPC))
      code = JW_GRPC_FAILED_PRECONDITION,
      why = "cannot create namespaces (isolation needs root, "
            "CAP_SYS_ADMIN)";
    else if (err != -ENOTDIR && err != -ELOOP && err != -ENAMETOOLONG &&
             err != -E2BIG && err != JW_EINVAL)
      code = JW_GRPC_INTERNAL;
    snprintf(msg, sizeof(msg), "cannot start %s: %s",
             jw_request_quote(r->command, q, sizeof(q)), why);
    jw_rpc_call_fail(call, code, msg);
    goto done;
  }
  jw_rpc_call_set_tag(call, id);
  jw_job_info_t info;
  if (jw_supervisor_status(svc->sup, id, NULL, &info) != 0)
    jw_rpc_call_fail(call, JW_GRPC_INTERNAL, "job vanished after start");
  else
    jw__svc_reply_status(call, &info);
done:
  jobworker__v1__job_request__free_unpacked(r, NULL);
}

static void on_status(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data) {
  jw_service_t *svc = data;
  char *id = jw_request_unpack_id(call, req, len);
  if (id == NULL)
    return;
  jw_job_info_t info;
  int err = jw_supervisor_status(svc->sup, id, jw_rpc_call_cn(call), &info);
  if (err != 0)
    jw__svc_fail_lookup(call, err, id);
  else
    jw__svc_reply_status(call, &info);
  free(id);
}

static void stop_done(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  stop_call_t *sc = req->data;
  if (err != 0)
    jw_rpc_call_fail(sc->call, JW_GRPC_UNAVAILABLE,
                     "the server shut down before the job was final");
  else
    jw__svc_reply_status(sc->call, info);
  free(sc);
}

static void stop_canceled(jw_rpc_call_t *call, void *data) {
  stop_call_t *sc = data;
  jw_supervisor_stop_cancel(&sc->req);
  free(sc);
}

static void on_stop(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  jw_service_t *svc = data;
  char msg[128], *id;
  uint64_t grace;
  int code = jw_request_decode_stop(req, len, &id, &grace, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return;
  }
  jw_rpc_call_set_tag(call, id);
  /* A grace past the server's maximum gets the maximum. */
  uint64_t max = svc->max_stop_timeout_ms != 0
                     ? svc->max_stop_timeout_ms
                     : JW_SERVICE_DEFAULT_MAX_STOP_TIMEOUT_MS;
  if (grace > max)
    grace = max;
  stop_call_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    free(id);
    return;
  }
  sc->call = call;
  sc->req.data = sc;
  int err = jw_supervisor_stop_grace(svc->sup, &sc->req, id,
                                     jw_rpc_call_cn(call), grace, stop_done);
  if (err != 0) {
    jw__svc_fail_lookup(call, err, id);
    free(sc);
  } else {
    jw_rpc_call_on_cancel(call, stop_canceled, sc);
  }
  free(id);
}

static void output_ready(jw_outlog_reader_t *sub, void *data) {
  output_stream_t *os = data;
  jw_rpc_call_resume(os->call);
}

static void output_end(output_stream_t *os) {
  jw_outlog_reader_close(os->sub);
  free(os);
}

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/*
 * Builds one JobOutput in place: the data is read straight into buf after
 * room for the header. The room is what the length varint of the largest
 * possible read takes (3 bytes up to 16383 bytes, the size of a DATA
 * frame that the RPC layer usually pulls into; 4 beyond), so only a
 * shorter read than that has its data moved down.
 */
static ssize_t output_pull(jw_rpc_call_t *call, uint8_t *buf, size_t cap,
                           void *data) {
  output_stream_t *os = data;
  size_t max = cap - OUTPUT_HEADROOM - OUTPUT_TAILROOM;
  if (max > OUTPUT_CHUNK_MAX)
    max = OUTPUT_CHUNK_MAX;
  size_t room = max < 16384 ? 3 : OUTPUT_HEADROOM;
  jw_stream_t stream;
  /* A job removed under the stream (Remove, retention, a disk cap). */
  if (jw_outlog_reader_unlinked(os->sub)) {
    char msg[96];
    snprintf(msg, sizeof(msg), "job %s was removed", os->id);
    jw_rpc_call_pull_status(call, JW_GRPC_NOT_FOUND, msg);
    output_end(os);
    return JW_ENOTFOUND;
  }
  uint64_t off = jw_outlog_reader_offset(os->sub);
  if (off >= os->end) {
    output_end(os);
    return 0;
  }
  if (os->end - off < max)
    max = (size_t)(os->end - off);
  ssize_t n = jw_outlog_read(os->sub, buf + room, max, &stream);
  if (n == JW_EAGAIN)
    return JW_EAGAIN;
  if (n == 0 && !os->eof && jw_outlog_reader_dropped(os->sub) > 0) {
    /* Everything kept was sent: say how much was not. */
    os->eof = true;
    buf[0] = 0x18; /* field 3, varint */
    return (ssize_t)(1 +
                     put_varint(buf + 1, jw_outlog_reader_dropped(os->sub)));
  }
  if (n <= 0) {
    output_end(os);
    return n;
  }
  uint8_t hdr[OUTPUT_HEADROOM];
  hdr[0] = 0x0a; /* field 1, length-delimited */
  size_t h = 1 + put_varint(hdr + 1, (uint64_t)n);
  if (h < room)
    memmove(buf + h, buf + room, (size_t)n);
  memcpy(buf, hdr, h);
  size_t total = h + (size_t)n;
  if (stream == JW_STDERR) {
    buf[total++] = 0x10; /* field 2, varint */
    buf[total++] = JOBWORKER__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR;
  }
  if (off > 0) {
    buf[total++] = 0x20; /* field 4, varint */
    total += put_varint(buf + total, off);
  }
  return (ssize_t)total;
}

static void output_canceled(jw_rpc_call_t *call, void *data) {
  output_end(data);
}

static void on_get_output(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                          void *data) {
  jw_service_t *svc = data;
  Jobworker__V1__GetOutputRequest *r;
  char msg[128];
  int code = jw_request_decode_output(req, len, &r, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return;
  }
  jw_rpc_call_set_tag(call, r->id);
  output_stream_t *os = calloc(1, sizeof(*os));
  if (os == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    goto done;
  }
  os->call = call;
  os->end = UINT64_MAX;
  snprintf(os->id, sizeof(os->id), "%s", r->id);
  const char *cn = jw_rpc_call_cn(call);
  jw_job_info_t info;
  int err = jw_supervisor_status(svc->sup, r->id, cn, &info);
  if (err == 0)
    err = jw_supervisor_subscribe_at(svc->sup, r->id, cn, r->offset,
                                     output_ready, os, &os->sub);
  if (err != 0) {
    jw__svc_fail_lookup(call, err, r->id);
    free(os);
    goto done;
  }
  if (r->tail_lines > 0 &&
      (err = jw_outlog_reader_tail(os->sub, r->tail_lines)) != 0) {
    snprintf(msg, sizeof(msg), "cannot read the job's output: %s",
             jw_strerror(err));
    jw_rpc_call_fail(call, JW_GRPC_INTERNAL, msg);
    output_end(os);
    goto done;
  }
  /*
   * no_follow: what is there now. A final job's stream is that already,
   * and ends as a follow does (with dropped_bytes, if any).
   */
  if (r->no_follow && info.proc.state == JW_PROC_RUNNING)
    os->end = info.output_bytes;
  jw_rpc_call_on_cancel(call, output_canceled, os);
  /*
   * When the stream cannot start (the call was canceled under the
   * handler, or nghttp2 refused the headers) the call is over and owes
   * us neither a pull nor the cancel callback: the subscriber and os
   * are ours to end.
   */
  if (jw_rpc_call_stream(call, output_pull, os) != 0)
    output_end(os);
done:
  jobworker__v1__get_output_request__free_unpacked(r, NULL);
}

/* Bytes of a job's args a List reply keeps when the whole does not fit. */
#define LIST_ARGS_MAX 4096

typedef struct {
  Jobworker__V1__JobStatus *items;
  Jobworker__V1__Limits *lims; /* one per item; items point in once done */
  Jobworker__V1__JobStatus **ptrs;
  size_t n;
  size_t cap;
  bool oom;
} list_acc_t;

static void list_one(const jw_job_info_t *info, void *data) {
  list_acc_t *acc = data;
  if (acc->n == acc->cap) {
    size_t cap = acc->cap ? acc->cap * 2 : 16;
    Jobworker__V1__JobStatus *items = realloc(acc->items, cap * sizeof(*items));
    if (items == NULL) {
      acc->oom = true;
      return;
    }
    acc->items = items;
    Jobworker__V1__Limits *lims = realloc(acc->lims, cap * sizeof(*lims));
    if (lims == NULL) {
      acc->oom = true;
      return;
    }
    acc->lims = lims;
    acc->cap = cap;
  }
  jw__svc_fill_status(&acc->items[acc->n], &acc->lims[acc->n], info);
  acc->n++;
}

/* Bytes a field of len bytes takes in its parent: tag, length, payload. */
static size_t field_cost(size_t len) {
  size_t n = 2;
  for (size_t v = len; v >= 0x80; v >>= 7)
    n++;
  return n + len;
}

static size_t item_cost(const Jobworker__V1__JobStatus *st) {
  return field_cost(protobuf_c_message_get_packed_size(&st->base));
}

/*
 * Bounds the List reply to max bytes, so that any gRPC client can take it
 * (4 MiB is their default receive limit) and a reply costs the server a
 * bounded buffer. When everything does not fit, each job's args are cut
 * to their first LIST_ARGS_MAX bytes (whole arguments; Status has all of
 * them), and if that is not enough either, the oldest jobs are left out:
 * the reply holds the newest jobs that fit, oldest first. Returns the
 * index of the first item to send.
 */
static size_t list_fit(list_acc_t *acc, size_t max) {
  size_t total = 0, first = 0;
  for (size_t i = 0; i < acc->n; i++)
    total += item_cost(&acc->items[i]);
  if (total <= max)
    return 0;
  total = 0;
  for (size_t i = 0; i < acc->n; i++) {
    Jobworker__V1__JobStatus *st = &acc->items[i];
    size_t used = 0, k = 0;
    while (k < st->n_args &&
           used + field_cost(strlen(st->args[k])) <= LIST_ARGS_MAX)
      used += field_cost(strlen(st->args[k++]));
    st->n_args = k;
    total += item_cost(st);
  }
  while (first < acc->n && total > max)
    total -= item_cost(&acc->items[first++]);
  return first;
}

static void on_list(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  jw_service_t *svc = data;
  char msg[128];
  int rcode = jw_request_decode_list(req, len, msg, sizeof(msg));
  if (rcode != 0) {
    jw_rpc_call_fail(call, rcode, msg);
    return;
  }
  list_acc_t acc = {0};
  jw_supervisor_list(svc->sup, jw_rpc_call_cn(call), list_one, &acc);
  if (!acc.oom && acc.n > 0 &&
      (acc.ptrs = malloc(acc.n * sizeof(*acc.ptrs))) == NULL)
    acc.oom = true;
  if (acc.oom) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  } else {
    for (size_t i = 0; i < acc.n; i++) {
      /* The arrays may have moved since the items were filled. */
      if (acc.items[i].limits != NULL)
        acc.items[i].limits = &acc.lims[i];
      acc.ptrs[i] = &acc.items[i];
    }
    size_t first = list_fit(&acc, svc->max_list_bytes > 0 ? svc->max_list_bytes
                                                          : JW_LIST_MAX_BYTES);
    Jobworker__V1__ListResponse resp = JOBWORKER__V1__LIST_RESPONSE__INIT;
    resp.n_jobs = acc.n - first;
    resp.jobs = acc.ptrs + first;
    reply_msg(call, &resp.base);
  }
  free(acc.ptrs);
  free(acc.items);
  free(acc.lims);
}

static const jw_rpc_method_t methods[] = {
    {PATH_PREFIX "Start", on_start, 0},
    {PATH_PREFIX "Status", on_status, 0},
    {PATH_PREFIX "Stop", on_stop, 0},
    {PATH_PREFIX "GetOutput", on_get_output, 0},
    {PATH_PREFIX "List", on_list, 0},
    {PATH_PREFIX "Wait", jw__svc_wait, 0},
    {PATH_PREFIX "Signal", jw__svc_signal, 0},
    {PATH_PREFIX "Remove", jw__svc_remove, 0},
    {"/grpc.health.v1.Health/Check", jw__health_check, 0},
    {"/grpc.health.v1.Health/Watch", jw__health_watch, 0},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
     jw__reflection_info, JW_RPC_METHOD_FIRST_MESSAGE},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     jw__reflection_info, JW_RPC_METHOD_FIRST_MESSAGE},
};

const jw_rpc_method_t *jw_service_methods(size_t *count) {
  *count = sizeof(methods) / sizeof(methods[0]);
  return methods;
}
