/*
 * teleport health [SERVICE]: asks grpc.health.v1.Health/Check whether the
 * server (or one of its services) is SERVING, for probes such as Docker's
 * HEALTHCHECK. It creates no job, so probing leaves the job history alone.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "health.pb-c.h"

const char cli_health_help[] =
    "Usage: teleport health [SERVICE]\n"
    "\n"
    "Ask the server's grpc.health.v1.Health service whether SERVICE is\n"
    "serving and print its status (SERVING, NOT_SERVING). SERVICE is \"\"\n"
    "(the default: the server as a whole) or jobworker.v1.JobWorker. It\n"
    "needs a client certificate like every call, and creates no job: use\n"
    "it for health probes (docker/Dockerfile's HEALTHCHECK does).\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 SERVING; 1 anything else: NOT_SERVING (the server is\n"
    "shutting down), an unknown SERVICE, a server or connection error; 2 a\n"
    "usage error.\n";

static const char *status_name(int st) {
  switch (st) {
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
    return "SERVING";
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
    return "NOT_SERVING";
  case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
    return "SERVICE_UNKNOWN";
  default:
    return "UNKNOWN";
  }
}

int cli_cmd_health(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {NULL, 0, NULL, 0},
  };
  const char *cmd = argv[0];
  const char *service = "";
  int c, rc;

  optind = 0;
  if ((c = cli_next_opt(conn, cmd, argc, argv, ":h", longopts)) != -1)
    return c == CLI_OPT_HELPED ? CLI_EXIT_OK : cli_getopt_error(cmd, c, argv);
  if (optind < argc)
    service = argv[optind++];
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  cli_session_t s;
  Grpc__Health__V1__HealthCheckResponse *resp = NULL;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)service;
  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK)
    rc = cli_session_unary(&s, "/grpc.health.v1.Health/Check", &req.base,
                           &grpc__health__v1__health_check_response__descriptor,
                           NULL, CLI_UNARY_TIMEOUT_MS,
                           (ProtobufCMessage **)&resp);
  if (rc == CLI_EXIT_OK) {
    printf("%s\n", status_name(resp->status));
    if (resp->status !=
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
      rc = CLI_EXIT_FAIL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
  }
  cli_session_close(&s);
  return rc;
}
