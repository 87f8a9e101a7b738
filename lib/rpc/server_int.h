/*
 * The server role's internals, shared by its files: server.c (the
 * listener and the connections' lifetime), call.c (the call state
 * machine: ownership, request memory, responses, deadlines) and
 * server_h2.c (the nghttp2 callbacks and the answers to requests that are
 * not gRPC).
 *
 * Who owns a call when (in_cb, owed, zombie) is said at the top of
 * call.c, which enforces it; its request budget at jw__rx_credit.
 */
#ifndef JW_RPC_SERVER_INT_H
#define JW_RPC_SERVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conn_int.h"
#include "jobworker/grpc.h"
#include "jobworker/server.h"
#include "list.h"

typedef struct sconn_s sconn_t;

/*
 * The sanitizer builds check the connection's running counters against a
 * walk of its calls wherever they are read.
 */
#if defined(__SANITIZE_ADDRESS__)
#define JW__CHECK_COUNTERS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JW__CHECK_COUNTERS 1
#endif
#endif

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

  /*
   * The fields are grouped by size within each part (the flags of all
   * parts together at the end) so that the struct carries no padding to
   * speak of: there is one per stream.
   */

  /* Request headers. */
  char *path;
  bool post;
  bool get;
  bool head;
  bool grpc_ctype;
  bool have_ctype;
  bool encoded; /* a grpc-encoding we do not take */
  bool have_timeout;
  bool bad_timeout;
  uint64_t timeout_ms;
  size_t header_bytes;
  int http_status;                /* CALL_HTTP: the answer's :status */
  int nmsgs;                      /* request messages seen */
  const jw_rpc_http_get_t *route; /* CALL_HTTP: the GET handler, or NULL */
  char *http_ctype;               /* a route's content-type */
  size_t discarded;
  const jw_rpc_method_t *method;

  /* Request body. */
  jw_grpc_deframer_t defr;
  uint8_t *req;
  size_t req_len;
  size_t rx_held;         /* request bytes counted in sc->rx_bytes */
  size_t rx_unacked;      /* received bytes not yet given back as credit */
  uv_timer_t *recv_timer; /* the request timeout, while it arrives */

  /* Response. */
  uint8_t *out;
  size_t out_len;
  size_t out_off;
  size_t held; /* counted in sc->out_held (jw__call_held_update) */
  jw_rpc_pull_cb pull;
  void *pull_data;

  void (*cancel_cb)(jw_rpc_call_t *call, void *data);
  void *cancel_data;
  int in_cb;
  int status;

  /* Flags of the parts above. */
  bool ready;          /* the request is whole; dispatch waits for output */
  bool headers_sent;   /* response */
  bool deferred;       /* response: the pull said JW_EAGAIN */
  bool want_resume;    /* response: jw_rpc_call_resume since */
  bool owed;           /* the handler holds the call and was not told */
  bool cancel_pending; /* cancel while a callback of ours held the call */
  bool aborted;        /* cut off: send nothing more */
  bool zombie;         /* stream gone, handler owes an end, no cancel cb */
  bool reported;       /* the rpc event was emitted */
  bool pull_status;    /* a pull's error ends with status, not INTERNAL */

  uv_timer_t *deadline;
  char tag[64];
  char encoding[32]; /* the grpc-encoding we do not take, cut, for the error */
  char *message;
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
  bool no_idle_timeout; /* no socket to time out (server_test.c) */
  jw__list_t calls;     /* newest first */
  size_t ncalls;
  uint64_t open_ns;
  size_t rx_bytes;       /* request bytes held for calls still arriving */
  size_t nready;         /* calls whose dispatch waits for the output */
  size_t out_held;       /* the calls' output not yet framed (call->held) */
  bool rx_progress;      /* request bytes arrived since the last idle check */
  uint64_t seen_writes;  /* c.nwrites at the last idle check */
  bool refused;          /* over the per-client cap: GOAWAY, then close */
  uint8_t deadline_kind; /* SC_*: what passing deadline does (sweep_cb) */
  uint64_t deadline;     /* uv_now() ms */
};

/* sconn_t.deadline_kind */
enum {
  SC_NO_DEADLINE = 0,
  SC_IDLE,      /* the handshake's timeout, then the idle timeout */
  SC_CLOSE_WAIT /* a graceful close's last write, 2 s at most */
};

struct jw_rpc_server_s {
  uv_loop_t *loop;
  jw_rpc_server_options_t opts;
  jw_rpc_method_t *methods;
  size_t *method_lens; /* strlen of each method's path, for the dispatch */
  jw_rpc_http_get_t *gets;
  SSL_CTX *ssl;
  uv_tcp_t listener;
  uv_timer_t shutdown_timer;
  uv_timer_t sweep_timer; /* jw__conn_quiet on every connection */
  jw__turns_t turns;      /* the connections' handshake budget */
  jw__turnq_t nexts;      /* the connections' next-turn work */
  bool turns_open;
  bool nexts_open;
  bool listener_open;
  bool timer_open;
  bool sweep_open;
  bool shutting_down;
  bool done;
  jw__list_t conns;
  size_t nconns;
  jw__list_t zombies;
  int port;
  void (*done_cb)(jw_rpc_server_t *srv, void *data);
  void *done_data;
};

/* What a GET handler fills (jw_rpc_http_reply_*). */
struct jw_rpc_http_reply_s {
  int status;
  char ctype[128];
  jw__buf_t body;
  int err; /* the first failed append's code; the answer is then a 500 */
};

/*
 * How often the server looks for quiet connections (jw__conn_quiet): one
 * that made no frame for this long gives its frame buffer's pages back.
 */
#define JW__SERVER_SWEEP_MS 250

/* ---- Call bookkeeping ------------------------------------------------ */

#define CALL_OF(n) jw__list_data(n, jw_rpc_call_t, node)
#define SCONN_OF(n) jw__list_data(n, sconn_t, node)

/* ---- server.c ---------------------------------------------------------- */

extern const jw__conn_ops_t jw__sconn_ops;

/* Reports an event to the embedder's on_event, if any. */
void jw__server_emit(jw_rpc_server_t *srv, jw_rpc_event_type_t event,
                     const char *peer, const char *cn, const char *method,
                     const char *tag, int status, const char *message,
                     uint64_t dur_ns);

/* Ends a connection: its calls are canceled, the close event reported. */
void jw__sconn_close(sconn_t *sc, bool graceful);

/* TLS is up: the session, the per-client cap, the open event. */
int jw__sconn_handshake_done(jw__conn_t *c);

/* ---- call.c ------------------------------------------------------------ */

/*
 * Ends the call now with status and message (its deadline passed, or the
 * server ends every call): an error response, or a stream's trailers.
 */
void jw__call_end_now(jw_rpc_call_t *call, int status, const char *message);

/* Stops and frees the call's deadline timer, if any. */
void jw__call_stop_deadline(jw_rpc_call_t *call);

/* Stops and frees the call's request timeout, if any. */
void jw__call_stop_recv_timer(jw_rpc_call_t *call);

/* Gives n received bytes back to the stream's (or the connection's) window. */
void jw__rx_credit(sconn_t *sc, int32_t stream_id, size_t n);

/* The call's request bytes are no longer held: free and credit them. */
void jw__rx_release(jw_rpc_call_t *call);

/* Frees what ended calls hold and credits calls arriving, within the budget. */
void jw__rx_grant(sconn_t *sc);

/*
 * What the call holds of its connection's output: a unary reply or an
 * HTTP answer's body not yet taken into frames. Streams pull straight
 * into frames and hold nothing here.
 */
static inline size_t jw__call_held(const jw_rpc_call_t *call) {
  if (call->sc == NULL || call->state == CALL_STREAMING || call->out == NULL ||
      call->out_off >= call->out_len)
    return 0;
  return call->out_len - call->out_off;
}

/*
 * Brings sc->out_held up to date with the call's output: called after
 * every change of its out, out_off, out_len or state, so that the
 * connection's pending output is a counter, not a walk of its calls.
 */
void jw__call_held_update(jw_rpc_call_t *call);

/* Sets the status and message the call ends (or ended) with. */
void jw__call_set_status(jw_rpc_call_t *call, int status, const char *message);

/* Frees the call now, detaching it first. */
void jw__call_free(jw_rpc_call_t *call);

/*
 * A callback of ours that held the call returned: deliver a pending cancel,
 * maybe free.
 */
void jw__call_after_cb(jw_rpc_call_t *call);

/* The stream is gone (closed, reset, its connection closing). */
void jw__call_stream_gone(jw_rpc_call_t *call, int status, const char *message);

/* Submits the grpc-status trailers of a response with a body. */
int jw__call_submit_trailers(jw_rpc_call_t *call, int status,
                             const char *message);

/* An immediate error: one HEADERS frame with END_STREAM. */
int jw__call_submit_error(jw_rpc_call_t *call, int http_status, int status,
                          const char *message);

/* The request timeout of a call whose request is still arriving. */
void jw__call_recv_timeout_cb(uv_timer_t *t);

/* The request headers are complete: refuse early or start the deadline. */
void jw__call_headers_done(sconn_t *sc, jw_rpc_call_t *call);

/* The one request message arrived (copied for dispatch). */
void jw__call_on_message(jw_rpc_call_t *call, const uint8_t *msg, size_t len);

/* The same for a message in a malloc'd buffer the call takes over. */
void jw__call_take_message(jw_rpc_call_t *call, uint8_t *msg, size_t len);

/* Response bytes the connection has waiting (unary replies, TLS records). */
size_t jw__sconn_pending_output(sconn_t *sc);

/* The request is whole: dispatch now, or once the output drained. */
void jw__call_request_whole(sconn_t *sc, jw_rpc_call_t *call);

/* Starts calls that waited for the output to drain, oldest first. */
void jw__sconn_dispatch_ready(sconn_t *sc);

/* ---- server_h2.c ------------------------------------------------------- */

/* The data source of a gRPC response body: unary bytes or the pull. */
ssize_t jw__call_data_read_cb(nghttp2_session *session, int32_t stream_id,
                              uint8_t *buf, size_t length, uint32_t *flags,
                              nghttp2_data_source *source, void *user_data);

/* Marks a request that is not gRPC for a plain HTTP answer. */
void jw__call_http_refuse(jw_rpc_call_t *call, int http_status,
                          const char *why);

/*
 * Sends the plain HTTP answer of a CALL_HTTP request: a GET handler's
 * (call it only once the request has ended) or a refusal's short text.
 */
void jw__call_http_answer(jw_rpc_call_t *call);

/* The GET handler registered for path, or NULL. */
const jw_rpc_http_get_t *jw__server_find_get(jw_rpc_server_t *srv,
                                             const char *path);

/* The server's nghttp2 callbacks, made once. */
nghttp2_session_callbacks *jw__server_h2_callbacks(void);

#endif /* JW_RPC_SERVER_INT_H */
