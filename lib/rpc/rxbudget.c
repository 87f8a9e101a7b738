/*
 * A server connection's request memory and flow-control credit.
 *
 * The session never updates windows by itself (jw__conn_h2_new): credit
 * for a DATA byte goes back when the byte leaves our memory (its message
 * was handled and freed, its stream was refused or ended) or, while the
 * message still arrives, at once as long as the connection holds less
 * than its budget, so that a message larger than the stream window can
 * pass. A connection therefore holds at most its budget plus its receive
 * window of request bytes, however many streams it opens (RFC 9113 5.2).
 */
#include <nghttp2/nghttp2.h>

#include "rpc_int.h"
#include "server_int.h"

void jw__rx_credit(sconn_t *sc, int32_t stream_id, size_t n) {
  if (n == 0 || sc->c.h2 == NULL || sc->c.dead || sc->c.closing)
    return;
  if (stream_id > 0)
    nghttp2_session_consume(sc->c.h2, stream_id, n);
  else
    nghttp2_session_consume_connection(sc->c.h2, n);
}

/* The call's request bytes are no longer held: free and credit them. */
void jw__rx_release(jw_rpc_call_t *call) {
  sconn_t *sc = call->sc;
  jw_grpc_deframer_reset(&call->defr);
  if (sc == NULL)
    return;
  sc->rx_bytes -= call->rx_held;
  call->rx_held = 0;
  jw__rx_credit(sc, call->stream_id, call->rx_unacked);
  call->rx_unacked = 0;
}

/*
 * Frees what calls that stopped arriving still hold (a deadline or a
 * refusal ended them underneath the receive path), then gives credit to
 * calls still arriving while the budget allows it.
 */
void jw__rx_grant(sconn_t *sc) {
  jw__list_t *n;
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (call->state != CALL_RECV && (call->rx_held > 0 || call->rx_unacked > 0))
      jw__rx_release(call);
  }
  jw__list_foreach(n, &sc->calls) {
    jw_rpc_call_t *call = CALL_OF(n);
    if (sc->rx_bytes >= sc->srv->opts.max_buffered_request_bytes)
      return;
    if (call->state == CALL_RECV && call->rx_unacked > 0) {
      jw__rx_credit(sc, call->stream_id, call->rx_unacked);
      call->rx_unacked = 0;
    }
  }
}
