/*
 * The server's nghttp2 callbacks: a call per request stream, its headers
 * and body fed to the call state machine (call.c), the response body
 * pulled from the call, and a plain HTTP answer for requests that are not
 * gRPC.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gzip_int.h"
#include "rpc_int.h"
#include "server_int.h"

/*
 * A request that is not gRPC is answered once it ended, or once this much
 * of its body was read and thrown away, whichever comes first.
 */
#define HTTP_DISCARD_MAX (64 * 1024)

ssize_t jw__call_data_read_cb(nghttp2_session *session, int32_t stream_id,
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
      jw__call_after_cb(call);
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
      jw__call_held_update(call);
      jw__call_stop_deadline(call);
      if (r == 0) {
        jw__call_set_status(call, JW_GRPC_OK, NULL);
      } else if (!call->pull_status || r > 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the stream failed: %s",
                 r > 0 ? "message too large" : jw_strerror((int)r));
        jw__call_set_status(call, JW_GRPC_INTERNAL, msg);
      }
    }
  }
  if (call->out_off < call->out_len) {
    size_t n = call->out_len - call->out_off;
    if (n > length)
      n = length;
    memcpy(buf, call->out + call->out_off, n);
    call->out_off += n;
    jw__call_held_update(call);
    return (ssize_t)n;
  }
  /* Everything is out: end with trailers rather than END_STREAM on DATA. */
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  if (jw__call_submit_trailers(call, call->status, call->message) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

/* ---- Requests that are not gRPC --------------------------------------- */

static const char http_text[] =
    "this is a gRPC server (jobworker.v1.JobWorker): send gRPC requests, "
    "POST with content-type application/grpc\n";

/* The short text of a refusal. */
static const char *refusal_text(int http_status) {
  switch (http_status) {
  case 408:
    return "the request did not end within the request timeout\n";
  case 413:
    return "this GET request takes no body\n";
  case 500:
    return "the answer could not be built (over its size cap or out of "
           "memory)\n";
  case 503:
    return "too much output is waiting on this connection; read it, then "
           "retry\n";
  default:
    return http_text;
  }
}

/* The body of a CALL_HTTP answer: call->out (a GET handler's) or a text. */
static ssize_t http_body_read_cb(nghttp2_session *session, int32_t stream_id,
                                 uint8_t *buf, size_t length, uint32_t *flags,
                                 nghttp2_data_source *source, void *user_data) {
  jw_rpc_call_t *call = source->ptr;
  if (call == NULL || call->sc == NULL)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const char *body = call->out != NULL ? (const char *)call->out
                                       : refusal_text(call->http_status);
  size_t total = call->out != NULL ? call->out_len : strlen(body);
  size_t n = total - call->out_off;
  if (n > length)
    n = length;
  memcpy(buf, body + call->out_off, n);
  call->out_off += n;
  jw__call_held_update(call);
  if (call->out_off == total)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/*
 * Marks a request that is not gRPC (another method, another content
 * type): a plain HTTP answer with a short text follows once the request
 * ended, as an HTTP client expects, and never a gRPC Trailers-Only
 * response it would not understand. why is what the log says.
 */
void jw__call_http_refuse(jw_rpc_call_t *call, int http_status,
                          const char *why) {
  call->state = CALL_HTTP;
  jw__call_held_update(call);
  call->http_status = http_status;
  call->route = NULL;
  jw__call_set_status(call, JW_GRPC_INTERNAL, why);
}

const jw_rpc_http_get_t *jw__server_find_get(jw_rpc_server_t *srv,
                                             const char *path) {
  for (size_t i = 0; i < srv->opts.nhttp_gets; i++)
    if (strcmp(srv->gets[i].path, path) == 0)
      return &srv->gets[i];
  return NULL;
}

void jw_rpc_http_reply_status(jw_rpc_http_reply_t *reply, int status) {
  if (status >= 100 && status <= 599)
    reply->status = status;
}

int jw_rpc_http_reply_content_type(jw_rpc_http_reply_t *reply,
                                   const char *ctype) {
  size_t n = strlen(ctype);
  if (n == 0 || n >= sizeof(reply->ctype))
    return JW_EINVAL;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)ctype[i] < 0x20 || ctype[i] == 0x7f)
      return JW_EINVAL;
  memcpy(reply->ctype, ctype, n + 1);
  return 0;
}

int jw_rpc_http_reply_append(jw_rpc_http_reply_t *reply, const void *p,
                             size_t len) {
  if (reply->err != 0)
    return reply->err;
  if (len == 0)
    return 0;
  int rc = jw__buf_reserve(&reply->body, len, 4096, JW_RPC_HTTP_BODY_MAX);
  if (rc != 0) {
    reply->err = rc;
    return rc;
  }
  memcpy(reply->body.base + reply->body.len, p, len);
  reply->body.len += len;
  return 0;
}

int jw_rpc_http_reply_printf(jw_rpc_http_reply_t *reply, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) {
    reply->err = reply->err != 0 ? reply->err : JW_EINVAL;
    return reply->err;
  }
  if ((size_t)n < sizeof(small))
    return jw_rpc_http_reply_append(reply, small, (size_t)n);
  if (reply->err != 0)
    return reply->err;
  /* Longer than the stack buffer: format straight into the body. */
  int rc = jw__buf_reserve(&reply->body, (size_t)n + 1, 4096,
                           JW_RPC_HTTP_BODY_MAX + 1);
  if (rc == 0 && reply->body.len + (size_t)n > JW_RPC_HTTP_BODY_MAX)
    rc = JW_ELIMIT;
  if (rc != 0) {
    reply->err = rc;
    return rc;
  }
  va_start(ap, fmt);
  vsnprintf((char *)reply->body.base + reply->body.len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  reply->body.len += (size_t)n;
  return 0;
}

/*
 * The gRPC status a GET answer is logged with, by its HTTP status: the
 * mapping a gRPC client applies to that status (jw_grpc_status_from_http).
 */
static int http_grpc_status(int http_status) {
  if (http_status >= 200 && http_status < 300)
    return JW_GRPC_OK;
  return jw_grpc_status_from_http(http_status);
}

/*
 * Runs a whole GET request's handler. Past the connection's output cap
 * it is refused with 503 instead, so that one connection holds at most
 * the cap plus one body however many GETs it sends.
 */
static void route_answer(jw_rpc_call_t *call) {
  sconn_t *sc = call->sc;
  if (jw__sconn_pending_output(sc) > sc->srv->opts.max_pending_output_bytes) {
    jw__call_http_refuse(call, 503, "the connection's output is over its cap");
    return;
  }
  jw_rpc_http_reply_t r = {.status = 200};
  static const char def[] = "text/plain; charset=utf-8";
  memcpy(r.ctype, def, sizeof(def));
  call->route->handler(sc->cn, &r, sc->srv->opts.data);
  char *ctype = strdup(r.ctype);
  if (r.err != 0 || ctype == NULL) {
    free(ctype);
    jw__buf_free(&r.body);
    jw__call_http_refuse(call, 500,
                         r.err == JW_ELIMIT ? "the answer is over its size cap"
                                            : "out of memory");
    return;
  }
  free(call->out);
  free(call->http_ctype);
  call->out = r.body.base;
  call->out_len = r.body.len;
  call->out_off = 0;
  jw__call_held_update(call);
  call->http_ctype = ctype;
  call->http_status = r.status;
  char msg[32];
  snprintf(msg, sizeof(msg), "HTTP %d", r.status);
  jw__call_set_status(call, http_grpc_status(r.status),
                      r.status >= 200 && r.status < 300 ? NULL : msg);
}

/*
 * Sends the answer of a CALL_HTTP request; HEAD gets the headers alone
 * (with the length the body would have).
 */
void jw__call_http_answer(jw_rpc_call_t *call) {
  static const char ctype_text[] = "text/plain; charset=utf-8";
  char hs[8];
  char cl[24];
  if (call->route != NULL)
    route_answer(call);
  const char *ctype = call->route != NULL ? call->http_ctype : ctype_text;
  size_t len = call->route != NULL ? call->out_len
                                   : strlen(refusal_text(call->http_status));
  if (call->head && call->out != NULL) {
    /* Only its length goes out: it holds no output budget meanwhile. */
    free(call->out);
    call->out = NULL;
    call->out_len = 0;
  }
  snprintf(hs, sizeof(hs), "%d", call->http_status);
  snprintf(cl, sizeof(cl), "%zu", len);
  nghttp2_nv nva[4] = {JW__NV(":status", hs, strlen(hs)),
                       JW__NV("content-type", ctype, strlen(ctype)),
                       JW__NV("content-length", cl, strlen(cl)),
                       JW__NV("allow", "POST", 4)};
  nghttp2_data_provider prd;
  prd.source.ptr = call;
  prd.read_callback = http_body_read_cb;
  call->state = CALL_ENDED;
  call->headers_sent = true;
  call->out_off = 0;
  jw__call_held_update(call);
  jw__conn_schedule(&call->sc->c);
  if (nghttp2_submit_response(call->sc->c.h2, call->stream_id, nva,
                              call->http_status == 405 ? 4 : 3,
                              call->head || len == 0 ? NULL : &prd) != 0)
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

/* ---- nghttp2 callbacks ----------------------------------------------- */

static jw_rpc_call_t *stream_call(sconn_t *sc, int32_t stream_id) {
  if (sc->c.dead || sc->c.closing)
    return NULL;
  return nghttp2_session_get_stream_user_data(sc->c.h2, stream_id);
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
  uv_timer_start(call->recv_timer, jw__call_recv_timeout_cb,
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
    call->get = valuelen == 3 && memcmp(value, "GET", 3) == 0;
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
    /* Messages of an encoding we take are marked as such (the compressed
     * flag); the others are refused with the first such message. */
    bool identity = valuelen == 8 && memcmp(value, "identity", 8) == 0;
    bool gzip = valuelen == 4 && memcmp(value, "gzip", 4) == 0;
    call->defr.compressed_ok = gzip;
    call->encoded = !identity && !gzip;
    snprintf(call->encoding, sizeof(call->encoding), "%.*s",
             (int)(valuelen < sizeof(call->encoding)
                       ? valuelen
                       : sizeof(call->encoding) - 1),
             (const char *)value);
  } else if (name_is(name, namelen, "grpc-timeout")) {
    call->have_timeout = true;
    call->bad_timeout = jw_grpc_timeout_parse((const char *)value, valuelen,
                                              &call->timeout_ms) != 0;
  }
  return 0;
}

/*
 * A gzip message (grpc-encoding: gzip, compressed flag 1): inflated here
 * at once, under the same limit as an uncompressed message, and handled
 * as one. zlib's state (about 7 KiB plus the 32 KiB window) lives only
 * inside this function, so at most one exists at a time; the inflated
 * bytes count against the connection's request budget (rx_bytes) from
 * here until the handler is done with them, as the framed bytes do.
 */
static void on_gzip_message(sconn_t *sc, jw_rpc_call_t *call,
                            const uint8_t *msg, size_t len) {
  jw__gunzip_t g;
  char text[160];
  jw__gunzip_init(&g, call->defr.max_message);
  int r = jw__gunzip_feed(&g, msg, len);
  if (r == 0)
    r = jw__gunzip_finish(&g);
  if (r == 0) {
    call->rx_held += g.out.cap;
    sc->rx_bytes += g.out.cap;
    jw__call_take_message(call, g.out.base, g.out.len);
    return;
  }
  if (r == JW_ELIMIT) {
    snprintf(text, sizeof(text),
             "request message inflates past the limit of %zu bytes", g.max);
    jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, text);
  } else if (r == JW_EINVAL) {
    /* PROTOCOL-HTTP2.md: a message that fails to decompress is INTERNAL. */
    snprintf(text, sizeof(text), "gzip request message: %s", g.why);
    jw__call_submit_error(call, 200, JW_GRPC_INTERNAL, text);
  } else {
    jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED,
                          "out of memory");
  }
  jw__gunzip_free(&g);
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  sconn_t *sc = user_data;
  jw_rpc_call_t *call = stream_call(sc, stream_id);
  if (call != NULL && call->state == CALL_HTTP) {
    /* A refused request's body: nobody keeps it, credit it now. */
    jw__rx_credit(sc, stream_id, len);
    if (discard_body(call, len)) {
      if (call->route != NULL)
        jw__call_http_refuse(call, 413, "a GET request with a body");
      jw__call_http_answer(call);
    }
    return 0;
  }
  if (call == NULL || call->state != CALL_RECV) {
    /* Bytes nobody keeps (a refused or ended call): credit them now. */
    jw__rx_credit(sc, stream_id, len);
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
    if (r == 1 && call->defr.flag == 1) {
      on_gzip_message(sc, call, msg, mlen);
      continue;
    }
    if (r == 1) {
      jw__call_on_message(call, msg, mlen);
      continue;
    }
    char text[160];
    if (r == JW_ELIMIT) {
      snprintf(text, sizeof(text),
               "request message of %zu bytes exceeds the limit of %zu bytes",
               call->defr.need, call->defr.max_message);
      jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED, text);
    } else if (r == JW_EINVAL && call->defr.flag > 1) {
      snprintf(text, sizeof(text), "invalid compressed flag %u",
               (unsigned)call->defr.flag);
      jw__call_submit_error(call, 200, JW_GRPC_INTERNAL, text);
    } else if (r == JW_EINVAL && call->encoded) {
      /* The response headers list what we take (grpc-accept-encoding). */
      snprintf(text, sizeof(text),
               "grpc-encoding %s is not supported (identity and gzip are)",
               call->encoding);
      jw__call_submit_error(call, 200, JW_GRPC_UNIMPLEMENTED, text);
    } else if (r == JW_EINVAL) {
      snprintf(text, sizeof(text),
               "compressed flag %u set without a grpc-encoding",
               (unsigned)call->defr.flag);
      jw__call_submit_error(call, 200, JW_GRPC_INTERNAL, text);
    } else {
      jw__call_submit_error(call, 200, JW_GRPC_RESOURCE_EXHAUSTED,
                            "out of memory");
    }
    jw_grpc_deframer_reset(&call->defr);
  }
  if (call->state != CALL_RECV)
    jw__rx_release(call);
  else if (sc->rx_bytes < sc->srv->opts.max_buffered_request_bytes) {
    jw__rx_credit(sc, stream_id, call->rx_unacked);
    call->rx_unacked = 0;
  }
  return 0;
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
    jw__call_headers_done(sc, call);
  if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  if (call->state == CALL_RECV)
    jw__call_request_whole(sc, call);
  else if (call->state == CALL_HTTP)
    jw__call_http_answer(call);
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
  jw__call_stream_gone(call, JW_GRPC_CANCELLED, "the client canceled the call");
  return 0;
}

nghttp2_session_callbacks *jw__server_h2_callbacks(void) {
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
    nghttp2_session_callbacks_set_data_source_read_length_callback(
        cbs, jw__conn_data_length);
  }
  return cbs;
}
