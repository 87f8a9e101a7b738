/*
 * What the files of the JobWorker service share (service.c: the method
 * table, Start, Status, Stop, GetOutput, List; jobctl.c: Wait, Signal,
 * Remove). Internal.
 */
#ifndef JW_SERVICE_SERVICE_INT_H
#define JW_SERVICE_SERVICE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker.pb-c.h"
#include "jobworker/service.h"

/*
 * Fills a JobStatus from info. The message borrows the info's strings and
 * lim; pack it before they can go.
 */
void jw__svc_fill_status(Jobworker__V1__JobStatus *st,
                         Jobworker__V1__Limits *lim, const jw_job_info_t *info);

/* Replies with info as the call's JobStatus. */
void jw__svc_reply_status(jw_rpc_call_t *call, const jw_job_info_t *info);

/* Fails the call for a supervisor lookup error (NOT_FOUND, ...). */
void jw__svc_fail_lookup(jw_rpc_call_t *call, int err, const char *id);

/* The handlers of jobctl.c. */
void jw__svc_wait(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                  void *data);
void jw__svc_signal(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data);
void jw__svc_remove(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                    void *data);

#endif /* JW_SERVICE_SERVICE_INT_H */
