/*
 * The JobWorker gRPC service: the handlers that turn the wire contract
 * (proto/jobworker.proto) into calls on a jw_supervisor.
 */
#ifndef TELEPORTD_SERVICE_H
#define TELEPORTD_SERVICE_H

#include <stddef.h>

#include "jobworker/rpc.h"
#include "jobworker/supervisor.h"

typedef struct {
  jw_supervisor_t *sup;
} jw_service_t;

/*
 * The method table for jw_rpc_server_options_t; every handler expects
 * the jw_service_t as its data pointer.
 */
const jw_rpc_method_t *jw_service_methods(size_t *count);

#endif /* TELEPORTD_SERVICE_H */
