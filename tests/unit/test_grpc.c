/*
 * Unit tests for the connection-free gRPC pieces: message framing,
 * grpc-timeout, grpc-message percent-encoding, status names and mappings.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "jobworker/error.h"
#include "jobworker/grpc.h"

/* Frames msgs into one buffer; returns its length. */
static size_t frame_all(uint8_t *out, const size_t *lens, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    jw_grpc_prefix_write(out + off, (uint32_t)lens[i]);
    off += JW_GRPC_PREFIX_LEN;
    for (size_t k = 0; k < lens[i]; k++)
      out[off + k] = (uint8_t)(i * 31 + k);
    off += lens[i];
  }
  return off;
}

START_TEST(test_prefix_format) {
  uint8_t p[5];
  jw_grpc_prefix_write(p, 0x01020304);
  ck_assert_int_eq(p[0], 0);
  ck_assert_int_eq(p[1], 1);
  ck_assert_int_eq(p[2], 2);
  ck_assert_int_eq(p[3], 3);
  ck_assert_int_eq(p[4], 4);
}
END_TEST

/* Every message comes out whole and in order, however input is split. */
START_TEST(test_deframe_any_split) {
  static const size_t lens[] = {0, 1, 4, 5, 300, 0, 70000, 2};
  const size_t n = sizeof(lens) / sizeof(lens[0]);
  uint8_t *wire = malloc(80000);
  size_t total = frame_all(wire, lens, n);
  unsigned seed = 12345;
  for (int round = 0; round < 100; round++) {
    jw_grpc_deframer_t d;
    size_t got = 0;
    jw_grpc_deframer_init(&d, 1 << 20);
    size_t off = 0;
    while (off < total) {
      seed = seed * 1103515245 + 12345;
      /* Round 0 feeds one byte at a time; the others random pieces. */
      size_t chunk = round == 0 ? 1 : (seed >> 16) % 9000 + 1;
      if (chunk > total - off)
        chunk = total - off;
      const uint8_t *p = wire + off;
      size_t left = chunk;
      for (;;) {
        const uint8_t *msg;
        size_t len;
        int r = jw_grpc_deframer_next(&d, &p, &left, &msg, &len);
        ck_assert_int_ge(r, 0);
        if (r == 0)
          break;
        ck_assert_uint_lt(got, n);
        ck_assert_uint_eq(len, lens[got]);
        bool same = true;
        for (size_t k = 0; k < len; k++)
          same = same && msg[k] == (uint8_t)(got * 31 + k);
        ck_assert_msg(same, "message %zu differs", got);
        got++;
      }
      ck_assert_uint_eq(left, 0);
      off += chunk;
    }
    ck_assert_uint_eq(got, n);
    ck_assert(!jw_grpc_deframer_partial(&d));
    jw_grpc_deframer_reset(&d);
  }
  free(wire);
}
END_TEST

/* jw_grpc_deframer_next over n bytes of buf, from their start. */
static int next_from(jw_grpc_deframer_t *d, const uint8_t *buf, size_t n,
                     const uint8_t **msg, size_t *len) {
  const uint8_t *p = buf;
  return jw_grpc_deframer_next(d, &p, &n, msg, len);
}

/* The cap is enforced from the prefix alone, before any body arrives. */
START_TEST(test_deframe_oversize_from_prefix) {
  jw_grpc_deframer_t d;
  uint8_t prefix[5];
  const uint8_t *msg;
  size_t len;
  jw_grpc_deframer_init(&d, 1000);
  jw_grpc_prefix_write(prefix, 1001);
  ck_assert_int_eq(next_from(&d, prefix, 5, &msg, &len), JW_ELIMIT);
  ck_assert_ptr_null(d.buf);
  ck_assert_uint_eq(d.need, 1001);
  jw_grpc_deframer_reset(&d);
  /* A huge announced length is refused just the same. */
  jw_grpc_prefix_write(prefix, 0xffffffffu);
  ck_assert_int_eq(next_from(&d, prefix, 5, &msg, &len), JW_ELIMIT);
  ck_assert_ptr_null(d.buf);
  jw_grpc_deframer_reset(&d);
  /* Exactly at the cap is fine. */
  uint8_t *wire = calloc(1, 1005);
  jw_grpc_prefix_write(wire, 1000);
  ck_assert_int_eq(next_from(&d, wire, 1005, &msg, &len), 1);
  ck_assert_uint_eq(len, 1000);
  jw_grpc_deframer_reset(&d);
  free(wire);
}
END_TEST

START_TEST(test_deframe_compressed_flag) {
  jw_grpc_deframer_t d;
  uint8_t wire[6] = {1, 0, 0, 0, 1, 'x'};
  const uint8_t *msg;
  size_t len;
  jw_grpc_deframer_init(&d, 100);
  ck_assert_int_eq(next_from(&d, wire, sizeof(wire), &msg, &len), JW_EINVAL);
  ck_assert_int_eq(d.flag, 1);
  jw_grpc_deframer_reset(&d);
  wire[0] = 7;
  ck_assert_int_eq(next_from(&d, wire, sizeof(wire), &msg, &len), JW_EINVAL);
  jw_grpc_deframer_reset(&d);
}
END_TEST

START_TEST(test_deframe_compressed_ok) {
  /* A stream with an encoding its reader decodes: flag 1 is a message,
   * told apart by d.flag; any other flag stays refused. */
  jw_grpc_deframer_t d;
  uint8_t wire[12] = {1, 0, 0, 0, 1, 'x', 0, 0, 0, 0, 1, 'y'};
  const uint8_t *msg, *p = wire;
  size_t len, n = sizeof(wire);
  jw_grpc_deframer_init(&d, 100);
  d.compressed_ok = true;
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &n, &msg, &len), 1);
  ck_assert_int_eq(d.flag, 1);
  ck_assert_uint_eq(len, 1);
  ck_assert_int_eq(msg[0], 'x');
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &n, &msg, &len), 1);
  ck_assert_int_eq(d.flag, 0);
  ck_assert_int_eq(msg[0], 'y');
  /* The limit applies to the framed (compressed) length as well. */
  uint8_t big[5] = {1, 0, 0, 0, 101};
  ck_assert_int_eq(next_from(&d, big, sizeof(big), &msg, &len), JW_ELIMIT);
  jw_grpc_deframer_reset(&d);
  ck_assert(d.compressed_ok);
  uint8_t two[6] = {2, 0, 0, 0, 1, 'z'};
  ck_assert_int_eq(next_from(&d, two, sizeof(two), &msg, &len), JW_EINVAL);
  ck_assert_int_eq(d.flag, 2);
  jw_grpc_deframer_reset(&d);
}
END_TEST

START_TEST(test_deframe_partial) {
  jw_grpc_deframer_t d;
  uint8_t wire[8];
  const uint8_t *msg, *p = wire;
  size_t len, n = 3;
  jw_grpc_deframer_init(&d, 100);
  jw_grpc_prefix_write(wire, 3);
  memcpy(wire + 5, "abc", 3);
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &n, &msg, &len), 0);
  ck_assert(jw_grpc_deframer_partial(&d));
  n = 4;
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &n, &msg, &len), 0);
  ck_assert(jw_grpc_deframer_partial(&d));
  n = 1;
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &n, &msg, &len), 1);
  ck_assert_uint_eq(len, 3);
  ck_assert_int_eq(memcmp(msg, "abc", 3), 0);
  ck_assert(!jw_grpc_deframer_partial(&d));
  jw_grpc_deframer_reset(&d);
}
END_TEST

static uint64_t parse_ok(const char *s) {
  uint64_t ms = 12345;
  ck_assert_msg(jw_grpc_timeout_parse(s, strlen(s), &ms) == 0, "%s", s);
  return ms;
}

/*
 * A prefix announcing 4 MiB followed by a few bytes costs a buffer the
 * size of what arrived, not of what was announced; as more arrives the
 * buffer grows to the announced length at most, and the message is whole.
 */
START_TEST(test_deframe_grows_with_input) {
  const size_t need = 4u << 20;
  uint8_t *wire = malloc(JW_GRPC_PREFIX_LEN + need);
  jw_grpc_prefix_write(wire, (uint32_t)need);
  for (size_t k = 0; k < need; k++)
    wire[JW_GRPC_PREFIX_LEN + k] = (uint8_t)(k * 7);
  jw_grpc_deframer_t d;
  jw_grpc_deframer_init(&d, need);
  const uint8_t *p = wire, *msg;
  size_t left = JW_GRPC_PREFIX_LEN + 10, len;
  ck_assert_int_eq(jw_grpc_deframer_next(&d, &p, &left, &msg, &len), 0);
  ck_assert(jw_grpc_deframer_partial(&d));
  ck_assert_uint_le(d.cap, 16384);
  size_t off = JW_GRPC_PREFIX_LEN + 10, end = JW_GRPC_PREFIX_LEN + need;
  int r = 0;
  while (off < end) {
    size_t chunk = end - off < 16384 ? end - off : 16384;
    p = wire + off;
    left = chunk;
    r = jw_grpc_deframer_next(&d, &p, &left, &msg, &len);
    ck_assert_int_ge(r, 0);
    /* Never more than twice what arrived, never more than announced. */
    ck_assert_uint_le(d.cap, 2 * (off + chunk));
    ck_assert_uint_le(d.cap, need);
    off += chunk;
  }
  ck_assert_int_eq(r, 1);
  ck_assert_uint_eq(len, need);
  ck_assert_mem_eq(msg, wire + JW_GRPC_PREFIX_LEN, need);
  jw_grpc_deframer_reset(&d);
  free(wire);
}
END_TEST

START_TEST(test_timeout_parse_units) {
  ck_assert_uint_eq(parse_ok("1H"), 3600000);
  ck_assert_uint_eq(parse_ok("2M"), 120000);
  ck_assert_uint_eq(parse_ok("3S"), 3000);
  ck_assert_uint_eq(parse_ok("250m"), 250);
  ck_assert_uint_eq(parse_ok("1500u"), 2); /* rounded up */
  ck_assert_uint_eq(parse_ok("1000u"), 1);
  ck_assert_uint_eq(parse_ok("1n"), 1); /* never rounds to nothing */
  ck_assert_uint_eq(parse_ok("1000000n"), 1);
  ck_assert_uint_eq(parse_ok("0m"), 0);
  ck_assert_uint_eq(parse_ok("99999999H"), 99999999ull * 3600000);
  ck_assert_uint_eq(parse_ok("00000001S"), 1000);
}
END_TEST

START_TEST(test_timeout_parse_malformed) {
  static const char *bad[] = {"",     "S",          "1",          "1s",  "1h",
                              "-1S",  "+1S",        " 1S",        "1 S", "1.5S",
                              "1SS",  "100000000S", "123456789m", "x",   "1Sx",
                              "0x1S", "１S"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t ms;
    ck_assert_msg(jw_grpc_timeout_parse(bad[i], strlen(bad[i]), &ms) ==
                      JW_EINVAL,
                  "accepted '%s'", bad[i]);
  }
  uint64_t ms;
  ck_assert_int_eq(jw_grpc_timeout_parse(NULL, 0, &ms), JW_EINVAL);
  /* Only len bytes count: "5S" inside a longer buffer. */
  ck_assert_int_eq(jw_grpc_timeout_parse("5Sjunk", 2, &ms), 0);
  ck_assert_uint_eq(ms, 5000);
}
END_TEST

START_TEST(test_timeout_format) {
  char buf[16];
  static const uint64_t values[] = {
      0, 1, 999, 99999999, 100000000, 123456789012ull, 3600000, UINT64_MAX / 2};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    int n = jw_grpc_timeout_format(values[i], buf, sizeof(buf));
    ck_assert_int_gt(n, 1);
    ck_assert_int_le(n, 9); /* at most 8 digits and a unit */
    ck_assert_uint_eq(strlen(buf), (size_t)n);
    uint64_t back;
    ck_assert_int_eq(jw_grpc_timeout_parse(buf, (size_t)n, &back), 0);
    /* Never shorter than asked (below the 8-digit-hours ceiling). */
    if (values[i] <= 99999999ull * 3600000)
      ck_assert_uint_ge(back, values[i]);
  }
  ck_assert_int_eq(jw_grpc_timeout_format(250, buf, sizeof(buf)), 4);
  ck_assert_str_eq(buf, "250m");
  jw_grpc_timeout_format(100000000, buf, sizeof(buf));
  ck_assert_str_eq(buf, "100000S");
  ck_assert_int_eq(jw_grpc_timeout_format(250, buf, 4), JW_EINVAL);
}
END_TEST

static void roundtrip(const uint8_t *in, size_t len) {
  size_t need = jw_grpc_message_encode(in, len, NULL, 0);
  char *enc = malloc(need + 1);
  ck_assert_uint_eq(jw_grpc_message_encode(in, len, enc, need + 1), need);
  ck_assert_uint_eq(strlen(enc), need);
  for (size_t i = 0; i < need; i++) {
    unsigned char c = (unsigned char)enc[i];
    /* Only space and visible ASCII go on the wire. */
    ck_assert(c >= 0x20 && c <= 0x7e);
  }
  uint8_t *dec = malloc(len + 1);
  ck_assert_uint_eq(jw_grpc_message_decode(enc, need, dec, len + 1), len);
  ck_assert_int_eq(memcmp(dec, in, len), 0);
  free(enc);
  free(dec);
}

START_TEST(test_message_roundtrip_all_bytes) {
  uint8_t all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t)i;
  roundtrip(all, sizeof(all));
  roundtrip((const uint8_t *)"", 0);
  const char *utf8 = "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 100% done";
  roundtrip((const uint8_t *)utf8, strlen(utf8));
  unsigned seed = 7;
  for (int round = 0; round < 200; round++) {
    uint8_t buf[64];
    size_t n = (size_t)round % sizeof(buf);
    for (size_t i = 0; i < n; i++) {
      seed = seed * 1103515245 + 12345;
      buf[i] = (uint8_t)(seed >> 16);
    }
    roundtrip(buf, n);
  }
}
END_TEST

START_TEST(test_message_encoding_form) {
  char out[64];
  const char *in = "a b%\xc3\xa9\n~";
  jw_grpc_message_encode((const uint8_t *)in, strlen(in), out, sizeof(out));
  ck_assert_str_eq(out, "a b%25%C3%A9%0A~");
  /* Truncated like snprintf: the full length comes back. */
  ck_assert_uint_eq(
      jw_grpc_message_encode((const uint8_t *)in, strlen(in), out, 4), 16);
  ck_assert_str_eq(out, "a b");
}
END_TEST

START_TEST(test_message_decode_lenient) {
  uint8_t out[64];
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"100%", "100%"},       {"%", "%"},       {"%4", "%4"},
      {"%zz!", "%zz!"},       {"%41%42", "AB"}, {"%e2%9C%93", "\xe2\x9c\x93"},
      {"50% off", "50% off"}, {"%%41", "%A"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t n = jw_grpc_message_decode(cases[i].in, strlen(cases[i].in), out,
                                      sizeof(out));
    ck_assert_uint_eq(n, strlen(cases[i].out));
    ck_assert_str_eq((char *)out, cases[i].out);
  }
}
END_TEST

START_TEST(test_status_names) {
  ck_assert_str_eq(jw_grpc_status_name(JW_GRPC_OK), "OK");
  ck_assert_str_eq(jw_grpc_status_name(JW_GRPC_CANCELLED), "CANCELLED");
  ck_assert_str_eq(jw_grpc_status_name(JW_GRPC_NOT_FOUND), "NOT_FOUND");
  ck_assert_str_eq(jw_grpc_status_name(JW_GRPC_RESOURCE_EXHAUSTED),
                   "RESOURCE_EXHAUSTED");
  ck_assert_str_eq(jw_grpc_status_name(JW_GRPC_UNAUTHENTICATED),
                   "UNAUTHENTICATED");
  ck_assert_str_eq(jw_grpc_status_name(-1), "UNKNOWN_STATUS");
  ck_assert_str_eq(jw_grpc_status_name(17), "UNKNOWN_STATUS");
  for (int i = 0; i <= 16; i++)
    ck_assert_str_ne(jw_grpc_status_name(i), "UNKNOWN_STATUS");
}
END_TEST

START_TEST(test_status_mappings) {
  /* {HTTP status, gRPC status} and {HTTP/2 error code, gRPC status}. */
  static const int http[][2] = {
      {400, JW_GRPC_INTERNAL},        {431, JW_GRPC_INTERNAL},
      {401, JW_GRPC_UNAUTHENTICATED}, {403, JW_GRPC_PERMISSION_DENIED},
      {404, JW_GRPC_UNIMPLEMENTED},   {429, JW_GRPC_UNAVAILABLE},
      {502, JW_GRPC_UNAVAILABLE},     {503, JW_GRPC_UNAVAILABLE},
      {504, JW_GRPC_UNAVAILABLE},     {200, JW_GRPC_UNKNOWN},
      {415, JW_GRPC_UNKNOWN}};
  static const int h2[][2] = {{8, JW_GRPC_CANCELLED},
                              {7, JW_GRPC_UNAVAILABLE},
                              {11, JW_GRPC_RESOURCE_EXHAUSTED},
                              {1, JW_GRPC_INTERNAL}};
  for (size_t i = 0; i < sizeof(http) / sizeof(http[0]); i++)
    ck_assert_msg(jw_grpc_status_from_http(http[i][0]) == http[i][1], "HTTP %d",
                  http[i][0]);
  for (size_t i = 0; i < sizeof(h2) / sizeof(h2[0]); i++)
    ck_assert_msg(jw_grpc_status_from_h2_error((uint32_t)h2[i][0]) == h2[i][1],
                  "HTTP/2 error %d", h2[i][0]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("grpc");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_prefix_format,
                                   test_deframe_any_split,
                                   test_deframe_oversize_from_prefix,
                                   test_deframe_compressed_flag,
                                   test_deframe_compressed_ok,
                                   test_deframe_partial,
                                   test_deframe_grows_with_input,
                                   test_timeout_parse_units,
                                   test_timeout_parse_malformed,
                                   test_timeout_format,
                                   test_message_roundtrip_all_bytes,
                                   test_message_encoding_form,
                                   test_message_decode_lenient,
                                   test_status_names,
                                   test_status_mappings,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
