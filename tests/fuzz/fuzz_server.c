/*
 * Fuzz target: the server side of a whole connection below TLS. The
 * input is what a client sends after the TLS handshake (the HTTP/2
 * connection preface, then frames); it goes into a real server connection
 * through the plaintext test hook (jw__server_test_conn: no socket, no
 * TLS), so nghttp2, lib/rpc's server role and gRPC framing all see it as
 * they would in teleportd.
 *
 * The input is fed frame by frame (as its 9-byte headers say), with a
 * turn of the loop in between, so handlers that end calls later, streams
 * that wait for data and deadlines interleave with what the client sends.
 * Then the connection is closed and the loop run until everything is
 * freed: ASan and LSan (per input, under libFuzzer) catch a crash, a
 * use-after-free or a leak anywhere on the way.
 *
 * The test service has unary and streaming methods, handlers that end
 * their call at once or on a later loop turn, and the JobWorker method
 * paths, whose handlers decode their requests with lib/service/request.c as
 * teleportd does (without a supervisor: they answer with a fixed status).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "fuzz.h"
#include "jobworker.pb-c.h"
#include "jobworker/rpc.h"
#include "request.h"
#include "server_test.h"
#include "tls_int.h"

static uv_loop_t loop;
static jw_rpc_server_t *srv;
static jw_tls_ctx_t tls;
/*
 * The connection may close (and be freed) inside any input or loop turn:
 * its conn_close event says so, and then it is not touched again.
 */
static bool conn_closed;

/* ---- Handlers --------------------------------------------------------- */

static void on_echo(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  jw_rpc_call_reply(call, req, len);
}

static void on_fail(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  /* The request picks the status and is the message (any bytes). */
  char msg[256];
  size_t n = len < sizeof(msg) - 1 ? len : sizeof(msg) - 1;
  if (n > 0)
    memcpy(msg, req, n);
  msg[n] = '\0';
  jw_rpc_call_fail(call, len > 0 ? req[0] % 20 : JW_GRPC_UNKNOWN, msg);
}

/* A call ended on a later loop turn, unless it is canceled first. */
typedef struct {
  uv_timer_t timer;
  jw_rpc_call_t *call;
  uint8_t byte;
  int left;   /* stream: messages still to send */
  bool ready; /* stream: the next pull has data */
} later_t;

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_free(later_t *l) {
  uv_timer_stop(&l->timer);
  uv_close((uv_handle_t *)&l->timer, later_closed);
}

static void later_cancel(jw_rpc_call_t *call, void *data) { later_free(data); }

static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  if (l->byte & 1)
    jw_rpc_call_reply(l->call, &l->byte, 1);
  else
    jw_rpc_call_fail(l->call, JW_GRPC_ABORTED, "later");
  later_free(l);
}

static later_t *later_new(jw_rpc_call_t *call, uint8_t byte) {
  later_t *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return NULL;
  l->call = call;
  l->byte = byte;
  uv_timer_init(&loop, &l->timer);
  l->timer.data = l;
  return l;
}

static void on_later(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                     void *data) {
  later_t *l = later_new(call, len > 0 ? req[0] : 0);
  if (l == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  jw_rpc_call_on_cancel(call, later_cancel, l);
  uv_timer_start(&l->timer, later_fire, 0, 0);
}

/* The stream's data comes every other loop turn: pull says EAGAIN. */
static void stream_ready(uv_timer_t *t) {
  later_t *l = t->data;
  l->ready = true;
  jw_rpc_call_resume(l->call);
}

static ssize_t stream_pull(jw_rpc_call_t *call, uint8_t *buf, size_t cap,
                           void *data) {
  later_t *l = data;
  if (l->left == 0) {
    later_free(l);
    return 0;
  }
  if (!l->ready) {
    uv_timer_start(&l->timer, stream_ready, 0, 0);
    return JW_EAGAIN;
  }
  /* Sizes from 1 byte to a whole message, so flow control has work. */
  size_t n = (size_t)(l->byte + 1) * (size_t)(l->left * 97 % 1031 + 1);
  if (n > cap)
    n = cap;
  memset(buf, l->byte, n);
  l->left--;
  l->ready = (l->byte & 2) != 0;
  return (ssize_t)n;
}

static void start_stream(jw_rpc_call_t *call, uint8_t byte, int count) {
  later_t *l = later_new(call, byte);
  if (l == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  l->left = count;
  l->ready = (byte & 4) != 0;
  jw_rpc_call_on_cancel(call, later_cancel, l);
  if (jw_rpc_call_stream(call, stream_pull, l) != 0)
    later_free(l);
}

static void on_stream(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data) {
  start_stream(call, len > 0 ? req[0] : 0, len > 1 ? req[1] % 24 : 3);
}

/* ---- The JobWorker paths, decoded as teleportd decodes them ----------- */

static void reply_status(jw_rpc_call_t *call, const char *id) {
  Jobworker__V1__JobStatus st = JOBWORKER__V1__JOB_STATUS__INIT;
  st.id = (char *)id;
  st.owner = (char *)jw_rpc_call_cn(call);
  st.state = JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING;
  uint8_t buf[512];
  size_t n = jobworker__v1__job_status__get_packed_size(&st);
  if (n > sizeof(buf)) {
    jw_rpc_call_fail(call, JW_GRPC_INTERNAL, "status too large");
    return;
  }
  jobworker__v1__job_status__pack(&st, buf);
  jw_rpc_call_reply(call, buf, n);
}

static void on_jw_start(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                        void *data) {
  char msg[256], q[80];
  Jobworker__V1__JobRequest *r;
  int code = jw_request_decode_start(req, len, NULL, &r, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return;
  }
  /* As on_start reports a command that cannot start. */
  jw_request_quote(r->command, q, sizeof(q));
  if (r->n_args > 0)
    jw_rpc_call_fail(call, JW_GRPC_INVALID_ARGUMENT, q);
  else
    reply_status(call, "00000000000000000000000000000000");
  jobworker__v1__job_request__free_unpacked(r, NULL);
}

static void on_jw_id(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                     void *data) {
  char q[80];
  char *id = jw_request_unpack_id(call, req, len);
  if (id == NULL)
    return;
  /* As fail_lookup answers an unknown id. */
  jw_request_quote(id, q, sizeof(q));
  if (id[0] == '\0' || id[0] == 'x')
    jw_rpc_call_fail(call, JW_GRPC_NOT_FOUND, q);
  else
    reply_status(call, id);
  free(id);
}

static void on_jw_output(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                         void *data) {
  char *id = jw_request_unpack_id(call, req, len);
  if (id == NULL)
    return;
  start_stream(call, id[0] != '\0' ? (uint8_t)id[0] : 0, 4);
  free(id);
}

static void on_jw_list(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                       void *data) {
  char msg[128];
  int code = jw_request_decode_list(req, len, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return;
  }
  Jobworker__V1__ListResponse resp = JOBWORKER__V1__LIST_RESPONSE__INIT;
  uint8_t buf[8];
  size_t n = jobworker__v1__list_response__pack(&resp, buf);
  jw_rpc_call_reply(call, buf, n);
}

static const jw_rpc_method_t methods[] = {
    {"/test.Svc/Echo", on_echo, 0},
    {"/test.Svc/Fail", on_fail, 0},
    {"/test.Svc/Later", on_later, 0},
    {"/test.Svc/Stream", on_stream, 0},
    {"/jobworker.v1.JobWorker/Start", on_jw_start, 0},
    {"/jobworker.v1.JobWorker/Status", on_jw_id, 0},
    {"/jobworker.v1.JobWorker/Stop", on_jw_id, 0},
    {"/jobworker.v1.JobWorker/GetOutput", on_jw_output, 0},
    {"/jobworker.v1.JobWorker/List", on_jw_list, 0},
};

/* ---- Harness ---------------------------------------------------------- */

static void on_event(const jw_rpc_event_t *ev, void *data) {
  if (ev->event == JW_RPC_EV_CONN_CLOSE)
    conn_closed = true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* A server context without certificates: the test hook skips TLS. */
  tls.ssl = SSL_CTX_new(TLS_server_method());
  tls.server = true;
  FUZZ_CHECK(tls.ssl != NULL);
  FUZZ_CHECK(uv_loop_init(&loop) == 0);
  jw_rpc_server_options_t opts = {
      .addr = "127.0.0.1:0",
      .tls = &tls,
      .methods = methods,
      .nmethods = sizeof(methods) / sizeof(methods[0]),
      .max_concurrent_streams = 16,
      .max_message_bytes = 64 * 1024,
      .on_event = on_event,
  };
  FUZZ_CHECK(jw_rpc_server_start(&loop, &opts, &srv) == 0);
  return 0;
}

static void turn(void) { uv_run(&loop, UV_RUN_NOWAIT); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  jw__conn_t *conn;
  /* Now and then a client certificate without a usable CN. */
  const char *cn = size % 13 == 5 ? NULL : "fuzz";
  conn_closed = false;
  FUZZ_CHECK(jw__server_test_conn(srv, cn, &conn) == 0);
  size_t off = 0;
  while (off < size && !conn_closed) {
    size_t n;
    if (off == 0)
      n = 24; /* the connection preface */
    else if (size - off >= 9)
      n = 9 + ((size_t)data[off] << 16 | (size_t)data[off + 1] << 8 |
               data[off + 2]);
    else
      n = size - off;
    if (n > size - off)
      n = size - off;
    /* Each frame in a buffer of its own size, as a TLS record would be. */
    uint8_t *frame = malloc(n);
    FUZZ_CHECK(frame != NULL);
    memcpy(frame, data + off, n);
    jw__conn_input(conn, frame, n);
    free(frame);
    off += n;
    turn();
  }
  /* Let handlers that end later, streams and deadlines run a while. */
  for (int i = 0; i < 8 && !conn_closed; i++)
    turn();
  if (!conn_closed)
    jw__server_test_close(conn);
  /* Close callbacks, then the timers our handlers close on cancel. */
  for (int i = 0; i < 4; i++)
    turn();
  return 0;
}
