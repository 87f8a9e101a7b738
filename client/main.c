/*
 * teleport: parses the global flags, picks the command, and leaves the
 * rest to commands.c. Usage errors exit 2 with one line and where to find
 * help; everything else is the command's business.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jobworker/units.h"

#ifndef JW_VERSION
#define JW_VERSION "unknown"
#endif

const char *cli_prog = "teleport";

typedef int (*cli_cmd_fn)(cli_conn_t *conn, int argc, char **argv);

static const struct {
  const char *name;
  cli_cmd_fn fn;
} commands[] = {
    {"start", cli_cmd_start},   {"status", cli_cmd_status},
    {"output", cli_cmd_output}, {"stop", cli_cmd_stop},
    {"list", cli_cmd_list},     {"ls", cli_cmd_list},
    {"wait", cli_cmd_wait},     {"kill", cli_cmd_kill},
    {"rm", cli_cmd_rm},         {"health", cli_cmd_health},
    {"config", cli_cmd_config},
};

/* The names an unknown command is compared with (help and version too). */
static const char *const command_names[] = {
    "start", "status", "output", "stop",   "list", "ls",      "wait",
    "kill",  "rm",     "health", "config", "help", "version",
};

/* An unknown command: a usage error, with the nearest name when one is. */
static int unknown_command(const char *name) {
  const char *near = cli_suggest(
      name, command_names, sizeof(command_names) / sizeof(command_names[0]));

  if (near != NULL)
    return cli_usage_error(NULL, "unknown command '%s'; did you mean '%s'?",
                           name, near);
  return cli_usage_error(NULL, "unknown command '%s'", name);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;

  fprintf(stderr, "teleport%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nRun 'teleport%s%s --help' for usage.\n", cmd ? " " : "",
          cmd ? cmd : "");
  return CLI_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int c, char **argv) {
  char opt[64];
  const char *arg = argv[optind - 1];

  /*
   * getopt leaves the short option in optopt; for a long option only the
   * word itself (maybe with "=value") tells which one it was.
   */
  if (optopt != 0 && optopt < 0x100 && arg[0] == '-' && arg[1] != '-') {
    snprintf(opt, sizeof(opt), "-%c", optopt);
  } else {
    size_t n = strcspn(arg, "=");
    if (n >= sizeof(opt))
      n = sizeof(opt) - 1;
    memcpy(opt, arg, n);
    opt[n] = '\0';
  }
  if (c == ':')
    return cli_usage_error(cmd, "option '%s' needs a value", opt);
  return cli_usage_error(cmd, "unknown option '%s'", opt);
}

bool cli_conn_flag(cli_conn_t *conn, int code, const char *value) {
  switch (code) {
  case CLI_OPT_CACERT:
    conn->files.cacert = value;
    return true;
  case CLI_OPT_CERT:
    conn->files.cert = value;
    return true;
  case CLI_OPT_KEY:
    conn->files.key = value;
    return true;
  case CLI_OPT_ADDR:
    conn->addr = value;
    return true;
  case CLI_OPT_CONTEXT:
    conn->context = value;
    return true;
  default:
    return false;
  }
}

int cli_next_opt(cli_conn_t *conn, const char *cmd, int argc, char **argv,
                 const char *optstring, const struct option *longopts) {
  int c;

  /* Quiet: cli_getopt_error reports '?' and ':' in the house form. */
  opterr = 0;
  do
    c = getopt_long(argc, argv, optstring, longopts, NULL);
  while (c != -1 && cli_conn_flag(conn, c, optarg));
  if (c == 'h') {
    cli_help(stdout, cmd);
    return CLI_OPT_HELPED;
  }
  return c;
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? v : NULL;
}

int cli_conn_resolve(cli_conn_t *conn) {
  static const struct {
    size_t off;
    const char *flag;
    const char *env;
  } settings[] = {
      {offsetof(cli_conn_t, files.cacert), "--cacert", "TELEPORT_CACERT"},
      {offsetof(cli_conn_t, files.cert), "--cert", "TELEPORT_CERT"},
      {offsetof(cli_conn_t, files.key), "--key", "TELEPORT_KEY"},
      {offsetof(cli_conn_t, addr), "--addr", "TELEPORT_ADDR"},
  };
  char missing[256] = "";
  const char *why;
  size_t i;
  int rc;

  for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    const char **field = (const char **)((char *)conn + settings[i].off);
    if (*field != NULL && (*field)[0] == '\0') {
      fprintf(stderr, "teleport: %s is empty\n", settings[i].flag);
      return CLI_EXIT_USAGE;
    }
    if (*field == NULL)
      *field = env_nonempty(settings[i].env);
  }
  /* flag > TELEPORT_* variable > context > default, setting by setting. */
  if ((rc = cli_config_apply(conn)) != 0)
    return rc;
  for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    const char **field = (const char **)((char *)conn + settings[i].off);
    if (*field == NULL && strcmp(settings[i].flag, "--addr") == 0)
      *field = CLI_DEFAULT_ADDR;
    if (*field == NULL) {
      size_t len = strlen(missing);
      snprintf(missing + len, sizeof(missing) - len, "%s%s (or %s)",
               len ? ", " : "", settings[i].flag, settings[i].env);
    }
  }
  if (missing[0] != '\0') {
    fprintf(stderr, "teleport: missing %s%s%s%s\n", missing,
            conn->context_name ? "; context " : "",
            conn->context_name ? conn->context_name : "",
            conn->context_name ? " does not set it" : "");
    return CLI_EXIT_USAGE;
  }
  if (cli_addr_normalize(conn->addr, conn->addr_norm, sizeof(conn->addr_norm),
                         &why) != 0) {
    fprintf(stderr, "teleport: invalid address '%s': %s\n", conn->addr, why);
    return CLI_EXIT_USAGE;
  }
  conn->reconnect_ms = CLI_RECONNECT_MS;
  if ((why = env_nonempty("TELEPORT_RECONNECT")) != NULL &&
      strcmp(why, "0") != 0 &&
      jw_parse_duration(why, &conn->reconnect_ms) != 0) {
    fprintf(stderr,
            "teleport: TELEPORT_RECONNECT takes a duration such as 30s or "
            "2m (0: do not reconnect), not '%s'\n",
            why);
    return CLI_EXIT_USAGE;
  }
  if (why != NULL && strcmp(why, "0") == 0)
    conn->reconnect_ms = 0;
  return 0;
}

static int run_command(const char *name, cli_conn_t *conn, int argc,
                       char **argv) {
  size_t i;

  for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(commands[i].name, name) == 0)
      return commands[i].fn(conn, argc, argv);
  }
  return unknown_command(name);
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"version", no_argument, NULL, CLI_OPT_VERSION},
      {NULL, 0, NULL, 0},
  };
  cli_conn_t conn;
  int c;

  memset(&conn, 0, sizeof(conn));
  /*
   * A reader that goes away (teleport output ID | head) must not kill us
   * mid-write: write(2) then fails with EPIPE and the stream ends quietly.
   */
  signal(SIGPIPE, SIG_IGN);

  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
    if (cli_conn_flag(&conn, c, optarg))
      continue;
    switch (c) {
    case 'h':
      cli_help(stdout, NULL);
      return CLI_EXIT_OK;
    case CLI_OPT_VERSION:
      printf("teleport %s\n", JW_VERSION);
      return CLI_EXIT_OK;
    default:
      return cli_getopt_error(NULL, c, argv);
    }
  }
  if (optind >= argc) {
    cli_help(stderr, NULL);
    return CLI_EXIT_USAGE;
  }

  /* "teleport help [COMMAND]" and "teleport version" as people type them. */
  if (strcmp(argv[optind], "help") == 0) {
    if (optind + 1 < argc && !cli_is_command(argv[optind + 1]))
      return unknown_command(argv[optind + 1]);
    cli_help(stdout, optind + 1 < argc ? argv[optind + 1] : NULL);
    return CLI_EXIT_OK;
  }
  if (strcmp(argv[optind], "version") == 0) {
    printf("teleport %s\n", JW_VERSION);
    return CLI_EXIT_OK;
  }
  return run_command(argv[optind], &conn, argc - optind, argv + optind);
}
