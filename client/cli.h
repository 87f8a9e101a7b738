/*
 * teleport: the command-line client of teleportd, on lib/rpc's client role.
 *
 * main.c parses the global flags and dispatches; commands.c holds one
 * function per command; session.c connects and runs unary calls, turning
 * every failure into one line on stderr; follow.c streams a job's output;
 * format.c prints statuses for people (tables, durations) and for scripts
 * (JSON); usage.c holds the help texts.
 */
#ifndef TELEPORT_CLI_H
#define TELEPORT_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "jobworker.pb-c.h"
#include "jobworker/rpc.h"
#include "jobworker/tls.h"
#include "names.h"

/* The exit codes scripts rely on; --help and docs/cli.md list them. */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAIL = 1,
  CLI_EXIT_USAGE = 2,
  /* output: the server dropped some of the job's output (its cap). */
  CLI_EXIT_TRUNCATED = 3,
  /* wait --timeout: a job was still running when the time was up. */
  CLI_EXIT_TIMEOUT = 124,
  CLI_EXIT_SIGNAL_BASE = 128,
  CLI_EXIT_DETACHED = 130,
  CLI_EXIT_PIPE = 141,
};

#define CLI_DEFAULT_PORT "3000"
#define CLI_DEFAULT_ADDR "127.0.0.1:" CLI_DEFAULT_PORT

/* Deadline of the short calls (Start, Status, List); Stop has none. */
#define CLI_UNARY_TIMEOUT_MS 30000

/*
 * How long output, start -l and wait keep reconnecting after they lost
 * the server, each time (TELEPORT_RECONNECT overrides it; 0: never).
 */
#define CLI_RECONNECT_MS 60000

/*
 * Where and as whom to connect. Each field is set from its flag, else its
 * environment variable, else (addr only) the default.
 */
typedef struct {
  jw_tls_files_t files;
  const char *addr;
  /* --context NAME, or NULL (then TELEPORT_CONTEXT, then the default). */
  const char *context;
  /* The context the unset settings came from, or NULL. */
  const char *context_name;
  /* A context's cacert, cert and key made absolute. */
  char context_paths[3][4096];
  /* addr normalized to HOST:PORT or [V6]:PORT by cli_conn_resolve. */
  char addr_norm[300];
  /* TELEPORT_RECONNECT, else CLI_RECONNECT_MS (cli_conn_resolve). */
  uint64_t reconnect_ms;
} cli_conn_t;

/* Option codes of the connection flags, accepted before and after COMMAND. */
enum {
  CLI_OPT_CACERT = 0x100,
  CLI_OPT_CERT,
  CLI_OPT_KEY,
  CLI_OPT_ADDR,
  CLI_OPT_VERSION,
  CLI_OPT_JSON,
  CLI_OPT_CONTEXT,
  /* cli_next_opt's answer once -h/--help printed the command's help. */
  CLI_OPT_HELPED,
};

/* getopt_long entries for the connection flags and --help. */
#define CLI_CONN_LONGOPTS                                                      \
  {"cacert", required_argument, NULL, CLI_OPT_CACERT},                         \
      {"cert", required_argument, NULL, CLI_OPT_CERT},                         \
      {"key", required_argument, NULL, CLI_OPT_KEY},                           \
      {"addr", required_argument, NULL, CLI_OPT_ADDR},                         \
      {"context", required_argument, NULL, CLI_OPT_CONTEXT}, {                 \
    "help", no_argument, NULL, 'h'                                             \
  }

/*
 * A connection to teleportd on a loop of its own, used one call at a time.
 * Pointers first, then the loop, then the flags: no padding in between.
 */
typedef struct {
  jw_tls_ctx_t *tls;
  jw_rpc_client_t *client;
  const cli_conn_t *conn;
  /* Set (by a Ctrl-C handler) to end a reconnect early; may be NULL. */
  const bool *abort;
  /* Reconnecting since outage_start (uv_now), with no progress since. */
  uint64_t outage_start;
  uv_loop_t loop;
  int connect_err;
  /* How many times cli_session_reconnect got back in. */
  int reconnects;
  /* The gRPC status of the last call cli_session_call made. */
  int last_status;
  bool loop_ready;
  bool connect_done;
  bool closed;
  bool backoff_fired;
  bool backoff_closed;
  bool in_outage;
  /* When set, cli_session_call leaves DEADLINE_EXCEEDED to the caller. */
  bool quiet_deadline;
} cli_session_t;

/* ---- main.c ----------------------------------------------------------- */

/* The name errors are reported under: "teleport" or "teleport start". */
extern const char *cli_prog;

/*
 * Records a connection flag (code is a CLI_OPT_* value). Returns true when
 * code was one of them.
 */
bool cli_conn_flag(cli_conn_t *conn, int code, const char *value);

/*
 * getopt_long for a command's own flags (the caller sets optind to 0
 * first): records the connection flags into conn on the way, prints cmd's
 * help for -h (then returns CLI_OPT_HELPED) and returns the next other
 * option, '?' or ':' (for cli_getopt_error), or -1 at the end.
 */
int cli_next_opt(cli_conn_t *conn, const char *cmd, int argc, char **argv,
                 const char *optstring, const struct option *longopts);

/*
 * Prints a usage error (one line, then where to find help) and returns
 * CLI_EXIT_USAGE. cmd is the command name or NULL.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Reports getopt_long's '?' or ':' result for argv as a usage error;
 * returns CLI_EXIT_USAGE.
 */
int cli_getopt_error(const char *cmd, int c, char **argv);

/*
 * Fills the unset connection settings from the environment and the default
 * address and checks them. Returns 0, or prints the problem (which setting
 * is missing, a malformed address) and returns CLI_EXIT_USAGE.
 */
int cli_conn_resolve(cli_conn_t *conn);

/* ---- config.c -------------------------------------------------------- */

/*
 * Reads $XDG_CONFIG_HOME/teleport/config (else ~/.config/teleport/config)
 * once; a missing file is no contexts. Returns 0, or prints what is wrong
 * (file, line, key) and returns CLI_EXIT_USAGE.
 */
int cli_config_load(void);

/*
 * Fills the connection settings neither a flag nor a TELEPORT_* variable
 * set from the context in use (--context, else TELEPORT_CONTEXT, else the
 * file's default-context). Returns 0, or prints the problem (an unknown
 * context with the known ones) and returns CLI_EXIT_USAGE.
 */
int cli_config_apply(cli_conn_t *conn);

/* teleport config [list | current | use NAME]. */
int cli_cmd_config(cli_conn_t *conn, int argc, char **argv);

/* ---- usage.c ---------------------------------------------------------- */

/* Prints the main help, or a command's help (cmd not NULL), to f. */
void cli_help(FILE *f, const char *cmd);

/* Returns true when cmd is a command name. */
bool cli_is_command(const char *cmd);

/* ---- commands.c ------------------------------------------------------- */

int cli_cmd_start(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_status(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_output(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_stop(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_list(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_wait(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_kill(cli_conn_t *conn, int argc, char **argv);
int cli_cmd_rm(cli_conn_t *conn, int argc, char **argv);

/* ---- health.c --------------------------------------------------------- */

/* teleport health [SERVICE], and its help text. */
int cli_cmd_health(cli_conn_t *conn, int argc, char **argv);
extern const char cli_health_help[];

/* ---- session.c -------------------------------------------------------- */

/*
 * Checks the certificate files, builds the TLS context and connects.
 * Returns CLI_EXIT_OK, or prints what went wrong in the user's terms and
 * returns CLI_EXIT_FAIL. Call cli_session_close either way.
 */
int cli_session_open(cli_session_t *s, const cli_conn_t *conn);

/* Closes the connection and the loop; safe on a session that failed. */
void cli_session_close(cli_session_t *s);

/*
 * Runs the loop until *flag is true. Returns false if the loop ran out of
 * work first (a bug in someone's callbacks; reported on stderr).
 */
bool cli_session_run_until(cli_session_t *s, const bool *flag);

/*
 * Calls METHOD ("Status") with req and waits for the answer, unpacked with
 * desc into *out (free with protobuf_c_message_free_unpacked). id is the
 * job the call is about (for messages), or NULL. Returns CLI_EXIT_OK, or
 * prints the failure and returns CLI_EXIT_FAIL.
 */
int cli_session_unary(cli_session_t *s, const char *method,
                      const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, const char *id,
                      uint64_t timeout_ms, ProtobufCMessage **out);

/*
 * cli_session_unary, and when retry is set (for calls that may be made
 * twice: Status, List, Wait) a call the connection failed under is made
 * again once cli_session_reconnect is back, within the same timeout_ms.
 */
int cli_session_call(cli_session_t *s, const char *method,
                     const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *desc, const char *id,
                     uint64_t timeout_ms, bool retry, ProtobufCMessage **out);

/*
 * Whether a call is worth making again on a new connection: it did not
 * end (it could not be sent, or the connection failed under it), or it
 * ended UNAVAILABLE while its connection was going away (a reload's
 * GOAWAY, a lost connection). An UNAVAILABLE answer on a connection that
 * stays up is the server's word, said as such rather than asked again.
 */
bool cli_session_worth_again(const cli_session_t *s, bool ended,
                             int grpc_status);

/*
 * Closes the session's connection and connects again, with backoff (0.1 s
 * doubling up to 2 s) for up to conn->reconnect_ms since the connection
 * was first lost with no progress since, saying so on stderr
 * (why: what happened to the connection). Returns CLI_EXIT_OK once
 * connected, CLI_EXIT_DETACHED when *s->abort was set, or prints why it
 * gave up and returns CLI_EXIT_FAIL.
 */
int cli_session_reconnect(cli_session_t *s, const char *why);

/* Why a call could not be sent (jw_rpc_client_call's code), for people. */
const char *cli_call_error(int err);

/*
 * Tells the session that a call got somewhere (an answer, output bytes):
 * the next lost connection starts a new reconnect budget.
 */
void cli_session_progress(cli_session_t *s);

/*
 * Prints one line for a failed call: grpc_status and the server's message
 * in the user's terms (job ID not found, belongs to another client, ...).
 */
void cli_report_status(const cli_session_t *s, const char *method,
                       const char *id, int grpc_status, const char *message);

/*
 * The full path of a JobWorker method: "/jobworker.v1.JobWorker/NAME"; a
 * method starting with '/' is a full path already (another service's).
 */
void cli_method_path(char *buf, size_t len, const char *method);

/* ---- follow.c --------------------------------------------------------- */

/* What to ask GetOutput for, and what came of it. */
typedef struct {
  uint64_t from;     /* --from: the first byte (0: the start) */
  uint32_t tail;     /* --tail: the last N lines (0: all) */
  bool no_follow;    /* --no-follow: what is there now, then end */
  uint64_t dropped;  /* out: bytes the server said it dropped */
  uint64_t received; /* out: bytes written to fd 1 and fd 2 */
} cli_follow_opts_t;

/*
 * Streams job id's output: stdout bytes to fd 1, stderr bytes to fd 2,
 * until the job ends (or, with no_follow, until what is there now was
 * sent). A lost connection is resumed from the next byte (see
 * cli_session_reconnect). Ctrl-C detaches (the job keeps running).
 * Returns CLI_EXIT_OK when the stream ended with OK, CLI_EXIT_DETACHED
 * after Ctrl-C, CLI_EXIT_PIPE when the reader went away (quietly), or
 * prints the failure and returns CLI_EXIT_FAIL.
 */
int cli_follow_output(cli_session_t *s, const char *id,
                      cli_follow_opts_t *opts);

/* ---- format.c --------------------------------------------------------- */

/* "RUNNING", "EXITED", ...; "UNKNOWN" for values outside the enum. */
const char *cli_state_name(int state);

/* "exited", "timed_out", ...; NULL for END_REASON_UNSPECIFIED. */
const char *cli_end_reason_name(int reason);

/* "SIGKILL" for 9; "signal N" for an unnamed one. buf holds 32 bytes. */
const char *cli_signal_name(int sig, char *buf, size_t len);

/* "0.042s", "1.234s", "2m03s", "1h02m03s", "3d04h05m". */
void cli_format_duration(char *buf, size_t len, int64_t ns);

/* Local time: ISO-8601 with offset (iso) or "YYYY-MM-DD HH:MM:SS". */
void cli_format_time(char *buf, size_t len, int64_t unix_ns, bool iso);

/* Writes s as a JSON string (quoted, escaped, invalid UTF-8 replaced). */
void cli_json_string(FILE *f, const char *s);

/* Prints the command and its arguments, shell-quoted where needed. */
void cli_print_command(FILE *f, const char *command, char **args, size_t nargs);

/* The short human summary of status: id, command, state, pid, times. */
void cli_print_status(FILE *f, const Jobworker__V1__JobStatus *st,
                      int64_t now_ns);

/* One JSON object with the JobStatus fields, and a newline. */
void cli_print_status_json(FILE *f, const Jobworker__V1__JobStatus *st);

/*
 * A table of jobs with a header line, in the given order. width > 0: fit
 * the lines in width columns (ids cut to 12 digits, a long command cut
 * with "..."); 0: every cell whole.
 */
void cli_print_list(FILE *f, Jobworker__V1__JobStatus *const *jobs, size_t n,
                    int64_t now_ns, int width);

/* One JSON array of JobStatus objects, and a newline. */
void cli_print_list_json(FILE *f, Jobworker__V1__JobStatus *const *jobs,
                         size_t n);

/* The current time in nanoseconds since the Unix epoch. */
int64_t cli_now_ns(void);

#endif /* TELEPORT_CLI_H */
