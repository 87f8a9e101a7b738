/*
 * gRPC-over-HTTP/2 pieces that need no connection: status codes, message
 * framing, grpc-timeout and grpc-message. Pure functions, fuzzable.
 */
#ifndef JOBWORKER_GRPC_H
#define JOBWORKER_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* gRPC status codes; a separate enum, never mixed with error codes. */
typedef enum {
  JW_GRPC_OK = 0,
  JW_GRPC_CANCELLED = 1,
  JW_GRPC_UNKNOWN = 2,
  JW_GRPC_INVALID_ARGUMENT = 3,
  JW_GRPC_DEADLINE_EXCEEDED = 4,
  JW_GRPC_NOT_FOUND = 5,
  JW_GRPC_ALREADY_EXISTS = 6,
  JW_GRPC_PERMISSION_DENIED = 7,
  JW_GRPC_RESOURCE_EXHAUSTED = 8,
  JW_GRPC_FAILED_PRECONDITION = 9,
  JW_GRPC_ABORTED = 10,
  JW_GRPC_OUT_OF_RANGE = 11,
  JW_GRPC_UNIMPLEMENTED = 12,
  JW_GRPC_INTERNAL = 13,
  JW_GRPC_UNAVAILABLE = 14,
  JW_GRPC_DATA_LOSS = 15,
  JW_GRPC_UNAUTHENTICATED = 16
} jw_grpc_status_t;

/* "NOT_FOUND" etc.; "UNKNOWN_STATUS" for values outside 0..16. */
const char *jw_grpc_status_name(int status);

/* ---- Message framing -------------------------------------------------- */

/* The length prefix: a compressed flag byte and a big-endian length. */
#define JW_GRPC_PREFIX_LEN 5

/* Writes the 5-byte prefix of an uncompressed message of len bytes. */
void jw_grpc_prefix_write(uint8_t out[JW_GRPC_PREFIX_LEN], uint32_t len);

/*
 * Reassembles length-prefixed messages from DATA payloads split anywhere.
 * A message larger than max_message is refused as soon as its prefix is
 * read, before any of it is buffered; a message that arrives whole in one
 * input chunk is returned in place without a copy. The buffer of a
 * message that arrives in pieces grows with what arrived (doubling, up to
 * the announced length), never to the announced length at once: a peer
 * that announces 4 MiB and sends 10 bytes costs about 16 KiB.
 */
typedef struct {
  uint8_t hdr[JW_GRPC_PREFIX_LEN];
  size_t hdr_len;     /* prefix bytes gathered so far */
  uint8_t *buf;       /* the message being gathered, or NULL */
  size_t cap;         /* bytes allocated at buf */
  size_t len;         /* bytes of it gathered */
  size_t need;        /* its length from the prefix */
  size_t max_message; /* the cap */
  uint8_t flag;       /* the compressed flag of the last prefix */
  bool compressed_ok; /* messages with the compressed flag are taken */
} jw_grpc_deframer_t;

void jw_grpc_deframer_init(jw_grpc_deframer_t *d, size_t max_message);

/* Frees the partial message, if any; the deframer may be reused. */
void jw_grpc_deframer_reset(jw_grpc_deframer_t *d);

/*
 * Consumes input from p and n (advancing both) up to the end of the next
 * complete message. Returns 1 with msg and len set to that message (valid
 * until the next call or reset), 0 when the input is used up without
 * completing one, JW_ELIMIT when a prefix announces more than max_message
 * bytes, or JW_EINVAL when the compressed flag is neither 0 nor, with
 * compressed_ok set (the stream has a grpc-encoding its reader decodes), 1;
 * d->flag tells the flag of the message returned or refused. The length
 * limit applies to the message as framed, compressed or not. After an
 * error the deframer must be reset before reuse.
 */
int jw_grpc_deframer_next(jw_grpc_deframer_t *d, const uint8_t **p, size_t *n,
                          const uint8_t **msg, size_t *len);

/* True when part of a message (or of its prefix) is still missing. */
bool jw_grpc_deframer_partial(const jw_grpc_deframer_t *d);

/* ---- grpc-timeout ------------------------------------------------------ */

/*
 * Parses a grpc-timeout value (1 to 8 digits and one unit of H M S m u n)
 * into milliseconds, rounded up so that a positive timeout never becomes
 * 0. Returns 0, or JW_EINVAL for anything malformed.
 */
int jw_grpc_timeout_parse(const char *s, size_t len, uint64_t *ms);

/*
 * Formats ms as a grpc-timeout value in the finest unit whose value fits
 * in 8 digits (rounded up). Returns the length written (cap >= 10 always
 * suffices), or JW_EINVAL when cap is too small.
 */
int jw_grpc_timeout_format(uint64_t ms, char *buf, size_t cap);

/* ---- grpc-message ------------------------------------------------------ */

/*
 * Percent-encodes len bytes for grpc-message: bytes 0x20-0x7E except '%'
 * stay, every other byte becomes %XX. Writes at most cap bytes including
 * a terminating NUL (when cap > 0) and returns the full encoded length,
 * like snprintf.
 */
size_t jw_grpc_message_encode(const uint8_t *in, size_t len, char *out,
                              size_t cap);

/*
 * Decodes a grpc-message value: %XX becomes the byte; a '%' not followed
 * by two hex digits is kept as is (the protocol forbids failing on a
 * broken encoding). Same output convention as the encoder; the decoded
 * bytes may contain NUL.
 */
size_t jw_grpc_message_decode(const char *in, size_t len, uint8_t *out,
                              size_t cap);

/* ---- Status mapping ---------------------------------------------------- */

/*
 * The status a client reports for an HTTP response without grpc-status
 * (gRPC's "HTTP to gRPC Status Code Mapping").
 */
int jw_grpc_status_from_http(int http_status);

/* The status a client reports for a stream reset with an HTTP/2 code. */
int jw_grpc_status_from_h2_error(uint32_t error_code);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_GRPC_H */
