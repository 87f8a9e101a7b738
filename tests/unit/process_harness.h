/*
 * What the suites of the process module (test_process.c, test_spawn.c,
 * test_nsinit.c, test_exitwatch.c) share: a job's context (its output,
 * status and callback counts), starting a job with the options a test
 * set, running it to the end, waiting for what it prints, and closing it.
 * Helpers every suite uses live in test_common.h.
 */
#ifndef JW_TESTS_UNIT_PROCESS_HARNESS_H
#define JW_TESTS_UNIT_PROCESS_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <uv.h>

#include "../test_common.h"
#include "jobworker/error.h"
#include "jobworker/process.h"

struct out_buf {
  char *data;
  size_t len;
  size_t cap;
};

static inline void out_add(struct out_buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->data = realloc(b->data, b->cap);
    ck_assert_ptr_nonnull(b->data);
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

struct ctx {
  struct out_buf out[2];
  jw_proc_status_t st;
  int exits;
  int closes;
  uint64_t exit_ms;
  jw_process_t *proc;
  int close_in_output;
};

static inline void on_output(jw_process_t *proc, jw_stream_t stream,
                             const char *buf, size_t len, void *data) {
  struct ctx *c = data;
  out_add(&c->out[stream], buf, len);
  (void)proc;
}

static inline void on_exit_cb(jw_process_t *proc, const jw_proc_status_t *st,
                              void *data) {
  struct ctx *c = data;
  ck_assert(jw_process_is_final_state(proc));
  c->st = *st;
  c->exits++;
  c->exit_ms = uv_hrtime() / 1000000;
}

static inline void on_close(jw_process_t *proc, void *data) {
  struct ctx *c = data;
  (void)proc;
  c->closes++;
}

static inline void ctx_free(struct ctx *c) {
  free(c->out[0].data);
  free(c->out[1].data);
}

/* Runs the loop until *flag is set or timeout_ms passed. */
static inline int run_until(uv_loop_t *loop, int *flag, uint64_t timeout_ms) {
  return test_run_until(loop, test_flag_set, flag, timeout_ms);
}

/*
 * The credentials and namespaces start() asks for; all zero: the caller's
 * credentials, no namespaces.
 */
static jw_credentials_t creds;
static unsigned creds_isolation;

/* Starts argv[0] with argv[1..] and the given env/cwd. */
static inline int start(uv_loop_t *loop, struct ctx *c, const char *const *argv,
                        const char *const *env, size_t nenv, const char *cwd) {
  jw_process_options_t o;
  int err;
  memset(&o, 0, sizeof(o));
  TEST_SET_COMMAND(&o, argv, env, nenv, cwd);
  o.on_output = on_output;
  o.on_exit = on_exit_cb;
  o.data = c;
  o.creds = creds;
  o.isolation = creds_isolation;
  err = jw_process_new(loop, &o, &c->proc);
  ck_assert_int_eq(err, 0);
  ck_assert(jw_process_is_initial_state(c->proc));
  return jw_process_start(c->proc);
}

/* Closes the process, runs the loop empty and closes it. */
static inline void finish(uv_loop_t *loop, struct ctx *c) {
  jw_process_close(c->proc, on_close, c);
  ck_assert(run_until(loop, &c->closes, 10000));
  ck_assert_int_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(loop), 0);
  ck_assert_int_eq(c->closes, 1);
  ctx_free(c);
}

/* Starts argv (no env, no cwd) on a new loop with a fresh context. */
static inline void launch(uv_loop_t *loop, struct ctx *c,
                          const char *const *argv) {
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(uv_loop_init(loop), 0);
  ck_assert_int_eq(start(loop, c, argv, NULL, 0, NULL), 0);
}

/* Runs argv to completion and returns its context. */
static inline void run_job(uv_loop_t *loop, struct ctx *c,
                           const char *const *argv, const char *const *env,
                           size_t nenv, const char *cwd) {
  memset(c, 0, sizeof(*c));
  ck_assert_int_eq(uv_loop_init(loop), 0);
  ck_assert_int_eq(start(loop, c, argv, env, nenv, cwd), 0);
  ck_assert(jw_process_is_running_state(c->proc));
  ck_assert(run_until(loop, &c->exits, 20000));
}

struct output_wait {
  struct ctx *c;
  jw_stream_t stream;
  const char *text;
};

static inline int output_has(void *arg) {
  struct output_wait *w = arg;
  const struct out_buf *b = &w->c->out[w->stream];
  return w->c->exits > 0 ||
         (b->data != NULL && strstr(b->data, w->text) != NULL);
}

/*
 * Runs the loop until the job printed text on stdout (a job says "ready"
 * once it has done what the test waits for, such as installing a trap),
 * at most timeout_ms. Fails the test when the job ended or the time ran
 * out first.
 */
static inline void wait_output(uv_loop_t *loop, struct ctx *c, const char *text,
                               uint64_t timeout_ms) {
  struct output_wait w = {c, JW_STDOUT, text};
  ck_assert_msg(test_run_until(loop, output_has, &w, timeout_ms) &&
                    c->out[JW_STDOUT].data != NULL &&
                    strstr(c->out[JW_STDOUT].data, text) != NULL,
                "the job did not print \"%s\" (stdout: %s, exited: %d)", text,
                c->out[JW_STDOUT].data != NULL ? c->out[JW_STDOUT].data : "",
                c->exits);
}

#endif /* JW_TESTS_UNIT_PROCESS_HARNESS_H */
