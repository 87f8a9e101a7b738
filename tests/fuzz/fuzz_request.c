/*
 * Fuzz target: gRPC message deframing and JobWorker request decoding.
 *
 * Input: one byte that picks how the rest is cut into pieces, then the
 * bytes of a request body as they travel in HTTP/2 DATA frames (5-byte
 * prefix, message, prefix, message, ...). The body goes through
 * jw_grpc_deframer_next in those pieces and every message it yields
 * through each of the decoders the service uses (server/request.c), as the
 * handlers of Start, Status/Stop/GetOutput and List would.
 *
 * Oracles: the pieces give the same messages and the same error as a
 * reference deframer reading the whole body at once; a request a decoder
 * accepts is well formed to an independent strict wire walk, has no NUL
 * byte and no invalid UTF-8 in any string field on the wire, decoded
 * strings as long as the wire's (nothing cut), no more args, env entries
 * and string bytes than the caps, a non-empty command and KEY=VALUE env
 * entries; a refusal is INVALID_ARGUMENT (RESOURCE_EXHAUSTED: memory);
 * quoting what a client sent never writes past its buffer.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../test_common.h"
#include "fuzz.h"
#include "jobworker/error.h"
#include "jobworker/grpc.h"
#include "request.h"

/* Small enough that the fuzzer reaches the limit, like the server's 4 MiB. */
#define MAX_MESSAGE (64 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

/* What the oracle's own wire walk saw of the string fields 1..4. */
typedef struct {
  size_t n[5];        /* length-delimited occurrences of each */
  size_t last_len[5]; /* the length of the last one */
  size_t bytes;       /* all of them together */
  int other_type;     /* one of them came with another wire type */
  int bad_string;     /* one of them holds a NUL or invalid UTF-8 */
  size_t args_len[64], env_len[64]; /* the first occurrences' lengths */
} wire_seen_t;

/*
 * Walks a protobuf message on the wire as a strict reader would (field
 * numbers 1 to 2^29-1, wire types 0, 1, 2, 5, nothing past the end),
 * noting the string fields numbered 1..max_string. Returns -1 when the
 * message is not well formed, 0 otherwise.
 */
static int wire_walk(const uint8_t *p, size_t len, uint64_t max_string,
                     wire_seen_t *seen) {
  size_t i = 0;
  memset(seen, 0, sizeof(*seen));
  while (i < len) {
    uint64_t key = 0;
    int k;
    for (k = 0; k < 10 && i < len; k++) {
      key |= (uint64_t)(p[i] & 0x7f) << (7 * k);
      if (!(p[i++] & 0x80))
        break;
    }
    if (k == 10 || (p[i - 1] & 0x80))
      return -1;
    uint64_t field = key >> 3;
    if (field == 0 || field > 536870911u)
      return -1;
    if (field <= max_string && (key & 7) != 2)
      seen->other_type = 1;
    switch (key & 7) {
    case 0:
      for (k = 0; k < 10 && i < len; k++)
        if (!(p[i++] & 0x80))
          break;
      if (k == 10 || (p[i - 1] & 0x80))
        return -1;
      break;
    case 1:
      if (len - i < 8)
        return -1;
      i += 8;
      break;
    case 5:
      if (len - i < 4)
        return -1;
      i += 4;
      break;
    case 2: {
      uint64_t v = 0;
      for (k = 0; k < 10 && i < len; k++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * k);
        if (!(p[i++] & 0x80))
          break;
      }
      if (k == 10 || (p[i - 1] & 0x80) || v > len - i)
        return -1;
      if (field <= max_string) {
        if (memchr(p + i, 0, (size_t)v) != NULL ||
            !test_utf8_valid(p + i, (size_t)v))
          seen->bad_string = 1;
        if (field == 2 && seen->n[2] < 64)
          seen->args_len[seen->n[2]] = (size_t)v;
        if (field == 3 && seen->n[3] < 64)
          seen->env_len[seen->n[3]] = (size_t)v;
        seen->n[field]++;
        seen->last_len[field] = (size_t)v;
        seen->bytes += (size_t)v;
      }
      i += (size_t)v;
      break;
    }
    default:
      return -1;
    }
  }
  return 0;
}

static void quote_all(const char *s) {
  /* The service quotes into 80 bytes; other sizes probe the bounds. */
  static const size_t sizes[] = {8, 9, 12, 16, 33, 64, 80, 81, 200};
  for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
    char *buf = malloc(sizes[k]);
    FUZZ_CHECK(buf != NULL);
    const char *q = jw_request_quote(s, buf, sizes[k]);
    FUZZ_CHECK(q == buf);
    FUZZ_CHECK(memchr(buf, '\0', sizes[k]) != NULL);
    free(buf);
  }
}

/* A decoded string is exactly what the wire carried: nothing was cut. */
static void check_len(const char *decoded, size_t wire_len) {
  FUZZ_CHECK(strlen(decoded) == wire_len);
}

static void decode_all(const uint8_t *msg, size_t len) {
  static const jw_request_limits_t lim = JW_REQUEST_LIMITS_DEFAULT;
  char text[256];
  wire_seen_t seen;
  /* The decoders read exactly len bytes: give them no slack. */
  uint8_t *m = malloc(len > 0 ? len : 1);
  FUZZ_CHECK(m != NULL);
  if (len > 0)
    memcpy(m, msg, len);

  Jobworker__V1__JobRequest *r = NULL;
  int code = jw_request_decode_start(m, len, NULL, &r, text, sizeof(text));
  int wire = wire_walk(m, len, 4, &seen);
  if (code == 0) {
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(wire == 0);
    FUZZ_CHECK(!seen.other_type && !seen.bad_string);
    FUZZ_CHECK(seen.n[2] == r->n_args && seen.n[3] == r->n_env);
    FUZZ_CHECK(r->n_args <= lim.max_args && r->n_env <= lim.max_env);
    FUZZ_CHECK(seen.bytes <= lim.max_request_strings);
    check_len(r->command, seen.last_len[1]);
    check_len(r->working_dir, seen.last_len[4]);
    for (size_t i = 0; i < r->n_args && i < 64; i++)
      check_len(r->args[i], seen.args_len[i]);
    for (size_t i = 0; i < r->n_env && i < 64; i++)
      check_len(r->env[i], seen.env_len[i]);
    FUZZ_CHECK(r->command[0] != '\0');
    for (size_t i = 0; i < r->n_env; i++) {
      const char *eq = strchr(r->env[i], '=');
      FUZZ_CHECK(eq != NULL && eq != r->env[i]);
    }
    quote_all(r->command);
    for (size_t i = 0; i < r->n_args; i++)
      quote_all(r->args[i]);
    jobworker__v1__job_request__free_unpacked(r, NULL);
  } else {
    FUZZ_CHECK(r == NULL);
    FUZZ_CHECK(code == JW_GRPC_INVALID_ARGUMENT ||
               code == JW_GRPC_RESOURCE_EXHAUSTED);
    FUZZ_CHECK(memchr(text, '\0', sizeof(text)) != NULL);
  }

  char *id = NULL;
  code = jw_request_decode_id(m, len, &id, text, sizeof(text));
  wire = wire_walk(m, len, 1, &seen);
  if (code == 0) {
    FUZZ_CHECK(id != NULL);
    FUZZ_CHECK(wire == 0);
    FUZZ_CHECK(!seen.other_type && !seen.bad_string);
    check_len(id, seen.last_len[1]);
    quote_all(id);
    free(id);
  } else {
    FUZZ_CHECK(id == NULL);
    FUZZ_CHECK(code == JW_GRPC_INVALID_ARGUMENT ||
               code == JW_GRPC_RESOURCE_EXHAUSTED);
  }

  /* The job control requests: what decodes obeys its caps. */
  Jobworker__V1__GetOutputRequest *g = NULL;
  code = jw_request_decode_output(m, len, &g, text, sizeof(text));
  if (code == 0) {
    FUZZ_CHECK(g != NULL && g->tail_lines <= JW_REQUEST_MAX_TAIL_LINES);
    jobworker__v1__get_output_request__free_unpacked(g, NULL);
  } else {
    FUZZ_CHECK(g == NULL);
    FUZZ_CHECK(code == JW_GRPC_INVALID_ARGUMENT ||
               code == JW_GRPC_RESOURCE_EXHAUSTED);
  }
  uint64_t grace = 0;
  code = jw_request_decode_stop(m, len, &id, &grace, text, sizeof(text));
  FUZZ_CHECK((code == 0) == (id != NULL));
  FUZZ_CHECK(code == 0 || code == JW_GRPC_INVALID_ARGUMENT ||
             code == JW_GRPC_RESOURCE_EXHAUSTED);
  FUZZ_CHECK(grace <= INT64_MAX);
  free(id);
  int sig = 0;
  code = jw_request_decode_signal(m, len, &id, &sig, text, sizeof(text));
  FUZZ_CHECK((code == 0) == (id != NULL));
  FUZZ_CHECK(code != 0 || (sig >= 1 && sig <= 64));
  FUZZ_CHECK(memchr(text, '\0', sizeof(text)) != NULL);
  free(id);
  if (len < 32) {
    char name[32];
    memcpy(name, m, len);
    name[len] = '\0';
    sig = jw_request_signal_number(name);
    FUZZ_CHECK(sig >= 0 && sig <= 64);
  }

  code = jw_request_decode_list(m, len, text, sizeof(text));
  wire = wire_walk(m, len, 0, &seen);
  FUZZ_CHECK(code == 0 || code == JW_GRPC_INVALID_ARGUMENT);
  FUZZ_CHECK(code != 0 || wire == 0);
  free(m);
}

typedef struct {
  const uint8_t *msg;
  size_t len;
} ref_msg_t;

/*
 * The reference: reads the whole body at once. Returns the outcome at the
 * end (0: clean end, 2: partial message, or the deframer's error code)
 * with the messages before it in out (at most cap).
 */
static int ref_deframe(const uint8_t *p, size_t n, ref_msg_t *out, size_t cap,
                       size_t *count) {
  *count = 0;
  while (n > 0) {
    if (n < JW_GRPC_PREFIX_LEN)
      return 2;
    size_t need = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 |
                  (size_t)p[4];
    if (p[0] != 0)
      return JW_EINVAL;
    if (need > MAX_MESSAGE)
      return JW_ELIMIT;
    if (n - JW_GRPC_PREFIX_LEN < need)
      return 2;
    if (*count < cap)
      out[*count] = (ref_msg_t){p + JW_GRPC_PREFIX_LEN, need};
    (*count)++;
    p += JW_GRPC_PREFIX_LEN + need;
    n -= JW_GRPC_PREFIX_LEN + need;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint32_t seed = data[0];
  const uint8_t *body = data + 1;
  size_t blen = size - 1;

  enum { CAP = 64 };
  ref_msg_t ref[CAP];
  size_t nref;
  int want = ref_deframe(body, blen, ref, CAP, &nref);

  jw_grpc_deframer_t d;
  jw_grpc_deframer_init(&d, MAX_MESSAGE);
  size_t got = 0, off = 0;
  int outcome = 0;
  while (off < blen && outcome == 0) {
    /* Piece sizes from a small generator: 1 byte up to everything. */
    size_t piece;
    seed = seed * 1103515245u + 12345u;
    switch ((seed >> 16) & 3) {
    case 0:
      piece = 1 + ((seed >> 8) & 7);
      break;
    case 1:
      piece = 1 + ((seed >> 4) & 1023);
      break;
    default:
      piece = blen - off;
      break;
    }
    if (piece > blen - off)
      piece = blen - off;
    /* Each piece in a buffer of its own size, as DATA chunks arrive. */
    uint8_t *chunk = malloc(piece);
    FUZZ_CHECK(chunk != NULL);
    memcpy(chunk, body + off, piece);
    const uint8_t *p = chunk;
    size_t n = piece;
    while (n > 0) {
      const uint8_t *msg;
      size_t mlen;
      int r = jw_grpc_deframer_next(&d, &p, &n, &msg, &mlen);
      if (r == 0) {
        FUZZ_CHECK(n == 0);
        break;
      }
      if (r < 0) {
        outcome = r;
        break;
      }
      FUZZ_CHECK(r == 1);
      if (got < CAP && got < nref) {
        FUZZ_CHECK(ref[got].len == mlen);
        FUZZ_CHECK(mlen == 0 || memcmp(ref[got].msg, msg, mlen) == 0);
      }
      got++;
      decode_all(msg, mlen);
    }
    off += piece;
    free(chunk);
  }
  if (outcome == 0 && jw_grpc_deframer_partial(&d))
    outcome = 2;
  /* A prefix split across pieces leaves no partial state once complete. */
  if (outcome == 0 && d.need > 0 && d.len < d.need)
    outcome = 2;
  FUZZ_CHECK(got == nref);
  FUZZ_CHECK(outcome == want);
  jw_grpc_deframer_reset(&d);
  return 0;
}
