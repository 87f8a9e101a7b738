/*
 * The units of the flags and the CLI (docs/isolation.md): sizes, CPU
 * amounts and durations, one exact decimal grammar for all three.
 */
#include "jobworker/units.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/*
 * The sizes and CPU amounts of docs/isolation.md, parsed exactly: digits,
 * optionally a point and more digits, then the unit. No sign, space, hex,
 * exponent, nan or inf (strtod took all of those, so "--max-memory nan"
 * lifted the maximum), and a value past its maximum is refused rather
 * than wrapped or rounded.
 */
typedef struct {
  const char *digits; /* the whole part */
  size_t ndigits;
  const char *frac; /* the digits after the point */
  size_t nfrac;
} decimal_t;

/* Scans a decimal at s; returns the first byte after it, or NULL. */
static const char *scan_decimal(const char *s, decimal_t *d) {
  d->digits = s;
  d->ndigits = strspn(s, "0123456789");
  d->frac = NULL;
  d->nfrac = 0;
  if (d->ndigits == 0)
    return NULL;
  s += d->ndigits;
  if (*s != '.')
    return s;
  d->frac = s + 1;
  d->nfrac = strspn(d->frac, "0123456789");
  if (d->nfrac == 0)
    return NULL;
  return d->frac + d->nfrac;
}

/*
 * The decimal d times scale (at most 2^41), its fraction rounded down, or
 * to the nearest with nearest; -EINVAL when that is over max.
 */
static int decimal_value(const decimal_t *d, uint64_t scale, bool nearest,
                         uint64_t max, int64_t *out) {
  uint64_t whole = 0;
  for (size_t i = 0; i < d->ndigits; i++) {
    uint64_t digit = (uint64_t)(d->digits[i] - '0');
    if (whole > (max - digit) / 10)
      return -EINVAL;
    whole = whole * 10 + digit;
  }
  if (whole > max / scale)
    return -EINVAL;
  /*
   * floor(0.f1f2...fn * s) digit by digit from the last: with y < s,
   * floor((f + y / 10^k) * s / 10) needs only integers, and any number of
   * digits gives the exact result.
   */
  uint64_t s2 = nearest ? 2 * scale : scale, y = 0;
  for (size_t i = d->nfrac; i > 0; i--)
    y = ((uint64_t)(d->frac[i - 1] - '0') * s2 + y) / 10;
  uint64_t part = nearest ? (y + 1) / 2 : y;
  uint64_t v = whole * scale + part;
  if (v > max)
    return -EINVAL;
  *out = (int64_t)v;
  return 0;
}

/* The size units, lower and upper case of each, in increasing order. */
static const char units[] = "kKmMgGtT";

int jw_parse_size(const char *s, int64_t *out) {
  decimal_t d;
  const char *end;
  uint64_t mult = 1;

  if (s == NULL || out == NULL || (end = scan_decimal(s, &d)) == NULL)
    return -EINVAL;
  /* k, m, g, t in either case: each unit 2^10 times the one before. */
  const char *u = *end != '\0' ? strchr(units, *end) : NULL;
  if (u != NULL) {
    mult = 1ull << (10 * ((u - units) / 2 + 1));
    end++;
  }
  /* "B" after a number of bytes, "B" or "iB" after a unit. */
  if (strcmp(end, "B") == 0 || (mult > 1 && strcmp(end, "iB") == 0))
    end += strlen(end);
  /* A number of bytes is whole: "1.5" alone is not a size. */
  if (*end != '\0' || (mult == 1 && d.nfrac > 0))
    return -EINVAL;
  return decimal_value(&d, mult, false, INT64_MAX, out);
}

int jw_parse_cpus(const char *s, int64_t *out) {
  decimal_t d;
  const char *end;

  if (s == NULL || out == NULL || (end = scan_decimal(s, &d)) == NULL)
    return -EINVAL;
  /* Thousandths ("250m") or CPUs ("0.5"), rounded to a thousandth; the
   * number itself is at most a million either way. */
  if (strcmp(end, "m") == 0)
    return decimal_value(&d, 1, true, 1000000, out);
  if (*end != '\0')
    return -EINVAL;
  return decimal_value(&d, 1000, true, 1000000000, out);
}

int jw_parse_duration(const char *s, uint64_t *ms) {
  decimal_t d;
  const char *end;
  uint64_t mult;
  int64_t v;

  if (s == NULL || ms == NULL || (end = scan_decimal(s, &d)) == NULL)
    return -EINVAL;
  if (*end == '\0' || strcmp(end, "s") == 0)
    mult = 1000;
  else if (strcmp(end, "ms") == 0)
    mult = 1;
  else if (strcmp(end, "m") == 0)
    mult = 60000;
  else if (strcmp(end, "h") == 0)
    mult = 3600000;
  else
    return -EINVAL;
  /* A fraction of a millisecond is rounded down; a year at the most. */
  if (decimal_value(&d, mult, false, JW_DURATION_MAX_MS, &v) != 0)
    return -EINVAL;
  *ms = (uint64_t)v;
  return 0;
}
