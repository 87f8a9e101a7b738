#include "flags.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef JW_VERSION
#define JW_VERSION "unknown"
#endif

#define DEFAULT_ADDR "127.0.0.1:3000"
#define DEFAULT_STOP_TIMEOUT_MS 10000
#define DEFAULT_MAX_CONNECTIONS 1024

static void usage(FILE *f, const char *defdir) {
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
      "                         (TELEPORTD_STOP_TIMEOUT, default 10s)\n"
      "  --max-connections N    connections served at once; more are closed\n"
      "                         at accept (TELEPORTD_MAX_CONNECTIONS, default "
      "%d)\n"
      "  --log-level LEVEL      debug, info, warn or error\n"
      "                         (TELEPORTD_LOG_LEVEL, default info)\n"
      "  -h, --help             show this help\n"
      "  --version              show the version\n"
      "\n"
      "Logs go to stderr, one logfmt line per event. SIGTERM or SIGINT stops\n"
      "every job (SIGTERM, grace period, SIGKILL), finishes the streams and\n"
      "exits 0.\n"
      "\n"
      "Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a\n"
      "bad flag or an unusable file.\n",
      DEFAULT_ADDR, defdir, DEFAULT_MAX_CONNECTIONS);
}

int jw_flags_parse_duration(const char *s, uint64_t *ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno != 0 || v < 0)
    return -EINVAL;
  double mult;
  if (*end == '\0' || strcmp(end, "s") == 0)
    mult = 1000;
  else if (strcmp(end, "ms") == 0)
    mult = 1;
  else if (strcmp(end, "m") == 0)
    mult = 60000;
  else if (strcmp(end, "h") == 0)
    mult = 3600000;
  else
    return -EINVAL;
  v *= mult;
  if (v > 86400000.0 * 365)
    return -ERANGE;
  *ms = (uint64_t)v;
  return 0;
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

static int bad(const char *flag, const char *value, const char *why) {
  fprintf(stderr, "teleportd: invalid %s \"%s\": %s\n", flag, value, why);
  fprintf(stderr, "Run 'teleportd --help' for usage.\n");
  return 2;
}

enum {
  OPT_ADDR = 256,
  OPT_CACERT,
  OPT_CERT,
  OPT_KEY,
  OPT_DATA_DIR,
  OPT_STOP_TIMEOUT,
  OPT_MAX_CONN,
  OPT_LOG_LEVEL,
  OPT_VERSION
};

int jw_flags_parse(jw_config_t *cfg, int argc, char **argv) {
  static const struct option opts[] = {
      {"addr", required_argument, NULL, OPT_ADDR},
      {"cacert", required_argument, NULL, OPT_CACERT},
      {"cert", required_argument, NULL, OPT_CERT},
      {"key", required_argument, NULL, OPT_KEY},
      {"data-dir", required_argument, NULL, OPT_DATA_DIR},
      {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
      {"max-connections", required_argument, NULL, OPT_MAX_CONN},
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0},
  };
  const char *stop = getenv("TELEPORTD_STOP_TIMEOUT");
  const char *maxc = getenv("TELEPORTD_MAX_CONNECTIONS");
  const char *level = getenv("TELEPORTD_LOG_LEVEL");
  const char *stop_flag = "TELEPORTD_STOP_TIMEOUT";
  const char *maxc_flag = "TELEPORTD_MAX_CONNECTIONS";
  const char *level_flag = "TELEPORTD_LOG_LEVEL";

  memset(cfg, 0, sizeof(*cfg));
  cfg->addr = getenv("TELEPORTD_ADDR");
  cfg->cacert = getenv("TELEPORTD_CACERT");
  cfg->cert = getenv("TELEPORTD_CERT");
  cfg->key = getenv("TELEPORTD_KEY");
  cfg->data_dir = getenv("TELEPORTD_DATA_DIR");

  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_ADDR:
      cfg->addr = optarg;
      break;
    case OPT_CACERT:
      cfg->cacert = optarg;
      break;
    case OPT_CERT:
      cfg->cert = optarg;
      break;
    case OPT_KEY:
      cfg->key = optarg;
      break;
    case OPT_DATA_DIR:
      cfg->data_dir = optarg;
      break;
    case OPT_STOP_TIMEOUT:
      stop = optarg, stop_flag = "--stop-timeout";
      break;
    case OPT_MAX_CONN:
      maxc = optarg, maxc_flag = "--max-connections";
      break;
    case OPT_LOG_LEVEL:
      level = optarg, level_flag = "--log-level";
      break;
    case 'h':
      usage(stdout, default_data_dir(cfg));
      return 1;
    case OPT_VERSION:
      printf("teleportd %s\n", JW_VERSION);
      return 1;
    case ':':
      fprintf(stderr, "teleportd: %s needs a value\n", argv[optind - 1]);
      fprintf(stderr, "Run 'teleportd --help' for usage.\n");
      return 2;
    default:
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

  if (cfg->addr == NULL || cfg->addr[0] == '\0')
    cfg->addr = DEFAULT_ADDR;
  if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
    cfg->data_dir = default_data_dir(cfg);

  cfg->stop_timeout_ms = DEFAULT_STOP_TIMEOUT_MS;
  if (stop != NULL && jw_flags_parse_duration(stop, &cfg->stop_timeout_ms))
    return bad(stop_flag, stop, "want a duration such as 10s, 500ms or 1m");

  cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (maxc != NULL) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(maxc, &end, 10);
    if (end == maxc || *end != '\0' || errno != 0 || v == 0 || v > 1000000)
      return bad(maxc_flag, maxc, "want a whole number from 1 to 1000000");
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
      return bad(level_flag, level, "want debug, info, warn or error");
    cfg->log_level = (jw_log_level_t)i;
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
