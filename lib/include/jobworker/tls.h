/*
 * jw_tls: the TLS 1.3 policy both RPC roles share (mutual TLS, the five
 * TLS 1.3 suites, ALPN h2), as a context made from PEM files.
 *
 * Nothing here prints: failures come back as codes, with a sentence in
 * the errbuf arguments.
 */
#ifndef JOBWORKER_TLS_H
#define JOBWORKER_TLS_H

#include <stddef.h>

#include "jobworker/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TLS policy ------------------------------------------------------- */

typedef struct jw_tls_ctx_s jw_tls_ctx_t;

/*
 * The PEM files of one side's identity, as its settings name them: the CA
 * that signs the peer (cacert), its own certificate (cert) and key.
 */
typedef struct {
  const char *cacert;
  const char *cert;
  const char *key;
} jw_tls_files_t;

/*
 * Creates the server's TLS context: TLS 1.3 only, the five TLS 1.3 suites,
 * client certificate required and verified against cacert with the
 * clientAuth purpose, ALPN h2 required. Returns 0, or a negative code with
 * a sentence naming the file and the reason in errbuf (unreadable file,
 * key not matching its certificate, ...).
 */
int jw_tls_ctx_new_server(const char *cacert, const char *cert, const char *key,
                          jw_tls_ctx_t **out, char *errbuf, size_t errlen);

/*
 * Creates the client's TLS context: TLS 1.3 only, the five suites, the
 * server certificate verified against cacert (serverAuth purpose), ALPN h2
 * offered, cert/key sent as the client certificate.
 */
int jw_tls_ctx_new_client(const char *cacert, const char *cert, const char *key,
                          jw_tls_ctx_t **out, char *errbuf, size_t errlen);

void jw_tls_ctx_free(jw_tls_ctx_t *ctx);

/*
 * Makes a server context refuse revoked client certificates: loads the
 * CRLs of the PEM file crl (each must be signed by a CA of the context)
 * and checks every client's leaf certificate against them at the
 * handshake; a revoked one fails it with the certificate_revoked alert.
 * Call before serving. Returns 0, or a negative code with a sentence in
 * errbuf (unreadable file, no CRL in it, a CRL of another CA, one past
 * its next update).
 */
int jw_tls_ctx_set_crl(jw_tls_ctx_t *ctx, const char *crl, char *errbuf,
                       size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_TLS_H */
