/*
 * teleportd's metrics: the counters and their rendering in the Prometheus
 * text exposition format 0.0.4 (docs/operations.md#metrics).
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hash.h"

/* Every metric's name, type and help text: the one table. */
enum {
  M_JOBS_STARTED,
  M_JOBS_RUNNING,
  M_JOBS_FINISHED,
  M_OUTPUT_BYTES,
  M_OUTPUT_DROPPED,
  M_CONNECTIONS_OPEN,
  M_CONNECTIONS_TOTAL,
  M_HANDSHAKE_FAILURES,
  M_CONNECTIONS_REFUSED,
  M_RPCS,
  M_RPC_DURATION,
  M_CPU,
  M_RSS,
  M_VSIZE,
  M_OPEN_FDS,
  M_MAX_FDS,
  M_START_TIME,
  NMETRICS
};

static const struct {
  const char *name;
  const char *type;
  const char *help;
} metric_table[NMETRICS] = {
    [M_JOBS_STARTED] = {"teleportd_jobs_started_total", "counter",
                        "Jobs started, by owner (client certificate CN)."},
    [M_JOBS_RUNNING] = {"teleportd_jobs_running", "gauge",
                        "Jobs started and not yet final."},
    [M_JOBS_FINISHED] = {"teleportd_jobs_finished_total", "counter",
                         "Jobs that became final, by end reason."},
    [M_OUTPUT_BYTES] = {"teleportd_output_bytes_total", "counter",
                        "Job output bytes written to the jobs' logs."},
    [M_OUTPUT_DROPPED] = {"teleportd_output_dropped_bytes_total", "counter",
                          "Job output bytes dropped (a job's output cap, "
                          "the client's disk cap, a failed write)."},
    [M_CONNECTIONS_OPEN] = {"teleportd_connections_open", "gauge",
                            "Client connections past TLS and SETTINGS."},
    [M_CONNECTIONS_TOTAL] = {"teleportd_connections_total", "counter",
                             "Client connections opened."},
    [M_HANDSHAKE_FAILURES] = {"teleportd_handshake_failures_total", "counter",
                              "Connections whose TLS handshake failed, by "
                              "reason."},
    [M_CONNECTIONS_REFUSED] = {"teleportd_connections_refused_total", "counter",
                               "Connections refused by a connection cap "
                               "(--max-connections, "
                               "--max-connections-per-client)."},
    [M_RPCS] = {"teleportd_rpcs_total", "counter",
                "Requests answered, by method and gRPC status code."},
    [M_RPC_DURATION] = {"teleportd_rpc_duration_seconds", "histogram",
                        "Time from a request's headers to the end of its "
                        "answer, by method."},
    [M_CPU] = {"process_cpu_seconds_total", "counter",
               "Total user and system CPU time spent in seconds."},
    [M_RSS] = {"process_resident_memory_bytes", "gauge",
               "Resident memory size in bytes."},
    [M_VSIZE] = {"process_virtual_memory_bytes", "gauge",
                 "Virtual memory size in bytes."},
    [M_OPEN_FDS] = {"process_open_fds", "gauge",
                    "Number of open file descriptors."},
    [M_MAX_FDS] = {"process_max_fds", "gauge",
                   "Maximum number of open file descriptors."},
    [M_START_TIME] = {"process_start_time_seconds", "gauge",
                      "Start time of the process since unix epoch in "
                      "seconds."},
};

/* The handshake failure reasons (jw_rpc_event_t.reason), "other" last. */
static const char *const hs_reasons[] = {
    "no_certificate", "bad_certificate", "revoked", "protocol",
    "alpn",           "timeout",         "closed",  "other"};
#define NHS (sizeof(hs_reasons) / sizeof(hs_reasons[0]))

static const char *const end_reasons[] = {"exited",   "failed", "signaled",
                                          "stopped",  "oom",    "timed_out",
                                          "shutdown", "crash"};
#define NEND (sizeof(end_reasons) / sizeof(end_reasons[0]))

#define NCODES 17 /* gRPC status codes 0..16 */

/* Upper bounds of the latency buckets, in seconds (+Inf follows). */
static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05,
                                 0.1,   0.25,  0.5,  1,     2.5,
                                 5,     10,    30,   60,    300};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct {
  uint64_t calls[NCODES];
  uint64_t
      bucket[NBUCKETS]; /* not cumulative: the one bucket each call is in */
  uint64_t count;
  double sum;
} method_stats_t;

typedef struct owner_s {
  struct owner_s *next;
  uint64_t started;
  char cn[]; /* NUL-terminated */
} owner_t;

struct jw_metrics_s {
  char **methods; /* nmethods names, then "other" */
  size_t nmethods;
  method_stats_t *stats; /* nmethods + 1 */
  owner_t **owners;      /* hash buckets */
  size_t nbuckets;
  size_t nowners;
  size_t max_owners;
  uint64_t untracked_started; /* owners past the cap: owner="" */
  uint64_t finished[NEND];
  uint64_t ended_output_bytes;
  uint64_t ended_output_dropped;
  uint64_t conns_open;
  uint64_t conns_total;
  uint64_t handshake_failures[NHS];
  uint64_t refused;
};

int jw_metrics_new(const char *const *methods, size_t nmethods,
                   size_t max_owners, jw_metrics_t **out) {
  jw_metrics_t *m = calloc(1, sizeof(*m));
  *out = NULL;
  if (m == NULL)
    return -ENOMEM;
  m->max_owners = max_owners > 0 ? max_owners : JW_METRICS_DEFAULT_MAX_OWNERS;
  m->nbuckets = 1024;
  m->owners = calloc(m->nbuckets, sizeof(*m->owners));
  m->methods = calloc(nmethods + 1, sizeof(*m->methods));
  m->stats = calloc(nmethods + 1, sizeof(*m->stats));
  if (m->owners == NULL || m->methods == NULL || m->stats == NULL)
    goto fail;
  for (size_t i = 0; i < nmethods; i++) {
    m->methods[i] = strdup(methods[i]);
    if (m->methods[i] == NULL)
      goto fail;
    m->nmethods++;
  }
  m->methods[m->nmethods] = strdup("other");
  if (m->methods[m->nmethods] == NULL)
    goto fail;
  *out = m;
  return 0;
fail:
  jw_metrics_free(m);
  return -ENOMEM;
}

void jw_metrics_free(jw_metrics_t *m) {
  if (m == NULL)
    return;
  if (m->owners != NULL) {
    for (size_t i = 0; i < m->nbuckets; i++) {
      owner_t *o = m->owners[i];
      while (o != NULL) {
        owner_t *next = o->next;
        free(o);
        o = next;
      }
    }
  }
  if (m->methods != NULL)
    for (size_t i = 0; i <= m->nmethods; i++)
      free(m->methods[i]);
  free(m->methods);
  free(m->stats);
  free(m->owners);
  free(m);
}

static size_t method_index(const jw_metrics_t *m, const char *path) {
  if (path != NULL)
    for (size_t i = 0; i < m->nmethods; i++)
      if (strcmp(m->methods[i], path) == 0)
        return i;
  return m->nmethods;
}

static size_t hs_index(const char *reason) {
  if (reason != NULL)
    for (size_t i = 0; i + 1 < NHS; i++)
      if (strcmp(hs_reasons[i], reason) == 0)
        return i;
  return NHS - 1;
}

void jw_metrics_event(jw_metrics_t *m, const jw_rpc_event_t *ev) {
  switch (ev->event) {
  case JW_RPC_EV_CONN_OPEN:
    m->conns_open++;
    m->conns_total++;
    break;
  case JW_RPC_EV_CONN_CLOSE:
    if (m->conns_open > 0)
      m->conns_open--;
    break;
  case JW_RPC_EV_CONN_REFUSED:
    if (ev->reason != NULL && strcmp(ev->reason, "limit") == 0)
      m->refused++;
    else
      m->handshake_failures[hs_index(ev->reason)]++;
    break;
  case JW_RPC_EV_RPC: {
    method_stats_t *s = &m->stats[method_index(m, ev->method)];
    int code = ev->grpc_status >= 0 && ev->grpc_status < NCODES
                   ? ev->grpc_status
                   : 2; /* UNKNOWN */
    double secs = (double)ev->duration_us / 1e6;
    s->calls[code]++;
    s->count++;
    s->sum += secs;
    for (size_t i = 0; i < NBUCKETS; i++) {
      if (secs <= buckets[i]) {
        s->bucket[i]++;
        break;
      }
    }
    break;
  }
  }
}

void jw_metrics_job_started(jw_metrics_t *m, const char *owner) {
  const char *cn = owner != NULL ? owner : "";
  size_t len = strlen(cn);
  size_t b = jw__fnv1a64(cn, len) % m->nbuckets;
  for (owner_t *o = m->owners[b]; o != NULL; o = o->next) {
    if (strcmp(o->cn, cn) == 0) {
      o->started++;
      return;
    }
  }
  owner_t *o = NULL;
  if (len > 0 && m->nowners < m->max_owners)
    o = malloc(sizeof(*o) + len + 1);
  if (o == NULL) {
    /* Past the cap (or out of memory): counted without its name. */
    m->untracked_started++;
    return;
  }
  memcpy(o->cn, cn, len + 1);
  o->started = 1;
  o->next = m->owners[b];
  m->owners[b] = o;
  m->nowners++;
}

const char *jw_metrics_end_reason(const jw_job_info_t *info) {
  switch (info->end_reason) {
  case JW_END_EXITED:
    return info->proc.exit_code == 0 ? "exited" : "failed";
  case JW_END_SIGNALED:
    return "signaled";
  case JW_END_STOPPED:
    return "stopped";
  case JW_END_TIMED_OUT:
    return "timed_out";
  case JW_END_OOM_KILLED:
    return "oom";
  case JW_END_SERVER_SHUTDOWN:
    return "shutdown";
  case JW_END_SERVER_CRASH:
    return "crash";
  case JW_END_NONE:
    break;
  }
  /* A status without an end reason (an embedder's): from its state. */
  if (info->usage.oom_killed)
    return "oom";
  switch (info->proc.state) {
  case JW_PROC_EXITED:
    return info->proc.exit_code == 0 ? "exited" : "failed";
  case JW_PROC_SIGNALED:
    return "signaled";
  case JW_PROC_STOPPED:
    return "stopped";
  default:
    return "failed";
  }
}

void jw_metrics_job_ended(jw_metrics_t *m, const jw_job_info_t *info) {
  const char *r = jw_metrics_end_reason(info);
  for (size_t i = 0; i < NEND; i++)
    if (strcmp(end_reasons[i], r) == 0)
      m->finished[i]++;
  m->ended_output_bytes += info->output_bytes;
  m->ended_output_dropped += info->output_dropped;
}

/* ---- /proc/self -------------------------------------------------------- */

static double boot_time(void) {
  FILE *f = fopen("/proc/stat", "re");
  char line[256];
  double bt = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    unsigned long long v;
    if (sscanf(line, "btime %llu", &v) == 1) {
      bt = (double)v;
      break;
    }
  }
  fclose(f);
  return bt;
}

void jw_metrics_read_process(jw_metrics_live_t *live) {
  char buf[1024];
  struct rlimit rl;
  live->have_process = false;
  FILE *f = fopen("/proc/self/stat", "re");
  if (f == NULL)
    return;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces and parentheses: skip to its end. */
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return;
  unsigned long long utime, stime, start, vsize;
  long long rss;
  /* Fields 3.. after the name: state, then 11 we skip, utime (14). */
  if (sscanf(p + 2,
             "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
             "%*d %*d %*d %*d %llu %llu %lld",
             &utime, &stime, &start, &vsize, &rss) != 5)
    return;
  double tck = (double)sysconf(_SC_CLK_TCK);
  long page = sysconf(_SC_PAGESIZE);
  if (tck <= 0 || page <= 0)
    return;
  live->cpu_seconds = (double)(utime + stime) / tck;
  live->start_time_seconds = boot_time() + (double)start / tck;
  live->virtual_bytes = vsize;
  live->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
  live->open_fds = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.')
        live->open_fds++;
    closedir(d);
    if (live->open_fds > 0)
      live->open_fds--; /* the directory's own fd */
  }
  live->max_fds = 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    live->max_fds = (uint64_t)rl.rlim_cur;
  live->have_process = true;
}

/* ---- Rendering --------------------------------------------------------- */

typedef struct {
  int (*out)(const char *s, size_t n, void *ctx);
  void *ctx;
  int err;
} writer_t;

static void put(writer_t *w, const char *s, size_t n) {
  if (w->err == 0 && n > 0)
    w->err = w->out(s, n, w->ctx);
}

static void putf(writer_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void putf(writer_t *w, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(buf)) {
    if (w->err == 0)
      w->err = -EOVERFLOW;
    return;
  }
  put(w, buf, (size_t)n);
}

/* A label value, escaped as the format says: \\, \" and \n. */
static void put_label_value(writer_t *w, const char *v) {
  const char *run = v;
  for (const char *p = v; *p != '\0'; p++) {
    const char *esc = *p == '\\'   ? "\\\\"
                      : *p == '"'  ? "\\\""
                      : *p == '\n' ? "\\n"
                                   : NULL;
    if (esc == NULL)
      continue;
    put(w, run, (size_t)(p - run));
    put(w, esc, 2);
    run = p + 1;
  }
  put(w, run, strlen(run));
}

static void header(writer_t *w, int id) {
  putf(w, "# HELP %s %s\n# TYPE %s %s\n", metric_table[id].name,
       metric_table[id].help, metric_table[id].name, metric_table[id].type);
}

static void sample_u(writer_t *w, int id, uint64_t v) {
  putf(w, "%s %" PRIu64 "\n", metric_table[id].name, v);
}

static void sample_label(writer_t *w, int id, const char *label,
                         const char *value, uint64_t v) {
  putf(w, "%s{%s=\"", metric_table[id].name, label);
  put_label_value(w, value);
  putf(w, "\"} %" PRIu64 "\n", v);
}

static void render_rpcs(writer_t *w, const jw_metrics_t *m) {
  header(w, M_RPCS);
  for (size_t i = 0; i <= m->nmethods; i++) {
    for (int c = 0; c < NCODES; c++) {
      if (m->stats[i].calls[c] == 0)
        continue;
      putf(w, "%s{method=\"", metric_table[M_RPCS].name);
      put_label_value(w, m->methods[i]);
      putf(w, "\",code=\"%s\"} %" PRIu64 "\n", jw_grpc_status_name(c),
           m->stats[i].calls[c]);
    }
  }
  header(w, M_RPC_DURATION);
  const char *name = metric_table[M_RPC_DURATION].name;
  for (size_t i = 0; i <= m->nmethods; i++) {
    const method_stats_t *s = &m->stats[i];
    uint64_t cum = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
      cum += s->bucket[b];
      putf(w, "%s_bucket{method=\"", name);
      put_label_value(w, m->methods[i]);
      putf(w, "\",le=\"%g\"} %" PRIu64 "\n", buckets[b], cum);
    }
    putf(w, "%s_bucket{method=\"", name);
    put_label_value(w, m->methods[i]);
    putf(w, "\",le=\"+Inf\"} %" PRIu64 "\n", s->count);
    putf(w, "%s_sum{method=\"", name);
    put_label_value(w, m->methods[i]);
    putf(w, "\"} %.6f\n", s->sum);
    putf(w, "%s_count{method=\"", name);
    put_label_value(w, m->methods[i]);
    putf(w, "\"} %" PRIu64 "\n", s->count);
  }
}

int jw_metrics_render(const jw_metrics_t *m, const jw_metrics_live_t *live,
                      int (*out)(const char *s, size_t n, void *ctx),
                      void *ctx) {
  writer_t w = {out, ctx, 0};

  header(&w, M_JOBS_STARTED);
  for (size_t b = 0; b < m->nbuckets; b++)
    for (const owner_t *o = m->owners[b]; o != NULL; o = o->next)
      sample_label(&w, M_JOBS_STARTED, "owner", o->cn, o->started);
  if (m->untracked_started > 0)
    sample_label(&w, M_JOBS_STARTED, "owner", "", m->untracked_started);
  header(&w, M_JOBS_RUNNING);
  sample_u(&w, M_JOBS_RUNNING, live->jobs_running);
  header(&w, M_JOBS_FINISHED);
  for (size_t i = 0; i < NEND; i++)
    sample_label(&w, M_JOBS_FINISHED, "reason", end_reasons[i], m->finished[i]);
  header(&w, M_OUTPUT_BYTES);
  sample_u(&w, M_OUTPUT_BYTES,
           m->ended_output_bytes + live->running_output_bytes);
  header(&w, M_OUTPUT_DROPPED);
  sample_u(&w, M_OUTPUT_DROPPED,
           m->ended_output_dropped + live->running_output_dropped);
  header(&w, M_CONNECTIONS_OPEN);
  sample_u(&w, M_CONNECTIONS_OPEN, m->conns_open);
  header(&w, M_CONNECTIONS_TOTAL);
  sample_u(&w, M_CONNECTIONS_TOTAL, m->conns_total);
  header(&w, M_HANDSHAKE_FAILURES);
  for (size_t i = 0; i < NHS; i++)
    sample_label(&w, M_HANDSHAKE_FAILURES, "reason", hs_reasons[i],
                 m->handshake_failures[i]);
  header(&w, M_CONNECTIONS_REFUSED);
  sample_u(&w, M_CONNECTIONS_REFUSED, m->refused);
  render_rpcs(&w, m);
  if (live->have_process) {
    header(&w, M_CPU);
    putf(&w, "%s %.2f\n", metric_table[M_CPU].name, live->cpu_seconds);
    header(&w, M_RSS);
    sample_u(&w, M_RSS, live->resident_bytes);
    header(&w, M_VSIZE);
    sample_u(&w, M_VSIZE, live->virtual_bytes);
    header(&w, M_OPEN_FDS);
    sample_u(&w, M_OPEN_FDS, live->open_fds);
    header(&w, M_MAX_FDS);
    sample_u(&w, M_MAX_FDS, live->max_fds);
    header(&w, M_START_TIME);
    putf(&w, "%s %.2f\n", metric_table[M_START_TIME].name,
         live->start_time_seconds);
  }
  return w.err;
}
