/*
 * jw-load: the benchmark's load generator. It drives a JobWorker server
 * (teleportd, or the gRPC C++ peer) through lib/rpc's client role on one
 * libuv loop: many mutual-TLS connections, many concurrent streams on each,
 * everything bounded in count and in time. It talks to loopback addresses
 * only. Each run prints one JSON object on stdout; failures go to stderr
 * with exit status 1.
 *
 * Modes:
 *   unary   Status of one `sleep 600` job (or of --job), --inflight
 *           calls kept in flight over --conns connections for --duration
 *           seconds after --warmup; QPS and latency percentiles.
 *   start   Start of /bin/true the same way; jobs per second.
 *           Both send as the loop goes: a call issued while others complete
 *           in the same turn leaves in one write with them (~16 calls per
 *           TCP segment at 64 in flight). With --unbatched each call is
 *           issued on a turn of its own, so that it leaves in a write of its
 *           own, as a real gRPC client sends it (one write, one read per
 *           call).
 *   stream  --subs GetOutput streams over --conns connections of one job:
 *           a new `head -c --bytes /dev/zero` (live), or --job ID, or with
 *           --replay the new job once it is final; aggregate MiB/s.
 *   nobody  Starts `head -c --bytes /dev/zero`, reads nothing, waits until
 *           the job is final; the server's RSS growth meanwhile.
 *           In stream, nobody and stall, --lines N makes the job
 *           `awk 'BEGIN{for(i=0;i<N;i++){print i; fflush()}}'` instead (one
 *           write per line; the streams' bytes checked against its length).
 *   idle    Opens --conns connections that stay idle; the server's RSS
 *           growth per connection.
 *   stall   Opens --subs GetOutput streams over --conns connections of
 *           --job, or of a new job of --bytes once it is final, and stops
 *           reading each after its first message; the server's RSS growth
 *           per stalled stream.
 *
 * With --server-pid the server's RSS (VmRSS) is sampled every 10 ms and
 * its CPU time read at the start and end of the measured window.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "jobworker.pb-c.h"
#include "jobworker/rpc.h"

#define PATH_PREFIX "/jobworker.v1.JobWorker/"
#define MAX_CONNECTING 16
#define SAMPLE_MS 10
#define POLL_MS 20
#define MAX_LATENCIES (16u * 1024 * 1024)
/* --lines: 10M lines are 78 MiB of output. */
#define MAX_LINES 10000000u

typedef enum {
  MODE_UNARY,
  MODE_START,
  MODE_STREAM,
  MODE_NOBODY,
  MODE_IDLE,
  MODE_STALL
} run_mode_t;

typedef struct load_s load_t;
typedef void (*step_fn)(load_t *ld);

typedef struct {
  load_t *ld;
  jw_rpc_client_t *cli;
} conn_t;

/* One closed-loop caller of the unary modes, bound to one connection. */
typedef struct {
  load_t *ld;
  conn_t *conn;
  uint64_t t0;
} slot_t;

/* One GetOutput stream of the stream and stall modes. */
typedef struct {
  load_t *ld;
  jw_rpc_ccall_t *call;
  uint64_t bytes;
  bool first;
} sub_t;

typedef struct {
  uint64_t wall_ns;
  double server_s;      /* the server's user+system CPU time */
  double client_s;      /* this process's */
  double server_wait_s; /* time the server's threads waited for a CPU */
  double client_wait_s; /* and this process's */
} cpu_mark_t;

struct load_s {
  uv_loop_t loop;
  /* Options. */
  const char *mode_name;
  const char *addr, *cacert, *cert, *key;
  double duration_s, warmup_s, settle_s, timeout_s;
  uint64_t bytes;
  uint64_t lines; /* --lines: the job prints this many lines instead */
  const char *job_opt;

  jw_tls_ctx_t *tls;
  conn_t *conns;
  step_fn on_up;
  const char *phase;

  uv_timer_t sampler, guard, delay, poll;
  step_fn after_delay;
  step_fn on_final;

  char job_id[64];
  uint64_t job_output_bytes;

  /* Unary. */
  uint8_t *req;
  size_t reqlen;
  const char *path;
  slot_t *slots;
  /* --unbatched: the slots waiting for a turn of their own, a ring of
   * --inflight entries, issued one per turn by the idle handle. */
  uv_idle_t issuer;
  slot_t **ready;
  uint64_t t_measure, t_stop;
  uint64_t ok, errors;
  uint64_t *lat;
  size_t nlat, caplat;
  char first_error[256];

  /* Streams. */
  sub_t *subs;
  uint64_t total_bytes;
  uint64_t t_begin, t_end;

  /* Measurements. */
  cpu_mark_t cpu0, cpu1;
  long rss_base, rss_peak, rss_after; /* KiB */

  /* The scalars last, together, so that the struct has no holes: options,
   * connections, the loop's state, unary, streams. */
  run_mode_t mode;
  int nconns, inflight, nsubs;
  int server_pid;
  int nlaunched, nconnecting, nup, target;
  int nopen; /* clients not yet closed */
  int exit_code;
  int outstanding;
  int ready_head, ready_len; /* the --unbatched ring */
  int ndone, nfirst;
  bool replay;
  bool unbatched;
  bool finishing;
  bool polling, poll_inflight;
  bool issuer_init;
};

static void finish(load_t *ld);

/* ---- Small helpers ------------------------------------------------------ */

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static void fail(load_t *ld, const char *fmt, ...) {
  va_list ap;
  if (ld->exit_code != 0 || ld->finishing)
    return;
  fprintf(stderr, "jw-load %s: ", ld->mode_name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  ld->exit_code = 1;
  finish(ld);
}

static long read_rss_kb(int pid) {
  char path[64], line[256];
  long kb = -1;
  if (pid <= 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

/* The user+system CPU seconds of a process (all its threads). */
static double read_cpu_s(int pid) {
  char path[64], buf[1024];
  if (pid <= 0)
    return 0;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  /* After the command: state, then fields 4..13, then utime and stime. */
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                          "%llu %llu",
                          &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * The seconds a process's threads spent runnable but waiting for a CPU
 * (the second field of each thread's schedstat): how much other load on
 * the machine took from the measured processes.
 */
static double read_wait_s(int pid) {
  char path[64], line[128];
  double total = 0;
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char f[384];
    snprintf(f, sizeof(f), "%s/%s/schedstat", path, e->d_name);
    FILE *fp = fopen(f, "r");
    if (fp == NULL)
      continue;
    unsigned long long run = 0, wait = 0;
    if (fgets(line, sizeof(line), fp) != NULL &&
        sscanf(line, "%llu %llu", &run, &wait) == 2)
      total += (double)wait / 1e9;
    fclose(fp);
  }
  closedir(d);
  return total;
}

static void cpu_mark(load_t *ld, cpu_mark_t *m) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  m->wall_ns = uv_hrtime();
  m->server_s = read_cpu_s(ld->server_pid);
  m->server_wait_s = ld->server_pid > 0 ? read_wait_s(ld->server_pid) : 0;
  m->client_wait_s = read_wait_s(getpid());
  m->client_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sample_rss(load_t *ld) {
  long kb = read_rss_kb(ld->server_pid);
  if (kb > ld->rss_peak)
    ld->rss_peak = kb;
}

static void on_sample(uv_timer_t *t) { sample_rss(t->data); }

static void on_delay(uv_timer_t *t) {
  load_t *ld = t->data;
  step_fn fn = ld->after_delay;
  ld->after_delay = NULL;
  if (fn != NULL && !ld->finishing)
    fn(ld);
}

/* Runs fn from the loop after ms milliseconds (one pending at a time). */
static void after(load_t *ld, double ms, step_fn fn) {
  ld->after_delay = fn;
  uv_timer_start(&ld->delay, on_delay, (uint64_t)(ms < 0 ? 0 : ms), 0);
}

static void on_guard(uv_timer_t *t) {
  load_t *ld = t->data;
  fail(ld, "timed out after %.0f s while %s", ld->timeout_s, ld->phase);
}

/* Reads the id (field 1) and state and output_bytes of a JobStatus. */
static int parse_status(load_t *ld, const uint8_t *msg, size_t len,
                        int *state) {
  Jobworker__V1__JobStatus *st =
      jobworker__v1__job_status__unpack(NULL, len, msg);
  if (st == NULL)
    return -1;
  snprintf(ld->job_id, sizeof(ld->job_id), "%s", st->id);
  ld->job_output_bytes = st->output_bytes;
  *state = st->state;
  jobworker__v1__job_status__free_unpacked(st, NULL);
  return 0;
}

/* The length of the data field of a JobOutput, read without a copy. */
static uint64_t output_data_len(const uint8_t *m, size_t n) {
  if (n < 2 || m[0] != 0x0a)
    return 0;
  uint64_t v = 0;
  for (size_t i = 1, shift = 0; i < n && shift < 64; i++, shift += 7) {
    v |= (uint64_t)(m[i] & 0x7f) << shift;
    if ((m[i] & 0x80) == 0)
      return v <= n - i - 1 ? v : 0;
  }
  return 0;
}

static int pack_id(const char *id, bool stop, uint8_t **out, size_t *len) {
  Jobworker__V1__StatusRequest sr = JOBWORKER__V1__STATUS_REQUEST__INIT;
  Jobworker__V1__StopRequest pr = JOBWORKER__V1__STOP_REQUEST__INIT;
  const ProtobufCMessage *m = stop ? &pr.base : &sr.base;
  sr.id = (char *)id;
  pr.id = (char *)id;
  *len = protobuf_c_message_get_packed_size(m);
  *out = malloc(*len ? *len : 1);
  if (*out == NULL)
    return -1;
  protobuf_c_message_pack(m, *out);
  return 0;
}

static int pack_job(const char *command, char **args, size_t nargs,
                    uint8_t **out, size_t *len) {
  Jobworker__V1__JobRequest jr = JOBWORKER__V1__JOB_REQUEST__INIT;
  jr.command = (char *)command;
  jr.args = args;
  jr.n_args = nargs;
  *len = jobworker__v1__job_request__get_packed_size(&jr);
  *out = malloc(*len ? *len : 1);
  if (*out == NULL)
    return -1;
  jobworker__v1__job_request__pack(&jr, *out);
  return 0;
}

/* ---- Connections -------------------------------------------------------- */

static void connect_more(load_t *ld);

static void on_connect(jw_rpc_client_t *cli, int err, void *data) {
  conn_t *c = data;
  load_t *ld = c->ld;
  ld->nconnecting--;
  if (ld->finishing)
    return;
  if (err != 0) {
    const char *why = jw_rpc_client_error(cli);
    fail(ld, "connect %s: %s%s%s", ld->addr, jw_strerror(err),
         why[0] ? ": " : "", why);
    return;
  }
  ld->nup++;
  connect_more(ld);
  if (ld->nup == ld->target && ld->on_up != NULL) {
    step_fn fn = ld->on_up;
    ld->on_up = NULL;
    fn(ld);
  }
}

/* Connects until target connections are up, MAX_CONNECTING at a time. */
static void connect_more(load_t *ld) {
  while (ld->nlaunched < ld->target && ld->nconnecting < MAX_CONNECTING) {
    conn_t *c = &ld->conns[ld->nlaunched];
    jw_rpc_client_options_t o = {.addr = ld->addr, .tls = ld->tls};
    c->ld = ld;
    int err = jw_rpc_client_new(&ld->loop, &o, &c->cli);
    if (err != 0) {
      fail(ld, "client: %s", jw_strerror(err));
      return;
    }
    ld->nlaunched++;
    ld->nopen++;
    err = jw_rpc_client_connect(c->cli, on_connect, c);
    if (err != 0) {
      fail(ld, "connect %s: %s", ld->addr, jw_strerror(err));
      return;
    }
    ld->nconnecting++;
  }
}

/* Brings up connections [0, target) and then runs fn. */
static void connect_to(load_t *ld, int target, step_fn fn) {
  ld->target = target;
  ld->on_up = fn;
  ld->phase = "connecting";
  if (ld->nup >= target) {
    ld->on_up = NULL;
    fn(ld);
    return;
  }
  connect_more(ld);
}

static void on_client_closed(jw_rpc_client_t *cli, void *data) {
  conn_t *c = data;
  c->cli = NULL;
  c->ld->nopen--;
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void on_finish(uv_timer_t *t) {
  load_t *ld = t->data;
  for (int i = 0; i < ld->nlaunched; i++)
    if (ld->conns[i].cli != NULL)
      jw_rpc_client_close(ld->conns[i].cli, on_client_closed, &ld->conns[i]);
  close_handle((uv_handle_t *)&ld->sampler);
  close_handle((uv_handle_t *)&ld->guard);
  close_handle((uv_handle_t *)&ld->delay);
  close_handle((uv_handle_t *)&ld->poll);
  if (ld->issuer_init)
    close_handle((uv_handle_t *)&ld->issuer);
}

/*
 * Ends the run: closes every connection (calls still in flight end with
 * their done callback) and every timer, from the loop rather than from
 * the callback that decided it, so no client is closed under its own
 * callback.
 */
static void finish(load_t *ld) {
  if (ld->finishing)
    return;
  ld->finishing = true;
  uv_timer_stop(&ld->sampler);
  uv_timer_stop(&ld->guard);
  uv_timer_stop(&ld->poll);
  uv_timer_start(&ld->delay, on_finish, 0, 0);
}

/* ---- Job status polling ------------------------------------------------- */

static void poll_send(uv_timer_t *t);

static void on_poll_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                        void *data) {
  load_t *ld = data;
  int state = 0;
  if (parse_status(ld, msg, len, &state) != 0) {
    fail(ld, "cannot parse JobStatus");
    return;
  }
  if (state != JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING)
    ld->polling = false;
}

static void on_poll_done(jw_rpc_ccall_t *call, int status, const char *message,
                         void *data) {
  load_t *ld = data;
  ld->poll_inflight = false;
  if (ld->finishing)
    return;
  if (status != JW_GRPC_OK) {
    fail(ld, "Status: %s: %s", jw_grpc_status_name(status), message);
    return;
  }
  if (!ld->polling) {
    step_fn fn = ld->on_final;
    ld->on_final = NULL;
    uv_timer_stop(&ld->poll);
    fn(ld);
  }
}

static void poll_send(uv_timer_t *t) {
  load_t *ld = t->data;
  uint8_t *req;
  size_t len;
  if (ld->poll_inflight || ld->finishing)
    return;
  if (pack_id(ld->job_id, false, &req, &len) != 0) {
    fail(ld, "out of memory");
    return;
  }
  int err = jw_rpc_client_call(ld->conns[0].cli, PATH_PREFIX "Status", req, len,
                               0, on_poll_msg, on_poll_done, ld, NULL);
  free(req);
  if (err != 0) {
    fail(ld, "Status: %s", jw_strerror(err));
    return;
  }
  ld->poll_inflight = true;
}

/* Polls Status of job_id until the job is final, then runs fn. */
static void wait_final(load_t *ld, step_fn fn) {
  ld->phase = "waiting for the job to end";
  ld->polling = true;
  ld->on_final = fn;
  uv_timer_start(&ld->poll, poll_send, 0, POLL_MS);
}

/* ---- Starting a job ----------------------------------------------------- */

static step_fn start_next;
static int start_state;

static void on_start_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                         void *data) {
  load_t *ld = data;
  if (parse_status(ld, msg, len, &start_state) != 0)
    fail(ld, "cannot parse JobStatus");
}

static void on_start_done(jw_rpc_ccall_t *call, int status, const char *message,
                          void *data) {
  load_t *ld = data;
  if (ld->finishing)
    return;
  if (status != JW_GRPC_OK || ld->job_id[0] == '\0') {
    fail(ld, "Start: %s: %s", jw_grpc_status_name(status), message);
    return;
  }
  start_next(ld);
}

/* Starts command args... on the first connection, then runs fn. */
static void start_job(load_t *ld, const char *command, char **args,
                      size_t nargs, step_fn fn) {
  uint8_t *req;
  size_t len;
  ld->phase = "starting the job";
  ld->job_id[0] = '\0';
  start_next = fn;
  if (pack_job(command, args, nargs, &req, &len) != 0) {
    fail(ld, "out of memory");
    return;
  }
  int err = jw_rpc_client_call(ld->conns[0].cli, PATH_PREFIX "Start", req, len,
                               0, on_start_msg, on_start_done, ld, NULL);
  free(req);
  if (err != 0)
    fail(ld, "Start: %s", jw_strerror(err));
}

static void start_output_job(load_t *ld, step_fn fn) {
  if (ld->lines > 0) {
    char prog[96];
    snprintf(prog, sizeof(prog),
             "BEGIN{for(i=0;i<%" PRIu64 ";i++){print i; fflush()}}", ld->lines);
    char *args[] = {prog};
    start_job(ld, "awk", args, 1, fn);
    return;
  }
  char size[32];
  snprintf(size, sizeof(size), "%" PRIu64, ld->bytes);
  char *args[] = {"-c", size, "/dev/zero"};
  start_job(ld, "head", args, 3, fn);
}

/* ---- Unary modes -------------------------------------------------------- */

static void slot_issue(slot_t *s);
static void unary_stop_job(load_t *ld);

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_us(load_t *ld, double p) {
  if (ld->nlat == 0)
    return 0;
  size_t i = (size_t)(p * (double)(ld->nlat - 1) + 0.5);
  return (double)ld->lat[i] / 1000.0;
}

static void unary_report(load_t *ld) {
  double window = secs(ld->t_stop - ld->t_measure);
  double cpu_window = secs(ld->cpu1.wall_ns - ld->cpu0.wall_ns);
  qsort(ld->lat, ld->nlat, sizeof(ld->lat[0]), cmp_u64);
  printf("{\"mode\":\"%s\",\"batched\":%s,\"conns\":%d,\"inflight\":%d,"
         "\"seconds\":%.3f,"
         "\"calls\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"qps\":%.1f,"
         "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
         "\"server_cpu\":%.3f,\"client_cpu\":%.3f,\"server_runq\":%.3f,"
         "\"client_runq\":%.3f,\"rss_peak_kib\":%ld}\n",
         ld->mode_name, ld->unbatched ? "false" : "true", ld->nconns,
         ld->inflight, window, ld->ok, ld->errors, (double)ld->ok / window,
         pct_us(ld, 0.5), pct_us(ld, 0.9), pct_us(ld, 0.99),
         (ld->cpu1.server_s - ld->cpu0.server_s) / cpu_window,
         (ld->cpu1.client_s - ld->cpu0.client_s) / cpu_window,
         (ld->cpu1.server_wait_s - ld->cpu0.server_wait_s) / cpu_window,
         (ld->cpu1.client_wait_s - ld->cpu0.client_wait_s) / cpu_window,
         ld->rss_peak);
  fflush(stdout);
}

static void unary_drained(load_t *ld) {
  if (ld->cpu1.wall_ns == 0)
    cpu_mark(ld, &ld->cpu1);
  if (ld->errors > 0 && ld->ok == 0) {
    fail(ld, "every call failed; the first: %s", ld->first_error);
    return;
  }
  unary_report(ld);
  if (ld->mode == MODE_UNARY)
    unary_stop_job(ld);
  else
    finish(ld);
}

static void on_unary_done(jw_rpc_ccall_t *call, int status, const char *message,
                          void *data) {
  slot_t *s = data;
  load_t *ld = s->ld;
  if (ld->finishing)
    return;
  uint64_t now = uv_hrtime();
  bool in_window = now >= ld->t_measure && now <= ld->t_stop;
  /* The window's marks are taken as calls complete, on the same clock as
   * the window itself; a timer would fire on the loop's cached time. */
  if (ld->cpu0.wall_ns == 0 && now >= ld->t_measure)
    cpu_mark(ld, &ld->cpu0);
  if (ld->cpu1.wall_ns == 0 && now >= ld->t_stop)
    cpu_mark(ld, &ld->cpu1);
  if (status != JW_GRPC_OK) {
    if (ld->errors++ == 0)
      snprintf(ld->first_error, sizeof(ld->first_error), "%s: %s",
               jw_grpc_status_name(status), message);
  } else if (in_window) {
    ld->ok++;
    if (ld->nlat < ld->caplat)
      ld->lat[ld->nlat++] = now - s->t0;
  }
  if (ld->errors > 100 && ld->errors > ld->ok) {
    fail(ld, "too many failed calls; the first: %s", ld->first_error);
    return;
  }
  if (now < ld->t_stop) {
    slot_issue(s);
  } else if (--ld->outstanding == 0) {
    unary_drained(ld);
  }
}

static void slot_send(slot_t *s) {
  load_t *ld = s->ld;
  int err = jw_rpc_client_call(s->conn->cli, ld->path, ld->req, ld->reqlen, 0,
                               NULL, on_unary_done, s, NULL);
  if (err != 0)
    fail(ld, "call: %s", jw_strerror(err));
}

/* One call per turn: lib/rpc sends what a turn queued on the next one (its
 * own idle handle, which libuv runs before this one, started later), so the
 * call issued here leaves alone. The latency counts from the moment the slot
 * is ready (slot_issue), as a client's does: the wait for a turn is the
 * client's own queueing. */
static void on_issuer(uv_idle_t *h) {
  load_t *ld = h->data;
  if (ld->ready_len == 0 || ld->finishing) {
    uv_idle_stop(h);
    return;
  }
  slot_t *s = ld->ready[ld->ready_head];
  ld->ready_head = (ld->ready_head + 1) % ld->inflight;
  ld->ready_len--;
  slot_send(s);
}

static void slot_issue(slot_t *s) {
  load_t *ld = s->ld;
  s->t0 = uv_hrtime();
  if (!ld->unbatched) {
    slot_send(s);
    return;
  }
  /* The ring holds every slot at most once: --inflight entries. */
  ld->ready[(ld->ready_head + ld->ready_len) % ld->inflight] = s;
  ld->ready_len++;
  uv_idle_start(&ld->issuer, on_issuer);
}

static void unary_begin(load_t *ld) {
  uint64_t now = uv_hrtime();
  ld->phase = "running";
  ld->cpu0.wall_ns = ld->cpu1.wall_ns = 0;
  ld->t_measure = now + (uint64_t)(ld->warmup_s * 1e9);
  ld->t_stop = ld->t_measure + (uint64_t)(ld->duration_s * 1e9);
  ld->caplat = MAX_LATENCIES;
  ld->lat = malloc(ld->caplat * sizeof(ld->lat[0]));
  ld->slots = calloc((size_t)ld->inflight, sizeof(ld->slots[0]));
  ld->ready = calloc((size_t)ld->inflight, sizeof(ld->ready[0]));
  if (ld->lat == NULL || ld->slots == NULL || ld->ready == NULL) {
    fail(ld, "out of memory");
    return;
  }
  if (ld->unbatched) {
    uv_idle_init(&ld->loop, &ld->issuer);
    ld->issuer.data = ld;
    ld->issuer_init = true;
  }
  ld->outstanding = ld->inflight;
  for (int i = 0; i < ld->inflight && !ld->finishing; i++) {
    ld->slots[i].ld = ld;
    ld->slots[i].conn = &ld->conns[i % ld->nconns];
    slot_issue(&ld->slots[i]);
  }
}

static void on_stop_done(jw_rpc_ccall_t *call, int status, const char *message,
                         void *data) {
  finish(data);
}

/* Stops the `sleep 600` job the Status calls asked about. */
static void unary_stop_job(load_t *ld) {
  uint8_t *req;
  size_t len;
  ld->phase = "stopping the job";
  if (pack_id(ld->job_id, true, &req, &len) != 0 ||
      jw_rpc_client_call(ld->conns[0].cli, PATH_PREFIX "Stop", req, len, 0,
                         NULL, on_stop_done, ld, NULL) != 0)
    finish(ld);
  free(req);
}

static void unary_have_job(load_t *ld) {
  if (pack_id(ld->job_id, false, &ld->req, &ld->reqlen) != 0) {
    fail(ld, "out of memory");
    return;
  }
  ld->path = PATH_PREFIX "Status";
  unary_begin(ld);
}

static void unary_up(load_t *ld) {
  if (ld->mode == MODE_START) {
    if (pack_job("/bin/true", NULL, 0, &ld->req, &ld->reqlen) != 0) {
      fail(ld, "out of memory");
      return;
    }
    ld->path = PATH_PREFIX "Start";
    unary_begin(ld);
    return;
  }
  if (ld->job_opt != NULL) {
    snprintf(ld->job_id, sizeof(ld->job_id), "%s", ld->job_opt);
    ld->mode = MODE_START; /* nothing to stop afterwards */
    unary_have_job(ld);
    return;
  }
  char *args[] = {"600"};
  start_job(ld, "sleep", args, 1, unary_have_job);
}

/* ---- Stream and stall modes --------------------------------------------- */

static void stall_all_paused(load_t *ld);

static void on_sub_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                       void *data) {
  sub_t *s = data;
  load_t *ld = s->ld;
  uint64_t n = output_data_len(msg, len);
  s->bytes += n;
  ld->total_bytes += n;
  if (!s->first) {
    s->first = true;
    if (ld->mode == MODE_STALL) {
      jw_rpc_ccall_pause(call, true);
      if (++ld->nfirst == ld->nsubs) {
        ld->phase = "letting the stalled streams settle";
        after(ld, ld->settle_s * 1000, stall_all_paused);
      }
    }
  }
}

static void stream_report(load_t *ld) {
  double t = secs(ld->t_end - ld->t_begin);
  double window = secs(ld->cpu1.wall_ns - ld->cpu0.wall_ns);
  uint64_t min = UINT64_MAX;
  for (int i = 0; i < ld->nsubs; i++)
    if (ld->subs[i].bytes < min)
      min = ld->subs[i].bytes;
  printf("{\"mode\":\"stream\",\"replay\":%s,\"subs\":%d,\"conns\":%d,"
         "\"job\":\"%s\",\"bytes_per_sub\":%" PRIu64 ",\"total_bytes\":%" PRIu64
         ",\"seconds\":%.3f,\"mib_s\":%.1f,\"server_cpu\":%.3f,"
         "\"client_cpu\":%.3f,\"server_runq\":%.3f,\"client_runq\":%.3f,"
         "\"rss_base_kib\":%ld,\"rss_peak_kib\":%ld}\n",
         ld->replay ? "true" : "false", ld->nsubs, ld->nconns, ld->job_id, min,
         ld->total_bytes, t, (double)ld->total_bytes / 1048576.0 / t,
         (ld->cpu1.server_s - ld->cpu0.server_s) / window,
         (ld->cpu1.client_s - ld->cpu0.client_s) / window,
         (ld->cpu1.server_wait_s - ld->cpu0.server_wait_s) / window,
         (ld->cpu1.client_wait_s - ld->cpu0.client_wait_s) / window,
         ld->rss_base, ld->rss_peak);
  fflush(stdout);
}

static void on_sub_done(jw_rpc_ccall_t *call, int status, const char *message,
                        void *data) {
  sub_t *s = data;
  load_t *ld = s->ld;
  s->call = NULL;
  if (ld->finishing)
    return;
  if (ld->mode == MODE_STALL) {
    fail(ld, "a stalled stream ended: %s: %s", jw_grpc_status_name(status),
         message);
    return;
  }
  if (status != JW_GRPC_OK) {
    fail(ld, "GetOutput: %s: %s (after %" PRIu64 " bytes)",
         jw_grpc_status_name(status), message, s->bytes);
    return;
  }
  if (ld->bytes > 0 && s->bytes != ld->bytes) {
    fail(ld, "GetOutput ended with OK after %" PRIu64 " of %" PRIu64 " bytes",
         s->bytes, ld->bytes);
    return;
  }
  if (++ld->ndone < ld->nsubs)
    return;
  ld->t_end = uv_hrtime();
  cpu_mark(ld, &ld->cpu1);
  sample_rss(ld);
  stream_report(ld);
  finish(ld);
}

static void subs_open(load_t *ld) {
  uint8_t *req;
  size_t len;
  ld->subs = calloc((size_t)ld->nsubs, sizeof(ld->subs[0]));
  if (ld->subs == NULL || pack_id(ld->job_id, false, &req, &len) != 0) {
    fail(ld, "out of memory");
    return;
  }
  ld->phase = ld->mode == MODE_STALL ? "stalling the streams" : "streaming";
  ld->rss_base = read_rss_kb(ld->server_pid);
  ld->rss_peak = ld->rss_base;
  cpu_mark(ld, &ld->cpu0);
  ld->t_begin = uv_hrtime();
  for (int i = 0; i < ld->nsubs && !ld->finishing; i++) {
    sub_t *s = &ld->subs[i];
    s->ld = ld;
    int err = jw_rpc_client_call(ld->conns[i % ld->nconns].cli,
                                 PATH_PREFIX "GetOutput", req, len, 0,
                                 on_sub_msg, on_sub_done, s, &s->call);
    if (err != 0)
      fail(ld, "GetOutput: %s", jw_strerror(err));
  }
  free(req);
}

static void stream_have_final(load_t *ld) {
  if (ld->bytes == 0)
    ld->bytes = ld->job_output_bytes;
  subs_open(ld);
}

static void stream_have_job(load_t *ld) {
  if (ld->replay)
    wait_final(ld, stream_have_final);
  else
    subs_open(ld);
}

static void stream_up(load_t *ld) {
  if (ld->job_opt != NULL) {
    snprintf(ld->job_id, sizeof(ld->job_id), "%s", ld->job_opt);
    wait_final(ld, stream_have_final);
  } else {
    start_output_job(ld, stream_have_job);
  }
}

static void stall_all_paused(load_t *ld) {
  ld->rss_after = read_rss_kb(ld->server_pid);
  printf("{\"mode\":\"stall\",\"subs\":%d,\"conns\":%d,\"job\":\"%s\","
         "\"rss_base_kib\":%ld,\"rss_after_kib\":%ld,\"per_sub_kib\":%.1f,"
         "\"avg_bytes_delivered\":%.0f}\n",
         ld->nsubs, ld->nconns, ld->job_id, ld->rss_base, ld->rss_after,
         (double)(ld->rss_after - ld->rss_base) / ld->nsubs,
         (double)ld->total_bytes / ld->nsubs);
  fflush(stdout);
  finish(ld);
}

static void stall_settled(load_t *ld) { subs_open(ld); }

static void stall_final(load_t *ld) {
  ld->phase = "letting the server settle";
  after(ld, 500, stall_settled);
}

static void stall_started(load_t *ld) { wait_final(ld, stall_final); }

/* The streams read a finished job: the given one or a new one. */
static void stall_up(load_t *ld) {
  if (ld->job_opt != NULL) {
    snprintf(ld->job_id, sizeof(ld->job_id), "%s", ld->job_opt);
    stall_final(ld);
  } else {
    start_output_job(ld, stall_started);
  }
}

/* ---- Nobody reads ------------------------------------------------------- */

static void nobody_final(load_t *ld) {
  ld->t_end = uv_hrtime();
  sample_rss(ld);
  double t = secs(ld->t_end - ld->t_begin);
  printf("{\"mode\":\"nobody\",\"job\":\"%s\",\"bytes\":%" PRIu64
         ",\"seconds\":%.3f,\"mib_s\":%.1f,\"rss_base_kib\":%ld,"
         "\"rss_peak_kib\":%ld,\"rss_growth_kib\":%ld}\n",
         ld->job_id, ld->job_output_bytes, t,
         (double)ld->job_output_bytes / 1048576.0 / t, ld->rss_base,
         ld->rss_peak, ld->rss_peak - ld->rss_base);
  fflush(stdout);
  finish(ld);
}

static void nobody_started(load_t *ld) { wait_final(ld, nobody_final); }

static void nobody_up(load_t *ld) {
  ld->rss_base = read_rss_kb(ld->server_pid);
  ld->rss_peak = ld->rss_base;
  ld->t_begin = uv_hrtime();
  start_output_job(ld, nobody_started);
}

/* ---- Idle connections --------------------------------------------------- */

static void idle_settled(load_t *ld) {
  ld->rss_after = read_rss_kb(ld->server_pid);
  int n = ld->nconns - 1;
  printf("{\"mode\":\"idle\",\"conns\":%d,\"rss_base_kib\":%ld,"
         "\"rss_after_kib\":%ld,\"per_conn_kib\":%.1f}\n",
         n, ld->rss_base, ld->rss_after,
         (double)(ld->rss_after - ld->rss_base) / n);
  fflush(stdout);
  finish(ld);
}

static void idle_all_up(load_t *ld) {
  ld->phase = "letting the connections settle";
  after(ld, ld->settle_s * 1000, idle_settled);
}

static void idle_base(load_t *ld) {
  ld->rss_base = read_rss_kb(ld->server_pid);
  connect_to(ld, ld->nconns, idle_all_up);
}

/* One connection first, so that what the first one costs (the TLS context
 * warming up, the allocator's arenas) is not put on the idle ones. */
static void idle_first_up(load_t *ld) { after(ld, 500, idle_base); }

/* ---- Main --------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: jw-load MODE --addr HOST:PORT --cacert F --cert F --key F\n"
          "  MODE: unary | start | stream | nobody | idle | stall\n"
          "  --conns N       connections (default 1)\n"
          "  --inflight N    calls in flight, unary and start (default 1)\n"
          "  --unbatched     unary and start: each call in a write of its own\n"
          "  --duration S    measured seconds (default 2)\n"
          "  --warmup S      seconds before measuring (default 0.5)\n"
          "  --subs N        GetOutput streams (default 1)\n"
          "  --bytes N       output size of the job to start\n"
          "  --lines N       the job prints N lines, one write each (at most "
          "%u)\n"
          "  --job ID        an existing job (unary, stream, stall)\n"
          "  --replay        stream the new job once it is final\n"
          "  --settle S      seconds to let memory settle (default 1)\n"
          "  --server-pid P  sample this process's RSS and CPU\n"
          "  --timeout S     give up after S seconds (default 120)\n",
          MAX_LINES);
  exit(2);
}

/* The output bytes of N lines "0\n" to "N-1\n": the numbers of d digits
 * are [lo, hi) = [10^(d-1), 10^d), and 0 is one digit. */
static uint64_t lines_bytes(uint64_t n) {
  uint64_t total = n; /* the newlines */
  for (uint64_t lo = 0, hi = 10, d = 1; lo < n; lo = hi, hi *= 10, d++)
    total += ((hi < n ? hi : n) - lo) * d;
  return total;
}

static void parse_args(load_t *ld, int argc, char **argv) {
  static const struct option longopts[] = {
      {"addr", required_argument, NULL, 'a'},
      {"cacert", required_argument, NULL, 'A'},
      {"cert", required_argument, NULL, 'c'},
      {"key", required_argument, NULL, 'k'},
      {"conns", required_argument, NULL, 'n'},
      {"inflight", required_argument, NULL, 'i'},
      {"duration", required_argument, NULL, 'd'},
      {"warmup", required_argument, NULL, 'w'},
      {"subs", required_argument, NULL, 's'},
      {"bytes", required_argument, NULL, 'b'},
      {"lines", required_argument, NULL, 'L'},
      {"job", required_argument, NULL, 'j'},
      {"replay", no_argument, NULL, 'r'},
      {"settle", required_argument, NULL, 'S'},
      {"server-pid", required_argument, NULL, 'p'},
      {"timeout", required_argument, NULL, 't'},
      {"unbatched", no_argument, NULL, 'u'},
      {NULL, 0, NULL, 0}};
  static const char *const modes[] = {"unary",  "start", "stream",
                                      "nobody", "idle",  "stall"};
  if (argc < 2)
    usage();
  ld->mode_name = argv[1];
  size_t m;
  for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
    if (strcmp(argv[1], modes[m]) == 0)
      break;
  if (m == sizeof(modes) / sizeof(modes[0]))
    usage();
  ld->mode = (run_mode_t)m;
  ld->nconns = 1;
  ld->inflight = 1;
  ld->nsubs = 1;
  ld->duration_s = 2;
  ld->warmup_s = 0.5;
  ld->settle_s = 1;
  ld->timeout_s = 120;
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'a':
      ld->addr = optarg;
      break;
    case 'A':
      ld->cacert = optarg;
      break;
    case 'c':
      ld->cert = optarg;
      break;
    case 'k':
      ld->key = optarg;
      break;
    case 'n':
      ld->nconns = atoi(optarg);
      break;
    case 'i':
      ld->inflight = atoi(optarg);
      break;
    case 'd':
      ld->duration_s = atof(optarg);
      break;
    case 'w':
      ld->warmup_s = atof(optarg);
      break;
    case 's':
      ld->nsubs = atoi(optarg);
      break;
    case 'b':
      ld->bytes = strtoull(optarg, NULL, 10);
      break;
    case 'L':
      ld->lines = strtoull(optarg, NULL, 10);
      break;
    case 'j':
      ld->job_opt = optarg;
      break;
    case 'r':
      ld->replay = true;
      break;
    case 'S':
      ld->settle_s = atof(optarg);
      break;
    case 'p':
      ld->server_pid = atoi(optarg);
      break;
    case 't':
      ld->timeout_s = atof(optarg);
      break;
    case 'u':
      ld->unbatched = true;
      break;
    default:
      usage();
    }
  }
  if (ld->addr == NULL || ld->cacert == NULL || ld->cert == NULL ||
      ld->key == NULL || ld->nconns < 1 || ld->inflight < 1 || ld->nsubs < 1 ||
      ld->duration_s <= 0 || ld->warmup_s < 0 || ld->timeout_s <= 0 ||
      ld->lines > MAX_LINES || (ld->lines > 0 && ld->bytes > 0))
    usage();
  if (ld->lines > 0)
    ld->bytes = lines_bytes(ld->lines);
  /* Loopback only: this program is a load generator. */
  if (strncmp(ld->addr, "127.", 4) != 0 && strncmp(ld->addr, "[::1]", 5) != 0 &&
      strncmp(ld->addr, "localhost:", 10) != 0) {
    fprintf(stderr, "jw-load: --addr must be a loopback address\n");
    exit(2);
  }
  if ((ld->mode == MODE_NOBODY || ld->mode == MODE_STREAM ||
       ld->mode == MODE_STALL) &&
      ld->job_opt == NULL && ld->bytes == 0) {
    fprintf(stderr, "jw-load: %s needs --bytes or --job\n", ld->mode_name);
    exit(2);
  }
  if (ld->mode == MODE_IDLE)
    ld->nconns++; /* the first one, not counted */
}

/* Each connection holds a descriptor: raise the soft limit. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  static load_t load;
  load_t *ld = &load;
  char errbuf[512];
  parse_args(ld, argc, argv);
  raise_nofile();
  int err = jw_tls_ctx_new_client(ld->cacert, ld->cert, ld->key, &ld->tls,
                                  errbuf, sizeof(errbuf));
  if (err != 0) {
    fprintf(stderr, "jw-load: %s\n", errbuf);
    return 1;
  }
  ld->conns = calloc((size_t)ld->nconns, sizeof(ld->conns[0]));
  if (ld->conns == NULL || uv_loop_init(&ld->loop) != 0) {
    fprintf(stderr, "jw-load: out of memory\n");
    return 1;
  }
  uv_timer_init(&ld->loop, &ld->sampler);
  uv_timer_init(&ld->loop, &ld->guard);
  uv_timer_init(&ld->loop, &ld->delay);
  uv_timer_init(&ld->loop, &ld->poll);
  ld->sampler.data = ld->guard.data = ld->delay.data = ld->poll.data = ld;
  uv_timer_start(&ld->guard, on_guard, (uint64_t)(ld->timeout_s * 1000), 0);

  step_fn up = NULL;
  switch (ld->mode) {
  case MODE_UNARY:
  case MODE_START:
    up = unary_up;
    break;
  case MODE_STREAM:
    up = stream_up;
    break;
  case MODE_NOBODY:
    up = nobody_up;
    break;
  case MODE_STALL:
    up = stall_up;
    break;
  case MODE_IDLE:
    connect_to(ld, 1, idle_first_up);
    break;
  }
  if (up != NULL)
    connect_to(ld, ld->nconns, up);
  /* The server's RSS is sampled for its peak. */
  if (ld->server_pid > 0)
    uv_timer_start(&ld->sampler, on_sample, SAMPLE_MS, SAMPLE_MS);

  uv_run(&ld->loop, UV_RUN_DEFAULT);
  if (ld->nopen != 0)
    fprintf(stderr, "jw-load: %d connections still open at exit\n", ld->nopen);
  int rc = uv_loop_close(&ld->loop);
  if (rc != 0)
    fprintf(stderr, "jw-load: loop not closed: %s\n", uv_strerror(rc));
  jw_tls_ctx_free(ld->tls);
  free(ld->conns);
  free(ld->slots);
  free(ld->ready);
  free(ld->lat);
  free(ld->subs);
  free(ld->req);
  return ld->exit_code;
}
