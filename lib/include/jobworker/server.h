/*
 * jw_rpc server role: gRPC over HTTP/2 (nghttp2) over TLS 1.3 on a libuv
 * loop. A listener, a connection per client, and a call per stream handed
 * to the method handlers.
 *
 * Nothing here prints: failures come back as codes; what happens is
 * reported through the on_event callback.
 */
#ifndef JOBWORKER_SERVER_H
#define JOBWORKER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include "jobworker/error.h"
#include "jobworker/grpc.h"
#include "jobworker/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Server role ------------------------------------------------------ */

typedef struct jw_rpc_server_s jw_rpc_server_t;
typedef struct jw_rpc_call_s jw_rpc_call_t;

/*
 * A method handler. req/len is the one request message (already
 * deframed); it is valid only during the call. The handler ends the call
 * with jw_rpc_call_reply, jw_rpc_call_fail or jw_rpc_call_stream, now or
 * later from the loop.
 */
typedef void (*jw_rpc_handler_cb)(jw_rpc_call_t *call, const uint8_t *req,
                                  size_t len, void *data);

typedef struct {
  const char *path; /* "/jobworker.v1.JobWorker/Start" */
  jw_rpc_handler_cb handler;
  unsigned flags; /* JW_RPC_METHOD_* */
} jw_rpc_method_t;

/*
 * The handler runs on the call's first request message, without waiting
 * for the client to end its side, and later messages on the stream are
 * dropped: a bidirectional stream answered one request per stream. gRPC
 * reflection clients (grpcurl's among them) send a request and wait for
 * its answer before they send more or half-close; when the answer's
 * stream ends they open a new one for the next request.
 */
#define JW_RPC_METHOD_FIRST_MESSAGE 1u

/*
 * A plain HTTP GET (and HEAD) handler for one path, on the gRPC port
 * (a Prometheus scrape, say). It runs once the request has ended, never
 * before, with the verified client certificate CN (NULL when the
 * certificate has none), and fills the answer through reply (the calls
 * below); the reply is valid only during the call. With none of them the
 * answer is 200 with an empty body. For HEAD the body is produced, its
 * length sent as content-length, and the body itself not sent.
 */
typedef struct jw_rpc_http_reply_s jw_rpc_http_reply_t;
typedef void (*jw_rpc_http_get_cb)(const char *cn, jw_rpc_http_reply_t *reply,
                                   void *data);

typedef struct {
  const char *path; /* "/metrics": matched exactly, query included */
  jw_rpc_http_get_cb handler;
} jw_rpc_http_get_t;

/*
 * The most bytes one answer body may have: past it the answer becomes a
 * 500 saying so, and the body built so far is freed.
 */
#define JW_RPC_HTTP_BODY_MAX (4u << 20)

/* Sets the answer's :status (100..599; others are ignored). Default 200. */
void jw_rpc_http_reply_status(jw_rpc_http_reply_t *reply, int status);

/*
 * Sets the content-type (copied; at most 127 bytes, no control
 * characters). Default "text/plain; charset=utf-8". Returns 0 or
 * JW_EINVAL (and the type is unchanged).
 */
int jw_rpc_http_reply_content_type(jw_rpc_http_reply_t *reply,
                                   const char *ctype);

/*
 * Appends to the body. Returns 0, JW_ELIMIT past JW_RPC_HTTP_BODY_MAX or
 * -ENOMEM; after a failure every later append fails too and the answer is
 * a 500.
 */
int jw_rpc_http_reply_append(jw_rpc_http_reply_t *reply, const void *p,
                             size_t len);

/* Appends formatted text, as jw_rpc_http_reply_append. */
int jw_rpc_http_reply_printf(jw_rpc_http_reply_t *reply, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What a server event is about. */
typedef enum {
  JW_RPC_EV_CONN_OPEN = 0, /* a connection passed TLS and SETTINGS */
  JW_RPC_EV_CONN_CLOSE,    /* an accepted connection ended */
  JW_RPC_EV_CONN_REFUSED,  /* refused: TLS failed, a limit, no identity */
  JW_RPC_EV_RPC            /* a call ended (method, tag, grpc_status) */
} jw_rpc_event_type_t;

/*
 * A static name for logging ("conn_open", "conn_close", "conn_refused",
 * "rpc"); "unknown" for a value outside the enum.
 */
const char *jw_rpc_event_name(jw_rpc_event_type_t event);

/* What the server reports for logging: one event per line. */
typedef struct {
  jw_rpc_event_type_t event;
  const char *peer;    /* "ip:port" */
  const char *cn;      /* verified client CN, or NULL */
  const char *method;  /* rpc: the path */
  const char *tag;     /* rpc: what the handler set (the job id) or NULL */
  int grpc_status;     /* rpc: the status sent */
  const char *message; /* the error text, or NULL */
  uint64_t duration_us;
  /*
   * conn_refused: why, as one of a fixed set of words: "no_certificate",
   * "bad_certificate", "revoked", "protocol", "alpn", "timeout", "closed",
   * "limit" (a connection cap, after or instead of a handshake), "other".
   * NULL for the other events.
   */
  const char *reason;
} jw_rpc_event_t;

typedef void (*jw_rpc_event_cb)(const jw_rpc_event_t *ev, void *data);

/*
 * What a 0 in jw_rpc_server_options_t stands for: the one place these
 * defaults are written (teleportd's flags default to them too).
 */
#define JW_RPC_DEFAULT_MAX_CONNECTIONS 1024
#define JW_RPC_DEFAULT_MAX_CONCURRENT_STREAMS 100
#define JW_RPC_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define JW_RPC_DEFAULT_IDLE_TIMEOUT_MS 300000
#define JW_RPC_DEFAULT_MAX_MESSAGE_BYTES (4u << 20)
#define JW_RPC_DEFAULT_MAX_BUFFERED_REQUEST_BYTES (8u << 20)
#define JW_RPC_DEFAULT_MAX_PENDING_OUTPUT_BYTES (1u << 20)
#define JW_RPC_DEFAULT_REQUEST_TIMEOUT_MS 30000
#define JW_RPC_DEFAULT_MAX_CONNECTIONS_PER_CLIENT 32

typedef struct {
  const char *addr; /* "HOST:PORT", "[v6]:PORT"; port 0 picks a free one */
  jw_tls_ctx_t *tls;
  const jw_rpc_method_t *methods;
  size_t nmethods;
  void *data;                      /* passed to handlers and on_event */
  jw_rpc_event_cb on_event;        /* may be NULL */
  uint32_t max_connections;        /* 0: 1024 */
  uint32_t max_concurrent_streams; /* 0: 100 */
  /* 0: 10000. It and the idle timeout are looked at every 250 ms (one
   * sweep of the connections): a connection is closed up to that late. */
  uint64_t handshake_timeout_ms;
  /* 0: 300000; a connection none of whose calls is being served or sending
   * (calls whose request is still arriving, or whose output waits for the
   * client's window or socket, count as idle), since its last request
   * byte or completed write. */
  uint64_t idle_timeout_ms;
  size_t max_message_bytes; /* 0: 4 MiB (request messages) */
  /*
   * One connection's resource budget (docs/protocol.md#limits). Request
   * bytes held for calls still arriving: flow-control credit is given
   * back only while a connection holds less, so its request memory stays
   * under this plus the 4 MiB connection window. 0: 8 MiB, and never
   * less than max_message_bytes, so that one message always fits.
   */
  size_t max_buffered_request_bytes;
  /*
   * Response bytes a connection may have waiting (unary replies the peer
   * has not taken yet, TLS records not yet written): past it no new call
   * is started on the connection, and past it in unwritten records the
   * connection is not read, until its output drains. 0: 1 MiB.
   */
  size_t max_pending_output_bytes;
  /* A call whose request has not fully arrived by then is ended with
   * DEADLINE_EXCEEDED and freed. 0: 30000. */
  uint64_t request_timeout_ms;
  /* Connections of one client (certificate CN) at once; more are refused
   * after their handshake with GOAWAY. 0: 32. */
  uint32_t max_connections_per_client;
  /* Plain HTTP GET/HEAD handlers by path (copied). Any other request that
   * is not gRPC gets 405 or 415 with a short text. */
  const jw_rpc_http_get_t *http_gets;
  size_t nhttp_gets;
  /*
   * With adopt_listen_fd, listen_fd is a socket already bound and
   * listening (a reload's, handed over execve(2)) that the server takes
   * over (made close-on-exec) instead of binding addr, which is then only
   * checked for its form.
   */
  bool adopt_listen_fd;
  int listen_fd;
} jw_rpc_server_options_t;

/*
 * Creates a server (copies opts, keeps a reference to opts->tls) and
 * starts listening. Returns 0, or -errno from bind/listen (-EADDRINUSE,
 * -EADDRNOTAVAIL, ...) or JW_EINVAL for a malformed address.
 */
int jw_rpc_server_start(uv_loop_t *loop, const jw_rpc_server_options_t *opts,
                        jw_rpc_server_t **out);

/*
 * Parses a listen address ("HOST:PORT" with an IPv4 or IPv6 literal,
 * "[v6]:PORT", "localhost:PORT", ":PORT" for all IPv4 addresses) without
 * binding. Returns 0 or JW_EINVAL.
 */
int jw_rpc_listen_addr_parse(const char *addr, struct sockaddr_storage *out);

/* The port actually bound (useful with port 0). */
int jw_rpc_server_port(const jw_rpc_server_t *srv);

/*
 * A new descriptor of the listening socket, not close-on-exec, for a
 * reload to hand over: closing the server then leaves the socket open,
 * and connections keep queueing in its backlog for the next process.
 * Returns it, JW_ECLOSED once the server is closing, or -errno.
 */
int jw_rpc_server_dup_listen_fd(const jw_rpc_server_t *srv);

/*
 * Ends every call in progress with grpc_status and message, as a passed
 * deadline does: a stream's trailers carry them after the message it has
 * begun, the handler's cancel callback runs. For a reload (UNAVAILABLE),
 * before jw_rpc_server_close.
 */
void jw_rpc_server_end_calls(jw_rpc_server_t *srv, int grpc_status,
                             const char *message);

/*
 * Closes the server, the library's one rule for objects with loop handles
 * (libuv's): stops accepting, sends GOAWAY to every connection, lets calls
 * in progress finish (their handlers keep running), then closes every
 * connection; after timeout_ms what is still open is closed (its calls
 * get their cancel callback). close_cb (may be NULL) runs from the loop,
 * never from inside this call, once every connection and handle is
 * closed; the server's memory goes when it returns, with any call whose
 * handler never ended it. A second call before close_cb ran changes
 * nothing; after it, srv is gone.
 */
void jw_rpc_server_close(jw_rpc_server_t *srv, uint64_t timeout_ms,
                         void (*close_cb)(jw_rpc_server_t *srv, void *data),
                         void *data);

/* ---- A call, server side ---------------------------------------------- */

/* The verified client certificate CN (never NULL for a dispatched call). */
const char *jw_rpc_call_cn(const jw_rpc_call_t *call);

/* The method path. */
const char *jw_rpc_call_method(const jw_rpc_call_t *call);

/* Sets a short tag (the job id) reported in the call's log event. */
void jw_rpc_call_set_tag(jw_rpc_call_t *call, const char *tag);

/*
 * Registers a callback for when the call ends before the handler ended it
 * (the client canceled, disconnected, the deadline passed, the server shut
 * down). After it runs the call is gone: the handler must not touch it.
 */
void jw_rpc_call_on_cancel(jw_rpc_call_t *call,
                           void (*cancel_cb)(jw_rpc_call_t *call, void *data),
                           void *data);

/*
 * Unary reply: response headers, the one message, OK trailers. The call
 * is ended: the pointer is invalid after this returns.
 */
int jw_rpc_call_reply(jw_rpc_call_t *call, const uint8_t *msg, size_t len);

/*
 * Ends the call with a non-OK status and a message (UTF-8, percent-encoded
 * on the wire); Trailers-Only when no response header was sent yet. The
 * pointer is invalid after this returns.
 */
int jw_rpc_call_fail(jw_rpc_call_t *call, int grpc_status, const char *message);

/*
 * Pulls the next message of a server stream into buf (at most cap bytes;
 * JW_RPC_PULL_MIN <= cap <= JW_RPC_STREAM_MSG_MAX: what the next DATA
 * frame can carry, since the message is pulled straight into nghttp2's
 * frame buffer, with no per-stream buffer and no copy; a peer's window
 * below JW_RPC_PULL_MIN + 5 gets a JW_RPC_PULL_MIN message through a small
 * per-stream buffer). Returns the message length (>
 * 0; an empty message cannot be sent this way), 0 to end the stream with OK,
 * JW_EAGAIN when nothing is ready (call jw_rpc_call_resume when it is),
 * or another negative code to end the stream with INTERNAL.
 */
typedef ssize_t (*jw_rpc_pull_cb)(jw_rpc_call_t *call, uint8_t *buf, size_t cap,
                                  void *data);

/*
 * From inside a pull that is about to return a negative code: the stream
 * ends with grpc_status and message (NOT_FOUND for a job removed under a
 * stream) rather than INTERNAL.
 */
void jw_rpc_call_pull_status(jw_rpc_call_t *call, int grpc_status,
                             const char *message);

#define JW_RPC_STREAM_MSG_MAX (64 * 1024)
#define JW_RPC_PULL_MIN 32

/*
 * Turns the call into a server stream fed by pull, paced by HTTP/2 flow
 * control: pull is called only when the peer can take more. When pull
 * returns 0 or an error the call is ended (no cancel callback follows);
 * the pointer is invalid once pull returned so.
 */
int jw_rpc_call_stream(jw_rpc_call_t *call, jw_rpc_pull_cb pull, void *data);

/* Tells a stream whose pull returned JW_EAGAIN that data is ready. */
void jw_rpc_call_resume(jw_rpc_call_t *call);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_SERVER_H */
