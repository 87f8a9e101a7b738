/*
 * Unit tests for teleportd's log (server/log.c): every line is one logfmt
 * line of at most JW_LOG_LINE_MAX bytes whatever the values, each value is
 * cut at JW_LOG_VALUE_MAX bytes with an explicit "...", and what is written
 * parses back to the values given (or to a marked prefix of them).
 *
 * The values of an rpc line come from the client (its certificate's CN,
 * the request path, a job id it sent, messages quoting its request), so
 * the table tests walk every length across the line's and the cap's edges
 * for each field, under ASan in `make test`.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test_common.h"
#include "log.h"

#define NFIELDS 8

/*
 * Check's ck_assert records every passing assertion (a write to the
 * parent each time); these loops make hundreds of thousands of checks, so
 * they only call into Check on a failure.
 */
#define CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond))                                                               \
      ck_abort_msg(__VA_ARGS__);                                               \
  } while (0)
#define CHECK(cond) CHECK_MSG(cond, "Assertion '%s' failed", #cond)
#define CHECK_STR_EQ(a, b)                                                     \
  CHECK_MSG(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))

/* The pairs of the rpc line, as server/main.c's on_event writes them. */
static const char *const rpc_keys[NFIELDS] = {
    "event", "peer", "cn", "method", "job", "status", "duration", "error"};
static const char *const rpc_vals[NFIELDS] = {
    "rpc",  "127.0.0.1:54321", "alice",   "NoSuchMethod",
    "6f1c", "UNIMPLEMENTED",   "0.123ms", "unknown method"};

/* Everything jw_log wrote to stderr during one call. */
typedef struct {
  char buf[3 * JW_LOG_LINE_MAX];
  size_t len;
} out_t;

static FILE *capture;
static FILE *real_stderr;

/*
 * jw_log writes to stderr: the tests point glibc's stderr at a temporary
 * file (fd 2 stays as it is, so a sanitizer's report is still seen).
 */
/* Empties the capture file before a call. */
static void capture_reset(void) {
  fflush(capture);
  CHECK((ftruncate(fileno(capture), 0)) == (0));
  CHECK((lseek(fileno(capture), 0, SEEK_SET)) == (0));
}

static void capture_read(out_t *o) {
  fflush(capture);
  ssize_t n = pread(fileno(capture), o->buf, sizeof(o->buf) - 1, 0);
  CHECK((n) >= (0));
  o->len = (size_t)n;
  o->buf[o->len] = '\0';
}

/* Logs the rpc line with v as its values. */
static void log_rpc(const char *const *v, out_t *o) {
  capture_reset();
  jw_log(JW_LOG_INFO, rpc_keys[0], v[0], rpc_keys[1], v[1], rpc_keys[2], v[2],
         rpc_keys[3], v[3], rpc_keys[4], v[4], rpc_keys[5], v[5], rpc_keys[6],
         v[6], rpc_keys[7], v[7], NULL);
  capture_read(o);
}

/* One key=value of a parsed line; value unescaped, NUL-free by design. */
typedef struct {
  char key[32];
  char val[4 * JW_LOG_LINE_MAX];
  size_t vlen;
} pair_t;

typedef struct {
  pair_t pairs[NFIELDS + 2];
  size_t n;
  bool cut; /* the line ends with " ...": pairs were left out */
} parsed_t;

/* The line and its parse, for the tests that check lines (fixture). */
static out_t *fx_out;
static parsed_t *fx_parsed;

static void setup(void) {
  fx_out = malloc(sizeof(*fx_out));
  fx_parsed = malloc(sizeof(*fx_parsed));
  CHECK(fx_out != NULL && fx_parsed != NULL);
  capture = tmpfile();
  CHECK((capture) != NULL);
  real_stderr = stderr;
  stderr = capture;
  jw_log_set_level(JW_LOG_DEBUG);
}

static void teardown(void) {
  stderr = real_stderr;
  fclose(capture);
  free(fx_parsed);
  free(fx_out);
}

static char parse_error[200];

#define PCHECK_MSG(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      snprintf(parse_error, sizeof(parse_error), __VA_ARGS__);                 \
      return false;                                                            \
    }                                                                          \
  } while (0)
#define PCHECK(cond) PCHECK_MSG(cond, "line %d: %s", __LINE__, #cond)

/*
 * Parses one logfmt line as a reader of the log would. Returns false, with
 * why in parse_error, on anything a reader could not parse: a control
 * character, a bad escape, an unterminated quote, a second line.
 */
static bool parse_line(const out_t *o, parsed_t *p) {
  const char *s = o->buf, *end = o->buf + o->len;
  memset(p, 0, sizeof(*p));
  PCHECK_MSG(o->len >= 2 && end[-1] == '\n', "not one line: %zu bytes", o->len);
  PCHECK_MSG(o->len <= JW_LOG_LINE_MAX, "line of %zu bytes", o->len);
  end--; /* the newline */
  for (const char *c = s; c < end; c++)
    PCHECK_MSG(*c != '\n' && (unsigned char)*c >= 0x20 && *c != 0x7f,
               "control byte 0x%02x at %td", (unsigned char)*c, c - s);
  PCHECK_MSG(test_utf8_valid((const unsigned char *)s, (size_t)(end - s)),
             "not UTF-8: %.120s", s);
  PCHECK(strncmp(s, "ts=", 3) == 0);
  const char *lv = strstr(s, " level=");
  PCHECK((lv) != NULL);
  s = strchr(lv + 1, ' ');
  if (s == NULL || s > end)
    s = end;
  while (s < end) {
    PCHECK(*s == ' ');
    s++;
    if (end - s == 3 && memcmp(s, "...", 3) == 0) {
      p->cut = true;
      break;
    }
    PCHECK((p->n) < (NFIELDS + 2));
    pair_t *q = &p->pairs[p->n++];
    const char *eq = memchr(s, '=', (size_t)(end - s));
    PCHECK((eq) != NULL);
    PCHECK(((size_t)(eq - s)) < (sizeof(q->key)));
    memcpy(q->key, s, (size_t)(eq - s));
    s = eq + 1;
    if (s < end && *s == '"') {
      for (s++;; s++) {
        PCHECK_MSG(s < end, "unterminated quote");
        if (*s == '"')
          break;
        if (*s != '\\') {
          q->val[q->vlen++] = *s;
          continue;
        }
        PCHECK(++s < end);
        if (*s == 'n') {
          q->val[q->vlen++] = '\n';
        } else if (*s == 'x') {
          PCHECK(end - s >= 3);
          int hi = test_hexval(s[1]), lo = test_hexval(s[2]);
          PCHECK(hi >= 0 && lo >= 0);
          q->val[q->vlen++] = (char)(hi * 16 + lo);
          s += 2;
        } else {
          PCHECK_MSG(*s == '"' || *s == '\\', "bad escape \\%c", *s);
          q->val[q->vlen++] = *s;
        }
      }
      s++;
    } else {
      while (s < end && *s != ' ') {
        PCHECK(*s != '"' && *s != '=' && *s != '\\');
        q->val[q->vlen++] = *s++;
      }
      PCHECK_MSG(q->vlen > 0, "empty unquoted value for %s", q->key);
    }
    PCHECK((q->vlen) < (sizeof(q->val)));
  }
  return true;
}

/* Logs the rpc line of v into o and parses it into p, which must work. */
static void log_and_parse(const char *const *v, out_t *o, parsed_t *p) {
  log_rpc(v, o);
  CHECK_MSG(parse_line(o, p), "%s", parse_error);
}

/*
 * Whether got is what a log reader may see of want: all of it, or a prefix
 * of at most JW_LOG_VALUE_MAX bytes followed by "...". Sets *was_cut.
 */
static bool value_ok(const pair_t *got, const char *want, bool *was_cut) {
  size_t wl = strlen(want);
  *was_cut = false;
  if (got->vlen == wl && memcmp(got->val, want, wl) == 0)
    return true;
  if (got->vlen < 3 || memcmp(got->val + got->vlen - 3, "...", 3) != 0)
    return false;
  size_t pl = got->vlen - 3;
  *was_cut = true;
  return pl < wl && pl <= JW_LOG_VALUE_MAX && memcmp(got->val, want, pl) == 0;
}

static char *repeat(const char *unit, size_t n) {
  size_t ul = strlen(unit);
  char *s = malloc(ul * n + 1);
  CHECK((s) != NULL);
  for (size_t i = 0; i < n; i++)
    memcpy(s + i * ul, unit, ul);
  s[ul * n] = '\0';
  return s;
}

/* Value shapes: plain, needing quotes, escaped to four bytes a byte. */
static const char *const shapes[] = {"a", "b c", "\x01"};

/*
 * Every field of the rpc line at every length from 1800 to 2200 bytes
 * (across the 2048-byte line), in each shape: one line, every other pair
 * intact, the long value cut at exactly JW_LOG_VALUE_MAX bytes with "...".
 */
START_TEST(test_every_field_every_length) {
  out_t *o = fx_out;
  parsed_t *p = fx_parsed;
  /* The first wrong value; the walk goes on to the end regardless. */
  char wrong[256] = "";
  for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
    for (size_t f = 0; f < NFIELDS; f++) {
      for (size_t len = 1800; len <= 2200; len++) {
        const char *v[NFIELDS];
        char *big = repeat(shapes[s], len);
        big[len] = '\0'; /* len bytes, whatever the shape's length */
        memcpy(v, rpc_vals, sizeof(v));
        v[f] = big;
        log_rpc(v, o);
        parse_error[0] = '\0';
        bool good = parse_line(o, p) && p->n == NFIELDS && !p->cut &&
                    p->pairs[f].vlen == JW_LOG_VALUE_MAX + 3;
        for (size_t i = 0; i < p->n && good; i++) {
          bool cut;
          good = strcmp(p->pairs[i].key, rpc_keys[i]) == 0 &&
                 value_ok(&p->pairs[i], v[i], &cut) && cut == (i == f);
        }
        if (!good && wrong[0] == '\0')
          snprintf(wrong, sizeof(wrong),
                   "field %s, %zu bytes of shape %zu: %.100s %zu pairs%s",
                   rpc_keys[f], len, s, parse_error, p->n,
                   p->cut ? " and a cut" : "");
        free(big);
      }
    }
  }
  CHECK_MSG(wrong[0] == '\0', "%s", wrong);
}
END_TEST

/* Around the cap: up to JW_LOG_VALUE_MAX bytes whole, one more is cut. */
START_TEST(test_value_cap_edge) {
  out_t *o = fx_out;
  parsed_t *p = fx_parsed;
  for (size_t f = 0; f < NFIELDS; f++) {
    for (size_t len = JW_LOG_VALUE_MAX - 8; len <= JW_LOG_VALUE_MAX + 8;
         len++) {
      const char *v[NFIELDS];
      char *val = repeat("x", len);
      memcpy(v, rpc_vals, sizeof(v));
      v[f] = val;
      log_and_parse(v, o, p);
      CHECK((p->n) == (NFIELDS));
      bool cut;
      CHECK(value_ok(&p->pairs[f], val, &cut));
      CHECK_MSG(cut == (len > JW_LOG_VALUE_MAX), "len %zu", len);
      free(val);
    }
  }
}
END_TEST

/*
 * Values that escape to four times their size in several fields, behind a
 * first field of every length from 0 to 1100: whatever byte of the line
 * the edge falls on, the line is one line of at most JW_LOG_LINE_MAX
 * bytes, each value present is whole or a marked prefix, and pairs left
 * out are marked by a final "...".
 */
START_TEST(test_line_edge_every_offset) {
  out_t *o = fx_out;
  parsed_t *p = fx_parsed;
  char *esc = repeat("\x01", 4000);
  for (size_t len = 0; len <= 1100; len++) {
    const char *v[NFIELDS];
    char *first = repeat("e", len);
    memcpy(v, rpc_vals, sizeof(v));
    v[0] = first;
    v[2] = esc;
    v[3] = esc;
    v[7] = esc;
    log_and_parse(v, o, p);
    /* The escaped values alone are over the line: it is full and cut. */
    CHECK((o->len) >= (JW_LOG_LINE_MAX - 8));
    CHECK(p->n >= 3 && p->n < NFIELDS && p->cut);
    for (size_t i = 0; i < p->n; i++) {
      bool cut;
      CHECK_STR_EQ(p->pairs[i].key, rpc_keys[i]);
      CHECK_MSG(value_ok(&p->pairs[i], v[i], &cut), "len %zu field %s", len,
                rpc_keys[i]);
    }
    free(first);
  }
  free(esc);
}
END_TEST

/*
 * The formatter into buffers of every size from 0 to 400 bytes, each
 * allocated to its exact size so that ASan sees a write past it: the line
 * is NUL-terminated inside the buffer, ends with its newline, and is the
 * line a large buffer gets or, in one shorter than that line and the room
 * for " ..." after it, a prefix of it with its cut marked.
 */
START_TEST(test_format_every_buffer_size) {
  static const struct timespec ts = {.tv_sec = 1764633600, .tv_nsec = 5e8};
  const char *kv[2 * NFIELDS];
  char full[JW_LOG_LINE_MAX + 1];
  for (size_t i = 0; i < NFIELDS; i++) {
    kv[2 * i] = rpc_keys[i];
    kv[2 * i + 1] = rpc_vals[i];
  }
  size_t flen =
      jw__log_format(full, sizeof(full), &ts, JW_LOG_WARN, kv, NFIELDS, false);
  CHECK_STR_EQ(full, "ts=2025-12-02T00:00:00.500Z level=warn event=rpc "
                     "peer=127.0.0.1:54321 cn=alice method=NoSuchMethod "
                     "job=6f1c status=UNIMPLEMENTED duration=0.123ms "
                     "error=\"unknown method\"\n");
  for (size_t size = 0; size <= 400; size++) {
    char *buf = malloc(size > 0 ? size : 1);
    CHECK((buf) != NULL);
    size_t n = jw__log_format(size > 0 ? buf : NULL, size, &ts, JW_LOG_WARN, kv,
                              NFIELDS, false);
    if (size < 6) {
      CHECK((n) == (0));
    } else {
      CHECK((n) < (size));
      CHECK((strlen(buf)) == (n));
      CHECK(n >= 1 && buf[n - 1] == '\n');
      if (size > flen + 4) {
        CHECK_STR_EQ(buf, full);
      } else {
        /*
         * Cut: a prefix of the whole line, then "..." (a value cut, its
         * quote closed) or " ..." (pairs left out), then the newline.
         */
        bool marked;
        size_t k = test_log_uncut_len(buf, n, &marked);
        CHECK_MSG(marked && memcmp(buf, full, k) == 0, "size %zu: %s", size,
                  buf);
      }
    }
    free(buf);
  }
}
END_TEST

/* Quoting and escaping: every value reads back byte-exact. */
START_TEST(test_quoting_round_trip) {
  static const char *const vals[] = {"plain",
                                     "",
                                     "two words",
                                     "a=b",
                                     "say \"hi\"",
                                     "back\\slash",
                                     "line\nbreak",
                                     "tab\there",
                                     "\x1b[31mred",
                                     "del\x7f",
                                     "h\xc3\xa9llo",
                                     "\xe2\x82\xac 5",
                                     "bad \xff\xfe utf-8",
                                     "cut \xe2\x82",
                                     "\xc0\xaf",
                                     "\xed\xa0\x80 surrogate",
                                     "\xf4\x90\x80\x80 too big",
                                     "..."};
  out_t *o = fx_out;
  parsed_t *p = fx_parsed;
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    const char *v[NFIELDS];
    memcpy(v, rpc_vals, sizeof(v));
    v[2] = vals[i];
    log_and_parse(v, o, p);
    CHECK((p->n) == (NFIELDS));
    CHECK((p->pairs[2].vlen) == (strlen(vals[i])));
    CHECK_MSG(memcmp(p->pairs[2].val, vals[i], p->pairs[2].vlen) == 0,
              "value %zu: %s", i, o->buf);
  }
}
END_TEST

/* Valid UTF-8 stays readable, and a cut never splits a character. */
START_TEST(test_utf8_kept_and_not_split) {
  out_t *o = fx_out;
  parsed_t *p = fx_parsed;
  const char *v[NFIELDS];
  char *euros = repeat("\xe2\x82\xac", 200); /* 3 bytes each */
  memcpy(v, rpc_vals, sizeof(v));
  v[2] = euros;
  log_and_parse(v, o, p);
  CHECK((strstr(o->buf, " cn=\xe2\x82\xac\xe2\x82\xac")) != NULL);
  bool cut;
  CHECK(value_ok(&p->pairs[2], euros, &cut) && cut);
  CHECK((p->pairs[2].vlen - 3) == (JW_LOG_VALUE_MAX / 3 * 3));
  free(euros);
}
END_TEST

/* A NULL value skips its pair; lines below the level are not written. */
START_TEST(test_null_values_and_level) {
  out_t *o = malloc(sizeof(*o));
  CHECK((o) != NULL);
  capture_reset();
  jw_log(JW_LOG_WARN, "event", "x", "gone", NULL, "kept", "1", NULL);
  capture_read(o);
  CHECK((strstr(o->buf, " level=warn event=x kept=1\n")) != NULL);
  CHECK((strstr(o->buf, "gone")) == NULL);
  jw_log_set_level(JW_LOG_ERROR);
  capture_reset();
  jw_log(JW_LOG_WARN, "event", "x", NULL);
  capture_read(o);
  CHECK((o->len) == (0));
  CHECK(!jw_log_enabled(JW_LOG_WARN) && jw_log_enabled(JW_LOG_ERROR));
  free(o);
}
END_TEST

static Suite *log_suite(void) {
  Suite *s = suite_create("log");
  TCase *tc = test_tcase(s, "core", setup, teardown, 120);
  const TTest *const tc_tests[] = {
      test_every_field_every_length, test_value_cap_edge,
      test_line_edge_every_offset,   test_format_every_buffer_size,
      test_quoting_round_trip,       test_utf8_kept_and_not_split,
      test_null_values_and_level,    NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(log_suite()); }
