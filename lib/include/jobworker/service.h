/*
 * The JobWorker gRPC service: the handlers that turn the wire contract
 * (proto/jobworker.proto) into calls on a jw_supervisor. Served by a
 * jw_rpc_server, it is the whole of teleportd's protocol; a program that
 * embeds it gets the same server on its own loop (examples/embed_server.c).
 */
#ifndef JOBWORKER_SERVICE_H
#define JOBWORKER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "jobworker/cgroup.h"
#include "jobworker/rpc.h"
#include "jobworker/supervisor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The server's caps on a Start request (flags --max-args and so on). */
typedef struct {
  size_t max_args;            /* JobRequest.args entries */
  size_t max_env;             /* JobRequest.env entries */
  size_t max_request_strings; /* bytes of all strings in a request */
} jw_request_limits_t;

/* The defaults, the one place they are written (teleportd's too). */
#define JW_REQUEST_DEFAULT_MAX_ARGS 1024
#define JW_REQUEST_DEFAULT_MAX_ENV 256
#define JW_REQUEST_DEFAULT_MAX_STRINGS (256 * 1024)
#define JW_REQUEST_LIMITS_DEFAULT                                              \
  {                                                                            \
    JW_REQUEST_DEFAULT_MAX_ARGS, JW_REQUEST_DEFAULT_MAX_ENV,                   \
        JW_REQUEST_DEFAULT_MAX_STRINGS                                         \
  }

/*
 * A List reply is at most this big: the receive limit gRPC clients have
 * by default.
 */
#define JW_LIST_MAX_BYTES (4u << 20)

/* teleportd's --max-stop-timeout default: 5 minutes. */
#define JW_SERVICE_DEFAULT_MAX_STOP_TIMEOUT_MS (5u * 60 * 1000)
#include "jobworker/users.h"

typedef struct {
  jw_supervisor_t *sup;
  /*
   * Resource limits: what a job gets when its request leaves a field at 0
   * (default_limits), and the most a request may ask for (max_limits; 0:
   * no maximum). cgroups says what the host can enforce (NULL: nothing).
   */
  jw_cgroup_mgr_t *cgroups;
  jw_limits_t default_limits;
  jw_limits_t max_limits;
  /* Whether requests may ask for namespaces (Isolation). */
  bool allow_isolation;
  /*
   * The supervisor's running-job limits, as configured (0: none), so that
   * a RESOURCE_EXHAUSTED message can name the limit and its flag.
   */
  size_t max_jobs;
  size_t max_jobs_per_client;
  /* Caps on a Start request's args, env and string bytes (0: none). */
  jw_request_limits_t request_limits;
  /* The largest List reply; 0: JW_LIST_MAX_BYTES. */
  size_t max_list_bytes;
  /*
   * The longest grace a Stop may ask for (StopRequest.timeout_ms; more
   * is cut to it); 0: JW_SERVICE_DEFAULT_MAX_STOP_TIMEOUT_MS.
   */
  uint64_t max_stop_timeout_ms;
  /*
   * Which Unix user each client's jobs run as (NULL: the server's own
   * credentials, as in-process tests use it).
   */
  jw_users_t *users;
  /*
   * Health, as grpc.health.v1.Health reports it: kept by the service
   * (jw_service_set_serving, jw_service_shutdown). A zeroed jw_service_t
   * is SERVING with no Watch calls; do not touch these.
   */
  bool not_serving;
  bool health_ended;
  struct jw__health_watch_s *watches;
} jw_service_t;

/*
 * The method table for jw_rpc_server_options_t: jobworker.v1.JobWorker,
 * grpc.health.v1.Health (Check, Watch) and the server reflection of
 * grpc.reflection.v1 and v1alpha (docs/protocol.md). Every handler expects
 * the jw_service_t as its data pointer.
 */
const jw_rpc_method_t *jw_service_methods(size_t *count);

/* The service names Health answers for besides "" (the whole server). */
#define JW_SERVICE_NAME "jobworker.v1.JobWorker"

/*
 * Sets what Health reports for "" and JW_SERVICE_NAME: SERVING (true) or
 * NOT_SERVING (false, e.g. while a reload runs). Every Watch call gets a
 * message with the new status. A no-op after jw_service_shutdown.
 */
void jw_service_set_serving(jw_service_t *svc, bool serving);

/*
 * The server is going away: Health reports NOT_SERVING from now on, and
 * every Watch call sends that, then ends with OK (as do Watch calls that
 * start later, after their first message), so that they do not hold up
 * jw_rpc_server_shutdown. Call it before that.
 */
void jw_service_shutdown(jw_service_t *svc);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_SERVICE_H */
