/*
 * The connection core shared by both roles: TLS over a libuv TCP handle
 * through one BIO of our own (below), and the HTTP/2 send loop. The shape
 * follows h2o's lib/http2/connection.c: one write in flight, the next batch
 * gathering, and a connection closed mid-write finished by the write callback.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sys/mman.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "conn_int.h"
#include "jobworker/error.h"
#include "rpc_int.h"

/* The error sentence when there is no memory for the real one. */
static char conn_nomem_msg[] = "connection failed (no memory to say why)";

void jw__conn_handle_closed(uv_handle_t *h) {
  jw__conn_t *c = h->data;
  if (--c->open_handles > 0)
    return;
  /* Nothing of ours is on the stack any more: the close callbacks run
   * from the loop, so the session and the TLS state can go now. */
  if (c->h2 != NULL)
    nghttp2_session_del(c->h2);
  c->h2 = NULL;
  SSL_free(c->ssl); /* frees the BIO */
  c->ssl = NULL;
  jw__buf_free(&c->gather);
  jw__buf_free(&c->inflight);
  jw__buf_free(&c->pend);
  free(c->wreq); /* a write in flight was called back before the close */
  c->wreq = NULL;
  if (c->errmsg != conn_nomem_msg)
    free(c->errmsg);
  c->errmsg = NULL;
  c->ops->closed(c);
}

static void on_turn(jw__turn_t *t);

int jw__conn_init(jw__conn_t *c, uv_loop_t *loop, jw__turnq_t *turns,
                  const jw__conn_ops_t *ops, void *owner, bool server) {
  int rc;
  c->loop = loop;
  c->ops = ops;
  c->transport = &jw__tcp_transport;
  c->owner = owner;
  c->server = server;
  c->alert_recv = -1;
  c->alert_sent = -1;
  if ((rc = uv_tcp_init(loop, &c->tcp)) != 0)
    return rc;
  c->tcp.data = c;
  jw__turn_init(&c->next, turns, on_turn, c);
  c->open_handles = 1;
  return 0;
}

/*
 * Records the fatal alerts the peer sent and those OpenSSL sent on our
 * side, for the error sentence. SSL_CB_READ_ALERT and SSL_CB_WRITE_ALERT
 * share the SSL_CB_ALERT bit: which way the alert went is the READ or
 * WRITE bit.
 */
static void info_cb(const SSL *ssl, int where, int ret) {
  if (!(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL)
    return;
  jw__conn_t *c = SSL_get_app_data(ssl);
  if (c == NULL)
    return;
  if (where & SSL_CB_READ)
    c->alert_recv = ret & 0xff;
  else if (where & SSL_CB_WRITE)
    c->alert_sent = ret & 0xff;
}

/* An alert's name in lower case ("unknown ca", "certificate required"). */
static void alert_name(int alert, char *out, size_t cap) {
  /* OpenSSL 3.0 has no long names for these TLS 1.3 alerts. */
  const char *desc =
      alert == TLS13_AD_CERTIFICATE_REQUIRED ? "certificate required"
      : alert == TLS13_AD_MISSING_EXTENSION  ? "missing extension"
                                            : SSL_alert_desc_string_long(alert);
  size_t i;
  for (i = 0; desc[i] != '\0' && i + 1 < cap; i++)
    out[i] = (char)(desc[i] >= 'A' && desc[i] <= 'Z' ? desc[i] + 32 : desc[i]);
  out[i] = '\0';
}

static bool is_ip(const char *host) {
  struct in6_addr a6;
  struct in_addr a4;
  return uv_inet_pton(AF_INET, host, &a4) == 0 ||
         uv_inet_pton(AF_INET6, host, &a6) == 0;
}

/*
 * One read buffer serves every connection on a thread: read_cb hands the
 * bytes to OpenSSL's BIO (which copies them) or nghttp2 before it returns,
 * and libuv never runs two read callbacks at once on a thread, so nothing
 * is left in it between reads. A buffer per connection would cost 64 KiB
 * for every idle or half-open connection.
 */
static _Thread_local uint8_t rbuf[JW__CONN_RBUF];

/*
 * nghttp2's frames are gathered here and handed to SSL_write together, so
 * that small frames make whole TLS records. jw__conn_flush always empties
 * it before returning, so it too is shared by the thread's connections;
 * stage_owner marks the flush using it.
 */
static _Thread_local uint8_t stage[JW__CONN_STAGE];
static _Thread_local size_t stage_len;
static _Thread_local jw__conn_t *stage_owner;

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  buf->base = (char *)rbuf;
  buf->len = sizeof(rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  jw__conn_t *c = s->data;
  if (nread == 0 || c->dead || c->closing)
    return;
  if (nread < 0) {
    uv_read_stop(s);
    if (nread == UV_EOF)
      jw__conn_fail(c, c->tls_up ? UV_EOF : UV_ECONNRESET,
                    c->tls_up ? "the peer closed the connection"
                              : "the peer closed the connection during the "
                                "TLS handshake");
    else
      jw__conn_fail(c, (int)nread, "connection error: %s",
                    uv_strerror((int)nread));
    return;
  }
  jw__conn_input(c, (const uint8_t *)buf->base, (size_t)nread);
}

/*
 * The write buffers grow under the library's one policy (buf.h). Up to
 * the gather cap plus one record the limit is that, so a buffer past the
 * cap gets room for one more record rather than a doubling; past it, the
 * hard limit of JW__CONN_WBUF_MAX. A write of a full record or more is a
 * bulk flush (a stream's DATA), which fills the gather to its cap: it
 * gets that room at once, where doublings from 16 KiB copied what was
 * gathered (65 KiB of copies for every 64 KiB flushed).
 */
static int buf_reserve(jw__buf_t *b, size_t more) {
  size_t soft = JW__CONN_WBUF_CAP + 32768;
  return jw__buf_reserve(b, more, more >= JW__CONN_RECORD ? soft : 16384,
                         b->len + more <= soft ? soft : JW__CONN_WBUF_MAX);
}

/*
 * The connection's one BIO, for both directions. OpenSSL writes its
 * records straight into the gather buffer and reads the received bytes
 * where they already are: c->pend, then the caller's bytes in hand
 * (c->in). A pair of memory BIOs copied every byte once more each way and
 * kept the buffers they grew during the handshake for the connection's
 * life (9 KiB per idle connection); this one holds nothing of its own.
 */
static int bio_write(BIO *b, const char *p, int n) {
  jw__conn_t *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0)
    return 0;
  if (buf_reserve(&c->gather, (size_t)n) != 0)
    return -1;
  memcpy(c->gather.base + c->gather.len, p, (size_t)n);
  c->gather.len += (size_t)n;
  return n;
}

static int bio_read(BIO *b, char *out, int cap) {
  jw__conn_t *c = BIO_get_data(b);
  size_t n;
  BIO_clear_retry_flags(b);
  if (cap <= 0)
    return 0;
  if (c->pend.len > 0) {
    n = c->pend.len < (size_t)cap ? c->pend.len : (size_t)cap;
    memcpy(out, c->pend.base, n);
    /* Only a handshake put off keeps bytes here, a few KiB at most. */
    memmove(c->pend.base, c->pend.base + n, c->pend.len - n);
    c->pend.len -= n;
    if (c->pend.len == 0)
      jw__buf_free(&c->pend);
    return (int)n;
  }
  if (c->in_len > 0) {
    n = c->in_len < (size_t)cap ? c->in_len : (size_t)cap;
    memcpy(out, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (int)n;
  }
  /* Nothing received yet: "retry", not end of file. */
  BIO_set_retry_read(b);
  return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  jw__conn_t *c = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* every write is already in the gather buffer */
  case BIO_CTRL_PENDING:
    return (long)(c->pend.len + c->in_len);
  default:
    return 0;
  }
}

static pthread_mutex_t bio_lock = PTHREAD_MUTEX_INITIALIZER;
static BIO_METHOD *bio_method;

/* The method, made once for the process (again if making it failed). */
static BIO_METHOD *conn_bio_method(void) {
  pthread_mutex_lock(&bio_lock);
  if (bio_method == NULL) {
    BIO_METHOD *m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "jw conn");
    if (m != NULL &&
        (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
         !BIO_meth_set_ctrl(m, bio_ctrl))) {
      BIO_meth_free(m);
      m = NULL;
    }
    bio_method = m;
  }
  BIO_METHOD *m = bio_method;
  pthread_mutex_unlock(&bio_lock);
  return m;
}

int jw__conn_start_tls(jw__conn_t *c, SSL_CTX *ctx, const char *host) {
  BIO_METHOD *m = conn_bio_method();
  BIO *bio = m != NULL ? BIO_new(m) : NULL;
  c->ssl = SSL_new(ctx);
  if (c->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    SSL_free(c->ssl);
    c->ssl = NULL;
    return -ENOMEM;
  }
  BIO_set_data(bio, c);
  BIO_set_init(bio, 1);
  /* One reference, for both directions. */
  SSL_set_bio(c->ssl, bio, bio);
  SSL_set_app_data(c->ssl, c);
  SSL_set_info_callback(c->ssl, info_cb);
  if (c->server) {
    SSL_set_accept_state(c->ssl);
  } else {
    SSL_set_connect_state(c->ssl);
    if (host != NULL && *host != '\0') {
      X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
      if (is_ip(host)) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(param, host))
          return JW_EINVAL;
      } else {
        SSL_set_tlsext_host_name(c->ssl, host);
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!X509_VERIFY_PARAM_set1_host(param, host, 0))
          return JW_EINVAL;
      }
    }
  }
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (rc != 0)
    return rc;
  if (!c->server)
    jw__conn_input(c, NULL, 0);
  return 0;
}

/* Builds the sentence and code for a failed TLS operation. */
static void tls_failed(jw__conn_t *c) {
  long vr = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  if (vr != X509_V_OK && (!c->server || SSL_get0_peer_certificate(c->ssl))) {
    jw__conn_fail(c, JW_EVERIFY, "certificate verify failed: %s",
                  X509_verify_cert_error_string(vr));
    return;
  }
  char low[64];
  if (c->alert_recv >= 0) {
    alert_name(c->alert_recv, low, sizeof(low));
    switch (c->alert_recv) {
    case SSL3_AD_BAD_CERTIFICATE:
    case SSL3_AD_UNSUPPORTED_CERTIFICATE:
    case SSL3_AD_CERTIFICATE_REVOKED:
    case SSL3_AD_CERTIFICATE_EXPIRED:
    case SSL3_AD_CERTIFICATE_UNKNOWN:
    case TLS1_AD_UNKNOWN_CA:
    case TLS1_AD_ACCESS_DENIED:
    case TLS13_AD_CERTIFICATE_REQUIRED:
      if (!c->server) {
        jw__conn_fail(c, JW_ETLS,
                      "the server refused this client certificate (TLS "
                      "alert: %s)",
                      low);
        return;
      }
      break;
    default:
      break;
    }
    jw__conn_fail(c, JW_ETLS, "the peer sent a TLS alert: %s", low);
    return;
  }
  if (c->alert_sent >= 0) {
    /* Our side refused the handshake (no certificate, no h2, TLS 1.2). */
    alert_name(c->alert_sent, low, sizeof(low));
    jw__conn_fail(c, JW_ETLS, "TLS handshake failed: we sent alert %s: %s", low,
                  reason != NULL ? reason : "unknown reason");
    return;
  }
  jw__conn_fail(c, JW_ETLS, "TLS handshake failed: %s",
                reason != NULL ? reason : "unknown reason");
}

static int tls_write(jw__conn_t *c, const uint8_t *p, size_t n) {
  if (n == 0)
    return 0;
  if (c->ssl == NULL) {
    /* Plaintext mode (tests and fuzzing): the bytes are the output. */
    if (buf_reserve(&c->gather, n) != 0)
      return -ENOMEM;
    memcpy(c->gather.base + c->gather.len, p, n);
    c->gather.len += n;
    return 0;
  }
  /* The BIO never blocks, so the write is always whole. */
  return SSL_write(c->ssl, p, (int)n) > 0 ? 0 : JW_ETLS;
}

static int stage_flush(jw__conn_t *c) {
  int rc = tls_write(c, stage, stage_len);
  stage_len = 0;
  return rc;
}

/*
 * Gives back the write buffers of a connection with nothing to send: an
 * idle connection then holds no write memory at all, and a busy one keeps
 * its buffers because a write is always in flight.
 */
static void release_write_buffers(jw__conn_t *c) {
  if (c->writing || c->gather.len > 0 || c->inflight.len > 0)
    return;
  jw__buf_free(&c->gather);
  jw__buf_free(&c->inflight);
  free(c->wreq);
  c->wreq = NULL;
}

static void write_cb(uv_write_t *req, int status);

/*
 * Sends what the socket takes now, without a libuv write request: the
 * byte count, 0 when it takes nothing (or its descriptor is not there),
 * or a negative code. MSG_NOSIGNAL because a peer gone makes EPIPE, not
 * a SIGPIPE the embedder may not ignore.
 */
static ssize_t try_send(jw__conn_t *c, const uint8_t *p, size_t n) {
  uv_os_fd_t fd;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) != 0 ||
      uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
    return 0;
  ssize_t r;
  do
    r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  return r;
}

/*
 * The socket is tried first: a write it takes whole (the usual case, a
 * call's reply) is finished here, with no libuv write request. A
 * uv_write that completes at once still reports on the next loop turn
 * and, when its queue drains, stops a POLLOUT watch it never started,
 * which costs an epoll_ctl per write. Only what the socket did not take
 * goes to uv_write, as the one write in flight.
 */
int jw__tcp_write(jw__conn_t *c) {
  ssize_t sent = try_send(c, c->gather.base, c->gather.len);
  if (sent < 0) {
    int rc = (int)sent;
    c->gather.len = 0;
    jw__conn_fail(c, rc, "write failed: %s", uv_strerror(rc));
    return rc;
  }
  size_t took = (size_t)sent;
  if (took == c->gather.len) {
    c->gather.len = 0;
    c->nwrites++;
    /* Frames the gather cap held back go out on the next turn, as they
     * would after write_cb: one connection cannot hold the loop. */
    if (c->h2 != NULL && nghttp2_session_want_write(c->h2))
      jw__conn_schedule(c);
    release_write_buffers(c);
    return 0;
  }
  if (took > 0) {
    /* The rest starts the buffer, so that its length is what waits. */
    memmove(c->gather.base, c->gather.base + took, c->gather.len - took);
    c->gather.len -= took;
  }
  /* The request lives as long as the write buffers do: an idle
   * connection has neither (release_write_buffers). */
  if (c->wreq == NULL && (c->wreq = malloc(sizeof(*c->wreq))) == NULL) {
    jw__conn_fail(c, -ENOMEM, "write failed: out of memory");
    return -ENOMEM;
  }
  jw__buf_t t = c->inflight;
  c->inflight = c->gather;
  c->gather = t;
  c->gather.len = 0;
  uv_buf_t b = uv_buf_init((char *)c->inflight.base, (unsigned)c->inflight.len);
  c->wreq->data = c;
  int rc = uv_write(c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (rc != 0) {
    c->inflight.len = 0;
    jw__conn_fail(c, rc, "write failed: %s", uv_strerror(rc));
    return rc;
  }
  c->writing = true;
  return 0;
}

void jw__tcp_close(jw__conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, jw__conn_handle_closed);
}

const jw__transport_ops_t jw__tcp_transport = {jw__tcp_write, jw__tcp_close};

static void start_write(jw__conn_t *c) {
  if (c->writing || c->gather.len == 0 || c->open_handles == 0)
    return;
  c->transport->write(c);
}

static void close_handles(jw__conn_t *c) {
  jw__turn_cancel(&c->next);
  c->transport->close(c);
}

static void write_cb(uv_write_t *req, int status) {
  jw__conn_t *c = req->data;
  c->writing = false;
  c->inflight.len = 0;
  if (c->closing) {
    /* The close waited for this write; finish it unless more is queued. */
    if (c->close_wait) {
      if (status == 0 && c->gather.len > 0) {
        start_write(c);
        if (c->writing)
          return;
      }
      c->close_wait = false;
      close_handles(c);
    }
    return;
  }
  if (status < 0) {
    jw__conn_fail(c, status, "write failed: %s", uv_strerror(status));
    return;
  }
  c->nwrites++;
  jw__conn_flush(c);
  if (!c->closing && c->ops->after_io != NULL)
    c->ops->after_io(c);
  if (!c->closing)
    release_write_buffers(c);
}

/*
 * Feeds nghttp2's frames to TLS. With staged, small frames are packed into
 * the shared stage first so that they leave together in whole TLS records
 * (frames of half a record or more are written through); without
 * it (a flush nested inside another's nghttp2 callbacks, whose frames
 * would otherwise mix with the outer connection's), each frame is written
 * through. Returns 0, JW_EHTTP2 (the connection has been failed) or
 * JW_ETLS.
 */
static int send_frames(jw__conn_t *c, bool staged) {
  while (c->gather.len < JW__CONN_WBUF_CAP) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n < 0) {
      jw__conn_fail(c, JW_EHTTP2, "HTTP/2 send failed: %s",
                    nghttp2_strerror((int)n));
      return JW_EHTTP2;
    }
    if (n == 0)
      break;
    c->h2_sent = true;
    size_t len = (size_t)n;
    /* A frame of half a record or more leaves as a record of its own:
     * staging it would copy it for no fewer records (a stream's full
     * DATA frames fill a record each, 5 to 13 bytes short of it). */
    if (!staged || len >= sizeof(stage) / 2) {
      if ((staged && stage_flush(c) != 0) || tls_write(c, data, len) != 0)
        return JW_ETLS;
      continue;
    }
    if (stage_len + len > sizeof(stage) && stage_flush(c) != 0)
      return JW_ETLS;
    memcpy(stage + stage_len, data, len);
    stage_len += len;
  }
  return staged && stage_flush(c) != 0 ? JW_ETLS : 0;
}

void jw__conn_flush(jw__conn_t *c) {
  if (c->closing && !c->close_wait)
    return;
  if (c->h2 != NULL && !c->dead && !c->closing) {
    /* The stage belongs to one flush at a time, and is empty after it. */
    bool staged = stage_owner == NULL;
    if (staged)
      stage_owner = c;
    int rc = send_frames(c, staged);
    if (staged) {
      stage_len = 0;
      stage_owner = NULL;
    }
    if (rc == JW_EHTTP2)
      return;
    if (rc != 0)
      goto fail;
  }
  start_write(c);
  return;
fail:
  jw__conn_fail(c, JW_ETLS, "TLS write failed");
}

static void on_turn(jw__turn_t *t) {
  jw__conn_t *c = t->data;
  if (c->closing)
    return;
  if (c->hs_deferred) {
    /* The ClientHello waits in c->pend; take it up now. */
    c->hs_deferred = false;
    jw__conn_input(c, NULL, 0);
    if (c->closing)
      return;
  }
  if (c->ops->deferred != NULL)
    c->ops->deferred(c);
  if (c->closing)
    return;
  jw__conn_flush(c);
  if (!c->closing && c->ops->after_io != NULL)
    c->ops->after_io(c);
}

void jw__conn_read_pause(jw__conn_t *c, bool pause) {
  if (pause == c->read_paused || c->dead || c->closing ||
      c->open_handles == 0 || uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  c->read_paused = pause;
  if (pause)
    uv_read_stop((uv_stream_t *)&c->tcp);
  else if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
    jw__conn_fail(c, UV_EIO, "cannot resume reading");
}

/*
 * On the server, work scheduled while input is fed (a reply submitted by
 * a handler the request ran) is done when the input ends: the deferred
 * hook, the flush and after_io run there anyway, so a turn of its own
 * would only repeat them. The client's deferred hook hands messages to
 * the embedder and keeps its turn.
 */
void jw__conn_schedule(jw__conn_t *c) {
  if (c->closing)
    return;
  if (c->in_input && c->server) {
    c->turn_owed = true;
    return;
  }
  jw__turn_schedule(&c->next);
}

static void feed_h2(jw__conn_t *c, const uint8_t *p, size_t n) {
  if (c->h2 == NULL || c->dead)
    return;
  ssize_t r = nghttp2_session_mem_recv(c->h2, p, n);
  if (r < 0 && !c->dead && !c->closing)
    jw__conn_fail(c, JW_EHTTP2, "HTTP/2 error: %s", nghttp2_strerror((int)r));
}

/*
 * Keeps the bytes in hand that TLS did not take (the handshake was put
 * off) in c->pend, behind those kept before; up to JW__CONN_PEND_MAX,
 * which is far more than a handshake needs.
 */
static void keep_input(jw__conn_t *c) {
  if (c->in_len > 0 && !c->dead && !c->closing) {
    int rc = jw__buf_reserve(&c->pend, c->in_len, 4096, JW__CONN_PEND_MAX);
    if (rc == 0) {
      memcpy(c->pend.base + c->pend.len, c->in, c->in_len);
      c->pend.len += c->in_len;
    } else if (rc == -ENOMEM) {
      jw__conn_fail(c, -ENOMEM, "out of memory");
    } else {
      jw__conn_fail(c, rc,
                    "the peer sent more than %d bytes before the TLS "
                    "handshake",
                    JW__CONN_PEND_MAX);
    }
  }
  c->in = NULL;
  c->in_len = 0;
}

void jw__conn_input(jw__conn_t *c, const uint8_t *p, size_t n) {
  bool outer = !c->in_input;
  c->in_input = true;
  if (c->ssl == NULL) {
    feed_h2(c, p, n);
    goto out;
  }
  /* Bytes an outer input still holds come first: they were read first. */
  keep_input(c);
  if (c->dead || c->closing)
    goto out;
  c->in = p;
  c->in_len = n;
  if (!c->tls_up) {
    if (c->ops->handshake_step != NULL && !c->ops->handshake_step(c)) {
      c->hs_deferred = true;
      /* The next turn's budget, not this input's end. */
      jw__turn_schedule(&c->next);
      goto out;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        tls_failed(c);
      goto out;
    }
    c->tls_up = true;
    int rc = c->ops->handshake_done(c);
    if (rc != 0) {
      if (!c->dead)
        jw__conn_fail(c, rc, "%s", "connection setup failed");
      goto out;
    }
  }
  while (!c->dead && !c->closing) {
    /* With nothing to read, SSL_read would allocate its 16 KiB record
     * buffer to find no record in it, and an idle connection would keep
     * that buffer: only read what has arrived. */
    if (c->pend.len == 0 && c->in_len == 0 && !SSL_has_pending(c->ssl))
      break;
    uint8_t plain[16384];
    ERR_clear_error();
    int r = SSL_read(c->ssl, plain, sizeof(plain));
    if (r > 0) {
      feed_h2(c, plain, (size_t)r);
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
      break;
    if (e == SSL_ERROR_ZERO_RETURN)
      jw__conn_fail(c, UV_EOF, "the peer closed the connection");
    else
      tls_failed(c);
    break;
  }
out:
  if (c->ssl != NULL) {
    keep_input(c);
    /* SSL_MODE_RELEASE_BUFFERS misses a record buffer kept after some
     * reads (16.5 KiB per idle connection in massif); this frees both
     * unless a record is partly read or written, which keeps them. */
    (void)SSL_free_buffers(c->ssl);
  }
  if (outer) {
    c->in_input = false;
    if (c->turn_owed && !c->closing && !c->dead) {
      c->turn_owed = false;
      if (c->ops->deferred != NULL)
        c->ops->deferred(c);
    }
    c->turn_owed = false;
    if (!c->closing) {
      jw__conn_flush(c);
      if (!c->closing && !c->dead && c->ops->after_io != NULL)
        c->ops->after_io(c);
    }
  }
}

/*
 * nghttp2's allocator. Its outbound frame buffer (16,394 bytes, made with
 * the session and kept for its life) is touched from the front, and an
 * idle connection has only ever written small frames into it (SETTINGS,
 * their ACK, WINDOW_UPDATE); its stream table (4 KiB, zeroed) is touched
 * only where streams are. From a mapping of its own the kernel backs the
 * pages touched, one or none, where on the heap all of both are backed
 * (and reused for other blocks once freed). Only a handful of such blocks
 * exist per connection (a header block past 16 KiB or a larger stream
 * table adds one), each made with the session or a rare large frame, so
 * the mapping's syscalls do not count; past JW__CONN_H2_MAPS, and for
 * everything smaller, it is the heap.
 */
static int h2_map_slot(jw__conn_t *c, const void *p) {
  for (int i = 0; i < JW__CONN_H2_MAPS; i++)
    if (c->h2_maps[i].p == p)
      return i;
  return -1;
}

static void *h2_map(jw__conn_t *c, size_t size) {
  int i = h2_map_slot(c, NULL);
  if (size < JW__CONN_H2_MAP_MIN || i < 0)
    return NULL;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t len = (size + page - 1) / page * page;
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  c->h2_maps[i].p = p;
  c->h2_maps[i].len = len;
  /* The session's own frame buffer is the one block of that size made
   * with it; further chunks (a header block past 16 KiB) come later and
   * are freed once their frame is out. */
  c->h2_maps[i].framebuf = c->h2_creating && size == JW__CONN_H2_FRAMEBUF;
  return p;
}

/*
 * A heap block is counted by its usable size (malloc_usable_size), so
 * that the connection knows the heap bytes its session holds
 * (jw__conn_held) without a header on each block. A zero size asks for
 * one byte: realloc(p, 0) would free p.
 */
static void *h2_heap(jw__conn_t *c, void *old, size_t size, bool zero) {
  size_t was = old != NULL ? malloc_usable_size(old) : 0;
  if (size == 0)
    size = 1;
  void *n = zero ? calloc(1, size) : realloc(old, size);
  if (n == NULL)
    return NULL;
  c->h2_heap = c->h2_heap - was + malloc_usable_size(n);
  return n;
}

static void *h2_malloc(size_t size, void *user) {
  void *p = h2_map(user, size);
  return p != NULL ? p : h2_heap(user, NULL, size, false);
}

static void *h2_calloc(size_t n, size_t size, void *user) {
  if (n > 0 && size > SIZE_MAX / n)
    return NULL;
  /* A new mapping reads as zeros. */
  void *p = h2_map(user, n * size);
  return p != NULL ? p : h2_heap(user, NULL, n * size, true);
}

static void h2_free(void *p, void *user) {
  jw__conn_t *c = user;
  if (p == NULL)
    return;
  int i = h2_map_slot(c, p);
  if (i < 0) {
    c->h2_heap -= malloc_usable_size(p);
    free(p);
    return;
  }
  munmap(p, c->h2_maps[i].len);
  c->h2_maps[i].p = NULL;
  c->h2_maps[i].len = 0;
  c->h2_maps[i].framebuf = false;
}

static void *h2_realloc(void *p, size_t size, void *user) {
  jw__conn_t *c = user;
  int i = p != NULL ? h2_map_slot(c, p) : -1;
  if (p == NULL)
    return h2_malloc(size, user);
  if (i < 0) /* a heap block stays on the heap */
    return h2_heap(c, p, size, false);
  if (size <= c->h2_maps[i].len)
    return p;
  void *n = h2_malloc(size, user);
  if (n == NULL)
    return NULL;
  memcpy(n, p, c->h2_maps[i].len);
  h2_free(p, user);
  return n;
}

ssize_t jw__conn_data_length(nghttp2_session *session, uint8_t frame_type,
                             int32_t stream_id, int32_t session_window,
                             int32_t stream_window, uint32_t max_frame_size,
                             void *user_data) {
  (void)session, (void)frame_type, (void)stream_id, (void)session_window;
  (void)stream_window, (void)max_frame_size, (void)user_data;
  /* nghttp2 takes the smaller of this, the two windows and the peer's
   * frame size. */
  return JW__CONN_DATA_MAX;
}

int jw__conn_h2_new(jw__conn_t *c, const nghttp2_session_callbacks *cbs,
                    void *user, int32_t conn_window,
                    nghttp2_settings_entry first) {
  nghttp2_option *opt;
  int rc;
  if (nghttp2_option_new(&opt) != 0)
    return -ENOMEM;
  /* Both roles give credit back only as they consume (RFC 9113 5.2), so
   * that the windows they advertise bound what they hold. */
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
  nghttp2_mem mem = {c, h2_malloc, h2_free, h2_calloc, h2_realloc};
  c->h2_creating = true;
  rc = c->server ? nghttp2_session_server_new3(&c->h2, cbs, user, opt, &mem)
                 : nghttp2_session_client_new3(&c->h2, cbs, user, opt, &mem);
  c->h2_creating = false;
  nghttp2_option_del(opt);
  if (rc != 0)
    return JW_EHTTP2;
  nghttp2_settings_entry iv[] = {
      first,
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, JW__H2_STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, JW__H2_MAX_HEADER_LIST},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                            conn_window) != 0)
    return JW_EHTTP2;
  return 0;
}

/*
 * nghttp2 (1.52, nghttp2_session.c) writes a frame into its frame buffer
 * when nghttp2_session_mem_send takes the frame up and hands the bytes out
 * by that call and the next ones; send_frames copies them into TLS at
 * once. The buffer is reset (nghttp2_bufs_reset, which only moves the
 * pointers kept in the chain on the heap) when the frame is out, in
 * active_outbound_item_reset, which is also what clears aob.item; while
 * a frame is in the buffer aob.item is set and nghttp2_session_want_write
 * is 1. So with want_write 0 (and no terminating GOAWAY: c->dead or
 * c->closing then) nothing in the buffer is read again before it is
 * written, and zero pages do for it.
 */
void jw__conn_quiet(jw__conn_t *c) {
  if (c->h2_sent) {
    c->h2_sent = false;
    c->fb_backed = true;
    return;
  }
  if (!c->fb_backed || c->h2 == NULL || c->dead || c->closing || c->writing ||
      c->gather.len > 0 || nghttp2_session_want_write(c->h2))
    return;
  for (int i = 0; i < JW__CONN_H2_MAPS; i++)
    if (c->h2_maps[i].framebuf &&
        madvise(c->h2_maps[i].p, c->h2_maps[i].len, MADV_DONTNEED) == 0)
      c->fb_backed = false;
}

size_t jw__conn_held(const jw__conn_t *c) {
  size_t n = c->gather.cap + c->inflight.cap + c->pend.cap + c->h2_heap +
             (c->wreq != NULL ? sizeof(*c->wreq) : 0);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  for (int i = 0; i < JW__CONN_H2_MAPS; i++) {
    unsigned char vec[64];
    size_t pages = c->h2_maps[i].len / page;
    if (c->h2_maps[i].p == NULL || pages > sizeof(vec) ||
        mincore(c->h2_maps[i].p, c->h2_maps[i].len, vec) != 0) {
      n += c->h2_maps[i].len; /* unknown: count it all */
      continue;
    }
    for (size_t j = 0; j < pages; j++)
      n += (vec[j] & 1) ? page : 0;
  }
  return n;
}

void jw__conn_fail(jw__conn_t *c, int err, const char *fmt, ...) {
  if (c->dead || c->closing)
    return;
  c->dead = true;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  c->errmsg = strdup(msg);
  if (c->errmsg == NULL)
    c->errmsg = conn_nomem_msg;
  if (c->open_handles > 0 && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_read_stop((uv_stream_t *)&c->tcp);
  /* An alert OpenSSL produced (in gather already) goes out before any
   * close. */
  start_write(c);
  c->ops->failed(c, err);
}

void jw__conn_close(jw__conn_t *c, bool graceful) {
  if (c->closing) {
    if (!graceful && c->close_wait) {
      c->close_wait = false;
      close_handles(c);
    }
    return;
  }
  c->closing = true;
  jw__turn_cancel(&c->next);
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_read_stop((uv_stream_t *)&c->tcp);
  if (graceful && c->ssl != NULL && c->tls_up && !c->dead) {
    SSL_shutdown(c->ssl); /* the close_notify goes to gather */
    ERR_clear_error();
  }
  if (graceful) {
    start_write(c);
    if (c->writing) {
      c->close_wait = true;
      return;
    }
  }
  close_handles(c);
}

void jw__conn_peer(jw__conn_t *c, char *buf, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  char ip[INET6_ADDRSTRLEN];
  snprintf(buf, cap, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof(ip));
    snprintf(buf, cap, "%s:%d", ip, ntohs(a->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof(ip));
    snprintf(buf, cap, "[%s]:%d", ip, ntohs(a->sin6_port));
  }
}
