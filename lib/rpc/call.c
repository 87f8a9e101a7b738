/*
 * The server's call state machine: the end of a call and its cancel
 * callback, gRPC responses,
 * deadlines, the public call API and dispatch to the method handlers.
 *
 * Ownership of a call: the library owns it while the request arrives and
 * after the handler ended it (reply, fail, end of stream); the handler
 * owns it in between ("owed": the handler still owes us an end). When the
 * call ends underneath the handler (stream reset, disconnect, deadline,
 * shutdown) the cancel callback runs once and the handler owes nothing.
 * Memory goes when nghttp2 has closed the stream and nobody is owed; a
 * callback of ours still on the stack (in_cb) delays both.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc_int.h"
#include "server_int.h"

/*
 * How long an expired server stream may take to get its DEADLINE_EXCEEDED
 * trailers out (behind flow control) before it is reset instead.
 */
#define EXPIRED_GRACE_MS 2000

static void timer_free_cb(uv_handle_t *h) { free(h); }

void jw__call_stop_deadline(jw_rpc_call_t *call) {
  if (call->deadline != NULL) {
    call->deadline->data = NULL;
    uv_close((uv_handle_t *)call->deadline, timer_free_cb);
    call->deadline = NULL;
  }
}

void jw__call_stop_recv_timer(jw_rpc_call_t *call) {
  if (call->recv_timer != NULL) {
    call->recv_timer->data = NULL;
    uv_close((uv_handle_t *)call->recv_timer, timer_free_cb);
    call->recv_timer = NULL;
  }
}

void jw__call_held_update(jw_rpc_call_t *call) {
  size_t now = jw__call_held(call);
  if (call->sc != NULL)
    call->sc->out_held = call->sc->out_held - call->held + now;
  call->held = now;
}

void jw__call_set_status(jw_rpc_call_t *call, int status, const char *message) {
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
  jw__server_emit(call->srv, JW_RPC_EV_RPC, peer, cn, call->path,
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
  jw__rx_release(call);
  sc->out_held -= call->held;
  call->held = 0;
  if (call->ready)
    sc->nready--;
  call->ready = false;
  jw__list_remove(&call->node);
  sc->ncalls--;
  call->sc = NULL;
  jw__call_stop_deadline(call);
  jw__call_stop_recv_timer(call);
}

void jw__call_free(jw_rpc_call_t *call) {
  if (call->sc != NULL)
    detach(call);
  if (call->zombie)
    jw__list_remove(&call->node);
  jw__call_stop_deadline(call);
  jw__call_stop_recv_timer(call);
  jw_grpc_deframer_reset(&call->defr);
  free(call->path);
  free(call->req);
  free(call->out);
  free(call->http_ctype);
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
  jw__call_free(call);
}

/* Tells the handler its call ended underneath it, once. */
static void notify_cancel(jw_rpc_call_t *call, int status,
                          const char *message) {
  if (!call->owed)
    return;
  if (!call->aborted || call->status == JW_GRPC_OK)
    jw__call_set_status(call, status, message);
  call->aborted = true;
  call->pull = NULL;
  call->state = CALL_ENDED;
  jw__call_held_update(call);
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
void jw__call_after_cb(jw_rpc_call_t *call) {
  if (call->in_cb > 0)
    return;
  if (call->cancel_pending) {
    call->cancel_pending = false;
    notify_cancel(call, call->status, call->message);
  }
  call_maybe_free(call);
}

/* The stream is gone (closed, reset, or its connection is closing). */
void jw__call_stream_gone(jw_rpc_call_t *call, int status,
                          const char *message) {
  if (call->state != CALL_ENDED)
    jw__call_set_status(call, status, message);
  report(call);
  detach(call);
  notify_cancel(call, status, message);
  call_maybe_free(call);
}

/* ---- Sending ---------------------------------------------------------- */

static const char ctype_grpc[] = "application/grpc";
/*
 * The message encodings the server takes, said in every response's
 * headers (grpc-accept-encoding). Responses themselves are never
 * compressed: gRPC lets a server answer identity whatever the client
 * takes, and a reply is small next to what compressing it would cost.
 */
static const char accept_encoding[] = "identity,gzip";

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

int jw__call_submit_trailers(jw_rpc_call_t *call, int status,
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
int jw__call_submit_error(jw_rpc_call_t *call, int http_status, int status,
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
  nva[nnv++] = (nghttp2_nv)JW__NV("grpc-accept-encoding", accept_encoding,
                                  sizeof(accept_encoding) - 1);
  if (mlen > 0)
    nva[nnv++] = (nghttp2_nv)JW__NV("grpc-message", enc, elen);
  call->headers_sent = true;
  jw__call_set_status(call, status, message);
  call->state = CALL_ENDED;
  jw__call_held_update(call);
  jw__call_stop_deadline(call);
  jw__conn_schedule(&call->sc->c);
  return nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva, nnv,
                                 NULL);
}

static int submit_headers_with_body(jw_rpc_call_t *call) {
  nghttp2_nv nva[3] = {
      JW__NV(":status", "200", 3),
      JW__NV("content-type", ctype_grpc, sizeof(ctype_grpc) - 1),
      JW__NV("grpc-accept-encoding", accept_encoding,
             sizeof(accept_encoding) - 1)};
  nghttp2_data_provider prd;
  prd.source.ptr = call;
  prd.read_callback = jw__call_data_read_cb;
  call->headers_sent = true;
  jw__conn_schedule(&call->sc->c);
  return nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva, 3, &prd);
}

/* ---- Public call API ------------------------------------------------- */

const char *jw_rpc_call_cn(const jw_rpc_call_t *call) {
  return call->sc != NULL && call->sc->cn != NULL ? call->sc->cn : "";
}

const char *jw_rpc_call_method(const jw_rpc_call_t *call) { return call->path; }

void jw_rpc_call_set_tag(jw_rpc_call_t *call, const char *tag) {
  /* Cut to the field, as snprintf would, without formatting per call. */
  size_t n = tag != NULL ? strnlen(tag, sizeof(call->tag) - 1) : 0;
  if (n > 0)
    memcpy(call->tag, tag, n);
  call->tag[n] = '\0';
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
  jw__call_held_update(call);
  jw__call_set_status(call, JW_GRPC_OK, NULL);
  jw__call_stop_deadline(call);
  if (submit_headers_with_body(call) != 0) {
    nghttp2_submit_rst_stream(call->sc->c.h2, NGHTTP2_FLAG_NONE,
                              call->stream_id, NGHTTP2_INTERNAL_ERROR);
    return JW_EHTTP2;
  }
  return 0;
}

void jw_rpc_call_pull_status(jw_rpc_call_t *call, int grpc_status,
                             const char *message) {
  jw__call_set_status(call, grpc_status, message);
  call->pull_status = true;
}

int jw_rpc_call_fail(jw_rpc_call_t *call, int grpc_status,
                     const char *message) {
  if (call->sc == NULL || call->state != CALL_HANDLER)
    return end_late(call);
  call->owed = false;
  if (grpc_status == JW_GRPC_OK || grpc_status < 0 ||
      grpc_status > JW_GRPC_UNAUTHENTICATED)
    grpc_status = JW_GRPC_UNKNOWN;
  if (jw__call_submit_error(call, 200, grpc_status, message) != 0) {
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

/*
 * The request did not arrive in full within the request timeout: the call
 * ends with DEADLINE_EXCEEDED (the stream is then reset, as for any
 * response that ends before its request) and what it held is freed now.
 */
void jw__call_recv_timeout_cb(uv_timer_t *t) {
  jw_rpc_call_t *call = t->data;
  if (call == NULL || call->sc == NULL)
    return;
  sconn_t *sc = call->sc;
  jw__call_stop_recv_timer(call);
  if (call->state == CALL_HTTP) {
    /* A refused request that never ends: answer it now (the stream is
     * then reset, its request still open). A GET handler answers only
     * whole requests. */
    if (call->route != NULL)
      jw__call_http_refuse(call, 408, "the GET request did not end in time");
    jw__call_http_answer(call);
    jw__conn_schedule(&sc->c);
    return;
  }
  if (call->state != CALL_RECV || call->ready)
    return;
  char msg[128];
  snprintf(msg, sizeof(msg),
           "the request did not arrive within the request timeout (%llu ms)",
           (unsigned long long)sc->srv->opts.request_timeout_ms);
  jw__call_submit_error(call, 200, JW_GRPC_DEADLINE_EXCEEDED, msg);
  jw__rx_release(call);
  jw__rx_grant(sc);
  jw__conn_schedule(&sc->c);
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
  jw__call_stop_deadline(call);
  call->aborted = true;
  nghttp2_submit_rst_stream(sc->c.h2, NGHTTP2_FLAG_NONE, call->stream_id,
                            NGHTTP2_CANCEL);
  jw__conn_schedule(&sc->c);
}

void jw__call_end_now(jw_rpc_call_t *call, int status, const char *message) {
  sconn_t *sc = call->sc;
  if (sc == NULL)
    return;
  if (call->state != CALL_STREAMING)
    jw__call_stop_deadline(call);
  switch (call->state) {
  case CALL_RECV:
    jw__call_submit_error(call, 200, status, message);
    break;
  case CALL_HANDLER:
    /* The status goes out, then the handler hears the call is over; the
     * call itself stays until nghttp2 closes the stream. */
    jw__call_submit_error(call, 200, status, message);
    call->aborted = true;
    notify_cancel(call, status, message);
    break;
  case CALL_STREAMING:
    /*
     * Headers went out already: the stream ends with trailers saying
     * status. A reset would race the client's own timer, and a client
     * whose timer lost would report CANCELLED. The handler hears of it
     * now and its pull is not called again; jw__call_data_read_cb sends
     * what is left of a message already begun, then the trailers.
     */
    jw__call_set_status(call, status, message);
    notify_cancel(call, status, message);
    call->pull = NULL;
    call->state = CALL_ENDED;
    jw__call_held_update(call);
    call->aborted = false; /* the trailers still go out */
    if (call->deferred) {
      call->deferred = false;
      call->want_resume = false;
      nghttp2_session_resume_data(sc->c.h2, call->stream_id);
    }
    /* The rest of a message and the trailers may wait for flow control;
     * the deadline's timer bounds that wait (the server's close timeout
     * does without one). */
    if (call->deadline != NULL)
      uv_timer_start(call->deadline, expired_cb, EXPIRED_GRACE_MS, 0);
    break;
  default:
    break;
  }
  jw__conn_schedule(&sc->c);
}

static void deadline_cb(uv_timer_t *t) {
  jw_rpc_call_t *call = t->data;
  if (call == NULL || call->sc == NULL)
    return;
  jw__call_end_now(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/*
 * The methods share their service's prefix, so a strcmp of each went
 * through it every time: the length picks the few candidates first.
 */
static const jw_rpc_method_t *find_method(jw_rpc_server_t *srv,
                                          const char *path) {
  size_t len = strlen(path);
  for (size_t i = 0; i < srv->opts.nmethods; i++)
    if (srv->method_lens[i] == len &&
        memcmp(srv->methods[i].path, path, len) == 0)
      return &srv->methods[i];
  return NULL;
}

/* The request headers are complete: refuse early or start the deadline. */
void jw__call_headers_done(sconn_t *sc, jw_rpc_call_t *call) {
  char msg[256];
  if (!call->post) {
    const jw_rpc_http_get_t *g = (call->get || call->head) && call->path != NULL
                                     ? jw__server_find_get(sc->srv, call->path)
                                     : NULL;
    if (g != NULL) {
      /* Answered by its handler once the request has ended. */
      call->state = CALL_HTTP;
      call->route = g;
      return;
    }
    jw__call_http_refuse(call, 405, "only POST is supported");
    return;
  }
  if (!call->grpc_ctype) {
    jw__call_http_refuse(call, 415,
                         call->have_ctype
                             ? "invalid gRPC request content-type"
                             : "missing gRPC request content-type");
    return;
  }
  if (call->path == NULL || call->path[0] != '/') {
    jw__call_submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
                          "malformed method path");
    return;
  }
  call->method = find_method(sc->srv, call->path);
  if (call->method == NULL) {
    snprintf(msg, sizeof(msg), "unknown method %.200s", call->path);
    jw__call_submit_error(call, 200, JW_GRPC_UNIMPLEMENTED, msg);
    return;
  }
  if (sc->cn == NULL) {
    jw__call_submit_error(call, 200, JW_GRPC_UNAUTHENTICATED,
                          "the client certificate has no usable common name");
    return;
  }
  if (call->bad_timeout) {
    jw__call_submit_error(call, 200, JW_GRPC_INTERNAL,
                          "malformed grpc-timeout");
    return;
  }
  if (call->have_timeout) {
    call->deadline = malloc(sizeof(*call->deadline));
    if (call->deadline == NULL) {
      jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED,
                            "out of memory");
      return;
    }
    uv_timer_init(sc->c.loop, call->deadline);
    call->deadline->data = call;
    uv_timer_start(call->deadline, deadline_cb, call->timeout_ms, 0);
  }
}

/* Whether the call's method starts on its first message (server.h). */
static bool first_only(const jw_rpc_call_t *call) {
  return call->method != NULL &&
         (call->method->flags & JW_RPC_METHOD_FIRST_MESSAGE);
}

/*
 * Counts a request message; refuses a second one, or, for a method that
 * starts on its first message, drops it. Returns true for the first.
 */
static bool first_message(jw_rpc_call_t *call) {
  if (++call->nmsgs > 1) {
    if (first_only(call)) {
      /* Waiting for the output to drain, the call still takes bytes:
       * later requests on its stream are not read. */
      call->nmsgs = 1;
      return false;
    }
    jw__call_submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
                          "more than one request message for a unary method");
    return false;
  }
  return true;
}

/* The first message is in: a method that starts on it starts now. */
static void first_message_kept(jw_rpc_call_t *call) {
  if (first_only(call))
    jw__call_request_whole(call->sc, call);
}

void jw__call_take_message(jw_rpc_call_t *call, uint8_t *msg, size_t len) {
  if (!first_message(call)) {
    free(msg);
    return;
  }
  call->req = msg;
  call->req_len = len;
  first_message_kept(call);
}

void jw__call_on_message(jw_rpc_call_t *call, const uint8_t *msg, size_t len) {
  if (!first_message(call))
    return;
  call->req = malloc(len > 0 ? len : 1);
  if (call->req == NULL) {
    jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED,
                          "out of memory");
    return;
  }
  if (len > 0)
    memcpy(call->req, msg, len);
  call->req_len = len;
  first_message_kept(call);
}

static void dispatch(sconn_t *sc, jw_rpc_call_t *call) {
  if (call->ready)
    sc->nready--;
  call->ready = false;
  jw__call_stop_recv_timer(call);
  if (jw_grpc_deframer_partial(&call->defr)) {
    jw__call_submit_error(call, 200, JW_GRPC_INTERNAL,
                          "the request ended inside a message");
    return;
  }
  if (call->nmsgs != 1) {
    jw__call_submit_error(call, 200, JW_GRPC_UNIMPLEMENTED,
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
    jw__rx_release(call);
  jw__call_after_cb(call);
}

/*
 * Response bytes the connection has waiting: unary replies the peer has
 * not taken yet and TLS records not yet written. Streams pull straight
 * into frames, so they hold nothing here.
 */
size_t jw__sconn_pending_output(sconn_t *sc) {
#ifdef JW__CHECK_COUNTERS
  size_t walked = 0;
  jw__list_t *n;
  /* dispatch frees ended calls after unlinking them; the analyzer cannot
   * follow the list and reports a use after free. */
  jw__list_foreach(n, &sc->calls) {
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    walked += jw__call_held(CALL_OF(n));
  }
  assert(walked == sc->out_held);
#endif
  return sc->c.gather.len + sc->c.inflight.len + sc->out_held;
}

/*
 * The request is whole. Past the connection's output cap it waits (its
 * bytes still count against the request budget, and at most
 * max_concurrent_streams calls can wait): a client that does not read its
 * replies cannot make the server build more of them.
 */
void jw__call_request_whole(sconn_t *sc, jw_rpc_call_t *call) {
  if (call->ready)
    return; /* waiting already (its first message came, then its end) */
  jw__call_stop_recv_timer(call);
  if (jw__sconn_pending_output(sc) > sc->srv->opts.max_pending_output_bytes) {
    call->ready = true;
    sc->nready++;
    return;
  }
  dispatch(sc, call);
}

/* Starts calls whose requests waited for the output to drain, oldest
 * first, while the output stays under the cap. */
void jw__sconn_dispatch_ready(sconn_t *sc) {
  size_t budget = sc->nready;
  while (budget-- > 0 && !sc->c.dead && !sc->c.closing &&
         jw__sconn_pending_output(sc) <=
             sc->srv->opts.max_pending_output_bytes) {
    jw_rpc_call_t *oldest = NULL;
    jw__list_t *n;
    jw__list_foreach(n, &sc->calls) {
      jw_rpc_call_t *call = CALL_OF(n);
      /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): as in pending_output */
      if (call->state == CALL_RECV && call->ready)
        oldest = call; /* the list is newest first */
    }
    if (oldest == NULL)
      return;
    dispatch(sc, oldest);
  }
}
