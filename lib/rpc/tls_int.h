/*
 * Internals of the TLS policy shared by the server and client roles.
 */
#ifndef JW_RPC_TLS_INT_H
#define JW_RPC_TLS_INT_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "jobworker/tls.h"

/* The exact TLS 1.3 suites we allow, CCM ones included. */
#define JW__TLS_SUITES                                                         \
  "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"                       \
  "TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_8_SHA256:TLS_AES_128_CCM_SHA256"

struct jw_tls_ctx_s {
  SSL_CTX *ssl;
  bool server;
};

/* The OpenSSL context inside ctx (for the roles and for tests). */
SSL_CTX *jw__tls_ctx_ssl(const jw_tls_ctx_t *ctx);

/*
 * The subject CN of the verified peer certificate as a new string, or NULL
 * when there is no certificate, no CN, more than one CN, or a CN holding a
 * NUL byte: each of those is "no usable identity".
 */
char *jw__tls_peer_cn(SSL *ssl);

#endif /* JW_RPC_TLS_INT_H */
