/*
 * The plaintext test connection (server_test.h), built only into the
 * jwrpc_test library that tests and fuzzers link: never part of
 * libjobworker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"
#include "server_test.h"

/* ---- Plaintext test hook --------------------------------------------- */

/* Nobody reads the output unless a test does; keep it bounded. */
static int test_write(jw__conn_t *c) {
  if (c->gather.len > JW__CONN_WBUF_CAP * 4)
    c->gather.len = 0;
  return 0;
}

static const jw__transport_ops_t test_transport = {test_write, jw__tcp_close};

int jw__server_test_conn(jw_rpc_server_t *srv, const char *cn,
                         jw__conn_t **out) {
  sconn_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL)
    return -ENOMEM;
  sc->srv = srv;
  sc->no_idle_timeout = true;
  if (jw__conn_init(&sc->c, srv->loop, &srv->nexts, &jw__sconn_ops, sc, true) !=
      0) {
    free(sc);
    return -ENOMEM;
  }
  jw__list_init(&sc->calls);
  jw__list_insert_head(&srv->conns, &sc->node);
  srv->nconns++;
  snprintf(sc->peer, sizeof(sc->peer), "test");
  sc->cn = cn != NULL ? strdup(cn) : NULL;
  sc->c.tls_up = true;
  sc->c.transport = &test_transport;
  int rc = jw__sconn_handshake_done(&sc->c);
  if (rc != 0) {
    jw__sconn_close(sc, false);
    return rc;
  }
  *out = &sc->c;
  return 0;
}

void jw__server_test_close(jw__conn_t *c) { jw__sconn_close(c->owner, false); }
