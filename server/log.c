#include "log.h"

#include <stdio.h>
#include <string.h>

static jw_log_level_t min_level = JW_LOG_INFO;

void jw_log_set_level(jw_log_level_t level) { min_level = level; }

int jw_log_enabled(jw_log_level_t level) { return level >= min_level; }

/*
 * The line being built. Every write goes through put(), which refuses what
 * does not fit before end, so no length of any value can take len past
 * end: end is the buffer's size less the room kept for the final " ...",
 * the newline and the NUL.
 */
typedef struct {
  char *buf;
  size_t len;
  size_t end;
} line_t;

#define LINE_TAIL (sizeof(" ...\n")) /* marker, newline and NUL */
#define CUT "..."
#define CUT_LEN (sizeof(CUT) - 1)

static size_t room(const line_t *l) { return l->end - l->len; }

static bool put(line_t *l, const char *s, size_t n) {
  if (n > room(l))
    return false;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  return true;
}

/*
 * The length of the UTF-8 sequence at p (n bytes readable), or 0 when it
 * is not one: overlong forms, surrogates and code points past U+10FFFF are
 * not, so that what the log shows raw is valid UTF-8 text.
 */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

  if (c >= 0xc2 && c <= 0xdf)
    need = 1;
  else if (c >= 0xe0 && c <= 0xef)
    need = 2;
  else if (c >= 0xf0 && c <= 0xf4)
    need = 3;
  else
    return 0;
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  if (n <= need || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i <= need; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  return need + 1;
}

/*
 * The character at p (n bytes readable): returns how many bytes of the
 * value it takes, and sets *out to how many it takes in the log and *esc
 * to whether it is escaped (then the value must be quoted).
 */
static size_t next_char(const unsigned char *p, size_t n, size_t *out,
                        bool *esc) {
  unsigned char c = p[0];
  size_t u;

  *esc = true;
  if (c == '"' || c == '\\' || c == '\n') {
    *out = 2;
    return 1;
  }
  if (c < 0x20 || c == 0x7f) {
    *out = 4;
    return 1;
  }
  if (c < 0x80) {
    *esc = c == ' ' || c == '=';
    *out = 1;
    return 1;
  }
  if ((u = utf8_len(p, n)) > 0) {
    *esc = false;
    *out = u;
    return u;
  }
  *out = 4; /* \xHH: a byte that is not UTF-8 */
  return 1;
}

static void put_char(line_t *l, const unsigned char *p, size_t in, size_t out) {
  char e[4];
  if (out == in) {
    put(l, (const char *)p, in);
  } else if (out == 2) {
    e[0] = '\\';
    e[1] = *p == '\n' ? 'n' : (char)*p;
    put(l, e, 2);
  } else {
    static const char hex[] = "0123456789abcdef";
    e[0] = '\\';
    e[1] = 'x';
    e[2] = hex[*p >> 4];
    e[3] = hex[*p & 15];
    put(l, e, 4);
  }
}

typedef enum {
  PAIR_WRITTEN,    /* whole, or cut at JW_LOG_VALUE_MAX */
  PAIR_CUT_AT_END, /* the value was cut where the line ends: it is full */
  PAIR_NONE        /* not even " key=..." fitted: nothing was written */
} pair_result_t;

/*
 * Appends " key=value", the value quoted and escaped as logfmt wants, cut
 * at JW_LOG_VALUE_MAX bytes or where the line ends, whichever comes first,
 * and then followed by "..." (never inside a character).
 */
static pair_result_t put_pair(line_t *l, const char *key, const char *value) {
  const unsigned char *v = (const unsigned char *)value;
  /* Enough to see whether a character that starts at the cap is whole. */
  size_t n = strnlen(value, JW_LOG_VALUE_MAX + 4);
  size_t klen = strlen(key);
  size_t i, o, in, out;
  bool esc, quote = n == 0;

  for (i = 0; i < n && i < JW_LOG_VALUE_MAX && !quote; i += in) {
    in = next_char(v + i, n - i, &out, &esc);
    quote = esc;
  }
  size_t q = quote ? 2 : 0;
  if (room(l) < 1 + klen + 1 + q)
    return PAIR_NONE;
  size_t avail = room(l) - 2 - klen - q; /* for the value's characters */
  /* keep: how much of v goes in when "..." must follow it. */
  size_t keep = 0;
  bool cut = false, full = false;
  for (i = 0, o = 0; i < n; i += in, o += out) {
    in = next_char(v + i, n - i, &out, &esc);
    if (i + in > JW_LOG_VALUE_MAX || o + out > avail) {
      cut = true;
      full = o + out > avail;
      break;
    }
    if (o + out + CUT_LEN <= avail)
      keep = i + in;
  }
  if (!cut)
    keep = n;
  else if (avail < CUT_LEN)
    return PAIR_NONE;
  put(l, " ", 1);
  put(l, key, klen);
  put(l, quote ? "=\"" : "=", quote ? 2 : 1);
  for (i = 0; i < keep; i += in) {
    in = next_char(v + i, n - i, &out, &esc);
    put_char(l, v + i, in, out);
  }
  if (cut)
    put(l, CUT, CUT_LEN);
  if (quote)
    put(l, "\"", 1);
  return full ? PAIR_CUT_AT_END : PAIR_WRITTEN;
}

size_t jw__log_format(char *buf, size_t size, const struct timespec *ts,
                      jw_log_level_t level, const char *const *kv,
                      size_t npairs, bool more) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char head[96];
  struct tm tm;

  if (size < LINE_TAIL) {
    if (size > 0)
      buf[0] = '\0';
    return 0;
  }
  line_t l = {.buf = buf, .len = 0, .end = size - LINE_TAIL};
  if (gmtime_r(&ts->tv_sec, &tm) == NULL)
    memset(&tm, 0, sizeof(tm));
  int hn = snprintf(
      head, sizeof(head), "ts=%04lld-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
      (long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
      tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000 % 1000,
      (unsigned)level < 4 ? names[level] : "unknown");
  bool no_head =
      hn < 0 || (size_t)hn >= sizeof(head) || !put(&l, head, (size_t)hn);
  bool full = no_head;
  size_t i = 0; /* the first pair not written */
  while (!full && i < npairs) {
    pair_result_t r = kv[2 * i + 1] == NULL
                          ? PAIR_WRITTEN
                          : put_pair(&l, kv[2 * i], kv[2 * i + 1]);
    if (r != PAIR_NONE)
      i++;
    full = r != PAIR_WRITTEN;
  }
  /* Pairs left out (not a value cut at the end) are marked by " ...". */
  bool left_out = more || no_head;
  for (; i < npairs && !left_out; i++)
    left_out = kv[2 * i + 1] != NULL;
  /* The room kept past end: for that marker, then "\n". */
  l.end = size - 1;
  if (left_out)
    put(&l, " ...", 4);
  put(&l, "\n", 1);
  buf[l.len] = '\0';
  return l.len;
}

void jw_log(jw_log_level_t level, ...) {
  const char *kv[2 * JW_LOG_PAIRS_MAX];
  char line[JW_LOG_LINE_MAX + 1];
  struct timespec ts;
  size_t n = 0;
  bool more = false;
  va_list ap;

  if (level < min_level)
    return;
  va_start(ap, level);
  const char *key;
  while ((key = va_arg(ap, const char *)) != NULL) {
    const char *value = va_arg(ap, const char *);
    if (n == JW_LOG_PAIRS_MAX) {
      more = true;
      break;
    }
    kv[2 * n] = key;
    kv[2 * n + 1] = value;
    n++;
  }
  va_end(ap);
  clock_gettime(CLOCK_REALTIME, &ts);
  size_t len = jw__log_format(line, sizeof(line), &ts, level, kv, n, more);
  fwrite(line, 1, len, stderr);
}
