/*
 * One function per command: parse the command's own flags (usage errors
 * exit 2 before anything touches the network), resolve the connection
 * settings, connect, make the call, print.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "jobworker/units.h"

/* A parse result meaning "go on with the command". */
#define PROCEED (-1)

/*
 * Checks an ID argument before anything touches the network. Returns
 * PROCEED or the usage error's exit code.
 */
static int check_id_arg(const char *cmd, const char *arg) {
  if (arg[0] == '\0')
    return cli_usage_error(cmd, "the job ID is empty");
  if (cli_id_kind(arg) == CLI_ID_SHORT)
    return cli_usage_error(cmd,
                           "'%s' is too short for a job ID prefix: give at "
                           "least %d hex digits",
                           arg, CLI_ID_PREFIX_MIN);
  return PROCEED;
}

/*
 * Parses a duration flag's value into *ms (jw_parse_duration's units:
 * 500ms, 10s, 2m, 1h). Returns PROCEED or the usage error's exit code.
 */
static int parse_duration_flag(const char *cmd, const char *flag,
                               const char *arg, uint64_t *ms) {
  if (jw_parse_duration(arg, ms) != 0 || *ms == 0)
    return cli_usage_error(cmd,
                           "%s takes a duration such as 500ms, 10s, 2m or 1h "
                           "(more than 0, at most 365 days), not '%s'",
                           flag, arg);
  return PROCEED;
}

/*
 * Parses the flags of a command that takes one job ID (open_for_job takes
 * the ID). --json is accepted when json is not NULL. Flags may come before
 * or after the ID. Returns PROCEED or an exit code (help shown, usage
 * error).
 */
static int parse_simple(cli_conn_t *conn, int argc, char **argv, bool *json) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"json", no_argument, NULL, CLI_OPT_JSON},
      {NULL, 0, NULL, 0},
  };
  const char *cmd = argv[0];
  int c;

  optind = 0;
  while ((c = cli_next_opt(conn, cmd, argc, argv, ":h", longopts)) != -1) {
    switch (c) {
    case CLI_OPT_HELPED:
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
  /* Status changes nothing: asking again after a reconnect is safe. */
  return cli_session_call(s, "Status", &req.base,
                          &jobworker__v1__job_status__descriptor, id,
                          CLI_UNARY_TIMEOUT_MS, true, (ProtobufCMessage **)out);
}

/* The caller's jobs (List); returns an exit code, *out set on OK. */
static int list_jobs(cli_session_t *s, Jobworker__V1__ListResponse **out) {
  Jobworker__V1__ListRequest req = JOBWORKER__V1__LIST_REQUEST__INIT;

  return cli_session_call(s, "List", &req.base,
                          &jobworker__v1__list_response__descriptor, NULL,
                          CLI_UNARY_TIMEOUT_MS, true, (ProtobufCMessage **)out);
}

/* How many candidates an ambiguous prefix lists at most. */
#define AMBIGUOUS_SHOWN 10

/*
 * Turns an ID argument into the job id to send: a full id (or anything
 * that is not hex) as it is, a prefix through the caller's own jobs
 * (List). Returns an exit code; out holds the id on CLI_EXIT_OK.
 */
static int resolve_id(cli_session_t *s, const char *arg, char *out,
                      size_t outlen) {
  Jobworker__V1__ListResponse *resp = NULL;
  const char **ids;
  size_t i, n, first = 0, shown = 0;
  int rc;

  if (cli_id_kind(arg) == CLI_ID_FULL) {
    /* Ids are lowercase; one typed or pasted in capitals is the same. */
    for (i = 0; arg[i] != '\0' && i + 1 < outlen; i++)
      out[i] = (char)tolower((unsigned char)arg[i]);
    out[i] = '\0';
    return CLI_EXIT_OK;
  }
  if (cli_id_kind(arg) != CLI_ID_PREFIX) {
    snprintf(out, outlen, "%s", arg);
    return CLI_EXIT_OK;
  }
  if ((rc = list_jobs(s, &resp)) != CLI_EXIT_OK)
    return rc;
  ids = calloc(resp->n_jobs + 1, sizeof(*ids));
  if (ids == NULL) {
    fprintf(stderr, "teleport: out of memory\n");
    jobworker__v1__list_response__free_unpacked(resp, NULL);
    return CLI_EXIT_FAIL;
  }
  for (i = 0; i < resp->n_jobs; i++)
    ids[i] = resp->jobs[i]->id;
  n = cli_id_match(arg, ids, resp->n_jobs, &first);
  rc = CLI_EXIT_FAIL;
  if (n == 1) {
    snprintf(out, outlen, "%s", ids[first]);
    rc = CLI_EXIT_OK;
  } else if (n == 0) {
    fprintf(stderr, "teleport: no job of yours has an id starting with %s\n",
            arg);
  } else {
    fprintf(stderr, "teleport: job ID prefix %s is ambiguous; it matches", arg);
    for (i = first; i < resp->n_jobs && shown < AMBIGUOUS_SHOWN; i++) {
      if (strncasecmp(ids[i], arg, strlen(arg)) == 0)
        fprintf(stderr, "%s %s", shown++ ? "," : "", ids[i]);
    }
    if (n > shown)
      fprintf(stderr, " and %zu more", n - shown);
    fputc('\n', stderr);
  }
  free(ids);
  jobworker__v1__list_response__free_unpacked(resp, NULL);
  return rc;
}

/*
 * Takes the one job ID argument left after a command's flags (at
 * argv[optind]), resolves the connection settings, opens s and turns the
 * ID into the job id to send (resolve_id). Returns an exit code (usage
 * error, bad settings, no session); the caller closes s either way.
 */
static int open_for_job(cli_session_t *s, cli_conn_t *conn, const char *cmd,
                        int argc, char **argv, char *id, size_t idlen) {
  int rc;

  /* Closing a session that was never opened does nothing. */
  memset(s, 0, sizeof(*s));
  if (optind >= argc)
    return cli_usage_error(cmd, "missing job ID");
  /* The count first: "status a b" is one argument too many, whatever a. */
  if (optind + 1 < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
  if (check_id_arg(cmd, argv[optind]) != PROCEED)
    return CLI_EXIT_USAGE;
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;
  rc = cli_session_open(s, conn);
  return rc == CLI_EXIT_OK ? resolve_id(s, argv[optind], id, idlen) : rc;
}

/*
 * Says on stderr that the server dropped some of a job's output, so that a
 * short output is never taken for all of it.
 */
static void note_dropped(const char *id, uint64_t dropped, uint64_t cap) {
  if (dropped == 0)
    return;
  if (cap > 0)
    fprintf(stderr,
            "teleport: the server dropped %" PRIu64
            " bytes of job %s's output: it keeps at most %" PRIu64
            " bytes a job (--max-output-bytes)\n",
            dropped, id, cap);
  else
    fprintf(stderr,
            "teleport: the server dropped %" PRIu64
            " bytes of job %s's output (see 'teleport status %s')\n",
            dropped, id, id);
}

/* Option codes of start's limit flags, clear of the CLI_OPT_* range. */
enum {
  OPT_MEMORY = 0x300,
  OPT_CPUS,
  OPT_IO_READ,
  OPT_IO_WRITE,
  OPT_PIDS,
  OPT_ISOLATE,
  OPT_TIMEOUT,
  OPT_NO_FOLLOW,
  OPT_TAIL,
  OPT_FROM,
  OPT_STATE,
  OPT_NO_TRUNC,
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
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {NULL, 0, NULL, 0},
  };
  cli_follow_opts_t fo;
  uint64_t timeout_ms = 0;
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
  /* '+': the first word that is not a flag is the job's command. */
  while ((c = cli_next_opt(conn, "start", argc, argv, "+:hle:C:", longopts)) !=
         -1) {
    switch (c) {
    case CLI_OPT_HELPED:
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
    case OPT_TIMEOUT:
      if ((rc = parse_duration_flag("start", "--timeout", optarg,
                                    &timeout_ms)) != PROCEED)
        goto out;
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
  req.timeout_ms = (int64_t)timeout_ms;

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
    memset(&fo, 0, sizeof(fo));
    rc = cli_follow_output(&s, st->id, &fo);
    if (rc != CLI_EXIT_OK)
      goto close;
    rc = get_status(&s, st->id, &fin);
    if (rc != CLI_EXIT_OK)
      goto close;
    note_dropped(st->id,
                 fo.dropped > fin->output_dropped_bytes
                     ? fo.dropped
                     : fin->output_dropped_bytes,
                 fin->output_cap_bytes);
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

/* Prints a status as people or scripts want it; returns an exit code. */
static int print_status(const Jobworker__V1__JobStatus *st, bool json) {
  if (json)
    cli_print_status_json(stdout, st);
  else
    cli_print_status(stdout, st, cli_now_ns());
  return flush_stdout();
}

int cli_cmd_status(cli_conn_t *conn, int argc, char **argv) {
  Jobworker__V1__JobStatus *st = NULL;
  cli_session_t s;
  char id[CLI_ID_LEN * 4];
  bool json = false;
  int rc;

  rc = parse_simple(conn, argc, argv, &json);
  if (rc != PROCEED)
    return rc;
  rc = open_for_job(&s, conn, argv[0], argc, argv, id, sizeof(id));
  if (rc == CLI_EXIT_OK)
    rc = get_status(&s, id, &st);
  if (rc == CLI_EXIT_OK)
    rc = print_status(st, json);
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
  return rc;
}

/* True for the states a job does not leave. */
static bool is_final(int state) {
  return state == JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED ||
         state == JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED ||
         state == JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED;
}

/* Says on a terminal how a stopped job ended. */
static void say_how_it_stopped(const Jobworker__V1__JobStatus *st,
                               uint64_t timeout_ms) {
  char sig[32], grace[32];

  if (timeout_ms > 0)
    snprintf(grace, sizeof(grace), "%gs", (double)timeout_ms / 1000);
  else
    snprintf(grace, sizeof(grace), "its grace period");
  if (st->signal == SIGKILL)
    fprintf(stderr,
            "teleport: job %s did not end within %s; SIGKILL ended it\n",
            st->id, grace);
  else if (st->signal != 0)
    fprintf(stderr, "teleport: job %s ended by %s\n", st->id,
            cli_signal_name(st->signal, sig, sizeof(sig)));
  else
    fprintf(stderr, "teleport: job %s exited with code %d after SIGTERM\n",
            st->id, st->exit_code);
}

int cli_cmd_stop(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"json", no_argument, NULL, CLI_OPT_JSON},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {NULL, 0, NULL, 0},
  };
  Jobworker__V1__StopRequest req = JOBWORKER__V1__STOP_REQUEST__INIT;
  Jobworker__V1__JobStatus *st = NULL, *before = NULL;
  cli_session_t s;
  uint64_t timeout_ms = 0;
  char id[CLI_ID_LEN * 4];
  bool json = false, tty = isatty(STDERR_FILENO);
  int c, rc;

  optind = 0;
  while ((c = cli_next_opt(conn, "stop", argc, argv, ":h", longopts)) != -1) {
    switch (c) {
    case CLI_OPT_HELPED:
      return CLI_EXIT_OK;
    case OPT_TIMEOUT:
      if ((rc = parse_duration_flag("stop", "--timeout", optarg,
                                    &timeout_ms)) != PROCEED)
        return rc;
      break;
    case CLI_OPT_JSON:
      json = true;
      break;
    default:
      return cli_getopt_error("stop", c, argv);
    }
  }
  rc = open_for_job(&s, conn, "stop", argc, argv, id, sizeof(id));
  /* On a terminal a person watches: say what is being done, and why it
   * takes the time it takes. Scripts get the status alone, as before. */
  if (rc == CLI_EXIT_OK && tty)
    rc = get_status(&s, id, &before);
  if (rc == CLI_EXIT_OK && tty) {
    if (is_final(before->state))
      fprintf(stderr, "teleport: job %s had already ended\n", id);
    else if (timeout_ms > 0)
      fprintf(stderr, "teleport: SIGTERM sent; SIGKILL in %gs\n",
              (double)timeout_ms / 1000);
    else
      fprintf(stderr, "teleport: SIGTERM sent; SIGKILL after the server's "
                      "grace period (--stop-timeout, 10s by default)\n");
  }
  if (rc == CLI_EXIT_OK) {
    req.id = id;
    req.timeout_ms = (int64_t)timeout_ms;
    /* No deadline: the server answers once the job has ended. */
    rc = cli_session_unary(&s, "Stop", &req.base,
                           &jobworker__v1__job_status__descriptor, id, 0,
                           (ProtobufCMessage **)&st);
  }
  if (rc == CLI_EXIT_OK && tty && !is_final(before->state))
    say_how_it_stopped(st, timeout_ms);
  if (rc == CLI_EXIT_OK)
    rc = print_status(st, json);
  if (before != NULL)
    jobworker__v1__job_status__free_unpacked(before, NULL);
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
  return rc;
}

/* Parses a whole decimal number up to max; returns 0 or -1. */
static int parse_count(const char *arg, uint64_t max, uint64_t *out) {
  char *end;

  if (arg[0] < '0' || arg[0] > '9')
    return -1;
  errno = 0;
  *out = strtoull(arg, &end, 10);
  return *end != '\0' || errno != 0 || *out > max ? -1 : 0;
}

/* The most lines --tail asks for (GetOutputRequest.tail_lines' cap). */
#define TAIL_MAX 1000000

int cli_cmd_output(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"no-follow", no_argument, NULL, OPT_NO_FOLLOW},
      {"tail", required_argument, NULL, OPT_TAIL},
      {"from", required_argument, NULL, OPT_FROM},
      {NULL, 0, NULL, 0},
  };
  Jobworker__V1__JobStatus *st = NULL;
  cli_follow_opts_t fo;
  cli_session_t s;
  char id[CLI_ID_LEN * 4];
  uint64_t v;
  int c, rc;

  memset(&fo, 0, sizeof(fo));
  optind = 0;
  while ((c = cli_next_opt(conn, "output", argc, argv, ":hn:", longopts)) !=
         -1) {
    switch (c) {
    case CLI_OPT_HELPED:
      return CLI_EXIT_OK;
    case OPT_NO_FOLLOW:
      fo.no_follow = true;
      break;
    case 'n':
    case OPT_TAIL:
      if (parse_count(optarg, TAIL_MAX, &v) != 0 || v == 0)
        return cli_usage_error("output",
                               "--tail takes a number of lines from 1 to %d, "
                               "not '%s'",
                               TAIL_MAX, optarg);
      fo.tail = (uint32_t)v;
      break;
    case OPT_FROM:
      if (parse_count(optarg, INT64_MAX, &v) != 0)
        return cli_usage_error("output",
                               "--from takes a byte offset (0 is the first "
                               "byte), not '%s'",
                               optarg);
      fo.from = v;
      break;
    default:
      return cli_getopt_error("output", c, argv);
    }
  }
  rc = open_for_job(&s, conn, "output", argc, argv, id, sizeof(id));
  if (rc == CLI_EXIT_OK)
    rc = cli_follow_output(&s, id, &fo);
  /*
   * The stream says what was dropped only once the job is final; Status
   * says it at any time (and gives the cap the note names).
   */
  if (rc == CLI_EXIT_OK && get_status(&s, id, &st) == CLI_EXIT_OK &&
      st->output_dropped_bytes > fo.dropped)
    fo.dropped = st->output_dropped_bytes;
  if (rc == CLI_EXIT_OK && fo.dropped > 0) {
    note_dropped(id, fo.dropped, st != NULL ? st->output_cap_bytes : 0);
    rc = CLI_EXIT_TRUNCATED;
  }
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
  return rc;
}

int cli_cmd_wait(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {NULL, 0, NULL, 0},
  };
  cli_session_t s;
  uint64_t timeout_ms = 0, start, spent;
  char id[CLI_ID_LEN * 4];
  int c, i, rc, code, first_bad = 0;

  optind = 0;
  while ((c = cli_next_opt(conn, "wait", argc, argv, ":h", longopts)) != -1) {
    switch (c) {
    case CLI_OPT_HELPED:
      return CLI_EXIT_OK;
    case OPT_TIMEOUT:
      if ((rc = parse_duration_flag("wait", "--timeout", optarg,
                                    &timeout_ms)) != PROCEED)
        return rc;
      break;
    default:
      return cli_getopt_error("wait", c, argv);
    }
  }
  if (optind >= argc)
    return cli_usage_error("wait", "missing job ID");
  for (i = optind; i < argc; i++) {
    if (check_id_arg("wait", argv[i]) != PROCEED)
      return CLI_EXIT_USAGE;
  }
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  rc = cli_session_open(&s, conn);
  s.quiet_deadline = true;
  uv_update_time(&s.loop);
  start = uv_now(&s.loop);
  /* One after the other: the jobs all run meanwhile, so waiting for each
   * in turn ends when the last of them does. */
  for (i = optind; rc == CLI_EXIT_OK && i < argc; i++) {
    Jobworker__V1__WaitRequest req = JOBWORKER__V1__WAIT_REQUEST__INIT;
    Jobworker__V1__JobStatus *st = NULL;
    uint64_t left = 0;

    if ((rc = resolve_id(&s, argv[i], id, sizeof(id))) != CLI_EXIT_OK)
      break;
    if (timeout_ms > 0) {
      uv_update_time(&s.loop);
      spent = uv_now(&s.loop) - start;
      left = spent >= timeout_ms ? 1 : timeout_ms - spent;
    }
    req.id = id;
    rc = cli_session_call(&s, "Wait", &req.base,
                          &jobworker__v1__job_status__descriptor, id, left,
                          true, (ProtobufCMessage **)&st);
    if (rc != CLI_EXIT_OK) {
      if (s.last_status == JW_GRPC_DEADLINE_EXCEEDED) {
        fprintf(stderr, "teleport: job %s is still running after %gs\n", id,
                (double)timeout_ms / 1000);
        rc = CLI_EXIT_TIMEOUT;
      }
      break;
    }
    code = job_exit_code(st);
    jobworker__v1__job_status__free_unpacked(st, NULL);
    if (code < 0) {
      fprintf(stderr,
              "teleport: the server answered Wait for job %s with a job "
              "that is not final\n",
              id);
      rc = CLI_EXIT_FAIL;
    } else if (first_bad == 0) {
      first_bad = code;
    }
  }
  cli_session_close(&s);
  return rc != CLI_EXIT_OK ? rc : first_bad;
}

int cli_cmd_kill(cli_conn_t *conn, int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"signal", required_argument, NULL, 's'},
      {NULL, 0, NULL, 0},
  };
  Jobworker__V1__SignalRequest req = JOBWORKER__V1__SIGNAL_REQUEST__INIT;
  Jobworker__V1__JobStatus *st = NULL;
  cli_session_t s;
  const char *sig = "TERM";
  char id[CLI_ID_LEN * 4];
  int c, rc, num;

  optind = 0;
  while ((c = cli_next_opt(conn, "kill", argc, argv, ":hs:", longopts)) != -1) {
    switch (c) {
    case CLI_OPT_HELPED:
      return CLI_EXIT_OK;
    case 's':
      sig = optarg;
      break;
    default:
      return cli_getopt_error("kill", c, argv);
    }
  }
  if ((num = cli_parse_signal(sig)) < 0)
    return cli_usage_error("kill",
                           "-s takes a signal name (TERM, SIGUSR1, ...) or "
                           "number (1 to 64), not '%s'",
                           sig);
  /* A name goes as a name (the server's names are the ones that count),
   * a number as a number: exactly one of the two, as the contract says. */
  if (sig[0] >= '0' && sig[0] <= '9')
    req.signal = num;
  else
    req.signal_name = (char *)sig;
  rc = open_for_job(&s, conn, "kill", argc, argv, id, sizeof(id));
  if (rc == CLI_EXIT_OK) {
    req.id = id;
    rc = cli_session_unary(&s, "Signal", &req.base,
                           &jobworker__v1__job_status__descriptor, id,
                           CLI_UNARY_TIMEOUT_MS, (ProtobufCMessage **)&st);
  }
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
  cli_session_close(&s);
  return rc;
}

int cli_cmd_rm(cli_conn_t *conn, int argc, char **argv) {
  Jobworker__V1__RemoveRequest req = JOBWORKER__V1__REMOVE_REQUEST__INIT;
  Jobworker__V1__JobStatus *st = NULL;
  cli_session_t s;
  char id[CLI_ID_LEN * 4];
  int rc;

  rc = parse_simple(conn, argc, argv, NULL);
  if (rc != PROCEED)
    return rc;
  rc = open_for_job(&s, conn, argv[0], argc, argv, id, sizeof(id));
  if (rc == CLI_EXIT_OK) {
    req.id = id;
    rc = cli_session_unary(&s, "Remove", &req.base,
                           &jobworker__v1__job_status__descriptor, id,
                           CLI_UNARY_TIMEOUT_MS, (ProtobufCMessage **)&st);
  }
  if (rc == CLI_EXIT_OK) {
    printf("%s\n", st->id);
    rc = flush_stdout();
  }
  if (st != NULL)
    jobworker__v1__job_status__free_unpacked(st, NULL);
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
  static const struct option longopts[] = {
      CLI_CONN_LONGOPTS,
      {"json", no_argument, NULL, CLI_OPT_JSON},
      {"quiet", no_argument, NULL, 'q'},
      {"state", required_argument, NULL, OPT_STATE},
      {"no-trunc", no_argument, NULL, OPT_NO_TRUNC},
      {NULL, 0, NULL, 0},
  };
  Jobworker__V1__ListResponse *resp = NULL;
  cli_session_t s;
  bool json = false, quiet = false, no_trunc = false;
  int state = 0; /* 0 all, 1 running, 2 finished */
  const char *cmd = argv[0];
  size_t i, n;
  int c, rc, width = 0;

  optind = 0;
  while ((c = cli_next_opt(conn, cmd, argc, argv, ":hq", longopts)) != -1) {
    switch (c) {
    case CLI_OPT_HELPED:
      return CLI_EXIT_OK;
    case CLI_OPT_JSON:
      json = true;
      break;
    case 'q':
      quiet = true;
      break;
    case OPT_NO_TRUNC:
      no_trunc = true;
      break;
    case OPT_STATE:
      if (strcmp(optarg, "running") == 0)
        state = 1;
      else if (strcmp(optarg, "finished") == 0)
        state = 2;
      else
        return cli_usage_error(
            cmd, "--state takes running or finished, not '%s'", optarg);
      break;
    default:
      return cli_getopt_error(cmd, c, argv);
    }
  }
  if (optind < argc)
    return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  if (quiet && json)
    return cli_usage_error(cmd, "-q and --json do not go together");
  if ((rc = cli_conn_resolve(conn)) != 0)
    return rc;

  rc = cli_session_open(&s, conn);
  if (rc == CLI_EXIT_OK)
    rc = list_jobs(&s, &resp);
  if (rc == CLI_EXIT_OK) {
    /* Newest last, even from a server that does not keep its order. */
    sort_by_start(resp->jobs, resp->n_jobs);
    for (i = n = 0; i < resp->n_jobs; i++) {
      bool fin = is_final(resp->jobs[i]->state);
      if (state == 0 || (state == 1 && !fin) || (state == 2 && fin))
        resp->jobs[n++] = resp->jobs[i];
      else
        jobworker__v1__job_status__free_unpacked(resp->jobs[i], NULL);
    }
    resp->n_jobs = n;
    /* A table on a terminal fits it; in a pipe every cell stays whole. */
    if (!no_trunc && isatty(STDOUT_FILENO)) {
      struct winsize ws;
      width = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0
                  ? ws.ws_col
                  : 80;
    }
    if (json)
      cli_print_list_json(stdout, resp->jobs, resp->n_jobs);
    else if (quiet)
      for (i = 0; i < resp->n_jobs; i++)
        printf("%s\n", resp->jobs[i]->id);
    else if (resp->n_jobs == 0 && state == 0)
      fprintf(stderr, "teleport: no jobs yet; start one with 'teleport "
                      "start CMD'\n");
    else if (resp->n_jobs == 0)
      fprintf(stderr, "teleport: no %s jobs\n",
              state == 1 ? "running" : "finished");
    else
      cli_print_list(stdout, resp->jobs, resp->n_jobs, cli_now_ns(), width);
    rc = flush_stdout();
  }
  if (resp != NULL)
    jobworker__v1__list_response__free_unpacked(resp, NULL);
  cli_session_close(&s);
  return rc;
}
