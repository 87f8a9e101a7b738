/*
 * Unit tests for a reload's handover of running jobs (handover.c):
 * supervisor A hands its running jobs over, supervisor B on the same data
 * directory and loop adopts them from A's records and the handed
 * descriptors, as the next process would after an execve(2).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "../../lib/worker/supervisor_int.h"
#include "../test_common.h"
#include "jobworker/supervisor.h"

static char tmp_root[] = "/tmp/jw-ho-XXXXXX";
static char data_dir[128];

static void setup(void) {
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
  snprintf(data_dir, sizeof(data_dir), "%s/jobs", tmp_root);
}

static void teardown(void) {
  test_rm_tree(tmp_root);
  strcpy(tmp_root, "/tmp/jw-ho-XXXXXX");
}

static jw_supervisor_t *open_sup(uv_loop_t *loop, const jw_job_handover_t *h,
                                 size_t n) {
  jw_supervisor_options_t o;
  jw_supervisor_t *sup = NULL;
  memset(&o, 0, sizeof(o));
  o.data_dir = data_dir;
  o.stop_grace_ms = 200;
  o.durable = true;
  o.handover = h;
  o.nhandover = n;
  ck_assert_int_eq(jw_supervisor_new(loop, &o, &sup), 0);
  return sup;
}

static int closed;
static void on_closed(jw_supervisor_t *sup, void *data) {
  (void)sup;
  (void)data;
  closed++;
}

static void start(jw_supervisor_t *sup, const char *script,
                  char id[JW_ID_LEN + 1]) {
  const char *const argv[] = {"sh", "-c", script, NULL};
  jw_job_spec_t spec;
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, NULL, 0, NULL);
  ck_assert_int_eq(jw_supervisor_start(sup, "alice", &spec, id), 0);
}

/* The job's stdout so far, through the test-only copy to a pipe. */
static size_t output_of(jw_supervisor_t *sup, const char *id, char *buf,
                        size_t cap) {
  int p[2];
  ssize_t n, got = 0;
  ck_assert_int_eq(pipe(p), 0);
  ck_assert_int_ge(jw__supervisor_get_output(sup, id, NULL, p[1], p[1]), 0);
  close(p[1]);
  while ((n = read(p[0], buf + got, cap - 1 - (size_t)got)) > 0)
    got += n;
  close(p[0]);
  buf[got] = '\0';
  return (size_t)got;
}

struct has_out {
  jw_supervisor_t *sup;
  const char *id;
  const char *text;
  char buf[8192];
};

static int output_has(void *arg) {
  struct has_out *w = arg;
  output_of(w->sup, w->id, w->buf, sizeof(w->buf));
  return strstr(w->buf, w->text) != NULL;
}

struct final_wait {
  jw_supervisor_t *sup;
  const char *id;
  jw_job_info_t info;
};

static int is_final(void *arg) {
  struct final_wait *w = arg;
  ck_assert_int_eq(jw_supervisor_status(w->sup, w->id, NULL, &w->info), 0);
  return w->info.proc.state != JW_PROC_RUNNING;
}

struct stop_result {
  int calls;
  int err;
  jw_proc_status_t st;
  jw_end_reason_t reason;
};

static void on_stopped(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  struct stop_result *r = req->data;
  r->calls++;
  r->err = err;
  r->st = info->proc;
  r->reason = info->end_reason;
}

/*
 * Two running jobs, one of them chatty across the handover, the other
 * ignoring SIGTERM: after the handover A starts nothing and its close kills
 * nothing; B has both with their pids, the chatty one's output is every
 * line exactly once, and B's stop ends the other with SIGKILL.
 */
START_TEST(test_handover_to_next_supervisor) {
  static const char script1[] =
      "echo ready; i=0; while [ $i -lt 300 ]; do echo l$i; i=$((i+1)); "
      "[ $i = 100 ] && sleep 0.5; done; true";
  uv_loop_t loop;
  jw_supervisor_t *a, *b;
  jw_job_handover_t *hs = NULL;
  size_t n = 0;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], idx[JW_ID_LEN + 1];
  jw_job_info_t i1, i2, b1, b2;
  struct has_out w;
  struct final_wait f;
  struct stop_result res = {0};
  jw_stop_req_t req;
  char want[8192];
  size_t wn = 0;
  int k;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  a = open_sup(&loop, NULL, 0);
  start(a, script1, id1);
  start(a, "trap '' TERM; echo ready; sleep 100", id2);
  w.sup = a;
  w.id = id1;
  w.text = "l99\n";
  ck_assert(test_run_until(&loop, output_has, &w, 20000));
  w.id = id2;
  w.text = "ready";
  ck_assert(test_run_until(&loop, output_has, &w, 20000));
  ck_assert_int_eq(jw_supervisor_status(a, id1, NULL, &i1), 0);
  ck_assert_int_eq(jw_supervisor_status(a, id2, NULL, &i2), 0);

  ck_assert_int_eq(jw_supervisor_handover(a, &hs, &n), 0);
  ck_assert_uint_eq(n, 2);
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_ge(hs[i].proc.out_fd, 0);
    ck_assert_int_eq(fcntl(hs[i].proc.out_fd, F_GETFD) & FD_CLOEXEC, 0);
    /* -1 where the kernel (or valgrind) has no pidfd_open. */
    if (hs[i].proc.pidfd >= 0)
      ck_assert_int_eq(fcntl(hs[i].proc.pidfd, F_GETFD) & FD_CLOEXEC, 0);
  }
  ck_assert_int_eq(jw_supervisor_handover(a, &hs, &n), JW_ECLOSED);
  {
    const char *const argv[] = {"true", NULL};
    jw_job_spec_t spec;
    memset(&spec, 0, sizeof(spec));
    TEST_SET_COMMAND(&spec, argv, NULL, 0, NULL);
    ck_assert_int_eq(jw_supervisor_start(a, NULL, &spec, idx), JW_ECLOSED);
  }
  closed = 0;
  jw_supervisor_close(a, 0, on_closed, NULL);
  ck_assert(test_run_until(&loop, test_flag_set, &closed, 20000));
  ck_assert_int_eq(kill(i1.proc.pid, 0), 0);
  ck_assert_int_eq(kill(i2.proc.pid, 0), 0);

  b = open_sup(&loop, hs, n);
  free(hs);
  ck_assert_int_eq(jw_supervisor_status(b, id1, "alice", &b1), 0);
  ck_assert_int_eq(jw_supervisor_status(b, id2, "alice", &b2), 0);
  ck_assert_int_eq(b1.proc.state, JW_PROC_RUNNING);
  ck_assert_int_eq(b1.proc.pid, i1.proc.pid);
  ck_assert_int_eq(b2.proc.state, JW_PROC_RUNNING);
  ck_assert_int_eq(b2.proc.pid, i2.proc.pid);
  ck_assert_uint_eq(jw_supervisor_running(b), 2);

  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(b, &req, id2, NULL, on_stopped), 0);
  ck_assert(test_run_until(&loop, test_flag_set, &res.calls, 10000));
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(res.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res.st.signal, SIGKILL);

  f.sup = b;
  f.id = id1;
  ck_assert(test_run_until(&loop, is_final, &f, 20000));
  ck_assert_int_eq(f.info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(f.info.proc.exit_code, 0);
  wn = (size_t)snprintf(want, sizeof(want), "ready\n");
  for (k = 0; k < 300; k++)
    wn += (size_t)snprintf(want + wn, sizeof(want) - wn, "l%d\n", k);
  ck_assert_uint_eq(output_of(b, id1, w.buf, sizeof(w.buf)), wn);
  ck_assert_str_eq(w.buf, want);
  ck_assert_uint_eq(f.info.output_bytes, wn);

  closed = 0;
  jw_supervisor_close(b, 0, on_closed, NULL);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(closed, 1);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

/* A handed-over entry whose pid is not the record's is not adopted. */
START_TEST(test_handover_wrong_pid_not_adopted) {
  uv_loop_t loop;
  jw_supervisor_t *a, *b;
  jw_job_handover_t *hs = NULL;
  size_t n = 0;
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  struct has_out w;

  ck_assert_int_eq(uv_loop_init(&loop), 0);
  a = open_sup(&loop, NULL, 0);
  start(a, "echo ready; sleep 100", id);
  w.sup = a;
  w.id = id;
  w.text = "ready";
  ck_assert(test_run_until(&loop, output_has, &w, 20000));
  ck_assert_int_eq(jw_supervisor_handover(a, &hs, &n), 0);
  ck_assert_uint_eq(n, 1);
  closed = 0;
  jw_supervisor_close(a, 0, on_closed, NULL);
  ck_assert(test_run_until(&loop, test_flag_set, &closed, 20000));
  hs[0].proc.pid = 1;
  b = open_sup(&loop, hs, n);
  free(hs);
  ck_assert_int_eq(jw_supervisor_status(b, id, NULL, &info), 0);
  ck_assert_int_ne(info.proc.state, JW_PROC_RUNNING);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_CRASH);
  /*
   * Killed by the restore as a crashed job's; it is still this program's
   * child, so it is reaped here.
   */
  {
    int ws = 0;
    ck_assert_int_eq(waitpid(info.proc.pid, &ws, 0), info.proc.pid);
    ck_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
  }
  closed = 0;
  jw_supervisor_close(b, 0, on_closed, NULL);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
}
END_TEST

static Suite *handover_suite(void) {
  Suite *s = suite_create("handover");
  TCase *tc = test_tcase(s, "core", setup, teardown, 120);
  const TTest *const tests[] = {test_handover_to_next_supervisor,
                                test_handover_wrong_pid_not_adopted, NULL};
  test_add_tests(tc, tests);
  return s;
}

int main(void) { return test_run_suite(handover_suite()); }
