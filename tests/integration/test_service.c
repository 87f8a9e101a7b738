/*
 * The JobWorker service end to end on one in-process loop: teleportd's
 * handlers served by lib/rpc over mutual TLS, driven by lib/rpc's client
 * role as two clients with different certificate CNs.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_common.h"
#include "jobworker.pb-c.h"
#include "jobworker/rpc.h"
#include "jobworker/service.h"
#include "jobworker/supervisor.h"

#define PATH(m) "/jobworker.v1.JobWorker/" m

typedef struct {
  uv_loop_t loop;
  jw_supervisor_t *sup;
  jw_service_t svc;
  jw_rpc_server_t *srv;
  jw_tls_ctx_t *stls;
  jw_tls_ctx_t *ctls[2];
  jw_rpc_client_t *cli[2]; /* alice, bob */
  char dir[128];
  char addr[64];
} fixture_t;

static fixture_t fx;

/* What one call brought back. */
typedef struct {
  int done;
  int status;
  char message[512];
  uint8_t *msg; /* the last message (unary) */
  size_t msglen;
  size_t nmsgs;
  int decode_output; /* GetOutput: split JobOutput data by stream */
  uint8_t *out[2];
  size_t outlen[2];
  size_t outcap[2];
  uint64_t first_offset; /* GetOutput: the first message's offset */
  uint64_t next_offset;  /* ... and the one the next must have */
  jw_rpc_ccall_t *call;
} result_t;

static const char *certs_dir(void) {
  const char *d = getenv("JW_TEST_CERTS");
  ck_assert_msg(d != NULL, "JW_TEST_CERTS is not set (run through make test)");
  return d;
}

static void cert_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", certs_dir(), name);
}

static void on_connect(jw_rpc_client_t *cli, int err, void *data) {
  int *r = data;
  *r = err == 0 ? 1 : err;
}

static void append(result_t *r, int s, const uint8_t *p, size_t n) {
  if (r->outlen[s] + n > r->outcap[s]) {
    size_t cap = r->outcap[s] ? r->outcap[s] : 65536;
    while (cap < r->outlen[s] + n)
      cap *= 2;
    r->out[s] = realloc(r->out[s], cap);
    ck_assert_ptr_nonnull(r->out[s]);
    r->outcap[s] = cap;
  }
  memcpy(r->out[s] + r->outlen[s], p, n);
  r->outlen[s] += n;
}

static void on_msg(jw_rpc_ccall_t *call, const uint8_t *msg, size_t len,
                   void *data) {
  result_t *r = data;
  r->nmsgs++;
  if (r->decode_output) {
    Jobworker__V1__JobOutput *o =
        jobworker__v1__job_output__unpack(NULL, len, msg);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_gt(o->data.len, 0);
    /* Each message says where its bytes are: no gap, nothing twice. */
    if (r->nmsgs == 1)
      r->first_offset = o->offset;
    else
      ck_assert_uint_eq(o->offset, r->next_offset);
    r->next_offset = o->offset + o->data.len;
    append(r, o->stream == JOBWORKER__V1__OUTPUT_STREAM__OUTPUT_STREAM_STDERR,
           o->data.data, o->data.len);
    jobworker__v1__job_output__free_unpacked(o, NULL);
    return;
  }
  free(r->msg);
  r->msg = malloc(len ? len : 1);
  memcpy(r->msg, msg, len);
  r->msglen = len;
}

static void on_done(jw_rpc_ccall_t *call, int status, const char *message,
                    void *data) {
  result_t *r = data;
  r->done = 1;
  r->status = status;
  snprintf(r->message, sizeof(r->message), "%s", message);
  r->call = NULL;
}

static void result_free(result_t *r) {
  free(r->msg);
  free(r->out[0]);
  free(r->out[1]);
  memset(r, 0, sizeof(*r));
}

static void run_until(int *flag) {
  while (!*flag)
    uv_run(&fx.loop, UV_RUN_ONCE);
}

/* Starts a call with a packed request; the result fills in from the loop. */
static void call_start(int who, const char *path, const uint8_t *req,
                       size_t len, result_t *r) {
  memset(r, 0, sizeof(*r));
  ck_assert_int_eq(jw_rpc_client_call(fx.cli[who], path, req, len, 0, on_msg,
                                      on_done, r, &r->call),
                   0);
}

/*
 * Starts GetOutput of client 0's job id; with decode, the replies' data
 * collect in r->out by stream.
 */
static void output_start(const char *id, int decode, result_t *r) {
  Jobworker__V1__GetOutputRequest gr = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  uint8_t buf[128];
  size_t n;
  gr.id = (char *)id;
  n = protobuf_c_message_get_packed_size(&gr.base);
  ck_assert_uint_le(n, sizeof(buf));
  protobuf_c_message_pack(&gr.base, buf);
  call_start(0, PATH("GetOutput"), buf, n, r);
  r->decode_output = decode;
}

/* Runs the loop until r's stream brought n bytes of stdout: it runs on. */
static void output_wait(result_t *r, size_t n) {
  while (r->outlen[0] < n && !r->done)
    uv_run(&fx.loop, UV_RUN_ONCE);
  ck_assert_int_eq(r->done, 0);
}

/* Cancels r's stream, which then ends CANCELLED, and frees r. */
static void output_cancel(result_t *r) {
  jw_rpc_ccall_cancel(r->call);
  run_until(&r->done);
  ck_assert_int_eq(r->status, JW_GRPC_CANCELLED);
  result_free(r);
}

static void call_msg(int who, const char *path, const ProtobufCMessage *m,
                     result_t *r) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n + 1);
  protobuf_c_message_pack(m, buf);
  call_start(who, path, buf, n, r);
  free(buf);
  run_until(&r->done);
}

static Jobworker__V1__JobStatus *status_of(result_t *r) {
  ck_assert_msg(r->status == JW_GRPC_OK, "status %d: %s", r->status,
                r->message);
  Jobworker__V1__JobStatus *st =
      jobworker__v1__job_status__unpack(NULL, r->msglen, r->msg);
  ck_assert_ptr_nonnull(st);
  return st;
}

/* Starts a job as client who and returns its id (caller frees). */
static char *start_job(int who, const char *cmd, char **args, size_t nargs) {
  Jobworker__V1__JobRequest req = JOBWORKER__V1__JOB_REQUEST__INIT;
  result_t r;
  req.command = (char *)cmd;
  req.args = args;
  req.n_args = nargs;
  call_msg(who, PATH("Start"), &req.base, &r);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING);
  ck_assert_str_eq(st->owner, who == 0 ? "alice" : "bob");
  ck_assert_str_eq(st->command, cmd);
  ck_assert_int_gt(st->pid, 0);
  ck_assert_int_eq(strlen(st->id), JW_ID_LEN);
  char *id = strdup(st->id);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  return id;
}

static void id_call(int who, const char *path, const char *id, result_t *r) {
  Jobworker__V1__StatusRequest req = JOBWORKER__V1__STATUS_REQUEST__INIT;
  req.id = (char *)id;
  call_msg(who, path, &req.base, r);
}

/*
 * Stops client 0's job id, which the reply says is STOPPED; returns the
 * signal that ended it.
 */
static int stop_stopped(const char *id) {
  result_t r;
  id_call(0, PATH("Stop"), id, &r);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED);
  int sig = (int)st->signal;
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  return sig;
}

/* Polls Status until the job is final. */
static Jobworker__V1__JobStatus *wait_final(int who, const char *id) {
  for (int i = 0; i < 2000; i++) {
    result_t r;
    id_call(who, PATH("Status"), id, &r);
    Jobworker__V1__JobStatus *st = status_of(&r);
    result_free(&r);
    if (st->state != JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING)
      return st;
    jobworker__v1__job_status__free_unpacked(st, NULL);
    usleep(10000);
  }
  ck_abort_msg("job %s did not finish", id);
  return NULL;
}

static void setup(void) {
  char ca[512], cert[512], key[512], err[512];
  memset(&fx, 0, sizeof(fx));
  ck_assert_int_eq(uv_loop_init(&fx.loop), 0);
  snprintf(fx.dir, sizeof(fx.dir), "/tmp/jw-svc-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(fx.dir));
  jw_supervisor_options_t so = {.data_dir = fx.dir, .stop_grace_ms = 500};
  ck_assert_int_eq(jw_supervisor_new(&fx.loop, &so, &fx.sup), 0);
  fx.svc.sup = fx.sup;
  fx.svc.request_limits = (jw_request_limits_t)JW_REQUEST_LIMITS_DEFAULT;

  cert_path(ca, sizeof(ca), "ca.cert");
  cert_path(cert, sizeof(cert), "server.cert");
  cert_path(key, sizeof(key), "server.key");
  ck_assert_msg(
      jw_tls_ctx_new_server(ca, cert, key, &fx.stls, err, sizeof(err)) == 0,
      "%s", err);
  size_t n;
  const jw_rpc_method_t *m = jw_service_methods(&n);
  jw_rpc_server_options_t ro = {
      .addr = "127.0.0.1:0",
      .tls = fx.stls,
      .methods = m,
      .nmethods = n,
      .data = &fx.svc,
  };
  ck_assert_int_eq(jw_rpc_server_start(&fx.loop, &ro, &fx.srv), 0);
  snprintf(fx.addr, sizeof(fx.addr), "127.0.0.1:%d",
           jw_rpc_server_port(fx.srv));

  static const char *const names[2] = {"alice", "bob"};
  for (int i = 0; i < 2; i++) {
    char c[512], k[512];
    snprintf(c, sizeof(c), "%s/%s.cert", certs_dir(), names[i]);
    snprintf(k, sizeof(k), "%s/%s.key", certs_dir(), names[i]);
    ck_assert_msg(
        jw_tls_ctx_new_client(ca, c, k, &fx.ctls[i], err, sizeof(err)) == 0,
        "%s", err);
    jw_rpc_client_options_t co = {.addr = fx.addr, .tls = fx.ctls[i]};
    ck_assert_int_eq(jw_rpc_client_new(&fx.loop, &co, &fx.cli[i]), 0);
    int done = 0;
    ck_assert_int_eq(jw_rpc_client_connect(fx.cli[i], on_connect, &done), 0);
    run_until(&done);
    ck_assert_msg(done == 1, "connect: %s (%s)", jw_strerror(done),
                  jw_rpc_client_error(fx.cli[i]));
  }
}

static int shutdown_left;

static void sup_done(jw_supervisor_t *sup, void *data) { shutdown_left--; }

static void srv_done(jw_rpc_server_t *srv, void *data) { shutdown_left--; }

static void teardown(void) {
  for (int i = 0; i < 2; i++)
    jw_rpc_client_close(fx.cli[i], NULL, NULL);
  shutdown_left = 2;
  jw_supervisor_shutdown(fx.sup, sup_done, NULL);
  jw_rpc_server_close(fx.srv, 5000, srv_done, NULL);
  while (shutdown_left > 0)
    uv_run(&fx.loop, UV_RUN_ONCE);
  uv_run(&fx.loop, UV_RUN_DEFAULT);
  fx.srv = NULL;
  jw_supervisor_close(fx.sup, 0, NULL, NULL);
  uv_run(&fx.loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&fx.loop), 0);
  jw_tls_ctx_free(fx.stls);
  jw_tls_ctx_free(fx.ctls[0]);
  jw_tls_ctx_free(fx.ctls[1]);
  ck_assert_int_eq(rmdir(fx.dir), 0);
}

START_TEST(start_status_list) {
  char *args[] = {"-c", "printf out; printf err >&2; exit 3"};
  char *id = start_job(0, "sh", args, 2);
  Jobworker__V1__JobStatus *st = wait_final(0, id);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED);
  ck_assert_int_eq(st->exit_code, 3);
  ck_assert_int_eq(st->output_bytes, 6);
  ck_assert_int_gt(st->ended_at_unix_nano, st->started_at_unix_nano);
  ck_assert_int_eq(st->n_args, 2);
  ck_assert_str_eq(st->args[1], args[1]);
  jobworker__v1__job_status__free_unpacked(st, NULL);

  char *bob_id = start_job(1, "true", NULL, 0);

  /* Each client lists only its own jobs. */
  Jobworker__V1__ListRequest lr = JOBWORKER__V1__LIST_REQUEST__INIT;
  for (int who = 0; who < 2; who++) {
    result_t r;
    call_msg(who, PATH("List"), &lr.base, &r);
    ck_assert_int_eq(r.status, JW_GRPC_OK);
    Jobworker__V1__ListResponse *l =
        jobworker__v1__list_response__unpack(NULL, r.msglen, r.msg);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->n_jobs, 1);
    ck_assert_str_eq(l->jobs[0]->id, who == 0 ? id : bob_id);
    ck_assert_str_eq(l->jobs[0]->owner, who == 0 ? "alice" : "bob");
    jobworker__v1__list_response__free_unpacked(l, NULL);
    result_free(&r);
  }

  /* The output replays stdout and stderr apart. */
  result_t r;
  output_start(id, 1, &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  ck_assert_int_eq(r.outlen[0], 3);
  ck_assert_int_eq(r.outlen[1], 3);
  ck_assert_int_eq(memcmp(r.out[0], "out", 3), 0);
  ck_assert_int_eq(memcmp(r.out[1], "err", 3), 0);
  result_free(&r);
  st = wait_final(1, bob_id);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  free(id);
  free(bob_id);
}
END_TEST

START_TEST(errors) {
  result_t r;
  char *args[] = {"100"};
  char *id = start_job(0, "sleep", args, 1);

  /* Unknown ids and other clients' jobs, on every id-taking RPC. */
  static const char *const paths[] = {PATH("Status"), PATH("Stop"),
                                      PATH("GetOutput"), PATH("Wait"),
                                      PATH("Remove")};
  for (int i = 0; i < 5; i++) {
    id_call(0, paths[i], "00000000000000000000000000000000", &r);
    ck_assert_int_eq(r.status, JW_GRPC_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(r.message, "not found"));
    result_free(&r);
    id_call(1, paths[i], id, &r);
    ck_assert_int_eq(r.status, JW_GRPC_PERMISSION_DENIED);
    ck_assert_ptr_null(strstr(r.message, "alice"));
    result_free(&r);
  }

  /* Bad Start requests. */
  Jobworker__V1__JobRequest req = JOBWORKER__V1__JOB_REQUEST__INIT;
  call_msg(0, PATH("Start"), &req.base, &r);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_str_eq(r.message, "command is empty");
  result_free(&r);

  req.command = "jw-no-such-command";
  call_msg(0, PATH("Start"), &req.base, &r);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "jw-no-such-command"));
  ck_assert_ptr_nonnull(strstr(r.message, "not found"));
  result_free(&r);

  req.command = "true";
  char *env[] = {"NOEQUALS"};
  req.env = env;
  req.n_env = 1;
  call_msg(0, PATH("Start"), &req.base, &r);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "KEY=VALUE"));
  result_free(&r);

  req.n_env = 0;
  req.working_dir = "/nonexistent/jw";
  call_msg(0, PATH("Start"), &req.base, &r);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "/nonexistent/jw"));
  result_free(&r);

  /* NUL bytes cannot be built with protobuf-c's C strings: hand-made wire
   * bytes, command "echo" with args ["a\0b"], then env ["A=\0"]. */
  static const uint8_t nul_arg[] = {0x0a, 4, 'e', 'c', 'h', 'o',
                                    0x12, 3, 'a', 0,   'b'};
  call_start(0, PATH("Start"), nul_arg, sizeof(nul_arg), &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_str_eq(r.message, "args[0] contains a NUL byte");
  result_free(&r);
  static const uint8_t nul_cmd[] = {0x0a, 3, 'e', 0, 'o'};
  call_start(0, PATH("Start"), nul_cmd, sizeof(nul_cmd), &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_str_eq(r.message, "command contains a NUL byte");
  result_free(&r);
  static const uint8_t nul_env[] = {0x0a, 4, 't', 'r', 'u', 'e',
                                    0x1a, 3, 'A', '=', 0};
  call_start(0, PATH("Start"), nul_env, sizeof(nul_env), &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_str_eq(r.message, "env[0] contains a NUL byte");
  result_free(&r);

  /* Not a JobRequest at all: the client's fault, not the server's. */
  static const uint8_t junk[] = {0xff, 0xff, 0xff};
  call_start(0, PATH("Start"), junk, sizeof(junk), &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "malformed message"));
  result_free(&r);

  /* None of the bad requests made a job: alice still has exactly one. */
  Jobworker__V1__ListRequest lr = JOBWORKER__V1__LIST_REQUEST__INIT;
  call_msg(0, PATH("List"), &lr.base, &r);
  Jobworker__V1__ListResponse *l =
      jobworker__v1__list_response__unpack(NULL, r.msglen, r.msg);
  ck_assert_int_eq(l->n_jobs, 1);
  jobworker__v1__list_response__free_unpacked(l, NULL);
  result_free(&r);

  /* Stop answers with the final state; stopping again returns it too. */
  for (int i = 0; i < 2; i++) {
    id_call(0, PATH("Stop"), id, &r);
    Jobworker__V1__JobStatus *st = status_of(&r);
    ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED);
    ck_assert_int_eq(st->signal, SIGTERM);
    jobworker__v1__job_status__free_unpacked(st, NULL);
    result_free(&r);
  }
  free(id);
}
END_TEST

/* A growing wire message built by hand (protobuf-c cannot carry NULs). */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} wire_t;

static void wire_put(wire_t *w, const void *p, size_t n) {
  if (w->len + n > w->cap) {
    w->cap = (w->len + n) * 2 + 64;
    w->p = realloc(w->p, w->cap);
    ck_assert_ptr_nonnull(w->p);
  }
  memcpy(w->p + w->len, p, n);
  w->len += n;
}

/* Appends string field number field holding n bytes of s. */
static void wire_str(wire_t *w, unsigned field, const char *s, size_t n) {
  uint8_t hdr[6];
  size_t h = 0;
  hdr[h++] = (uint8_t)(field << 3 | 2);
  for (size_t v = n; h < sizeof(hdr); v >>= 7) {
    hdr[h++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80)
      break;
  }
  wire_put(w, hdr, h);
  wire_put(w, s, n);
}

/* Sends w to path as alice; expects status and a message containing want. */
static void expect_refused(const char *path, wire_t *w, int status,
                           const char *want) {
  result_t r;
  call_start(0, path, w->p, w->len, &r);
  run_until(&r.done);
  ck_assert_msg(r.status == status, "status %d (%s), want %d", r.status,
                r.message, status);
  ck_assert_msg(strstr(r.message, want) != NULL, "message \"%s\" lacks \"%s\"",
                r.message, want);
  result_free(&r);
  free(w->p);
  memset(w, 0, sizeof(*w));
}

static Jobworker__V1__ListResponse *list_of(int who, size_t *bytes) {
  result_t r;
  Jobworker__V1__ListRequest lr = JOBWORKER__V1__LIST_REQUEST__INIT;
  call_msg(who, PATH("List"), &lr.base, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  *bytes = r.msglen;
  Jobworker__V1__ListResponse *l =
      jobworker__v1__list_response__unpack(NULL, r.msglen, r.msg);
  ck_assert_ptr_nonnull(l);
  result_free(&r);
  return l;
}

static size_t list_count(int who) {
  size_t bytes;
  Jobworker__V1__ListResponse *l = list_of(who, &bytes);
  size_t n = l->n_jobs;
  jobworker__v1__list_response__free_unpacked(l, NULL);
  return n;
}

/*
 * Every string field of every request must be valid UTF-8 (a strict
 * client cannot decode a reply that echoes it back), and the counts a
 * client controls have caps checked before anything is unpacked.
 */
START_TEST(bad_strings_and_caps) {
  wire_t w = {0};
  /* Invalid UTF-8 in each string field, with the field named. */
  wire_str(&w, 1, "true", 4);
  wire_str(&w, 2, "ok", 2);
  wire_str(&w, 2, "\xc3\x28", 2);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "args[1] is not valid UTF-8");
  wire_str(&w, 1, "/bin/\xc0\xaftrue", 11); /* an overlong "/" */
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "command is not valid UTF-8");
  wire_str(&w, 1, "true", 4);
  wire_str(&w, 3, "A=\xed\xa0\x80", 5); /* a surrogate */
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "env[0] is not valid UTF-8");
  wire_str(&w, 1, "true", 4);
  wire_str(&w, 4, "/tmp/\xf4\x90\x80\x80", 9); /* past U+10FFFF */
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "working_dir is not valid UTF-8");
  wire_str(&w, 1, "\xff", 1);
  expect_refused(PATH("Status"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "id is not valid UTF-8");
  wire_str(&w, 1, "ab\0cd", 5);
  expect_refused(PATH("GetOutput"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "id contains a NUL byte");
  /* Field number 0 (an overlong tag protobuf-c would take), wire type 3. */
  static const uint8_t field0[] = {0x82, 0x80, 0x00, 0x01, 'x'};
  wire_put(&w, field0, sizeof(field0));
  expect_refused(PATH("Stop"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "invalid field number 0");
  static const uint8_t group[] = {0x0b, 0x0c};
  wire_put(&w, group, sizeof(group));
  expect_refused(PATH("List"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "unsupported wire type 3");
  /* A string field sent as a varint. */
  static const uint8_t as_varint[] = {0x08, 0x01};
  wire_put(&w, as_varint, sizeof(as_varint));
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "command has wire type 0");

  /* The caps, each message naming its flag. */
  wire_str(&w, 1, "true", 4);
  for (int i = 0; i < 1025; i++)
    wire_str(&w, 2, "x", 1);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "more than 1024 args entries (--max-args)");
  wire_str(&w, 1, "true", 4);
  for (int i = 0; i < 257; i++)
    wire_str(&w, 3, "A=1", 3);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "more than 256 env entries (--max-env)");
  char *big = malloc(256 * 1024);
  memset(big, 'y', 256 * 1024);
  wire_str(&w, 1, "true", 4);
  wire_str(&w, 2, big, 256 * 1024 - 3);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "more than 262144 bytes (--max-request-strings)");
  free(big);
  /* 4 MB of 2M empty args: refused by the count, before any unpacking. */
  wire_str(&w, 1, "true", 4);
  for (int i = 0; i < 2000000; i++)
    wire_str(&w, 2, "", 0);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT, "(--max-args)");
  /* A singular field repeated without end. */
  for (int i = 0; i < 65; i++)
    wire_str(&w, 1, "true", 4);
  expect_refused(PATH("Start"), &w, JW_GRPC_INVALID_ARGUMENT,
                 "command occurs more than 64 times");

  /* None of them made a job; a request at every cap, valid UTF-8, does. */
  ck_assert_int_eq(list_count(0), 0);
  wire_str(&w, 1, "true", 4);
  for (int i = 0; i < 1024; i++)
    wire_str(&w, 2, "\xf0\x9f\x98\x80", 4);
  for (int i = 0; i < 256; i++)
    wire_str(&w, 3, "K=\xc3\xa9", 4);
  result_t r;
  call_start(0, PATH("Start"), w.p, w.len, &r);
  run_until(&r.done);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_int_eq(st->n_args, 1024);
  ck_assert_str_eq(st->args[1023], "\xf0\x9f\x98\x80");
  char *id = strdup(st->id);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  free(w.p);
  jobworker__v1__job_status__free_unpacked(wait_final(0, id), NULL);
  free(id);
  ck_assert_int_eq(list_count(0), 1);
}
END_TEST

/*
 * One List reply stays under the bound gRPC clients accept (4 MiB) however
 * big the jobs' args are: args are cut in List (whole ones, in order;
 * Status keeps them all), and past that only the newest jobs that fit
 * are listed.
 */
START_TEST(list_reply_is_bounded) {
  enum { JOBS = 20, ARGS = 100, ARGLEN = 2500 };
  char *arg = malloc(ARGLEN + 1);
  memset(arg, 'a', ARGLEN);
  arg[ARGLEN] = '\0';
  char *args[ARGS];
  for (int i = 0; i < ARGS; i++)
    args[i] = arg;
  char *ids[JOBS];
  /* 20 jobs of 250 KB of args each: 5 MB in full. */
  for (int i = 0; i < JOBS; i++)
    ids[i] = start_job(0, "true", args, ARGS);
  size_t bytes;
  Jobworker__V1__ListResponse *l = list_of(0, &bytes);
  ck_assert_uint_le(bytes, JW_LIST_MAX_BYTES);
  ck_assert_uint_eq(l->n_jobs, JOBS);
  for (int i = 0; i < JOBS; i++) {
    ck_assert_str_eq(l->jobs[i]->id, ids[i]);
    ck_assert_uint_gt(l->jobs[i]->n_args, 0);
    ck_assert_uint_lt(l->jobs[i]->n_args, ARGS);
    ck_assert_str_eq(l->jobs[i]->args[0], arg);
  }
  jobworker__v1__list_response__free_unpacked(l, NULL);
  /* Status still has every argument. */
  result_t r;
  id_call(0, PATH("Status"), ids[0], &r);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_uint_eq(st->n_args, ARGS);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  /* A bound the cut args do not meet: the newest jobs that fit. */
  fx.svc.max_list_bytes = 16 * 1024;
  l = list_of(0, &bytes);
  ck_assert_uint_le(bytes, 16 * 1024);
  ck_assert_uint_gt(l->n_jobs, 0);
  ck_assert_uint_lt(l->n_jobs, JOBS);
  for (size_t i = 0; i < l->n_jobs; i++)
    ck_assert_str_eq(l->jobs[i]->id, ids[JOBS - l->n_jobs + i]);
  jobworker__v1__list_response__free_unpacked(l, NULL);
  for (int i = 0; i < JOBS; i++)
    free(ids[i]);
  free(arg);
}
END_TEST

START_TEST(big_binary_output) {
  /*
   * JW_TEST_SCALE divides the volume only (64 MiB to 4 MiB at 16); the
   * output must still come back byte-exact.
   */
  const size_t size = (size_t)scaled(64u << 20, 1);
  char path[256];
  snprintf(path, sizeof(path), "%s.src", fx.dir);
  uint8_t *src = malloc(size);
  ck_assert_ptr_nonnull(src);
  int fd = open("/dev/urandom", O_RDONLY);
  for (size_t o = 0; o < size;) {
    ssize_t n = read(fd, src + o, size - o);
    ck_assert_int_gt(n, 0);
    o += (size_t)n;
  }
  close(fd);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_eq(write(fd, src, size), (ssize_t)size);
  close(fd);

  char *args[] = {path};
  char *id = start_job(0, "cat", args, 1);
  result_t r;
  output_start(id, 1, &r);
  run_until(&r.done);
  ck_assert_msg(r.status == JW_GRPC_OK, "%d %s", r.status, r.message);
  ck_assert_int_eq(r.outlen[1], 0);
  ck_assert_int_eq(r.outlen[0], size);
  ck_assert_int_eq(memcmp(r.out[0], src, size), 0);
  result_free(&r);
  unlink(path);
  free(src);
  free(id);
}
END_TEST

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
      break;
  if (f != NULL)
    fclose(f);
  return v;
}

typedef struct {
  const char *id;
  int final;
} watch_t;

static void watch_tick(uv_timer_t *t) {
  watch_t *w = t->data;
  jw_job_info_t info;
  if (jw_supervisor_status(fx.sup, w->id, NULL, &info) == 0 &&
      info.proc.state != JW_PROC_RUNNING)
    w->final = 1;
}

START_TEST(stalled_reader_costs_no_memory) {
  /* A client that stops reading while its job writes 256 MiB: the server
   * keeps the output on disk, and its memory stays flat.
   *
   * JW_TEST_SCALE divides the volume only, and not below 32 MiB, twice
   * the 16 MiB that the client may have received, so that a server that
   * ignored flow control would still fail the check. Under valgrind the
   * RSS check is skipped: valgrind's own memory inflates the RSS. */
  const uint64_t size = scaled(256u << 20, 32u << 20);
  char count[32];
  snprintf(count, sizeof(count), "%llu", (unsigned long long)size);
  char *args[] = {"-c", count, "/dev/zero"};
  char *id = start_job(0, "head", args, 3);
  result_t r;
  output_start(id, 0, &r);
  jw_rpc_ccall_pause(r.call, true);
  long before = rss_kib();

  watch_t w = {.id = id};
  uv_timer_t t;
  uv_timer_init(&fx.loop, &t);
  t.data = &w;
  uv_timer_start(&t, watch_tick, 20, 20);
  run_until(&w.final);
  uv_timer_stop(&t);
  uv_close((uv_handle_t *)&t, NULL);

  jw_job_info_t info;
  ck_assert_int_eq(jw_supervisor_status(fx.sup, id, NULL, &info), 0);
  ck_assert_int_eq(info.output_bytes, size);
  long grown = rss_kib() - before;
  if (under_valgrind())
    fprintf(stderr,
            "RSS check skipped (grew by %ld KiB): valgrind's own "
            "memory inflates the RSS\n",
            grown);
  else
    ck_assert_msg(grown < 16 * 1024, "RSS grew by %ld KiB", grown);
  ck_assert_int_eq(r.done, 0);
  ck_assert_int_lt(r.nmsgs * JW_RPC_STREAM_MSG_MAX, 16u << 20);

  /* Canceling the stalled stream ends it; the server serves on. */
  output_cancel(&r);
  id_call(0, PATH("Status"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  result_free(&r);
  free(id);
}
END_TEST

START_TEST(cancel_mid_stream) {
  char *args[] = {"-c", "while :; do echo tick; sleep 0.01; done"};
  char *id = start_job(0, "sh", args, 2);
  for (int round = 0; round < 2; round++) {
    result_t r;
    output_start(id, 1, &r);
    output_wait(&r, 50);
    ck_assert_int_eq(memcmp(r.out[0], "tick\n", 5), 0);
    output_cancel(&r);
  }
  /* The job ran on through both cancels. */
  jw_job_info_t info;
  ck_assert_int_eq(jw_supervisor_status(fx.sup, id, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_RUNNING);
  stop_stopped(id);
  free(id);
}
END_TEST

START_TEST(stop_escalates_to_kill) {
  char *args[] = {"-c", "trap '' TERM; echo ready; sleep 100"};
  char *id = start_job(0, "sh", args, 2);
  result_t r;
  /* The trap is in place once the job says so. */
  output_start(id, 1, &r);
  output_wait(&r, 6);
  ck_assert_int_eq(r.outlen[0], 6);
  ck_assert_int_eq(memcmp(r.out[0], "ready\n", 6), 0);
  output_cancel(&r);
  uint64_t t0 = uv_hrtime();
  int sig = stop_stopped(id);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  ck_assert_int_eq(sig, SIGKILL);
  /* The grace period is 0.5 s in this fixture. */
  ck_assert_msg(secs < 0.5 + 1.0, "stop took %.2fs", secs);
  free(id);
}
END_TEST

/* Starts GetOutput of client 0's job with the request's other fields. */
static void output_req_start(const Jobworker__V1__GetOutputRequest *gr,
                             result_t *r) {
  uint8_t buf[128];
  size_t n = protobuf_c_message_get_packed_size(&gr->base);
  ck_assert_uint_le(n, sizeof(buf));
  protobuf_c_message_pack(&gr->base, buf);
  call_start(0, PATH("GetOutput"), buf, n, r);
  r->decode_output = 1;
}

/* The whole stdout of a GetOutput with these fields, and its status. */
static int output_of(const char *id, uint64_t offset, uint32_t tail,
                     int no_follow, result_t *r) {
  Jobworker__V1__GetOutputRequest gr = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  gr.id = (char *)id;
  gr.offset = offset;
  gr.tail_lines = tail;
  gr.no_follow = no_follow;
  output_req_start(&gr, r);
  run_until(&r->done);
  append(r, 0, (const uint8_t *)"", 1); /* a NUL after the bytes */
  r->outlen[0]--;
  return r->status;
}

/* Starts a job with a run-time limit; returns its id (caller frees). */
static char *start_timed(const char *cmd, char **args, size_t nargs,
                         int64_t timeout_ms, result_t *r) {
  Jobworker__V1__JobRequest req = JOBWORKER__V1__JOB_REQUEST__INIT;
  req.command = (char *)cmd;
  req.args = args;
  req.n_args = nargs;
  req.timeout_ms = timeout_ms;
  call_msg(0, PATH("Start"), &req.base, r);
  if (r->status != JW_GRPC_OK)
    return NULL;
  Jobworker__V1__JobStatus *st = status_of(r);
  char *id = strdup(st->id);
  ck_assert_int_eq(st->timeout_ms, timeout_ms);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(r);
  return id;
}

/*
 * GetOutput resumes at a byte offset (each message says its own), tails
 * the last lines, and with no_follow sends what is there and ends.
 */
START_TEST(output_offset_tail_no_follow) {
  result_t r;
  char *a1[] = {"0123456789"};
  char *id = start_job(0, "printf", a1, 1);
  jobworker__v1__job_status__free_unpacked(wait_final(0, id), NULL);
  ck_assert_int_eq(output_of(id, 5, 0, 0, &r), JW_GRPC_OK);
  ck_assert_str_eq((char *)r.out[0], "56789");
  ck_assert_uint_eq(r.first_offset, 5);
  result_free(&r);
  /* Past the end of a finished job: nothing, and OK. */
  ck_assert_int_eq(output_of(id, 1000, 0, 0, &r), JW_GRPC_OK);
  ck_assert_uint_eq(r.outlen[0], 0);
  result_free(&r);
  free(id);

  char *a2[] = {"1", "100"};
  id = start_job(0, "seq", a2, 2);
  jobworker__v1__job_status__free_unpacked(wait_final(0, id), NULL);
  ck_assert_int_eq(output_of(id, 0, 3, 0, &r), JW_GRPC_OK);
  ck_assert_str_eq((char *)r.out[0], "98\n99\n100\n");
  ck_assert_uint_eq(r.first_offset, 292 - 10);
  result_free(&r);
  ck_assert_int_eq(output_of(id, 0, 1000001, 0, &r), JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "tail_lines"));
  result_free(&r);
  free(id);

  /* no_follow on a running job: what it wrote so far, then OK. */
  char *a3[] = {"-c", "echo first; sleep 100"};
  id = start_job(0, "sh", a3, 2);
  result_t f;
  output_start(id, 1, &f);
  output_wait(&f, 6);
  output_cancel(&f);
  ck_assert_int_eq(output_of(id, 0, 0, 1, &r), JW_GRPC_OK);
  ck_assert_str_eq((char *)r.out[0], "first\n");
  result_free(&r);
  stop_stopped(id);
  free(id);
}
END_TEST

/* Wait answers once the job is final; a deadline bounds it. */
START_TEST(wait_final_and_deadline) {
  result_t r;
  char *a1[] = {"-c", "sleep 0.3; exit 7"};
  char *id = start_job(0, "sh", a1, 2);
  id_call(0, PATH("Wait"), id, &r);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED);
  ck_assert_int_eq(st->exit_code, 7);
  ck_assert_int_eq(st->end_reason,
                   JOBWORKER__V1__END_REASON__END_REASON_EXITED);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  /* A finished job: at once. */
  id_call(0, PATH("Wait"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  result_free(&r);
  /* Another client's job, an unknown one. */
  id_call(1, PATH("Wait"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_PERMISSION_DENIED);
  result_free(&r);
  id_call(0, PATH("Wait"), "00000000000000000000000000000000", &r);
  ck_assert_int_eq(r.status, JW_GRPC_NOT_FOUND);
  result_free(&r);
  free(id);

  /* 20 Waits on a running job with a 1 s deadline: all end with 4. */
  char *a2[] = {"100"};
  id = start_job(0, "sleep", a2, 1);
  Jobworker__V1__StatusRequest req = JOBWORKER__V1__STATUS_REQUEST__INIT;
  req.id = id;
  uint8_t buf[64];
  size_t n = protobuf_c_message_get_packed_size(&req.base);
  protobuf_c_message_pack(&req.base, buf);
  result_t w[20];
  for (int i = 0; i < 20; i++) {
    memset(&w[i], 0, sizeof(w[i]));
    ck_assert_int_eq(jw_rpc_client_call(fx.cli[0], PATH("Wait"), buf, n, 1000,
                                        on_msg, on_done, &w[i], &w[i].call),
                     0);
  }
  for (int i = 0; i < 20; i++) {
    run_until(&w[i].done);
    ck_assert_int_eq(w[i].status, JW_GRPC_DEADLINE_EXCEEDED);
    result_free(&w[i]);
  }
  /* The job ran on; a Wait now answers with its stop. */
  id_call(0, PATH("Status"), id, &r);
  st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  stop_stopped(id);
  free(id);
}
END_TEST

/* Sends Signal with a number or a name; returns the call's status. */
static int signal_call(int who, const char *id, int sig, const char *name,
                       result_t *r) {
  Jobworker__V1__SignalRequest req = JOBWORKER__V1__SIGNAL_REQUEST__INIT;
  req.id = (char *)id;
  req.signal = sig;
  req.signal_name = (char *)(name != NULL ? name : "");
  call_msg(who, PATH("Signal"), &req.base, r);
  return r->status;
}

START_TEST(signal_by_name_and_number) {
  result_t r;
  char *a1[] = {"-c", "trap 'echo got USR1; exit 0' USR1; echo ready; "
                      "while :; do sleep 0.05; done"};
  char *id = start_job(0, "sh", a1, 2);
  result_t f;
  output_start(id, 1, &f);
  output_wait(&f, 6);
  output_cancel(&f);
  ck_assert_int_eq(signal_call(0, id, 0, "USR1", &r), JW_GRPC_OK);
  result_free(&r);
  Jobworker__V1__JobStatus *st = wait_final(0, id);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED);
  ck_assert_int_eq(st->exit_code, 0);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  ck_assert_int_eq(output_of(id, 0, 0, 0, &r), JW_GRPC_OK);
  ck_assert_str_eq((char *)r.out[0], "ready\ngot USR1\n");
  result_free(&r);
  /* A final job has nothing to signal. */
  ck_assert_int_eq(signal_call(0, id, SIGTERM, NULL, &r),
                   JW_GRPC_FAILED_PRECONDITION);
  result_free(&r);
  free(id);

  char *a2[] = {"100"};
  id = start_job(0, "sleep", a2, 1);
  /* Bad signals, another client, an unknown job: nothing is sent. */
  static const struct {
    int sig;
    const char *name;
  } bad[] = {{0, "NOSUCH"}, {65, NULL}, {-1, NULL},
             {9, "KILL"},   {0, NULL},  {0, "SIGRTMAX+1"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_int_eq(signal_call(0, id, bad[i].sig, bad[i].name, &r),
                     JW_GRPC_INVALID_ARGUMENT);
    result_free(&r);
  }
  ck_assert_int_eq(signal_call(1, id, SIGKILL, NULL, &r),
                   JW_GRPC_PERMISSION_DENIED);
  result_free(&r);
  ck_assert_int_eq(
      signal_call(0, "00000000000000000000000000000000", SIGKILL, NULL, &r),
      JW_GRPC_NOT_FOUND);
  result_free(&r);
  id_call(0, PATH("Status"), id, &r);
  st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  /* "sigkill" by name ends it: the client did, so the reason is STOPPED. */
  ck_assert_int_eq(signal_call(0, id, 0, "sigkill", &r), JW_GRPC_OK);
  result_free(&r);
  st = wait_final(0, id);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED);
  ck_assert_int_eq(st->signal, SIGKILL);
  ck_assert_int_eq(st->end_reason,
                   JOBWORKER__V1__END_REASON__END_REASON_STOPPED);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  free(id);
}
END_TEST

static int log_exists(const char *id) {
  char p[256];
  snprintf(p, sizeof(p), "%s/%s.log", fx.dir, id);
  return access(p, F_OK) == 0;
}

/*
 * Remove deletes a finished job and its log; a running job is refused;
 * a stream still reading a removed job ends with NOT_FOUND.
 */
START_TEST(remove_finished_only) {
  result_t r;
  char *a1[] = {"100"};
  char *id = start_job(0, "sleep", a1, 1);
  id_call(0, PATH("Remove"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_FAILED_PRECONDITION);
  ck_assert_ptr_nonnull(strstr(r.message, "running"));
  result_free(&r);
  stop_stopped(id);
  id_call(1, PATH("Remove"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_PERMISSION_DENIED);
  result_free(&r);
  ck_assert(log_exists(id));
  id_call(0, PATH("Remove"), id, &r);
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_str_eq(st->id, id);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  ck_assert(!log_exists(id));
  static const char *const paths[] = {PATH("Status"), PATH("Remove"),
                                      PATH("Wait"), PATH("GetOutput")};
  for (int i = 0; i < 4; i++) {
    id_call(0, paths[i], id, &r);
    ck_assert_int_eq(r.status, JW_GRPC_NOT_FOUND);
    result_free(&r);
  }
  free(id);

  /* 8 MiB of output, read by a stream that stalls; then removed. */
  char *a2[] = {"-c", "8388608", "/dev/zero"};
  id = start_job(0, "head", a2, 3);
  jobworker__v1__job_status__free_unpacked(wait_final(0, id), NULL);
  result_t f;
  output_start(id, 1, &f);
  jw_rpc_ccall_pause(f.call, true);
  for (int i = 0; i < 50 && f.nmsgs == 0; i++)
    uv_run(&fx.loop, UV_RUN_NOWAIT);
  id_call(0, PATH("Remove"), id, &r);
  ck_assert_int_eq(r.status, JW_GRPC_OK);
  result_free(&r);
  jw_rpc_ccall_pause(f.call, false);
  run_until(&f.done);
  ck_assert_int_eq(f.status, JW_GRPC_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(f.message, "removed"));
  ck_assert_uint_lt(f.outlen[0], 8388608);
  result_free(&f);
  free(id);
}
END_TEST

/* Sends Stop with a grace of its own, without waiting for the answer. */
static void stop_start(const char *id, int64_t timeout_ms, result_t *r) {
  Jobworker__V1__StopRequest req = JOBWORKER__V1__STOP_REQUEST__INIT;
  uint8_t buf[64];
  req.id = (char *)id;
  req.timeout_ms = timeout_ms;
  size_t n = protobuf_c_message_get_packed_size(&req.base);
  protobuf_c_message_pack(&req.base, buf);
  call_start(0, PATH("Stop"), buf, n, r);
}

/*
 * Stop's timeout_ms is the grace before SIGKILL, cut to the server's
 * maximum; the job is STOPPING meanwhile.
 */
START_TEST(stop_timeout_and_stopping) {
  result_t r;
  char *a1[] = {"-c", "trap '' TERM; echo ready; sleep 100"};
  char *id = start_job(0, "sh", a1, 2);
  result_t f;
  output_start(id, 1, &f);
  output_wait(&f, 6);
  output_cancel(&f);
  stop_start(id, -1, &r);
  run_until(&r.done);
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  result_free(&r);

  /* An hour asked, 3 s allowed: SIGKILL comes at 3 s. */
  fx.svc.max_stop_timeout_ms = 3000;
  uint64_t t0 = uv_hrtime();
  result_t s;
  stop_start(id, 3600 * 1000, &s);
  int stopping = 0;
  for (int i = 0; i < 200 && !stopping && !s.done; i++) {
    id_call(0, PATH("Status"), id, &r);
    Jobworker__V1__JobStatus *st = status_of(&r);
    stopping = st->state == JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPING;
    ck_assert_int_eq(st->end_reason,
                     JOBWORKER__V1__END_REASON__END_REASON_UNSPECIFIED);
    jobworker__v1__job_status__free_unpacked(st, NULL);
    result_free(&r);
  }
  ck_assert(stopping);
  run_until(&s.done);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  Jobworker__V1__JobStatus *st = status_of(&s);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED);
  ck_assert_int_eq(st->signal, SIGKILL);
  ck_assert_int_eq(st->end_reason,
                   JOBWORKER__V1__END_REASON__END_REASON_STOPPED);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&s);
  /* Not before the 3 s asked for (the fixture's grace is 0.5 s). */
  ck_assert_msg(secs >= 2.9, "SIGKILL after %.2fs", secs);
  /* Nowhere near the hour: 3 s and a margin for a loaded machine. */
  ck_assert_msg(secs < 3 + 20, "SIGKILL after %.2fs", secs);
  free(id);
}
END_TEST

/* A job's timeout_ms stops it as Stop would, with reason TIMED_OUT. */
START_TEST(start_timeout) {
  result_t r;
  char *a1[] = {"30"};
  ck_assert_ptr_null(start_timed("sleep", a1, 1, -5, &r));
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(r.message, "timeout_ms"));
  result_free(&r);
  ck_assert_ptr_null(start_timed("sleep", a1, 1, 400LL * 86400 * 1000, &r));
  ck_assert_int_eq(r.status, JW_GRPC_INVALID_ARGUMENT);
  result_free(&r);
  ck_assert_int_eq(list_count(0), 0);

  uint64_t t0 = uv_hrtime();
  char *id = start_timed("sleep", a1, 1, 1000, &r);
  ck_assert_ptr_nonnull(id);
  id_call(0, PATH("Wait"), id, &r);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  Jobworker__V1__JobStatus *st = status_of(&r);
  ck_assert_int_eq(st->state, JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED);
  ck_assert_int_eq(st->signal, SIGTERM);
  ck_assert_int_eq(st->end_reason,
                   JOBWORKER__V1__END_REASON__END_REASON_TIMED_OUT);
  ck_assert_int_eq(st->timeout_ms, 1000);
  jobworker__v1__job_status__free_unpacked(st, NULL);
  result_free(&r);
  /* The 1 s limit, the 0.5 s grace, and a margin for a loaded machine. */
  ck_assert_msg(secs >= 0.95 && secs < 1 + 0.5 + 10, "ended after %.2fs", secs);
  free(id);
}
END_TEST

static Suite *service_suite(void) {
  Suite *s = suite_create("service");
  TCase *tc = test_tcase(s, "rpc", setup, teardown, 240);
  const TTest *const tc_tests[] = {start_status_list,
                                   errors,
                                   bad_strings_and_caps,
                                   list_reply_is_bounded,
                                   big_binary_output,
                                   stalled_reader_costs_no_memory,
                                   cancel_mid_stream,
                                   stop_escalates_to_kill,
                                   output_offset_tail_no_follow,
                                   wait_final_and_deadline,
                                   signal_by_name_and_number,
                                   remove_finished_only,
                                   stop_timeout_and_stopping,
                                   start_timeout,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(service_suite()); }
