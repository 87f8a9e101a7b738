/*
 * Names of the server's events, for the embedder's log lines; the event
 * itself is an enum so that nobody has to compare strings.
 */
#include "jobworker/server.h"

const char *jw_rpc_event_name(jw_rpc_event_type_t event) {
  switch (event) {
  case JW_RPC_EV_CONN_OPEN:
    return "conn_open";
  case JW_RPC_EV_CONN_CLOSE:
    return "conn_close";
  case JW_RPC_EV_CONN_REFUSED:
    return "conn_refused";
  case JW_RPC_EV_RPC:
    return "rpc";
  }
  return "unknown";
}
