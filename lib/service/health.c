/*
 * grpc.health.v1.Health (doc/health-checking.md of gRPC): Check answers
 * with the current status, Watch streams it, first the current one, then
 * one message per change, until the client, its deadline or the server's
 * shutdown ends the call. Neither touches the supervisor: a probe never
 * creates a job. The names known are "" (the whole server) and
 * jobworker.v1.JobWorker; Check fails others with NOT_FOUND and Watch
 * answers SERVICE_UNKNOWN, as the spec asks.
 */
#include "health.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.pb-c.h"
#include "jobworker/service.h"
#include "list.h"
#include "request.h"
#include "wire.h"

/* A Watch call, on the service's list until it ends. */
struct jw__health_watch_s {
  jw_service_t *svc;
  jw_rpc_call_t *call;
  jw__list_t node;
  bool known;
  int sent; /* the status last sent; 0 before the first message */
};
typedef struct jw__health_watch_s watch_t;

/*
 * The list head lives in the embedder's jw_service_t, which the public
 * header keeps free of internal types, and which starts zeroed: it is
 * made a list on first use.
 */
_Static_assert(sizeof(((jw_service_t *)0)->watches_) == sizeof(jw__list_t),
               "jw_service_t.watches_ holds a jw__list_t");
static jw__list_t *watches(jw_service_t *svc) {
  jw__list_t *h = (jw__list_t *)(void *)svc->watches_;
  if (h->next == NULL)
    jw__list_init(h);
  return h;
}

int jw__health_status(const void *data, const char *service, size_t len) {
  const jw_service_t *svc = data;
  if (len != 0 && (len != strlen(JW_SERVICE_NAME) ||
                   memcmp(service, JW_SERVICE_NAME, len) != 0))
    return 0;
  return svc->not_serving
             ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
             : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

/*
 * Reads HealthCheckRequest.service with its length (the last occurrence
 * wins, unknown fields are skipped, as protobuf parsers do). Returns 0, or
 * -1 for a message that is not a HealthCheckRequest.
 */
static int decode_service(const uint8_t *req, size_t len, const char **name,
                          size_t *nlen) {
  jw__wire_t w;
  jw__wire_field_t f;
  int r;
  *name = "";
  *nlen = 0;
  jw__wire_init(&w, req, len);
  while ((r = jw__wire_next(&w, &f)) == 1) {
    if (f.num != 1)
      continue;
    if (f.type != 2)
      return -1;
    *name = (const char *)f.data;
    *nlen = f.len;
  }
  return r;
}

/* Fails the call for a request that does not parse. */
static void fail_malformed(jw_rpc_call_t *call) {
  jw_rpc_call_fail(call, JW_GRPC_INVALID_ARGUMENT,
                   "malformed grpc.health.v1.HealthCheckRequest");
}

/* "the service \"x\"" for messages: NUL bytes and the like quoted. */
static void quote_name(const char *name, size_t len, char *out, size_t cap) {
  char tmp[128];
  size_t n = len < sizeof(tmp) - 1 ? len : sizeof(tmp) - 1;
  memcpy(tmp, name, n);
  tmp[n] = '\0';
  /* A NUL inside shows as the end of the name; quote what precedes it. */
  jw_request_quote(tmp, out, cap);
}

void jw__health_check(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data) {
  const char *name;
  size_t nlen;
  if (decode_service(req, len, &name, &nlen) != 0) {
    fail_malformed(call);
    return;
  }
  int st = jw__health_status(data, name, nlen);
  if (st == 0) {
    char q[160], msg[200];
    quote_name(name, nlen, q, sizeof(q));
    snprintf(msg, sizeof(msg), "unknown service %s", q);
    jw_rpc_call_fail(call, JW_GRPC_NOT_FOUND, msg);
    return;
  }
  Grpc__Health__V1__HealthCheckResponse resp =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = st;
  uint8_t buf[16];
  size_t n = grpc__health__v1__health_check_response__pack(&resp, buf);
  jw_rpc_call_reply(call, buf, n);
}

static void watch_unlink(watch_t *w) { jw__list_remove(&w->node); }

static ssize_t watch_pull(jw_rpc_call_t *call, uint8_t *buf, size_t cap,
                          void *data) {
  watch_t *w = data;
  int st =
      w->known
          ? jw__health_status(w->svc, JW_SERVICE_NAME, strlen(JW_SERVICE_NAME))
          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  if (st != w->sent) {
    Grpc__Health__V1__HealthCheckResponse resp =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    /* Every status is a non-zero enum: two bytes, never an empty message. */
    if (grpc__health__v1__health_check_response__get_packed_size(&resp) > cap)
      return -ENOBUFS;
    w->sent = st;
    return (ssize_t)grpc__health__v1__health_check_response__pack(&resp, buf);
  }
  if (w->svc->health_ended) {
    /* The last status is out: end with OK, freeing the call's slot. */
    watch_unlink(w);
    free(w);
    return 0;
  }
  return JW_EAGAIN;
}

static void watch_canceled(jw_rpc_call_t *call, void *data) {
  watch_t *w = data;
  watch_unlink(w);
  free(w);
}

void jw__health_watch(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data) {
  jw_service_t *svc = data;
  const char *name;
  size_t nlen;
  if (decode_service(req, len, &name, &nlen) != 0) {
    fail_malformed(call);
    return;
  }
  /*
   * Each Watch holds one HTTP/2 stream, so their number is capped by the
   * server's connection and stream limits; this is all a watch keeps.
   */
  watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  w->svc = svc;
  w->call = call;
  w->known = jw__health_status(svc, name, nlen) != 0;
  jw__list_insert_head(watches(svc), &w->node);
  jw_rpc_call_on_cancel(call, watch_canceled, w);
  if (jw_rpc_call_stream(call, watch_pull, w) != 0) {
    /* The call is gone, and no cancel callback follows. */
    watch_unlink(w);
    free(w);
  }
}

static void notify_watches(jw_service_t *svc) {
  /* resume only schedules the pull: the list does not change under us. */
  jw__list_t *n;
  jw__list_foreach(n, watches(svc)) {
    jw_rpc_call_resume(jw__list_data(n, watch_t, node)->call);
  }
}

void jw_service_set_serving(jw_service_t *svc, bool serving) {
  if (svc->health_ended || svc->not_serving == !serving)
    return;
  svc->not_serving = !serving;
  notify_watches(svc);
}

void jw_service_shutdown(jw_service_t *svc) {
  if (svc->health_ended)
    return;
  svc->not_serving = true;
  svc->health_ended = true;
  notify_watches(svc);
}
