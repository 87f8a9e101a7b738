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
 * Every buffer is allocated to its exact size so ASan sees any overrun.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  switch (data[0] % 5) {
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
  default:
    status_maps(p, n);
    break;
  }
  return 0;
}
