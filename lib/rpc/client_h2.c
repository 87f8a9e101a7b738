/*
 * The client's nghttp2 callbacks: response headers, trailers and body fed
 * to the calls (ccall.c), the server's first SETTINGS completing the
 * connection, and streams that closed or could not be sent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "rpc_int.h"

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
    jw__client_consume(cli, NULL, len);
    return 0;
  }
  size_t used = 0;
  if (!call->paused && call->held.len == 0) {
    call->in_cb++;
    used = jw__ccall_deliver(call, data, len);
    jw__client_consume(cli, call, used);
    bool gone = call->finished;
    jw__ccall_unref(call);
    if (gone) {
      jw__client_consume(cli, NULL, len - used);
      return 0;
    }
  }
  if (used < len) {
    /* The window bounds this: the server cannot send past what we
     * consumed, and paused bytes are not consumed. */
    size_t more = len - used;
    if (call->held.len + more > JW__H2_STREAM_WINDOW + JW__CONN_RBUF) {
      jw__ccall_reset_stream(call, NGHTTP2_FLOW_CONTROL_ERROR);
      jw__client_consume(cli, NULL, more);
      jw__ccall_finish(call, JW_GRPC_INTERNAL, "the server overran the window");
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

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  jw_rpc_client_t *cli = user_data;
  if (frame->hd.type == NGHTTP2_SETTINGS &&
      !(frame->hd.flags & NGHTTP2_FLAG_ACK) && cli->state == CLI_HANDSHAKE) {
    jw__client_connected(cli);
    return 0;
  }
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    cli->goaway = true;
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
    jw__ccall_maybe_end(call);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  jw_rpc_client_t *cli = user_data;
  jw_rpc_ccall_t *call = stream_call(cli, stream_id);
  if (call == NULL) {
    jw__client_linger_done(cli, stream_id);
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
  jw__ccall_maybe_end(call);
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
    jw__client_linger_done(cli, frame->hd.stream_id);
  if (call != NULL) {
    call->stream_id = 0;
    jw__ccall_finish(call,
                     call->canceled ? JW_GRPC_CANCELLED : JW_GRPC_UNAVAILABLE,
                     call->canceled ? "canceled by the client"
                                    : "the request could not be sent");
  }
  return 0;
}

nghttp2_session_callbacks *jw__client_h2_callbacks(void) {
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
    nghttp2_session_callbacks_set_data_source_read_length_callback(
        cbs, jw__conn_data_length);
  }
  return cbs;
}
