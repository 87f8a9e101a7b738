/*
 * jw_rpc client role: gRPC calls over HTTP/2 (nghttp2) over TLS 1.3 on a
 * libuv loop, one connection per client object.
 *
 * Nothing here prints: failures come back as codes, with a human sentence
 * from jw_rpc_client_error.
 */
#ifndef JOBWORKER_CLIENT_H
#define JOBWORKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "jobworker/error.h"
#include "jobworker/grpc.h"
#include "jobworker/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Client role ------------------------------------------------------ */

typedef struct jw_rpc_client_s jw_rpc_client_t;
typedef struct jw_rpc_ccall_s jw_rpc_ccall_t;

typedef struct {
  const char *addr;            /* "HOST:PORT" / "[v6]:PORT", host name or IP */
  jw_tls_ctx_t *tls;           /* from jw_tls_ctx_new_client */
  const char *server_name;     /* name/IP to verify; NULL: the host of addr */
  uint64_t connect_timeout_ms; /* 0: 10000 (TCP + TLS + SETTINGS) */
} jw_rpc_client_options_t;

/*
 * Connected: err is 0 once TLS is up and the server's SETTINGS arrived (so
 * a server that refuses the client certificate fails here, not later).
 * Otherwise a negative code: -ECONNREFUSED, -ETIMEDOUT, -ENOENT/-EAI_*
 * style name errors as UV codes, JW_EVERIFY (server certificate not
 * trusted or wrong name), JW_ETLS (handshake failed or the server sent an
 * alert; jw_rpc_client_error says which).
 */
typedef void (*jw_rpc_connect_cb)(jw_rpc_client_t *cli, int err, void *data);

/* A response message; msg is valid only during the call. */
typedef void (*jw_rpc_msg_cb)(jw_rpc_ccall_t *call, const uint8_t *msg,
                              size_t len, void *data);

/*
 * The call ended: the gRPC status (or a transport failure mapped to
 * UNAVAILABLE / INTERNAL as gRPC clients do) and its decoded message
 * (never NULL; "" when none). The call is freed after this returns.
 */
typedef void (*jw_rpc_done_cb)(jw_rpc_ccall_t *call, int grpc_status,
                               const char *message, void *data);

int jw_rpc_client_new(uv_loop_t *loop, const jw_rpc_client_options_t *opts,
                      jw_rpc_client_t **out);

/* Resolves, connects, handshakes. Returns 0 or a negative code now. */
int jw_rpc_client_connect(jw_rpc_client_t *cli, jw_rpc_connect_cb cb,
                          void *data);

/*
 * A human sentence about the last failure of this client: the TLS alert
 * the server sent, the certificate verification error, the system error.
 * "" when there is none.
 */
const char *jw_rpc_client_error(const jw_rpc_client_t *cli);

/*
 * Whether the connection takes no more calls: the server sent GOAWAY (it
 * is shutting down or reloading), or the connection failed or is closing.
 * A call that ended UNAVAILABLE on such a connection is worth making
 * again on a new one; on a connection still up, UNAVAILABLE is the
 * server's answer.
 */
bool jw_rpc_client_going_away(const jw_rpc_client_t *cli);

/*
 * Starts a call with one request message. timeout_ms > 0 sends
 * grpc-timeout. Returns 0 (and *out when out is not NULL) or a negative
 * code; on_done always runs exactly once after a 0 return.
 */
int jw_rpc_client_call(jw_rpc_client_t *cli, const char *path,
                       const uint8_t *req, size_t len, uint64_t timeout_ms,
                       jw_rpc_msg_cb on_msg, jw_rpc_done_cb on_done, void *data,
                       jw_rpc_ccall_t **out);

/*
 * Stops (true) or resumes (false) consuming a call's response: while
 * paused no WINDOW_UPDATE is sent, so the server is held by flow control.
 */
void jw_rpc_ccall_pause(jw_rpc_ccall_t *call, bool paused);

/* Cancels a call (RST_STREAM CANCEL); on_done follows with CANCELLED. */
void jw_rpc_ccall_cancel(jw_rpc_ccall_t *call);

/*
 * Closes the connection; calls in flight end with UNAVAILABLE. close_cb
 * (may be NULL) runs once every handle is closed; the client is freed
 * after it returns.
 */
void jw_rpc_client_close(jw_rpc_client_t *cli,
                         void (*close_cb)(jw_rpc_client_t *cli, void *data),
                         void *data);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_CLIENT_H */
