/*
 * embed_supervisor: the job supervisor of libjobworker on a program's own
 * libuv loop, without any networking.
 *
 * It starts one job (sh -c 'echo hi; sleep 1; echo bye') and streams its
 * output to this program's stdout and stderr as it arrives, starts a
 * second job (sleep 60) and stops it, then closes the supervisor, its own
 * handles and the loop, and exits with the first job's exit status. Build it
 * against an installed libjobworker:
 *
 *   cc -o embed_supervisor embed_supervisor.c \
 *     $(pkg-config --cflags --libs jobworker)
 *
 * Usage: embed_supervisor [DATA_DIR]   (default: a fresh directory in /tmp)
 */
#include <jobworker/supervisor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  uv_loop_t loop;
  jw_supervisor_t *sup;
  jw_outlog_reader_t *sub; /* the first job's output, until its end */
  jw_stop_req_t stop;      /* the stop of the second job */
  char first[JW_ID_LEN + 1];
  char second[JW_ID_LEN + 1];
  int pending;           /* the output's end and the stop, still to come */
  int exit_status;       /* what main returns */
  uv_timer_t stop_timer; /* a handle of the program's own: stops job two */
} app_t;

/*
 * Both jobs are done with: end the supervisor (it stops any other job and
 * closes its handles; the loop returns once it is gone).
 */
static void part_done(app_t *app) {
  if (--app->pending == 0)
    jw_supervisor_close(app->sup, 0, NULL, NULL);
}

/*
 * The subscriber's notify callback, and the first read: copies what there
 * is to stdout/stderr until JW_EAGAIN (this runs again when there is more)
 * or the end (0: the job is final and every byte was read).
 */
static void on_output(jw_outlog_reader_t *sub, void *data) {
  app_t *app = data;
  char buf[65536];
  jw_stream_t stream;
  ssize_t n;
  jw_job_info_t info;

  while ((n = jw_outlog_read(sub, buf, sizeof(buf), &stream)) > 0) {
    FILE *f = stream == JW_STDOUT ? stdout : stderr;
    fwrite(buf, 1, (size_t)n, f);
    fflush(f);
  }
  if (n == JW_EAGAIN)
    return;
  jw_outlog_reader_close(sub);
  app->sub = NULL;
  if (n < 0) {
    fprintf(stderr, "embed_supervisor: reading output: %s\n",
            jw_strerror((int)n));
    app->exit_status = 1;
  } else if (jw_supervisor_status(app->sup, app->first, NULL, &info) == 0) {
    /* The log's end comes once the job is final: its status is too. */
    if (info.proc.state == JW_PROC_EXITED)
      app->exit_status = info.proc.exit_code;
    else
      app->exit_status = 128 + info.proc.signal;
  }
  part_done(app);
}

/* The second job is final: SIGTERM ended it (or SIGKILL after the grace). */
static void on_stopped(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  app_t *app = req->data;
  if (err != 0)
    fprintf(stderr, "embed_supervisor: stop: %s\n", jw_strerror(err));
  else
    fprintf(stderr, "embed_supervisor: job %s stopped (signal %d)\n", info->id,
            info->proc.signal);
  part_done(app);
}

static void on_stop_timer(uv_timer_t *t) {
  app_t *app = t->data;
  int err;

  uv_close((uv_handle_t *)t, NULL);
  app->stop.data = app;
  err = jw_supervisor_stop(app->sup, &app->stop, app->second, NULL, on_stopped);
  if (err != 0) {
    fprintf(stderr, "embed_supervisor: stop: %s\n", jw_strerror(err));
    app->exit_status = 1;
    part_done(app);
  }
}

int main(int argc, char **argv) {
  static const char *const first_args[] = {"-c", "echo hi; sleep 1; echo bye"};
  static const char *const second_args[] = {"60"};
  jw_job_spec_t first = {.command = "sh", .args = first_args, .nargs = 2};
  jw_job_spec_t second = {.command = "sleep", .args = second_args, .nargs = 1};
  char tmpl[] = "/tmp/embed-supervisor-XXXXXX";
  const char *dir = argc > 1 ? argv[1] : NULL;
  app_t app;
  int err;

  memset(&app, 0, sizeof(app));
  if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
    perror("embed_supervisor: mkdtemp");
    return 1;
  }
  if (uv_loop_init(&app.loop) != 0)
    return 1;
  jw_supervisor_options_t opts = {.data_dir = dir, .stop_grace_ms = 5000};
  err = jw_supervisor_new(&app.loop, &opts, &app.sup);
  if (err == 0)
    err = jw_supervisor_start(app.sup, NULL, &first, app.first);
  if (err == 0)
    err = jw_supervisor_subscribe(app.sup, app.first, NULL, on_output, &app,
                                  &app.sub);
  if (err == 0)
    err = jw_supervisor_start(app.sup, NULL, &second, app.second);
  if (err != 0) {
    fprintf(stderr, "embed_supervisor: %s\n", jw_strerror(err));
    app.exit_status = 1;
    if (app.sub != NULL)
      jw_outlog_reader_close(app.sub);
    if (app.sup != NULL) {
      jw_supervisor_close(app.sup, 0, NULL, NULL);
      uv_run(&app.loop, UV_RUN_DEFAULT);
    }
  } else {
    app.pending = 2;
    /* Our own handle on the same loop: stop job two after 200 ms. */
    uv_timer_init(&app.loop, &app.stop_timer);
    app.stop_timer.data = &app;
    uv_timer_start(&app.stop_timer, on_stop_timer, 200, 0);
    on_output(app.sub, &app); /* replay what is there; then notify */
    /*
     * Runs until nothing is left: the jobs, the close that part_done
     * began (the supervisor is freed at its end), our timer.
     */
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (argc <= 1)
    rmdir(dir);
  if (uv_loop_close(&app.loop) != 0) {
    fprintf(stderr, "embed_supervisor: a handle was left open\n");
    return 1;
  }
  return app.exit_status;
}
