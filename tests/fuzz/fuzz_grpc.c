/*
 * Fuzz target: grpc-timeout and grpc-message, parsing and encoding, and
 * the status mappings (lib/include/jobworker/grpc.h).
 *
 * Input: one byte that picks the property, then its data. Oracles:
 *  - a grpc-timeout value parses only if it is 1-8 digits and a unit, and
 *    what parses formats back to a value that parses to the same
 *    milliseconds (parse(format(v)) == v up to 99999999 ms, rounded up to
 *    the unit above, capped at 99999999H);
 *  - grpc-message: decode(encode(x)) == x byte-exact for any bytes, the
 *    encoding is printable ASCII, a short buffer gets a NUL-terminated
 *    prefix and the full length back, like snprintf; decoding any text
 *    never grows it and decoding is a fixed point after one round trip.
 *  - gzip request messages (lib/rpc/gzip.c) inflate to the same bytes and
 *    the same verdict however the input is split, never past their cap,
 *    and as zlib alone inflates them (taken when zlib ends the stream
 *    with the input used up and at most cap bytes out; refused as over
 *    the limit when zlib makes more than cap bytes; refused as broken
 *    otherwise), with zlib's state freed at the end.
 * Every buffer is allocated to its exact size so ASan sees any overrun.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fuzz.h"
#include "gzip_int.h"
#include "jobworker/error.h"
#include "jobworker/grpc.h"

#define TIMEOUT_MAX_MS (99999999ull * 3600000ull)

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

static void *xdup(const void *p, size_t n) {
  void *q = calloc(1, n > 0 ? n : 1);
  FUZZ_CHECK(q != NULL);
  if (n > 0)
    memcpy(q, p, n);
  return q;
}

static uint64_t unit_ms(char u) {
  switch (u) {
  case 'H':
    return 3600000;
  case 'M':
    return 60000;
  case 'S':
    return 1000;
  case 'm':
    return 1;
  default:
    return 0;
  }
}

/* format(v) then parse: the round trip the client and server make. */
static void timeout_round_trip(uint64_t v) {
  char big[32];
  int n = jw_grpc_timeout_format(v, big, sizeof(big));
  FUZZ_CHECK(n >= 2 && n <= 9);
  FUZZ_CHECK(big[n] == '\0' && (int)strlen(big) == n);
  /* cap == n + 1 is exactly enough; n is not. */
  char *exact = malloc((size_t)n + 1);
  FUZZ_CHECK(exact != NULL);
  FUZZ_CHECK(jw_grpc_timeout_format(v, exact, (size_t)n + 1) == n);
  FUZZ_CHECK(memcmp(exact, big, (size_t)n + 1) == 0);
  free(exact);
  char *small = malloc((size_t)n);
  FUZZ_CHECK(small != NULL);
  FUZZ_CHECK(jw_grpc_timeout_format(v, small, (size_t)n) == JW_EINVAL);
  free(small);

  char *wire = xdup(big, (size_t)n);
  uint64_t w = 0;
  FUZZ_CHECK(jw_grpc_timeout_parse(wire, (size_t)n, &w) == 0);
  free(wire);
  uint64_t unit = unit_ms(big[n - 1]);
  FUZZ_CHECK(unit != 0);
  if (v <= 99999999)
    FUZZ_CHECK(w == v);
  else if (v > TIMEOUT_MAX_MS)
    FUZZ_CHECK(w == TIMEOUT_MAX_MS);
  else
    FUZZ_CHECK(w >= v && w - v < unit);
  if (v > 0)
    FUZZ_CHECK(w > 0);
}

static void timeout_parse_any(const uint8_t *data, size_t size) {
  char *s = xdup(data, size);
  uint64_t ms = 0;
  int rc = jw_grpc_timeout_parse(s, size, &ms);
  bool valid = size >= 2 && size <= 9;
  for (size_t i = 0; valid && i + 1 < size; i++)
    valid = s[i] >= '0' && s[i] <= '9';
  valid = valid && strchr("HMSmun", s[size - 1]) != NULL && s[size - 1] != 0;
  FUZZ_CHECK((rc == 0) == valid);
  FUZZ_CHECK(rc == 0 || rc == JW_EINVAL);
  if (rc == 0) {
    FUZZ_CHECK(ms <= TIMEOUT_MAX_MS);
    /* Rounded up: a positive timeout never becomes 0. */
    bool zero = true;
    for (size_t i = 0; i + 1 < size; i++)
      zero = zero && s[i] == '0';
    FUZZ_CHECK(zero == (ms == 0));
    timeout_round_trip(ms);
  }
  free(s);
}

static void message_round_trip(const uint8_t *data, size_t size) {
  uint8_t *in = xdup(data, size);
  size_t elen = jw_grpc_message_encode(in, size, NULL, 0);
  FUZZ_CHECK(elen >= size && elen <= 3 * size);
  char *enc = malloc(elen + 1);
  FUZZ_CHECK(enc != NULL);
  FUZZ_CHECK(jw_grpc_message_encode(in, size, enc, elen + 1) == elen);
  FUZZ_CHECK(enc[elen] == '\0');
  for (size_t i = 0; i < elen; i++)
    FUZZ_CHECK(enc[i] >= 0x20 && enc[i] <= 0x7e);

  /* A short buffer: a terminated prefix and the full length. */
  size_t cap = size > 0 ? data[0] % (elen + 1) : 0;
  char *part = malloc(cap > 0 ? cap : 1);
  FUZZ_CHECK(part != NULL);
  FUZZ_CHECK(jw_grpc_message_encode(in, size, part, cap) == elen);
  if (cap > 0) {
    FUZZ_CHECK(part[cap - 1] == '\0');
    FUZZ_CHECK(memcmp(part, enc, cap - 1) == 0);
  }
  free(part);

  /* The decoder sees exactly the header value: no NUL after it. */
  char *wire = xdup(enc, elen);
  uint8_t *dec = malloc(size + 1);
  FUZZ_CHECK(dec != NULL);
  FUZZ_CHECK(jw_grpc_message_decode(wire, elen, dec, size + 1) == size);
  FUZZ_CHECK(dec[size] == '\0');
  FUZZ_CHECK(size == 0 || memcmp(dec, in, size) == 0);
  free(dec);
  free(wire);
  free(enc);
  free(in);
}

static void message_decode_any(const uint8_t *data, size_t size) {
  char *in = xdup(data, size);
  size_t dlen = jw_grpc_message_decode(in, size, NULL, 0);
  FUZZ_CHECK(dlen <= size);
  uint8_t *dec = malloc(dlen + 1);
  FUZZ_CHECK(dec != NULL);
  FUZZ_CHECK(jw_grpc_message_decode(in, size, dec, dlen + 1) == dlen);
  FUZZ_CHECK(dec[dlen] == '\0');
  /* Whatever was decoded survives a round trip. */
  message_round_trip(dec, dlen);
  free(dec);
  free(in);
}

static void status_maps(const uint8_t *data, size_t size) {
  for (size_t i = 0; i + 4 <= size; i += 4) {
    uint32_t v = (uint32_t)data[i] << 24 | (uint32_t)data[i + 1] << 16 |
                 (uint32_t)data[i + 2] << 8 | data[i + 3];
    int s = jw_grpc_status_from_http((int)v);
    FUZZ_CHECK(s >= 0 && s <= JW_GRPC_UNAUTHENTICATED && s != JW_GRPC_OK);
    s = jw_grpc_status_from_h2_error(v);
    FUZZ_CHECK(s >= 0 && s <= JW_GRPC_UNAUTHENTICATED && s != JW_GRPC_OK);
    FUZZ_CHECK(jw_grpc_status_name((int)v) != NULL);
  }
}

/* What zlib alone makes of the input: 0, JW_ELIMIT or JW_EINVAL. */
static int gunzip_reference(const uint8_t *in, size_t n, size_t cap,
                            uint8_t *out, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  FUZZ_CHECK(inflateInit2(&zs, 15 + 16) == Z_OK);
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap + 1;
  int zr = inflate(&zs, Z_FINISH);
  *out_len = cap + 1 - zs.avail_out;
  size_t left = zs.avail_in;
  inflateEnd(&zs);
  if (*out_len > cap)
    return JW_ELIMIT;
  if (zr == Z_STREAM_END && left == 0)
    return 0;
  return JW_EINVAL;
}

static void gunzip_any(const uint8_t *data, size_t size) {
  if (size < 3)
    return;
  size_t cap = (size_t)data[0] << 8 | data[1];
  const uint8_t *in = data + 3;
  size_t n = size - 3;
  size_t split = n * data[2] / 255;
  uint8_t *ref = malloc(cap + 1);
  FUZZ_CHECK(ref != NULL);
  size_t ref_len;
  int want = gunzip_reference(in, n, cap, ref, &ref_len);
  for (int way = 0; way < 2; way++) {
    jw__gunzip_t g;
    jw__gunzip_init(&g, cap);
    int r;
    if (way == 0) {
      r = jw__gunzip_feed(&g, in, n);
    } else {
      r = jw__gunzip_feed(&g, in, split);
      if (r == 0)
        r = jw__gunzip_feed(&g, in + split, n - split);
    }
    if (r == 0)
      r = jw__gunzip_finish(&g);
    FUZZ_CHECK(r == want);
    FUZZ_CHECK(g.out.len <= cap && g.out.cap <= cap);
    if (r == 0)
      FUZZ_CHECK(g.out.len == ref_len &&
                 (ref_len == 0 || memcmp(g.out.base, ref, ref_len) == 0));
    else
      FUZZ_CHECK(g.why != NULL && !g.zs_open && g.state_bytes == 0);
    jw__gunzip_free(&g);
  }
  free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  switch (data[0] % 6) {
  case 0:
    timeout_parse_any(p, n);
    break;
  case 1: {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 8; i++)
      v = v << 8 | p[i];
    timeout_round_trip(v);
    break;
  }
  case 2:
    message_round_trip(p, n);
    break;
  case 3:
    message_decode_any(p, n);
    break;
  case 4:
    status_maps(p, n);
    break;
  default:
    gunzip_any(p, n);
    break;
  }
  return 0;
}
