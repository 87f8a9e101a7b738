/*
 * Limits and helpers shared by the server and client roles.
 */
#ifndef JW_RPC_RPC_INT_H
#define JW_RPC_RPC_INT_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <string.h>

/* HTTP/2 settings both roles advertise. */
#define JW__H2_STREAM_WINDOW (1 << 20)
#define JW__H2_CONN_WINDOW (16 << 20)
/*
 * The server's connection window: with credit given back only under the
 * connection's request budget, a connection holds at most the budget plus
 * this many request bytes (docs/protocol.md#limits).
 */
#define JW__H2_SERVER_CONN_WINDOW (4 << 20)
#define JW__H2_MAX_HEADER_LIST (16 * 1024)
/* The largest response message the client accepts. */
#define JW__CLIENT_MAX_MESSAGE (4u << 20)
/* The longest grpc-message we send or keep, after encoding. */
#define JW__MAX_STATUS_MESSAGE 4096

#define JW__NV(n, v, vl)                                                       \
  {                                                                            \
    (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),                       \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
  }

#endif /* JW_RPC_RPC_INT_H */
