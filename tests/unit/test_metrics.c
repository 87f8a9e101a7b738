/*
 * Unit tests for teleportd's metrics (server/metrics.c): the exposition
 * is well formed (every sample after its HELP and TYPE), label values
 * are escaped as the format says, histogram buckets are cumulative and
 * end with +Inf equal to _count, methods outside the known set count as
 * "other", and the owner label stops growing at its cap.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "metrics.h"

typedef struct {
  char *buf;
  size_t len;
} text_t;

static int collect(const char *s, size_t n, void *ctx) {
  text_t *t = ctx;
  char *nb = realloc(t->buf, t->len + n + 1);
  if (nb == NULL)
    return -1;
  t->buf = nb;
  memcpy(t->buf + t->len, s, n);
  t->len += n;
  t->buf[t->len] = '\0';
  return 0;
}

static char *render(const jw_metrics_t *m) {
  jw_metrics_live_t live = {0};
  text_t t = {NULL, 0};
  live.jobs_running = 3;
  live.running_output_bytes = 10;
  ck_assert_int_eq(jw_metrics_render(m, &live, collect, &t), 0);
  return t.buf;
}

static const char *const methods[] = {"/jobworker.v1.JobWorker/Start",
                                      "/jobworker.v1.JobWorker/Status"};

static jw_rpc_event_t rpc_event(const char *method, int status, uint64_t us) {
  jw_rpc_event_t ev = {0};
  ev.event = JW_RPC_EV_RPC;
  ev.method = method;
  ev.grpc_status = status;
  ev.duration_us = us;
  return ev;
}

START_TEST(test_every_sample_has_help_and_type) {
  jw_metrics_t *m;
  ck_assert_int_eq(jw_metrics_new(methods, 2, 0, &m), 0);
  jw_metrics_job_started(m, "alice");
  char *text = render(m);
  /* Each family's samples follow its # HELP and # TYPE lines. */
  char family[128] = "";
  int lines = 0;
  for (char *line = strtok(text, "\n"); line != NULL;
       line = strtok(NULL, "\n")) {
    lines++;
    if (strncmp(line, "# HELP ", 7) == 0) {
      sscanf(line + 7, "%127s", family);
      continue;
    }
    if (strncmp(line, "# TYPE ", 7) == 0) {
      char name[128];
      sscanf(line + 7, "%127s", name);
      ck_assert_str_eq(name, family);
      continue;
    }
    ck_assert_msg(strncmp(line, family, strlen(family)) == 0,
                  "sample \"%s\" outside its family %s", line, family);
  }
  ck_assert_int_gt(lines, 40);
  free(text);
  jw_metrics_free(m);
}
END_TEST

START_TEST(test_counters_and_gauges) {
  jw_metrics_t *m;
  ck_assert_int_eq(jw_metrics_new(methods, 2, 0, &m), 0);
  jw_metrics_job_started(m, "alice");
  jw_metrics_job_started(m, "alice");
  jw_metrics_job_started(m, "bob");
  jw_job_info_t info = {0};
  info.proc.state = JW_PROC_EXITED;
  info.output_bytes = 100;
  info.output_dropped = 7;
  jw_metrics_job_ended(m, &info);
  info.proc.exit_code = 3;
  jw_metrics_job_ended(m, &info);
  info.usage.oom_killed = true;
  info.proc.state = JW_PROC_SIGNALED;
  jw_metrics_job_ended(m, &info);
  /* With an end reason, the label is the reason's, whatever the state. */
  static const jw_end_reason_t why[] = {JW_END_TIMED_OUT, JW_END_SERVER_CRASH,
                                        JW_END_SERVER_SHUTDOWN};
  for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++) {
    jw_job_info_t r = {0};
    r.proc.state = JW_PROC_STOPPED;
    r.end_reason = why[i];
    jw_metrics_job_ended(m, &r);
  }
  jw_rpc_event_t ev = {0};
  ev.event = JW_RPC_EV_CONN_OPEN;
  jw_metrics_event(m, &ev);
  jw_metrics_event(m, &ev);
  ev.event = JW_RPC_EV_CONN_CLOSE;
  jw_metrics_event(m, &ev);
  ev.event = JW_RPC_EV_CONN_REFUSED;
  ev.reason = "revoked";
  jw_metrics_event(m, &ev);
  ev.reason = "something new";
  jw_metrics_event(m, &ev);
  ev.reason = "limit";
  jw_metrics_event(m, &ev);
  static const char *const want[] = {
      "\nteleportd_jobs_started_total{owner=\"alice\"} 2\n",
      "\nteleportd_jobs_started_total{owner=\"bob\"} 1\n",
      "\nteleportd_jobs_running 3\n",
      "\nteleportd_jobs_finished_total{reason=\"exited\"} 1\n",
      "\nteleportd_jobs_finished_total{reason=\"failed\"} 1\n",
      "\nteleportd_jobs_finished_total{reason=\"oom\"} 1\n",
      "\nteleportd_jobs_finished_total{reason=\"signaled\"} 0\n",
      "\nteleportd_jobs_finished_total{reason=\"stopped\"} 0\n",
      "\nteleportd_jobs_finished_total{reason=\"timed_out\"} 1\n",
      "\nteleportd_jobs_finished_total{reason=\"shutdown\"} 1\n",
      "\nteleportd_jobs_finished_total{reason=\"crash\"} 1\n",
      /* Ended jobs' output plus the running jobs' (10). */
      "\nteleportd_output_bytes_total 310\n",
      "\nteleportd_output_dropped_bytes_total 21\n",
      "\nteleportd_connections_open 1\n",
      "\nteleportd_handshake_failures_total{reason=\"revoked\"} 1\n",
      /* A reason outside the fixed set counts as other, never as a label. */
      "\nteleportd_handshake_failures_total{reason=\"other\"} 1\n",
      "\nteleportd_connections_refused_total 1\n",
  };
  char *t = render(m);
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    ck_assert_msg(strstr(t, want[i]) != NULL, "no line %s", want[i]);
  ck_assert_ptr_null(strstr(t, "something new"));
  free(t);
  jw_metrics_free(m);
}
END_TEST

START_TEST(test_label_values_escaped) {
  jw_metrics_t *m;
  ck_assert_int_eq(jw_metrics_new(methods, 2, 0, &m), 0);
  jw_metrics_job_started(m, "a\"b\\c\nd");
  char *t = render(m);
  ck_assert_ptr_nonnull(strstr(
      t, "\nteleportd_jobs_started_total{owner=\"a\\\"b\\\\c\\nd\"} 1\n"));
  free(t);
  jw_metrics_free(m);
}
END_TEST

START_TEST(test_histogram_buckets) {
  jw_metrics_t *m;
  ck_assert_int_eq(jw_metrics_new(methods, 2, 0, &m), 0);
  jw_rpc_event_t ev = rpc_event(methods[0], 0, 500); /* 0.5 ms */
  jw_metrics_event(m, &ev);
  ev = rpc_event(methods[0], 0, 20000); /* 20 ms */
  jw_metrics_event(m, &ev);
  ev = rpc_event(methods[0], 5, 1000000000ULL); /* 1000 s: only +Inf */
  jw_metrics_event(m, &ev);
  /* A path nobody registered: counted as other, its name never shown. */
  ev = rpc_event("/x/evil\"path", 12, 100);
  jw_metrics_event(m, &ev);
  char *t = render(m);
  const char *p = "teleportd_rpc_duration_seconds_bucket{method=\""
                  "/jobworker.v1.JobWorker/Start\",le=";
  char want[256];
  snprintf(want, sizeof(want), "\n%s\"0.001\"} 1\n", p);
  ck_assert_ptr_nonnull(strstr(t, want));
  snprintf(want, sizeof(want), "\n%s\"0.01\"} 1\n", p);
  ck_assert_ptr_nonnull(strstr(t, want));
  snprintf(want, sizeof(want), "\n%s\"0.025\"} 2\n", p);
  ck_assert_ptr_nonnull(strstr(t, want));
  snprintf(want, sizeof(want), "\n%s\"300\"} 2\n", p);
  ck_assert_ptr_nonnull(strstr(t, want));
  snprintf(want, sizeof(want), "\n%s\"+Inf\"} 3\n", p);
  ck_assert_ptr_nonnull(strstr(t, want));
  ck_assert_ptr_nonnull(strstr(t, "\nteleportd_rpc_duration_seconds_count{"
                                  "method=\"/jobworker.v1.JobWorker/Start\"} "
                                  "3\n"));
  ck_assert_ptr_nonnull(strstr(t, "\nteleportd_rpc_duration_seconds_sum{"
                                  "method=\"/jobworker.v1.JobWorker/Start\"} "
                                  "1000.020500\n"));
  ck_assert_ptr_nonnull(strstr(
      t, "\nteleportd_rpcs_total{method=\"/jobworker.v1.JobWorker/Start\","
         "code=\"OK\"} 2\n"));
  ck_assert_ptr_nonnull(strstr(
      t, "\nteleportd_rpcs_total{method=\"/jobworker.v1.JobWorker/Start\","
         "code=\"NOT_FOUND\"} 1\n"));
  ck_assert_ptr_nonnull(strstr(
      t,
      "\nteleportd_rpcs_total{method=\"other\",code=\"UNIMPLEMENTED\"} 1\n"));
  ck_assert_ptr_null(strstr(t, "evil"));
  free(t);
  jw_metrics_free(m);
}
END_TEST

START_TEST(test_owner_cap) {
  jw_metrics_t *m;
  char cn[32];
  ck_assert_int_eq(jw_metrics_new(methods, 2, 5, &m), 0);
  for (int i = 0; i < 8; i++) {
    snprintf(cn, sizeof(cn), "client-%d", i);
    jw_metrics_job_started(m, cn);
  }
  /* A tracked owner keeps counting past the cap. */
  jw_metrics_job_started(m, "client-0");
  char *t = render(m);
  int owners = 0;
  for (const char *p = t; (p = strstr(p, "\nteleportd_jobs_started_total{"));
       p++)
    owners++;
  ck_assert_int_eq(owners, 6); /* 5 named and the one with owner="" */
  ck_assert_ptr_nonnull(
      strstr(t, "\nteleportd_jobs_started_total{owner=\"client-0\"} 2\n"));
  ck_assert_ptr_nonnull(
      strstr(t, "\nteleportd_jobs_started_total{owner=\"\"} 3\n"));
  ck_assert_ptr_null(strstr(t, "client-7"));
  free(t);
  jw_metrics_free(m);
}
END_TEST

START_TEST(test_process_figures) {
  jw_metrics_live_t live = {0};
  jw_metrics_read_process(&live);
  ck_assert(live.have_process);
  ck_assert_uint_gt(live.resident_bytes, 0);
  ck_assert_uint_ge(live.virtual_bytes, live.resident_bytes);
  ck_assert_uint_ge(live.open_fds, 3);
  ck_assert_uint_gt(live.max_fds, 0);
  ck_assert(live.start_time_seconds > 1.6e9);
}
END_TEST

static int fail_writer(const char *s, size_t n, void *ctx) {
  int *calls = ctx;
  (void)s;
  (void)n;
  return ++*calls == 3 ? -28 : 0;
}

START_TEST(test_write_error_stops) {
  jw_metrics_t *m;
  int calls = 0;
  jw_metrics_live_t live = {0};
  ck_assert_int_eq(jw_metrics_new(methods, 2, 0, &m), 0);
  ck_assert_int_eq(jw_metrics_render(m, &live, fail_writer, &calls), -28);
  ck_assert_int_eq(calls, 3);
  jw_metrics_free(m);
}
END_TEST

int main(void) {
  TEST_RUN_CORE("metrics", 60, test_every_sample_has_help_and_type,
                test_counters_and_gauges, test_label_values_escaped,
                test_histogram_buckets, test_owner_cap, test_process_figures,
                test_write_error_stops);
}
