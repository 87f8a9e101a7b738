/*
 * grpc.health.v1.Health for the JobWorker service: Check and Watch for ""
 * and jobworker.v1.JobWorker, from the state jw_service_set_serving and
 * jw_service_shutdown keep in the jw_service_t. Internal.
 */
#ifndef JW_SERVICE_HEALTH_H
#define JW_SERVICE_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker/rpc.h"

/* The handlers; data is the jw_service_t. */
void jw__health_check(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data);
void jw__health_watch(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                      void *data);

/*
 * What Health reports for service (NUL-free, len bytes): SERVING (1) or
 * NOT_SERVING (2) for "" and JW_SERVICE_NAME, 0 for a name it does not
 * know.
 */
int jw__health_status(const void *svc, const char *service, size_t len);

#endif /* JW_SERVICE_HEALTH_H */
