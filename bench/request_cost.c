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

#include "buf.h"
#include "jobworker/supervisor.h"
#include "request.h"

/* The request's wire bytes, grown by the library's one policy. */
static void put(jw__buf_t *w, const void *p, size_t n) {
  if (jw__buf_reserve(w, n, 4096, SIZE_MAX) != 0)
    abort();
  memcpy(w->base + w->len, p, n);
  w->len += n;
}

static void put_str(jw__buf_t *w, unsigned field, const char *s, size_t n) {
  uint8_t h[8];
  size_t k = 0;
  h[k++] = (uint8_t)(field << 3 | 2);
  size_t v = n;
  while (v >= 0x80) {
    h[k++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  h[k++] = (uint8_t)v;
  put(w, h, k);
  put(w, s, n);
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
  jw__buf_t worst = {0};
  static char arg[200], env[100];
  memset(arg, 'a', sizeof(arg));
  memset(env, 'v', sizeof(env));
  memcpy(env, "K=", 2);
  put_str(&worst, 1, "true", 4);
  for (int i = 0; i < 1023; i++)
    put_str(&worst, 2, arg, sizeof(arg));
  for (int i = 0; i < 256; i++)
    put_str(&worst, 3, env, sizeof(env));
  /* The rest of the 256 KiB in the 1024th argument. */
  size_t used = 4 + 1023 * sizeof(arg) + 256 * sizeof(env);
  char *rest = malloc(256 * 1024 - used);
  memset(rest, 'z', 256 * 1024 - used);
  put_str(&worst, 2, rest, 256 * 1024 - used - 1);
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
  jw__buf_t flood = {0};
  put_str(&flood, 1, "true", 4);
  for (int i = 0; i < 2000000; i++)
    put_str(&flood, 2, "", 0);
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
  jw__buf_t one = {0};
  char *text = malloc(4000000);
  memset(text, 'x', 4000000);
  put_str(&one, 1, "true", 4);
  put_str(&one, 2, text, 4000000);
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
  jw__buf_free(&one);

  int done = 0;
  jw_supervisor_shutdown(sup, on_done, &done);
  while (!done)
    uv_run(&loop, UV_RUN_ONCE);
  jw_supervisor_close(sup, 0, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  rmdir(dir);
  jw__buf_free(&worst);
  jw__buf_free(&flood);
  free(ns);
  return 0;
}
