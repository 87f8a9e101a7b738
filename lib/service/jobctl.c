/*
 * The job control calls of the JobWorker service: Wait, Signal and Remove
 * (GetOutput's offsets and Stop's grace are in service.c, with the calls
 * they extend).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobworker.pb-c.h"
#include "request.h"
#include "service_int.h"

typedef struct {
  jw_wait_req_t req;
  jw_rpc_call_t *call;
} wait_call_t;

static void wait_done(jw_wait_req_t *req, int err, const jw_job_info_t *info) {
  wait_call_t *wc = req->data;
  char msg[96];
  if (err == JW_ENOTFOUND) {
    snprintf(msg, sizeof(msg), "job %s was removed", info->id);
    jw_rpc_call_fail(wc->call, JW_GRPC_NOT_FOUND, msg);
  } else if (err != 0) {
    jw_rpc_call_fail(wc->call, JW_GRPC_UNAVAILABLE,
                     "the server shut down before the job was final");
  } else {
    jw__svc_reply_status(wc->call, info);
  }
  free(wc);
}

static void wait_canceled(jw_rpc_call_t *call, void *data) {
  wait_call_t *wc = data;
  jw_supervisor_wait_cancel(&wc->req);
  free(wc);
}

void jw__svc_wait(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                  void *data) {
  jw_service_t *svc = data;
  char *id = jw_request_unpack_id(call, req, len);
  if (id == NULL)
    return;
  wait_call_t *wc = calloc(1, sizeof(*wc));
  if (wc == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    free(id);
    return;
  }
  wc->call = call;
  wc->req.data = wc;
  int err = jw_supervisor_wait(svc->sup, &wc->req, id, jw_rpc_call_cn(call),
                               wait_done);
  if (err == JW_ECLOSED) {
    jw_rpc_call_fail(call, JW_GRPC_UNAVAILABLE, "the server is shutting down");
    free(wc);
  } else if (err != 0) {
    jw__svc_fail_lookup(call, err, id);
    free(wc);
  } else {
    jw_rpc_call_on_cancel(call, wait_canceled, wc);
  }
  free(id);
}

void jw__svc_signal(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  jw_service_t *svc = data;
  char msg[160], q[80], *id;
  int sig;
  int code = jw_request_decode_signal(req, len, &id, &sig, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return;
  }
  jw_rpc_call_set_tag(call, id);
  const char *cn = jw_rpc_call_cn(call);
  int err = jw_supervisor_signal(svc->sup, id, cn, sig);
  jw_job_info_t info;
  if (err == JW_ECLOSED) {
    snprintf(msg, sizeof(msg), "job %s has ended: there is nothing to signal",
             jw_request_quote(id, q, sizeof(q)));
    jw_rpc_call_fail(call, JW_GRPC_FAILED_PRECONDITION, msg);
  } else if (err == 0 &&
             (err = jw_supervisor_status(svc->sup, id, cn, &info)) == 0) {
    jw__svc_reply_status(call, &info);
  } else {
    jw__svc_fail_lookup(call, err, id);
  }
  free(id);
}

void jw__svc_remove(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data) {
  jw_service_t *svc = data;
  char msg[160], q[80];
  char *id = jw_request_unpack_id(call, req, len);
  if (id == NULL)
    return;
  const char *cn = jw_rpc_call_cn(call);
  jw_job_info_t info;
  int err = jw_supervisor_status(svc->sup, id, cn, &info);
  if (err != 0) {
    jw__svc_fail_lookup(call, err, id);
  } else if (info.proc.state == JW_PROC_RUNNING) {
    snprintf(msg, sizeof(msg), "job %s is still running: stop it first",
             jw_request_quote(id, q, sizeof(q)));
    jw_rpc_call_fail(call, JW_GRPC_FAILED_PRECONDITION, msg);
  } else {
    /* The status is packed before the job and its strings go. */
    Jobworker__V1__JobStatus st;
    Jobworker__V1__Limits lim;
    jw__svc_fill_status(&st, &lim, &info);
    size_t n = protobuf_c_message_get_packed_size(&st.base);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
      jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
      protobuf_c_message_pack(&st.base, buf);
      err = jw_supervisor_remove(svc->sup, id, cn);
      if (err == 0)
        jw_rpc_call_reply(call, buf, n);
      else
        jw__svc_fail_lookup(call, err, id);
      free(buf);
    }
  }
  free(id);
}
