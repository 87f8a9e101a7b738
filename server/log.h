/*
 * teleportd's log: one logfmt line per event on stderr, e.g.
 *   ts=2026-11-28T17:00:00.123Z level=info event=rpc cn=alice ...
 *
 * Values come from clients (a certificate's CN, a request path, ids and
 * messages quoting a request), so the line has fixed bounds: a value is
 * cut after JW_LOG_VALUE_MAX bytes and a line after JW_LOG_LINE_MAX, each
 * cut marked by "...".
 */
#ifndef TELEPORTD_LOG_H
#define TELEPORTD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "flags.h"

/* The longest line, its newline included. */
#define JW_LOG_LINE_MAX 2048
/* The most bytes of one value written; a longer one ends with "...". */
#define JW_LOG_VALUE_MAX 256
/* The most key/value pairs of one line; further ones are left out. */
#define JW_LOG_PAIRS_MAX 32

/* Lines below this level are dropped. */
void jw_log_set_level(jw_log_level_t level);

/* Whether lines of this level are written (to skip formatting them). */
int jw_log_enabled(jw_log_level_t level);

/*
 * Writes one line: ts, level, then the key/value pairs given as a
 * NULL-terminated list of alternating keys and values. Values that need it
 * are quoted and escaped (control characters and bytes that are not UTF-8
 * as \xHH); a NULL value skips its pair. A value is cut at
 * JW_LOG_VALUE_MAX bytes, between characters, and ends with "..."; pairs
 * that do not fit in JW_LOG_LINE_MAX bytes are left out and the line ends
 * with " ...".
 */
void jw_log(jw_log_level_t level, ...);

/*
 * The formatter behind jw_log, for tests: writes the line for ts, level
 * and the npairs pairs in kv (key, value, key, value, ...; a NULL value
 * skips its pair; more: there were further pairs, left out) into buf, its
 * newline included and NUL-terminated, never past buf[size - 1]: room for
 * " ..." is always kept, so a line is cut once it is longer than size - 6
 * bytes before its newline. Returns its length (at most size - 1); 0 with
 * buf too small for even a marker and a newline (size < 6).
 */
size_t jw__log_format(char *buf, size_t size, const struct timespec *ts,
                      jw_log_level_t level, const char *const *kv,
                      size_t npairs, bool more);

#endif /* TELEPORTD_LOG_H */
