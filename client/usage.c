/*
 * The help texts. They are the CLI's first documentation: every flag,
 * every environment variable and every exit code is named here, and
 * docs/cli.md says the same at more length.
 */
#include <string.h>

#include "cli.h"

static const char main_help[] =
    "Usage: teleport [CONNECTION FLAGS] COMMAND [ARGS...]\n"
    "\n"
    "Run Linux processes on a remote teleportd, watch their output, stop\n"
    "them. Only the client whose certificate started a job can see it.\n"
    "\n"
    "Commands:\n"
    "  start [-l] [-e KEY=VALUE]... [-C DIR] [--] CMD [ARG...]\n"
    "                     Start CMD on the server; print the job id\n"
    "  status [--json] ID Show a job's command, state, exit code, pid, times\n"
    "  output ID          Print a job's output, all of it, then follow it\n"
    "                     until the job ends\n"
    "  stop [--json] ID   Stop a job (SIGTERM, later SIGKILL); show its final\n"
    "                     state\n"
    "  list [--json]      List your jobs, newest last\n"
    "  health [SERVICE]   Check that the server is SERVING (exit 0) or not\n"
    "  config [list | current | use NAME]\n"
    "                     List the contexts of the config file, show the\n"
    "                     one in use, or make NAME the default\n"
    "  help [COMMAND]     Show this help, or a command's\n"
    "\n"
    "Connection flags (each may also follow COMMAND; a flag wins over its\n"
    "environment variable, which wins over the context, which wins over\n"
    "the default):\n"
    "  --cacert FILE      CA certificate the server's certificate must be\n"
    "                     signed by                       [TELEPORT_CACERT]\n"
    "  --cert FILE        your client certificate (its CN is your identity)\n"
    "                                                     [TELEPORT_CERT]\n"
    "  --key FILE         the private key of --cert       [TELEPORT_KEY]\n"
    "  --addr HOST:PORT   the server (default " CLI_DEFAULT_ADDR "; the port\n"
    "                     defaults to " CLI_DEFAULT_PORT
    ")               [TELEPORT_ADDR]\n"
    "  --context NAME     take the settings above that no flag or variable\n"
    "                     gives from context NAME of the config file\n"
    "                     (default: its default-context) [TELEPORT_CONTEXT]\n"
    "\n"
    "Config file: $XDG_CONFIG_HOME/teleport/config (~/.config/teleport/config\n"
    "when XDG_CONFIG_HOME is unset), not writable by others:\n"
    "  default-context = alice@build1\n"
    "  [context alice@build1]\n"
    "  addr = build1.example:3000\n"
    "  cacert = certs/ca.cert     (relative paths: to the file's directory)\n"
    "  cert = certs/alice.cert\n"
    "  key = certs/alice.key\n"
    "\n"
    "Other flags:\n"
    "  -h, --help         show help (teleport COMMAND --help for a command)\n"
    "  --version          print the version\n"
    "\n"
    "Exit status:\n"
    "  0    success\n"
    "  1    a server or connection error (stderr says which, in one line)\n"
    "  2    a usage error: unknown flag or command, missing ID or setting\n"
    "  N    start -l: the job's exit code, or 128+S if signal S ended it\n"
    "  130  output, start -l: detached with Ctrl-C; the job keeps running\n"
    "  141  the reader of stdout went away (teleport output ID | head)\n"
    "\n"
    "Example:\n"
    "  export TELEPORT_CACERT=ca.cert TELEPORT_CERT=alice.cert \\\n"
    "         TELEPORT_KEY=alice.key TELEPORT_ADDR=build1.example:3000\n"
    "  id=$(teleport start make -C /src -j4)\n"
    "  teleport output \"$id\" > build.log\n"
    "  teleport status \"$id\"\n";

static const char start_help[] =
    "Usage: teleport start [-l] [-e KEY=VALUE]... [-C DIR] [--json]\n"
    "                      [LIMIT FLAGS] [--isolate LIST] [--] CMD [ARG...]\n"
    "\n"
    "Start CMD with its arguments on the server and print the job id alone\n"
    "on stdout, so that id=$(teleport start ...) works.\n"
    "\n"
    "CMD runs directly, with no shell: it is looked up in the server's PATH\n"
    "when it has no slash. Wrap it yourself when you want a shell:\n"
    "  teleport start sh -c 'make 2>&1 | tail'\n"
    "Everything from CMD on belongs to the job: 'teleport start ls -la'\n"
    "passes -la to ls. Use -- when CMD itself starts with a dash.\n"
    "\n"
    "The job gets a clean environment (a default PATH plus each -e), stdin\n"
    "from /dev/null, and its own process group.\n"
    "\n"
    "Flags:\n"
    "  -l, --listen        then stream the job's output like 'teleport\n"
    "                      output' and exit with the job's exit code (128+S\n"
    "                      if signal S ended it). stdout then carries only\n"
    "                      the job's stdout; the job id is shown on stderr\n"
    "                      when stderr is a terminal. Ctrl-C detaches (exit\n"
    "                      130) and leaves the job running.\n"
    "  -e, --env KEY=VALUE add KEY=VALUE to the job's environment\n"
    "                      (repeatable)\n"
    "  -C, --dir DIR       run the job in DIR on the server (default:\n"
    "                      teleportd's own working directory)\n"
    "  --json              print the job's status as JSON instead of its id\n"
    "                      (as 'teleport status --json' does)\n"
    "\n"
    "Limits (the job's cgroup; unset: the server's default):\n"
    "  --memory SIZE       memory, e.g. 512M, 2G; past it the OOM killer\n"
    "                      ends the job\n"
    "  --cpus CPUS         CPU time, e.g. 0.5, 2, 250m\n"
    "  --io-read RATE      read bandwidth on the server's io device, e.g. 10M\n"
    "  --io-write RATE     write bandwidth, e.g. 10M\n"
    "  --pids N            processes and threads at once\n"
    "  --isolate LIST      namespaces of the job's own, comma-separated: pid\n"
    "                      (sees only its own processes), mount (own /proc),\n"
    "                      net (only lo)\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 started (without -l); the job's code with -l; 1 the\n"
    "server refused the job or could not be reached; 2 a usage error; 130\n"
    "detached with Ctrl-C; 141 the reader of stdout went away.\n"
    "\n"
    "Examples:\n"
    "  teleport start -e LANG=C.UTF-8 -C /srv/app ./run-tests --fast\n"
    "  teleport start -l ping -c 3 localhost\n"
    "  teleport start --memory 512M --cpus 0.5 --pids 100 --isolate pid make\n";

static const char status_help[] =
    "Usage: teleport status [--json] ID\n"
    "\n"
    "Show job ID: its id, owner, command, state (RUNNING, EXITED, SIGNALED,\n"
    "STOPPED) with the exit code or signal, pid, when it started, how long\n"
    "it ran (or has been running) and how much output it wrote; its limits\n"
    "and its cgroup's usage (CPU time, memory peak, OOM kill) when it has\n"
    "them.\n"
    "\n"
    "Flags:\n"
    "  --json   print one JSON object with the fields id, owner, command,\n"
    "           args, state, pid, exit_code, signal, started_at_unix_nano,\n"
    "           ended_at_unix_nano (0 while it runs), output_bytes,\n"
    "           limits (memory_bytes, cpu_millis, io_read_bps,\n"
    "           io_write_bps, pids; 0: none), oom_killed, cpu_usage_ns,\n"
    "           memory_peak_bytes\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 shown (whatever the job's state); 1 job not found, not\n"
    "yours, or a server or connection error; 2 a usage error.\n";

static const char output_help[] =
    "Usage: teleport output ID\n"
    "\n"
    "Write job ID's output as it wrote it: its stdout bytes to stdout and\n"
    "its stderr bytes to stderr, unchanged (binary-safe, no added\n"
    "newlines). Everything since the job started is replayed, then new\n"
    "output follows live until the job ends.\n"
    "\n"
    "Ctrl-C detaches: teleport exits with 130 and the job keeps running\n"
    "(use 'teleport stop ID' to stop it). Run 'teleport output ID' again\n"
    "to see it all from the start.\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 the job ended and all its output was written; 1 job not\n"
    "found, not yours, or a server or connection error; 2 a usage error;\n"
    "130 detached with Ctrl-C; 141 the reader of stdout went away.\n"
    "\n"
    "Example:\n"
    "  teleport output \"$id\" > out.bin 2> err.log\n";

static const char stop_help[] =
    "Usage: teleport stop [--json] ID\n"
    "\n"
    "Stop job ID: its process group gets SIGTERM, then SIGKILL after the\n"
    "server's grace period (10 s by default). teleport waits for the job to\n"
    "end and prints its final state like 'teleport status'. Stopping a job\n"
    "that already ended just shows its final state.\n"
    "\n"
    "Flags:\n"
    "  --json   print the final status as one JSON object (see 'teleport\n"
    "           status --help')\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 the job is stopped (or had ended); 1 job not found, not\n"
    "yours, or a server or connection error; 2 a usage error.\n";

static const char list_help[] =
    "Usage: teleport list [--json]\n"
    "\n"
    "List the jobs your certificate started, newest last: id, state, exit\n"
    "code or signal, pid, start time, duration, command. Other clients'\n"
    "jobs are never shown.\n"
    "\n"
    "Flags:\n"
    "  --json   print one JSON array of job objects (see 'teleport status\n"
    "           --help' for the fields)\n"
    "\n"
    "Connection flags as in 'teleport --help'.\n"
    "\n"
    "Exit status: 0 listed (also when there are none); 1 a server or\n"
    "connection error; 2 a usage error.\n";

static const char config_help[] =
    "Usage: teleport config [list | current | use NAME]\n"
    "\n"
    "The contexts of $XDG_CONFIG_HOME/teleport/config (else\n"
    "~/.config/teleport/config): each names a server and who to be on it\n"
    "(addr, cacert, cert, key), so that 'teleport --context NAME list' or\n"
    "TELEPORT_CONTEXT=NAME switches between them. Flags and TELEPORT_*\n"
    "variables still win over the context's values.\n"
    "\n"
    "  list          every context and its address; * marks the one in use\n"
    "                (the default when no subcommand is given)\n"
    "  current       print the name of the context in use: --context, else\n"
    "                TELEPORT_CONTEXT, else the file's default-context\n"
    "  use NAME      make NAME the file's default-context (the file is\n"
    "                rewritten with every other line kept)\n"
    "\n"
    "The file (see docs/cli.md):\n"
    "  default-context = alice@build1\n"
    "\n"
    "  [context alice@build1]\n"
    "  addr = build1.example:3000\n"
    "  cacert = certs/ca.cert\n"
    "  cert = certs/alice.cert\n"
    "  key = certs/alice.key\n"
    "\n"
    "One \"key = value\" a line, # comment lines; relative paths are taken\n"
    "from the file's directory. An unknown or repeated key, an unknown\n"
    "context, or a file anyone may write is an error (exit 2).\n"
    "\n"
    "Exit status: 0 done; 1 no context in use (current), or the file could\n"
    "not be written (use); 2 a usage error or a bad config file.\n";

static const struct {
  const char *name;
  const char *text;
} helps[] = {
    {"start", start_help},       {"status", status_help},
    {"output", output_help},     {"stop", stop_help},
    {"list", list_help},         {"ls", list_help},
    {"health", cli_health_help}, {"config", config_help},
};

bool cli_is_command(const char *cmd) {
  size_t i;

  for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
    if (strcmp(helps[i].name, cmd) == 0)
      return true;
  }
  return false;
}

void cli_help(FILE *f, const char *cmd) {
  size_t i;

  if (cmd != NULL) {
    for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
      if (strcmp(helps[i].name, cmd) == 0) {
        fputs(helps[i].text, f);
        return;
      }
    }
  }
  fputs(main_help, f);
}
