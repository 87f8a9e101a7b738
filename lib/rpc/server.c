/*
 * The server role: a listener, one connection object per client, and a
 * call per HTTP/2 stream (call.c), dispatched to the method handlers once
 * the one request message has arrived. This file owns the listener and
 * the connections' lifetime: accept, the handshake budget, the
 * per-client cap, idleness, shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "rpc_int.h"
#include "server_int.h"
#include "tls_int.h"

void jw__server_emit(jw_rpc_server_t *srv, jw_rpc_event_type_t event,
                     const char *peer, const char *cn, const char *method,
                     const char *tag, int status, const char *message,
                     uint64_t dur_ns) {
  if (srv->opts.on_event == NULL)
    return;
  jw_rpc_event_t ev = {event,   peer,          cn,  method, tag, status,
                       message, dur_ns / 1000, NULL};
  srv->opts.on_event(&ev, srv->opts.data);
}

/* A refused connection, with its reason word (jw_rpc_event_t.reason). */
static void emit_refused(jw_rpc_server_t *srv, const char *peer, const char *cn,
                         const char *message, const char *reason) {
  if (srv->opts.on_event == NULL)
    return;
  jw_rpc_event_t ev = {
      JW_RPC_EV_CONN_REFUSED, peer, cn, NULL, NULL, 0, message, 0, reason};
  srv->opts.on_event(&ev, srv->opts.data);
}

/*
 * Why a handshake failed, as one word of a fixed set, so that a metric
 * labelled by it stays small whatever peers send.
 */
static const char *failure_reason(jw__conn_t *c, int err) {
  if (err == UV_ETIMEDOUT)
    return "timeout";
  if (err == UV_EOF || err == UV_ECONNRESET)
    return "closed";
  if (err == JW_EVERIFY && c->ssl != NULL)
    return SSL_get_verify_result(c->ssl) == X509_V_ERR_CERT_REVOKED
               ? "revoked"
               : "bad_certificate";
  switch (c->alert_sent) {
  case TLS13_AD_CERTIFICATE_REQUIRED:
    return "no_certificate";
  case SSL3_AD_HANDSHAKE_FAILURE:
    return c->ssl != NULL && SSL_get0_peer_certificate(c->ssl) == NULL
               ? "no_certificate"
               : "protocol";
  case TLS1_AD_NO_APPLICATION_PROTOCOL:
    return "alpn";
  case SSL3_AD_CERTIFICATE_REVOKED:
    return "revoked";
  case SSL3_AD_BAD_CERTIFICATE:
  case SSL3_AD_UNSUPPORTED_CERTIFICATE:
  case SSL3_AD_CERTIFICATE_EXPIRED:
  case SSL3_AD_CERTIFICATE_UNKNOWN:
  case TLS1_AD_UNKNOWN_CA:
    return "bad_certificate";
  default:
    break;
  }
  if (err == JW_ETLS || c->alert_sent >= 0 || c->alert_recv >= 0)
    return "protocol";
  return "other";
}

/* ---- Connections ------------------------------------------------------ */

static void maybe_done(jw_rpc_server_t *srv);

static void sconn_cancel_all(sconn_t *sc, int status, const char *msg) {
  jw__list_t *n;
  while ((n = jw__list_first(&sc->calls)) != NULL) {
    jw_rpc_call_t *call = CALL_OF(n);
    /*
     * jw__call_stream_gone unlinks the head (detach) before it can be freed;
     * the analyzer cannot follow the list and reports a use after free.
     */
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    if (call->stream_id > 0 && sc->c.h2 != NULL)
      nghttp2_session_set_stream_user_data(sc->c.h2, call->stream_id, NULL);
    call->stream_id = 0;
    jw__call_stream_gone(call, status, msg);
  }
}

/* What sc->deadline ends, in loop milliseconds (the sweep looks). */
static void sc_deadline(sconn_t *sc, uint8_t kind, uint64_t ms) {
  sc->deadline_kind = kind;
  sc->deadline = uv_now(sc->srv->loop) + ms;
}

void jw__sconn_close(sconn_t *sc, bool graceful) {
  if (sc->c.closing) {
    jw__conn_close(&sc->c, graceful);
    return;
  }
  sconn_cancel_all(sc, JW_GRPC_CANCELLED,
                   sc->srv->shutting_down ? "the server is shutting down"
                                          : "the connection was closed");
  if (sc->opened)
    jw__server_emit(sc->srv, JW_RPC_EV_CONN_CLOSE, sc->peer, sc->cn, NULL, NULL,
                    0, sc->c.dead ? sc->c.errmsg : NULL,
                    uv_hrtime() - sc->open_ns);
  jw__conn_close(&sc->c, graceful);
  /* A graceful close waits for its last write, but not for ever. */
  sc->deadline_kind = SC_NO_DEADLINE;
  if (graceful && sc->c.close_wait)
    sc_deadline(sc, SC_CLOSE_WAIT, 2000);
}

/*
 * Whether a call holds the connection open on the server's account. A
 * call waits on the client when its request is still arriving (the
 * request timeout bounds that), when it is whole but waits for the
 * connection's output to drain, or when what it has to send is held back
 * by the client's flow-control window or by a write the client's socket
 * has not taken: a connection whose calls all wait on the client is idle.
 * A write that completes, like a request byte, restarts the idle timer
 * (sc_after_io), so only a write stuck for the idle timeout ends a
 * connection that is sending.
 */
static bool call_busy(sconn_t *sc, jw_rpc_call_t *call) {
  nghttp2_session *h2 = sc->c.h2;
  switch (call->state) {
  case CALL_RECV:
  case CALL_HTTP: /* a refused request whose body is still arriving */
    return false;
  case CALL_HANDLER:
    return true;
  case CALL_STREAMING:
  case CALL_ENDED:
    if (call->state == CALL_STREAMING && call->deferred)
      return true; /* waiting for the job, not for the client */
    if (call->stream_id <= 0 || h2 == NULL || sc->c.writing)
      return false;
    return nghttp2_session_get_stream_remote_window_size(h2, call->stream_id) >
               0 &&
           nghttp2_session_get_remote_window_size(h2) > 0;
  }
  return true;
}

static bool sconn_idle(sconn_t *sc) {
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    if (call_busy(sc, CALL_OF(n)))
      return false;
  }
  return true;
}

static void sc_timed_out(sconn_t *sc) {
  uint8_t kind = sc->deadline_kind;
  sc->deadline_kind = SC_NO_DEADLINE;
  if (kind == SC_CLOSE_WAIT) {
    jw__conn_close(&sc->c, false);
    return;
  }
  if (sc->c.closing)
    return;
  if (sc->c.tls_up && !sconn_idle(sc)) {
    /* A call keeps it busy: look again a timeout later (sc_after_io). */
    sc_deadline(sc, SC_IDLE, sc->srv->opts.idle_timeout_ms);
    return;
  }
  if (!sc->c.tls_up) {
    jw__conn_fail(&sc->c, UV_ETIMEDOUT, "TLS handshake timed out");
    return;
  }
  nghttp2_submit_goaway(sc->c.h2, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(sc->c.h2),
                        NGHTTP2_NO_ERROR, (const uint8_t *)"idle", 4);
  sc->draining = true;
  jw__conn_flush(&sc->c);
  jw__sconn_close(sc, true);
}

int jw__sconn_handshake_done(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw_rpc_server_t *srv = sc->srv;
  int rc;

  sc->cn = c->ssl != NULL ? jw__tls_peer_cn(c->ssl) : sc->cn;
  if (c->ssl != NULL)
    jw__tls_drop_peer_chain(c->ssl);
  rc = jw__conn_h2_new(
      c, jw__server_h2_callbacks(), sc, JW__H2_SERVER_CONN_WINDOW,
      (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                               srv->opts.max_concurrent_streams});
  if (rc != 0)
    return rc;
  sc->deadline_kind = SC_NO_DEADLINE; /* the handshake's */
  /*
   * One client may not hold every connection slot: past its cap the
   * connection is told why (GOAWAY with a debug text) and closed once
   * that is out (sc_after_io). Counted among the connections open now,
   * so a linear walk: at most max_connections, once per handshake.
   */
  if (sc->cn != NULL) {
    uint32_t n = 0;
    jw__list_t *on;
    jw__list_foreach(on, &srv->conns) {
      sconn_t *o = SCONN_OF(on);
      if (o != sc && o->opened && !o->c.closing && o->cn != NULL &&
          strcmp(o->cn, sc->cn) == 0)
        n++;
    }
    if (n >= srv->opts.max_connections_per_client) {
      char msg[128];
      snprintf(msg, sizeof(msg),
               "too many connections from this client (limit %u)",
               (unsigned)srv->opts.max_connections_per_client);
      nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0,
                            NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)msg,
                            strlen(msg));
      sc->refused = true;
      sc->draining = true;
      emit_refused(srv, sc->peer, sc->cn, msg, "limit");
      return 0;
    }
  }
  sc->opened = true;
  sc->open_ns = uv_hrtime();
  jw__server_emit(srv, JW_RPC_EV_CONN_OPEN, sc->peer, sc->cn, NULL, NULL, 0,
                  NULL, 0);
  if (srv->shutting_down) {
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL,
                          0);
    sc->draining = true;
  }
  return 0;
}

/*
 * A server handshake step costs a private-key signature (milliseconds
 * with RSA 4096). A burst of ClientHellos read in one loop turn would
 * hold the loop, and every established client with it, for as many
 * signatures; so at most this many steps run per turn and the rest wait
 * for the next one (the connection defers it: the loop does not block
 * meanwhile).
 */
#define HANDSHAKES_PER_TURN 2

static bool sc_handshake_step(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  return jw__turns_spend(&sc->srv->turns, HANDSHAKES_PER_TURN);
}

static void sc_failed(jw__conn_t *c, int err) {
  sconn_t *sc = c->owner;
  if (!sc->opened)
    emit_refused(sc->srv, sc->peer, NULL, c->errmsg, failure_reason(c, err));
  jw__sconn_close(sc, true);
}

static void sc_deferred(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (call->state == CALL_STREAMING && call->deferred && call->want_resume) {
      call->deferred = false;
      call->want_resume = false;
      nghttp2_session_resume_data(c->h2, call->stream_id);
    }
  }
}

static void sc_after_io(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  if (c->h2 == NULL || c->dead || c->closing)
    return;
  if (sc->refused) {
    jw__sconn_close(sc, true);
    return;
  }
  if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
    jw__sconn_close(sc, true);
    return;
  }
  jw__sconn_dispatch_ready(sc);
  if (c->dead || c->closing)
    return;
  jw__rx_grant(sc);
  /*
   * h2o's soft cap: while the output is over the cap and the socket is
   * not taking it (a write in flight), reading more would only make more
   * output, so the connection is not read until the write completes.
   * Output held back by the client's flow-control window does not stop
   * reading: the WINDOW_UPDATE that frees it has to be read.
   */
  jw__conn_read_pause(c,
                      c->writing && jw__sconn_pending_output(sc) >
                                        sc->srv->opts.max_pending_output_bytes);
  if (sc->no_idle_timeout)
    return;
  /*
   * The idle timeout starts over whenever request bytes arrive or a write
   * completes; whether a call keeps the connection busy is asked only
   * when it passes (sc_timed_out), not on every I/O event. A call stops
   * keeping it busy only with a write of its own (its reply, its end, a
   * window it filled), so the timer then counts from that write, as it
   * would from the moment the connection became idle.
   */
  if (sc->deadline_kind == SC_NO_DEADLINE || sc->rx_progress ||
      sc->seen_writes != c->nwrites)
    sc_deadline(sc, SC_IDLE, sc->srv->opts.idle_timeout_ms);
  sc->rx_progress = false;
  sc->seen_writes = c->nwrites;
}

static void sc_closed(jw__conn_t *c) {
  sconn_t *sc = c->owner;
  jw_rpc_server_t *srv = sc->srv;
  jw__list_remove(&sc->node);
  srv->nconns--;
  free(sc->cn);
  free(sc);
  maybe_done(srv);
}

const jw__conn_ops_t jw__sconn_ops = {
    sc_handshake_step, jw__sconn_handshake_done,
    sc_failed,         sc_deferred,
    sc_after_io,       sc_closed};

static void refused_close_cb(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  jw_rpc_server_t *srv = server->data;
  if (status < 0 || srv->shutting_down)
    return;
  if (srv->nconns >= srv->opts.max_connections) {
    /* At the cap: accept and close at once, so the backlog drains. */
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
      return;
    uv_tcp_init(srv->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
      char peer[64] = "?";
      struct sockaddr_storage ss;
      int len = sizeof(ss);
      if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) == 0 &&
          ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, peer, sizeof(peer));
      emit_refused(srv, peer, NULL, "connection limit reached", "limit");
    }
    uv_close((uv_handle_t *)t, refused_close_cb);
    return;
  }
  sconn_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL)
    return;
  sc->srv = srv;
  if (jw__conn_init(&sc->c, srv->loop, &srv->nexts, &jw__sconn_ops, sc, true) !=
      0) {
    free(sc);
    return;
  }
  jw__list_init(&sc->calls);
  jw__list_insert_head(&srv->conns, &sc->node);
  srv->nconns++;
  if (uv_accept(server, (uv_stream_t *)&sc->c.tcp) != 0) {
    jw__sconn_close(sc, false);
    return;
  }
  uv_tcp_nodelay(&sc->c.tcp, 1);
  jw__conn_peer(&sc->c, sc->peer, sizeof(sc->peer));
  sc_deadline(sc, SC_IDLE, srv->opts.handshake_timeout_ms);
  int rc = jw__conn_start_tls(&sc->c, srv->ssl, NULL);
  if (rc != 0)
    jw__conn_fail(&sc->c, rc, "cannot start TLS: %s", jw_strerror(rc));
}

/* ---- Server ---------------------------------------------------------- */

int jw_rpc_listen_addr_parse(const char *addr, struct sockaddr_storage *ss) {
  char host[256];
  int port;
  if (jw__addr_split(addr, host, sizeof(host), &port) != 0)
    return JW_EINVAL;
  if (strcmp(host, "localhost") == 0)
    strcpy(host, "127.0.0.1");
  if (host[0] == '\0' || strcmp(host, "*") == 0)
    strcpy(host, "0.0.0.0");
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return JW_EINVAL;
}

static void free_methods(jw_rpc_server_t *srv) {
  if (srv->methods == NULL)
    return;
  for (size_t i = 0; i < srv->opts.nmethods; i++)
    free((char *)srv->methods[i].path);
  free(srv->methods);
  free(srv->method_lens);
  if (srv->gets != NULL)
    for (size_t i = 0; i < srv->opts.nhttp_gets; i++)
      free((char *)srv->gets[i].path);
  free(srv->gets);
}

/*
 * One timer for all connections rather than a syscall per call: each
 * that stayed quiet since the last sweep gives back its frame buffer's
 * pages (jw__conn_quiet), at most one madvise per connection per sweep,
 * and each whose deadline has passed (the handshake's, the idle one, a
 * graceful close's) is dealt with: a timer per connection cost 152
 * bytes each and a timer heap update per call, for timeouts of seconds
 * that a sweep's 250 ms serve as well.
 */
static void sweep_cb(uv_timer_t *t) {
  jw_rpc_server_t *srv = t->data;
  uint64_t now = uv_now(srv->loop);
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &srv->conns) {
    sconn_t *sc = SCONN_OF(n);
    jw__conn_quiet(&sc->c);
    if (sc->deadline_kind != SC_NO_DEADLINE && now >= sc->deadline)
      sc_timed_out(sc);
  }
}

static void listener_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->listener_open = false;
  maybe_done(srv);
}

static void start_failed_close_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  SSL_CTX_free(srv->ssl);
  free_methods(srv);
  free(srv);
}

int jw_rpc_server_start(uv_loop_t *loop, const jw_rpc_server_options_t *opts,
                        jw_rpc_server_t **out) {
  struct sockaddr_storage ss;
  int rc;
  *out = NULL;
  if (opts == NULL || opts->tls == NULL || !opts->tls->server ||
      (opts->nmethods > 0 && opts->methods == NULL) ||
      (opts->nhttp_gets > 0 && opts->http_gets == NULL))
    return JW_EINVAL;
  if ((rc = jw_rpc_listen_addr_parse(opts->addr, &ss)) != 0)
    return rc;
  jw_rpc_server_t *srv = calloc(1, sizeof(*srv));
  if (srv == NULL)
    return -ENOMEM;
  srv->loop = loop;
  jw__list_init(&srv->conns);
  jw__list_init(&srv->zombies);
  srv->opts = *opts;
  if (srv->opts.max_connections == 0)
    srv->opts.max_connections = JW_RPC_DEFAULT_MAX_CONNECTIONS;
  if (srv->opts.max_concurrent_streams == 0)
    srv->opts.max_concurrent_streams = JW_RPC_DEFAULT_MAX_CONCURRENT_STREAMS;
  if (srv->opts.handshake_timeout_ms == 0)
    srv->opts.handshake_timeout_ms = JW_RPC_DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (srv->opts.idle_timeout_ms == 0)
    srv->opts.idle_timeout_ms = JW_RPC_DEFAULT_IDLE_TIMEOUT_MS;
  if (srv->opts.max_message_bytes == 0)
    srv->opts.max_message_bytes = JW_RPC_DEFAULT_MAX_MESSAGE_BYTES;
  if (srv->opts.max_buffered_request_bytes == 0)
    srv->opts.max_buffered_request_bytes =
        JW_RPC_DEFAULT_MAX_BUFFERED_REQUEST_BYTES;
  if (srv->opts.max_buffered_request_bytes < srv->opts.max_message_bytes)
    srv->opts.max_buffered_request_bytes = srv->opts.max_message_bytes;
  if (srv->opts.max_pending_output_bytes == 0)
    srv->opts.max_pending_output_bytes =
        JW_RPC_DEFAULT_MAX_PENDING_OUTPUT_BYTES;
  if (srv->opts.request_timeout_ms == 0)
    srv->opts.request_timeout_ms = JW_RPC_DEFAULT_REQUEST_TIMEOUT_MS;
  if (srv->opts.max_connections_per_client == 0)
    srv->opts.max_connections_per_client =
        JW_RPC_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
  srv->opts.addr = NULL;
  srv->opts.tls = NULL;
  srv->methods = calloc(opts->nmethods + 1, sizeof(*srv->methods));
  if (srv->methods == NULL) {
    free(srv);
    return -ENOMEM;
  }
  srv->opts.methods = srv->methods;
  for (size_t i = 0; i < opts->nmethods; i++) {
    srv->methods[i].path = strdup(opts->methods[i].path);
    srv->methods[i].handler = opts->methods[i].handler;
    srv->methods[i].flags = opts->methods[i].flags;
    if (srv->methods[i].path == NULL) {
      free_methods(srv);
      free(srv);
      return -ENOMEM;
    }
  }
  srv->method_lens = calloc(opts->nmethods + 1, sizeof(*srv->method_lens));
  if (srv->method_lens == NULL) {
    free_methods(srv);
    free(srv);
    return -ENOMEM;
  }
  for (size_t i = 0; i < opts->nmethods; i++)
    srv->method_lens[i] = strlen(srv->methods[i].path);
  srv->gets = calloc(opts->nhttp_gets + 1, sizeof(*srv->gets));
  if (srv->gets == NULL) {
    free_methods(srv);
    free(srv);
    return -ENOMEM;
  }
  srv->opts.http_gets = srv->gets;
  for (size_t i = 0; i < opts->nhttp_gets; i++) {
    srv->gets[i].path = strdup(opts->http_gets[i].path);
    srv->gets[i].handler = opts->http_gets[i].handler;
    if (srv->gets[i].path == NULL) {
      free_methods(srv);
      free(srv);
      return -ENOMEM;
    }
  }
  srv->ssl = jw__tls_ctx_ssl(opts->tls);
  SSL_CTX_up_ref(srv->ssl);

  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  srv->listener_open = true;
  if (opts->adopt_listen_fd) {
    rc = fcntl(opts->listen_fd, F_SETFD, FD_CLOEXEC) < 0
             ? -errno
             : uv_tcp_open(&srv->listener, opts->listen_fd);
  } else {
    rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
  }
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&srv->listener, start_failed_close_cb);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = bound.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_timer_init(loop, &srv->shutdown_timer);
  srv->shutdown_timer.data = srv;
  srv->timer_open = true;
  /* The sweep alone does not keep the loop alive. */
  uv_timer_init(loop, &srv->sweep_timer);
  srv->sweep_timer.data = srv;
  srv->sweep_open = true;
  uv_timer_start(&srv->sweep_timer, sweep_cb, JW__SERVER_SWEEP_MS,
                 JW__SERVER_SWEEP_MS);
  uv_unref((uv_handle_t *)&srv->sweep_timer);
  jw__turns_init(&srv->turns, loop);
  srv->turns_open = true;
  jw__turnq_init(&srv->nexts, loop);
  srv->nexts_open = true;
  *out = srv;
  return 0;
}

int jw_rpc_server_port(const jw_rpc_server_t *srv) { return srv->port; }

int jw_rpc_server_dup_listen_fd(const jw_rpc_server_t *srv) {
  uv_os_fd_t fd;
  int d;
  if (srv->shutting_down ||
      uv_fileno((const uv_handle_t *)&srv->listener, &fd) != 0)
    return JW_ECLOSED;
  d = fcntl(fd, F_DUPFD, 3);
  return d < 0 ? -errno : d;
}

void jw_rpc_server_end_calls(jw_rpc_server_t *srv, int grpc_status,
                             const char *message) {
  jw__list_t *n, *cn, *tmp;
  jw__list_foreach(n, &srv->conns) {
    sconn_t *sc = SCONN_OF(n);
    if (sc->c.closing)
      continue;
    /*
     * GOAWAY first, so that a client knows, when the trailers come, that
     * the connection is going away and the call is worth making again on
     * a new one (and starts no new call on this one).
     */
    if (sc->c.h2 != NULL)
      (void)nghttp2_submit_goaway(
          sc->c.h2, NGHTTP2_FLAG_NONE,
          nghttp2_session_get_last_proc_stream_id(sc->c.h2), NGHTTP2_NO_ERROR,
          NULL, 0);
    jw__list_foreach_safe(cn, tmp, &sc->calls)
        jw__call_end_now(CALL_OF(cn), grpc_status, message);
    jw__conn_schedule(&sc->c);
  }
}

static void server_free(jw_rpc_server_t *srv);

/*
 * The last of the server's own handles closed: it is done. Its memory goes
 * once the close callback returned, from this close callback of the loop's,
 * so nothing of the library's is left on the stack.
 */
static void server_handles_closed(jw_rpc_server_t *srv) {
  if (srv->timer_open || srv->turns_open || srv->nexts_open || srv->sweep_open)
    return;
  srv->done = true;
  if (srv->done_cb != NULL)
    srv->done_cb(srv, srv->done_data);
  server_free(srv);
}

static void shutdown_timer_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->timer_open = false;
  server_handles_closed(srv);
}

static void sweep_timer_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->sweep_open = false;
  server_handles_closed(srv);
}

static void nexts_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->nexts_open = false;
  server_handles_closed(srv);
}

static void turns_closed_cb(uv_handle_t *h) {
  jw_rpc_server_t *srv = h->data;
  srv->turns_open = false;
  server_handles_closed(srv);
}

static void maybe_done(jw_rpc_server_t *srv) {
  if (!srv->shutting_down || srv->listener_open || srv->nconns > 0 ||
      !srv->timer_open || uv_is_closing((uv_handle_t *)&srv->shutdown_timer))
    return;
  jw__turns_close(&srv->turns, srv, turns_closed_cb);
  jw__turnq_close(&srv->nexts, srv, nexts_closed_cb);
  uv_close((uv_handle_t *)&srv->sweep_timer, sweep_timer_closed_cb);
  uv_close((uv_handle_t *)&srv->shutdown_timer, shutdown_timer_closed_cb);
}

static void shutdown_timeout_cb(uv_timer_t *t) {
  jw_rpc_server_t *srv = t->data;
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &srv->conns) {
    jw__sconn_close(SCONN_OF(n), false);
  }
}

void jw_rpc_server_close(jw_rpc_server_t *srv, uint64_t timeout_ms,
                         void (*close_cb)(jw_rpc_server_t *srv, void *data),
                         void *data) {
  if (srv->shutting_down)
    return;
  srv->shutting_down = true;
  srv->done_cb = close_cb;
  srv->done_data = data;
  uv_close((uv_handle_t *)&srv->listener, listener_closed_cb);
  uv_timer_start(&srv->shutdown_timer, shutdown_timeout_cb, timeout_ms, 0);
  jw__list_t *n, *tmp;
  jw__list_foreach_safe(n, tmp, &srv->conns) {
    sconn_t *sc = SCONN_OF(n);
    if (sc->c.closing)
      continue;
    if (!sc->c.tls_up || sc->c.h2 == NULL || sc->c.dead) {
      jw__sconn_close(sc, false);
      continue;
    }
    nghttp2_submit_goaway(sc->c.h2, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(sc->c.h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    sc->draining = true;
    jw__conn_schedule(&sc->c);
  }
}

static void server_free(jw_rpc_server_t *srv) {
  /* Calls whose handler never ended them and never asked to hear of it. */
  jw__list_t *n;
  while ((n = jw__list_first(&srv->zombies)) != NULL)
    jw__call_free(CALL_OF(n)); /* NOLINT(clang-analyzer-unix.Malloc): unlinks */
  SSL_CTX_free(srv->ssl);
  free_methods(srv);
  free(srv);
}
