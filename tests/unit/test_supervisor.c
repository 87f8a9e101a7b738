/*
 * Unit tests for jw_supervisor: jobs end to end through the output log
 * and subscribers, stop, shutdown and close, owners, start failures,
 * every allocation failing in turn, scale and memory.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../../lib/worker/supervisor_int.h"
#include "../failmalloc.h"
#include "../test_common.h"
#include "jobworker/supervisor.h"
#include "supervisor_harness.h"

#define MiB (1024 * 1024)

/* ---- helpers ---------------------------------------------------------- */

static char tmp_root[] = "/tmp/jw-sup-XXXXXX";
static char data_dir[128];

static void setup(void) {
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
  snprintf(data_dir, sizeof(data_dir), "%s/data/jobs", tmp_root);
}

static void teardown(void) {
  test_rm_tree(tmp_root);
  strcpy(tmp_root, "/tmp/jw-sup-XXXXXX");
}

static int count_files(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static long rss_kib(void) {
  char line[256];
  long v = -1;
  FILE *f = fopen("/proc/self/status", "r");
  ck_assert_ptr_nonnull(f);
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
      break;
  fclose(f);
  return v;
}

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

struct env {
  uv_loop_t loop;
  jw_supervisor_t *sup;
  int done;
};

static void env_open(struct env *e, uint64_t grace_ms) {
  jw_supervisor_options_t o;
  memset(e, 0, sizeof(*e));
  ck_assert_int_eq(uv_loop_init(&e->loop), 0);
  memset(&o, 0, sizeof(o));
  o.data_dir = data_dir;
  o.stop_grace_ms = grace_ms;
  ck_assert_int_eq(jw_supervisor_new(&e->loop, &o, &e->sup), 0);
}

static void on_done(jw_supervisor_t *sup, void *data) {
  struct env *e = data;
  (void)sup;
  e->done++;
}

static int closed_calls;

static void on_closed(jw_supervisor_t *sup, void *data) {
  (void)sup;
  (void)data;
  closed_calls++;
}

/*
 * Closes the supervisor and checks that its callback ran once and that
 * the loop is left with nothing (uv_loop_close would fail otherwise).
 */
static void env_end(struct env *e, int keep_logs) {
  closed_calls = 0;
  jw_supervisor_close(e->sup, keep_logs, on_closed, NULL);
  ck_assert_int_eq(closed_calls, 0);
  ck_assert_int_eq(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(closed_calls, 1);
  ck_assert_int_eq(uv_loop_close(&e->loop), 0);
  e->sup = NULL;
}

/* Shuts down, closes, and checks that the loop and data dir are empty. */
static void env_close(struct env *e, int keep_logs) {
  ck_assert_int_eq(jw_supervisor_shutdown(e->sup, on_done, e), 0);
  ck_assert(test_run_until(&e->loop, test_flag_set, &e->done, 30000));
  ck_assert_int_eq(e->done, 1);
  ck_assert_uint_eq(jw_supervisor_running(e->sup), 0);
  env_end(e, keep_logs);
  if (!keep_logs)
    ck_assert_int_eq(count_files(data_dir), 0);
}

static int start_job(struct env *e, const char *owner, const char *const *argv,
                     const char *const *envv, size_t nenv, const char *cwd,
                     char id[JW_ID_LEN + 1]) {
  jw_job_spec_t spec;
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, envv, nenv, cwd);
  return jw_supervisor_start(e->sup, owner, &spec, id);
}

static jw_job_info_t wait_final(struct env *e, const char *id) {
  return test_wait_final(&e->loop, e->sup, id);
}

/* A subscriber that digests each stream and optionally keeps a copy. */
struct reader {
  jw_outlog_reader_t *sub;
  EVP_MD_CTX *md[2];
  uint64_t bytes[2];
  char *copy[2];
  size_t copy_cap;
  int ended;
  int notifies;
  int close_on_notify;
  uint64_t end_ms;
  /* Slow mode: 1 KiB per loop turn, driven by a 1 ms timer. */
  uv_timer_t timer;
  int slow;
  /* A hook run from notify, for tests that act mid-stream. */
  void (*hook)(struct reader *r);
  void *hook_data;
};

static char readbuf[64 * 1024];

/* Reads what is there; returns 1 when it should be called again. */
static void consume(struct reader *r, size_t chunk, int once) {
  for (;;) {
    jw_stream_t s;
    ssize_t n = jw_outlog_read(r->sub, readbuf, chunk, &s);
    if (n == JW_EAGAIN)
      return;
    ck_assert_int_ge(n, 0);
    if (n == 0) {
      r->ended = 1;
      r->end_ms = now_ms();
      return;
    }
    EVP_DigestUpdate(r->md[s], readbuf, (size_t)n);
    if (r->copy[s] != NULL && r->bytes[s] + (uint64_t)n < r->copy_cap)
      memcpy(r->copy[s] + r->bytes[s], readbuf, (size_t)n);
    r->bytes[s] += (uint64_t)n;
    if (r->hook != NULL)
      r->hook(r);
    if (once)
      return;
  }
}

static void on_slow_tick(uv_timer_t *t) {
  struct reader *r = t->data;
  consume(r, 1024, 1);
  if (r->ended)
    uv_timer_stop(t);
}

static void on_notify(jw_outlog_reader_t *sub, void *data) {
  struct reader *r = data;
  ck_assert_ptr_eq(sub, r->sub);
  r->notifies++;
  if (r->close_on_notify) {
    jw_outlog_reader_close(sub);
    r->sub = NULL;
    return;
  }
  if (!r->slow)
    consume(r, sizeof(readbuf), 0);
}

static void reader_init(struct reader *r, size_t copy_cap) {
  memset(r, 0, sizeof(*r));
  r->md[0] = EVP_MD_CTX_new();
  r->md[1] = EVP_MD_CTX_new();
  EVP_DigestInit_ex(r->md[0], EVP_sha256(), NULL);
  EVP_DigestInit_ex(r->md[1], EVP_sha256(), NULL);
  if (copy_cap > 0) {
    r->copy_cap = copy_cap;
    r->copy[0] = malloc(copy_cap);
    r->copy[1] = malloc(copy_cap);
  }
}

/* Subscribes and reads what is there already (or starts the slow timer). */
static void reader_subscribe(struct reader *r, struct env *e, const char *id,
                             const char *owner) {
  ck_assert_int_eq(
      jw_supervisor_subscribe(e->sup, id, owner, on_notify, r, &r->sub), 0);
  if (r->slow) {
    uv_timer_init(&e->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_slow_tick, 1, 1);
  } else {
    consume(r, sizeof(readbuf), 0);
  }
}

static void reader_digest(struct reader *r, int s, unsigned char out[32]) {
  unsigned int len = 32;
  EVP_DigestFinal_ex(r->md[s], out, &len);
}

static void reader_free(struct reader *r) {
  if (r->sub != NULL)
    jw_outlog_reader_close(r->sub);
  if (r->slow)
    uv_close((uv_handle_t *)&r->timer, NULL);
  EVP_MD_CTX_free(r->md[0]);
  EVP_MD_CTX_free(r->md[1]);
  free(r->copy[0]);
  free(r->copy[1]);
}

static int reader_ended(void *arg) { return ((struct reader *)arg)->ended; }

struct line_wait {
  struct reader r;
  char *nl;
};

static int have_line(void *arg) {
  struct line_wait *w = arg;
  w->nl = w->r.bytes[0] > 0 ? memchr(w->r.copy[0], '\n', w->r.bytes[0]) : NULL;
  return w->nl != NULL || w->r.ended;
}

/*
 * Waits for the first line the job writes to stdout and copies it, without
 * the newline, to line: the event a test waits for instead of sleeping
 * ("ready" once a trap is set, the pid of a background child).
 */
static void wait_line(struct env *e, const char *id, char *line, size_t cap) {
  struct line_wait w;
  size_t n;
  reader_init(&w.r, 256);
  w.nl = NULL;
  reader_subscribe(&w.r, e, id, NULL);
  ck_assert(test_run_until(&e->loop, have_line, &w, 10000));
  ck_assert_ptr_nonnull(w.nl);
  n = (size_t)(w.nl - w.r.copy[0]);
  ck_assert_uint_lt(n, cap);
  memcpy(line, w.r.copy[0], n);
  line[n] = '\0';
  reader_free(&w.r);
}

/* Writes len random bytes to path; returns their SHA-256. */
static void make_random_file(const char *path, size_t len,
                             unsigned char digest[32]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int in = open("/dev/urandom", O_RDONLY);
  int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  unsigned int dlen = 32;
  ck_assert_int_ge(in, 0);
  ck_assert_int_ge(out, 0);
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  while (len > 0) {
    size_t want = len < sizeof(readbuf) ? len : sizeof(readbuf);
    ssize_t n = read(in, readbuf, want);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(write(out, readbuf, (size_t)n), n);
    EVP_DigestUpdate(md, readbuf, (size_t)n);
    len -= (size_t)n;
  }
  EVP_DigestFinal_ex(md, digest, &dlen);
  EVP_MD_CTX_free(md);
  close(in);
  close(out);
}

/* ---- 1. byte-exact output -------------------------------------------- */

START_TEST(test_256mib_binary_exact) {
  /*
   * JW_TEST_SCALE divides the volume only (256 MiB to 16 MiB at 16); the
   * output must still be byte-exact.
   */
  const uint64_t size = scaled(256 * (uint64_t)MiB, 1);
  struct env e;
  struct reader r;
  char id[JW_ID_LEN + 1];
  char src[256];
  unsigned char want[32], got[32], empty[32];
  const char *argv[] = {"cat", src, NULL};
  jw_job_info_t info;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned int dlen = 32;

  snprintf(src, sizeof(src), "%s/source.bin", tmp_root);
  make_random_file(src, (size_t)size, want);
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestFinal_ex(md, empty, &dlen);
  EVP_MD_CTX_free(md);

  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id), 0);
  reader_init(&r, 0);
  reader_subscribe(&r, &e, id, "alice");
  ck_assert(test_run_until(&e.loop, reader_ended, &r, 120000));
  info = wait_final(&e, id);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 0);
  ck_assert_uint_eq(info.output_bytes, size);
  ck_assert_uint_eq(info.output_dropped, 0);
  ck_assert_uint_eq(r.bytes[JW_STDOUT], size);
  ck_assert_uint_eq(r.bytes[JW_STDERR], 0);
  reader_digest(&r, JW_STDOUT, got);
  ck_assert(memcmp(got, want, 32) == 0);
  reader_digest(&r, JW_STDERR, got);
  ck_assert(memcmp(got, empty, 32) == 0);
  reader_free(&r);
  env_close(&e, 0);
  unlink(src);
}
END_TEST

START_TEST(test_stdout_stderr_apart) {
  static const char *const argv[] = {
      "sh", "-c",
      "i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; "
      "i=$((i+1)); done; printf tail-no-newline",
      NULL};
  struct env e;
  struct reader r;
  char id[JW_ID_LEN + 1];
  char *want[2];
  size_t wlen[2] = {0, 0};
  int i;

  want[0] = malloc(MiB);
  want[1] = malloc(MiB);
  for (i = 0; i < 3000; i++) {
    wlen[0] += (size_t)sprintf(want[0] + wlen[0], "out%d\n", i);
    wlen[1] += (size_t)sprintf(want[1] + wlen[1], "err%d\n", i);
  }
  wlen[0] += (size_t)sprintf(want[0] + wlen[0], "tail-no-newline");

  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  reader_init(&r, MiB);
  reader_subscribe(&r, &e, id, NULL);
  ck_assert(test_run_until(&e.loop, reader_ended, &r, 20000));
  ck_assert_uint_eq(r.bytes[0], wlen[0]);
  ck_assert_uint_eq(r.bytes[1], wlen[1]);
  ck_assert(memcmp(r.copy[0], want[0], wlen[0]) == 0);
  ck_assert(memcmp(r.copy[1], want[1], wlen[1]) == 0);
  reader_free(&r);
  free(want[0]);
  free(want[1]);
  env_close(&e, 0);
}
END_TEST

/* ---- 2. three subscribers -------------------------------------------- */

struct three {
  struct env *e;
  const char *id;
  struct reader *mid;
  int mid_joined_running;
  size_t join_at;
};

/* Run from the first reader's notify: subscribe the second mid-stream. */
static void join_mid(struct reader *r) {
  struct three *t = r->hook_data;
  jw_job_info_t info;
  if (t->mid->sub != NULL || r->bytes[JW_STDOUT] < t->join_at)
    return;
  ck_assert_int_eq(jw_supervisor_status(t->e->sup, t->id, NULL, &info), 0);
  t->mid_joined_running = info.proc.state == JW_PROC_RUNNING;
  reader_subscribe(t->mid, t->e, t->id, NULL);
}

START_TEST(test_three_subscribers) {
  struct env e;
  struct reader fast, mid, slow, late;
  struct three t;
  char id[JW_ID_LEN + 1];
  char f1[256], f2[256], script[700];
  unsigned char d1[32], d2[32], want[32], got[32];
  const char *argv[] = {"sh", "-c", script, NULL};
  EVP_MD_CTX *md;
  unsigned int dlen = 32;
  jw_job_info_t info;
  const size_t half = 512 * 1024;
  char *all;
  int fd;

  snprintf(f1, sizeof(f1), "%s/f1", tmp_root);
  snprintf(f2, sizeof(f2), "%s/f2", tmp_root);
  make_random_file(f1, half, d1);
  make_random_file(f2, half, d2);
  snprintf(script, sizeof(script), "cat %s; sleep 0.3; cat %s", f1, f2);
  /* The digest of f1 followed by f2. */
  all = malloc(2 * half);
  fd = open(f1, O_RDONLY);
  ck_assert_int_eq(read(fd, all, half), (ssize_t)half);
  close(fd);
  fd = open(f2, O_RDONLY);
  ck_assert_int_eq(read(fd, all + half, half), (ssize_t)half);
  close(fd);
  md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestUpdate(md, all, 2 * half);
  EVP_DigestFinal_ex(md, want, &dlen);
  EVP_MD_CTX_free(md);
  free(all);

  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  reader_init(&fast, 0);
  reader_init(&mid, 0);
  reader_init(&slow, 0);
  reader_init(&late, 0);
  slow.slow = 1;
  t.e = &e;
  t.id = id;
  t.mid = &mid;
  t.mid_joined_running = 0;
  t.join_at = half / 2;
  fast.hook = join_mid;
  fast.hook_data = &t;
  reader_subscribe(&fast, &e, id, NULL);
  reader_subscribe(&slow, &e, id, NULL);

  ck_assert(test_run_until(&e.loop, reader_ended, &fast, 20000));
  ck_assert_ptr_nonnull(mid.sub);
  ck_assert(t.mid_joined_running);
  /* The job is final although the slow reader is far behind. */
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_uint_lt(slow.bytes[0], 2 * half);
  ck_assert_int_eq(slow.ended, 0);
  ck_assert_int_lt(info.proc.ended_at_ns - info.proc.started_at_ns,
                   (int64_t)3000000000);

  /* One more subscriber after the end gets everything too. */
  reader_subscribe(&late, &e, id, NULL);
  ck_assert(late.ended);
  ck_assert(test_run_until(&e.loop, reader_ended, &mid, 20000));
  ck_assert(test_run_until(&e.loop, reader_ended, &slow, 60000));
  ck_assert_uint_ge(slow.end_ms, fast.end_ms);

  reader_digest(&fast, 0, got);
  ck_assert(memcmp(got, want, 32) == 0);
  reader_digest(&slow, 0, got);
  ck_assert(memcmp(got, want, 32) == 0);
  reader_digest(&late, 0, got);
  ck_assert(memcmp(got, want, 32) == 0);
  ck_assert_uint_eq(fast.bytes[0], 2 * half);
  ck_assert_uint_eq(mid.bytes[0], 2 * half);
  ck_assert_uint_eq(slow.bytes[0], 2 * half);
  ck_assert_uint_eq(late.bytes[0], 2 * half);
  reader_digest(&mid, 0, got);
  ck_assert(memcmp(got, want, 32) == 0);
  reader_free(&fast);
  reader_free(&mid);
  reader_free(&slow);
  reader_free(&late);
  env_close(&e, 0);
}
END_TEST

/* ---- 3. exit states and stop ----------------------------------------- */

struct stop_result {
  int calls;
  int err;
  jw_job_info_t info;
  jw_proc_status_t st;
  uint64_t at_ms;
};

static void on_stopped(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  struct stop_result *r = req->data;
  r->calls++;
  r->err = err;
  r->info = *info;
  r->st = info->proc;
  r->at_ms = now_ms();
}

/* What the job start/end callbacks saw. */
struct job_events {
  int starts, ends;
  char start_id[JW_ID_LEN + 1], end_id[JW_ID_LEN + 1];
  size_t start_nargs;
  jw_proc_state_t end_state;
  int end_code;
  uint64_t end_bytes;
  int end_stops_seen; /* stop callbacks already run when the end came */
};

static int stops_done;

static void on_job_start_cb(const jw_job_info_t *info, void *data) {
  struct job_events *ev = data;
  ev->starts++;
  snprintf(ev->start_id, sizeof(ev->start_id), "%s", info->id);
  ev->start_nargs = info->nargs;
  ck_assert_int_eq(info->proc.state, JW_PROC_RUNNING);
}

static void on_job_end_cb(const jw_job_info_t *info, void *data) {
  struct job_events *ev = data;
  ev->ends++;
  snprintf(ev->end_id, sizeof(ev->end_id), "%s", info->id);
  ev->end_state = info->proc.state;
  ev->end_code = info->proc.exit_code;
  ev->end_bytes = info->output_bytes;
  ev->end_stops_seen = stops_done;
}

static void on_stop_counted(jw_stop_req_t *req, int err,
                            const jw_job_info_t *info) {
  (void)req;
  (void)err;
  (void)info;
  stops_done++;
}

/*
 * on_job_start runs once per started job (not for a start that fails),
 * on_job_end once it is final, with all its output counted and before
 * its stop callbacks.
 */
START_TEST(test_job_start_and_end_callbacks) {
  static const char *const a[] = {"sh", "-c", "printf abcd; exit 3", NULL};
  static const char *const missing[] = {"/nonexistent/cmd", NULL};
  struct env e;
  struct job_events ev;
  jw_supervisor_options_t o;
  jw_stop_req_t req;
  char id[JW_ID_LEN + 1], id2[JW_ID_LEN + 1];
  memset(&ev, 0, sizeof(ev));
  memset(&e, 0, sizeof(e));
  memset(&o, 0, sizeof(o));
  ck_assert_int_eq(uv_loop_init(&e.loop), 0);
  o.data_dir = data_dir;
  o.on_job_start = on_job_start_cb;
  o.on_job_end = on_job_end_cb;
  o.data = &ev;
  ck_assert_int_eq(jw_supervisor_new(&e.loop, &o, &e.sup), 0);
  stops_done = 0;
  ck_assert_int_ne(start_job(&e, "o", missing, NULL, 0, NULL, id2), 0);
  ck_assert_int_eq(ev.starts, 0);
  ck_assert_int_eq(start_job(&e, "o", a, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(ev.starts, 1);
  ck_assert_str_eq(ev.start_id, id);
  ck_assert_uint_eq(ev.start_nargs, 2);
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, on_stop_counted),
                   0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &stops_done, 20000));
  ck_assert_int_eq(ev.ends, 1);
  ck_assert_str_eq(ev.end_id, id);
  ck_assert_int_eq(ev.end_stops_seen, 0);
  env_close(&e, 0);
  ck_assert_int_eq(ev.ends, 1);
  ck_assert_int_eq(ev.starts, 1);
}
END_TEST

/* The job ends by itself: the callback has its exit and its output. */
START_TEST(test_job_end_callback_has_output) {
  static const char *const a[] = {"sh", "-c", "printf abcd; exit 3", NULL};
  struct env e;
  struct job_events ev;
  jw_supervisor_options_t o;
  char id[JW_ID_LEN + 1];
  memset(&ev, 0, sizeof(ev));
  memset(&e, 0, sizeof(e));
  memset(&o, 0, sizeof(o));
  ck_assert_int_eq(uv_loop_init(&e.loop), 0);
  o.data_dir = data_dir;
  o.on_job_end = on_job_end_cb;
  o.data = &ev;
  ck_assert_int_eq(jw_supervisor_new(&e.loop, &o, &e.sup), 0);
  ck_assert_int_eq(start_job(&e, "o", a, NULL, 0, NULL, id), 0);
  wait_final(&e, id);
  ck_assert_int_eq(ev.ends, 1);
  ck_assert_int_eq(ev.end_state, JW_PROC_EXITED);
  ck_assert_int_eq(ev.end_code, 3);
  ck_assert_uint_eq(ev.end_bytes, 4);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_exit_code_and_signal) {
  static const char *const a1[] = {"sh", "-c", "exit 42", NULL};
  static const char *const a2[] = {"sh", "-c", "kill -SEGV $$", NULL};
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1];
  jw_job_info_t info;
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, "o", a1, NULL, 0, NULL, id1), 0);
  ck_assert_int_eq(start_job(&e, "o", a2, NULL, 0, NULL, id2), 0);
  info = wait_final(&e, id1);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 42);
  ck_assert_str_eq(info.command, "sh");
  ck_assert_uint_eq(info.nargs, 2);
  ck_assert_str_eq(info.args[1], "exit 42");
  info = wait_final(&e, id2);
  ck_assert_int_eq(info.proc.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(info.proc.signal, SIGSEGV);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_stop_sigkill_after_grace) {
  static const char *const argv[] = {
      "sh", "-c", "trap '' TERM; echo ready; sleep 100", NULL};
  struct env e;
  char id[JW_ID_LEN + 1], line[16];
  jw_stop_req_t req;
  struct stop_result res = {0};
  jw_job_info_t info;
  uint64_t t0;
  pid_t pgid;

  env_open(&e, 500);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  pgid = info.proc.pid;
  /* The shell has set its trap once it says so. */
  wait_line(&e, id, line, sizeof(line));
  ck_assert_str_eq(line, "ready");
  req.data = &res;
  t0 = now_ms();
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, on_stopped), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &res.calls, 5000));
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(res.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res.st.signal, SIGKILL);
  ck_assert_uint_lt(res.at_ms - t0, 500 + 1000);
  ck_assert_int_eq(count_procs(&pgid, 1), 0);
  env_close(&e, 0);
}
END_TEST

struct output_wait {
  struct env *e;
  const char *id;
  const char *text;
  char buf[4096];
};

/* Whether the job's output so far (in w->buf) holds w->text. */
static int output_has(void *arg) {
  struct output_wait *w = arg;
  char path[256];
  ssize_t n;
  int fd;
  snprintf(path, sizeof(path), "%s/wait.txt", tmp_root);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ck_assert_int_ge(fd, 0);
  n = jw__supervisor_get_output(w->e->sup, w->id, NULL, fd, fd);
  ck_assert_int_ge(n, 0);
  ck_assert_int_lt(n, (ssize_t)sizeof(w->buf));
  ck_assert_int_eq(pread(fd, w->buf, sizeof(w->buf), 0), n);
  w->buf[n] = '\0';
  close(fd);
  unlink(path);
  return strstr(w->buf, w->text) != NULL;
}

/*
 * The stop leaves nothing of the job running: the two children it had
 * (their pids printed before "ready", and checked alive in the job's
 * group before the stop) are gone after it.
 */
START_TEST(test_stop_kills_grandchildren) {
  static const char *const argv[] = {
      "sh", "-c", "sleep 100 & echo $!; sleep 100 & echo $!; echo ready; wait",
      NULL};
  struct env e;
  char id[JW_ID_LEN + 1];
  jw_stop_req_t req;
  struct stop_result res = {0};
  struct output_wait w;
  jw_job_info_t info;
  pid_t pgid;
  int kids[2];
  int i;

  env_open(&e, 5000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  pgid = info.proc.pid;
  w.e = &e;
  w.id = id;
  w.text = "ready\n";
  ck_assert_msg(test_run_until(&e.loop, output_has, &w, 10000),
                "the job did not say ready: %s", w.buf);
  ck_assert_int_eq(sscanf(w.buf, "%d\n%d\n", &kids[0], &kids[1]), 2);
  for (i = 0; i < 2; i++) {
    ck_assert_int_eq(kill(kids[i], 0), 0);
    ck_assert(!test_pid_gone(kids[i]));
    ck_assert_int_eq(getpgid(kids[i]), pgid);
  }
  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, on_stopped), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &res.calls, 5000));
  ck_assert_int_eq(res.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res.st.signal, SIGTERM);
  ck_assert_int_eq(count_procs(&pgid, 1), 0);
  for (i = 0; i < 2; i++)
    ck_assert(test_pid_gone(kids[i]));
  env_close(&e, 0);
}
END_TEST

START_TEST(test_stop_finished_and_cancel) {
  static const char *const quick[] = {"true", NULL};
  static const char *const slow[] = {"sleep", "100", NULL};
  struct env e;
  char id[JW_ID_LEN + 1], id2[JW_ID_LEN + 1];
  jw_stop_req_t req, req2, req3;
  struct stop_result res = {0}, res2 = {0}, res3 = {0};

  env_open(&e, 5000);
  ck_assert_int_eq(start_job(&e, NULL, quick, NULL, 0, NULL, id), 0);
  wait_final(&e, id);
  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, on_stopped), 0);
  /* Not from inside the call: from the loop, on the next turn. */
  ck_assert_int_eq(res.calls, 0);
  uv_run(&e.loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(res.st.state, JW_PROC_EXITED);
  ck_assert_int_eq(res.st.exit_code, 0);

  /* Two stops of a running job; one is canceled and never called. */
  ck_assert_int_eq(start_job(&e, NULL, slow, NULL, 0, NULL, id2), 0);
  req2.data = &res2;
  req3.data = &res3;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req2, id2, NULL, on_stopped), 0);
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req3, id2, NULL, on_stopped), 0);
  jw_supervisor_stop_cancel(&req2);
  ck_assert(test_run_until(&e.loop, test_flag_set, &res3.calls, 5000));
  ck_assert_int_eq(res2.calls, 0);
  ck_assert_int_eq(res3.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res3.st.signal, SIGTERM);
  env_close(&e, 0);
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res3.calls, 1);
}
END_TEST

/* ---- 4. start failures ----------------------------------------------- */

START_TEST(test_start_failures_leave_nothing) {
  static const char *const missing[] = {"jw-no-such-command-xyz", NULL};
  static const char *const dir[] = {"/usr", NULL};
  static const char *const ok[] = {"true", NULL};
  static const char *const empty[] = {"", NULL};
  static const char *const bad_env[] = {"NOEQUALS"};
  struct env e;
  char id[JW_ID_LEN + 1];
  int fds;

  env_open(&e, 1000);
  uv_run(&e.loop, UV_RUN_NOWAIT);
  fds = test_count_fds();
  ck_assert_int_eq(start_job(&e, "o", missing, NULL, 0, NULL, id), -ENOENT);
  ck_assert_int_eq(start_job(&e, "o", dir, NULL, 0, NULL, id), -EACCES);
  ck_assert_int_eq(start_job(&e, "o", ok, NULL, 0, "/nonexistent/dir", id),
                   -ENOENT);
  ck_assert_int_eq(start_job(&e, "o", empty, NULL, 0, NULL, id), JW_EINVAL);
  ck_assert_int_eq(start_job(&e, "o", ok, bad_env, 1, NULL, id), JW_EINVAL);
  ck_assert_int_eq(test_count_fds(), fds);
  ck_assert_int_eq(count_procs(NULL, 0), 0);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, NULL, NULL, NULL), 0);
  ck_assert_uint_eq(jw_supervisor_running(e.sup), 0);
  ck_assert_int_eq(count_files(data_dir), 0);
  env_close(&e, 0);
}
END_TEST

/* ---- 5. a thousand jobs ---------------------------------------------- */

START_TEST(test_thousand_jobs) {
  /*
   * JW_TEST_SCALE divides the number of jobs only (1000 to 62 at 16);
   * every job must still start, stop and leave nothing behind.
   */
  const int N = (int)scaled(1000, 1);
  static const char *const argv[] = {"sleep", "1000", NULL};
  struct env e;
  struct rlimit rl;
  char(*ids)[JW_ID_LEN + 1] = calloc(N, sizeof(*ids));
  jw_stop_req_t *reqs = calloc(N, sizeof(*reqs));
  struct stop_result *res = calloc(N, sizeof(*res));
  pid_t *pgids = calloc(N, sizeof(*pgids));
  int fds, i, stopped = 0;
  jw_job_info_t info;

  ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = rl.rlim_max;
  ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  ck_assert_uint_ge(rl.rlim_cur, 4 * (rlim_t)N + 100);

  fds = test_count_fds();
  env_open(&e, 5000);
  for (i = 0; i < N; i++) {
    ck_assert_int_eq(start_job(&e, "o", argv, NULL, 0, NULL, ids[i]), 0);
    ck_assert_int_eq(jw_supervisor_status(e.sup, ids[i], "o", &info), 0);
    pgids[i] = info.proc.pid;
  }
  ck_assert_uint_eq(jw_supervisor_running(e.sup), (size_t)N);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "o", NULL, NULL), (size_t)N);
  for (i = 0; i < N; i++) {
    reqs[i].data = &res[i];
    ck_assert_int_eq(
        jw_supervisor_stop(e.sup, &reqs[i], ids[i], "o", on_stopped), 0);
  }
  for (;;) {
    stopped = 0;
    for (i = 0; i < N; i++)
      stopped += res[i].calls;
    if (stopped == N)
      break;
    uv_run(&e.loop, UV_RUN_ONCE);
  }
  for (i = 0; i < N; i++) {
    ck_assert_int_eq(res[i].calls, 1);
    ck_assert_int_eq(res[i].st.state, JW_PROC_STOPPED);
    ck_assert_int_eq(res[i].st.signal, SIGTERM);
  }
  ck_assert_uint_eq(jw_supervisor_running(e.sup), 0);
  env_close(&e, 0);
  ck_assert_int_eq(count_procs(pgids, (size_t)N), 0);
  ck_assert_int_eq(test_count_fds(), fds);
  free(ids);
  free(reqs);
  free(res);
  free(pgids);
}
END_TEST

/* ---- 6. memory -------------------------------------------------------- */

static long rss_peak;
static uint64_t rss_every;

static void sample_rss(struct reader *r) {
  /* Every 64 MiB read (a sixteenth of the volume, scaled with it). */
  if (r->bytes[0] % rss_every < sizeof(readbuf)) {
    long v = rss_kib();
    if (v > rss_peak)
      rss_peak = v;
  }
}

START_TEST(test_rss_bounded_1gib) {
  /*
   * JW_TEST_SCALE divides the volume only (1 GiB to 64 MiB at 16); the
   * bound on growth stays 16 MiB. Under valgrind that one check is
   * skipped: its shadow memory and its quarantine of freed blocks make
   * the process's RSS say nothing about ours. All else still runs.
   */
  const uint64_t size = scaled(1024 * (uint64_t)MiB, MiB);
  char count[32];
  const char *const argv[] = {"head", "-c", count, "/dev/zero", NULL};
  static const char *const warm[] = {"head", "-c", "1000000", "/dev/zero",
                                     NULL};
  struct env e;
  struct reader r;
  char id[JW_ID_LEN + 1];
  long base;

  snprintf(count, sizeof(count), "%llu", (unsigned long long)size);
  rss_every = size / 16;
  env_open(&e, 1000);
  /* One small job first, so that one-time allocations are behind us. */
  ck_assert_int_eq(start_job(&e, NULL, warm, NULL, 0, NULL, id), 0);
  reader_init(&r, 0);
  reader_subscribe(&r, &e, id, NULL);
  ck_assert(test_run_until(&e.loop, reader_ended, &r, 20000));
  reader_free(&r);

  base = rss_kib();
  rss_peak = base;
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  reader_init(&r, 0);
  r.hook = sample_rss;
  reader_subscribe(&r, &e, id, NULL);
  ck_assert(test_run_until(&e.loop, reader_ended, &r, 240000));
  sample_rss(&r);
  ck_assert_uint_eq(r.bytes[0], size);
  fprintf(stderr, "rss: base %ld KiB, peak %ld KiB, growth %ld KiB\n", base,
          rss_peak, rss_peak - base);
  if (under_valgrind())
    fprintf(stderr, "rss: growth check skipped: valgrind's own memory "
                    "inflates the RSS\n");
  else
    ck_assert_int_lt(rss_peak - base, 16 * 1024);
  reader_free(&r);
  env_close(&e, 0);
}
END_TEST

/* ---- behaviour users rely on ----------------------------------------- */

/* Runs a job to its end and returns its stdout via get_output. */
static char *job_stdout(struct env *e, const char *const *argv,
                        const char *const *envv, size_t nenv, const char *cwd) {
  char id[JW_ID_LEN + 1];
  char path[256];
  static char buf[4096];
  ssize_t n;
  int fd;
  ck_assert_int_eq(start_job(e, NULL, argv, envv, nenv, cwd, id), 0);
  wait_final(e, id);
  snprintf(path, sizeof(path), "%s/out.txt", tmp_root);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  n = jw__supervisor_get_output(e->sup, id, NULL, fd, fd);
  ck_assert_int_ge(n, 0);
  ck_assert_int_lt(n, (ssize_t)sizeof(buf));
  ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), n);
  buf[n] = '\0';
  close(fd);
  unlink(path);
  return buf;
}

START_TEST(test_clean_env_and_working_dir) {
  static const char *const a_env[] = {"env", NULL};
  static const char *const a_pwd[] = {"pwd", NULL};
  static const char *const envv[] = {"GREETING=hello world", "X=1"};
  struct env e;
  setenv("JW_SERVER_SECRET", "must-not-leak", 1);
  env_open(&e, 1000);
  ck_assert_str_eq(job_stdout(&e, a_env, envv, 2, NULL),
                   "PATH=" DEFAULT_PATH "\nGREETING=hello world\nX=1\n");
  ck_assert_str_eq(job_stdout(&e, a_pwd, NULL, 0, "/usr/share"),
                   "/usr/share\n");
  env_close(&e, 0);
}
END_TEST

START_TEST(test_get_output_streams_to_fds) {
  static const char *const argv[] = {"sh", "-c",
                                     "echo o1; echo e1 >&2; echo o2", NULL};
  struct env e;
  char id[JW_ID_LEN + 1];
  int po[2], pe[2];
  char bo[64] = "", be[64] = "";
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, "o", argv, NULL, 0, NULL, id), 0);
  wait_final(&e, id);
  ck_assert_int_eq(pipe(po), 0);
  ck_assert_int_eq(pipe(pe), 0);
  ck_assert_int_eq(jw__supervisor_get_output(e.sup, id, "o", po[1], pe[1]), 9);
  close(po[1]);
  close(pe[1]);
  ck_assert_int_eq(read(po[0], bo, sizeof(bo)), 6);
  ck_assert_int_eq(read(pe[0], be, sizeof(be)), 3);
  ck_assert_str_eq(bo, "o1\no2\n");
  ck_assert_str_eq(be, "e1\n");
  close(po[0]);
  close(pe[0]);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_unsubscribe_in_notify) {
  static const char *const argv[] = {"sh", "-c", "sleep 0.2; echo hi", NULL};
  struct env e;
  struct reader r, other;
  char id[JW_ID_LEN + 1];
  jw_stream_t s;
  char buf[16];
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  reader_init(&r, 0);
  reader_init(&other, 0);
  ck_assert_int_eq(
      jw_supervisor_subscribe(e.sup, id, NULL, on_notify, &r, &r.sub), 0);
  ck_assert_int_eq(jw_outlog_read(r.sub, buf, sizeof(buf), &s), JW_EAGAIN);
  r.close_on_notify = 1;
  reader_subscribe(&other, &e, id, NULL);
  ck_assert(test_run_until(&e.loop, reader_ended, &other, 10000));
  ck_assert_int_eq(r.notifies, 1);
  ck_assert_ptr_null(r.sub);
  ck_assert_uint_eq(other.bytes[0], 3);
  reader_free(&r);
  reader_free(&other);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_owners_and_ids) {
  static const char *const argv[] = {"true", NULL};
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], id3[JW_ID_LEN + 1];
  jw_job_info_t info;
  jw_stop_req_t req;
  jw_outlog_reader_t *sub = NULL;
  int i;

  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id1), 0);
  ck_assert_int_eq(start_job(&e, "bob", argv, NULL, 0, NULL, id2), 0);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id3), 0);
  ck_assert_uint_eq(strlen(id1), JW_ID_LEN);
  for (i = 0; i < JW_ID_LEN; i++)
    ck_assert(strchr("0123456789abcdef", id1[i]) != NULL);
  ck_assert_str_ne(id1, id2);
  ck_assert_str_ne(id1, id3);

  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, "alice", &info), 0);
  ck_assert_str_eq(info.owner, "alice");
  ck_assert_str_eq(info.id, id1);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, "bob", &info), JW_EOWNER);
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id1, "bob", on_stopped),
                   JW_EOWNER);
  ck_assert_int_eq(
      jw_supervisor_subscribe(e.sup, id1, "bob", on_notify, NULL, &sub),
      JW_EOWNER);
  ck_assert_int_eq(jw__supervisor_get_output(e.sup, id1, "bob", 1, 2),
                   JW_EOWNER);
  ck_assert_int_eq(jw_supervisor_status(e.sup, "0123", NULL, &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup,
                                        "00000000000000000000000000000000",
                                        "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, "nope", NULL, on_stopped),
                   JW_ENOTFOUND);
  ck_assert_int_eq(
      jw_supervisor_subscribe(e.sup, "nope", NULL, on_notify, NULL, &sub),
      JW_ENOTFOUND);
  ck_assert_ptr_null(sub);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "alice", NULL, NULL), 2);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "bob", NULL, NULL), 1);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "carol", NULL, NULL), 0);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, NULL, NULL, NULL), 3);
  env_close(&e, 0);
}
END_TEST

struct list_acc {
  char ids[4][JW_ID_LEN + 1];
  int n;
};

static void collect(const jw_job_info_t *info, void *data) {
  struct list_acc *a = data;
  ck_assert_int_lt(a->n, 4);
  strcpy(a->ids[a->n++], info->id);
}

START_TEST(test_list_oldest_first) {
  static const char *const argv[] = {"sleep", "100", NULL};
  struct env e;
  char ids[3][JW_ID_LEN + 1];
  struct list_acc acc = {.n = 0};
  int i;
  env_open(&e, 1000);
  for (i = 0; i < 3; i++)
    ck_assert_int_eq(start_job(&e, "o", argv, NULL, 0, NULL, ids[i]), 0);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "o", collect, &acc), 3);
  for (i = 0; i < 3; i++)
    ck_assert_str_eq(acc.ids[i], ids[i]);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_shutdown_with_running_jobs) {
  static const char *const a1[] = {"sleep", "100", NULL};
  static const char *const a2[] = {"sh", "-c",
                                   "trap '' TERM; echo ready; sleep 100", NULL};
  static const char *const a3[] = {"sh", "-c", "echo started; sleep 100", NULL};
  struct env e;
  struct reader r;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], id3[JW_ID_LEN + 1];
  char line[16];
  jw_job_info_t info;
  pid_t pgids[3];
  jw_stop_req_t req;
  struct stop_result res = {0};

  env_open(&e, 300);
  ck_assert_int_eq(start_job(&e, NULL, a1, NULL, 0, NULL, id1), 0);
  ck_assert_int_eq(start_job(&e, NULL, a2, NULL, 0, NULL, id2), 0);
  ck_assert_int_eq(start_job(&e, NULL, a3, NULL, 0, NULL, id3), 0);
  jw_supervisor_status(e.sup, id1, NULL, &info);
  pgids[0] = info.proc.pid;
  jw_supervisor_status(e.sup, id2, NULL, &info);
  pgids[1] = info.proc.pid;
  jw_supervisor_status(e.sup, id3, NULL, &info);
  pgids[2] = info.proc.pid;
  reader_init(&r, 0);
  reader_subscribe(&r, &e, id3, NULL);
  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id1, NULL, on_stopped), 0);
  /* The job that ignores TERM has set its trap once it says so. */
  wait_line(&e, id2, line, sizeof(line));
  ck_assert_str_eq(line, "ready");
  /* And the third has written what its subscriber must read. */
  wait_line(&e, id3, line, sizeof(line));
  ck_assert_str_eq(line, "started");

  jw_supervisor_shutdown(e.sup, on_done, &e);
  ck_assert_int_eq(start_job(&e, NULL, a1, NULL, 0, NULL, id1), JW_ECLOSED);
  ck_assert(test_run_until(&e.loop, test_flag_set, &e.done, 10000));
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.st.state, JW_PROC_STOPPED);
  ck_assert_uint_eq(jw_supervisor_running(e.sup), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.proc.signal, SIGKILL);
  /* The subscriber was told of the end and reads everything. */
  ck_assert(r.ended);
  ck_assert_uint_eq(r.bytes[0], 8);
  ck_assert_int_eq(count_procs(pgids, 3), 0);
  /* After shutdown, a stop request cannot be scheduled any more. */
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id1, NULL, on_stopped),
                   JW_ECLOSED);
  /* A second shutdown is refused: its done_cb would never run. */
  ck_assert_int_eq(jw_supervisor_shutdown(e.sup, on_done, &e), JW_ECLOSED);
  reader_free(&r);
  env_end(&e, 1);
  ck_assert_int_eq(e.done, 1);
  ck_assert_int_eq(count_files(data_dir), 3);
}
END_TEST

struct end_shutdown {
  struct env *e;
  struct reader *r;
};

static void shutdown_at_end(jw_outlog_reader_t *sub, void *data) {
  struct end_shutdown *es = data;
  consume(es->r, sizeof(readbuf), 0);
  if (es->r->ended) {
    jw_outlog_reader_close(sub);
    es->r->sub = NULL;
    jw_supervisor_shutdown(es->e->sup, on_done, es->e);
  }
}

START_TEST(test_shutdown_from_end_notify) {
  /*
   * The end is reported from inside the job's exit handling; a shutdown
   * started there must still wait for the job's handles before done_cb,
   * so that freeing in done_cb's wake is safe.
   */
  static const char *const argv[] = {"sh", "-c", "sleep 0.1; echo bye", NULL};
  struct env e;
  struct reader r;
  struct end_shutdown es = {&e, &r};
  char id[JW_ID_LEN + 1];
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  reader_init(&r, 0);
  ck_assert_int_eq(
      jw_supervisor_subscribe(e.sup, id, NULL, shutdown_at_end, &es, &r.sub),
      0);
  consume(&r, sizeof(readbuf), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &e.done, 10000));
  ck_assert_uint_eq(r.bytes[0], 4);
  env_end(&e, 0);
  ck_assert_int_eq(count_files(data_dir), 0);
  reader_free(&r);
}
END_TEST

START_TEST(test_new_creates_private_dir) {
  struct env e;
  struct stat st;
  env_open(&e, 0);
  ck_assert_int_eq(stat(data_dir, &st), 0);
  ck_assert(S_ISDIR(st.st_mode));
  ck_assert_uint_eq(st.st_mode & 0777, 0700);
  /* One that never ran a job is closed like any other. */
  env_end(&e, 0);
}
END_TEST

START_TEST(test_max_running) {
  static const char *const argv[] = {"sleep", "100", NULL};
  jw_supervisor_options_t o;
  struct env e;
  char id[JW_ID_LEN + 1];
  memset(&e, 0, sizeof(e));
  ck_assert_int_eq(uv_loop_init(&e.loop), 0);
  memset(&o, 0, sizeof(o));
  o.data_dir = data_dir;
  o.stop_grace_ms = 1000;
  o.max_running = 2;
  ck_assert_int_eq(jw_supervisor_new(&e.loop, &o, &e.sup), 0);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), JW_ELIMIT);
  env_close(&e, 0);
}
END_TEST

/* ---- limits: per owner, output cap, finished-job retention ----------- */

struct drops {
  int calls;
  int err;
  char id[JW_ID_LEN + 1];
};

static void on_drop_cb(const char *id, const char *owner, int err, void *data) {
  struct drops *d = data;
  (void)owner;
  d->calls++;
  d->err = err;
  snprintf(d->id, sizeof(d->id), "%s", id);
}

static void env_open_opts(struct env *e, jw_supervisor_options_t *o) {
  memset(e, 0, sizeof(*e));
  ck_assert_int_eq(uv_loop_init(&e->loop), 0);
  o->data_dir = data_dir;
  o->stop_grace_ms = 1000;
  ck_assert_int_eq(jw_supervisor_new(&e->loop, o, &e->sup), 0);
}

START_TEST(test_max_running_per_owner) {
  static const char *const argv[] = {"sleep", "100", NULL};
  jw_supervisor_options_t o;
  struct env e;
  char id[JW_ID_LEN + 1];
  memset(&o, 0, sizeof(o));
  o.max_running_per_owner = 2;
  o.max_running = 3;
  env_open_opts(&e, &o);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id), JW_ELIMIT);
  ck_assert_uint_eq(jw_supervisor_running_owner(e.sup, "alice"), 2);
  /* Another owner has its own count, up to the total. */
  ck_assert_int_eq(start_job(&e, "bob", argv, NULL, 0, NULL, id), 0);
  ck_assert_uint_eq(jw_supervisor_running_owner(e.sup, "bob"), 1);
  ck_assert_int_eq(start_job(&e, "bob", argv, NULL, 0, NULL, id), JW_ELIMIT);
  ck_assert_uint_eq(jw_supervisor_running(e.sup), 3);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_output_cap_drops_and_job_goes_on) {
  /* 5000 bytes past a 1000-byte cap, then an exit code the cap must not
   * change: the job is not stopped or blocked by it. */
  static const char *const argv[] = {
      "sh", "-c", "head -c 3000 /dev/zero; head -c 2000 /dev/zero >&2; exit 7",
      NULL};
  jw_supervisor_options_t o;
  struct drops d = {0};
  struct reader r;
  struct env e;
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  memset(&o, 0, sizeof(o));
  o.max_output_bytes = 1000;
  o.on_drop = on_drop_cb;
  o.data = &d;
  env_open_opts(&e, &o);
  ck_assert_int_eq(start_job(&e, "alice", argv, NULL, 0, NULL, id), 0);
  info = wait_final(&e, id);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 7);
  ck_assert_uint_eq(info.output_bytes, 1000);
  ck_assert_uint_eq(info.output_dropped, 4000);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, JW_ELIMIT);
  ck_assert_str_eq(d.id, id);
  /* A reader gets exactly what was kept, and then the end. */
  reader_init(&r, 0);
  reader_subscribe(&r, &e, id, "alice");
  ck_assert(r.ended);
  ck_assert_uint_eq(r.bytes[0] + r.bytes[1], 1000);
  ck_assert_uint_eq(jw_outlog_reader_dropped(r.sub), 4000);
  reader_free(&r);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_finished_retention) {
  static const char *const hello[] = {"echo", "hello", NULL};
  static const char *const quick[] = {"true", NULL};
  jw_supervisor_options_t o;
  struct env e;
  struct reader r;
  char first[JW_ID_LEN + 1], id[JW_ID_LEN + 1], other[JW_ID_LEN + 1];
  char keep[2][JW_ID_LEN + 1];
  jw_job_info_t info;
  memset(&o, 0, sizeof(o));
  o.max_finished_per_owner = 2;
  env_open_opts(&e, &o);
  ck_assert_int_eq(start_job(&e, "bob", quick, NULL, 0, NULL, other), 0);
  wait_final(&e, other);
  ck_assert_int_eq(start_job(&e, "alice", hello, NULL, 0, NULL, first), 0);
  wait_final(&e, first);
  /* A subscriber opened before the removal reads to the end after it. */
  reader_init(&r, 64);
  ck_assert_int_eq(
      jw_supervisor_subscribe(e.sup, first, "alice", on_notify, &r, &r.sub), 0);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(start_job(&e, "alice", quick, NULL, 0, NULL, keep[i]), 0);
    wait_final(&e, keep[i]);
  }
  /* The job that finished first is gone, with its log file. */
  ck_assert_int_eq(jw_supervisor_status(e.sup, first, "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_list(e.sup, "alice", NULL, NULL), 2);
  ck_assert_int_eq(count_files(data_dir), 3);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(jw_supervisor_status(e.sup, keep[i], "alice", &info), 0);
  /* Other owners are not touched. */
  ck_assert_int_eq(jw_supervisor_status(e.sup, other, "bob", &info), 0);
  consume(&r, sizeof(readbuf), 0);
  ck_assert(r.ended);
  ck_assert_uint_eq(r.bytes[0], 6);
  ck_assert_int_eq(memcmp(r.copy[0], "hello\n", 6), 0);
  reader_free(&r);
  /* A running job never counts, and one that just finished stays. */
  ck_assert_int_eq(start_job(&e, "alice", quick, NULL, 0, NULL, id), 0);
  wait_final(&e, id);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, "alice", &info), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, keep[0], "alice", &info),
                   JW_ENOTFOUND);
  env_close(&e, 0);
}
END_TEST

START_TEST(test_retention_answers_pending_stop) {
  static const char *const quick[] = {"true", NULL};
  jw_supervisor_options_t o;
  struct env e;
  struct stop_result res = {0};
  jw_stop_req_t req;
  char a[JW_ID_LEN + 1], b[JW_ID_LEN + 1];
  memset(&o, 0, sizeof(o));
  o.max_finished_per_owner = 1;
  env_open_opts(&e, &o);
  ck_assert_int_eq(start_job(&e, "alice", quick, NULL, 0, NULL, a), 0);
  wait_final(&e, a);
  /*
   * A stop of a finished job answers on the next turn; the next job
   * finishing may remove the job first. Either way the callback runs
   * exactly once, with the final status.
   */
  ck_assert_int_eq(start_job(&e, "alice", quick, NULL, 0, NULL, b), 0);
  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, a, "alice", on_stopped), 0);
  wait_final(&e, b);
  ck_assert(test_run_until(&e.loop, test_flag_set, &res.calls, 5000));
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(res.st.state, JW_PROC_EXITED);
  env_close(&e, 0);
}
END_TEST

/*
 * The retention removes the job that became final first, whatever order
 * the jobs started in.
 */
START_TEST(test_retention_in_finish_order) {
  static const char *const slow[] = {"sleep", "0.3", NULL};
  static const char *const quick[] = {"true", NULL};
  jw_supervisor_options_t o;
  struct env e;
  char a[JW_ID_LEN + 1], b[JW_ID_LEN + 1];
  jw_job_info_t info;
  memset(&o, 0, sizeof(o));
  o.max_finished_per_owner = 1;
  env_open_opts(&e, &o);
  ck_assert_int_eq(start_job(&e, "alice", slow, NULL, 0, NULL, a), 0);
  ck_assert_int_eq(start_job(&e, "alice", quick, NULL, 0, NULL, b), 0);
  wait_final(&e, b);
  ck_assert_int_eq(jw_supervisor_status(e.sup, a, "alice", &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_RUNNING);
  wait_final(&e, a);
  /* b, started second but finished first, is the one that went. */
  ck_assert_int_eq(jw_supervisor_status(e.sup, b, "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup, a, "alice", &info), 0);
  env_close(&e, 0);
}
END_TEST

static off_t log_size(const char *id) {
  char p[256];
  struct stat st;
  snprintf(p, sizeof(p), "%s/%s.log", data_dir, id);
  ck_assert_int_eq(stat(p, &st), 0);
  return st.st_size;
}

static jw_job_info_t run_writer(struct env *e, const char *owner,
                                const char *bytes, char id[JW_ID_LEN + 1]) {
  const char *const argv[] = {"head", "-c", bytes, "/dev/zero", NULL};
  ck_assert_int_eq(start_job(e, owner, argv, NULL, 0, NULL, id), 0);
  return wait_final(e, id);
}

/*
 * One client cannot fill the disk: past its cap its finished jobs go,
 * the one that finished first first, and when none is left its new
 * output is dropped and counted. Other clients are not touched.
 */
START_TEST(test_disk_cap_per_owner) {
  enum { CAP = 100000 };
  jw_supervisor_options_t o;
  struct drops d = {0};
  struct env e;
  char j1[JW_ID_LEN + 1], j2[JW_ID_LEN + 1], j3[JW_ID_LEN + 1];
  char j4[JW_ID_LEN + 1], other[JW_ID_LEN + 1];
  jw_job_info_t info;
  memset(&o, 0, sizeof(o));
  o.max_disk_per_owner = CAP;
  o.on_drop = on_drop_cb;
  o.data = &d;
  env_open_opts(&e, &o);
  info = run_writer(&e, "alice", "40000", j1);
  ck_assert_uint_eq(info.output_bytes, 40000);
  run_writer(&e, "alice", "40000", j2);
  /* Bob's 90000 bytes count for bob alone. */
  info = run_writer(&e, "bob", "90000", other);
  ck_assert_uint_eq(info.output_bytes, 90000);
  /* 120000 bytes would pass the cap: j1, which finished first, goes. */
  info = run_writer(&e, "alice", "40000", j3);
  ck_assert_uint_eq(info.output_bytes, 40000);
  ck_assert_uint_eq(info.output_dropped, 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, j1, "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup, j2, "alice", &info), 0);
  ck_assert_int_eq(d.calls, 0);
  /* One job past the cap on its own: the others go, then it drops. */
  info = run_writer(&e, "alice", "150000", j4);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 0);
  ck_assert_uint_eq(info.output_bytes + info.output_dropped, 150000);
  ck_assert_uint_le(log_size(j4), CAP);
  /* At most a few hundred bytes of record headers short of the cap. */
  ck_assert_uint_ge(info.output_bytes, CAP - 1000);
  ck_assert_int_eq(jw_supervisor_status(e.sup, j2, "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup, j3, "alice", &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_list(e.sup, "alice", NULL, NULL), 1);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(d.err, -EDQUOT);
  ck_assert_str_eq(d.id, j4);
  ck_assert_int_eq(jw_supervisor_status(e.sup, other, "bob", &info), 0);
  ck_assert_uint_eq(info.output_bytes, 90000);
  ck_assert_int_eq(count_files(data_dir), 2);
  env_close(&e, 0);
}
END_TEST

/* ---- lifetime: close ------------------------------------------------- */

/*
 * A failed start leaves the process's handles closing on the loop: a close
 * right after must wait for them (it was a use-after-free under ASan when
 * the supervisor was freed at once).
 */
START_TEST(test_close_after_failed_start) {
  static const char *const missing[] = {"jw-no-such-command-xyz", NULL};
  struct env e;
  char id[JW_ID_LEN + 1];
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, "o", missing, NULL, 0, NULL, id), -ENOENT);
  env_end(&e, 0);
  ck_assert_int_eq(count_files(data_dir), 0);
}
END_TEST

struct close_check {
  const char *id;
  jw_job_info_t info;
  int status_err;
  int calls;
};

static void check_in_close(jw_supervisor_t *sup, void *data) {
  struct close_check *c = data;
  c->calls++;
  c->status_err = jw_supervisor_status(sup, c->id, NULL, &c->info);
}

/*
 * Close without a shutdown stops what runs, answers pending stops first,
 * keeps the records readable in its callback, and leaves a subscriber
 * reading to the end after the supervisor is gone.
 */
START_TEST(test_close_stops_running_jobs) {
  static const char *const argv[] = {"sh", "-c", "echo ready; sleep 100", NULL};
  struct env e;
  struct reader r;
  struct stop_result res = {0};
  struct close_check c = {0};
  jw_stop_req_t req;
  jw_job_info_t info;
  char id[JW_ID_LEN + 1], line[16], line2[JW_ID_LEN + 1];
  pid_t pgid;

  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  pgid = info.proc.pid;
  wait_line(&e, id, line, sizeof(line));
  reader_init(&r, 64);
  reader_subscribe(&r, &e, id, NULL);
  req.data = &res;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, on_stopped), 0);
  c.id = id;
  jw_supervisor_close(e.sup, 0, check_in_close, &c);
  ck_assert_int_eq(c.calls, 0);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, line2), JW_ECLOSED);
  ck_assert_int_eq(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&e.loop), 0);
  ck_assert_int_eq(c.calls, 1);
  ck_assert_int_eq(c.status_err, 0);
  ck_assert_int_eq(c.info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(count_procs(&pgid, 1), 0);
  /* The log file is gone, but the subscriber reads on to the end. */
  ck_assert_int_eq(count_files(data_dir), 0);
  consume(&r, sizeof(readbuf), 0);
  ck_assert(r.ended);
  ck_assert_uint_eq(r.bytes[0], 6);
  ck_assert(memcmp(r.copy[0], "ready\n", 6) == 0);
  reader_free(&r);
}
END_TEST

static void close_in_stop(jw_stop_req_t *req, int err,
                          const jw_job_info_t *info) {
  struct env *e = req->data;
  (void)err;
  (void)info;
  jw_supervisor_close(e->sup, 0, on_closed, NULL);
}

/* Closing from inside one of the supervisor's callbacks is safe. */
START_TEST(test_close_from_stop_callback) {
  static const char *const argv[] = {"sleep", "100", NULL};
  struct env e;
  jw_stop_req_t req;
  char id[JW_ID_LEN + 1];
  env_open(&e, 1000);
  ck_assert_int_eq(start_job(&e, NULL, argv, NULL, 0, NULL, id), 0);
  req.data = &e;
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id, NULL, close_in_stop), 0);
  closed_calls = 0;
  ck_assert_int_eq(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(closed_calls, 1);
  ck_assert_int_eq(uv_loop_close(&e.loop), 0);
}
END_TEST

/* A second close would free twice: it aborts with a message instead. */
START_TEST(test_close_twice_aborts) {
  struct env e;
  env_open(&e, 1000);
  jw_supervisor_close(e.sup, 0, NULL, NULL);
  jw_supervisor_close(e.sup, 0, NULL, NULL);
}
END_TEST

/*
 * Every allocation of new, start and subscribe failing in turn (nghttp2's
 * failmalloc_test): the call fails with -ENOMEM, nothing is kept (no job,
 * no file, no process), the supervisor still closes cleanly, and LSan
 * finds no leak.
 */
START_TEST(test_failmalloc) {
  static const char *const argv[] = {"echo", "hi", NULL};
  size_t n;
  int injected = 1;
  for (n = 0; injected && n < 500; n++) {
    struct env e;
    jw_supervisor_options_t o;
    jw_outlog_reader_t *r = NULL;
    char id[JW_ID_LEN + 1];
    int err, started = 0;

    memset(&e, 0, sizeof(e));
    memset(&o, 0, sizeof(o));
    ck_assert_int_eq(uv_loop_init(&e.loop), 0);
    o.data_dir = data_dir;
    o.stop_grace_ms = 1000;
    failmalloc_arm(n);
    err = jw_supervisor_new(&e.loop, &o, &e.sup);
    if (err == 0) {
      err = start_job(&e, "o", argv, NULL, 0, NULL, id);
      started = err == 0;
    }
    if (err == 0)
      err = jw_supervisor_subscribe(e.sup, id, "o", NULL, NULL, &r);
    injected = n < failmalloc_disarm();
    if (!injected)
      ck_assert_int_eq(err, 0);
    else
      ck_assert_int_eq(err, -ENOMEM);
    if (e.sup == NULL) {
      ck_assert_int_eq(uv_loop_close(&e.loop), 0);
      continue;
    }
    ck_assert_uint_eq(jw_supervisor_list(e.sup, NULL, NULL, NULL),
                      (size_t)started);
    if (started) {
      wait_final(&e, id);
    } else {
      ck_assert_int_eq(count_files(data_dir), 0);
      ck_assert_int_eq(count_procs(NULL, 0), 0);
    }
    if (r != NULL) {
      jw_stream_t st;
      char buf[8];
      ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &st), 3);
      jw_outlog_reader_close(r);
    }
    env_end(&e, 0);
    ck_assert_int_eq(count_files(data_dir), 0);
  }
  ck_assert(!injected);
  fprintf(stderr, "failmalloc: %zu allocations failed in turn\n", n - 1);
  ck_assert_uint_gt(n, 5);
}
END_TEST

struct wait_result {
  int calls;
  int err;
  jw_job_info_t info;
};

static void on_waited(jw_wait_req_t *req, int err, const jw_job_info_t *info) {
  struct wait_result *r = req->data;
  r->calls++;
  r->err = err;
  r->info = *info;
}

static int wait_called(void *arg) {
  return ((struct wait_result *)arg)->calls > 0;
}

/*
 * A wait is answered when the job ends (without stopping it), on the next
 * turn for a final job, and with JW_ENOTFOUND when the job is removed
 * before; a canceled wait is never answered. Remove takes final jobs only.
 */
START_TEST(test_wait_and_remove) {
  static const char *const a1[] = {"sh", "-c", "sleep 0.2; exit 4", NULL};
  struct env e;
  char id[JW_ID_LEN + 1];
  jw_wait_req_t req, req2;
  struct wait_result res = {0}, res2 = {0};

  env_open(&e, 300);
  ck_assert_int_eq(start_job(&e, "alice", a1, NULL, 0, NULL, id), 0);
  req.data = &res;
  req2.data = &res2;
  ck_assert_int_eq(jw_supervisor_wait(e.sup, &req, id, "bob", on_waited),
                   JW_EOWNER);
  ck_assert_int_eq(jw_supervisor_remove(e.sup, id, "alice"), -EBUSY);
  ck_assert_int_eq(jw_supervisor_wait(e.sup, &req, id, "alice", on_waited), 0);
  ck_assert_int_eq(jw_supervisor_wait(e.sup, &req2, id, "alice", on_waited), 0);
  jw_supervisor_wait_cancel(&req2);
  ck_assert(test_run_until(&e.loop, wait_called, &res, 20000));
  ck_assert_int_eq(res.err, 0);
  ck_assert_int_eq(res.info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(res.info.proc.exit_code, 4);
  ck_assert_int_eq(res.info.end_reason, JW_END_EXITED);
  ck_assert_int_eq(res2.calls, 0);

  /* Final: answered from the loop, unless the job goes first. */
  memset(&res, 0, sizeof(res));
  ck_assert_int_eq(jw_supervisor_wait(e.sup, &req, id, "alice", on_waited), 0);
  ck_assert_int_eq(res.calls, 0);
  ck_assert_int_eq(jw_supervisor_remove(e.sup, id, "bob"), JW_EOWNER);
  ck_assert_int_eq(jw_supervisor_remove(e.sup, id, "alice"), 0);
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.err, JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_remove(e.sup, id, "alice"), JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_wait(e.sup, &req, id, "alice", on_waited),
                   JW_ENOTFOUND);
  ck_assert_int_eq(count_files(data_dir), 0);
  env_close(&e, 0);
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res2.calls, 0);
}
END_TEST

/* What each way of ending gives as the end reason. */
START_TEST(test_end_reasons) {
  static const char *const self[] = {"sh", "-c", "kill -9 $$", NULL};
  static const char *const slp[] = {"sleep", "100", NULL};
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], id3[JW_ID_LEN + 1];
  jw_job_info_t info;

  env_open(&e, 300);
  ck_assert_int_eq(start_job(&e, NULL, self, NULL, 0, NULL, id1), 0);
  ck_assert_int_eq(start_job(&e, NULL, slp, NULL, 0, NULL, id2), 0);
  ck_assert_int_eq(start_job(&e, NULL, slp, NULL, 0, NULL, id3), 0);
  info = wait_final(&e, id1);
  ck_assert_int_eq(info.proc.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(info.end_reason, JW_END_SIGNALED);
  ck_assert_int_eq(jw_supervisor_signal(e.sup, id1, NULL, SIGTERM), JW_ECLOSED);
  ck_assert_int_eq(jw_supervisor_signal(e.sup, id2, NULL, 0), JW_EINVAL);
  ck_assert_int_eq(jw_supervisor_signal(e.sup, id2, NULL, 65), JW_EINVAL);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &info), 0);
  ck_assert_int_eq(info.end_reason, JW_END_NONE);
  ck_assert(!info.stopping);
  ck_assert_int_eq(jw_supervisor_signal(e.sup, id2, NULL, SIGTERM), 0);
  info = wait_final(&e, id2);
  ck_assert_int_eq(info.proc.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(info.end_reason, JW_END_STOPPED);
  ck_assert_int_eq(jw_supervisor_shutdown(e.sup, on_done, &e), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &e.done, 30000));
  ck_assert_int_eq(jw_supervisor_status(e.sup, id3, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_SHUTDOWN);
  env_end(&e, 0);
}
END_TEST

static int job_stopping(void *arg) {
  struct test_job_wait *w = arg;
  ck_assert_int_eq(jw_supervisor_status(w->sup, w->id, NULL, &w->info), 0);
  return w->info.stopping;
}

/*
 * A run-time limit stops the job as a stop would (SIGTERM, the grace,
 * SIGKILL) and ends it with JW_END_TIMED_OUT; it is STOPPING meanwhile.
 */
START_TEST(test_timeout_stops_job) {
  static const char *const a[] = {"sh", "-c",
                                  "trap '' TERM; echo ready; sleep 100", NULL};
  static const char *const quick[] = {"sleep", "100", NULL};
  struct env e;
  char id[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], line[16];
  jw_job_spec_t spec;
  jw_job_info_t info;
  struct stop_result sr = {0};
  jw_stop_req_t req = {.data = &sr};

  env_open(&e, 500);
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, a, NULL, 0, NULL);
  spec.timeout_ms = 300;
  uint64_t t0 = now_ms();
  ck_assert_int_eq(jw_supervisor_start(e.sup, NULL, &spec, id), 0);
  /*
   * A job with the earlier limit that ends first leaves the timer to the
   * other. It is stopped before the loop runs, so that it ends first
   * however slow the machine (valgrind): the stop's reason wins.
   */
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, quick, NULL, 0, NULL);
  spec.timeout_ms = 100;
  ck_assert_int_eq(jw_supervisor_start(e.sup, NULL, &spec, id2), 0);
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id2, NULL, on_stopped), 0);
  wait_line(&e, id, line, sizeof(line));
  struct test_job_wait w = {e.sup, id, {0}};
  ck_assert(test_run_until(&e.loop, job_stopping, &w, 20000));
  ck_assert_uint_ge(now_ms() - t0, 300);
  ck_assert_int_eq(w.info.proc.state, JW_PROC_RUNNING);
  info = wait_final(&e, id);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.proc.signal, SIGKILL);
  ck_assert_int_eq(info.end_reason, JW_END_TIMED_OUT);
  ck_assert_uint_eq(info.timeout_ms, 300);
  ck_assert(!info.stopping);
  ck_assert_uint_ge(now_ms() - t0, 300 + 500);
  info = wait_final(&e, id2);
  ck_assert_int_eq(info.end_reason, JW_END_STOPPED);
  ck_assert_int_eq(sr.calls, 1);
  env_close(&e, 0);
}
END_TEST

/*
 * A stop with a long grace of its own does not hold up a shutdown: the
 * shutdown's shorter grace brings the SIGKILL forward.
 */
START_TEST(test_shutdown_hastens_long_grace) {
  static const char *const a[] = {"sh", "-c",
                                  "trap '' TERM; echo ready; sleep 100", NULL};
  struct env e;
  char id[JW_ID_LEN + 1], line[16];
  jw_stop_req_t req;
  struct stop_result res = {0};

  env_open(&e, 300);
  ck_assert_int_eq(start_job(&e, NULL, a, NULL, 0, NULL, id), 0);
  wait_line(&e, id, line, sizeof(line));
  req.data = &res;
  ck_assert_int_eq(
      jw_supervisor_stop_grace(e.sup, &req, id, NULL, 3600000, on_stopped), 0);
  struct test_job_wait w = {e.sup, id, {0}};
  ck_assert(test_run_until(&e.loop, job_stopping, &w, 20000));
  /* An hour's grace asked; the shutdown's 0.3 s ends it long before. */
  ck_assert_int_eq(jw_supervisor_shutdown(e.sup, on_done, &e), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &e.done, 30000));
  ck_assert_int_eq(res.calls, 1);
  ck_assert_int_eq(res.st.state, JW_PROC_STOPPED);
  ck_assert_int_eq(res.st.signal, SIGKILL);
  ck_assert_int_eq(res.info.end_reason, JW_END_STOPPED);
  env_end(&e, 0);
}
END_TEST

static Suite *supervisor_suite(void) {
  Suite *s = suite_create("supervisor");
  TCase *tc = test_tcase(s, "core", setup, teardown, 60);
  TCase *big = test_tcase(s, "big", setup, teardown, 300);
  const TTest *const tc_tests[] = {test_stdout_stderr_apart,
                                   test_three_subscribers,
                                   test_exit_code_and_signal,
                                   test_stop_sigkill_after_grace,
                                   test_stop_kills_grandchildren,
                                   test_stop_finished_and_cancel,
                                   test_start_failures_leave_nothing,
                                   test_clean_env_and_working_dir,
                                   test_get_output_streams_to_fds,
                                   test_unsubscribe_in_notify,
                                   test_owners_and_ids,
                                   test_list_oldest_first,
                                   test_shutdown_with_running_jobs,
                                   test_shutdown_from_end_notify,
                                   test_new_creates_private_dir,
                                   test_max_running,
                                   test_close_after_failed_start,
                                   test_close_stops_running_jobs,
                                   test_close_from_stop_callback,
                                   NULL};
  test_add_tests(tc, tc_tests);
  tcase_add_test_raise_signal(tc, test_close_twice_aborts, SIGABRT);
  tcase_add_test(tc, test_failmalloc);
  const TTest *const big_tests[] = {test_256mib_binary_exact,
                                    test_thousand_jobs, test_rss_bounded_1gib,
                                    NULL};
  test_add_tests(big, big_tests);
  const TTest *const tc_more_tests[] = {test_max_running_per_owner,
                                        test_output_cap_drops_and_job_goes_on,
                                        test_finished_retention,
                                        test_retention_answers_pending_stop,
                                        test_retention_in_finish_order,
                                        test_disk_cap_per_owner,
                                        test_job_start_and_end_callbacks,
                                        test_job_end_callback_has_output,
                                        test_wait_and_remove,
                                        test_end_reasons,
                                        test_timeout_stops_job,
                                        test_shutdown_hastens_long_grace,
                                        NULL};
  test_add_tests(tc, tc_more_tests);
  return s;
}

int main(void) { return test_run_suite(supervisor_suite()); }
