/*
 * Server internals reachable from tests and fuzzers: the plaintext test
 * connection. Built only into the jwrpc_test library (lib/rpc/meson.build).
 */
#ifndef JW_RPC_SERVER_TEST_H
#define JW_RPC_SERVER_TEST_H

#include "conn_int.h"
#include "jobworker/server.h"

/*
 * Creates a server connection with no socket and no TLS whose client
 * identity is cn (NULL: none): bytes given to jw__conn_input are taken as
 * plaintext HTTP/2 from a client, and what the server sends gathers in
 * c->gather (dropped past a cap). Returns 0 or a negative code.
 */
int jw__server_test_conn(jw_rpc_server_t *srv, const char *cn,
                         jw__conn_t **out);

/* Closes a connection made by jw__server_test_conn. */
void jw__server_test_close(jw__conn_t *c);

#endif /* JW_RPC_SERVER_TEST_H */
