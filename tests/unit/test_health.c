/*
 * Unit tests for the health module's own logic (lib/service/health.c):
 * which names it knows, the SERVING / NOT_SERVING switch and its end at
 * shutdown, and the wire reader (lib/service/wire.h) it decodes requests
 * with. Watch streams are tested against grpcio in tests/interop.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "health.h"
#include "jobworker/service.h"
#include "wire.h"

#define SERVING 1
#define NOT_SERVING 2

START_TEST(test_known_names) {
  jw_service_t svc = {0};
  ck_assert_int_eq(jw__health_status(&svc, "", 0), SERVING);
  ck_assert_int_eq(
      jw__health_status(&svc, JW_SERVICE_NAME, strlen(JW_SERVICE_NAME)),
      SERVING);
  ck_assert_int_eq(jw__health_status(&svc, "jobworker.v1", 12), 0);
  ck_assert_int_eq(jw__health_status(&svc, "x", 1), 0);
  /* A NUL byte after the name does not make it the name. */
  ck_assert_int_eq(jw__health_status(&svc, JW_SERVICE_NAME "\0x",
                                     strlen(JW_SERVICE_NAME) + 2),
                   0);
  /* A prefix of the name is not it either. */
  ck_assert_int_eq(jw__health_status(&svc, JW_SERVICE_NAME, 5), 0);
}
END_TEST

START_TEST(test_switch_and_shutdown) {
  jw_service_t svc = {0};
  jw_service_set_serving(&svc, false);
  ck_assert_int_eq(jw__health_status(&svc, "", 0), NOT_SERVING);
  jw_service_set_serving(&svc, true);
  ck_assert_int_eq(jw__health_status(&svc, "", 0), SERVING);
  jw_service_shutdown(&svc);
  ck_assert_int_eq(jw__health_status(&svc, "", 0), NOT_SERVING);
  ck_assert(svc.health_ended);
  /* Nothing brings a server that is going away back. */
  jw_service_set_serving(&svc, true);
  ck_assert_int_eq(jw__health_status(&svc, "", 0), NOT_SERVING);
  jw_service_shutdown(&svc);
  ck_assert_int_eq(jw__health_status(&svc, "", 0), NOT_SERVING);
}
END_TEST

START_TEST(test_wire_fields) {
  /* service = "ab" (1, len 2), 2: varint 300, 3: fixed32, 4: fixed64 */
  static const uint8_t msg[] = {0x0a, 2, 'a', 'b', 0x10, 0xac, 0x02,
                                0x1d, 1, 2,   3,   4,    0x21, 1,
                                0,    0, 0,   0,   0,    0,    0x80};
  jw__wire_t w;
  jw__wire_field_t f;
  jw__wire_init(&w, msg, sizeof(msg));
  ck_assert_int_eq(jw__wire_next(&w, &f), 1);
  ck_assert_uint_eq(f.num, 1);
  ck_assert_uint_eq(f.len, 2);
  ck_assert_mem_eq(f.data, "ab", 2);
  ck_assert_int_eq(jw__wire_next(&w, &f), 1);
  ck_assert_uint_eq(f.num, 2);
  ck_assert_uint_eq(f.v, 300);
  ck_assert_int_eq(jw__wire_next(&w, &f), 1);
  ck_assert_uint_eq(f.v, 0x04030201u);
  ck_assert_int_eq(jw__wire_next(&w, &f), 1);
  ck_assert_uint_eq(f.num, 4);
  ck_assert_uint_eq(f.v, 0x8000000000000001ull);
  ck_assert_int_eq(jw__wire_next(&w, &f), 0);
}
END_TEST

START_TEST(test_wire_malformed) {
  static const struct {
    const char *why;
    uint8_t b[12];
    size_t n;
  } bad[] = {
      {"length past the end", {0x0a, 5, 'a'}, 3},
      {"truncated key", {0x80}, 1},
      {"truncated varint", {0x08, 0xff}, 2},
      {"field number 0", {0x02, 0}, 2},
      {"group start", {0x0b}, 1},
      {"group end", {0x0c}, 1},
      {"wire type 6", {0x0e, 0}, 2},
      {"truncated fixed32", {0x0d, 1, 2}, 3},
      {"varint of 11 bytes",
       {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
       12},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    jw__wire_t w;
    jw__wire_field_t f;
    jw__wire_init(&w, bad[i].b, bad[i].n);
    ck_assert_msg(jw__wire_next(&w, &f) == -1, "%s", bad[i].why);
  }
}
END_TEST

int main(void) {
  TEST_RUN_CORE("health", 0, test_known_names, test_switch_and_shutdown,
                test_wire_fields, test_wire_malformed);
}
