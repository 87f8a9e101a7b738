/*
 * The client role: resolve, connect (trying each address), TLS, HTTP/2
 * SETTINGS, then calls. Connected means the server's SETTINGS arrived: in
 * TLS 1.3 the server judges the client certificate after the client's
 * handshake is done, so only the server's first frame proves it accepted.
 *
 * Responses are consumed by hand (no automatic WINDOW_UPDATE) so that a
 * paused call holds the server by flow control; bytes that arrive while
 * paused wait in the call, bounded by the stream window.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"
#include "list.h"
#include "rpc_int.h"
#include "tls_int.h"

#define JW__USER_AGENT "grpc-c-jobworker/0.1.0"

enum client_state {
  CLI_NEW,
  CLI_RESOLVING,
  CLI_CONNECTING,
  CLI_HANDSHAKE, /* TLS, then waiting for the server's SETTINGS */
  CLI_READY,
  CLI_FAILED,
};

struct jw_rpc_ccall_s {
  jw_rpc_client_t *cli;
  jw__list_t node; /* in cli->calls, or in cli->lingering once ended */
  int32_t stream_id;
  jw_rpc_msg_cb on_msg;
  jw_rpc_done_cb on_done;
  void *data;
  uint8_t *req;
  size_t req_len;
  size_t req_off;
  jw_grpc_deframer_t defr;
  jw__buf_t held; /* received while paused, not yet consumed */
  bool paused;
  bool canceled;
  bool finished;
  bool ended;      /* trailers (or reset) arrived; status below is final */
  bool end_stream; /* the server's END_STREAM arrived */
  bool in_trailers;
  int http_status;
  int grpc_status; /* -1: none received */
  char *grpc_message;
  size_t header_bytes;
  int end_status;
  char *end_message;
  uv_timer_t *deadline;
  int in_cb;
  bool rst_sent;
  bool lingering; /* ended, but nghttp2 still holds the request body */
};

struct jw_rpc_client_s {
  jw__conn_t c;
  uv_loop_t *loop;
  SSL_CTX *ssl;
  char *addr;
  char host[256];
  char port[8];
  char *server_name;
  uint64_t connect_timeout_ms;
  enum client_state state;
  uv_getaddrinfo_t gai;
  bool gai_pending;
  struct addrinfo *ai;
  struct addrinfo *ai_next;
  uv_connect_t creq;
  bool tcp_recycling; /* tcp is closing, to reopen for the next address */
  int last_err;
  jw_rpc_connect_cb connect_cb;
  void *connect_data;
  char err[256];
  jw__list_t calls; /* newest first */
  jw__list_t lingering;
  bool closing;
  void (*close_cb)(jw_rpc_client_t *cli, void *data);
  void *close_data;
};

/* ---- Calls ------------------------------------------------------------ */

#define CCALL_OF(n) jw__list_data(n, jw_rpc_ccall_t, node)

static void timer_free_cb(uv_handle_t *h) { free(h); }

static void ccall_free(jw_rpc_ccall_t *call) {
  if (call->deadline != NULL) {
    call->deadline->data = NULL;
    uv_close((uv_handle_t *)call->deadline, timer_free_cb);
  }
  jw_grpc_deframer_reset(&call->defr);
  jw__buf_free(&call->held);
  free(call->req);
  free(call->grpc_message);
  free(call->end_message);
  free(call);
}

static void ccall_release(jw_rpc_ccall_t *call);

/*
 * Ends a call exactly once: detach it from its stream and the client, run
 * on_done, and free it unless a callback further up still holds it.
 */
static void ccall_finish(jw_rpc_ccall_t *call, int status,
                         const char *message) {
  if (call->finished)
    return;
  call->finished = true;
  if (call->deadline != NULL) {
    call->deadline->data = NULL;
    uv_close((uv_handle_t *)call->deadline, timer_free_cb);
    call->deadline = NULL;
  }
  jw__list_remove(&call->node);
  call->in_cb++;
  call->on_done(call, status, message != NULL ? message : "", call->data);
  call->in_cb--;
  if (call->in_cb == 0)
    ccall_release(call);
}

static void reset_stream(jw_rpc_ccall_t *call, uint32_t code) {
  jw_rpc_client_t *cli = call->cli;
  if (call->rst_sent || call->stream_id <= 0 || cli->c.h2 == NULL ||
      cli->c.dead || cli->c.closing)
    return;
  call->rst_sent = true;
  nghttp2_submit_rst_stream(cli->c.h2, NGHTTP2_FLAG_NONE, call->stream_id,
                            code);
  jw__conn_schedule(&cli->c);
}

/*
 * Frees an ended call, unless its stream is still open in nghttp2: the
 * request body's data source points at the call, so it lingers until the
 * stream closes (a reset is on its way to make that prompt).
 */
static void ccall_release(jw_rpc_ccall_t *call) {
  jw_rpc_client_t *cli = call->cli;
  if (call->stream_id > 0 && cli->c.h2 != NULL && !cli->c.closing &&
      !cli->c.dead) {
    if (nghttp2_session_find_stream(cli->c.h2, call->stream_id) != NULL) {
      /* Trailers came before our END_STREAM: NO_ERROR, as the spec asks. */
      if (!call->end_stream)
        reset_stream(call, NGHTTP2_CANCEL);
      else if (!nghttp2_session_get_stream_local_close(cli->c.h2,
                                                       call->stream_id))
        reset_stream(call, NGHTTP2_NO_ERROR);
      call->lingering = true;
      jw__list_insert_head(&cli->lingering, &call->node);
      return;
    }
    /* A request still queued: the reset cancels it unread. */
    reset_stream(call, NGHTTP2_CANCEL);
  }
  ccall_free(call);
}

/* Frees a lingering call whose stream nghttp2 has now let go of. */
static void linger_done(jw_rpc_client_t *cli, int32_t stream_id) {
  jw__list_t *n;
  jw__list_foreach(n, &cli->lingering) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    if (call->stream_id != stream_id)
      continue;
    jw__list_remove(&call->node);
    ccall_free(call);
    return;
  }
}

static void ccall_unref(jw_rpc_ccall_t *call) {
  if (--call->in_cb == 0 && call->finished)
    ccall_release(call);
}

/* Gives bytes back to the flow-control windows. */
static void consume(jw_rpc_client_t *cli, jw_rpc_ccall_t *call, size_t n) {
  if (n == 0 || cli->c.h2 == NULL || cli->c.dead)
    return;
  if (call != NULL && call->stream_id > 0 &&
      nghttp2_session_find_stream(cli->c.h2, call->stream_id) != NULL)
    nghttp2_session_consume(cli->c.h2, call->stream_id, n);
  else
    nghttp2_session_consume_connection(cli->c.h2, n);
}

/*
 * Hands response bytes to the deframer and the messages to on_msg until
 * the call pauses or ends. Returns how many bytes were used.
 */
static size_t deliver(jw_rpc_ccall_t *call, const uint8_t *p, size_t n) {
  const uint8_t *start = p;
  call->in_cb++;
  while (n > 0 && !call->paused && !call->finished) {
    const uint8_t *msg;
    size_t len;
    int r = jw_grpc_deframer_next(&call->defr, &p, &n, &msg, &len);
    if (r == 0)
      break;
    if (r == 1) {
      if (call->on_msg != NULL)
        call->on_msg(call, msg, len, call->data);
      continue;
    }
    char text[128];
    int status = JW_GRPC_INTERNAL;
    if (r == JW_ELIMIT) {
      status = JW_GRPC_RESOURCE_EXHAUSTED;
      snprintf(text, sizeof(text),
               "response message of %zu bytes exceeds the limit of %u bytes",
               call->defr.need, JW__CLIENT_MAX_MESSAGE);
    } else {
      snprintf(text, sizeof(text),
               "compressed response message (flag %u) "
               "without a grpc-encoding",
               (unsigned)call->defr.flag);
    }
    reset_stream(call, NGHTTP2_CANCEL);
    p += n;
    n = 0;
    ccall_finish(call, status, text);
  }
  size_t used = (size_t)(p - start);
  if (call->finished)
    used += n;
  ccall_unref(call);
  return used;
}

/* The stream ended and every held byte was delivered: report the end. */
static void maybe_end(jw_rpc_ccall_t *call) {
  if (call->finished || !call->ended || call->held.len > 0 || call->paused)
    return;
  if (call->end_status == JW_GRPC_OK && jw_grpc_deframer_partial(&call->defr))
    ccall_finish(call, JW_GRPC_INTERNAL, "the response ended inside a message");
  else
    ccall_finish(call, call->end_status, call->end_message);
}

static void deadline_cb(uv_timer_t *t) {
  jw_rpc_ccall_t *call = t->data;
  if (call == NULL)
    return;
  reset_stream(call, NGHTTP2_CANCEL);
  ccall_finish(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

static ssize_t req_read_cb(nghttp2_session *session, int32_t stream_id,
                           uint8_t *buf, size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *user_data) {
  jw_rpc_ccall_t *call = source->ptr;
  size_t n = call->req_len - call->req_off;
  if (n > length)
    n = length;
  memcpy(buf, call->req + call->req_off, n);
  call->req_off += n;
  if (call->req_off == call->req_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    /* The request is out; its copy is no longer needed. */
  }
  return (ssize_t)n;
}

int jw_rpc_client_call(jw_rpc_client_t *cli, const char *path,
                       const uint8_t *req, size_t len, uint64_t timeout_ms,
                       jw_rpc_msg_cb on_msg, jw_rpc_done_cb on_done, void *data,
                       jw_rpc_ccall_t **out) {
  if (out != NULL)
    *out = NULL;
  if (cli->state != CLI_READY || cli->closing || cli->c.dead)
    return JW_ECLOSED;
  if (path == NULL || path[0] != '/' || on_done == NULL || len > UINT32_MAX)
    return JW_EINVAL;
  jw_rpc_ccall_t *call = calloc(1, sizeof(*call));
  if (call == NULL)
    return -ENOMEM;
  call->req = malloc(JW_GRPC_PREFIX_LEN + len);
  if (call->req == NULL) {
    free(call);
    return -ENOMEM;
  }
  jw_grpc_prefix_write(call->req, (uint32_t)len);
  if (len > 0)
    memcpy(call->req + JW_GRPC_PREFIX_LEN, req, len);
  call->req_len = JW_GRPC_PREFIX_LEN + len;
  call->cli = cli;
  call->on_msg = on_msg;
  call->on_done = on_done;
  call->data = data;
  call->grpc_status = -1;
  jw_grpc_deframer_init(&call->defr, JW__CLIENT_MAX_MESSAGE);

  char tmo[16];
  int tlen = 0;
  if (timeout_ms > 0)
    tlen = jw_grpc_timeout_format(timeout_ms, tmo, sizeof(tmo));
  nghttp2_nv nva[8] = {
      JW__NV(":method", "POST", 4),
      JW__NV(":scheme", "https", 5),
      JW__NV(":authority", cli->addr, strlen(cli->addr)),
      JW__NV(":path", path, strlen(path)),
      JW__NV("te", "trailers", 8),
      JW__NV("content-type", "application/grpc", 16),
      JW__NV("user-agent", JW__USER_AGENT, sizeof(JW__USER_AGENT) - 1),
      JW__NV("grpc-timeout", tmo, tlen > 0 ? (size_t)tlen : 0),
  };
  nghttp2_data_provider prd;
  prd.source.ptr = call;
  prd.read_callback = req_read_cb;
  /*
   * No stream user data: nghttp2 may still hold a queued request after the
   * call ended, so calls are found by stream id in the client's list.
   */
  int32_t id = nghttp2_submit_request(cli->c.h2, NULL, nva, tlen > 0 ? 8 : 7,
                                      &prd, NULL);
  if (id < 0) {
    ccall_free(call);
    return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? JW_ECLOSED : JW_EHTTP2;
  }
  call->stream_id = id;
  jw__list_insert_head(&cli->calls, &call->node);
  if (timeout_ms > 0) {
    call->deadline = malloc(sizeof(*call->deadline));
    if (call->deadline != NULL) {
      uv_timer_init(cli->loop, call->deadline);
      call->deadline->data = call;
      uv_timer_start(call->deadline, deadline_cb, timeout_ms, 0);
    }
  }
  jw__conn_schedule(&cli->c);
  if (out != NULL)
    *out = call;
  return 0;
}

void jw_rpc_ccall_pause(jw_rpc_ccall_t *call, bool paused) {
  if (call->finished || call->paused == paused)
    return;
  call->paused = paused;
  /* Held bytes are delivered from the loop, not from inside on_msg. */
  if (!paused)
    jw__conn_schedule(&call->cli->c);
}

void jw_rpc_ccall_cancel(jw_rpc_ccall_t *call) {
  if (call->finished || call->canceled)
    return;
  call->canceled = true;
  jw_rpc_client_t *cli = call->cli;
  if (!call->ended)
    reset_stream(call, NGHTTP2_CANCEL);
  call->ended = true;
  call->end_status = JW_GRPC_CANCELLED;
  free(call->end_message);
  call->end_message = strdup("canceled by the client");
  call->held.len = 0;
  call->paused = false;
  /* on_done follows from the loop, never from inside this call. */
  jw__conn_schedule(&cli->c);
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static jw_rpc_ccall_t *find_call(jw_rpc_client_t *cli, int32_t id) {
  jw__list_t *n;
  jw__list_foreach(n, &cli->calls) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    if (call->stream_id == id && !call->finished)
      return call;
  }
  return NULL;
}

static jw_rpc_ccall_t *stream_call(jw_rpc_client_t *cli, int32_t id) {
  if (cli->c.dead || cli->c.closing || id <= 0)
    return NULL;
  return find_call(cli, id);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data) {
  jw_rpc_client_t *cli = user_data;
  jw_rpc_ccall_t *call = stream_call(cli, frame->hd.stream_id);
  if (call == NULL || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  call->header_bytes += namelen + valuelen + 32;
  if (call->header_bytes > 2 * JW__H2_MAX_HEADER_LIST)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 3; i++)
      v = v * 10 + (value[i] - '0');
    call->http_status = v;
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    int v = 0;
    for (size_t i = 0; i < valuelen && i < 4; i++) {
      if (value[i] < '0' || value[i] > '9') {
        v = JW_GRPC_UNKNOWN;
        break;
      }
      v = v * 10 + (value[i] - '0');
    }
    call->grpc_status = valuelen == 0 ? JW_GRPC_UNKNOWN : v;
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    free(call->grpc_message);
    call->grpc_message = malloc(valuelen + 1);
    if (call->grpc_message != NULL)
      jw_grpc_message_decode((const char *)value, valuelen,
                             (uint8_t *)call->grpc_message, valuelen + 1);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data) {
  jw_rpc_client_t *cli = user_data;
  jw_rpc_ccall_t *call = stream_call(cli, stream_id);
  if (call == NULL || call->finished || call->canceled) {
    consume(cli, NULL, len);
    return 0;
  }
  size_t used = 0;
  if (!call->paused && call->held.len == 0) {
    call->in_cb++;
    used = deliver(call, data, len);
    consume(cli, call, used);
    bool gone = call->finished;
    ccall_unref(call);
    if (gone) {
      consume(cli, NULL, len - used);
      return 0;
    }
  }
  if (used < len) {
    /* The window bounds this: the server cannot send past what we
     * consumed, and paused bytes are not consumed. */
    size_t more = len - used;
    if (call->held.len + more > JW__H2_STREAM_WINDOW + JW__CONN_RBUF) {
      reset_stream(call, NGHTTP2_FLOW_CONTROL_ERROR);
      consume(cli, NULL, more);
      ccall_finish(call, JW_GRPC_INTERNAL, "the server overran the window");
      return 0;
    }
    /*
     * Doubling, not growing to fit: a paused stream fills the window a
     * DATA chunk (16 KiB or less) at a time, and growing to fit each
     * one allocates and frees O(window^2 / chunk) bytes, some 64 MiB
     * per 1 MiB window, which an allocator that delays reuse (ASan's
     * quarantine) keeps resident. The check above bounds the result.
     */
    if (jw__buf_reserve(&call->held, more, 16384,
                        JW__H2_STREAM_WINDOW + JW__CONN_RBUF) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(call->held.base + call->held.len, data + used, more);
    call->held.len += more;
  }
  return 0;
}

/* The final status of a response whose last HEADERS arrived. */
static void record_end(jw_rpc_ccall_t *call) {
  if (call->ended)
    return;
  call->ended = true;
  if (call->grpc_status >= 0) {
    call->end_status = call->grpc_status;
    call->end_message =
        call->grpc_message != NULL ? strdup(call->grpc_message) : NULL;
  } else {
    char text[96];
    call->end_status = call->http_status == 200
                           ? JW_GRPC_UNKNOWN
                           : jw_grpc_status_from_http(call->http_status);
    snprintf(text, sizeof(text),
             call->http_status == 200 ? "the response has no grpc-status"
                                      : "HTTP status %d without grpc-status",
             call->http_status);
    call->end_message = strdup(text);
  }
}

static void client_connected(jw_rpc_client_t *cli);

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  jw_rpc_client_t *cli = user_data;
  if (frame->hd.type == NGHTTP2_SETTINGS &&
      !(frame->hd.flags & NGHTTP2_FLAG_ACK) && cli->state == CLI_HANDSHAKE) {
    client_connected(cli);
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  jw_rpc_ccall_t *call = stream_call(cli, frame->hd.stream_id);
  if (call == NULL || call->finished)
    return 0;
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    call->end_stream = true;
    record_end(call);
    maybe_end(call);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  jw_rpc_client_t *cli = user_data;
  jw_rpc_ccall_t *call = stream_call(cli, stream_id);
  if (call == NULL) {
    linger_done(cli, stream_id);
    return 0;
  }
  call->stream_id = 0;
  if (!call->ended) {
    char text[96];
    call->ended = true;
    if (error_code == NGHTTP2_REFUSED_STREAM) {
      call->end_status = JW_GRPC_UNAVAILABLE;
      snprintf(text, sizeof(text), "the server refused the stream");
    } else {
      call->end_status = jw_grpc_status_from_h2_error(error_code);
      snprintf(text, sizeof(text), "the server reset the stream (%s)",
               nghttp2_http2_strerror(error_code));
    }
    call->end_message = strdup(text);
  }
  (void)cli;
  maybe_end(call);
  return 0;
}

/* A request that could not be sent (GOAWAY, shutdown) ends here. */
static int on_frame_not_send(nghttp2_session *session,
                             const nghttp2_frame *frame, int lib_error_code,
                             void *user_data) {
  jw_rpc_client_t *cli = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  jw_rpc_ccall_t *call = stream_call(cli, frame->hd.stream_id);
  if (call == NULL)
    linger_done(cli, frame->hd.stream_id);
  if (call != NULL) {
    call->stream_id = 0;
    ccall_finish(call, call->canceled ? JW_GRPC_CANCELLED : JW_GRPC_UNAVAILABLE,
                 call->canceled ? "canceled by the client"
                                : "the request could not be sent");
  }
  return 0;
}

static nghttp2_session_callbacks *client_callbacks(void) {
  static nghttp2_session_callbacks *cbs;
  if (cbs == NULL) {
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs,
                                                             on_frame_not_send);
  }
  return cbs;
}

/* ---- Connection ------------------------------------------------------- */

static void finish_connect(jw_rpc_client_t *cli, int err) {
  jw_rpc_connect_cb cb = cli->connect_cb;
  cli->connect_cb = NULL;
  uv_timer_stop(&cli->c.timer);
  if (cb != NULL)
    cb(cli, err, cli->connect_data);
}

static void fail_all(jw_rpc_client_t *cli, const char *why) {
  jw__list_t *n;
  while ((n = jw__list_first(&cli->calls)) != NULL) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    call->stream_id = 0;
    ccall_finish(call, call->canceled ? JW_GRPC_CANCELLED : JW_GRPC_UNAVAILABLE,
                 call->canceled ? "canceled by the client" : why);
  }
}

/* Ends the connection for good: calls fail, a pending connect fails. */
static void client_fail(jw_rpc_client_t *cli, int err, const char *msg) {
  if (cli->state == CLI_FAILED)
    return;
  cli->state = CLI_FAILED;
  if (cli->err[0] == '\0')
    snprintf(cli->err, sizeof(cli->err), "%s", msg);
  uv_timer_stop(&cli->c.timer);
  fail_all(cli, cli->err);
  finish_connect(cli, err);
}

static void client_connected(jw_rpc_client_t *cli) {
  cli->state = CLI_READY;
  finish_connect(cli, 0);
}

static int cl_handshake_done(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
  if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
    jw__conn_fail(c, JW_ETLS, "the server did not agree to HTTP/2 (ALPN h2)");
    return JW_ETLS;
  }
  return jw__conn_h2_new(
      c, client_callbacks(), cli, JW__H2_CONN_WINDOW,
      (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
}

static void cl_failed(jw__conn_t *c, int err) {
  jw_rpc_client_t *cli = c->owner;
  snprintf(cli->err, sizeof(cli->err), "%s", c->errmsg);
  client_fail(cli, err, c->errmsg);
}

static void cl_deferred(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  jw__list_t *n = cli->calls.next;
  while (n != &cli->calls) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    call->in_cb++;
    if (!call->paused && call->held.len > 0) {
      size_t used = deliver(call, call->held.base, call->held.len);
      if (!call->finished) {
        consume(cli, call, used);
        memmove(call->held.base, call->held.base + used, call->held.len - used);
        call->held.len -= used;
      } else {
        consume(cli, NULL, call->held.len);
      }
    }
    maybe_end(call);
    n = call->node.next;
    if (call->finished)
      n = cli->calls.next; /* the list changed; ended calls are gone */
    ccall_unref(call);
    if (cli->c.closing || cli->c.dead)
      break;
  }
}

static void cl_closed(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  jw__list_t *n;
  fail_all(cli, "the connection was closed");
  while ((n = jw__list_first(&cli->lingering)) != NULL) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    jw__list_remove(&call->node);
    ccall_free(call);
  }
  finish_connect(cli, UV_ECANCELED);
  if (cli->close_cb != NULL)
    cli->close_cb(cli, cli->close_data);
  if (cli->ai != NULL)
    uv_freeaddrinfo(cli->ai);
  SSL_CTX_free(cli->ssl);
  free(cli->addr);
  free(cli->server_name);
  free(cli);
}

/*
 * The client's transport is TCP, except while its socket is reopened for
 * the next address: nothing can be written then, and a close leaves the
 * closing handle to tcp_reopened, which counts it.
 */
static int cl_write(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  return cli->tcp_recycling ? 0 : jw__tcp_write(c);
}

static void cl_close(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  if (!cli->tcp_recycling)
    jw__tcp_close(c);
}

static const jw__transport_ops_t client_transport = {cl_write, cl_close};

static const jw__conn_ops_t client_ops = {cl_handshake_done, cl_failed,
                                          cl_deferred, NULL, cl_closed};

int jw_rpc_client_new(uv_loop_t *loop, const jw_rpc_client_options_t *opts,
                      jw_rpc_client_t **out) {
  int port;
  *out = NULL;
  if (opts == NULL || opts->tls == NULL || opts->tls->server)
    return JW_EINVAL;
  jw_rpc_client_t *cli = calloc(1, sizeof(*cli));
  if (cli == NULL)
    return -ENOMEM;
  jw__list_init(&cli->calls);
  jw__list_init(&cli->lingering);
  if (jw__addr_split(opts->addr, cli->host, sizeof(cli->host), &port) != 0 ||
      cli->host[0] == '\0') {
    free(cli);
    return JW_EINVAL;
  }
  snprintf(cli->port, sizeof(cli->port), "%d", port);
  cli->addr = strdup(opts->addr);
  cli->server_name =
      strdup(opts->server_name != NULL ? opts->server_name : cli->host);
  cli->loop = loop;
  cli->connect_timeout_ms =
      opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
  int rc = jw__conn_init(&cli->c, loop, &client_ops, cli, false);
  cli->c.transport = &client_transport;
  if (rc != 0 || cli->addr == NULL || cli->server_name == NULL) {
    free(cli->addr);
    free(cli->server_name);
    free(cli);
    return rc != 0 ? rc : -ENOMEM;
  }
  cli->ssl = jw__tls_ctx_ssl(opts->tls);
  SSL_CTX_up_ref(cli->ssl);
  *out = cli;
  return 0;
}

static void try_connect(jw_rpc_client_t *cli);

static void connect_cb(uv_connect_t *req, int status) {
  jw_rpc_client_t *cli = req->data;
  if (cli->closing || cli->state != CLI_CONNECTING)
    return;
  if (status != 0) {
    cli->last_err = status;
    try_connect(cli);
    return;
  }
  cli->state = CLI_HANDSHAKE;
  uv_tcp_nodelay(&cli->c.tcp, 1);
  int rc = jw__conn_start_tls(&cli->c, cli->ssl, cli->server_name);
  if (rc != 0 && !cli->c.dead)
    jw__conn_fail(&cli->c, rc, "cannot start TLS: %s", jw_strerror(rc));
}

static void tcp_reopened(uv_handle_t *h) {
  jw_rpc_client_t *cli = ((jw__conn_t *)h->data)->owner;
  cli->tcp_recycling = false;
  if (cli->c.closing) {
    /* The close that came meanwhile skipped this handle: count it now. */
    jw__conn_handle_closed(h);
    return;
  }
  uv_tcp_init(cli->loop, &cli->c.tcp);
  cli->c.tcp.data = &cli->c;
  if (cli->state != CLI_FAILED)
    try_connect(cli);
}

static void try_connect(jw_rpc_client_t *cli) {
  if (cli->ai_next == NULL) {
    int err = cli->last_err != 0 ? cli->last_err : UV_ECONNREFUSED;
    snprintf(cli->err, sizeof(cli->err), "cannot connect to %s: %s", cli->addr,
             uv_strerror(err));
    client_fail(cli, err, cli->err);
    return;
  }
  struct addrinfo *ai = cli->ai_next;
  cli->ai_next = ai->ai_next;
  if (cli->state == CLI_CONNECTING && cli->last_err != 0) {
    /* A failed connect leaves the handle unusable: reopen it first. */
    cli->last_err = 0;
    cli->ai_next = ai;
    cli->tcp_recycling = true;
    uv_close((uv_handle_t *)&cli->c.tcp, tcp_reopened);
    cli->last_err = 0;
    cli->state = CLI_RESOLVING;
    return;
  }
  cli->state = CLI_CONNECTING;
  cli->creq.data = cli;
  int rc = uv_tcp_connect(&cli->creq, &cli->c.tcp, ai->ai_addr, connect_cb);
  if (rc != 0) {
    /* The handle may hold a socket of the wrong family now: recycle. */
    cli->last_err = rc;
    try_connect(cli);
  }
}

static void resolved_cb(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  jw_rpc_client_t *cli = req->data;
  cli->gai_pending = false;
  if (cli->closing) {
    if (res != NULL)
      uv_freeaddrinfo(res);
    jw__conn_close(&cli->c, false);
    return;
  }
  if (cli->state != CLI_RESOLVING) {
    if (res != NULL)
      uv_freeaddrinfo(res);
    return;
  }
  if (status != 0) {
    snprintf(cli->err, sizeof(cli->err), "cannot resolve %.100s: %s", cli->host,
             uv_strerror(status));
    client_fail(cli, status, cli->err);
    return;
  }
  cli->ai = res;
  cli->ai_next = res;
  try_connect(cli);
}

static void connect_timeout_cb(uv_timer_t *t) {
  jw_rpc_client_t *cli = ((jw__conn_t *)t->data)->owner;
  if (cli->state == CLI_READY || cli->state == CLI_FAILED)
    return;
  if (cli->gai_pending)
    uv_cancel((uv_req_t *)&cli->gai);
  snprintf(cli->err, sizeof(cli->err),
           "connecting to %s timed out after %llu ms", cli->addr,
           (unsigned long long)cli->connect_timeout_ms);
  if (!cli->c.dead) {
    cli->c.dead = true;
    if (!uv_is_closing((uv_handle_t *)&cli->c.tcp))
      uv_read_stop((uv_stream_t *)&cli->c.tcp);
  }
  client_fail(cli, UV_ETIMEDOUT, cli->err);
}

int jw_rpc_client_connect(jw_rpc_client_t *cli, jw_rpc_connect_cb cb,
                          void *data) {
  if (cli->state != CLI_NEW || cli->closing)
    return JW_EINVAL;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  cli->connect_cb = cb;
  cli->connect_data = data;
  cli->state = CLI_RESOLVING;
  cli->gai.data = cli;
  int rc = uv_getaddrinfo(cli->loop, &cli->gai, resolved_cb, cli->host,
                          cli->port, &hints);
  if (rc != 0) {
    cli->state = CLI_NEW;
    cli->connect_cb = NULL;
    snprintf(cli->err, sizeof(cli->err), "cannot resolve %.100s: %s", cli->host,
             uv_strerror(rc));
    return rc;
  }
  cli->gai_pending = true;
  uv_timer_start(&cli->c.timer, connect_timeout_cb, cli->connect_timeout_ms, 0);
  return 0;
}

const char *jw_rpc_client_error(const jw_rpc_client_t *cli) { return cli->err; }

static void close_timeout_cb(uv_timer_t *t) {
  jw__conn_close((jw__conn_t *)t->data, false);
}

void jw_rpc_client_close(jw_rpc_client_t *cli,
                         void (*close_cb)(jw_rpc_client_t *cli, void *data),
                         void *data) {
  if (cli->closing)
    return;
  cli->closing = true;
  cli->close_cb = close_cb;
  cli->close_data = data;
  if (cli->gai_pending) {
    /* The resolver callback runs either way and finishes the close. */
    uv_cancel((uv_req_t *)&cli->gai);
    return;
  }
  if (cli->state == CLI_READY && cli->c.h2 != NULL && !cli->c.dead) {
    /* Say goodbye, and give the last write a moment to leave. */
    nghttp2_submit_goaway(cli->c.h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR,
                          NULL, 0);
    jw__conn_flush(&cli->c);
    jw__conn_close(&cli->c, true);
    if (cli->c.close_wait)
      uv_timer_start(&cli->c.timer, close_timeout_cb, 1000, 0);
    return;
  }
  jw__conn_close(&cli->c, false);
}
