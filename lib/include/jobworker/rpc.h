/*
 * jw_rpc: gRPC over HTTP/2 (nghttp2) over TLS 1.3 (OpenSSL, through a
 * BIO of the connection's own) on a libuv loop. Server and client roles share
 * the connection code.
 *
 * This header includes the three that declare it: jobworker/tls.h (the
 * TLS policy), jobworker/server.h (the server role and its calls) and
 * jobworker/client.h (the client role). Include just the one you need, or
 * this one for all.
 */
#ifndef JOBWORKER_RPC_H
#define JOBWORKER_RPC_H

#include "jobworker/client.h"
#include "jobworker/server.h"
#include "jobworker/tls.h"

#endif /* JOBWORKER_RPC_H */
