/*
 * The client role's internals, shared by its files: client.c (resolve,
 * connect, TLS, the connection's lifetime), ccall.c (the calls: request,
 * response delivery and flow control, the end of a call) and client_h2.c
 * (the nghttp2 callbacks).
 *
 * Responses are consumed by hand (no automatic WINDOW_UPDATE) so that a
 * paused call holds the server by flow control; bytes that arrive while
 * paused wait in the call, bounded by the stream window.
 */
#ifndef JW_RPC_CLIENT_INT_H
#define JW_RPC_CLIENT_INT_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn_int.h"
#include "jobworker/client.h"
#include "jobworker/grpc.h"
#include "list.h"

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
  uv_timer_t timer;  /* the connect timeout, then the close's */
  jw__turnq_t nexts; /* the connection's next-turn work */
  int own_handles;   /* timer and nexts, closed once c is */
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
  bool goaway;        /* the server sent GOAWAY: it takes no new calls */
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

#define CCALL_OF(n) jw__list_data(n, jw_rpc_ccall_t, node)

/* ---- client.c ---------------------------------------------------------- */

/* The server's SETTINGS arrived: the client is ready. */
void jw__client_connected(jw_rpc_client_t *cli);

/* ---- ccall.c ----------------------------------------------------------- */

/* Frees the call and what it holds. */
void jw__ccall_free(jw_rpc_ccall_t *call);

/* Ends a call exactly once: on_done runs, the call goes when free to. */
void jw__ccall_finish(jw_rpc_ccall_t *call, int status, const char *message);

/* Resets the call's stream with code, once. */
void jw__ccall_reset_stream(jw_rpc_ccall_t *call, uint32_t code);

/* Frees a lingering call whose stream nghttp2 let go of. */
void jw__client_linger_done(jw_rpc_client_t *cli, int32_t stream_id);

/* Drops a hold taken with in_cb++; frees a finished call. */
void jw__ccall_unref(jw_rpc_ccall_t *call);

/* Gives bytes back to the flow-control windows. */
void jw__client_consume(jw_rpc_client_t *cli, jw_rpc_ccall_t *call, size_t n);

/*
 * Hands response bytes to on_msg until the call pauses or ends; returns
 * bytes used.
 */
size_t jw__ccall_deliver(jw_rpc_ccall_t *call, const uint8_t *p, size_t n);

/* Reports the end once the stream ended and every held byte was delivered. */
void jw__ccall_maybe_end(jw_rpc_ccall_t *call);

/* ---- client_h2.c ------------------------------------------------------- */

/* The client's nghttp2 callbacks, made once. */
nghttp2_session_callbacks *jw__client_h2_callbacks(void);

#endif /* JW_RPC_CLIENT_INT_H */
