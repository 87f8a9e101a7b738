/*
 * The TLS policy: TLS 1.3 only, the five TLS 1.3 suites, mutual
 * certificate authentication against one CA, ALPN h2. Both roles build
 * their SSL_CTX here so the policy lives in one place.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls_int.h"

static void seterr(char *errbuf, size_t errlen, const char *fmt, ...) {
  if (errbuf == NULL || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, errlen, fmt, ap);
  va_end(ap);
}

/* The most telling OpenSSL reason on the queue, which is then cleared. */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r != NULL ? r : "unknown OpenSSL error";
}

/*
 * Checks up front that a file can be read, so a missing or unreadable file
 * is reported with the system's reason rather than OpenSSL's.
 */
static int readable(const char *what, const char *path, char *errbuf,
                    size_t errlen) {
  if (path == NULL || *path == '\0') {
    seterr(errbuf, errlen, "no %s file was given", what);
    return JW_EINVAL;
  }
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    int err = errno;
    seterr(errbuf, errlen, "cannot read the %s %s: %s", what, path,
           strerror(err));
    return -err;
  }
  fclose(f);
  return 0;
}

/*
 * Refuses a client that offers no ALPN at all: OpenSSL only calls the
 * select callback when the extension is present, and the policy is that
 * such a handshake fails with no_application_protocol.
 */
static int client_hello_cb(SSL *ssl, int *al, void *arg) {
  const unsigned char *ext;
  size_t len;
  if (!SSL_client_hello_get0_ext(
          ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
          &len)) {
    *al = SSL_AD_NO_APPLICATION_PROTOCOL;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg) {
  static const unsigned char h2[] = {2, 'h', '2'};
  unsigned char *sel;
  unsigned char sellen;
  if (SSL_select_next_proto(&sel, &sellen, h2, sizeof(h2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  *outlen = sellen;
  return SSL_TLSEXT_ERR_OK;
}

static int ctx_new(bool server, const char *cacert, const char *cert,
                   const char *key, jw_tls_ctx_t **out, char *errbuf,
                   size_t errlen) {
  SSL_CTX *ssl = NULL;
  jw_tls_ctx_t *ctx = NULL;
  int rc;

  *out = NULL;
  if ((rc = readable("CA certificate", cacert, errbuf, errlen)) != 0 ||
      (rc = readable("certificate", cert, errbuf, errlen)) != 0 ||
      (rc = readable("private key", key, errbuf, errlen)) != 0)
    return rc;

  ERR_clear_error();
  rc = JW_ETLS;
  ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ssl == NULL) {
    seterr(errbuf, errlen, "cannot create a TLS context: %s", ssl_reason());
    goto error;
  }
  if (!SSL_CTX_set_min_proto_version(ssl, TLS1_3_VERSION) ||
      !SSL_CTX_set_max_proto_version(ssl, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ssl, JW__TLS_SUITES)) {
    seterr(errbuf, errlen, "cannot set the TLS 1.3 policy: %s", ssl_reason());
    goto error;
  }
  SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  /* An idle connection gives its 2 x 16 KiB record buffers back; most of a
   * server's connections are idle at any time. */
  SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  /* No resumption: every connection presents and verifies certificates. */
  SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ssl, 0);

  if (!SSL_CTX_load_verify_file(ssl, cacert)) {
    seterr(errbuf, errlen, "cannot load the CA certificate %s: %s", cacert,
           ssl_reason());
    goto error;
  }
  if (!SSL_CTX_use_certificate_chain_file(ssl, cert)) {
    seterr(errbuf, errlen, "cannot load the certificate %s: %s", cert,
           ssl_reason());
    goto error;
  }
  if (!SSL_CTX_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM)) {
    const char *r = ssl_reason();
    if (strstr(r, "values mismatch") != NULL || strstr(r, "mismatch") != NULL) {
      seterr(errbuf, errlen,
             "the private key %s does not match the certificate %s", key, cert);
      rc = JW_EVERIFY;
    } else {
      seterr(errbuf, errlen, "cannot load the private key %s: %s", key, r);
    }
    goto error;
  }
  if (!SSL_CTX_check_private_key(ssl)) {
    ERR_clear_error();
    seterr(errbuf, errlen,
           "the private key %s does not match the certificate %s", key, cert);
    rc = JW_EVERIFY;
    goto error;
  }

  X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ssl);
  if (server) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cacert);
    if (names == NULL) {
      seterr(errbuf, errlen, "cannot read CA names from %s: %s", cacert,
             ssl_reason());
      goto error;
    }
    SSL_CTX_set_client_CA_list(ssl, names);
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    /* A certificate made only for serverAuth is not a client identity. */
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);
    SSL_CTX_set_client_hello_cb(ssl, client_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ssl, alpn_select_cb, NULL);
  } else {
    static const unsigned char h2[] = {2, 'h', '2'};
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
    /* Unlike most OpenSSL calls this one returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ssl, h2, sizeof(h2)) != 0) {
      seterr(errbuf, errlen, "cannot offer ALPN h2: %s", ssl_reason());
      goto error;
    }
  }

  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    rc = -ENOMEM;
    seterr(errbuf, errlen, "out of memory");
    goto error;
  }
  ctx->ssl = ssl;
  ctx->server = server;
  *out = ctx;
  return 0;

error:
  SSL_CTX_free(ssl);
  return rc;
}

int jw_tls_ctx_new_server(const char *cacert, const char *cert, const char *key,
                          jw_tls_ctx_t **out, char *errbuf, size_t errlen) {
  return ctx_new(true, cacert, cert, key, out, errbuf, errlen);
}

int jw_tls_ctx_new_client(const char *cacert, const char *cert, const char *key,
                          jw_tls_ctx_t **out, char *errbuf, size_t errlen) {
  return ctx_new(false, cacert, cert, key, out, errbuf, errlen);
}

/* The CA certificate in store whose subject issued crl and signed it. */
static X509 *crl_issuer(X509_STORE *store, X509_CRL *crl) {
  STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
  for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
    X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
    EVP_PKEY *key;
    if (ca == NULL ||
        X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0)
      continue;
    key = X509_get0_pubkey(ca);
    if (key != NULL && X509_CRL_verify(crl, key) == 1)
      return ca;
  }
  ERR_clear_error();
  return NULL;
}

int jw_tls_ctx_set_crl(jw_tls_ctx_t *ctx, const char *crl, char *errbuf,
                       size_t errlen) {
  X509_STORE *store;
  X509_CRL *c;
  BIO *bio;
  int rc, n = 0;

  if (ctx == NULL || !ctx->server) {
    seterr(errbuf, errlen, "a CRL is for the server's context");
    return JW_EINVAL;
  }
  if ((rc = readable("CRL", crl, errbuf, errlen)) != 0)
    return rc;
  bio = BIO_new_file(crl, "r");
  if (bio == NULL) {
    seterr(errbuf, errlen, "cannot read the CRL %s: %s", crl, ssl_reason());
    return JW_ETLS;
  }
  store = SSL_CTX_get_cert_store(ctx->ssl);
  rc = 0;
  while ((c = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(c);
    if (crl_issuer(store, c) == NULL) {
      seterr(errbuf, errlen,
             "the CRL %s is not signed by the CA that client certificates "
             "must chain to",
             crl);
      rc = JW_EVERIFY;
    } else if (next != NULL && X509_cmp_current_time(next) < 0) {
      seterr(errbuf, errlen,
             "the CRL %s is past its next update; make a new one (jw-certs "
             "crl)",
             crl);
      rc = JW_EVERIFY;
    } else if (!X509_STORE_add_crl(store, c)) {
      seterr(errbuf, errlen, "cannot use the CRL %s: %s", crl, ssl_reason());
      rc = JW_ETLS;
    }
    X509_CRL_free(c);
    if (rc != 0)
      break;
    n++;
  }
  BIO_free(bio);
  if (rc != 0)
    return rc;
  ERR_clear_error(); /* the end of the file reads as "no start line" */
  if (n == 0) {
    seterr(errbuf, errlen, "no CRL (BEGIN X509 CRL) in %s", crl);
    return JW_EINVAL;
  }
  /* The leaf only: the CA itself is the trust anchor. */
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return 0;
}

void jw_tls_ctx_free(jw_tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

SSL_CTX *jw__tls_ctx_ssl(const jw_tls_ctx_t *ctx) { return ctx->ssl; }

void jw__tls_drop_peer_chain(SSL *ssl) {
  STACK_OF(X509) *sk = SSL_get_peer_cert_chain(ssl);
  X509 *x;
  while (sk != NULL && (x = sk_X509_pop(sk)) != NULL)
    X509_free(x);
}

char *jw__tls_peer_cn(SSL *ssl) {
  X509 *peer = SSL_get0_peer_certificate(ssl);
  if (peer == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
    return NULL;
  X509_NAME *name = X509_get_subject_name(peer);
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
    return NULL;
  ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char *utf8 = NULL;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len <= 0 || memchr(utf8, '\0', (size_t)len) != NULL) {
    OPENSSL_free(utf8);
    return NULL;
  }
  char *cn = strndup((const char *)utf8, (size_t)len);
  OPENSSL_free(utf8);
  return cn;
}
