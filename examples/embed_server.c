/*
 * embed_server: the whole JobWorker server of libjobworker (TLS 1.3 with
 * client certificates, HTTP/2, gRPC, the supervisor) on a program's own
 * libuv loop, next to the program's own handles: a heartbeat timer and
 * SIGINT/SIGTERM handlers. The teleport CLI talks to it as to teleportd.
 *
 *   cc -o embed_server embed_server.c $(pkg-config --cflags --libs jobworker)
 *   embed_server --cacert ca.cert --cert server.cert --key server.key \
 *     [--addr 127.0.0.1:0] [--data-dir DIR] [--seconds N]
 *
 * It prints "listening on port N" once it accepts connections, one line per
 * call served, a heartbeat every second, and shuts down cleanly on SIGINT,
 * SIGTERM or after --seconds: running jobs are stopped, calls in progress
 * end, every handle is closed and the loop is closed.
 */
#include <jobworker/rpc.h>
#include <jobworker/service.h>
#include <jobworker/supervisor.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  uv_loop_t loop;
  jw_tls_ctx_t *tls;
  jw_supervisor_t *sup;
  jw_service_t svc;
  jw_rpc_server_t *srv;
  /* The program's own handles, beside the library's. */
  uv_timer_t heartbeat;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  unsigned long beats;
  unsigned long seconds; /* 0: until a signal */
  int pending;           /* parts of the shutdown still running */
  int shutting_down;
} app_t;

/* The library reports connections and calls; it never prints itself. */
static void on_event(const jw_rpc_event_t *ev, void *data) {
  (void)data;
  if (ev->event != JW_RPC_EV_RPC && ev->event != JW_RPC_EV_CONN_REFUSED)
    return;
  printf("event=%s peer=%s cn=%s method=%s status=%s%s%s\n",
         jw_rpc_event_name(ev->event), ev->peer ? ev->peer : "-",
         ev->cn ? ev->cn : "-", ev->method ? ev->method : "-",
         jw_grpc_status_name(ev->grpc_status), ev->message ? " error=" : "",
         ev->message ? ev->message : "");
  fflush(stdout);
}

/* Both the supervisor and the server are done: close our own handles. */
static void part_done(app_t *app) {
  if (--app->pending > 0)
    return;
  uv_close((uv_handle_t *)&app->heartbeat, NULL);
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void sup_done(jw_supervisor_t *sup, void *data) {
  (void)sup;
  part_done(data);
}

static void srv_done(jw_rpc_server_t *srv, void *data) {
  app_t *app = data;
  (void)srv;
  app->srv = NULL; /* the library frees it when this returns */
  part_done(app);
}

/*
 * Jobs are stopped first so that output streams end with OK; the server
 * waits for calls in progress, at most the jobs' grace period and a bit.
 */
static void shutdown_app(app_t *app, const char *why) {
  if (app->shutting_down)
    return;
  app->shutting_down = 1;
  printf("shutting down (%s), %zu running jobs\n", why,
         jw_supervisor_running(app->sup));
  fflush(stdout);
  uv_timer_stop(&app->heartbeat);
  app->pending = 2;
  jw_service_shutdown(&app->svc);
  jw_supervisor_shutdown(app->sup, sup_done, app);
  jw_rpc_server_close(app->srv, 10000, srv_done, app);
}

static void on_signal(uv_signal_t *h, int signum) {
  shutdown_app(h->data, strsignal(signum));
}

static void on_heartbeat(uv_timer_t *t) {
  app_t *app = t->data;
  app->beats++;
  printf("heartbeat %lu, %zu running jobs\n", app->beats,
         jw_supervisor_running(app->sup));
  fflush(stdout);
  if (app->seconds > 0 && app->beats >= app->seconds)
    shutdown_app(app, "--seconds");
}

static void usage(void) {
  fprintf(stderr, "usage: embed_server --cacert FILE --cert FILE --key FILE "
                  "[--addr HOST:PORT] [--data-dir DIR] [--seconds N]\n");
}

int main(int argc, char **argv) {
  const char *cacert = NULL, *cert = NULL, *key = NULL;
  const char *addr = "127.0.0.1:0", *dir = NULL;
  char tmpl[] = "/tmp/embed-server-XXXXXX";
  char errbuf[512];
  size_t nmethods;
  app_t app;
  int err, rc = 1;

  memset(&app, 0, sizeof(app));
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) {
      usage();
      return 2;
    }
    if (strcmp(argv[i], "--cacert") == 0)
      cacert = v;
    else if (strcmp(argv[i], "--cert") == 0)
      cert = v;
    else if (strcmp(argv[i], "--key") == 0)
      key = v;
    else if (strcmp(argv[i], "--addr") == 0)
      addr = v;
    else if (strcmp(argv[i], "--data-dir") == 0)
      dir = v;
    else if (strcmp(argv[i], "--seconds") == 0)
      app.seconds = strtoul(v, NULL, 10);
    else {
      usage();
      return 2;
    }
    i++;
  }
  if (cacert == NULL || cert == NULL || key == NULL) {
    usage();
    return 2;
  }
  /* A job's output pipes are ours to close: a gone client is no signal. */
  signal(SIGPIPE, SIG_IGN);
  if (jw_tls_ctx_new_server(cacert, cert, key, &app.tls, errbuf,
                            sizeof(errbuf)) != 0) {
    fprintf(stderr, "embed_server: %s\n", errbuf);
    return 2;
  }
  if (dir == NULL && (dir = mkdtemp(tmpl)) == NULL) {
    perror("embed_server: mkdtemp");
    jw_tls_ctx_free(app.tls);
    return 1;
  }
  uv_loop_init(&app.loop);

  jw_supervisor_options_t sopts = {.data_dir = dir, .stop_grace_ms = 2000};
  err = jw_supervisor_new(&app.loop, &sopts, &app.sup);
  if (err != 0) {
    fprintf(stderr, "embed_server: data directory %s: %s\n", dir,
            jw_strerror(err));
    goto out;
  }
  /* The service: the supervisor behind it and teleportd's default caps. */
  app.svc.sup = app.sup;
  app.svc.request_limits = (jw_request_limits_t)JW_REQUEST_LIMITS_DEFAULT;
  jw_rpc_server_options_t ropts = {
      .addr = addr,
      .tls = app.tls,
      .methods = jw_service_methods(&nmethods),
      .nmethods = nmethods,
      .data = &app.svc,
      .on_event = on_event,
  };
  err = jw_rpc_server_start(&app.loop, &ropts, &app.srv);
  if (err != 0) {
    fprintf(stderr, "embed_server: cannot listen on %s: %s\n", addr,
            jw_strerror(err));
    goto out;
  }
  printf("listening on port %d\n", jw_rpc_server_port(app.srv));
  fflush(stdout);

  uv_timer_init(&app.loop, &app.heartbeat);
  app.heartbeat.data = &app;
  uv_timer_start(&app.heartbeat, on_heartbeat, 1000, 1000);
  uv_signal_init(&app.loop, &app.sigint);
  uv_signal_init(&app.loop, &app.sigterm);
  app.sigint.data = app.sigterm.data = &app;
  uv_signal_start(&app.sigint, on_signal, SIGINT);
  uv_signal_start(&app.sigterm, on_signal, SIGTERM);

  /* Returns once the shutdown closed everything, ours and the library's. */
  uv_run(&app.loop, UV_RUN_DEFAULT);
  rc = 0;
out:
  if (app.srv != NULL) {
    /* The setup failed half way: close it and let the loop finish that. */
    jw_rpc_server_close(app.srv, 0, NULL, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  if (app.sup != NULL) {
    /*
     * Stops any job still running (when the setup failed half way) and
     * ends the supervisor; the loop runs until its callback is done.
     */
    jw_supervisor_close(app.sup, 0, NULL, NULL);
    uv_run(&app.loop, UV_RUN_DEFAULT);
  }
  jw_tls_ctx_free(app.tls);
  if (dir == tmpl)
    rmdir(dir); /* the logs are gone with the supervisor */
  if (uv_loop_close(&app.loop) != 0) {
    fprintf(stderr, "embed_server: a handle was left open\n");
    return 1;
  }
  printf("stopped\n");
  return rc;
}
