/*
 * jw-requestcost: what one Start request costs the server's loop, timed
 * with uv_hrtime around the work its handler does: the check and decode
 * of the request (lib/service/request.c), then for an accepted request the
 * supervisor's start (copies, spawn) of it. Two requests:
 *
 *   worst-accepted  a Start at every default cap: 1024 args, 256 env
 *                   entries, 256 KiB of strings in all;
 *   2M-empty-args   4 MB of two million empty args, refused now by the
 *                   count; "unchecked" times what the handler did before
 *                   the caps: protobuf-c unpacks it and the supervisor
 *                   copies it and tries to start it;
 *   4MB-one-arg     one 4 MB argument: the check reads all of it (NUL,
 *                   UTF-8) before the byte cap refuses it.
 *
 * Prints one line per measurement: min and median of --runs runs, in ms,
 * and the peak RSS. The supervisor's data directory is a fresh temporary
 * one, removed at the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "jobworker/supervisor.h"
#include "request.h"

/* A request's wire bytes, packed by protobuf-c as a client's would be. */
typedef struct {
  uint8_t *base;
  size_t len;
} wire_t;

/* The Start request of "true" with args and env. */
static wire_t pack(char **args, size_t nargs, char **env, size_t nenv) {
  Jobworker__V1__JobRequest r = JOBWORKER__V1__JOB_REQUEST__INIT;
  wire_t w;
  r.command = "true";
  r.n_args = nargs;
  r.args = args;
  r.n_env = nenv;
  r.env = env;
  w.len = jobworker__v1__job_request__get_packed_size(&r);
  if ((w.base = malloc(w.len)) == NULL)
    abort();
  jobworker__v1__job_request__pack(&r, w.base);
  return w;
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *ns, int runs) {
  struct rusage ru;
  qsort(ns, (size_t)runs, sizeof(*ns), cmp);
  getrusage(RUSAGE_SELF, &ru);
  printf("%-34s min %8.2f ms  median %8.2f ms  peak RSS %ld MiB\n", what,
         (double)ns[0] / 1e6, (double)ns[runs / 2] / 1e6, ru.ru_maxrss / 1024);
}

/* Starts the request's job as the handler would; returns 0 or the error. */
static int start(jw_supervisor_t *sup, const Jobworker__V1__JobRequest *r) {
  jw_job_spec_t spec = jw_request_job_spec(r);
  char id[JW_ID_LEN + 1];
  return jw_supervisor_start(sup, "bench", &spec, id);
}

static void on_done(jw_supervisor_t *sup, void *data) { *(int *)data = 1; }

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  if (runs < 1 || runs > 1000)
    runs = 5;
  uint64_t *ns = calloc((size_t)runs, sizeof(*ns));
  char dir[] = "/tmp/jw-requestcost-XXXXXX";
  uv_loop_t loop;
  jw_supervisor_t *sup;
  char msg[256];
  if (ns == NULL || mkdtemp(dir) == NULL || uv_loop_init(&loop) != 0)
    return 1;
  jw_supervisor_options_t so = {.data_dir = dir, .max_finished_per_owner = 4};
  if (jw_supervisor_new(&loop, &so, &sup) != 0)
    return 1;

  /* A Start at every cap: 1024 args and 256 env entries, 256 KiB. */
  static char arg[201], env[101];
  static char *args[1024], *envs[256];
  memset(arg, 'a', sizeof(arg) - 1);
  memset(env, 'v', sizeof(env) - 1);
  memcpy(env, "K=", 2);
  for (int i = 0; i < 1023; i++)
    args[i] = arg;
  for (int i = 0; i < 256; i++)
    envs[i] = env;
  /* The rest of the 256 KiB in the 1024th argument. */
  size_t used = 4 + 1023 * (sizeof(arg) - 1) + 256 * (sizeof(env) - 1);
  char *rest = calloc(1, 256 * 1024 - used);
  if (rest == NULL)
    return 1;
  memset(rest, 'z', 256 * 1024 - used - 1);
  args[1023] = rest;
  wire_t worst = pack(args, 1024, envs, 256);
  free(rest);

  for (int i = 0; i < runs; i++) {
    Jobworker__V1__JobRequest *r;
    uint64_t t0 = uv_hrtime();
    int code = jw_request_decode_start(worst.base, worst.len, NULL, &r, msg,
                                       sizeof(msg));
    int err = code == 0 ? start(sup, r) : code;
    if (code == 0)
      jobworker__v1__job_request__free_unpacked(r, NULL);
    ns[i] = uv_hrtime() - t0;
    if (err != 0) {
      fprintf(stderr, "worst accepted request refused: %d %s\n", err, msg);
      return 1;
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  report("worst-accepted (check+start)", ns, runs);

  /* 4 MB of two million empty args. */
  /*
   * Each empty arg is two bytes after the command (field 2, length 0):
   * appended here rather than packed from two million pointers, whose
   * 16 MB would show in the peak RSS reported below.
   */
  wire_t cmd = pack(NULL, 0, NULL, 0);
  wire_t flood = {malloc(cmd.len + 2 * 2000000), cmd.len + 2 * 2000000};
  if (flood.base == NULL)
    return 1;
  memcpy(flood.base, cmd.base, cmd.len);
  for (size_t i = cmd.len; i < flood.len; i += 2)
    memcpy(flood.base + i, "\x12\x00", 2);
  free(cmd.base);
  for (int i = 0; i < runs; i++) {
    Jobworker__V1__JobRequest *r;
    uint64_t t0 = uv_hrtime();
    int code = jw_request_decode_start(flood.base, flood.len, NULL, &r, msg,
                                       sizeof(msg));
    ns[i] = uv_hrtime() - t0;
    if (code == 0) {
      fprintf(stderr, "2M-arg request accepted\n");
      return 1;
    }
  }
  report("2M-empty-args checked (refused)", ns, runs);
  for (int i = 0; i < runs; i++) {
    uint64_t t0 = uv_hrtime();
    Jobworker__V1__JobRequest *r =
        jobworker__v1__job_request__unpack(NULL, flood.len, flood.base);
    if (r == NULL)
      return 1;
    start(sup, r); /* E2BIG after the copies */
    jobworker__v1__job_request__free_unpacked(r, NULL);
    ns[i] = uv_hrtime() - t0;
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  report("2M-empty-args unchecked (before)", ns, runs);

  /* The walk's own worst: one 4 MB string, read in full before refusal. */
  char *text = calloc(1, 4000001);
  if (text == NULL)
    return 1;
  memset(text, 'x', 4000000);
  wire_t one = pack(&text, 1, NULL, 0);
  free(text);
  for (int i = 0; i < runs; i++) {
    Jobworker__V1__JobRequest *r;
    uint64_t t0 = uv_hrtime();
    int code =
        jw_request_decode_start(one.base, one.len, NULL, &r, msg, sizeof(msg));
    ns[i] = uv_hrtime() - t0;
    if (code == 0)
      return 1;
  }
  report("4MB-one-arg checked (refused)", ns, runs);
  free(one.base);

  int done = 0;
  jw_supervisor_shutdown(sup, on_done, &done);
  while (!done)
    uv_run(&loop, UV_RUN_ONCE);
  jw_supervisor_close(sup, 0, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  rmdir(dir);
  free(worst.base);
  free(flood.base);
  free(ns);
  return 0;
}
