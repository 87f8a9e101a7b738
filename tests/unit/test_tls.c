/*
 * Unit tests for the TLS policy contexts: loading good files, sentences
 * for bad ones, and the policy itself (TLS 1.3 only, exactly five suites,
 * verification purposes).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../../lib/rpc/tls_int.h"
#include "../test_common.h"
#include "jobworker/rpc.h"

static const char *certdir;

static const char *cert(const char *name) {
  static char bufs[4][512];
  static int i;
  char *b = bufs[i++ % 4];
  snprintf(b, 512, "%s/%s", certdir, name);
  return b;
}

typedef int (*ctx_new_fn)(const char *, const char *, const char *,
                          jw_tls_ctx_t **, char *, size_t);

static void good(ctx_new_fn fn, const char *name) {
  char err[256] = "";
  char c[64], k[64];
  jw_tls_ctx_t *ctx = NULL;
  snprintf(c, sizeof(c), "%s.cert", name);
  snprintf(k, sizeof(k), "%s.key", name);
  ck_assert_msg(fn(cert("ca.cert"), cert(c), cert(k), &ctx, err, sizeof(err)) ==
                    0,
                "%s", err);
  ck_assert_ptr_nonnull(ctx);
  jw_tls_ctx_free(ctx);
}

START_TEST(test_good_files) {
  good(jw_tls_ctx_new_server, "server");
  good(jw_tls_ctx_new_client, "alice");
  good(jw_tls_ctx_new_client, "bob");
  jw_tls_ctx_free(NULL);
}
END_TEST

START_TEST(test_missing_file_named) {
  char err[256] = "";
  jw_tls_ctx_t *ctx = (jw_tls_ctx_t *)1;
  const char *missing = "/nonexistent/dir/nope.cert";
  int rc = jw_tls_ctx_new_server(cert("ca.cert"), missing, cert("server.key"),
                                 &ctx, err, sizeof(err));
  ck_assert_int_eq(rc, -ENOENT);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(err, missing) != NULL, "%s", err);
  ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);

  rc = jw_tls_ctx_new_client("/nonexistent/ca.cert", cert("alice.cert"),
                             cert("alice.key"), &ctx, err, sizeof(err));
  ck_assert_int_lt(rc, 0);
  ck_assert_msg(strstr(err, "/nonexistent/ca.cert") != NULL, "%s", err);

  rc = jw_tls_ctx_new_client(cert("ca.cert"), cert("alice.cert"),
                             "/nonexistent/alice.key", &ctx, err, sizeof(err));
  ck_assert_int_lt(rc, 0);
  ck_assert_msg(strstr(err, "/nonexistent/alice.key") != NULL, "%s", err);
}
END_TEST

START_TEST(test_garbage_file) {
  char err[256] = "";
  char path[] = "/tmp/jw-tls-garbage-XXXXXX";
  jw_tls_ctx_t *ctx = NULL;
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "not a certificate\n", 18), 18);
  close(fd);
  int rc = jw_tls_ctx_new_server(cert("ca.cert"), path, cert("server.key"),
                                 &ctx, err, sizeof(err));
  unlink(path);
  ck_assert_int_lt(rc, 0);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(err, path) != NULL, "%s", err);
}
END_TEST

START_TEST(test_key_mismatch) {
  char err[256] = "";
  jw_tls_ctx_t *ctx = NULL;
  int rc = jw_tls_ctx_new_client(cert("ca.cert"), cert("alice.cert"),
                                 cert("bob.key"), &ctx, err, sizeof(err));
  ck_assert_int_lt(rc, 0);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(err, "does not match") != NULL, "%s", err);
  ck_assert_msg(strstr(err, "bob.key") != NULL, "%s", err);
  ck_assert_msg(strstr(err, "alice.cert") != NULL, "%s", err);
  /* The sentence fits a small buffer without overflow. */
  char small[8];
  rc = jw_tls_ctx_new_server(cert("ca.cert"), cert("server.cert"),
                             cert("alice.key"), &ctx, small, sizeof(small));
  ck_assert_int_lt(rc, 0);
  ck_assert_uint_lt(strlen(small), sizeof(small));
}
END_TEST

static jw_tls_ctx_t *make(bool server) {
  char err[256];
  jw_tls_ctx_t *ctx = NULL;
  int rc =
      server ? jw_tls_ctx_new_server(cert("ca.cert"), cert("server.cert"),
                                     cert("server.key"), &ctx, err, sizeof(err))
             : jw_tls_ctx_new_client(cert("ca.cert"), cert("alice.cert"),
                                     cert("alice.key"), &ctx, err, sizeof(err));
  ck_assert_msg(rc == 0, "%s", err);
  return ctx;
}

/* The suites a connection could actually use are exactly the five. */
static void check_suites(bool server) {
  static const char *want[] = {
      "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
      "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
      "TLS_AES_128_CCM_SHA256"};
  jw_tls_ctx_t *ctx = make(server);
  SSL *ssl = SSL_new(jw__tls_ctx_ssl(ctx));
  ck_assert_ptr_nonnull(ssl);
  STACK_OF(SSL_CIPHER) *sk = SSL_get1_supported_ciphers(ssl);
  ck_assert_ptr_nonnull(sk);
  ck_assert_int_eq(sk_SSL_CIPHER_num(sk), 5);
  for (int i = 0; i < 5; i++) {
    const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
    ck_assert_str_eq(SSL_CIPHER_get_name(c), want[i]);
    ck_assert_str_eq(SSL_CIPHER_get_version(c), "TLSv1.3");
  }
  sk_SSL_CIPHER_free(sk);
  SSL_free(ssl);
  jw_tls_ctx_free(ctx);
}

START_TEST(test_exactly_five_suites) {
  check_suites(true);
  check_suites(false);
}
END_TEST

START_TEST(test_tls13_only) {
  for (int server = 0; server < 2; server++) {
    jw_tls_ctx_t *ctx = make(server);
    SSL_CTX *s = jw__tls_ctx_ssl(ctx);
    ck_assert_int_eq(SSL_CTX_get_min_proto_version(s), TLS1_3_VERSION);
    ck_assert_int_eq(SSL_CTX_get_max_proto_version(s), TLS1_3_VERSION);
    jw_tls_ctx_free(ctx);
  }
}
END_TEST

START_TEST(test_verify_policy) {
  jw_tls_ctx_t *sctx = make(true);
  jw_tls_ctx_t *cctx = make(false);
  SSL_CTX *s = jw__tls_ctx_ssl(sctx);
  SSL_CTX *c = jw__tls_ctx_ssl(cctx);
  ck_assert_int_eq(SSL_CTX_get_verify_mode(s),
                   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  ck_assert_int_eq(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER);
  /* The purposes themselves are exercised end to end in test_rpc. */
  jw_tls_ctx_free(sctx);
  jw_tls_ctx_free(cctx);
}
END_TEST

int main(void) {
  certdir = getenv("JW_TEST_CERTS");
  if (certdir == NULL || access(cert("ca.cert"), R_OK) != 0) {
    fprintf(stderr, "JW_TEST_CERTS does not hold ca.cert: skipping\n");
    return 77;
  }
  Suite *s = suite_create("tls");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {
      test_good_files,          test_missing_file_named,
      test_garbage_file,        test_key_mismatch,
      test_exactly_five_suites, test_tls13_only,
      test_verify_policy,       NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
