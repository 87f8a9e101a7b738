/*
 * One function per command: parse the command's own flags (usage errors
 * exit 2 before anything touches the network), resolve the connection
 * settings, connect, make the call, print.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "jobworker/units.h"

/* A parse result meaning "go on with the command". */
#define PROCEED (-1)

/*
 * Parses the flags of a command that takes one job ID (want_id) or none.
 * --json is accepted when json is not NULL. Flags may come before or after
 * the ID. Returns PROCEED or an exit code (help shown, usage error).
 */
static int parse_simple(cli_conn_t *conn, int argc, char **argv, bool want_id,
                        bool *json, const char **id) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"json", no_argument, NULL, CLI_OPT_JSON},
      {NULL, 0, NULL, 0},
  };
  const char *cmd = argv[0];
  int c;

  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    if (cli_conn_flag(conn, c, optarg))
      continue;
    switch (c) {
    case 'h':
      cli_help(stdout, cmd);
      return CLI_EXIT_OK;
    case CLI_OPT_JSON:
      if (json == NULL)
        return cli_usage_error(cmd, "unknown option '--json'");
      *json = true;
      break;
    default:
      return cli_getopt_error(cmd, c, argv);
    }
  }
  if (want_id) {
    if (optind >= argc)
      return cli_usage_error(cmd, "missing job ID");
    if (argv[optind][0] == '\0')
      return cli_usage_error(cmd, "the job ID is empty");
    *id = argv[optind++];
  }
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  return PROCEED;
}

/*
 * Flushes what a command printed. A reader that went away (teleport list |
 * head -1) ends quietly as in a pipeline; any other failure is reported.
 */
static int flush_stdout(void) {
  if (fflush(stdout) == 0 && !ferror(stdout))
    return CLI_EXIT_OK;
  if (errno == EPIPE)
    return CLI_EXIT_PIPE;
  fprintf(stderr, "teleport: cannot write to stdout: %s\n", strerror(errno));
  return CLI_EXIT_FAIL;
}

/* The exit code that stands for how a final job ended. */
static int job_exit_code(const Jobworker__V1__JobStatus *st) {
  switch (st->state) {
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED:
    return st->exit_code & 0xff;
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED:
    return CLI_EXIT_SIGNAL_BASE + (st->signal & 0x7f);
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED:
    if (st->signal != 0)
      return CLI_EXIT_SIGNAL_BASE + (st->signal & 0x7f);
    return st->exit_code & 0xff;
  default:
    return -1;
  }
}

/* Status of job id; returns an exit code, *out set on CLI_EXIT_OK. */
static int get_status(cli_session_t *s, const char *id,
                      Jobworker__V1__JobStatus **out) {
  Jobworker__V1__StatusRequest req = JOBWORKER__V1__STATUS_REQUEST__INIT;

  req.id = (char *)id;
  return cli_session_unary(s, "Status", &req.base,
                           &jobworker__v1__job_status__descriptor, id,
                           CLI_UNARY_TIMEOUT_MS, (ProtobufCMessage **)out);
}

/* Option codes of start's limit flags, clear of the CLI_OPT_* range. */
enum {
  OPT_MEMORY = 0x300,
  OPT_CPUS,
  OPT_IO_READ,
  OPT_IO_WRITE,
  OPT_PIDS,
  OPT_ISOLATE
};

/*
 * Parses one limit flag of start into lim. Returns 0, or the usage error's
 * exit code after printing it.
 */
static int parse_limit_flag(int c, const char *arg,
                            Jobworker__V1__Limits *lim) {
  int64_t v;
  int err;
  const char *flag;

  switch (c) {
  case OPT_CPUS:
    flag = "--cpus";
    err = jw_parse_cpus(arg, &v);
    break;
  case OPT_PIDS: {
    char *end;
    flag = "--pids";
    errno = 0;
    v = strtoll(arg, &end, 10);
    err = end == arg || *end != '\0' || errno != 0 || v < 1 ? -EINVAL : 0;
    break;
  }
  default:
    flag = c == OPT_MEMORY    ? "--memory"
           : c == OPT_IO_READ ? "--io-read"
                              : "--io-write";
    err = jw_parse_size(arg, &v);
    break;
  }
  if (err != 0 || v <= 0)
    return cli_usage_error(
        "start", "%s takes %s, not '%s'", flag,
        c == OPT_CPUS   ? "a number of CPUs such as 0.5, 2 or 250m"
        : c == OPT_PIDS ? "a whole number of processes"
                        : "a size such as 512M or 10M (per second for io)",
        arg);
  if (c == OPT_MEMORY)
    lim->memory_bytes = v;
  else if (c == OPT_CPUS)
    lim->cpu_millis = v;
  else if (c == OPT_IO_READ)
    lim->io_read_bps = v;
  else if (c == OPT_IO_WRITE)
    lim->io_write_bps = v;
  else
    lim->pids = v;
  return 0;
}

/* Parses --isolate pid,mount,net into iso. Returns 0 or a usage error. */
static int parse_isolate(const char *arg, Jobworker__V1__Isolation *iso) {
  const char *p = arg;
  while (*p != '\0') {
    size_t len = strcspn(p, ",");
    if (len == 3 && strncmp(p, "pid", 3) == 0)
      iso->pid = true;
    else if (len == 5 && strncmp(p, "mount", 5) == 0)
      iso->mount = true;
    else if ((len == 3 && strncmp(p, "net", 3) == 0) ||
             (len == 7 && strncmp(p, "network", 7) == 0))
      iso->network = true;
    else
      return cli_usage_error("start",
                             "--isolate takes pid, mount and net, "
                             "comma-separated, not '%s'",
                             arg);
    p += len;
    if (*p == ',')
      p++;
  }
  return 0;
}

int cli_cmd_start(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"listen", no_argument, NULL, 'l'},
      {"env", required_argument, NULL, 'e'},
      {"dir", required_argument, NULL, 'C'},
      {"json", no_argument, NULL, CLI_OPT_JSON},
      {"memory", required_argument, NULL, OPT_MEMORY},
      {"cpus", required_argument, NULL, OPT_CPUS},
      {"io-read", required_argument, NULL, OPT_IO_READ},
      {"io-write", required_argument, NULL, OPT_IO_WRITE},
      {"pids", required_argument, NULL, OPT_PIDS},
      {"isolate", required_argument, NULL, OPT_ISOLATE},
      {NULL, 0, NULL, 0},
  };
  Jobworker__V1__JobRequest req = JOBWORKER__V1__JOB_REQUEST__INIT;
  Jobworker__V1__Limits limits = JOBWORKER__V1__LIMITS__INIT;
  Jobworker__V1__Isolation isolation = JOBWORKER__V1__ISOLATION__INIT;
  bool has_limits = false, has_isolation = false;
  Jobworker__V1__JobStatus *st = NULL, *fin = NULL;
  cli_session_t s;
  bool listen = false, json = false;
  const char *dir = NULL;
  char **env;
  size_t nenv = 0;
  int c, rc;

  env = calloc((size_t)argc + 1, sizeof(*env));
  if (env == NULL) {
    fprintf(stderr, "teleport: out of memory\n");
    return CLI_EXIT_FAIL;
  }
  optind = 0;
  opterr = 0;
  /* '+': the first word that is not a flag is the job's command. */
  while ((c = getopt_long(argc, argv, "+:hle:C:", longopts, NULL)) != -1) {
    if (cli_conn_flag(conn, c, optarg))
      continue;
    switch (c) {
    case 'h':
      cli_help(stdout, "start");
      rc = CLI_EXIT_OK;
      goto out;
    case 'l':
      listen = true;
      break;
    case 'e': {
      const char *eq = strchr(optarg, '=');
      if (eq == NULL || eq == optarg) {
        rc = cli_usage_error("start", "-e takes KEY=VALUE, not '%s'", optarg);
        goto out;
      }
      env[nenv++] = optarg;
      break;
    }
    case 'C':
      if (optarg[0] == '\0') {
        rc = cli_usage_error("start", "-C takes a directory, not ''");
        goto out;
      }
      dir = optarg;
      break;
    case CLI_OPT_JSON:
      json = true;
      break;
    case OPT_MEMORY:
    case OPT_CPUS:
    case OPT_IO_READ:
    case OPT_IO_WRITE:
    case OPT_PIDS:
      if ((rc = parse_limit_flag(c, optarg, &limits)) != 0)
        goto out;
      has_limits = true;
      break;
    case OPT_ISOLATE:
      if ((rc = parse_isolate(optarg, &isolation)) != 0)
        goto out;
      has_isolation = true;
      break;
    default:
      rc = cli_getopt_error("start", c, argv);
      goto out;
    }
  }
  if (optind >= argc) {
    rc = cli_usage_error("start", "missing the command to run");
    goto out;
  }
  if (argv[optind][0] == '\0') {
    rc = cli_usage_error("start", "the command to run is empty");
    goto out;
  }
  if (listen && json) {
    rc = cli_usage_error("start", "-l and --json do not go together");
    goto out;
  }
  if ((rc = cli_conn_resolve(conn)) != 0)
    goto out;

  req.command = argv[optind];
  req.n_args = (size_t)(argc - optind - 1);
  req.args = argv + optind + 1;
  req.n_env = nenv;
  req.env = env;
  if (dir != NULL)
    req.working_dir = (char *)dir;
  if (has_limits)
    req.limits = &limits;
  if (has_isolation)
    req.isolation = &isolation;

  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK) {
    rc = cli_session_unary(&s, "Start", &req.base,
                           &jobworker__v1__job_status__descriptor, NULL,
                           CLI_UNARY_TIMEOUT_MS, (ProtobufCMessage **)&st);
  }
  if (rc != CLI_EXIT_OK)
    goto close;

  if (json) {
    cli_print_status_json(stdout, st);
  } else if (!listen) {
    printf("%s\n", st->id);
  } else {
    /*
     * With -l stdout carries the job's bytes and nothing else; a person
     * still wants the id, to come back after Ctrl-C.
     */
    if (isatty(STDERR_FILENO))
      fprintf(stderr, "teleport: started job %s\n", st->id);
    rc = cli_follow_output(&s, st->id);
    if (rc != CLI_EXIT_OK)
      goto close;
    rc = get_status(&s, st->id, &fin);
    if (rc != CLI_EXIT_OK)
      goto close;
    rc = job_exit_code(fin);
    if (rc < 0) {
      fprintf(stderr,
              "teleport: job %s is still %s after its output ended; see "
              "'teleport status %s'\n",
              st->id, cli_state_name(fin->state), st->id);
      rc = CLI_EXIT_FAIL;
    }
  }

close:
  if (rc == CLI_EXIT_OK)
    rc = flush_stdout();
  if (fin != NULL)
    jobworker__v1__job_status__free_unpacked(fin, NULL);
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
out:
  free(env);
  return rc;
}

/* Status and Stop print the same way; only the call differs. */
static int status_or_stop(cli_conn_t *conn, int argc, char **argv, bool stop) {
  Jobworker__V1__JobStatus *st = NULL;
  cli_session_t s;
  const char *id = NULL;
  bool json = false;
  int rc;

  rc = parse_simple(conn, argc, argv, true, &json, &id);
  if (rc != PROCEED)
    return rc;
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK && stop) {
    Jobworker__V1__StopRequest req = JOBWORKER__V1__STOP_REQUEST__INIT;
    req.id = (char *)id;
    /* No deadline: the server answers once the job has ended. */
    rc = cli_session_unary(&s, "Stop", &req.base,
                           &jobworker__v1__job_status__descriptor, id, 0,
                           (ProtobufCMessage **)&st);
  } else if (rc == CLI_EXIT_OK) {
    rc = get_status(&s, id, &st);
  }
  if (rc == CLI_EXIT_OK) {
    if (json)
      cli_print_status_json(stdout, st);
    else
      cli_print_status(stdout, st, cli_now_ns());
    rc = flush_stdout();
  }
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
  return rc;
}

int cli_cmd_status(cli_conn_t *conn, int argc, char **argv) {
  return status_or_stop(conn, argc, argv, false);
}

int cli_cmd_stop(cli_conn_t *conn, int argc, char **argv) {
  return status_or_stop(conn, argc, argv, true);
}

int cli_cmd_output(cli_conn_t *conn, int argc, char **argv) {
  cli_session_t s;
  const char *id = NULL;
  int rc;

  rc = parse_simple(conn, argc, argv, true, NULL, &id);
  if (rc != PROCEED)
    return rc;
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK)
    rc = cli_follow_output(&s, id);
  cli_session_close(&s);
  return rc;
}

/*
 * Sorts jobs oldest first, keeping the server's order among equal start
 * times: an insertion sort, stable, and linear on the already sorted list
 * the server sends.
 */
static void sort_by_start(Jobworker__V1__JobStatus **jobs, size_t n) {
  size_t i, j;

  for (i = 1; i < n; i++) {
    Jobworker__V1__JobStatus *cur = jobs[i];
    for (j = i;
         j > 0 && jobs[j - 1]->started_at_unix_nano > cur->started_at_unix_nano;
         j--)
      jobs[j] = jobs[j - 1];
    jobs[j] = cur;
  }
}

int cli_cmd_list(cli_conn_t *conn, int argc, char **argv) {
  Jobworker__V1__ListRequest req = JOBWORKER__V1__LIST_REQUEST__INIT;
  Jobworker__V1__ListResponse *resp = NULL;
  cli_session_t s;
  bool json = false;
  int rc;

  rc = parse_simple(conn, argc, argv, false, &json, NULL);
  if (rc != PROCEED)
    return rc;
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK) {
    rc = cli_session_unary(&s, "List", &req.base,
                           &jobworker__v1__list_response__descriptor, NULL,
                           CLI_UNARY_TIMEOUT_MS, (ProtobufCMessage **)&resp);
  }
  if (rc == CLI_EXIT_OK) {
    /* Newest last, even from a server that does not keep its order. */
    sort_by_start(resp->jobs, resp->n_jobs);
    if (json)
      cli_print_list_json(stdout, resp->jobs, resp->n_jobs);
    else if (resp->n_jobs == 0)
      fprintf(stderr, "teleport: no jobs yet; start one with 'teleport "
                      "start CMD'\n");
    else
      cli_print_list(stdout, resp->jobs, resp->n_jobs, cli_now_ns());
    rc = flush_stdout();
  }
  if (resp != NULL)
    jobworker__v1__list_response__free_unpacked(resp, NULL);
  cli_session_close(&s);
  return rc;
}
