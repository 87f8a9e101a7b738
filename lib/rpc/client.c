/*
 * The client role: resolve, connect (trying each address), TLS, HTTP/2
 * SETTINGS, then calls (ccall.c). Connected means the server's SETTINGS
 * arrived: in TLS 1.3 the server judges the client certificate after the
 * client's handshake is done, so only the server's first frame proves it
 * accepted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "client_int.h"
#include "rpc_int.h"
#include "tls_int.h"

/* ---- Connection ------------------------------------------------------- */

static void finish_connect(jw_rpc_client_t *cli, int err) {
  jw_rpc_connect_cb cb = cli->connect_cb;
  cli->connect_cb = NULL;
  uv_timer_stop(&cli->timer);
  if (cb != NULL)
    cb(cli, err, cli->connect_data);
}

static void fail_all(jw_rpc_client_t *cli, const char *why) {
  jw__list_t *n;
  while ((n = jw__list_first(&cli->calls)) != NULL) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    call->stream_id = 0;
    jw__ccall_finish(call,
                     call->canceled ? JW_GRPC_CANCELLED : JW_GRPC_UNAVAILABLE,
                     call->canceled ? "canceled by the client" : why);
  }
}

/* Ends the connection for good: calls fail, a pending connect fails. */
static void client_fail(jw_rpc_client_t *cli, int err, const char *msg) {
  if (cli->state == CLI_FAILED)
    return;
  cli->state = CLI_FAILED;
  if (cli->err[0] == '\0')
    snprintf(cli->err, sizeof(cli->err), "%s", msg);
  uv_timer_stop(&cli->timer);
  fail_all(cli, cli->err);
  finish_connect(cli, err);
}

void jw__client_connected(jw_rpc_client_t *cli) {
  cli->state = CLI_READY;
  finish_connect(cli, 0);
}

static int cl_handshake_done(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
  if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
    jw__conn_fail(c, JW_ETLS, "the server did not agree to HTTP/2 (ALPN h2)");
    return JW_ETLS;
  }
  return jw__conn_h2_new(
      c, jw__client_h2_callbacks(), cli, JW__H2_CONN_WINDOW,
      (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
}

static void cl_failed(jw__conn_t *c, int err) {
  jw_rpc_client_t *cli = c->owner;
  snprintf(cli->err, sizeof(cli->err), "%s", c->errmsg);
  client_fail(cli, err, c->errmsg);
}

static void cl_deferred(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  jw__list_t *n = cli->calls.next;
  while (n != &cli->calls) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    call->in_cb++;
    if (!call->paused && call->held.len > 0) {
      size_t used = jw__ccall_deliver(call, call->held.base, call->held.len);
      if (!call->finished) {
        jw__client_consume(cli, call, used);
        memmove(call->held.base, call->held.base + used, call->held.len - used);
        call->held.len -= used;
      } else {
        jw__client_consume(cli, NULL, call->held.len);
      }
    }
    jw__ccall_maybe_end(call);
    n = call->node.next;
    if (call->finished)
      n = cli->calls.next; /* the list changed; ended calls are gone */
    jw__ccall_unref(call);
    if (cli->c.closing || cli->c.dead)
      break;
  }
}

static void own_handle_closed(uv_handle_t *h);

/* The connection's handles are closed: the client's own go next. */
static void cl_closed(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  jw__list_t *n;
  fail_all(cli, "the connection was closed");
  while ((n = jw__list_first(&cli->lingering)) != NULL) {
    jw_rpc_ccall_t *call = CCALL_OF(n);
    jw__list_remove(&call->node);
    jw__ccall_free(call);
  }
  finish_connect(cli, UV_ECANCELED);
  uv_close((uv_handle_t *)&cli->timer, own_handle_closed);
  jw__turnq_close(&cli->nexts, cli, own_handle_closed);
}

static void own_handle_closed(uv_handle_t *h) {
  jw_rpc_client_t *cli = h->data;
  if (--cli->own_handles > 0)
    return;
  if (cli->close_cb != NULL)
    cli->close_cb(cli, cli->close_data);
  if (cli->ai != NULL)
    uv_freeaddrinfo(cli->ai);
  SSL_CTX_free(cli->ssl);
  free(cli->addr);
  free(cli->server_name);
  free(cli);
}

/*
 * The client's transport is TCP, except while its socket is reopened for
 * the next address: nothing can be written then, and a close leaves the
 * closing handle to tcp_reopened, which counts it.
 */
static int cl_write(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  return cli->tcp_recycling ? 0 : jw__tcp_write(c);
}

static void cl_close(jw__conn_t *c) {
  jw_rpc_client_t *cli = c->owner;
  if (!cli->tcp_recycling)
    jw__tcp_close(c);
}

static const jw__transport_ops_t client_transport = {cl_write, cl_close};

static const jw__conn_ops_t client_ops = {
    NULL, cl_handshake_done, cl_failed, cl_deferred, NULL, cl_closed};

int jw_rpc_client_new(uv_loop_t *loop, const jw_rpc_client_options_t *opts,
                      jw_rpc_client_t **out) {
  int port;
  *out = NULL;
  if (opts == NULL || opts->tls == NULL || opts->tls->server)
    return JW_EINVAL;
  jw_rpc_client_t *cli = calloc(1, sizeof(*cli));
  if (cli == NULL)
    return -ENOMEM;
  jw__list_init(&cli->calls);
  jw__list_init(&cli->lingering);
  if (jw__addr_split(opts->addr, cli->host, sizeof(cli->host), &port) != 0 ||
      cli->host[0] == '\0') {
    free(cli);
    return JW_EINVAL;
  }
  snprintf(cli->port, sizeof(cli->port), "%d", port);
  cli->addr = strdup(opts->addr);
  cli->server_name =
      strdup(opts->server_name != NULL ? opts->server_name : cli->host);
  cli->loop = loop;
  cli->connect_timeout_ms =
      opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
  int rc =
      cli->addr == NULL || cli->server_name == NULL
          ? -ENOMEM
          : jw__conn_init(&cli->c, loop, &cli->nexts, &client_ops, cli, false);
  if (rc != 0) {
    free(cli->addr);
    free(cli->server_name);
    free(cli);
    return rc;
  }
  cli->c.transport = &client_transport;
  uv_timer_init(loop, &cli->timer);
  cli->timer.data = cli;
  jw__turnq_init(&cli->nexts, loop);
  cli->own_handles = 2;
  cli->ssl = jw__tls_ctx_ssl(opts->tls);
  SSL_CTX_up_ref(cli->ssl);
  *out = cli;
  return 0;
}

static void try_connect(jw_rpc_client_t *cli);

static void connect_cb(uv_connect_t *req, int status) {
  jw_rpc_client_t *cli = req->data;
  if (cli->closing || cli->state != CLI_CONNECTING)
    return;
  if (status != 0) {
    cli->last_err = status;
    try_connect(cli);
    return;
  }
  cli->state = CLI_HANDSHAKE;
  uv_tcp_nodelay(&cli->c.tcp, 1);
  int rc = jw__conn_start_tls(&cli->c, cli->ssl, cli->server_name);
  if (rc != 0 && !cli->c.dead)
    jw__conn_fail(&cli->c, rc, "cannot start TLS: %s", jw_strerror(rc));
}

static void tcp_reopened(uv_handle_t *h) {
  jw_rpc_client_t *cli = ((jw__conn_t *)h->data)->owner;
  cli->tcp_recycling = false;
  if (cli->c.closing) {
    /* The close that came meanwhile skipped this handle: count it now. */
    jw__conn_handle_closed(h);
    return;
  }
  uv_tcp_init(cli->loop, &cli->c.tcp);
  cli->c.tcp.data = &cli->c;
  if (cli->state != CLI_FAILED)
    try_connect(cli);
}

static void try_connect(jw_rpc_client_t *cli) {
  if (cli->ai_next == NULL) {
    int err = cli->last_err != 0 ? cli->last_err : UV_ECONNREFUSED;
    snprintf(cli->err, sizeof(cli->err), "cannot connect to %s: %s", cli->addr,
             uv_strerror(err));
    client_fail(cli, err, cli->err);
    return;
  }
  struct addrinfo *ai = cli->ai_next;
  cli->ai_next = ai->ai_next;
  if (cli->state == CLI_CONNECTING && cli->last_err != 0) {
    /* A failed connect leaves the handle unusable: reopen it first. */
    cli->last_err = 0;
    cli->ai_next = ai;
    cli->tcp_recycling = true;
    uv_close((uv_handle_t *)&cli->c.tcp, tcp_reopened);
    cli->last_err = 0;
    cli->state = CLI_RESOLVING;
    return;
  }
  cli->state = CLI_CONNECTING;
  cli->creq.data = cli;
  int rc = uv_tcp_connect(&cli->creq, &cli->c.tcp, ai->ai_addr, connect_cb);
  if (rc != 0) {
    /* The handle may hold a socket of the wrong family now: recycle. */
    cli->last_err = rc;
    try_connect(cli);
  }
}

static void resolved_cb(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  jw_rpc_client_t *cli = req->data;
  cli->gai_pending = false;
  if (cli->closing) {
    if (res != NULL)
      uv_freeaddrinfo(res);
    jw__conn_close(&cli->c, false);
    return;
  }
  if (cli->state != CLI_RESOLVING) {
    if (res != NULL)
      uv_freeaddrinfo(res);
    return;
  }
  if (status != 0) {
    snprintf(cli->err, sizeof(cli->err), "cannot resolve %.100s: %s", cli->host,
             uv_strerror(status));
    client_fail(cli, status, cli->err);
    return;
  }
  cli->ai = res;
  cli->ai_next = res;
  try_connect(cli);
}

static void connect_timeout_cb(uv_timer_t *t) {
  jw_rpc_client_t *cli = t->data;
  if (cli->state == CLI_READY || cli->state == CLI_FAILED)
    return;
  if (cli->gai_pending)
    uv_cancel((uv_req_t *)&cli->gai);
  snprintf(cli->err, sizeof(cli->err),
           "connecting to %s timed out after %llu ms", cli->addr,
           (unsigned long long)cli->connect_timeout_ms);
  if (!cli->c.dead) {
    cli->c.dead = true;
    if (!uv_is_closing((uv_handle_t *)&cli->c.tcp))
      uv_read_stop((uv_stream_t *)&cli->c.tcp);
  }
  client_fail(cli, UV_ETIMEDOUT, cli->err);
}

int jw_rpc_client_connect(jw_rpc_client_t *cli, jw_rpc_connect_cb cb,
                          void *data) {
  if (cli->state != CLI_NEW || cli->closing)
    return JW_EINVAL;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  cli->connect_cb = cb;
  cli->connect_data = data;
  cli->state = CLI_RESOLVING;
  cli->gai.data = cli;
  int rc = uv_getaddrinfo(cli->loop, &cli->gai, resolved_cb, cli->host,
                          cli->port, &hints);
  if (rc != 0) {
    cli->state = CLI_NEW;
    cli->connect_cb = NULL;
    snprintf(cli->err, sizeof(cli->err), "cannot resolve %.100s: %s", cli->host,
             uv_strerror(rc));
    return rc;
  }
  cli->gai_pending = true;
  uv_timer_start(&cli->timer, connect_timeout_cb, cli->connect_timeout_ms, 0);
  return 0;
}

const char *jw_rpc_client_error(const jw_rpc_client_t *cli) { return cli->err; }

bool jw_rpc_client_going_away(const jw_rpc_client_t *cli) {
  return cli->goaway || cli->state != CLI_READY || cli->closing ||
         cli->c.closing;
}

static void close_timeout_cb(uv_timer_t *t) {
  jw_rpc_client_t *cli = t->data;
  jw__conn_close(&cli->c, false);
}

void jw_rpc_client_close(jw_rpc_client_t *cli,
                         void (*close_cb)(jw_rpc_client_t *cli, void *data),
                         void *data) {
  if (cli->closing)
    return;
  cli->closing = true;
  cli->close_cb = close_cb;
  cli->close_data = data;
  if (cli->gai_pending) {
    /* The resolver callback runs either way and finishes the close. */
    uv_cancel((uv_req_t *)&cli->gai);
    return;
  }
  if (cli->state == CLI_READY && cli->c.h2 != NULL && !cli->c.dead) {
    /* Say goodbye, and give the last write a moment to leave. */
    nghttp2_submit_goaway(cli->c.h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR,
                          NULL, 0);
    jw__conn_flush(&cli->c);
    jw__conn_close(&cli->c, true);
    if (cli->c.close_wait)
      uv_timer_start(&cli->timer, close_timeout_cb, 1000, 0);
    return;
  }
  jw__conn_close(&cli->c, false);
}
