/*
 * teleportd's log: one logfmt line per event on stderr, e.g.
 *   ts=2026-11-28T17:00:00.123Z level=info event=rpc cn=alice ...
 */
#ifndef TELEPORTD_LOG_H
#define TELEPORTD_LOG_H

#include "flags.h"

/* Lines below this level are dropped. */
void jw_log_set_level(jw_log_level_t level);

/* Whether lines of this level are written (to skip formatting them). */
int jw_log_enabled(jw_log_level_t level);

/*
 * Writes one line: ts, level, then the key/value pairs given as a
 * NULL-terminated list of alternating keys and values. Values that need it
 * are quoted; a NULL value skips its pair.
 */
void jw_log(jw_log_level_t level, ...);

#endif /* TELEPORTD_LOG_H */
