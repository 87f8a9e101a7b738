/*
 * The client's calls: the request and its stream, response messages
 * delivered through the deframer (held while the caller pauses, credit
 * given back as they are used), and the end of a call, exactly once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "rpc_int.h"

static void timer_free_cb(uv_handle_t *h) { free(h); }

void jw__ccall_free(jw_rpc_ccall_t *call) {
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
void jw__ccall_finish(jw_rpc_ccall_t *call, int status, const char *message) {
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

void jw__ccall_reset_stream(jw_rpc_ccall_t *call, uint32_t code) {
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
        jw__ccall_reset_stream(call, NGHTTP2_CANCEL);
      else if (!nghttp2_session_get_stream_local_close(cli->c.h2,
                                                       call->stream_id))
        jw__ccall_reset_stream(call, NGHTTP2_NO_ERROR);
      call->lingering = true;
      jw__list_insert_head(&cli->lingering, &call->node);
      return;
    }
    /* A request still queued: the reset cancels it unread. */
    jw__ccall_reset_stream(call, NGHTTP2_CANCEL);
  }
  jw__ccall_free(call);
}

/* Frees a lingering call whose stream nghttp2 has now let go of. */
void jw__client_linger_done(jw_rpc_client_t *cli, int32_t stream_id) {
  jw__list_t *n;
  jw__list_foreach(n, &cli->lingering) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    if (call->stream_id != stream_id)
      continue;
    jw__list_remove(&call->node);
    jw__ccall_free(call);
    return;
  }
}

void jw__ccall_unref(jw_rpc_ccall_t *call) {
  if (--call->in_cb == 0 && call->finished)
    ccall_release(call);
}

/* Gives bytes back to the flow-control windows. */
void jw__client_consume(jw_rpc_client_t *cli, jw_rpc_ccall_t *call, size_t n) {
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
size_t jw__ccall_deliver(jw_rpc_ccall_t *call, const uint8_t *p, size_t n) {
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
    jw__ccall_reset_stream(call, NGHTTP2_CANCEL);
    p += n;
    n = 0;
    jw__ccall_finish(call, status, text);
  }
  size_t used = (size_t)(p - start);
  if (call->finished)
    used += n;
  jw__ccall_unref(call);
  return used;
}

/* The stream ended and every held byte was delivered: report the end. */
void jw__ccall_maybe_end(jw_rpc_ccall_t *call) {
  if (call->finished || !call->ended || call->held.len > 0 || call->paused)
    return;
  if (call->end_status == JW_GRPC_OK && jw_grpc_deframer_partial(&call->defr))
    jw__ccall_finish(call, JW_GRPC_INTERNAL,
                     "the response ended inside a message");
  else
    jw__ccall_finish(call, call->end_status, call->end_message);
}

static void deadline_cb(uv_timer_t *t) {
  jw_rpc_ccall_t *call = t->data;
  if (call == NULL)
    return;
  jw__ccall_reset_stream(call, NGHTTP2_CANCEL);
  jw__ccall_finish(call, JW_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
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
  /* A call asked to end by a deadline never starts without its timer. */
  if (timeout_ms > 0) {
    call->deadline = malloc(sizeof(*call->deadline));
    if (call->deadline == NULL) {
      jw__ccall_free(call);
      return -ENOMEM;
    }
    uv_timer_init(cli->loop, call->deadline);
    call->deadline->data = call;
  }

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
    jw__ccall_free(call);
    /* nghttp2 allocates through conn.c's allocator: its out of memory is
     * ours. */
    return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? JW_ECLOSED
           : id == NGHTTP2_ERR_NOMEM                 ? -ENOMEM
                                                     : JW_EHTTP2;
  }
  call->stream_id = id;
  jw__list_insert_head(&cli->calls, &call->node);
  if (call->deadline != NULL)
    uv_timer_start(call->deadline, deadline_cb, timeout_ms, 0);
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
    jw__ccall_reset_stream(call, NGHTTP2_CANCEL);
  call->ended = true;
  call->end_status = JW_GRPC_CANCELLED;
  free(call->end_message);
  call->end_message = strdup("canceled by the client");
  call->held.len = 0;
  call->paused = false;
  /* on_done follows from the loop, never from inside this call. */
  jw__conn_schedule(&cli->c);
}
