/*
 * A strict reader of the "key = value" files teleportd (--config) and the
 * teleport CLI (~/.config/teleport/config) read: one entry a line, "#"
 * comments on lines of their own, blank lines, and "[SECTION]" headers
 * (the CLI's contexts). The whole file is read into the caller's storage
 * and split in place, so entries live as long as that storage does.
 */
#ifndef JW_COMMON_CONFFILE_H
#define JW_COMMON_CONFFILE_H

#include <stddef.h>

/* The largest file read: far above any real configuration. */
#define JW_CONFFILE_MAX_BYTES (64 * 1024)

typedef struct {
  char text[JW_CONFFILE_MAX_BYTES + 1];
  size_t len;
  size_t pos;          /* where the next line starts */
  unsigned line;       /* the line last returned */
  const char *section; /* the last "[...]" header's text, or NULL */
} jw_conffile_t;

typedef struct {
  const char *section; /* NULL before the first header */
  const char *key;
  const char *value;
  unsigned line;
} jw_conffile_entry_t;

/*
 * Reads the regular file at path into f. Returns 0; -errno when it cannot
 * be opened or read; -EISDIR or -EINVAL when it is a directory or not a
 * regular file; -EFBIG when it is over JW_CONFFILE_MAX_BYTES; -EPERM when
 * anyone may write it (its settings could then come from any local user).
 */
int jw__conffile_load(jw_conffile_t *f, const char *path);

/*
 * Returns the next entry in *e: 1, 0 at the end of the file, or -EINVAL
 * for a malformed line (e->line says which, *why what is wrong).
 */
int jw__conffile_next(jw_conffile_t *f, jw_conffile_entry_t *e,
                      const char **why);

/*
 * The Levenshtein distance of a and b, capped at 255 (for "did you mean"
 * suggestions; strings longer than 63 bytes count as 255 away).
 */
unsigned jw__conffile_distance(const char *a, const char *b);

#endif /* JW_COMMON_CONFFILE_H */
