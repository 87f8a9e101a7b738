/*
 * Fuzz target: teleportd's log formatter (server/log.h, jw__log_format),
 * whose values come from clients (a certificate's CN, a request path, ids
 * and messages quoting a request).
 *
 * Input: level (1 byte), buffer size (2 bytes, big-endian; 0 is jw_log's
 * own JW_LOG_LINE_MAX + 1), tv_sec (8 bytes), tv_nsec (4 bytes), then up
 * to JW_LOG_PAIRS_MAX + 1 pairs, each a key index (1 byte) and a value up
 * to a 0 byte (a value of the single byte 0xff is NULL). Oracles:
 *  - the buffer is allocated to its exact size, so ASan sees any write
 *    past it; the line is NUL-terminated inside it and at most size - 1;
 *  - a line is one line of printable UTF-8 text ending in its newline;
 *  - it parses back as logfmt: ts, level, then the non-NULL pairs in
 *    order, each value whole or a marked ("...") prefix of at most
 *    JW_LOG_VALUE_MAX bytes; pairs left out are marked by " ...";
 *  - in a buffer large enough for any line, a value is cut exactly when
 *    it is longer than JW_LOG_VALUE_MAX bytes, by at most one character
 *    (a cut value that ended in "..." just past what was kept reads back
 *    whole: the marker stands for those same bytes);
 *    a smaller buffer gets that same line, or a marked prefix of it.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "fuzz.h"
#include "log.h"

#define HEAD 15
#define BIG 65536 /* over JW_LOG_PAIRS_MAX whole pairs of the longest value */

static const char *const keys[] = {"event", "peer",
                                   "cn",    "method",
                                   "job",   "status",
                                   "error", "duration",
                                   "msg",   "signal",
                                   "addr",  "count",
                                   "dir",   "max_output_bytes"};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

/*
 * Checks the line s (n bytes, newline included) against the pairs given:
 * returns how many pairs it holds and sets *end_cut when it ends with
 * " ..."; *whole[i] tells whether pair i's value was written whole.
 */
static size_t check_line(const char *s, size_t n, const char *const *kv,
                         size_t npairs, bool *end_cut, bool *whole, char *val) {
  const char *end = s + n - 1;
  FUZZ_CHECK(n >= 1 && *end == '\n');
  for (const char *c = s; c < end; c++)
    FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
  FUZZ_CHECK(test_utf8_valid((const unsigned char *)s, (size_t)(end - s)));
  *end_cut = n >= 5 && memcmp(end - 4, " ...", 4) == 0;
  if (*end_cut)
    end -= 4;
  if (s == end)
    return 0; /* not even the header fitted */
  FUZZ_CHECK(strncmp(s, "ts=", 3) == 0);
  const char *sp = memchr(s, ' ', (size_t)(end - s));
  FUZZ_CHECK(sp != NULL && end - sp > 7 && memcmp(sp, " level=", 7) == 0);
  s = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
  if (s == NULL)
    s = end;
  size_t got = 0, i = 0;
  while (s < end) {
    FUZZ_CHECK(*s == ' ');
    s++;
    while (i < npairs && kv[2 * i + 1] == NULL)
      i++;
    FUZZ_CHECK(i < npairs);
    const char *key = kv[2 * i], *want = kv[2 * i + 1];
    size_t kl = strlen(key), vl = 0;
    FUZZ_CHECK((size_t)(end - s) > kl && memcmp(s, key, kl) == 0 &&
               s[kl] == '=');
    s += kl + 1;
    if (s < end && *s == '"') {
      for (s++;; s++) {
        FUZZ_CHECK(s < end);
        if (*s == '"')
          break;
        if (*s != '\\') {
          val[vl++] = *s;
          continue;
        }
        FUZZ_CHECK(++s < end);
        if (*s == 'x') {
          FUZZ_CHECK(end - s >= 3);
          int hi = test_hexval(s[1]), lo = test_hexval(s[2]);
          FUZZ_CHECK(hi >= 0 && lo >= 0);
          val[vl++] = (char)(hi * 16 + lo);
          s += 2;
        } else {
          FUZZ_CHECK(*s == 'n' || *s == '"' || *s == '\\');
          val[vl++] = *s == 'n' ? '\n' : *s;
        }
      }
      s++;
    } else {
      while (s < end && *s != ' ') {
        FUZZ_CHECK(*s != '"' && *s != '\\' && *s != '=');
        val[vl++] = *s++;
      }
      FUZZ_CHECK(vl > 0);
    }
    size_t wl = strlen(want);
    whole[i] = vl == wl && memcmp(val, want, wl) == 0;
    if (!whole[i]) {
      FUZZ_CHECK(vl >= 3 && memcmp(val + vl - 3, "...", 3) == 0);
      FUZZ_CHECK(vl - 3 < wl && vl - 3 <= JW_LOG_VALUE_MAX);
      FUZZ_CHECK(memcmp(val, want, vl - 3) == 0);
    }
    got++;
    i++;
  }
  /* Every non-NULL pair is there unless the line says some are not. */
  size_t given = 0;
  for (size_t k = 0; k < npairs; k++)
    given += kv[2 * k + 1] != NULL;
  FUZZ_CHECK(got == given || *end_cut);
  return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < HEAD)
    return 0;
  jw_log_level_t level = (jw_log_level_t)(data[0] % 5);
  size_t bsize = (size_t)data[1] << 8 | data[2];
  if (bsize == 0)
    bsize = JW_LOG_LINE_MAX + 1;
  struct timespec ts = {0};
  uint64_t sec = 0;
  for (int i = 0; i < 8; i++)
    sec = sec << 8 | data[3 + i];
  ts.tv_sec = (time_t)sec;
  ts.tv_nsec = (long)(((uint32_t)data[11] << 24 | (uint32_t)data[12] << 16 |
                       (uint32_t)data[13] << 8 | data[14]) %
                      1000000000u);

  /* The pairs, each value a string of its own (exact size for ASan). */
  const char *kv[2 * (JW_LOG_PAIRS_MAX + 1)];
  char *owned[JW_LOG_PAIRS_MAX + 1];
  size_t npairs = 0;
  size_t p = HEAD;
  while (p < size && npairs <= JW_LOG_PAIRS_MAX) {
    const char *key = keys[data[p++] % NKEYS];
    const uint8_t *v = data + p;
    const uint8_t *z = memchr(v, 0, size - p);
    size_t vl = z != NULL ? (size_t)(z - v) : size - p;
    p += vl + (z != NULL);
    owned[npairs] = malloc(vl + 1);
    FUZZ_CHECK(owned[npairs] != NULL);
    memcpy(owned[npairs], v, vl);
    owned[npairs][vl] = '\0';
    kv[2 * npairs] = key;
    kv[2 * npairs + 1] = vl == 1 && v[0] == 0xff ? NULL : owned[npairs];
    npairs++;
  }
  bool more = npairs > JW_LOG_PAIRS_MAX;
  size_t n = more ? JW_LOG_PAIRS_MAX : npairs;

  char *val = malloc(BIG);
  bool *whole = calloc(JW_LOG_PAIRS_MAX, sizeof(bool));
  bool end_cut;
  FUZZ_CHECK(val != NULL && whole != NULL);

  /* A buffer large enough for any line: nothing is cut but at the cap. */
  char *big = malloc(BIG);
  FUZZ_CHECK(big != NULL);
  size_t blen = jw__log_format(big, BIG, &ts, level, kv, n, more);
  FUZZ_CHECK(blen < BIG && big[blen] == '\0' && strlen(big) == blen);
  size_t given = 0;
  for (size_t i = 0; i < n; i++)
    given += kv[2 * i + 1] != NULL;
  FUZZ_CHECK(check_line(big, blen, kv, n, &end_cut, whole, val) == given);
  FUZZ_CHECK(end_cut == more);
  for (size_t i = 0; i < n; i++) {
    if (kv[2 * i + 1] == NULL)
      continue;
    const char *want = kv[2 * i + 1];
    size_t wl = strlen(want);
    /*
     * A value over the cap that ends in "..." right after what a cut
     * keeps reads back as itself: the cut's marker stands for the same
     * three bytes.
     */
    bool same_as_cut = wl > JW_LOG_VALUE_MAX && wl - 3 <= JW_LOG_VALUE_MAX &&
                       memcmp(want + wl - 3, "...", 3) == 0;
    FUZZ_CHECK(whole[i] ? wl <= JW_LOG_VALUE_MAX || same_as_cut
                        : wl > JW_LOG_VALUE_MAX);
  }

  /* The buffer the input asks for, to its exact size. */
  char *buf = malloc(bsize);
  FUZZ_CHECK(buf != NULL);
  memset(whole, 0, JW_LOG_PAIRS_MAX * sizeof(bool));
  size_t len = jw__log_format(buf, bsize, &ts, level, kv, n, more);
  if (bsize < 6) {
    FUZZ_CHECK(len == 0);
  } else {
    FUZZ_CHECK(len < bsize && buf[len] == '\0' && strlen(buf) == len);
    check_line(buf, len, kv, n, &end_cut, whole, val);
    if (blen + 5 <= bsize) {
      FUZZ_CHECK(len == blen && memcmp(buf, big, len) == 0);
    } else {
      /* A prefix of the whole line, then its cut marked. */
      bool marked;
      size_t k = test_log_uncut_len(buf, len, &marked);
      FUZZ_CHECK(marked && k <= blen && memcmp(buf, big, k) == 0);
    }
  }
  free(buf);
  free(big);
  free(whole);
  free(val);
  for (size_t i = 0; i < npairs; i++)
    free(owned[i]);
  return 0;
}
