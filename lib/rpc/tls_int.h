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

/*
 * Frees the certificates the peer sent beyond its own once the handshake
 * verified them. An OpenSSL peer adds its CA's from its trust store by
 * itself, and the session keeps that copy, parsed with its RSA key (3-4
 * KiB for RSA 4096), for the connection's life, though nothing reads it
 * again. SSL_get_peer_cert_chain returns the session's own stack, not a
 * copy: each certificate popped from it carries the reference the stack
 * held. The peer's certificate (SSL_get0_peer_certificate) and the
 * verified chain, whose CA is the trust store's, stay.
 */
void jw__tls_drop_peer_chain(SSL *ssl);

#endif /* JW_RPC_TLS_INT_H */
