/*
 * Unit tests for lib/rpc/gzip.[ch]: inflating gzip request messages under
 * a cap, whatever the split of the input; the cap exact and one past it;
 * a bomb refused without the output passing the cap; corrupt, truncated
 * and trailing data; zlib's state freed at the end; and every allocation
 * failing in turn (failmalloc).
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../failmalloc.h"
#include "../test_common.h"
#include "gzip_int.h"
#include "jobworker/error.h"

/* gzip-compresses len bytes of in; the caller frees the result. */
static uint8_t *gzip_of(const uint8_t *in, size_t len, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  ck_assert_int_eq(
      deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&zs, len) + 64;
  uint8_t *out = malloc(cap);
  ck_assert_ptr_nonnull(out);
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)len;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
  *out_len = cap - zs.avail_out;
  deflateEnd(&zs);
  return out;
}

/* Bytes that compress somewhat but not to nothing. */
static uint8_t *pattern(size_t len) {
  uint8_t *p = malloc(len > 0 ? len : 1);
  ck_assert_ptr_nonnull(p);
  uint32_t x = 12345;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245 + 12345;
    p[i] = (uint8_t)("jobworker"[i % 9] + ((x >> 16) % 3));
  }
  return p;
}

/* A test's input: len bytes of pattern(len) and z, their gzip form. */
struct sample {
  size_t len, zlen;
  uint8_t *data, *z;
};

static struct sample sample_of(size_t len) {
  struct sample t = {len, 0, pattern(len), NULL};
  t.z = gzip_of(t.data, len, &t.zlen);
  return t;
}

static void sample_free(struct sample *t) {
  free(t->z);
  free(t->data);
}

/* Feeds z in pieces of at most step bytes (split at offset first). */
static int inflate_split(jw__gunzip_t *g, const uint8_t *z, size_t zlen,
                         size_t first, size_t step) {
  size_t off = 0;
  int r = jw__gunzip_feed(g, z, first);
  off = first;
  while (r == 0 && off < zlen) {
    size_t n = zlen - off < step ? zlen - off : step;
    r = jw__gunzip_feed(g, z + off, n);
    off += n;
  }
  return r == 0 ? jw__gunzip_finish(g) : r;
}

START_TEST(test_any_split) {
  struct sample t = sample_of(3000);
  /* Every split into two pieces, then byte by byte. */
  for (size_t first = 0; first <= t.zlen; first++) {
    jw__gunzip_t g;
    jw__gunzip_init(&g, t.len);
    ck_assert_int_eq(inflate_split(&g, t.z, t.zlen, first, t.zlen), 0);
    ck_assert_uint_eq(g.out.len, t.len);
    ck_assert_mem_eq(g.out.base, t.data, t.len);
    ck_assert_uint_eq(g.state_bytes, 0);
    jw__gunzip_free(&g);
  }
  jw__gunzip_t g;
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(inflate_split(&g, t.z, t.zlen, 0, 1), 0);
  ck_assert_mem_eq(g.out.base, t.data, t.len);
  jw__gunzip_free(&g);
  sample_free(&t);
}
END_TEST

START_TEST(test_large_output_grows) {
  /* Several doublings of the output buffer, one feed. */
  struct sample t = sample_of(1 << 20);
  jw__gunzip_t g;
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, t.z, t.zlen), 0);
  ck_assert_int_eq(jw__gunzip_finish(&g), 0);
  ck_assert_uint_eq(g.out.len, t.len);
  ck_assert_uint_le(g.out.cap, t.len);
  ck_assert_mem_eq(g.out.base, t.data, t.len);
  jw__gunzip_free(&g);
  sample_free(&t);
}
END_TEST

START_TEST(test_exact_limit) {
  /* A message of exactly the limit is taken; one byte more is refused. */
  struct sample t = sample_of(40000);
  for (size_t step = 1; step <= t.zlen; step = step * 3 + 1) {
    jw__gunzip_t g;
    jw__gunzip_init(&g, t.len);
    ck_assert_int_eq(inflate_split(&g, t.z, t.zlen, 0, step), 0);
    ck_assert_uint_eq(g.out.len, t.len);
    ck_assert_mem_eq(g.out.base, t.data, t.len);
    jw__gunzip_free(&g);
    jw__gunzip_init(&g, t.len - 1);
    ck_assert_int_eq(inflate_split(&g, t.z, t.zlen, 0, step), JW_ELIMIT);
    ck_assert_uint_le(g.out.cap, t.len - 1);
    ck_assert_uint_eq(g.state_bytes, 0);
    /* Refused once, refused for good. */
    ck_assert_int_eq(jw__gunzip_feed(&g, t.z, 1), JW_EINVAL);
    jw__gunzip_free(&g);
  }
  /* The empty message, compressed. */
  uint8_t *ez = gzip_of(t.data, 0, &t.zlen);
  jw__gunzip_t g;
  jw__gunzip_init(&g, 0);
  ck_assert_int_eq(jw__gunzip_feed(&g, ez, t.zlen), 0);
  ck_assert_int_eq(jw__gunzip_finish(&g), 0);
  ck_assert_uint_eq(g.out.len, 0);
  jw__gunzip_free(&g);
  free(ez);
  sample_free(&t);
}
END_TEST

START_TEST(test_bomb) {
  /* 64 MiB of zeros compress to about 64 KiB; the cap is 1 MiB. */
  size_t len = 64u << 20, zlen;
  uint8_t *zeros = calloc(1, len);
  ck_assert_ptr_nonnull(zeros);
  uint8_t *z = gzip_of(zeros, len, &zlen);
  free(zeros);
  ck_assert_uint_lt(zlen, 128 * 1024);
  jw__gunzip_t g;
  jw__gunzip_init(&g, 1 << 20);
  ck_assert_int_eq(jw__gunzip_feed(&g, z, zlen), JW_ELIMIT);
  ck_assert_uint_eq(g.out.len, 1 << 20);
  ck_assert_uint_eq(g.out.cap, 1 << 20);
  ck_assert_uint_eq(g.state_bytes, 0);
  jw__gunzip_free(&g);
  free(z);
}
END_TEST

START_TEST(test_corrupt) {
  struct sample t = sample_of(5000);
  jw__gunzip_t g;

  /* Not gzip at all. */
  static const uint8_t plain[] = "hello, this is not gzip";
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, plain, sizeof(plain)), JW_EINVAL);
  ck_assert_str_eq(g.why, "corrupt gzip data");
  ck_assert_uint_eq(g.state_bytes, 0);
  jw__gunzip_free(&g);

  /* A wrong CRC in the trailer. */
  t.z[t.zlen - 6] ^= 0x55;
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, t.z, t.zlen), JW_EINVAL);
  jw__gunzip_free(&g);
  t.z[t.zlen - 6] ^= 0x55;

  /* Damage in the middle of the deflate data: refused, never a hang. */
  for (size_t at = 10; at < t.zlen - 8; at += 7) {
    t.z[at] ^= 0xff;
    jw__gunzip_init(&g, t.len);
    int r = jw__gunzip_feed(&g, t.z, t.zlen);
    if (r == 0)
      r = jw__gunzip_finish(&g);
    ck_assert(r == JW_EINVAL || r == JW_ELIMIT);
    ck_assert_uint_eq(g.state_bytes, 0);
    jw__gunzip_free(&g);
    t.z[at] ^= 0xff;
  }

  /* Truncated: the input ends before the stream does. */
  for (size_t cut = 0; cut < t.zlen; cut += 97) {
    jw__gunzip_init(&g, t.len);
    ck_assert_int_eq(jw__gunzip_feed(&g, t.z, cut), 0);
    ck_assert_int_eq(jw__gunzip_finish(&g), JW_EINVAL);
    ck_assert_str_eq(g.why, "the gzip stream is truncated");
    ck_assert_uint_eq(g.state_bytes, 0);
    jw__gunzip_free(&g);
  }

  /* Bytes after the end, in the same piece or a later one. */
  uint8_t *zz = malloc(t.zlen + 1);
  ck_assert_ptr_nonnull(zz);
  memcpy(zz, t.z, t.zlen);
  zz[t.zlen] = 0;
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, zz, t.zlen + 1), JW_EINVAL);
  ck_assert_str_eq(g.why, "bytes follow the end of the gzip stream");
  jw__gunzip_free(&g);
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, zz, t.zlen), 0);
  ck_assert_int_eq(jw__gunzip_feed(&g, zz + t.zlen, 1), JW_EINVAL);
  jw__gunzip_free(&g);
  free(zz);
  sample_free(&t);
}
END_TEST

START_TEST(test_state_while_open) {
  /* zlib's state exists only between the first byte and the end, and
   * stays small: about 7 KiB of state and the 32 KiB window. */
  struct sample t = sample_of(100000);
  jw__gunzip_t g;
  jw__gunzip_init(&g, t.len);
  ck_assert_uint_eq(g.state_bytes, 0);
  ck_assert_int_eq(jw__gunzip_feed(&g, t.z, t.zlen / 2), 0);
  ck_assert_uint_gt(g.state_bytes, 32768);
  ck_assert_uint_lt(g.state_bytes, 64 * 1024);
  ck_assert_int_eq(jw__gunzip_feed(&g, t.z + t.zlen / 2, t.zlen - t.zlen / 2),
                   0);
  ck_assert_uint_eq(g.state_bytes, 0);
  ck_assert_int_eq(jw__gunzip_finish(&g), 0);
  jw__gunzip_free(&g);
  /* Freed midway: nothing leaks (LSan). */
  jw__gunzip_init(&g, t.len);
  ck_assert_int_eq(jw__gunzip_feed(&g, t.z, t.zlen / 2), 0);
  jw__gunzip_free(&g);
  sample_free(&t);
}
END_TEST

START_TEST(test_failmalloc) {
  struct sample t = sample_of(100000);
  for (size_t n = 0;; n++) {
    jw__gunzip_t g;
    jw__gunzip_init(&g, t.len);
    failmalloc_arm(n);
    int r = jw__gunzip_feed(&g, t.z, t.zlen);
    if (r == 0)
      r = jw__gunzip_finish(&g);
    size_t calls = failmalloc_disarm();
    if (n >= calls) {
      ck_assert_int_eq(r, 0);
      ck_assert_mem_eq(g.out.base, t.data, t.len);
      jw__gunzip_free(&g);
      break;
    }
    ck_assert_int_eq(r, -ENOMEM);
    ck_assert_uint_eq(g.state_bytes, 0);
    jw__gunzip_free(&g);
    ck_assert_uint_lt(n, 1000);
  }
  sample_free(&t);
}
END_TEST

int main(void) {
  TEST_RUN_CORE("gzip", 300, test_any_split, test_large_output_grows,
                test_exact_limit, test_bomb, test_corrupt,
                test_state_while_open, test_failmalloc);
}
