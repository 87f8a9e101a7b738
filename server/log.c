#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static jw_log_level_t min_level = JW_LOG_INFO;

void jw_log_set_level(jw_log_level_t level) { min_level = level; }

int jw_log_enabled(jw_log_level_t level) { return level >= min_level; }

static bool needs_quotes(const char *v) {
  if (v[0] == '\0')
    return true;
  for (const char *p = v; *p; p++)
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
      return true;
  return false;
}

/* Appends v, quoted and escaped as logfmt wants, to the line. */
static size_t put_value(char *line, size_t o, size_t size, const char *v) {
  if (!needs_quotes(v))
    return o + (size_t)snprintf(line + o, size - o, "%s", v);
  if (o < size)
    line[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)v; *p && o + 6 < size;
       p++) {
    if (*p == '"' || *p == '\\') {
      line[o++] = '\\';
      line[o++] = (char)*p;
    } else if (*p == '\n') {
      line[o++] = '\\';
      line[o++] = 'n';
    } else if (*p < 0x20 || *p == 0x7f) {
      o += (size_t)snprintf(line + o, size - o, "\\x%02x", *p);
    } else {
      line[o++] = (char)*p;
    }
  }
  if (o < size)
    line[o++] = '"';
  return o;
}

void jw_log(jw_log_level_t level, ...) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  if (level < min_level)
    return;
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t o = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
  o += (size_t)snprintf(line + o, sizeof(line) - o, ".%03ldZ level=%s",
                        ts.tv_nsec / 1000000, names[level]);
  va_list ap;
  va_start(ap, level);
  const char *key;
  while ((key = va_arg(ap, const char *)) != NULL) {
    const char *val = va_arg(ap, const char *);
    if (val == NULL || o + 8 >= sizeof(line))
      continue;
    o += (size_t)snprintf(line + o, sizeof(line) - o, " %s=", key);
    if (o < sizeof(line))
      o = put_value(line, o, sizeof(line) - 2, val);
  }
  va_end(ap);
  if (o > sizeof(line) - 2)
    o = sizeof(line) - 2;
  line[o++] = '\n';
  fwrite(line, 1, o, stderr);
}
