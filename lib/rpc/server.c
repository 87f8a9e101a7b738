/*
 * The server role: a listener, one connection object per client, and a
 * call per HTTP/2 stream, dispatched to the method handlers once the one
 * request message has arrived.
 *
 * Ownership of a call: the library owns it while the request arrives and
 * after the handler ended it (reply, fail, end of stream); the handler
 * owns it in between ("owed": the handler still owes us an end). When the
 * call ends underneath the handler (stream reset, disconnect, deadline,
 * shutdown) the cancel callback runs once and the handler owes nothing.
 * Memory goes when nghttp2 has closed the stream and nobody is owed; a
 * callback of ours still on the stack (in_cb) delays both.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "list.h"
#include "rpc_int.h"
#include "server_int.h"
#include "tls_int.h"

typedef struct sconn_s sconn_t;

/*
 * How long an expired server stream may take to get its DEADLINE_EXCEEDED
 * trailers out (behind flow control) before it is reset instead.
 */
#define EXPIRED_GRACE_MS 2000

/*
 * A request that is not gRPC is answered once it ended, or once this much
 * of its body was read and thrown away, whichever comes first.
 */
#define HTTP_DISCARD_MAX (64 * 1024)

enum call_state {
  CALL_RECV,      /* request arriving; library-owned */
  CALL_HTTP,      /* not a gRPC request: body discarded, answered at its end */
  CALL_HANDLER,   /* dispatched; the handler owns it */
  CALL_STREAMING, /* a server stream; the handler's pull owns it */
  CALL_ENDED,     /* the response is ending or was cut off */
};

struct jw_rpc_call_s {
  jw_rpc_server_t *srv;
  sconn_t *sc;     /* NULL once detached from its stream */
  jw__list_t node; /* in sc->calls, or in srv->zombies */
  int32_t stream_id;
  enum call_state state;

  /* Request headers. */
  char *path;
  bool post;
  bool head;
  bool grpc_ctype;
  bool have_ctype;
  bool encoded;         /* grpc-encoding other than identity */
  bool refuse_encoding; /* the error says which encodings we take */
  bool have_timeout;
  bool bad_timeout;
  uint64_t timeout_ms;
  size_t header_bytes;
  int http_status; /* CALL_HTTP: the answer's :status */
  size_t discarded;
  const jw_rpc_method_t *method;

  /* Request body. */
  jw_grpc_deframer_t defr;
  uint8_t *req;
  size_t req_len;
  int nmsgs;
  size_t rx_held;         /* request bytes counted in sc->rx_bytes */
  size_t rx_unacked;      /* received bytes not yet given back as credit */
  bool ready;             /* the request is whole; dispatch waits for output */
  uv_timer_t *recv_timer; /* the request timeout, while it arrives */

  /* Response. */
  bool headers_sent;
  uint8_t *out;
  size_t out_len;
  size_t out_off;
  jw_rpc_pull_cb pull;
  void *pull_data;
  bool deferred;
  bool want_resume;

  void (*cancel_cb)(jw_rpc_call_t *call, void *data);
  void *cancel_data;
  int in_cb;
  bool owed;           /* the handler holds the call and was not told */
  bool cancel_pending; /* cancel while a callback of ours held the call */
  bool aborted;        /* cut off: send nothing more */
  bool zombie;         /* stream gone, handler owes an end, no cancel cb */

  uv_timer_t *deadline;
  char tag[64];
  int status;
  char *message;
  bool reported;
  uint64_t start_ns;
};

struct sconn_s {
  jw__conn_t c;
  jw_rpc_server_t *srv;
  jw__list_t node; /* in srv->conns */
  char *cn;
  char peer[64];
  bool opened;
  bool draining;
  bool fake;
  jw__list_t calls; /* newest first */
  size_t ncalls;
  uint64_t open_ns;
  size_t rx_bytes;      /* request bytes held for calls still arriving */
  size_t nready;        /* calls whose dispatch waits for the output */
  bool rx_progress;     /* request bytes arrived since the last idle check */
  uint64_t seen_writes; /* c.nwrites at the last idle check */
  bool refused;         /* over the per-client cap: GOAWAY, then close */
};

struct jw_rpc_server_s {
  uv_loop_t *loop;
  jw_rpc_server_options_t opts;
  jw_rpc_method_t *methods;
  SSL_CTX *ssl;
  uv_tcp_t listener;
  uv_timer_t shutdown_timer;
  jw__turns_t turns; /* the connections' handshake budget */
  bool turns_open;
  bool listener_open;
  bool timer_open;
  bool shutting_down;
  bool done;
  jw__list_t conns;
  size_t nconns;
  jw__list_t zombies;
  int port;
  void (*done_cb)(jw_rpc_server_t *srv, void *data);
  void *done_data;
};

static void emit(jw_rpc_server_t *srv, jw_rpc_event_type_t event,
                 const char *peer, const char *cn, const char *method,
                 const char *tag, int status, const char *message,
                 uint64_t dur_ns) {
  if (srv->opts.on_event == NULL)
    return;
  jw_rpc_event_t ev = {event, peer,   cn,      method,
                       tag,   status, message, dur_ns / 1000};
  srv->opts.on_event(&ev, srv->opts.data);
}

/* ---- Call bookkeeping ------------------------------------------------ */

#define CALL_OF(n) jw__list_data(n, jw_rpc_call_t, node)
#define SCONN_OF(n) jw__list_data(n, sconn_t, node)

static void timer_free_cb(uv_handle_t *h) { free(h); }

static void stop_deadline(jw_rpc_call_t *call) {
  if (call->deadline != NULL) {
    call->deadline->data = NULL;
    uv_close((uv_handle_t *)call->deadline, timer_free_cb);
    call->deadline = NULL;
  }
}

static void stop_recv_timer(jw_rpc_call_t *call) {
  if (call->recv_timer != NULL) {
    call->recv_timer->data = NULL;
    uv_close((uv_handle_t *)call->recv_timer, timer_free_cb);
    call->recv_timer = NULL;
  }
}

/* ---- Request memory and flow control ----------------------------------
 *
 * The session never updates windows by itself (jw__conn_h2_new): credit
 * for a DATA byte goes back when the byte leaves our memory (its message
 * was handled and freed, its stream was refused or ended) or, while the
 * message still arrives, at once as long as the connection holds less
 * than its budget, so that a message larger than the stream window can
 * pass. A connection therefore holds at most its budget plus its receive
 * window of request bytes, however many streams it opens (RFC 9113 5.2).
 */

static void rx_credit(sconn_t *sc, int32_t stream_id, size_t n) {
  if (n == 0 || sc->c.h2 == NULL || sc->c.dead || sc->c.closing)
    return;
  if (stream_id > 0)
    nghttp2_session_consume(sc->c.h2, stream_id, n);
  else
    nghttp2_session_consume_connection(sc->c.h2, n);
}

/* The call's request bytes are no longer held: free and credit them. */
static void rx_release(jw_rpc_call_t *call) {
  sconn_t *sc = call->sc;
  jw_grpc_deframer_reset(&call->defr);
  if (sc == NULL)
    return;
  sc->rx_bytes -= call->rx_held;
  call->rx_held = 0;
  rx_credit(sc, call->stream_id, call->rx_unacked);
  call->rx_unacked = 0;
}

/*
 * Frees what calls that stopped arriving still hold (a deadline or a
 * refusal ended them underneath the receive path), then gives credit to
 * calls still arriving while the budget allows it.
 */
static void rx_grant(sconn_t *sc) {
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (call->state != CALL_RECV && (call->rx_held > 0 || call->rx_unacked > 0))
      rx_release(call);
  }
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (sc->rx_bytes >= sc->srv->opts.max_buffered_request_bytes)
      return;
    if (call->state == CALL_RECV && call->rx_unacked > 0) {
      rx_credit(sc, call->stream_id, call->rx_unacked);
      call->rx_unacked = 0;
    }
  }
}

static void set_status(jw_rpc_call_t *call, int status, const char *message) {
  /* message may be call->message itself: copy before freeing. */
  char *m = message != NULL && *message ? strdup(message) : NULL;
  free(call->message);
  call->message = m;
  call->status = status;
}

static void report(jw_rpc_call_t *call) {
  /* Every request with a path is logged, refused ones included. */
  if (call->reported || call->path == NULL)
    return;
  call->reported = true;
  const char *cn = call->sc != NULL ? call->sc->cn : NULL;
  const char *peer = call->sc != NULL ? call->sc->peer : NULL;
  emit(call->srv, JW_RPC_EV_RPC, peer, cn, call->path,
       call->tag[0] ? call->tag : NULL, call->status, call->message,
       uv_hrtime() - call->start_ns);
}

/* Detaches the call from its connection and stream. */
static void detach(jw_rpc_call_t *call) {
  sconn_t *sc = call->sc;
  if (sc == NULL)
    return;
  if (sc->c.h2 != NULL && call->stream_id > 0)
    nghttp2_session_set_stream_user_data(sc->c.h2, call->stream_id, NULL);
  rx_release(call);
  if (call->ready)
    sc->nready--;
  call->ready = false;
  jw__list_remove(&call->node);
  sc->ncalls--;
  call->sc = NULL;
  stop_deadline(call);
  stop_recv_timer(call);
}

static void call_free(jw_rpc_call_t *call) {
  if (call->sc != NULL)
    detach(call);
  if (call->zombie)
    jw__list_remove(&call->node);
  stop_deadline(call);
  stop_recv_timer(call);
  jw_grpc_deframer_reset(&call->defr);
  free(call->path);
  free(call->req);
  free(call->out);
  free(call->message);
  free(call);
}

/*
 * Frees the call once its stream is gone, no callback of ours holds it and
 * the handler owes nothing. A handler that never registered a cancel
 * callback still owes an end: the call waits for it on the zombie list.
 */
static void call_maybe_free(jw_rpc_call_t *call) {
  if (call->in_cb > 0 || call->sc != NULL)
    return;
  if (call->owed) {
    if (!call->zombie) {
      call->zombie = true;
      jw__list_insert_head(&call->srv->zombies, &call->node);
    }
    return;
  }
  call_free(call);
}

/* Tells the handler its call ended underneath it, once. */
static void notify_cancel(jw_rpc_call_t *call, int status,
                          const char *message) {
  if (!call->owed)
    return;
  if (!call->aborted || call->status == JW_GRPC_OK)
    set_status(call, status, message);
  call->aborted = true;
  call->pull = NULL;
  call->state = CALL_ENDED;
  if (call->cancel_cb == NULL)
    return;
  if (call->in_cb > 0) {
    call->cancel_pending = true;
    return;
  }
  void (*cb)(jw_rpc_call_t *, void *) = call->cancel_cb;
  call->cancel_cb = NULL;
  call->owed = false;
  call->in_cb++;
  cb(call, call->cancel_data);
  call->in_cb--;
}

/* A callback of ours that held the call (handler, pull) returned. */
static void call_after_cb(jw_rpc_call_t *call) {
  if (call->in_cb > 0)
    return;
  if (call->cancel_pending) {
    call->cancel_pending = false;
    notify_cancel(call, call->status, call->message);
  }
  call_maybe_free(call);
}

/* The stream is gone (closed, reset, or its connection is closing). */
static void call_stream_gone(jw_rpc_call_t *call, int status,
                             const char *message) {
  if (call->state != CALL_ENDED)
    set_status(call, status, message);
  report(call);
  detach(call);
  notify_cancel(call, status, message);
  call_maybe_free(call);
}

/* ---- Sending ---------------------------------------------------------- */

static const char ctype_grpc[] = "application/grpc";
/* The message encodings the server takes (grpc-accept-encoding). */
static const char accept_encoding[] = "identity";

/*
 * Percent-encodes message into enc; a message too long for it is cut, but
 * never inside a %XX escape.
 */
static size_t encode_message(const char *message, char *enc, size_t cap) {
  size_t mlen = message != NULL ? strlen(message) : 0;
  size_t elen =
      jw_grpc_message_encode((const uint8_t *)message, mlen, enc, cap);
  if (elen >= cap) {
    elen = cap - 1;
    if (elen >= 1 && enc[elen - 1] == '%')
      elen -= 1;
    else if (elen >= 2 && enc[elen - 2] == '%')
      elen -= 2;
  }
  return elen;
}

static int submit_trailers(jw_rpc_call_t *call, int status,
                           const char *message) {
  char st[12];
  char enc[JW__MAX_STATUS_MESSAGE];
  size_t mlen = message != NULL ? strlen(message) : 0;
  snprintf(st, sizeof(st), "%d", status);
  size_t elen = encode_message(message, enc, sizeof(enc));
  nghttp2_nv nva[2] = {JW__NV("grpc-status", st, strlen(st)),
                       JW__NV("grpc-message", enc, elen)};
  return nghttp2_submit_trailer(call->sc->c.h2, call->stream_id, nva,
                                mlen > 0 ? 2 : 1);
}

/* An immediate error: one HEADERS frame with END_STREAM. */
static int submit_error(jw_rpc_call_t *call, int http_status, int status,
                        const char *message) {
  char hs[8];
  char st[12];
  char enc[JW__MAX_STATUS_MESSAGE];
  size_t mlen = message != NULL ? strlen(message) : 0;
  snprintf(hs, sizeof(hs), "%d", http_status);
  snprintf(st, sizeof(st), "%d", status);
  size_t elen = encode_message(message, enc, sizeof(enc));
  nghttp2_nv nva[5] = {
      JW__NV(":status", hs, strlen(hs)),
      JW__NV("content-type", ctype_grpc, sizeof(ctype_grpc) - 1),
      JW__NV("grpc-status", st, strlen(st))};
  size_t nnv = 3;
  if (call->refuse_encoding)
    nva[nnv++] = (nghttp2_nv)JW__NV("grpc-accept-encoding", accept_encoding,
                                    sizeof(accept_encoding) - 1);
  if (mlen > 0)
    nva[nnv++] = (nghttp2_nv)JW__NV("grpc-message", enc, elen);
  call->headers_sent = true;
  set_status(call, status, message);
  call->state = CALL_ENDED;
  stop_deadline(call);
  jw__conn_schedule(&call->sc->c);
  return nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva, nnv,
                                 NULL);
}

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data) {
  jw_rpc_call_t *call = source->ptr;
  if (call == NULL || call->sc == NULL || call->aborted)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (call->out_off == call->out_len && call->state == CALL_STREAMING) {
    if (call->pull == NULL)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    call->want_resume = false;
    call->in_cb++;
    /* A message sized to what this DATA frame can carry is pulled straight
     * into nghttp2's frame buffer: no per-stream buffer, no copy. A window
     * too small even for JW_RPC_PULL_MIN gets a message of that size
     * through a buffer of that size: a reader with a tiny window costs a
     * few bytes, never a full message of staging. */
    bool direct = length >= JW_GRPC_PREFIX_LEN + JW_RPC_PULL_MIN;
    if (!direct && call->out == NULL) {
      call->out = malloc(JW_GRPC_PREFIX_LEN + JW_RPC_PULL_MIN);
      if (call->out == NULL) {
        call->in_cb--;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      }
    }
    size_t pcap = direct ? length - JW_GRPC_PREFIX_LEN : JW_RPC_PULL_MIN;
    if (pcap > JW_RPC_STREAM_MSG_MAX)
      pcap = JW_RPC_STREAM_MSG_MAX;
    uint8_t *pbuf = direct ? buf : call->out;
    ssize_t r =
        call->pull(call, pbuf + JW_GRPC_PREFIX_LEN, pcap, call->pull_data);
    call->in_cb--;
    /* An end from the pull means no cancel callback may follow. */
    if (r != JW_EAGAIN && (r <= 0 || (size_t)r > pcap)) {
      call->owed = false;
      call->cancel_pending = false;
    }
    if (call->sc == NULL || call->aborted) {
      /* Ended underneath the pull (the connection closed). */
      call_after_cb(call);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (r == JW_EAGAIN) {
      call->deferred = true;
      if (call->want_resume)
        jw__conn_schedule(&call->sc->c);
      return NGHTTP2_ERR_DEFERRED;
    }
    if (r > 0 && (size_t)r <= pcap && direct) {
      jw_grpc_prefix_write(buf, (uint32_t)r);
      return JW_GRPC_PREFIX_LEN + r;
    }
    if (r > 0 && (size_t)r <= pcap) {
      jw_grpc_prefix_write(call->out, (uint32_t)r);
      call->out_len = JW_GRPC_PREFIX_LEN + (size_t)r;
      call->out_off = 0;
    } else {
      call->state = CALL_ENDED;
      call->pull = NULL;
      stop_deadline(call);
      if (r == 0) {
        set_status(call, JW_GRPC_OK, NULL);
      } else {
        char msg[128];
        snprintf(msg, sizeof(msg), "the stream failed: %s",
                 r > 0 ? "message too large" : jw_strerror((int)r));
        set_status(call, JW_GRPC_INTERNAL, msg);
      }
    }
  }
  if (call->out_off < call->out_len) {
    size_t n = call->out_len - call->out_off;
    if (n > length)
      n = length;
    memcpy(buf, call->out + call->out_off, n);
    call->out_off += n;
    return (ssize_t)n;
  }
  /* Everything is out: end with trailers rather than END_STREAM on DATA. */
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  if (submit_trailers(call, call->status, call->message) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

/* ---- Requests that are not gRPC --------------------------------------- */

static const char http_text[] =
    "this is a gRPC server (jobworker.v1.JobWorker): send gRPC requests, "
    "POST with content-type application/grpc\n";

static ssize_t http_text_read_cb(nghttp2_session *session, int32_t stream_id,
                                 uint8_t *buf, size_t length, uint32_t *flags,
                                 nghttp2_data_source *source, void *user_data) {
  jw_rpc_call_t *call = source->ptr;
  if (call == NULL || call->sc == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = sizeof(http_text) - 1 - call->out_off;
  if (n > length)
    n = length;
  memcpy(buf, http_text + call->out_off, n);
  call->out_off += n;
  if (call->out_off == sizeof(http_text) - 1)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/*
 * Marks a request that is not gRPC (another method, another content
 * type): a plain HTTP answer with a short text follows once the request
 * ended, as an HTTP client expects, and never a gRPC Trailers-Only
 * response it would not understand. why is what the log says.
 */
static void http_refuse(jw_rpc_call_t *call, int http_status, const char *why) {
  call->state = CALL_HTTP;
  call->http_status = http_status;
  set_status(call, JW_GRPC_INTERNAL, why);
}

/* Sends the answer of a CALL_HTTP request; HEAD gets the headers alone. */
static void http_answer(jw_rpc_call_t *call) {
  static const char ctype_text[] = "text/plain; charset=utf-8";
  char hs[8];
  char cl[16];
  snprintf(hs, sizeof(hs), "%d", call->http_status);
  snprintf(cl, sizeof(cl), "%zu", sizeof(http_text) - 1);
  nghttp2_nv nva[4] = {
      JW__NV(":status", hs, strlen(hs)),
      JW__NV("content-type", ctype_text, sizeof(ctype_text) - 1),
      JW__NV("content-length", cl, strlen(cl)), JW__NV("allow", "POST", 4)};
  nghttp2_data_provider prd;
  prd.source.ptr = call;
  prd.read_callback = http_text_read_cb;
  call->state = CALL_ENDED;
  call->headers_sent = true;
  call->out_off = 0;
  jw__conn_schedule(&call->sc->c);
  if (nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva,
                              call->http_status == 405 ? 4 : 3,
                              call->head ? NULL : &prd) != 0)
    nghttp2_submit_rst_stream(call->sc->c.h2, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
}

/*
 * Request body bytes nobody will read: a refused request's. They are
 * still credited back to the flow-control windows (nghttp2's automatic
 * WINDOW_UPDATE does that as they arrive). Returns true once more than
 * HTTP_DISCARD_MAX bytes were thrown away.
 */
static bool discard_body(jw_rpc_call_t *call, size_t len) {
  call->discarded += len;
  return call->discarded > HTTP_DISCARD_MAX;
}

static int submit_headers_with_body(jw_rpc_call_t *call) {
  nghttp2_nv nva[2] = {
      JW__NV(":status", "200", 3),
      JW__NV("content-type", ctype_grpc, sizeof(ctype_grpc) - 1)};
  nghttp2_data_provider prd;
  prd.source.ptr = call;
  prd.read_callback = data_read_cb;
  call->headers_sent = true;
  jw__conn_schedule(&call->sc->c);
  return nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva, 2, &prd);
}

/* ---- Public call API ------------------------------------------------- */

const char *jw_rpc_call_cn(const jw_rpc_call_t *call) {
  return call->sc != NULL && call->sc->cn != NULL ? call->sc->cn : "";
}

const char *jw_rpc_call_method(const jw_rpc_call_t *call) { return call->path; }

void jw_rpc_call_set_tag(jw_rpc_call_t *call, const char *tag) {
  snprintf(call->tag, sizeof(call->tag), "%s", tag != NULL ? tag : "");
}

void jw_rpc_call_on_cancel(jw_rpc_call_t *call,
                           void (*cancel_cb)(jw_rpc_call_t *call, void *data),
                           void *data) {
  call->cancel_cb = cancel_cb;
  call->cancel_data = data;
}

/*
 * The handler ends a call that already ended underneath it (its stream is
 * gone or its deadline passed): nothing is sent, the call can go.
 */
static int end_late(jw_rpc_call_t *call) {
  if (!call->owed)
    return JW_EINVAL;
  call->owed = false;
  call->cancel_cb = NULL;
  call->cancel_pending = false;
  call_maybe_free(call);
  return JW_ECLOSED;
}

int jw_rpc_call_reply(jw_rpc_call_t *call, const uint8_t *msg, size_t len) {
  if (call->sc == NULL || call->state != CALL_HANDLER)
    return end_late(call);
  call->owed = false;
  if (len > UINT32_MAX)
    return jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED,
                            "the response is too large");
  call->out = malloc(JW_GRPC_PREFIX_LEN + len);
  if (call->out == NULL)
    return jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  jw_grpc_prefix_write(call->out, (uint32_t)len);
  if (len > 0)
    memcpy(call->out + JW_GRPC_PREFIX_LEN, msg, len);
  call->out_len = JW_GRPC_PREFIX_LEN + len;
  call->out_off = 0;
  call->state = CALL_ENDED;
  set_status(call, JW_GRPC_OK, NULL);
  stop_deadline(call);
  if (submit_headers_with_body(call) != 0) {
    nghttp2_submit_rst_stream(call->sc->c.h2, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
    return JW_EHTTP2;
  }
  return 0;
}

int jw_rpc_call_fail(jw_rpc_call_t *call, int grpc_status,
                     const char *message) {
  if (call->sc == NULL || call->state != CALL_HANDLER)
    return end_late(call);
  call->owed = false;
  if (grpc_status == JW_GRPC_OK || grpc_status < 0 ||
      grpc_status > JW_GRPC_UNAUTHENTICATED)
    grpc_status = JW_GRPC_UNKNOWN;
  if (submit_error(call, 200, grpc_status, message) != 0) {
    nghttp2_submit_rst_stream(call->sc->c.h2, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
    return JW_EHTTP2;
  }
  return 0;
}

int jw_rpc_call_stream(jw_rpc_call_t *call, jw_rpc_pull_cb pull, void *data) {
  if (call->sc == NULL || call->state != CALL_HANDLER)
    return end_late(call);
  if (pull == NULL)
    return JW_EINVAL;
  call->out = NULL;
  call->out_len = call->out_off = 0;
  call->pull = pull;
  call->pull_data = data;
  call->state = CALL_STREAMING;
  if (submit_headers_with_body(call) != 0) {
    call->state = CALL_ENDED;
    call->owed = false;
    nghttp2_submit_rst_stream(call->sc->c.h2, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
    return JW_EHTTP2;
  }
  return 0;
}

void jw_rpc_call_resume(jw_rpc_call_t *call) {
  if (call->sc == NULL || call->state != CALL_STREAMING)
    return;
  call->want_resume = true;
  jw__conn_schedule(&call->sc->c);
}

/* ---- nghttp2 callbacks ----------------------------------------------- */

static jw_rpc_call_t *stream_call(sconn_t *sc, int32_t stream_id) {
  if (sc->c.dead || sc->c.closing)
    return NULL;
  return nghttp2_session_get_stream_user_data(sc->c.h2, stream_id);
}

/*
 * The request did not arrive in full within the request timeout: the call
 * ends with DEADLINE_EXCEEDED (the stream is then reset, as for any
 * response that ends before its request) and what it held is freed now.
 */
static void recv_timeout_cb(uv_timer_t *t) {
  jw_rpc_call_t *call = t->data;
  if (call == NULL || call->sc == NULL)
    return;
  sconn_t *sc = call->sc;
  stop_recv_timer(call);
  if (call->state == CALL_HTTP) {
    /* A refused request that never ends: answer it now (the stream is
     * then reset, its request still open). */
    http_answer(call);
    jw__conn_schedule(&sc->c);
    return;
  }
  if (call->state != CALL_RECV || call->ready)
    return;
  char msg[128];
  snprintf(msg, sizeof(msg),
           "the request did not arrive within the request timeout (%llu ms)",
           (unsigned long long)sc->srv->opts.request_timeout_ms);
  submit_error(call, 200, JW_GRPC_DEADLINE_EXCEEDED, msg);
  rx_release(call);
  rx_grant(sc);
  jw__conn_schedule(&sc->c);
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data) {
  sconn_t *sc = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  if (sc->c.dead || sc->c.closing)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (sc->refused)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  jw_rpc_call_t *call = calloc(1, sizeof(*call));
  if (call == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  call->srv = sc->srv;
  call->sc = sc;
  call->stream_id = frame->hd.stream_id;
  call->state = CALL_RECV;
  call->start_ns = uv_hrtime();
  jw_grpc_deframer_init(&call->defr, sc->srv->opts.max_message_bytes);
  /* Until the request is whole, the request timeout bounds how long the
   * call (and what it holds) waits for the client. */
  call->recv_timer = malloc(sizeof(*call->recv_timer));
  if (call->recv_timer == NULL) {
    free(call);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  uv_timer_init(sc->c.loop, call->recv_timer);
  call->recv_timer->data = call;
  uv_timer_start(call->recv_timer, recv_timeout_cb,
                 sc->srv->opts.request_timeout_ms, 0);
  jw__list_insert_head(&sc->calls, &call->node);
  sc->ncalls++;
  sc->rx_progress = true;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
  return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit) {
  return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data) {
  sconn_t *sc = user_data;
  jw_rpc_call_t *call = stream_call(sc, frame->hd.stream_id);
  if (call == NULL || call->state != CALL_RECV ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  call->header_bytes += namelen + valuelen + 32;
  if (call->header_bytes > JW__H2_MAX_HEADER_LIST)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (name_is(name, namelen, ":method")) {
    call->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    call->head = valuelen == 4 && memcmp(value, "HEAD", 4) == 0;
  } else if (name_is(name, namelen, ":path")) {
    free(call->path);
    call->path = strndup((const char *)value, valuelen);
  } else if (name_is(name, namelen, "content-type")) {
    call->have_ctype = true;
    /* "application/grpc" alone or followed by "+..." or ";...". */
    call->grpc_ctype = valuelen >= 16 &&
                       memcmp(value, "application/grpc", 16) == 0 &&
                       (valuelen == 16 || value[16] == '+' || value[16] == ';');
  } else if (name_is(name, namelen, "grpc-encoding")) {
    call->encoded = !(valuelen == 8 && memcmp(value, "identity", 8) == 0);
  } else if (name_is(name, namelen, "grpc-timeout")) {
    call->have_timeout = true;
    call->bad_timeout = jw_grpc_timeout_parse((const char *)value, valuelen,
                                              &call->timeout_ms) != 0;
  }
  return 0;
}

/*
 * An expired stream's trailers did not go out within the grace period
 * (the client gives no flow-control window for the rest of a message
 * already begun): it is reset after all.
 */
static void expired_cb(uv_timer_t *t) {
  jw_rpc_call_t *call = t->data;
  if (call == NULL || call->sc == NULL)
    return;
  sconn_t *sc = call->sc;
  stop_deadline(call);
  call->aborted = true;
  nghttp2_submit_rst_stream(sc->c.h2, NGHTTP2_FLAG_NONE, call->stream_id,
                            NGHTTP2_CANCEL);
  jw__conn_schedule(&sc->c);
}

static void deadline_cb(uv_timer_t *t) {
  jw_rpc_call_t *call = t->data;
  if (call == NULL || call->sc == NULL)
    return;
  sconn_t *sc = call->sc;
  if (call->state != CALL_STREAMING)
    stop_deadline(call);
  switch (call->state) {
  case CALL_RECV:
    submit_error(call, 200, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    break;
  case CALL_HANDLER:
    /* The status goes out, then the handler hears the call is over; the
     * call itself stays until nghttp2 closes the stream. */
    submit_error(call, 200, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    call->aborted = true;
    notify_cancel(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    break;
  case CALL_STREAMING:
    /*
     * Headers went out already: the stream ends with trailers saying
     * DEADLINE_EXCEEDED. A reset would race the client's own timer, and a
     * client whose timer lost would report CANCELLED. The handler hears
     * of it now and its pull is not called again; data_read_cb sends what
     * is left of a message already begun, then the trailers.
     */
    set_status(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    notify_cancel(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    call->pull = NULL;
    call->state = CALL_ENDED;
    call->aborted = false; /* the trailers still go out */
    if (call->deferred) {
      call->deferred = false;
      call->want_resume = false;
      nghttp2_session_resume_data(sc->c.h2, call->stream_id);
    }
    /* The rest of a message and the trailers may wait for flow
     * control; the same timer bounds that wait. */
    uv_timer_start(t, expired_cb, EXPIRED_GRACE_MS, 0);
    break;
  default:
    break;
  }
  jw__conn_schedule(&sc->c);
}

static const jw_rpc_method_t *find_method(jw_rpc_server_t *srv,
                                          const char *path) {
  for (size_t i = 0; i < srv->opts.nmethods; i++)
    if (strcmp(srv->methods[i].path, path) == 0)
      return &srv->methods[i];
  return NULL;
}

/* The request headers are complete: refuse early or start the deadline. */
static void headers_done(sconn_t *sc, jw_rpc_call_t *call) {
  char msg[256];
  if (!call->post) {
    http_refuse(call, 405, "only POST is supported");
    return;
  }
  if (!call->grpc_ctype) {
    http_refuse(call, 415,
                call->have_ctype ? "invalid gRPC request content-type"
                                 : "missing gRPC request content-type");
    return;
  }
  if (call->path == NULL || call->path[0] != '/') {
    submit_error(call, 200, JW_GRPC_UNIMPLEMENTED, "malformed method path");
    return;
  }
  call->method = find_method(sc->srv, call->path);
  if (call->method == NULL) {
    snprintf(msg, sizeof(msg), "unknown method %.200s", call->path);
    submit_error(call, 200, JW_GRPC_UNIMPLEMENTED, msg);
    return;
  }
  if (sc->cn == NULL) {
    submit_error(call, 200, JW_GRPC_UNAUTHENTICATED,
                 "the client certificate has no usable common name");
    return;
  }
  if (call->bad_timeout) {
    submit_error(call, 200, JW_GRPC_INTERNAL, "malformed grpc-timeout");
    return;
  }
  if (call->have_timeout) {
    call->deadline = malloc(sizeof(*call->deadline));
    if (call->deadline == NULL) {
      submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    uv_timer_init(sc->c.loop, call->deadline);
    call->deadline->data = call;
    uv_timer_start(call->deadline, deadline_cb, call->timeout_ms, 0);
  }
}

static void on_message(jw_rpc_call_t *call, const uint8_t *msg, size_t len) {
  if (++call->nmsgs > 1) {
    submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
                 "more than one request message for a unary method");
    return;
  }
  call->req = malloc(len > 0 ? len : 1);
  if (call->req == NULL) {
    submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  if (len > 0)
    memcpy(call->req, msg, len);
  call->req_len = len;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  sconn_t *sc = user_data;
  jw_rpc_call_t *call = stream_call(sc, stream_id);
  if (call != NULL && call->state == CALL_HTTP) {
    /* A refused request's body: nobody keeps it, credit it now. */
    rx_credit(sc, stream_id, len);
    if (discard_body(call, len))
      http_answer(call);
    return 0;
  }
  if (call == NULL || call->state != CALL_RECV) {
    /* Bytes nobody keeps (a refused or ended call): credit them now. */
    rx_credit(sc, stream_id, len);
    return 0;
  }
  sc->rx_progress = true;
  call->rx_held += len;
  call->rx_unacked += len;
  sc->rx_bytes += len;
  while (call->state == CALL_RECV) {
    const uint8_t *msg;
    size_t mlen;
    int r = jw_grpc_deframer_next(&call->defr, &data, &len, &msg, &mlen);
    if (r == 0)
      break;
    if (r == 1) {
      on_message(call, msg, mlen);
      continue;
    }
    char text[160];
    if (r == JW_ELIMIT) {
      snprintf(text, sizeof(text),
               "request message of %zu bytes exceeds the limit of %zu bytes",
               call->defr.need, call->defr.max_message);
      submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, text);
    } else if (r == JW_EINVAL && call->encoded) {
      call->refuse_encoding = true;
      submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
                   "compressed messages are not supported");
    } else if (r == JW_EINVAL) {
      snprintf(text, sizeof(text),
               "compressed flag %u set without a grpc-encoding",
               (unsigned)call->defr.flag);
      submit_error(call, 200, JW_GRPC_INTERNAL, text);
    } else {
      submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    jw_grpc_deframer_reset(&call->defr);
  }
  if (call->state != CALL_RECV)
    rx_release(call);
  else if (sc->rx_bytes < sc->srv->opts.max_buffered_request_bytes) {
    rx_credit(sc, stream_id, call->rx_unacked);
    call->rx_unacked = 0;
  }
  return 0;
}

static void dispatch(sconn_t *sc, jw_rpc_call_t *call) {
  if (call->ready)
    sc->nready--;
  call->ready = false;
  stop_recv_timer(call);
  if (jw_grpc_deframer_partial(&call->defr)) {
    submit_error(call, 200, JW_GRPC_INTERNAL,
                 "the request ended inside a message");
    return;
  }
  if (call->nmsgs != 1) {
    submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
                 "no request message for a unary method");
    return;
  }
  call->state = CALL_HANDLER;
  call->owed = true;
  call->in_cb++;
  call->method->handler(call, call->req, call->req_len, sc->srv->opts.data);
  call->in_cb--;
  free(call->req);
  call->req = NULL;
  if (call->sc != NULL)
    rx_release(call);
  call_after_cb(call);
}

/*
 * Response bytes the connection has waiting: unary replies the peer has
 * not taken yet and TLS records not yet written. Streams pull straight
 * into frames, so they hold nothing here.
 */
static size_t pending_output(sconn_t *sc) {
  size_t bytes = sc->c.gather.len + sc->c.inflight.len;
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (call->state != CALL_STREAMING)
      bytes += call->out_len - call->out_off;
  }
  return bytes;
}

/*
 * The request is whole. Past the connection's output cap it waits (its
 * bytes still count against the request budget, and at most
 * max_concurrent_streams calls can wait): a client that does not read its
 * replies cannot make the server build more of them.
 */
static void request_whole(sconn_t *sc, jw_rpc_call_t *call) {
  stop_recv_timer(call);
  if (pending_output(sc) > sc->srv->opts.max_pending_output_bytes) {
    call->ready = true;
    sc->nready++;
    return;
  }
  dispatch(sc, call);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  sconn_t *sc = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  jw_rpc_call_t *call = stream_call(sc, frame->hd.stream_id);
  if (call == NULL || (call->state != CALL_RECV && call->state != CALL_HTTP))
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    headers_done(sc, call);
  if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  if (call->state == CALL_RECV)
    request_whole(sc, call);
  else if (call->state == CALL_HTTP)
    http_answer(call);
  return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  /*
   * The response ended before the request did: reset the stream with
   * NO_ERROR so the client stops sending, as PROTOCOL-HTTP2.md asks.
   */
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
      nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) ==
          0)
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_NO_ERROR);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  sconn_t *sc = user_data;
  jw_rpc_call_t *call =
      nghttp2_session_get_stream_user_data(session, stream_id);
  if (call == NULL)
    return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  call->stream_id = 0;
  (void)sc;
  call_stream_gone(call, JW_GRPC_CANCELLED, "the client canceled the call");
  return 0;
}

static nghttp2_session_callbacks *server_callbacks(void) {
  static nghttp2_session_callbacks *cbs;
  if (cbs == NULL) {
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                            on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
  }
  return cbs;
}

/* ---- Connections ------------------------------------------------------ */

static void maybe_done(jw_rpc_server_t *srv);

static void sconn_cancel_all(sconn_t *sc, int status, const char *msg) {
  jw__list_t *n;
  while ((n = jw__list_first(&sc->calls)) != NULL) {
    jw_rpc_call_t *call = CALL_OF(n);
    /*
     * call_stream_gone unlinks the head (detach) before it can be freed;
     * the analyzer cannot follow the list and reports a use after free.
     */
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    if (call->stream_id > 0 && sc->c.h2 != NULL)
      nghttp2_session_set_stream_user_data(sc->c.h2, call->stream_id, NULL);
    call->stream_id = 0;
    call_stream_gone(call, status, msg);
  }
}

static void close_timer_cb(uv_timer_t *t) {
  sconn_t *sc = ((jw__conn_t *)t->data)->owner;
  jw__conn_close(&sc->c, false);
}

static void sconn_close(sconn_t *sc, bool graceful) {
  if (sc->c.closing) {
    jw__conn_close(&sc->c, graceful);
    return;
  }
  sconn_cancel_all(sc, JW_GRPC_CANCELLED,
                   sc->srv->shutting_down ? "the server is shutting down"
                                          : "the connection was closed");
  if (sc->opened)
    emit(sc->srv, JW_RPC_EV_CONN_CLOSE, sc->peer, sc->cn, NULL, NULL, 0,
         sc->c.dead ? sc->c.errmsg : NULL, uv_hrtime() - sc->open_ns);
  jw__conn_close(&sc->c, graceful);
  /* A graceful close waits for its last write, but not for ever. */
  if (graceful && sc->c.close_wait)
    uv_timer_start(&sc->c.timer, close_timer_cb, 2000, 0);
}

/*
 * Whether a call holds the connection open on the server's account. A
 * call waits on the client when its request is still arriving (the
 * request timeout bounds that), when it is whole but waits for the
 * connection's output to drain, or when what it has to send is held back
 * by the client's flow-control window or by a write the client's socket
 * has not taken: a connection whose calls all wait on the client is idle.
 * A write that completes, like a request byte, restarts the idle timer
 * (sc_after_io), so only a write stuck for the idle timeout ends a
 * connection that is sending.
 */
static bool call_busy(sconn_t *sc, jw_rpc_call_t *call) {
  nghttp2_session *h2 = sc->c.h2;
  switch (call->state) {
  case CALL_RECV:
  case CALL_HTTP: /* a refused request whose body is still arriving */
    return false;
  case CALL_HANDLER:
    return true;
  case CALL_STREAMING:
  case CALL_ENDED:
    if (call->state == CALL_STREAMING && call->deferred)
      return true; /* waiting for the job, not for the client */
    if (call->stream_id <= 0 || h2 == NULL || sc->c.writing)
      return false;
    return nghttp2_session_get_stream_remote_window_size(h2, call->stream_id) >
               0 &&
           nghttp2_session_get_remote_window_size(h2) > 0;
  }
  return true;
}

static bool sconn_idle(sconn_t *sc) {
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    if (call_busy(sc, CALL_OF(n)))
      return false;
  }
  return true;
}

static void idle_timer_cb(uv_timer_t *t) {
  sconn_t *sc = ((jw__conn_t *)t->data)->owner;
  if (sc->c.closing)
    return;
  if (sc->c.tls_up && !sconn_idle(sc))
    return;
  if (!sc->c.tls_up) {
    jw__conn_fail(&sc->c, UV_ETIMEDOUT, "TLS handshake timed out");
    return;
  }
  nghttp2_submit_goaway(sc->c.h2, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(sc->c.h2),
                        NGHTTP2_NO_ERROR, (const uint8_t *)"idle", 4);
  sc->draining = true;
  jw__conn_flush(&sc->c);
  sconn_close(sc, true);
}

static int sc_handshake_done(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw_rpc_server_t *srv = sc->srv;
  int rc;

  sc->cn = c->ssl != NULL ? jw__tls_peer_cn(c->ssl) : sc->cn;
  rc = jw__conn_h2_new(
      c, server_callbacks(), sc, JW__H2_SERVER_CONN_WINDOW,
      (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                               srv->opts.max_concurrent_streams});
  if (rc != 0)
    return rc;
  uv_timer_stop(&c->timer);
  /*
   * One client may not hold every connection slot: past its cap the
   * connection is told why (GOAWAY with a debug text) and closed once
   * that is out (sc_after_io). Counted among the connections open now,
   * so a linear walk: at most max_connections, once per handshake.
   */
  if (sc->cn != NULL) {
    uint32_t n = 0;
    jw__list_t *on;
    jw__list_foreach(on, &srv->conns) {
      sconn_t *o = SCONN_OF(on);
      if (o != sc && o->opened && !o->c.closing && o->cn != NULL &&
          strcmp(o->cn, sc->cn) == 0)
        n++;
    }
    if (n >= srv->opts.max_connections_per_client) {
      char msg[128];
      snprintf(msg, sizeof(msg),
               "too many connections from this client (limit %u)",
               (unsigned)srv->opts.max_connections_per_client);
      nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0,
                            NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)msg,
                            strlen(msg));
      sc->refused = true;
      sc->draining = true;
      emit(srv, JW_RPC_EV_CONN_REFUSED, sc->peer, sc->cn, NULL, NULL, 0, msg,
           0);
      return 0;
    }
  }
  sc->opened = true;
  sc->open_ns = uv_hrtime();
  emit(srv, JW_RPC_EV_CONN_OPEN, sc->peer, sc->cn, NULL, NULL, 0, NULL, 0);
  if (srv->shutting_down) {
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL,
                          0);
    sc->draining = true;
  }
  return 0;
}

static void sc_failed(jw__conn_t *c, int err) {
  sconn_t *sc = c->owner;
  if (!sc->opened)
    emit(sc->srv, JW_RPC_EV_CONN_REFUSED, sc->peer, NULL, NULL, NULL, 0,
         c->errmsg, 0);
  sconn_close(sc, true);
}

static void sc_deferred(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (call->state == CALL_STREAMING && call->deferred && call->want_resume) {
      call->deferred = false;
      call->want_resume = false;
      nghttp2_session_resume_data(c->h2, call->stream_id);
    }
  }
}

/* Starts calls whose requests waited for the output to drain, oldest
 * first, while the output stays under the cap. */
static void dispatch_ready(sconn_t *sc) {
  size_t budget = sc->nready;
  while (budget-- > 0 && !sc->c.dead && !sc->c.closing &&
         pending_output(sc) <= sc->srv->opts.max_pending_output_bytes) {
    jw_rpc_call_t *oldest = NULL;
    jw__list_t *n;
    jw__list_foreach(n, &sc->calls) {
      jw_rpc_call_t *call = CALL_OF(n);
      if (call->state == CALL_RECV && call->ready)
        oldest = call; /* the list is newest first */
    }
    if (oldest == NULL)
      return;
    dispatch(sc, oldest);
  }
}

static void sc_after_io(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  if (c->h2 == NULL || c->dead || c->closing)
    return;
  if (sc->refused) {
    sconn_close(sc, true);
    return;
  }
  if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
    sconn_close(sc, true);
    return;
  }
  dispatch_ready(sc);
  if (c->dead || c->closing)
    return;
  rx_grant(sc);
  /*
   * h2o's soft cap: while the output is over the cap and the socket is
   * not taking it (a write in flight), reading more would only make more
   * output, so the connection is not read until the write completes.
   * Output held back by the client's flow-control window does not stop
   * reading: the WINDOW_UPDATE that frees it has to be read.
   */
  jw__conn_read_pause(c,
                      c->writing && pending_output(sc) >
                                        sc->srv->opts.max_pending_output_bytes);
  if (sc->fake)
    return;
  /* The idle timer runs while no call keeps the connection busy, and
   * starts over whenever request bytes arrive or a write completes. */
  if (!sconn_idle(sc)) {
    uv_timer_stop(&c->timer);
  } else if (!uv_is_active((uv_handle_t *)&c->timer) || sc->rx_progress ||
             sc->seen_writes != c->nwrites) {
    uv_timer_start(&c->timer, idle_timer_cb, sc->srv->opts.idle_timeout_ms, 0);
  }
  sc->rx_progress = false;
  sc->seen_writes = c->nwrites;
}

static void sc_closed(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw_rpc_server_t *srv = sc->srv;
  jw__list_remove(&sc->node);
  srv->nconns--;
  free(sc->cn);
  free(sc);
  maybe_done(srv);
}

static const jw__conn_ops_t sconn_ops = {sc_handshake_done, sc_failed,
                                         sc_deferred, sc_after_io, sc_closed};

static void refused_close_cb(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  jw_rpc_server_t *srv = server->data;
  if (status < 0 || srv->shutting_down)
    return;
  if (srv->nconns >= srv->opts.max_connections) {
    /* At the cap: accept and close at once, so the backlog drains. */
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
      return;
    uv_tcp_init(srv->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
      char peer[64] = "?";
      struct sockaddr_storage ss;
      int len = sizeof(ss);
      if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0 &&
          ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, peer, sizeof(peer));
      emit(srv, JW_RPC_EV_CONN_REFUSED, peer, NULL, NULL, NULL, 0,
           "connection limit reached", 0);
    }
    uv_close((uv_handle_t *)t, refused_close_cb);
    return;
  }
  sconn_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL)
    return;
  sc->srv = srv;
  if (jw__conn_init(&sc->c, srv->loop, &sconn_ops, sc, true) != 0) {
    free(sc);
    return;
  }
  sc->c.turns = &srv->turns;
  jw__list_init(&sc->calls);
  jw__list_insert_head(&srv->conns, &sc->node);
  srv->nconns++;
  if (uv_accept(server, (uv_stream_t *)&sc->c.tcp) != 0) {
    sconn_close(sc, false);
    return;
  }
  uv_tcp_nodelay(&sc->c.tcp, 1);
  jw__conn_peer(&sc->c, sc->peer, sizeof(sc->peer));
  uv_timer_start(&sc->c.timer, idle_timer_cb, srv->opts.handshake_timeout_ms,
                 0);
  int rc = jw__conn_start_tls(&sc->c, srv->ssl, NULL);
  if (rc != 0)
    jw__conn_fail(&sc->c, rc, "cannot start TLS: %s", jw_strerror(rc));
}

/* ---- Server ---------------------------------------------------------- */

int jw_rpc_listen_addr_parse(const char *addr, struct sockaddr_storage *ss) {
  char host[256];
  int port;
  if (jw__addr_split(addr, host, sizeof(host), &port) != 0)
    return JW_EINVAL;
  if (strcmp(host, "localhost") == 0)
    strcpy(host, "127.0.0.1");
  if (host[0] == '\0' || strcmp(host, "*") == 0)
    strcpy(host, "0.0.0.0");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return JW_EINVAL;
}

static void free_methods(jw_rpc_server_t *srv) {
  if (srv->methods == NULL)
    return;
  for (size_t i = 0; i < srv->opts.nmethods; i++)
    free((char *)srv->methods[i].path);
  free(srv->methods);
}

static void listener_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->listener_open = false;
  maybe_done(srv);
}

static void start_failed_close_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  SSL_CTX_free(srv->ssl);
  free_methods(srv);
  free(srv);
}

int jw_rpc_server_start(uv_loop_t *loop, const jw_rpc_server_options_t *opts,
                        jw_rpc_server_t **out) {
  struct sockaddr_storage ss;
  int rc;
  *out = NULL;
  if (opts == NULL || opts->tls == NULL || !opts->tls->server ||
      (opts->nmethods > 0 && opts->methods == NULL))
    return JW_EINVAL;
  if ((rc = jw_rpc_listen_addr_parse(opts->addr, &ss)) != 0)
    return rc;
  jw_rpc_server_t *srv = calloc(1, sizeof(*srv));
  if (srv == NULL)
    return -ENOMEM;
  srv->loop = loop;
  jw__list_init(&srv->conns);
  jw__list_init(&srv->zombies);
  srv->opts = *opts;
  if (srv->opts.max_connections == 0)
    srv->opts.max_connections = 1024;
  if (srv->opts.max_concurrent_streams == 0)
    srv->opts.max_concurrent_streams = 100;
  if (srv->opts.handshake_timeout_ms == 0)
    srv->opts.handshake_timeout_ms = 10000;
  if (srv->opts.idle_timeout_ms == 0)
    srv->opts.idle_timeout_ms = 300000;
  if (srv->opts.max_message_bytes == 0)
    srv->opts.max_message_bytes = 4u << 20;
  if (srv->opts.max_buffered_request_bytes == 0)
    srv->opts.max_buffered_request_bytes = 8u << 20;
  if (srv->opts.max_buffered_request_bytes < srv->opts.max_message_bytes)
    srv->opts.max_buffered_request_bytes = srv->opts.max_message_bytes;
  if (srv->opts.max_pending_output_bytes == 0)
    srv->opts.max_pending_output_bytes = 1u << 20;
  if (srv->opts.request_timeout_ms == 0)
    srv->opts.request_timeout_ms = 30000;
  if (srv->opts.max_connections_per_client == 0)
    srv->opts.max_connections_per_client = 32;
  srv->opts.addr = NULL;
  srv->opts.tls = NULL;
  srv->methods = calloc(opts->nmethods + 1, sizeof(*srv->methods));
  if (srv->methods == NULL) {
    free(srv);
    return -ENOMEM;
  }
  for (size_t i = 0; i < opts->nmethods; i++) {
    srv->methods[i].path = strdup(opts->methods[i].path);
    srv->methods[i].handler = opts->methods[i].handler;
  }
  srv->opts.methods = srv->methods;
  srv->ssl = jw__tls_ctx_ssl(opts->tls);
  SSL_CTX_up_ref(srv->ssl);

  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  srv->listener_open = true;
  rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&srv->listener, start_failed_close_cb);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = bound.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_timer_init(loop, &srv->shutdown_timer);
  srv->shutdown_timer.data = srv;
  srv->timer_open = true;
  jw__turns_init(&srv->turns, loop);
  srv->turns_open = true;
  *out = srv;
  return 0;
}

int jw_rpc_server_port(const jw_rpc_server_t *srv) { return srv->port; }

/* The last of the server's own handles closed: it is done. */
static void server_handles_closed(jw_rpc_server_t *srv) {
  if (srv->timer_open || srv->turns_open)
    return;
  srv->done = true;
  if (srv->done_cb != NULL)
    srv->done_cb(srv, srv->done_data);
}

static void shutdown_timer_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->timer_open = false;
  server_handles_closed(srv);
}

static void turns_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->turns_open = false;
  server_handles_closed(srv);
}

static void maybe_done(jw_rpc_server_t *srv) {
  if (!srv->shutting_down || srv->listener_open || srv->nconns > 0 ||
      !srv->timer_open || uv_is_closing((uv_handle_t *)&srv->shutdown_timer))
    return;
  /* Closing stops the prepare handle: data can point at the server now. */
  srv->turns.prepare.data = srv;
  uv_close((uv_handle_t *)&srv->turns.prepare, turns_closed_cb);
  uv_close((uv_handle_t *)&srv->shutdown_timer, shutdown_timer_closed_cb);
}

static void shutdown_timeout_cb(uv_timer_t *t) {
  jw_rpc_server_t *srv = t->data;
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &srv->conns) {
    sconn_close(SCONN_OF(n), false);
  }
}

void jw_rpc_server_shutdown(jw_rpc_server_t *srv, uint64_t timeout_ms,
                            void (*done_cb)(jw_rpc_server_t *srv, void *data),
                            void *data) {
  if (srv->shutting_down)
    return;
  srv->shutting_down = true;
  srv->done_cb = done_cb;
  srv->done_data = data;
  uv_close((uv_handle_t *)&srv->listener, listener_closed_cb);
  uv_timer_start(&srv->shutdown_timer, shutdown_timeout_cb, timeout_ms, 0);
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &srv->conns) {
    sconn_t *sc = SCONN_OF(n);
    if (sc->c.closing)
      continue;
    if (!sc->c.tls_up || sc->c.h2 == NULL || sc->c.dead) {
      sconn_close(sc, false);
      continue;
    }
    nghttp2_submit_goaway(sc->c.h2, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(sc->c.h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    sc->draining = true;
    jw__conn_schedule(&sc->c);
  }
}

void jw_rpc_server_free(jw_rpc_server_t *srv) {
  if (srv == NULL)
    return;
  /* Calls whose handler never ended them and never asked to hear of it. */
  jw__list_t *n;
  while ((n = jw__list_first(&srv->zombies)) != NULL)
    call_free(CALL_OF(n)); /* NOLINT(clang-analyzer-unix.Malloc): unlinks */
  SSL_CTX_free(srv->ssl);
  free_methods(srv);
  free(srv);
}

/* ---- Plaintext test hook --------------------------------------------- */

/* Nobody reads the output unless a test does; keep it bounded. */
static int test_write(jw__conn_t *c) {
  if (c->gather.len > JW__CONN_WBUF_CAP * 4)
    c->gather.len = 0;
  return 0;
}

static const jw__transport_ops_t test_transport = {test_write, jw__tcp_close};

int jw__server_test_conn(jw_rpc_server_t *srv, const char *cn,
                         jw__conn_t **out) {
  sconn_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL)
    return -ENOMEM;
  sc->srv = srv;
  sc->fake = true;
  if (jw__conn_init(&sc->c, srv->loop, &sconn_ops, sc, true) != 0) {
    free(sc);
    return -ENOMEM;
  }
  jw__list_init(&sc->calls);
  jw__list_insert_head(&srv->conns, &sc->node);
  srv->nconns++;
  snprintf(sc->peer, sizeof(sc->peer), "test");
  sc->cn = cn != NULL ? strdup(cn) : NULL;
  sc->c.tls_up = true;
  sc->c.transport = &test_transport;
  int rc = sc_handshake_done(&sc->c);
  if (rc != 0) {
    sconn_close(sc, false);
    return rc;
  }
  *out = &sc->c;
  return 0;
}

void jw__server_test_close(jw__conn_t *c) { sconn_close(c->owner, false); }
