/*
 * gzip request messages (grpc-encoding: gzip): zlib's inflate into a
 * buffer grown under lib/common/buf.h's policy with the request limit as
 * its cap. zlib's allocations go through the allocator below, so they are
 * counted (state_bytes) and fail like every other allocation under the
 * failmalloc tests.
 */
#include "gzip_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jobworker/error.h"

/* The first output allocation; the buffer doubles from there to max. */
#define OUT_MIN 16384

/* windowBits for inflate: 15 (the largest window) + 16 (gzip framing). */
#define GZIP_WBITS (15 + 16)

/* zlib's allocations carry their size in front, to be counted when freed. */
typedef union {
  size_t size;
  max_align_t align;
} zhdr_t;

static voidpf zalloc_cb(voidpf opaque, uInt items, uInt size) {
  jw__gunzip_t *g = opaque;
  size_t n = (size_t)items * size;
  zhdr_t *h = malloc(sizeof(*h) + n);
  if (h == NULL)
    return Z_NULL;
  h->size = n;
  g->state_bytes += n;
  return h + 1;
}

static void zfree_cb(voidpf opaque, voidpf p) {
  jw__gunzip_t *g = opaque;
  if (p == NULL)
    return;
  zhdr_t *h = (zhdr_t *)p - 1;
  g->state_bytes -= h->size;
  free(h);
}

static void close_stream(jw__gunzip_t *g) {
  if (g->zs_open)
    inflateEnd(&g->zs);
  g->zs_open = false;
}

void jw__gunzip_init(jw__gunzip_t *g, size_t max) {
  memset(g, 0, sizeof(*g));
  g->max = max;
}

static int fail(jw__gunzip_t *g, int err, const char *why) {
  g->why = why;
  close_stream(g);
  return err;
}

/*
 * Inflates what zs holds as input until it is used up and all its output
 * is out (zlib keeps output back when the buffer is full, so a full
 * buffer is given more room even after the last input byte). more: input
 * follows this slice.
 */
static int inflate_slice(jw__gunzip_t *g, bool more) {
  for (;;) {
    /* At the cap, one spare byte tells whether more output would come:
     * a message exactly max bytes long still fits. */
    uint8_t spare;
    int r = jw__buf_reserve(&g->out, 1, OUT_MIN, g->max);
    if (r == -ENOMEM)
      return fail(g, r, "out of memory");
    bool at_cap = r == JW_ELIMIT;
    size_t room = at_cap ? 1 : g->out.cap - g->out.len;
    if (room > UINT32_MAX)
      room = UINT32_MAX;
    g->zs.next_out = at_cap ? &spare : g->out.base + g->out.len;
    g->zs.avail_out = (uInt)room;
    int zr = inflate(&g->zs, Z_NO_FLUSH);
    size_t made = room - g->zs.avail_out;
    if (at_cap && made > 0)
      return fail(g, JW_ELIMIT, "the message inflates past the limit");
    g->out.len += made;
    if (zr == Z_STREAM_END) {
      g->ended = true;
      bool trailing = g->zs.avail_in > 0 || more;
      close_stream(g);
      if (trailing)
        return fail(g, JW_EINVAL, "bytes follow the end of the gzip stream");
      return 0;
    }
    if (zr == Z_MEM_ERROR)
      return fail(g, -ENOMEM, "out of memory");
    if (zr != Z_OK && zr != Z_BUF_ERROR)
      return fail(g, JW_EINVAL, "corrupt gzip data");
    /* Input used up with room left over: all its output is out. */
    if (g->zs.avail_in == 0 && (g->zs.avail_out > 0 || zr == Z_BUF_ERROR))
      return 0;
    /* No progress with input and room left: never loop on it. */
    if (zr == Z_BUF_ERROR)
      return fail(g, JW_EINVAL, "corrupt gzip data");
  }
}

int jw__gunzip_feed(jw__gunzip_t *g, const uint8_t *in, size_t len) {
  if (g->why != NULL)
    return JW_EINVAL; /* failed before: the stream is gone */
  if (len == 0)
    return 0;
  if (g->ended)
    return fail(g, JW_EINVAL, "bytes follow the end of the gzip stream");
  if (!g->zs_open) {
    g->zs.zalloc = zalloc_cb;
    g->zs.zfree = zfree_cb;
    g->zs.opaque = g;
    int zr = inflateInit2(&g->zs, GZIP_WBITS);
    if (zr == Z_MEM_ERROR)
      return -ENOMEM;
    if (zr != Z_OK)
      return fail(g, JW_EINVAL, "zlib refused to start");
    g->zs_open = true;
  }
  /* avail_in is a uInt: a larger input goes through in slices. */
  while (len > 0) {
    uInt slice = len > UINT32_MAX ? UINT32_MAX : (uInt)len;
    g->zs.next_in = (Bytef *)(uintptr_t)in;
    g->zs.avail_in = slice;
    in += slice;
    len -= slice;
    int r = inflate_slice(g, len > 0);
    if (r != 0)
      return r;
  }
  return 0;
}

int jw__gunzip_finish(jw__gunzip_t *g) {
  if (!g->ended)
    return fail(g, JW_EINVAL, "the gzip stream is truncated");
  return 0;
}

void jw__gunzip_free(jw__gunzip_t *g) {
  close_stream(g);
  jw__buf_free(&g->out);
}
