/*
 * Inflating a gzip-compressed gRPC request message (grpc-encoding: gzip)
 * into a buffer that never passes a cap: the size limit of a request
 * applies to what the message inflates to, so a small bomb costs at most
 * the cap, never what its author chose.
 */
#ifndef JW_RPC_GZIP_INT_H
#define JW_RPC_GZIP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "buf.h"

typedef struct {
  z_stream zs;
  bool zs_open;       /* zlib's state is allocated */
  bool ended;         /* the gzip stream's end was seen */
  size_t max;         /* the cap on the inflated bytes */
  size_t state_bytes; /* what zlib holds allocated now */
  jw__buf_t out;      /* the inflated bytes so far */
  const char *why;    /* what was wrong, after JW_EINVAL */
} jw__gunzip_t;

/* Readies g for one message of at most max inflated bytes; allocates nothing.
 */
void jw__gunzip_init(jw__gunzip_t *g, size_t max);

/*
 * Inflates len more bytes of the gzip stream. zlib's state is allocated
 * at the first byte and freed as soon as the stream ends or fails.
 * Returns 0; JW_ELIMIT as soon as the output would pass max (nothing past
 * max is ever allocated); JW_EINVAL for data that is not gzip, is corrupt
 * or follows the end of the stream (g->why says which); or -ENOMEM.
 */
int jw__gunzip_feed(jw__gunzip_t *g, const uint8_t *in, size_t len);

/*
 * The input is complete: returns 0 when the gzip stream ended (its
 * inflated bytes are in g->out), JW_EINVAL when it is truncated.
 */
int jw__gunzip_finish(jw__gunzip_t *g);

/* Frees zlib's state and the output, if any. */
void jw__gunzip_free(jw__gunzip_t *g);

#endif /* JW_RPC_GZIP_INT_H */
