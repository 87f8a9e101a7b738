#include "flags.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conffile.h"
#include "jobworker/rpc.h"
#include "jobworker/service.h"
#include "jobworker/supervisor.h"
#include "jobworker/units.h"

#ifndef JW_VERSION
#define JW_VERSION "unknown"
#endif

#define DEFAULT_ADDR "127.0.0.1:3000"
/* The library's defaults, so that each is written once. */
#define DEFAULT_STOP_TIMEOUT_MS JW_SUPERVISOR_DEFAULT_STOP_GRACE_MS
#define DEFAULT_MAX_CONNECTIONS JW_RPC_DEFAULT_MAX_CONNECTIONS
/* Well above the uids of a host's own accounts (and of most containers). */
#define DEFAULT_JOB_UID_FIRST 200000
#define DEFAULT_JOB_UID_LAST 265535

/*
 * The server limits that are plain numbers, sizes or durations: one row
 * each, parsed the same way. Defaults are documented in --help and in
 * docs/protocol.md#limits.
 */
enum { SL_COUNT, SL_SIZE, SL_DURATION };
static const struct {
  const char *flag;
  const char *env;
  int kind;
  uint64_t def, min, max; /* min 0: 0 allowed (no limit) */
  size_t off;             /* in jw_config_t */
} server_limits[] = {
    {"max-jobs", "TELEPORTD_MAX_JOBS", SL_COUNT, 512, 0, 1000000,
     offsetof(jw_config_t, max_jobs)},
    {"max-jobs-per-client", "TELEPORTD_MAX_JOBS_PER_CLIENT", SL_COUNT, 64, 0,
     1000000, offsetof(jw_config_t, max_jobs_per_client)},
    {"max-output-bytes", "TELEPORTD_MAX_OUTPUT_BYTES", SL_SIZE, 1ULL << 30, 0,
     1ULL << 50, offsetof(jw_config_t, max_output_bytes)},
    {"max-finished-per-client", "TELEPORTD_MAX_FINISHED_PER_CLIENT", SL_COUNT,
     100, 0, 1000000, offsetof(jw_config_t, max_finished_per_client)},
    {"max-request-bytes", "TELEPORTD_MAX_REQUEST_BYTES", SL_SIZE,
     JW_RPC_DEFAULT_MAX_MESSAGE_BYTES, 1024, 1ULL << 30,
     offsetof(jw_config_t, max_request_bytes)},
    {"max-streams", "TELEPORTD_MAX_STREAMS", SL_COUNT,
     JW_RPC_DEFAULT_MAX_CONCURRENT_STREAMS, 1, 100000,
     offsetof(jw_config_t, max_streams)},
    {"handshake-timeout", "TELEPORTD_HANDSHAKE_TIMEOUT", SL_DURATION,
     JW_RPC_DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, 3600000,
     offsetof(jw_config_t, handshake_timeout_ms)},
    {"max-args", "TELEPORTD_MAX_ARGS", SL_COUNT, JW_REQUEST_DEFAULT_MAX_ARGS, 0,
     1000000, offsetof(jw_config_t, max_args)},
    {"max-env", "TELEPORTD_MAX_ENV", SL_COUNT, JW_REQUEST_DEFAULT_MAX_ENV, 0,
     1000000, offsetof(jw_config_t, max_env)},
    {"max-request-strings", "TELEPORTD_MAX_REQUEST_STRINGS", SL_SIZE,
     JW_REQUEST_DEFAULT_MAX_STRINGS, 0, 1ULL << 30,
     offsetof(jw_config_t, max_request_strings)},
    {"max-disk-per-client", "TELEPORTD_MAX_DISK_PER_CLIENT", SL_SIZE,
     10ULL << 30, 0, 1ULL << 50, offsetof(jw_config_t, max_disk_per_client)},
    {"request-timeout", "TELEPORTD_REQUEST_TIMEOUT", SL_DURATION,
     JW_RPC_DEFAULT_REQUEST_TIMEOUT_MS, 1, 3600000,
     offsetof(jw_config_t, request_timeout_ms)},
    {"idle-timeout", "TELEPORTD_IDLE_TIMEOUT", SL_DURATION,
     JW_RPC_DEFAULT_IDLE_TIMEOUT_MS, 1, 86400000,
     offsetof(jw_config_t, idle_timeout_ms)},
    {"max-connections-per-client", "TELEPORTD_MAX_CONNECTIONS_PER_CLIENT",
     SL_COUNT, JW_RPC_DEFAULT_MAX_CONNECTIONS_PER_CLIENT, 1, 1000000,
     offsetof(jw_config_t, max_connections_per_client)},
    {"max-stop-timeout", "TELEPORTD_MAX_STOP_TIMEOUT", SL_DURATION,
     JW_SERVICE_DEFAULT_MAX_STOP_TIMEOUT_MS, 1, 86400000,
     offsetof(jw_config_t, max_stop_timeout_ms)},
};

#define NSERVER_LIMITS (sizeof(server_limits) / sizeof(server_limits[0]))

/* A default as --help writes it: "512", "4M", "10s", "5m". */
static void show_value(int kind, uint64_t v, char *buf, size_t size) {
  static const char *const sizes[] = {"", "K", "M", "G", "T"};
  size_t u = 0;
  if (kind == SL_SIZE) {
    while (u + 1 < sizeof(sizes) / sizeof(sizes[0]) && v >= 1024 &&
           v % 1024 == 0)
      v /= 1024, u++;
    snprintf(buf, size, "%" PRIu64 "%s", v, sizes[u]);
  } else if (kind == SL_DURATION) {
    if (v != 0 && v % 3600000 == 0)
      snprintf(buf, size, "%" PRIu64 "h", v / 3600000);
    else if (v != 0 && v % 60000 == 0)
      snprintf(buf, size, "%" PRIu64 "m", v / 60000);
    else if (v % 1000 == 0)
      snprintf(buf, size, "%" PRIu64 "s", v / 1000);
    else
      snprintf(buf, size, "%" PRIu64 "ms", v);
  } else {
    snprintf(buf, size, "%" PRIu64, v);
  }
}

/*
 * Writes text with each "{flag}" replaced by that server limit's default,
 * so that --help shows the defaults the table holds.
 */
static void put_help(FILE *f, const char *text) {
  const char *p = text, *open;
  while ((open = strchr(p, '{')) != NULL) {
    const char *close = strchr(open, '}');
    size_t n = close != NULL ? (size_t)(close - open - 1) : 0;
    char shown[32] = "?";
    fwrite(p, 1, (size_t)(open - p), f);
    for (size_t i = 0; i < NSERVER_LIMITS; i++)
      if (strlen(server_limits[i].flag) == n &&
          memcmp(server_limits[i].flag, open + 1, n) == 0)
        show_value(server_limits[i].kind, server_limits[i].def, shown,
                   sizeof(shown));
    fputs(shown, f);
    p = close != NULL ? close + 1 : open + strlen(open);
  }
  fputs(p, f);
}

static void usage(FILE *f, const char *defdir) {
  char stop[32];
  show_value(SL_DURATION, DEFAULT_STOP_TIMEOUT_MS, stop, sizeof(stop));
  fprintf(
      f,
      "Usage: teleportd [FLAGS]\n"
      "\n"
      "Runs the JobWorker gRPC service over mutual TLS 1.3. Clients are\n"
      "identified by the common name (CN) of their certificate; each client\n"
      "sees and controls only its own jobs.\n"
      "\n"
      "Flags (each also read from the environment variable shown):\n"
      "  --addr HOST:PORT       listen address; IPv6 as [::1]:3000\n"
      "                         (TELEPORTD_ADDR, default %s)\n"
      "  --cacert FILE          CA certificate that client certificates must\n"
      "                         chain to (TELEPORTD_CACERT, required)\n"
      "  --cert FILE            server certificate (TELEPORTD_CERT, "
      "required)\n"
      "  --key FILE             server private key (TELEPORTD_KEY, required)\n"
      "  --data-dir DIR         where job output logs are kept; created if\n"
      "                         missing (TELEPORTD_DATA_DIR, default %s)\n"
      "  --stop-timeout DUR     grace period between SIGTERM and SIGKILL when\n"
      "                         a job is stopped, e.g. 10s, 500ms, 1m\n"
      "                         (TELEPORTD_STOP_TIMEOUT, default %s)\n"

      "  --max-connections N    connections served at once; more are closed\n"
      "                         at accept (TELEPORTD_MAX_CONNECTIONS, default "
      "%d)\n"
      "  --log-level LEVEL      debug, info, warn or error\n"
      "                         (TELEPORTD_LOG_LEVEL, default info)\n"
      "  --crl FILE             certificate revocation list (PEM, from\n"
      "                         jw-certs revoke): revoked client certificates\n"
      "                         are refused at the handshake (TELEPORTD_CRL)\n"
      "  --metrics-cn CN[,CN...] client certificate CNs allowed to GET\n"
      "                         /metrics (Prometheus text format) on --addr;\n"
      "                         every other CN gets 403, and every CN does\n"
      "                         when this is unset (TELEPORTD_METRICS_CN)\n"

      "  --config FILE          read settings from FILE: one \"key = value\"\n"
      "                         a line, the keys being the long names of\n"
      "                         the flags here (addr = 127.0.0.1:3000,\n"
      "                         max-jobs = 100); # starts a comment line.\n"
      "                         A flag wins over its variable, which wins\n"
      "                         over FILE, which wins over the default. An\n"
      "                         unknown or repeated key, or a FILE anyone\n"
      "                         may write, is refused (TELEPORTD_CONFIG)\n",
      DEFAULT_ADDR, defdir, stop, DEFAULT_MAX_CONNECTIONS);
  fprintf(
      f,
      "\n"
      "Job users (see docs/security.md). As root, each client's jobs run as\n"
      "an unprivileged user of its own, with no supplementary groups, no\n"
      "capabilities and no_new_privs; not as root, as teleportd's user.\n"
      "  --job-uid-range FIRST-LAST uids given to clients, one each, kept in\n"
      "                         the data directory across restarts; gid =\n"
      "                         uid (TELEPORTD_JOB_UID_RANGE, default "
      "%d-%d)\n"
      "  --users FILE           lines \"CN ACCOUNT\": the client's jobs run "
      "as\n"
      "                         ACCOUNT (a user name, UID, UID:GID, or root),\n"
      "                         or \"CN -\": the client may not run jobs\n"
      "                         (TELEPORTD_USERS)\n",
      DEFAULT_JOB_UID_FIRST, DEFAULT_JOB_UID_LAST);
  put_help(
      f,
      "\n"
      "Server limits (past one a request gets RESOURCE_EXHAUSTED naming the\n"
      "flag; 0 means no limit where it says so):\n"
      "  --max-jobs N           running jobs in all; 0: none\n"
      "                         (TELEPORTD_MAX_JOBS, default {max-jobs})\n"
      "  --max-jobs-per-client N running jobs of one client; 0: none\n"
      "                         (TELEPORTD_MAX_JOBS_PER_CLIENT, default "
      "{max-jobs-per-client})\n"
      "  --max-output-bytes SIZE output kept per job; past it the job keeps\n"
      "                         running and further output is dropped and\n"
      "                         counted (JobStatus.output_dropped_bytes); 0:\n"
      "                         none (TELEPORTD_MAX_OUTPUT_BYTES, default "
      "{max-output-bytes})\n"
      "  --max-finished-per-client N finished jobs kept per client; the one\n"
      "                         that finished first goes, with its output;\n"
      "                         0: keep all "
      "(TELEPORTD_MAX_FINISHED_PER_CLIENT,\n"
      "                         default {max-finished-per-client})\n"
      "  --max-request-bytes SIZE one request message\n"
      "                         (TELEPORTD_MAX_REQUEST_BYTES, default "
      "{max-request-bytes})\n"
      "  --max-args N           args entries of one Start; more is\n"
      "                         INVALID_ARGUMENT; 0: none\n"
      "                         (TELEPORTD_MAX_ARGS, default {max-args})\n"
      "  --max-env N            env entries of one Start; 0: none\n"
      "                         (TELEPORTD_MAX_ENV, default {max-env})\n"
      "  --max-request-strings SIZE bytes of all strings of one request\n"
      "                         (command, args, env, working_dir); 0: none\n"
      "                         (TELEPORTD_MAX_REQUEST_STRINGS, default "
      "{max-request-strings})\n"
      "  --max-disk-per-client SIZE output one client keeps on disk; past\n"
      "                         it its oldest finished jobs go first, then\n"
      "                         new output is dropped and counted; 0: none\n"
      "                         (TELEPORTD_MAX_DISK_PER_CLIENT, default "
      "{max-disk-per-client})\n"
      "  --max-streams N        concurrent HTTP/2 streams per connection\n"
      "                         (TELEPORTD_MAX_STREAMS, default "
      "{max-streams})\n"
      "  --handshake-timeout DUR a TLS handshake must finish within this\n"
      "                         (TELEPORTD_HANDSHAKE_TIMEOUT, default "
      "{handshake-timeout})\n"
      "  --request-timeout DUR  a call's request must arrive in full within\n"
      "                         this, or the call ends with DEADLINE_EXCEEDED\n"
      "                         (TELEPORTD_REQUEST_TIMEOUT, default "
      "{request-timeout})\n"
      "  --max-stop-timeout DUR the longest grace a Stop may ask for; more\n"
      "                         is cut to it (TELEPORTD_MAX_STOP_TIMEOUT,\n"
      "                         default {max-stop-timeout})\n"
      "  --idle-timeout DUR     a connection none of whose calls is served or\n"
      "                         sending is closed after this\n"
      "                         (TELEPORTD_IDLE_TIMEOUT, default "
      "{idle-timeout})\n"
      "  --max-connections-per-client N connections of one client (CN) at\n"
      "                         once; more are refused after the handshake\n"
      "                         (TELEPORTD_MAX_CONNECTIONS_PER_CLIENT, "
      "default {max-connections-per-client})\n"
      "");
  fputs(
      "\n"
      "Resource limits (each job runs in a cgroup of its own; see\n"
      "docs/isolation.md). A request's 0 takes the default; asking over a\n"
      "maximum is refused. Defaults and maximums are 0: none.\n"
      "  --default-memory SIZE  memory per job, e.g. 512M, 2G\n"
      "                         (TELEPORTD_DEFAULT_MEMORY)\n"
      "  --max-memory SIZE      (TELEPORTD_MAX_MEMORY)\n"
      "  --default-cpus CPUS    CPU time per job, e.g. 0.5, 2, 250m\n"
      "                         (TELEPORTD_DEFAULT_CPUS)\n"
      "  --max-cpus CPUS        (TELEPORTD_MAX_CPUS)\n"
      "  --default-pids N       processes and threads per job\n"
      "                         (TELEPORTD_DEFAULT_PIDS, default 15% of the\n"
      "                         smaller of kernel.pid_max and\n"
      "                         kernel.threads-max, as systemd's\n"
      "                         DefaultTasksMax; 0: none)\n"
      "  --max-pids N           (TELEPORTD_MAX_PIDS)\n"
      "  --default-io-read RATE bytes per second, e.g. 10M\n"
      "                         (TELEPORTD_DEFAULT_IO_READ)\n"
      "  --max-io-read RATE     (TELEPORTD_MAX_IO_READ)\n"
      "  --default-io-write RATE (TELEPORTD_DEFAULT_IO_WRITE)\n"
      "  --max-io-write RATE    (TELEPORTD_MAX_IO_WRITE)\n"
      "  --io-device DEV        the block device io limits apply to: a path\n"
      "                         (/dev/sdb, or any file on the disk) or\n"
      "                         MAJ:MIN (TELEPORTD_IO_DEVICE, default the\n"
      "                         data directory's disk)\n"
      "  --allow-isolation BOOL whether requests may ask for PID, mount and\n"
      "                         network namespaces: true or false\n"
      "                         (TELEPORTD_ALLOW_ISOLATION, default true)\n"
      "  --durable BOOL         keep every job's record and output in the\n"
      "                         data directory: a restart or crash forgets\n"
      "                         no job (TELEPORTD_DURABLE, default true;\n"
      "                         false: jobs are forgotten at exit)\n"
      "  --keep-env BOOL        also write jobs' env values into their\n"
      "                         records (they may carry secrets)\n"
      "                         (TELEPORTD_KEEP_ENV, default false)\n"
      "  --check                check the flags, the --config file, the\n"
      "                         certificates, key, CA and CRL and the data\n"
      "                         directory, print \"configuration ok\" and\n"
      "                         exit 0, or exit 2 saying why; a running\n"
      "                         server's lock is left alone (SIGHUP runs it)\n"
      "  -h, --help             show this help\n"
      "  --version              show the version\n"
      "\n"
      "Logs go to stderr, one logfmt line per event, at most 2048 bytes; a\n"
      "value over 256 bytes is cut and ends with \"...\". SIGTERM or SIGINT\n"
      "stops every job (SIGTERM, grace period, SIGKILL), finishes the\n"
      "streams and exits 0; with --durable the stopped jobs are recorded\n"
      "(reason \"server shutdown\") and kept for the next start. SIGHUP\n"
      "reloads: the binary teleportd was started from runs with --check and\n"
      "the same flags; if that passes, open streams end with UNAVAILABLE and\n"
      "teleportd re-executes it, handing over the listening socket and every\n"
      "running job (same pid, no output lost) and reading certificates, CA\n"
      "and CRL again.\n"
      "\n"
      "Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a\n"
      "bad flag or an unusable file.\n",
      f);
}

/* The default data directory: one that works without privileges. */
static const char *default_data_dir(jw_config_t *cfg) {
  const char *base = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  if (geteuid() == 0)
    snprintf(cfg->data_dir_buf, sizeof(cfg->data_dir_buf),
             "/var/lib/teleportd");
  else if (base != NULL && base[0] == '/')
    snprintf(cfg->data_dir_buf, sizeof(cfg->data_dir_buf), "%s/teleportd",
             base);
  else if (home != NULL && home[0] == '/')
    snprintf(cfg->data_dir_buf, sizeof(cfg->data_dir_buf),
             "%s/.local/state/teleportd", home);
  else
    snprintf(cfg->data_dir_buf, sizeof(cfg->data_dir_buf), "/tmp/teleportd-%u",
             (unsigned)geteuid());
  return cfg->data_dir_buf;
}

/*
 * The other flags that take a value, in the order of their option codes.
 * A string flag is stored as given at off in jw_config_t; the others
 * (NO_FIELD) are parsed below, from the flag or else its variable.
 */
enum {
  VF_ADDR,
  VF_CACERT,
  VF_CERT,
  VF_KEY,
  VF_DATA_DIR,
  VF_IO_DEVICE,
  VF_USERS,
  VF_CRL,
  VF_METRICS_CN,
  VF_STOP_TIMEOUT,
  VF_MAX_CONN,
  VF_LOG_LEVEL,
  VF_ALLOW_ISOLATION,
  VF_DURABLE,
  VF_KEEP_ENV,
  VF_JOB_UID_RANGE,
  VF_CONFIG,
  NVALUE_FLAGS
};
#define NO_FIELD ((size_t)-1)
static const struct {
  const char *flag;
  const char *env;
  size_t off;
} value_flags[NVALUE_FLAGS] = {
    [VF_ADDR] = {"addr", "TELEPORTD_ADDR", offsetof(jw_config_t, addr)},
    [VF_CACERT] = {"cacert", "TELEPORTD_CACERT", offsetof(jw_config_t, cacert)},
    [VF_CERT] = {"cert", "TELEPORTD_CERT", offsetof(jw_config_t, cert)},
    [VF_KEY] = {"key", "TELEPORTD_KEY", offsetof(jw_config_t, key)},
    [VF_DATA_DIR] = {"data-dir", "TELEPORTD_DATA_DIR",
                     offsetof(jw_config_t, data_dir)},
    [VF_IO_DEVICE] = {"io-device", "TELEPORTD_IO_DEVICE",
                      offsetof(jw_config_t, io_device)},
    [VF_USERS] = {"users", "TELEPORTD_USERS",
                  offsetof(jw_config_t, users_file)},
    [VF_CRL] = {"crl", "TELEPORTD_CRL", offsetof(jw_config_t, crl)},
    [VF_METRICS_CN] = {"metrics-cn", "TELEPORTD_METRICS_CN",
                       offsetof(jw_config_t, metrics_cn)},
    [VF_STOP_TIMEOUT] = {"stop-timeout", "TELEPORTD_STOP_TIMEOUT", NO_FIELD},
    [VF_MAX_CONN] = {"max-connections", "TELEPORTD_MAX_CONNECTIONS", NO_FIELD},
    [VF_LOG_LEVEL] = {"log-level", "TELEPORTD_LOG_LEVEL", NO_FIELD},
    [VF_ALLOW_ISOLATION] = {"allow-isolation", "TELEPORTD_ALLOW_ISOLATION",
                            NO_FIELD},
    [VF_DURABLE] = {"durable", "TELEPORTD_DURABLE", NO_FIELD},
    [VF_KEEP_ENV] = {"keep-env", "TELEPORTD_KEEP_ENV", NO_FIELD},
    [VF_JOB_UID_RANGE] = {"job-uid-range", "TELEPORTD_JOB_UID_RANGE", NO_FIELD},
    [VF_CONFIG] = {"config", "TELEPORTD_CONFIG", NO_FIELD},
};

enum {
  OPT_VERSION = 256,
  OPT_CHECK = 257,
  OPT_VALUE = 300,        /* OPT_VALUE + i: value_flags[i] */
  OPT_SERVER_LIMIT = 400, /* OPT_SERVER_LIMIT + i: server_limits[i] */
  OPT_LIMIT = 500         /* OPT_LIMIT + i: limit_flags[i] */
};

/* Where a setting came from; a later one loses to an earlier one. */
enum { FROM_FLAG, FROM_ENV, FROM_FILE };

/* A flag's text, from the command line, its variable or the --config file. */
typedef struct {
  const char *value; /* NULL: none of them gave it */
  const char *name;  /* the flag, the variable, or the file's key */
  int from;
  unsigned line;     /* FROM_FILE: the line it was on */
  unsigned key_line; /* the line the file gave it on (0: not in the file) */
  const char *file;  /* FROM_FILE: the file */
} given_t;

static void give(given_t *g, const char *value, const char *name, int from) {
  g->value = value;
  g->name = name;
  g->from = from;
}

/*
 * Says which setting has a bad value: "invalid --flag", "invalid
 * VARIABLE" or "FILE:LINE: invalid key".
 */
static int bad(const given_t *g, const char *why) {
  if (g->from == FROM_FILE)
    fprintf(stderr, "teleportd: %s:%u: invalid %s", g->file, g->line, g->name);
  else
    fprintf(stderr, "teleportd: invalid %s%s", g->from == FROM_FLAG ? "--" : "",
            g->name);
  fprintf(stderr, " \"%s\": %s\n", g->value, why);
  fprintf(stderr, "Run 'teleportd --help' for usage.\n");
  return 2;
}

enum { KIND_SIZE, KIND_CPUS, KIND_COUNT };

/* The limit flags, in the order of their option codes. */
static const struct {
  const char *flag;
  const char *env;
  int kind;
  int max;    /* a maximum, not a default */
  size_t off; /* offset of the field in jw_limits_t */
} limit_flags[] = {
    {"default-memory", "TELEPORTD_DEFAULT_MEMORY", KIND_SIZE, 0,
     offsetof(jw_limits_t, memory_bytes)},
    {"max-memory", "TELEPORTD_MAX_MEMORY", KIND_SIZE, 1,
     offsetof(jw_limits_t, memory_bytes)},
    {"default-cpus", "TELEPORTD_DEFAULT_CPUS", KIND_CPUS, 0,
     offsetof(jw_limits_t, cpu_millis)},
    {"max-cpus", "TELEPORTD_MAX_CPUS", KIND_CPUS, 1,
     offsetof(jw_limits_t, cpu_millis)},
    {"default-pids", "TELEPORTD_DEFAULT_PIDS", KIND_COUNT, 0,
     offsetof(jw_limits_t, pids)},
    {"max-pids", "TELEPORTD_MAX_PIDS", KIND_COUNT, 1,
     offsetof(jw_limits_t, pids)},
    {"default-io-read", "TELEPORTD_DEFAULT_IO_READ", KIND_SIZE, 0,
     offsetof(jw_limits_t, io_read_bps)},
    {"max-io-read", "TELEPORTD_MAX_IO_READ", KIND_SIZE, 1,
     offsetof(jw_limits_t, io_read_bps)},
    {"default-io-write", "TELEPORTD_DEFAULT_IO_WRITE", KIND_SIZE, 0,
     offsetof(jw_limits_t, io_write_bps)},
    {"max-io-write", "TELEPORTD_MAX_IO_WRITE", KIND_SIZE, 1,
     offsetof(jw_limits_t, io_write_bps)},
};

#define NLIMIT_FLAGS (sizeof(limit_flags) / sizeof(limit_flags[0]))

static int parse_limit(int kind, const char *s, int64_t *out) {
  if (kind == KIND_SIZE)
    return jw_parse_size(s, out);
  if (kind == KIND_CPUS)
    return jw_parse_cpus(s, out);
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0 || v < 0)
    return -EINVAL;
  *out = v;
  return 0;
}

static int parse_bool(const char *s, bool *out) {
  if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0)
    *out = true;
  else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 ||
           strcmp(s, "no") == 0)
    *out = false;
  else
    return -EINVAL;
  return 0;
}

/*
 * The setting key names in --config, or NULL: every flag that takes a
 * value, by the same tables, so that a new flag is a key with no more
 * code.
 */
static given_t *find_key(const char *key, given_t *vf, given_t *lf,
                         given_t *sf) {
  for (size_t i = 0; i < NVALUE_FLAGS; i++)
    if (strcmp(key, value_flags[i].flag) == 0)
      return &vf[i];
  for (size_t i = 0; i < NLIMIT_FLAGS; i++)
    if (strcmp(key, limit_flags[i].flag) == 0)
      return &lf[i];
  for (size_t i = 0; i < NSERVER_LIMITS; i++)
    if (strcmp(key, server_limits[i].flag) == 0)
      return &sf[i];
  return NULL;
}

/* The key nearest to an unknown one, or NULL when none is near. */
static const char *nearest_key(const char *key) {
  const char *best = NULL;
  unsigned best_d = 4; /* farther than 3 edits is not a typo */
#define CONSIDER(name)                                                         \
  do {                                                                         \
    unsigned d = jw__conffile_distance(key, (name));                           \
    if (d < best_d && strcmp((name), "config") != 0)                           \
      best = (name), best_d = d;                                               \
  } while (0)
  for (size_t i = 0; i < NVALUE_FLAGS; i++)
    CONSIDER(value_flags[i].flag);
  for (size_t i = 0; i < NLIMIT_FLAGS; i++)
    CONSIDER(limit_flags[i].flag);
  for (size_t i = 0; i < NSERVER_LIMITS; i++)
    CONSIDER(server_limits[i].flag);
#undef CONSIDER
  return best;
}

static int config_error(const char *path, unsigned line, const char *fmt,
                        const char *a, const char *b) {
  fprintf(stderr, "teleportd: %s:%u: ", path, line);
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\nRun 'teleportd --help' for usage.\n");
  return 2;
}

/*
 * Reads the --config file into the settings neither a flag nor a
 * (non-empty) variable gave. The whole file is checked even where those
 * win, so that a mistake in it shows the day it is written.
 */
static int read_config(jw_config_t *cfg, const char *path, given_t *vf,
                       given_t *lf, given_t *sf) {
  jw_conffile_entry_t e;
  const char *why;
  int r = jw__conffile_load(&cfg->config_file, path);

  if (r == -EPERM) {
    fprintf(stderr,
            "teleportd: refusing the configuration file %s: anyone may "
            "write it (chmod o-w %s)\n",
            path, path);
    return 2;
  }
  if (r != 0) {
    fprintf(stderr, "teleportd: cannot read the configuration file %s: %s\n",
            path,
            r == -EFBIG    ? "it is over 64 KiB"
            : r == -EINVAL ? "it is not a regular file"
                           : strerror(-r));
    return 2;
  }
  cfg->config = path;
  while ((r = jw__conffile_next(&cfg->config_file, &e, &why)) == 1) {
    given_t *g = find_key(e.key, vf, lf, sf);
    char first[32];
    if (e.section != NULL)
      return config_error(path, e.line, "%s: sections are not used%s", e.key,
                          " in teleportd's configuration");
    if (g == NULL) {
      const char *near = nearest_key(e.key);
      char hint[96];
      if (near != NULL)
        snprintf(hint, sizeof(hint), " (did you mean %s?)", near);
      else
        snprintf(hint, sizeof(hint),
                 " (the keys are the flags' names; see teleportd --help)");
      return config_error(path, e.line, "unknown key %s%s", e.key, hint);
    }
    if (g == &vf[VF_CONFIG])
      return config_error(path, e.line, "%s: a configuration file cannot%s",
                          e.key, " name another");
    if (g->key_line != 0) {
      snprintf(first, sizeof(first), "%u", g->key_line);
      return config_error(path, e.line, "%s given twice (first on line %s)",
                          e.key, first);
    }
    g->key_line = e.line;
    if (g->value != NULL && (g->from == FROM_FLAG || g->value[0] != '\0'))
      continue;
    g->value = e.value;
    g->name = e.key;
    g->from = FROM_FILE;
    g->line = e.line;
    g->file = path;
  }
  if (r < 0)
    return config_error(path, e.line, "%s%s", why, "");
  return 0;
}

int jw_flags_parse(jw_config_t *cfg, int argc, char **argv) {
  /* Every flag of the tables above, then --help and --version. */
  struct option opts[NVALUE_FLAGS + NLIMIT_FLAGS + NSERVER_LIMITS + 4];
  given_t vf[NVALUE_FLAGS], lf[NLIMIT_FLAGS], sf[NSERVER_LIMITS];
  size_t no = 0;

  memset(cfg, 0, sizeof(*cfg));
  memset(vf, 0, sizeof(vf));
  memset(lf, 0, sizeof(lf));
  memset(sf, 0, sizeof(sf));
  for (size_t i = 0; i < NVALUE_FLAGS; i++) {
    give(&vf[i], getenv(value_flags[i].env), value_flags[i].env, FROM_ENV);
    opts[no++] = (struct option){value_flags[i].flag, required_argument, NULL,
                                 OPT_VALUE + (int)i};
  }
  for (size_t i = 0; i < NLIMIT_FLAGS; i++) {
    give(&lf[i], getenv(limit_flags[i].env), limit_flags[i].env, FROM_ENV);
    opts[no++] = (struct option){limit_flags[i].flag, required_argument, NULL,
                                 OPT_LIMIT + (int)i};
  }
  for (size_t i = 0; i < NSERVER_LIMITS; i++) {
    give(&sf[i], getenv(server_limits[i].env), server_limits[i].env, FROM_ENV);
    opts[no++] = (struct option){server_limits[i].flag, required_argument, NULL,
                                 OPT_SERVER_LIMIT + (int)i};
  }
  opts[no++] = (struct option){"help", no_argument, NULL, 'h'};
  opts[no++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
  opts[no++] = (struct option){"check", no_argument, NULL, OPT_CHECK};
  opts[no] = (struct option){NULL, 0, NULL, 0};

  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c >= OPT_VALUE && c < OPT_VALUE + NVALUE_FLAGS) {
      give(&vf[c - OPT_VALUE], optarg, value_flags[c - OPT_VALUE].flag,
           FROM_FLAG);
    } else if (c >= OPT_SERVER_LIMIT &&
               c < OPT_SERVER_LIMIT + (int)NSERVER_LIMITS) {
      give(&sf[c - OPT_SERVER_LIMIT], optarg,
           server_limits[c - OPT_SERVER_LIMIT].flag, FROM_FLAG);
    } else if (c >= OPT_LIMIT && c < OPT_LIMIT + (int)NLIMIT_FLAGS) {
      give(&lf[c - OPT_LIMIT], optarg, limit_flags[c - OPT_LIMIT].flag,
           FROM_FLAG);
    } else if (c == 'h') {
      usage(stdout, default_data_dir(cfg));
      return 1;
    } else if (c == OPT_CHECK) {
      cfg->check = true;
    } else if (c == OPT_VERSION) {
      printf("teleportd %s\n", JW_VERSION);
      return 1;
    } else {
      if (c == ':')
        fprintf(stderr, "teleportd: %s needs a value\n", argv[optind - 1]);
      else
        fprintf(stderr, "teleportd: unknown flag %s\n", argv[optind - 1]);
      fprintf(stderr, "Run 'teleportd --help' for usage.\n");
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "teleportd: unexpected argument \"%s\"\n", argv[optind]);
    fprintf(stderr, "Run 'teleportd --help' for usage.\n");
    return 2;
  }
  if (vf[VF_CONFIG].value != NULL && vf[VF_CONFIG].value[0] != '\0') {
    int rc = read_config(cfg, vf[VF_CONFIG].value, vf, lf, sf);
    if (rc != 0)
      return rc;
  }
  for (size_t i = 0; i < NVALUE_FLAGS; i++)
    if (value_flags[i].off != NO_FIELD)
      *(const char **)((char *)cfg + value_flags[i].off) = vf[i].value;

  const char *stop = vf[VF_STOP_TIMEOUT].value;
  const char *maxc = vf[VF_MAX_CONN].value;
  const char *level = vf[VF_LOG_LEVEL].value;
  const char *iso = vf[VF_ALLOW_ISOLATION].value;
  const char *uids = vf[VF_JOB_UID_RANGE].value;
  const given_t *stop_flag = &vf[VF_STOP_TIMEOUT];
  const given_t *maxc_flag = &vf[VF_MAX_CONN];
  const given_t *level_flag = &vf[VF_LOG_LEVEL];
  const given_t *iso_flag = &vf[VF_ALLOW_ISOLATION];
  const given_t *uids_flag = &vf[VF_JOB_UID_RANGE];

  if (cfg->addr == NULL || cfg->addr[0] == '\0')
    cfg->addr = DEFAULT_ADDR;
  if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
    cfg->data_dir = default_data_dir(cfg);

  cfg->stop_timeout_ms = DEFAULT_STOP_TIMEOUT_MS;
  if (stop != NULL && jw_parse_duration(stop, &cfg->stop_timeout_ms))
    return bad(stop_flag, "want a duration such as 10s, 500ms or 1m");

  cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (maxc != NULL) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(maxc, &end, 10);
    if (end == maxc || *end != '\0' || errno != 0 || v == 0 || v > 1000000)
      return bad(maxc_flag, "want a whole number from 1 to 1000000");
    cfg->max_connections = (uint32_t)v;
  }

  cfg->log_level = JW_LOG_INFO;
  if (level != NULL) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    size_t i;
    for (i = 0; i < 4; i++)
      if (strcmp(level, names[i]) == 0)
        break;
    if (i == 4)
      return bad(level_flag, "want debug, info, warn or error");
    cfg->log_level = (jw_log_level_t)i;
  }

  for (size_t i = 0; i < NLIMIT_FLAGS; i++) {
    static const char *const want[] = {
        "want a size such as 512M or 2G (binary units)",
        "want a number of CPUs such as 0.5, 2 or 250m", "want a whole number"};
    int64_t v;
    if (lf[i].value == NULL || lf[i].value[0] == '\0')
      continue;
    if (parse_limit(limit_flags[i].kind, lf[i].value, &v) != 0)
      return bad(&lf[i], want[limit_flags[i].kind]);
    if (!limit_flags[i].max &&
        limit_flags[i].off == offsetof(jw_limits_t, pids))
      cfg->default_pids_set = true;
    jw_limits_t *l =
        limit_flags[i].max ? &cfg->max_limits : &cfg->default_limits;
    *(int64_t *)((char *)l + limit_flags[i].off) = v;
  }
  for (size_t i = 0; i < NLIMIT_FLAGS; i += 2) {
    int64_t d = *(int64_t *)((char *)&cfg->default_limits + limit_flags[i].off);
    int64_t m = *(int64_t *)((char *)&cfg->max_limits + limit_flags[i].off);
    if (m > 0 && d > m) {
      fprintf(stderr, "teleportd: --%s is over --%s\n", limit_flags[i].flag,
              limit_flags[i + 1].flag);
      return 2;
    }
  }
  cfg->job_uid_first = DEFAULT_JOB_UID_FIRST;
  cfg->job_uid_last = DEFAULT_JOB_UID_LAST;
  if (uids != NULL && uids[0] != '\0') {
    unsigned long long a, b;
    char *end;
    errno = 0;
    a = strtoull(uids, &end, 10);
    if (end == uids || *end != '-' || uids[0] == '-' || errno != 0)
      return bad(uids_flag, "want FIRST-LAST, e.g. 200000-265535");
    const char *second = end + 1;
    b = strtoull(second, &end, 10);
    if (end == second || *end != '\0' || second[0] == '-' || errno != 0 ||
        a == 0 || a > b || b >= 0xffffffffULL || b - a >= (1ULL << 20))
      return bad(uids_flag,
                 "want FIRST-LAST with 0 < FIRST <= LAST < 4294967295 and at "
                 "most 1048576 uids, e.g. 200000-265535");
    cfg->job_uid_first = (uint32_t)a;
    cfg->job_uid_last = (uint32_t)b;
  }
  if (cfg->metrics_cn != NULL && cfg->metrics_cn[0] != '\0') {
    const char *mc = cfg->metrics_cn;
    size_t n = strlen(mc);
    if (mc[0] == ',' || mc[n - 1] == ',' || strstr(mc, ",,") != NULL ||
        n > JW_METRICS_CN_MAX)
      return bad(&vf[VF_METRICS_CN],
                 "want CN[,CN...]: common names separated by commas, none "
                 "empty, 4096 bytes in all at most");
  }
  cfg->allow_isolation = true;
  if (iso != NULL && parse_bool(iso, &cfg->allow_isolation) != 0)
    return bad(iso_flag, "want true or false");
  cfg->durable = true;
  if (vf[VF_DURABLE].value != NULL &&
      parse_bool(vf[VF_DURABLE].value, &cfg->durable) != 0)
    return bad(&vf[VF_DURABLE], "want true or false");
  if (vf[VF_KEEP_ENV].value != NULL &&
      parse_bool(vf[VF_KEEP_ENV].value, &cfg->keep_env) != 0)
    return bad(&vf[VF_KEEP_ENV], "want true or false");

  for (size_t i = 0; i < NSERVER_LIMITS; i++) {
    uint64_t v = server_limits[i].def;
    const char *s = sf[i].value;
    char want[128];
    if (s != NULL && s[0] != '\0') {
      int64_t sz = -1;
      int bad_value = 0;
      if (server_limits[i].kind == SL_DURATION) {
        bad_value = jw_parse_duration(s, &v) != 0;
      } else if (server_limits[i].kind == SL_SIZE) {
        bad_value = jw_parse_size(s, &sz) != 0 || sz < 0;
        v = (uint64_t)sz;
      } else {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        bad_value = end == s || *end != '\0' || errno != 0 || s[0] == '-';
        v = n;
      }
      if (bad_value || v < server_limits[i].min || v > server_limits[i].max) {
        static const char *const kinds[] = {"a whole number",
                                            "a size such as 64K, 4M or 1G",
                                            "a duration such as 10s or 500ms"};
        snprintf(want, sizeof(want), "want %s from %" PRIu64 " to %" PRIu64,
                 kinds[server_limits[i].kind], server_limits[i].min,
                 server_limits[i].max);
        return bad(&sf[i], want);
      }
    }
    *(uint64_t *)((char *)cfg + server_limits[i].off) = v;
  }

  const char *missing = NULL;
  if (cfg->cacert == NULL || cfg->cacert[0] == '\0')
    missing = "--cacert (or TELEPORTD_CACERT)";
  else if (cfg->cert == NULL || cfg->cert[0] == '\0')
    missing = "--cert (or TELEPORTD_CERT)";
  else if (cfg->key == NULL || cfg->key[0] == '\0')
    missing = "--key (or TELEPORTD_KEY)";
  if (missing != NULL) {
    fprintf(stderr,
            "teleportd: missing %s; make certificates with certs/jw-certs\n",
            missing);
    fprintf(stderr, "Run 'teleportd --help' for usage.\n");
    return 2;
  }
  return 0;
}
