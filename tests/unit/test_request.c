/*
 * The request validator (lib/service/request.c): every request is walked
 * on the wire before protobuf-c unpacks it. Strings must be UTF-8 without
 * NUL bytes, malformed encodings (overlong varints, field 0, wire types
 * 3, 4, 6, 7, mismatched wire types, lengths past the end) are refused,
 * and the server's caps on args, env and string bytes hold, for every
 * request type. Messages are built byte by byte here, so that the tests
 * say exactly what is on the wire.
 */
#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "jobworker/grpc.h"
#include "request.h"

/* A message under construction. */
typedef struct {
  uint8_t b[1 << 20];
  size_t n;
} wire_t;

static wire_t *wire_new(void) {
  wire_t *w = calloc(1, sizeof(*w));
  ck_assert_ptr_nonnull(w);
  return w;
}

static void put_byte(wire_t *w, uint8_t c) {
  ck_assert_uint_lt(w->n, sizeof(w->b));
  w->b[w->n++] = c;
}

static void put_bytes(wire_t *w, const void *p, size_t n) {
  ck_assert_uint_le(n, sizeof(w->b) - w->n);
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

static void put_varint(wire_t *w, uint64_t v) {
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    put_byte(w, c | (v ? 0x80 : 0));
  } while (v);
}

static void put_tag(wire_t *w, uint64_t field, unsigned wt) {
  put_varint(w, field << 3 | wt);
}

/* A length-delimited field of n bytes. */
static void put_len(wire_t *w, uint64_t field, const void *p, size_t n) {
  put_tag(w, field, 2);
  put_varint(w, n);
  put_bytes(w, p, n);
}

static void put_str(wire_t *w, uint64_t field, const char *s) {
  put_len(w, field, s, strlen(s));
}

static char msg[512];

/* Decodes w as a Start request under lim; returns the status. */
static int start(const wire_t *w, const jw_request_limits_t *lim) {
  Jobworker__V1__JobRequest *r = NULL;
  msg[0] = '\0';
  int code = jw_request_decode_start(w->b, w->n, lim, &r, msg, sizeof(msg));
  if (code == 0) {
    ck_assert_ptr_nonnull(r);
    jobworker__v1__job_request__free_unpacked(r, NULL);
  } else {
    ck_assert_ptr_null(r);
    ck_assert_str_ne(msg, "");
  }
  return code;
}

static void assert_msg(const char *want) {
  ck_assert_msg(strcmp(msg, want) == 0, "message \"%s\", want \"%s\"", msg,
                want);
}

/* w is refused under lim with the message want; frees w. */
static void refused(wire_t *w, const jw_request_limits_t *lim,
                    const char *want) {
  ck_assert_int_eq(start(w, lim), JW_GRPC_INVALID_ARGUMENT);
  assert_msg(want);
  free(w);
}

/*
 * w passes under lim; with one more string v in field, it is refused with
 * the message want. Frees w.
 */
static void one_more_refused(wire_t *w, const jw_request_limits_t *lim,
                             uint64_t field, const char *v, const char *want) {
  ck_assert_int_eq(start(w, lim), 0);
  put_str(w, field, v);
  refused(w, lim, want);
}

/* A Start request with command "true" and then whatever the test adds. */
static wire_t *start_wire(void) {
  wire_t *w = wire_new();
  put_str(w, 1, "true");
  return w;
}

START_TEST(test_well_formed_start) {
  wire_t *w = start_wire();
  Jobworker__V1__JobRequest *r = NULL;
  static const uint8_t limits[] = {0x08, 0x80, 0x80, 0x40, /* memory 1 MiB */
                                   0x28, 0x10};            /* pids 16 */
  static const uint8_t isolation[] = {0x08, 0x01, 0x18, 0x01};
  put_str(w, 2, "-c");
  put_str(w, 2, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
  put_str(w, 3, "A=1");
  put_str(w, 3, "EMPTY=");
  put_str(w, 4, "/");
  put_len(w, 5, limits, sizeof(limits));
  put_len(w, 6, isolation, sizeof(isolation));
  /* Unknown fields of wire types 0, 1, 2 and 5 are skipped. */
  put_tag(w, 99, 0);
  put_varint(w, UINT64_MAX);
  put_tag(w, 100, 1);
  put_bytes(w, "12345678", 8);
  put_len(w, 101, "\xff\x00", 2);
  put_tag(w, 102, 5);
  put_bytes(w, "1234", 4);
  ck_assert_int_eq(
      jw_request_decode_start(w->b, w->n, NULL, &r, msg, sizeof(msg)), 0);
  ck_assert_str_eq(r->command, "true");
  ck_assert_uint_eq(r->n_args, 2);
  ck_assert_str_eq(
      r->args[1], "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
  ck_assert_uint_eq(r->n_env, 2);
  ck_assert_str_eq(r->working_dir, "/");
  ck_assert_ptr_nonnull(r->limits);
  ck_assert_int_eq(r->limits->memory_bytes, 1 << 20);
  ck_assert_int_eq(r->limits->pids, 16);
  ck_assert(r->isolation->pid && !r->isolation->mount && r->isolation->network);
  /* The job it asks for. */
  jw_job_spec_t spec = jw_request_job_spec(r);
  ck_assert_str_eq(spec.command, "true");
  ck_assert_uint_eq(spec.nargs, 2);
  ck_assert_str_eq(spec.args[0], "-c");
  ck_assert_uint_eq(spec.nenv, 2);
  ck_assert_str_eq(spec.env[1], "EMPTY=");
  ck_assert_str_eq(spec.working_dir, "/");
  jobworker__v1__job_request__free_unpacked(r, NULL);
  free(w);
}
END_TEST

/* A NUL byte in any string field, top level or repeated, is refused. */
START_TEST(test_nul_refused) {
  static const struct {
    uint64_t field;
    const char *name;
  } f[] = {{1, "command"}, {2, "args[0]"}, {3, "env[0]"}, {4, "working_dir"}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    wire_t *w = f[i].field == 1 ? wire_new() : start_wire();
    char want[96];
    put_len(w, f[i].field, "A=b\0c", 5);
    ck_assert_int_eq(start(w, NULL), JW_GRPC_INVALID_ARGUMENT);
    snprintf(want, sizeof(want), "%s contains a NUL byte", f[i].name);
    assert_msg(want);
    free(w);
  }
  /* The index names the entry. */
  wire_t *w = start_wire();
  put_str(w, 2, "a");
  put_str(w, 2, "b");
  put_len(w, 2, "\0", 1);
  refused(w, NULL, "args[2] contains a NUL byte");
}
END_TEST

START_TEST(test_invalid_utf8_refused) {
  static const char *const bad[] = {
      "\x80",             /* a lone continuation byte */
      "\xc0\x80",         /* overlong NUL */
      "\xc1\xbf",         /* overlong */
      "\xe0\x80\xaf",     /* overlong below U+0800 */
      "\xed\xa0\x80",     /* a surrogate */
      "\xf0\x80\x80\xaf", /* overlong below U+10000 */
      "\xf4\x90\x80\x80", /* past U+10FFFF */
      "\xf5\x80\x80\x80", /* not a lead byte */
      "\xff",
      "\xe2\x82",     /* cut short */
      "a\xc3",        /* cut short at the end */
      "\xc3\x28",     /* a continuation that is not one */
      "\xe2\x28\xa1", /* likewise, in a 3-byte form */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    wire_t *w = start_wire();
    put_str(w, 2, "ok");
    put_str(w, 2, bad[i]);
    ck_assert_msg(start(w, NULL) == JW_GRPC_INVALID_ARGUMENT, "bad %zu taken",
                  i);
    assert_msg("args[1] is not valid UTF-8");
    free(w);
  }
  wire_t *w = wire_new();
  put_str(w, 1, "\xed\xbf\xbf");
  refused(w, NULL, "command is not valid UTF-8");
}
END_TEST

/*
 * Encodings after a Start's first field (command "true", 6 bytes), or
 * alone (bare): taken (msg NULL) or refused with msg.
 */
static const struct {
  const char *what;
  int bare;
  const char *bytes;
  size_t n;
  const char *msg;
} encodings[] = {
    /* Varints: ten bytes is the longest a 64-bit one is. */
    {"field 99, a 10-byte varint", 0,
     "\x98\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, NULL},
    {"field 99, an 11-byte varint", 0,
     "\x98\x06\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 13,
     "malformed message: bad varint in field 99"},
    {"field 99, a varint past 64 bits", 0,
     "\x98\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 12,
     "malformed message: bad varint in field 99"},
    {"field 99, a varint past the end", 0, "\x98\x06\x80", 3,
     "malformed message: bad varint in field 99"},
    {"a 6-byte tag for field 1", 1, "\x8a\x80\x80\x80\x80\x00", 6,
     "malformed message: bad tag at byte 0"},
    {"a 6-byte length", 0, "\x12\x81\x80\x80\x80\x80\x00", 7,
     "malformed message: the length of args[0] runs past the end"},
    {"a length past the end", 0, "\x22\x0a/tmp", 6,
     "malformed message: the length of working_dir runs past the end"},
    /* Field numbers: 1 to 2^29 - 1. */
    {"field 0", 0, "\x00\x01", 2,
     "malformed message: invalid field number 0 at byte 6"},
    {"field 2^29", 0, "\x80\x80\x80\x80\x10\x01", 6,
     "malformed message: invalid field number 536870912 at byte 6"},
    {"field 2^29 - 1", 0, "\xf8\xff\xff\xff\x0f\x01", 6, NULL},
    /* Wire types 3, 4 (groups), 6 and 7 (none), on unknown fields... */
    {"wire type 3", 0, "\x93\x03", 2,
     "malformed message: unsupported wire type 3 in field 50"},
    {"wire type 4", 0, "\x94\x03", 2,
     "malformed message: unsupported wire type 4 in field 50"},
    {"wire type 6", 0, "\x96\x03", 2,
     "malformed message: unsupported wire type 6 in field 50"},
    {"wire type 7", 0, "\x97\x03", 2,
     "malformed message: unsupported wire type 7 in field 50"},
    /* ...and on known ones, whose type they do not match. */
    {"working_dir, wire type 3", 0, "\x23", 1,
     "malformed message: working_dir has wire type 3"},
    {"working_dir, wire type 4", 0, "\x24", 1,
     "malformed message: working_dir has wire type 4"},
    {"working_dir, wire type 6", 0, "\x26", 1,
     "malformed message: working_dir has wire type 6"},
    {"working_dir, wire type 7", 0, "\x27", 1,
     "malformed message: working_dir has wire type 7"},
    {"a string as a varint", 0, "\x18\x05", 2,
     "malformed message: env[0] has wire type 0"},
    {"a nested int64 as a string", 0, "\x2a\x03\x2a\x01x", 5,
     "malformed message: limits.pids has wire type 2"},
    /* Fixed-size fields cut short. */
    {"a fixed64 cut short", 0,
     "\xe1\x03"
     "1234567",
     9, "malformed message: field 60 is cut short"},
    {"a fixed32 cut short", 0,
     "\xed\x03"
     "123",
     5, "malformed message: field 61 is cut short"},
    {"a fixed64 and a fixed32", 0,
     "\xe1\x03"
     "12345678"
     "\xed\x03"
     "1234",
     16, NULL},
};

START_TEST(test_encodings) {
  for (size_t i = 0; i < sizeof(encodings) / sizeof(encodings[0]); i++) {
    wire_t *w = encodings[i].bare ? wire_new() : start_wire();
    put_bytes(w, encodings[i].bytes, encodings[i].n);
    int code = start(w, NULL);
    if (encodings[i].msg == NULL) {
      ck_assert_msg(code == 0, "%s: refused: %s", encodings[i].what, msg);
    } else {
      ck_assert_msg(code == JW_GRPC_INVALID_ARGUMENT, "%s: taken",
                    encodings[i].what);
      ck_assert_msg(strcmp(msg, encodings[i].msg) == 0,
                    "%s: message \"%s\", want \"%s\"", encodings[i].what, msg,
                    encodings[i].msg);
    }
    free(w);
  }
}
END_TEST

START_TEST(test_caps) {
  jw_request_limits_t lim = {
      .max_args = 3, .max_env = 2, .max_request_strings = 64};
  wire_t *w = start_wire();
  for (int i = 0; i < 3; i++)
    put_str(w, 2, "a");
  one_more_refused(w, &lim, 2, "a", "more than 3 args entries (--max-args)");

  w = start_wire();
  put_str(w, 3, "A=1");
  put_str(w, 3, "B=2");
  one_more_refused(w, &lim, 3, "C=3", "more than 2 env entries (--max-env)");

  /* All strings together: command 4 bytes + 60 = 64 fits, 65 does not. */
  char s[61];
  memset(s, 'x', 60);
  s[60] = '\0';
  w = start_wire();
  put_str(w, 4, s);
  put_tag(w, 4, 2); /* a second working_dir: the last one counts */
  put_varint(w, 0);
  ck_assert_int_eq(start(w, &lim), 0);
  free(w);
  w = start_wire();
  put_str(w, 2, s);
  put_str(w, 3, "=");
  refused(w, &lim,
          "the request's strings take more than 64 bytes "
          "(--max-request-strings)");

  /* 0: no cap. */
  jw_request_limits_t none = {0};
  w = start_wire();
  for (int i = 0; i < 2000; i++) {
    put_str(w, 2, "a");
    put_str(w, 3, "K=v");
  }
  ck_assert_int_eq(start(w, &none), 0);
  free(w);
  /* The defaults (NULL): 1024 args, 256 env entries, 256 KiB of strings. */
  w = start_wire();
  for (int i = 0; i < 1024; i++)
    put_str(w, 2, "a");
  one_more_refused(w, NULL, 2, "a", "more than 1024 args entries (--max-args)");
  w = start_wire();
  for (int i = 0; i < 257; i++)
    put_str(w, 3, "K=v");
  refused(w, NULL, "more than 256 env entries (--max-env)");
  w = start_wire();
  char *big = malloc(256 * 1024 + 1);
  ck_assert_ptr_nonnull(big);
  memset(big, 'y', 256 * 1024 - 4);
  big[256 * 1024 - 4] = '\0';
  put_str(w, 2, big);
  ck_assert_int_eq(start(w, NULL), 0);
  put_str(w, 2, "z");
  ck_assert_int_eq(start(w, NULL), JW_GRPC_INVALID_ARGUMENT);
  assert_msg("the request's strings take more than 262144 bytes "
             "(--max-request-strings)");
  free(big);
  free(w);
}
END_TEST

/* A field without a cap of its own may occur 64 times in one message. */
START_TEST(test_repeats_capped) {
  wire_t *w = wire_new();
  for (int i = 0; i < 64; i++)
    put_str(w, 1, "true");
  one_more_refused(w, NULL, 1, "true", "command occurs more than 64 times");
  w = start_wire();
  for (int i = 0; i < 65; i++) {
    put_tag(w, 77, 0);
    put_varint(w, 1);
  }
  refused(w, NULL, "field 77 occurs more than 64 times");
  /* Within a nested message too. */
  w = start_wire();
  uint8_t lim[200];
  size_t n = 0;
  for (int i = 0; i < 65; i++) {
    lim[n++] = 0x28;
    lim[n++] = 1;
  }
  put_len(w, 5, lim, n);
  refused(w, NULL, "limits.pids occurs more than 64 times");
}
END_TEST

/*
 * w with PATH_MAX bytes more in field (named name) is refused: longer than
 * PATH_MAX - 1 bytes. Frees w.
 */
static void refused_too_long(wire_t *w, uint64_t field, const char *name) {
  char want[64];
  char *s = malloc(PATH_MAX + 1);
  ck_assert_ptr_nonnull(s);
  memset(s, 'a', PATH_MAX);
  s[PATH_MAX] = '\0';
  put_str(w, field, s);
  free(s);
  snprintf(want, sizeof(want), "%s is longer than %d bytes", name,
           PATH_MAX - 1);
  refused(w, NULL, want);
}

/* What the wire walk cannot judge, decode_start checks after unpacking. */
START_TEST(test_start_fields) {
  wire_t *w = wire_new();
  put_str(w, 2, "x");
  refused(w, NULL, "command is empty");

  refused_too_long(wire_new(), 1, "command");
  refused_too_long(start_wire(), 4, "working_dir");

  w = start_wire();
  put_str(w, 3, "A=1");
  put_str(w, 3, "NOEQUALS\x01");
  refused(w, NULL, "env[1] \"NOEQUALS\\x01\" is not KEY=VALUE");
  w = start_wire();
  put_str(w, 3, "=v");
  refused(w, NULL, "env[0] \"=v\" is not KEY=VALUE");

  w = start_wire();
  put_str(w, 4, "/nonexistent-jw-dir");
  refused(w, NULL,
          "working directory /nonexistent-jw-dir: No such file or "
          "directory");
  w = start_wire();
  put_str(w, 4, "/dev/null");
  refused(w, NULL, "working directory /dev/null is not a directory");
}
END_TEST

/* Status, Stop and GetOutput: one string field, the id. */
START_TEST(test_id_requests) {
  char *id = NULL;
  Jobworker__V1__StopRequest stop = JOBWORKER__V1__STOP_REQUEST__INIT;
  Jobworker__V1__GetOutputRequest get = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  Jobworker__V1__StatusRequest status = JOBWORKER__V1__STATUS_REQUEST__INIT;
  uint8_t buf[128];
  size_t n;

  /* What protobuf-c itself encodes for each of the three. */
  stop.id = "0123456789abcdef0123456789abcdef";
  n = jobworker__v1__stop_request__pack(&stop, buf);
  ck_assert_int_eq(jw_request_decode_id(buf, n, &id, msg, sizeof(msg)), 0);
  ck_assert_str_eq(id, stop.id);
  free(id);
  get.id = "abc";
  n = jobworker__v1__get_output_request__pack(&get, buf);
  ck_assert_int_eq(jw_request_decode_id(buf, n, &id, msg, sizeof(msg)), 0);
  ck_assert_str_eq(id, "abc");
  free(id);
  status.id = "";
  n = jobworker__v1__status_request__pack(&status, buf);
  ck_assert_int_eq(jw_request_decode_id(buf, n, &id, msg, sizeof(msg)), 0);
  ck_assert_str_eq(id, "");
  free(id);

  wire_t *w = wire_new();
  put_len(w, 1, "ab\0cd", 5);
  ck_assert_int_eq(jw_request_decode_id(w->b, w->n, &id, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_null(id);
  assert_msg("id contains a NUL byte");
  w->n = 0;
  put_str(w, 1, "\xc3");
  ck_assert_int_eq(jw_request_decode_id(w->b, w->n, &id, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("id is not valid UTF-8");
  w->n = 0;
  put_tag(w, 1, 0);
  put_varint(w, 1);
  ck_assert_int_eq(jw_request_decode_id(w->b, w->n, &id, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("malformed message: id has wire type 0");
  w->n = 0;
  put_tag(w, 2, 3);
  ck_assert_int_eq(jw_request_decode_id(w->b, w->n, &id, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("malformed message: unsupported wire type 3 in field 2");
  /* The string byte cap bounds an id too. */
  w->n = 0;
  char *big = malloc(256 * 1024 + 2);
  ck_assert_ptr_nonnull(big);
  memset(big, 'a', 256 * 1024 + 1);
  big[256 * 1024 + 1] = '\0';
  put_str(w, 1, big);
  ck_assert_int_eq(jw_request_decode_id(w->b, w->n, &id, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("the request's strings take more than 262144 bytes "
             "(--max-request-strings)");
  ck_assert_ptr_null(id);
  free(big);
  free(w);
}
END_TEST

START_TEST(test_list_request) {
  wire_t *w = wire_new();
  ck_assert_int_eq(jw_request_decode_list(w->b, 0, msg, sizeof(msg)), 0);
  /* Unknown fields are skipped, but still checked on the wire. */
  put_str(w, 1, "future");
  put_tag(w, 2, 0);
  put_varint(w, 3);
  ck_assert_int_eq(jw_request_decode_list(w->b, w->n, msg, sizeof(msg)), 0);
  put_tag(w, 3, 7);
  ck_assert_int_eq(jw_request_decode_list(w->b, w->n, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("malformed message: unsupported wire type 7 in field 3");
  w->n = 0;
  put_tag(w, 1, 2);
  put_varint(w, 100);
  ck_assert_int_eq(jw_request_decode_list(w->b, w->n, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  assert_msg("malformed message: the length of field 1 runs past the end");
  free(w);
}
END_TEST

START_TEST(test_quote) {
  char buf[300], small[12];
  char s[100];
  ck_assert_str_eq(jw_request_quote("plain", buf, sizeof(buf)), "plain");
  ck_assert_str_eq(jw_request_quote("a\nb\x7f", buf, sizeof(buf)),
                   "a\\x0ab\\x7f");
  memset(s, 'q', 99);
  s[99] = '\0';
  jw_request_quote(s, buf, sizeof(buf));
  ck_assert_uint_eq(strlen(buf), 64 + 3);
  ck_assert_str_eq(buf + 64, "...");
  s[64] = '\0';
  ck_assert_str_eq(jw_request_quote(s, buf, sizeof(buf)), s);
  /* A small buffer ends with "..." and is never overrun. */
  jw_request_quote("\x01\x02\x03\x04", small, sizeof(small));
  ck_assert_str_eq(small, "\\x01\\x02...");
}
END_TEST

/* Signal names as kill(1) takes them: with or without SIG, any case. */
START_TEST(test_signal_names) {
  ck_assert_int_eq(jw_request_signal_number("USR1"), SIGUSR1);
  ck_assert_int_eq(jw_request_signal_number("SIGUSR1"), SIGUSR1);
  ck_assert_int_eq(jw_request_signal_number("sigterm"), SIGTERM);
  ck_assert_int_eq(jw_request_signal_number("Kill"), SIGKILL);
  ck_assert_int_eq(jw_request_signal_number("RTMIN"), SIGRTMIN);
  ck_assert_int_eq(jw_request_signal_number("SIGRTMIN+2"), SIGRTMIN + 2);
  ck_assert_int_eq(jw_request_signal_number("RTMAX-1"), SIGRTMAX - 1);
  static const char *const bad[] = {
      "",         "SIG",       "FOO",    "9",
      "RTMIN-1",  "RTMAX+1",   "RTMIN+", "RTMIN+x",
      "RTMIN+99", "SIGSIGHUP", "HUP ",   "averyveryverylongname"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(jw_request_signal_number(bad[i]) == 0, "%s", bad[i]);
}
END_TEST

START_TEST(test_job_control_requests) {
  Jobworker__V1__SignalRequest sr = JOBWORKER__V1__SIGNAL_REQUEST__INIT;
  Jobworker__V1__GetOutputRequest gr = JOBWORKER__V1__GET_OUTPUT_REQUEST__INIT;
  Jobworker__V1__StopRequest st = JOBWORKER__V1__STOP_REQUEST__INIT;
  Jobworker__V1__GetOutputRequest *g;
  uint8_t buf[128];
  char *id;
  int sig;
  uint64_t ms;
  size_t n;

  sr.id = "j";
  sr.signal_name = "usr2";
  n = jobworker__v1__signal_request__pack(&sr, buf);
  ck_assert_int_eq(
      jw_request_decode_signal(buf, n, &id, &sig, msg, sizeof(msg)), 0);
  ck_assert_str_eq(id, "j");
  ck_assert_int_eq(sig, SIGUSR2);
  free(id);
  sr.signal_name = "";
  sr.signal = 64;
  n = jobworker__v1__signal_request__pack(&sr, buf);
  ck_assert_int_eq(
      jw_request_decode_signal(buf, n, &id, &sig, msg, sizeof(msg)), 0);
  ck_assert_int_eq(sig, 64);
  free(id);
  static const struct {
    int sig;
    const char *name, *want;
  } bad[] = {{0, "", "no signal: give signal (1..64) or signal_name"},
             {65, "", "signal 65 is out of range (1..64)"},
             {-9, "", "signal -9 is out of range (1..64)"},
             {9, "KILL", "give signal or signal_name, not both"},
             {0, "NOPE", "unknown signal_name NOPE"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sr.signal = bad[i].sig;
    sr.signal_name = (char *)bad[i].name;
    n = jobworker__v1__signal_request__pack(&sr, buf);
    ck_assert_int_eq(
        jw_request_decode_signal(buf, n, &id, &sig, msg, sizeof(msg)),
        JW_GRPC_INVALID_ARGUMENT);
    ck_assert_ptr_null(id);
    assert_msg(bad[i].want);
  }

  gr.id = "j";
  gr.offset = 1ULL << 40;
  gr.tail_lines = 1000000;
  gr.no_follow = 1;
  n = jobworker__v1__get_output_request__pack(&gr, buf);
  ck_assert_int_eq(jw_request_decode_output(buf, n, &g, msg, sizeof(msg)), 0);
  ck_assert_uint_eq(g->offset, 1ULL << 40);
  ck_assert_uint_eq(g->tail_lines, 1000000);
  ck_assert(g->no_follow);
  jobworker__v1__get_output_request__free_unpacked(g, NULL);
  gr.tail_lines = 1000001;
  n = jobworker__v1__get_output_request__pack(&gr, buf);
  ck_assert_int_eq(jw_request_decode_output(buf, n, &g, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_null(g);
  assert_msg("tail_lines 1000001 is over the maximum 1000000");

  st.id = "j";
  st.timeout_ms = 2500;
  n = jobworker__v1__stop_request__pack(&st, buf);
  ck_assert_int_eq(jw_request_decode_stop(buf, n, &id, &ms, msg, sizeof(msg)),
                   0);
  ck_assert_uint_eq(ms, 2500);
  free(id);
  st.timeout_ms = -1;
  n = jobworker__v1__stop_request__pack(&st, buf);
  ck_assert_int_eq(jw_request_decode_stop(buf, n, &id, &ms, msg, sizeof(msg)),
                   JW_GRPC_INVALID_ARGUMENT);
  ck_assert_ptr_null(id);
  assert_msg("timeout_ms -1 is negative (0: the server's grace period)");
}
END_TEST

int main(void) {
  Suite *s = suite_create("request");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_well_formed_start,
                                   test_nul_refused,
                                   test_invalid_utf8_refused,
                                   test_encodings,
                                   test_caps,
                                   test_repeats_capped,
                                   test_start_fields,
                                   test_id_requests,
                                   test_list_request,
                                   test_quote,
                                   test_signal_names,
                                   test_job_control_requests,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
