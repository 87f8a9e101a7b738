/*
 * Decoding and checking the JobWorker request messages: the part of the
 * handlers that needs no supervisor, so that the fuzzers reach exactly the
 * code the service runs.
 */
#ifndef JOBWORKER_SERVICE_REQUEST_H
#define JOBWORKER_SERVICE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker.pb-c.h"
#include "jobworker/service.h"

/*
 * Writes a printable, bounded rendering of a client-supplied string into
 * buf (size >= 8), so that error messages can quote what the client sent
 * without echoing control bytes or megabytes back: at most 64 bytes of s,
 * then "..." when there is more or buf is full. Returns buf.
 */
const char *jw_request_quote(const char *s, char *buf, size_t size);

/* A cap on the entries of one repeated field of the top-level message. */
typedef struct {
  const char *field; /* its name in the .proto */
  size_t max;        /* 0: no cap */
  const char *flag;  /* the server flag that sets it, for the message */
} jw_request_cap_t;

/* What jw_request_check enforces beyond well-formed wire bytes. */
typedef struct {
  const jw_request_cap_t *caps;
  size_t ncaps;
  size_t max_string_bytes; /* all string fields together; 0: no cap */
  const char *bytes_flag;
} jw_request_rules_t;

/*
 * Walks a serialized message of type desc before anything unpacks it,
 * guided by desc: every string field (also in nested messages) must hold
 * valid UTF-8 without NUL bytes; unknown fields of wire types 0, 1, 2 and
 * 5 are skipped; field number 0, wire types 3, 4, 6, 7, a wire type that
 * does not match the field's type, a varint or length running past the
 * end are refused. A repeated field named in rules->caps may occur that
 * many times; any other field at most 64 times in one message; the
 * strings together may take rules->max_string_bytes (rules NULL: only
 * the fixed caps). Returns 0, or JW_GRPC_INVALID_ARGUMENT after writing a
 * sentence naming the field into msg ("args[3] is not valid UTF-8").
 */
int jw_request_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                     size_t len, const jw_request_rules_t *rules, char *msg,
                     size_t size);

/*
 * Checks a JobRequest with jw_request_check under lim (NULL: the
 * defaults), decodes it and checks the rest (a command, env entries of
 * the form KEY=VALUE, command and working_dir shorter than PATH_MAX, an
 * existing working directory). Returns 0 with *out set (free it with
 * jobworker__v1__job_request__free_unpacked), or the gRPC status to fail
 * the call with after writing a sentence into msg. Limits and isolation
 * are the service's to check.
 */
int jw_request_decode_start(const uint8_t *req, size_t len,
                            const jw_request_limits_t *lim,
                            Jobworker__V1__JobRequest **out, char *msg,
                            size_t size);

/*
 * The job a decoded Start asks for: command, args, env and working
 * directory, pointing into r (which must outlive it). The caller adds
 * limits, isolation and the user to run as.
 */
jw_job_spec_t jw_request_job_spec(const Jobworker__V1__JobRequest *r);

/*
 * Checks and decodes a request whose only field is the job id
 * (StatusRequest, StopRequest, GetOutputRequest share one shape, checked
 * with StatusRequest's descriptor). Returns 0 with *id set
 * (free it with free()), or the gRPC status to fail the call with after
 * writing a sentence into msg.
 */
int jw_request_decode_id(const uint8_t *req, size_t len, char **id, char *msg,
                         size_t size);

/*
 * jw_request_decode_id for a handler: tags the call with the id. Returns
 * the id (to free with free()), or NULL after failing the call.
 */
char *jw_request_unpack_id(jw_rpc_call_t *call, const uint8_t *req, size_t len);

/* The most lines a GetOutput may ask for (tail_lines). */
#define JW_REQUEST_MAX_TAIL_LINES 1000000u
/* The longest JobRequest.timeout_ms: a year, as the duration parser's. */
#define JW_REQUEST_MAX_TIMEOUT_MS (366ULL * 24 * 3600 * 1000)

/*
 * Checks and decodes a GetOutputRequest (tail_lines at most
 * JW_REQUEST_MAX_TAIL_LINES). Returns 0 with *out set (free it with
 * jobworker__v1__get_output_request__free_unpacked), or the gRPC status
 * to fail the call with after writing a sentence into msg.
 */
int jw_request_decode_output(const uint8_t *req, size_t len,
                             Jobworker__V1__GetOutputRequest **out, char *msg,
                             size_t size);

/*
 * Checks and decodes a StopRequest: *id as jw_request_decode_id, and
 * *timeout_ms (not negative). Same returns.
 */
int jw_request_decode_stop(const uint8_t *req, size_t len, char **id,
                           uint64_t *timeout_ms, char *msg, size_t size);

/*
 * Checks and decodes a SignalRequest: exactly one of signal (1..64) and
 * signal_name (jw_request_signal_number). Same returns, with *id and *sig.
 */
int jw_request_decode_signal(const uint8_t *req, size_t len, char **id,
                             int *sig, char *msg, size_t size);

/*
 * The number of a signal's name, with or without "SIG", in any case
 * ("USR1", "sigterm", "RTMIN+3"); 0 for an unknown name.
 */
int jw_request_signal_number(const char *name);

/*
 * Checks a ListRequest (it has no fields to decode). Returns 0, or the gRPC
 * status to fail the call with after writing a sentence into msg.
 */
int jw_request_decode_list(const uint8_t *req, size_t len, char *msg,
                           size_t size);

#endif /* JOBWORKER_SERVICE_REQUEST_H */
