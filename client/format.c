/*
 * What teleport prints about jobs: short summaries and tables for people,
 * JSON for scripts. JSON is written by hand (a string escaper is all it
 * takes) so the CLI needs no JSON library.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "jobworker/supervisor.h"

int64_t cli_now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *cli_state_name(int state) {
  switch (state) {
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_UNSPECIFIED:
    return "UNSPECIFIED";
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_RUNNING:
    return "RUNNING";
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED:
    return "EXITED";
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED:
    return "SIGNALED";
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED:
    return "STOPPED";
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPING:
    return "STOPPING";
  default:
    return "UNKNOWN";
  }
}

/* The wire numbers its end reasons as the library does. */
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_EXITED ==
                   JW_END_EXITED,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_SIGNALED ==
                   JW_END_SIGNALED,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_STOPPED ==
                   JW_END_STOPPED,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_TIMED_OUT ==
                   JW_END_TIMED_OUT,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_OOM_KILLED ==
                   JW_END_OOM_KILLED,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_SERVER_SHUTDOWN ==
                   JW_END_SERVER_SHUTDOWN,
               "EndReason and jw_end_reason_t agree");
_Static_assert((int)JOBWORKER__V1__END_REASON__END_REASON_SERVER_CRASH ==
                   JW_END_SERVER_CRASH,
               "EndReason and jw_end_reason_t agree");

const char *cli_end_reason_name(int reason) {
  if (reason == JOBWORKER__V1__END_REASON__END_REASON_UNSPECIFIED)
    return NULL;
  const char *name = jw_end_reason_name((jw_end_reason_t)reason);
  return name[0] != '\0' ? name : "unknown";
}

/* The end reason for people. */
static const char *end_reason_text(int reason) {
  switch (reason) {
  case JOBWORKER__V1__END_REASON__END_REASON_EXITED:
    return "exited by itself";
  case JOBWORKER__V1__END_REASON__END_REASON_SIGNALED:
    return "ended by a signal nobody asked for";
  case JOBWORKER__V1__END_REASON__END_REASON_STOPPED:
    return "stopped by a client";
  case JOBWORKER__V1__END_REASON__END_REASON_TIMED_OUT:
    return "timed out (its --timeout passed)";
  case JOBWORKER__V1__END_REASON__END_REASON_OOM_KILLED:
    return "killed by the OOM killer (its memory limit)";
  case JOBWORKER__V1__END_REASON__END_REASON_SERVER_SHUTDOWN:
    return "the server shut down while it ran";
  case JOBWORKER__V1__END_REASON__END_REASON_SERVER_CRASH:
    return "the server stopped (a crash) while it ran";
  default:
    return "unknown";
  }
}

/* Whether the job ended by exiting, so that exit_code means something. */
static bool has_exit_code(const Jobworker__V1__JobStatus *st) {
  return st->state == JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED ||
         ((st->state == JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED ||
           st->state == JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED) &&
          st->signal == 0);
}

const char *cli_signal_name(int sig, char *buf, size_t len) {
  const char *abbrev = sig > 0 ? sigabbrev_np(sig) : NULL;

  if (abbrev != NULL)
    snprintf(buf, len, "SIG%s", abbrev);
  else
    snprintf(buf, len, "signal %d", sig);
  return buf;
}

void cli_format_duration(char *buf, size_t len, int64_t ns) {
  int64_t s;

  if (ns < 0)
    ns = 0;
  s = ns / 1000000000;
  if (s < 60) {
    snprintf(buf, len, "%" PRId64 ".%03" PRId64 "s", s, (ns / 1000000) % 1000);
  } else if (s < 3600) {
    snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m%02" PRId64 "s", s / 3600,
             (s / 60) % 60, s % 60);
  } else {
    snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h%02" PRId64 "m", s / 86400,
             (s / 3600) % 24, (s / 60) % 60);
  }
}

void cli_format_time(char *buf, size_t len, int64_t unix_ns, bool iso) {
  time_t t = (time_t)(unix_ns / 1000000000);
  struct tm tm;
  size_t n;

  if (unix_ns <= 0 || localtime_r(&t, &tm) == NULL) {
    snprintf(buf, len, "-");
    return;
  }
  if (!iso) {
    if (strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
      snprintf(buf, len, "-");
    return;
  }
  n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z", &tm);
  /* ISO-8601 wants the offset as +02:00; strftime gives +0200. */
  if (n >= 5 && n + 2 <= len) {
    memmove(buf + n - 1, buf + n - 2, 3);
    buf[n - 2] = ':';
  } else if (n == 0) {
    snprintf(buf, len, "-");
  }
}

/*
 * Returns the length of the valid UTF-8 sequence at p (1-4), or 0 when it
 * is not one (stray continuation, overlong form, surrogate, > U+10FFFF).
 */
static size_t utf8_len(const unsigned char *p) {
  unsigned c = p[0];
  size_t n, i;
  uint32_t cp;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  for (i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

void cli_json_string(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");

  fputc('"', f);
  while (*p != '\0') {
    size_t n;

    switch (*p) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    case '\b':
      fputs("\\b", f);
      break;
    case '\f':
      fputs("\\f", f);
      break;
    default:
      if (*p < 0x20) {
        fprintf(f, "\\u%04x", *p);
        break;
      }
      n = utf8_len(p);
      if (n == 0) {
        /* Not UTF-8: JSON cannot carry it; say so with U+FFFD. */
        fputs("\\ufffd", f);
        break;
      }
      fwrite(p, 1, n, f);
      p += n;
      continue;
    }
    p++;
  }
  fputc('"', f);
}

/* True when s can be shown to a shell user without quotes. */
static bool shell_safe(const char *s) {
  if (*s == '\0')
    return false;
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("@%+=:,./_-", c) != NULL))
      return false;
  }
  return true;
}

static void print_word(FILE *f, const char *s) {
  if (shell_safe(s)) {
    fputs(s, f);
    return;
  }
  fputc('\'', f);
  for (; *s != '\0'; s++) {
    if (*s == '\'')
      fputs("'\\''", f);
    else
      fputc(*s, f);
  }
  fputc('\'', f);
}

void cli_print_command(FILE *f, const char *command, char **args,
                       size_t nargs) {
  size_t i;

  print_word(f, command);
  for (i = 0; i < nargs; i++) {
    fputc(' ', f);
    print_word(f, args[i]);
  }
}

/* How the job ended, for people: "exit code 3", "SIGKILL", "". */
static void format_outcome(char *buf, size_t len,
                           const Jobworker__V1__JobStatus *st, bool brief) {
  char sig[32];

  switch (st->state) {
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_EXITED:
    snprintf(buf, len, brief ? "%d" : "exit code %d", st->exit_code);
    return;
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_SIGNALED:
  case JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED:
    if (st->signal != 0) {
      cli_signal_name(st->signal, sig, sizeof(sig));
      if (brief)
        snprintf(buf, len, "%s", sig);
      else
        snprintf(buf, len, "%s by %s, signal %d",
                 st->state == JOBWORKER__V1__JOB_STATE__JOB_STATE_STOPPED
                     ? "ended"
                     : "killed",
                 sig, st->signal);
    } else {
      snprintf(buf, len, brief ? "%d" : "exit code %d", st->exit_code);
    }
    return;
  default:
    snprintf(buf, len, brief ? "-" : "");
    return;
  }
}

/* Nanoseconds the job ran, or has been running. */
static int64_t job_runtime(const Jobworker__V1__JobStatus *st, int64_t now) {
  if (st->started_at_unix_nano <= 0)
    return 0;
  if (st->ended_at_unix_nano > 0)
    return st->ended_at_unix_nano - st->started_at_unix_nano;
  return now - st->started_at_unix_nano;
}

/* 67108864 -> "64 MiB", 1536 MiB -> "1.5 GiB". */
static void format_bytes(char *buf, size_t len, uint64_t v) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double d = (double)v;
  size_t u = 0;
  while (d >= 1024 && u < 4) {
    d /= 1024;
    u++;
  }
  if (u == 0 || d == (double)(uint64_t)d)
    snprintf(buf, len, "%.0f %s", d, units[u]);
  else
    snprintf(buf, len, "%.1f %s", d, units[u]);
}

/* The job's limits and its cgroup's usage, when the server sent any. */
static void print_limits(FILE *f, const Jobworker__V1__JobStatus *st) {
  const Jobworker__V1__Limits *l = st->limits;
  char b[32];
  const char *sep = "";

  if (l != NULL && (l->memory_bytes || l->cpu_millis || l->io_read_bps ||
                    l->io_write_bps || l->pids)) {
    fputs("Limits:    ", f);
    if (l->memory_bytes > 0) {
      format_bytes(b, sizeof(b), (uint64_t)l->memory_bytes);
      fprintf(f, "memory %s", b);
      sep = ", ";
    }
    if (l->cpu_millis > 0) {
      fprintf(f, "%scpus %g", sep, (double)l->cpu_millis / 1000);
      sep = ", ";
    }
    if (l->io_read_bps > 0) {
      format_bytes(b, sizeof(b), (uint64_t)l->io_read_bps);
      fprintf(f, "%sio read %s/s", sep, b);
      sep = ", ";
    }
    if (l->io_write_bps > 0) {
      format_bytes(b, sizeof(b), (uint64_t)l->io_write_bps);
      fprintf(f, "%sio write %s/s", sep, b);
      sep = ", ";
    }
    if (l->pids > 0)
      fprintf(f, "%spids %" PRId64, sep, l->pids);
    fputc('\n', f);
  }
  if (st->cpu_usage_ns > 0 || st->memory_peak_bytes > 0 || st->oom_killed) {
    char dur[32];
    cli_format_duration(dur, sizeof(dur), (int64_t)st->cpu_usage_ns);
    format_bytes(b, sizeof(b), st->memory_peak_bytes);
    fprintf(f, "Usage:     cpu %s, memory peak %s%s\n", dur, b,
            st->oom_killed ? ", killed by the OOM killer (memory limit)" : "");
  }
}

void cli_print_status(FILE *f, const Jobworker__V1__JobStatus *st,
                      int64_t now_ns) {
  char outcome[96], when[64], dur[32];

  format_outcome(outcome, sizeof(outcome), st, false);
  fprintf(f, "ID:        %s\n", st->id);
  fprintf(f, "Owner:     %s\n", st->owner);
  fputs("Command:   ", f);
  cli_print_command(f, st->command, st->args, st->n_args);
  fputc('\n', f);
  fprintf(f, "State:     %s%s%s%s\n", cli_state_name(st->state),
          outcome[0] ? " (" : "", outcome, outcome[0] ? ")" : "");
  if (st->pid > 0)
    fprintf(f, "PID:       %d\n", st->pid);
  else
    fprintf(f, "PID:       -\n");
  cli_format_time(when, sizeof(when), st->started_at_unix_nano, true);
  fprintf(f, "Started:   %s\n", when);
  if (st->ended_at_unix_nano > 0) {
    cli_format_time(when, sizeof(when), st->ended_at_unix_nano, true);
    fprintf(f, "Ended:     %s\n", when);
  }
  cli_format_duration(dur, sizeof(dur), job_runtime(st, now_ns));
  fprintf(f, "Duration:  %s%s\n", dur,
          st->ended_at_unix_nano > 0 ? "" : " (still running)");
  if (st->end_reason != JOBWORKER__V1__END_REASON__END_REASON_UNSPECIFIED)
    fprintf(f, "Reason:    %s\n", end_reason_text(st->end_reason));
  if (st->timeout_ms > 0) {
    cli_format_duration(dur, sizeof(dur), st->timeout_ms * 1000000);
    fprintf(f, "Timeout:   %s\n", dur);
  }
  fprintf(f, "Output:    %" PRIu64 " bytes", st->output_bytes);
  if (st->output_dropped_bytes > 0)
    fprintf(f, ", %" PRIu64 " more dropped", st->output_dropped_bytes);
  if (st->output_cap_bytes > 0) {
    char cap[32];
    format_bytes(cap, sizeof(cap), st->output_cap_bytes);
    fprintf(f, " (the server keeps at most %s)", cap);
  }
  fputc('\n', f);
  print_limits(f, st);
}

static void print_status_object(FILE *f, const Jobworker__V1__JobStatus *st) {
  size_t i;

  fputs("{\"id\":", f);
  cli_json_string(f, st->id);
  fputs(",\"owner\":", f);
  cli_json_string(f, st->owner);
  fputs(",\"command\":", f);
  cli_json_string(f, st->command);
  fputs(",\"args\":[", f);
  for (i = 0; i < st->n_args; i++) {
    if (i > 0)
      fputc(',', f);
    cli_json_string(f, st->args[i]);
  }
  fprintf(f, "],\"state\":\"%s\",\"pid\":%d,\"exit_code\":",
          cli_state_name(st->state), st->pid);
  /* null until the job has exited: no number stands for "none". */
  if (has_exit_code(st))
    fprintf(f, "%d", st->exit_code);
  else
    fputs("null", f);
  fprintf(f, ",\"signal\":%d,\"end_reason\":", st->signal);
  if (cli_end_reason_name(st->end_reason) != NULL)
    fprintf(f, "\"%s\"", cli_end_reason_name(st->end_reason));
  else
    fputs("null", f);
  fprintf(f,
          ",\"started_at_unix_nano\":%" PRId64
          ",\"ended_at_unix_nano\":%" PRId64 ",\"output_bytes\":%" PRIu64
          ",\"output_dropped_bytes\":%" PRIu64 ",\"output_cap_bytes\":%" PRIu64
          ",\"timeout_ms\":%" PRId64,
          st->started_at_unix_nano, st->ended_at_unix_nano, st->output_bytes,
          st->output_dropped_bytes, st->output_cap_bytes, st->timeout_ms);
  const Jobworker__V1__Limits *l = st->limits;
  fprintf(f,
          ",\"limits\":{\"memory_bytes\":%" PRId64 ",\"cpu_millis\":%" PRId64
          ",\"io_read_bps\":%" PRId64 ",\"io_write_bps\":%" PRId64
          ",\"pids\":%" PRId64 "},\"oom_killed\":%s,\"cpu_usage_ns\":%" PRIu64
          ",\"memory_peak_bytes\":%" PRIu64 "}",
          l ? l->memory_bytes : 0, l ? l->cpu_millis : 0,
          l ? l->io_read_bps : 0, l ? l->io_write_bps : 0, l ? l->pids : 0,
          st->oom_killed ? "true" : "false", st->cpu_usage_ns,
          st->memory_peak_bytes);
}

void cli_print_status_json(FILE *f, const Jobworker__V1__JobStatus *st) {
  print_status_object(f, st);
  fputc('\n', f);
}

void cli_print_list_json(FILE *f, Jobworker__V1__JobStatus *const *jobs,
                         size_t n) {
  size_t i;

  if (n == 0) {
    fputs("[]\n", f);
    return;
  }
  fputs("[\n", f);
  for (i = 0; i < n; i++) {
    fputs("  ", f);
    print_status_object(f, jobs[i]);
    fputs(i + 1 < n ? ",\n" : "\n", f);
  }
  fputs("]\n", f);
}

/* The cells of one table row, all but the command. */
typedef struct {
  char pid[16];
  char exit[32];
  char started[32];
  char duration[32];
} row_t;

static void fill_row(row_t *r, const Jobworker__V1__JobStatus *st,
                     int64_t now) {
  if (st->pid > 0)
    snprintf(r->pid, sizeof(r->pid), "%d", st->pid);
  else
    snprintf(r->pid, sizeof(r->pid), "-");
  format_outcome(r->exit, sizeof(r->exit), st, true);
  cli_format_time(r->started, sizeof(r->started), st->started_at_unix_nano,
                  false);
  cli_format_duration(r->duration, sizeof(r->duration), job_runtime(st, now));
}

static int widest(int cur, const char *s) {
  int n = (int)strlen(s);
  return n > cur ? n : cur;
}

/* How many digits of an id a table that fits the terminal shows. */
#define SHORT_ID 12
/* The least a cut command keeps. */
#define MIN_COMMAND 10

/* Prints the command, cut to max bytes with "..." (max 0: whole). */
static void print_command_cut(FILE *f, const Jobworker__V1__JobStatus *st,
                              size_t max) {
  char *text = NULL;
  size_t len = 0, keep;
  FILE *m;

  if (max == 0 || (m = open_memstream(&text, &len)) == NULL) {
    cli_print_command(f, st->command, st->args, st->n_args);
    return;
  }
  cli_print_command(m, st->command, st->args, st->n_args);
  fclose(m);
  if (len <= max) {
    fputs(text, f);
  } else {
    /* Cut at a character's start, never inside a UTF-8 sequence. */
    keep = max - 3;
    while (keep > 0 && ((unsigned char)text[keep] & 0xc0) == 0x80)
      keep--;
    fwrite(text, 1, keep, f);
    fputs("...", f);
  }
  free(text);
}

void cli_print_list(FILE *f, Jobworker__V1__JobStatus *const *jobs, size_t n,
                    int64_t now_ns, int width) {
  int wid = 2, wstate = 5, wexit = 4, wpid = 3, wstart = 7, wdur = 8;
  size_t cmd_max = 0;
  row_t r;
  size_t i;

  for (i = 0; i < n; i++) {
    fill_row(&r, jobs[i], now_ns);
    wid = widest(wid, jobs[i]->id);
    wstate = widest(wstate, cli_state_name(jobs[i]->state));
    wexit = widest(wexit, r.exit);
    wpid = widest(wpid, r.pid);
    wstart = widest(wstart, r.started);
    wdur = widest(wdur, r.duration);
  }
  if (width > 0) {
    int used;
    if (wid > SHORT_ID)
      wid = SHORT_ID;
    used = wid + wstate + wexit + wpid + wstart + wdur + 6 * 2;
    cmd_max = width - used > MIN_COMMAND ? (size_t)(width - used) : MIN_COMMAND;
  }
  fprintf(f, "%-*s  %-*s  %-*s  %*s  %-*s  %*s  %s\n", wid, "ID", wstate,
          "STATE", wexit, "EXIT", wpid, "PID", wstart, "STARTED", wdur,
          "DURATION", "COMMAND");
  for (i = 0; i < n; i++) {
    fill_row(&r, jobs[i], now_ns);
    fprintf(f, "%-*.*s  %-*s  %-*s  %*s  %-*s  %*s  ", wid, wid, jobs[i]->id,
            wstate, cli_state_name(jobs[i]->state), wexit, r.exit, wpid, r.pid,
            wstart, r.started, wdur, r.duration);
    print_command_cut(f, jobs[i], cmd_max);
    fputc('\n', f);
  }
}
