/*
 * The one growth policy for buffers that input can grow (curl's dynbuf
 * rule: every buffer has a cap). A buffer starts at a minimum, doubles,
 * and never passes its cap: what would need more than the cap is refused,
 * so the caller turns it into an error rather than an allocation the peer
 * chose.
 */
#ifndef JW_COMMON_BUF_H
#define JW_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * The capacity a buffer of capacity cap should grow to so that it holds
 * need bytes: at least min (when cap is 0), doubled until it fits, and
 * clamped to max. Returns cap itself when it already fits, 0 when need is
 * over max.
 */
size_t jw__buf_grow_cap(size_t cap, size_t need, size_t min, size_t max);

/* A growable byte buffer under the policy above. */
typedef struct {
  uint8_t *base;
  size_t len;
  size_t cap;
} jw__buf_t;

/*
 * Makes room for more bytes past len, growing under the policy (min, max).
 * Returns 0, JW_ELIMIT when len + more is over max, or -ENOMEM.
 */
int jw__buf_reserve(jw__buf_t *b, size_t more, size_t min, size_t max);

/* Frees the storage and empties the buffer. */
void jw__buf_free(jw__buf_t *b);

#endif /* JW_COMMON_BUF_H */
