/*
 * Decoding and checking the JobWorker request messages: the part of the
 * handlers that needs no supervisor, so that the fuzzers reach exactly the
 * code the service runs.
 */
#ifndef TELEPORTD_REQUEST_H
#define TELEPORTD_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker.pb-c.h"

/*
 * Writes a printable, bounded rendering of a client-supplied string into
 * buf (size >= 8), so that error messages can quote what the client sent
 * without echoing control bytes or megabytes back: at most 64 bytes of s,
 * then "..." when there is more or buf is full. Returns buf.
 */
const char *jw_request_quote(const char *s, char *buf, size_t size);

/*
 * Decodes a JobRequest and checks it (no NUL byte in any string, a
 * command, env entries of the form KEY=VALUE, an existing working
 * directory). Returns 0 with *out set (free it with
 * jobworker__v1__job_request__free_unpacked), or the gRPC status to fail
 * the call with after writing a sentence into msg. Limits and isolation
 * are the service's to check.
 */
int jw_request_decode_start(const uint8_t *req, size_t len,
                            Jobworker__V1__JobRequest **out, char *msg,
                            size_t size);

/*
 * Decodes a request whose only field is the job id (StatusRequest,
 * StopRequest, GetOutputRequest share one shape). Returns 0 with *id set
 * (free it with free()), or the gRPC status to fail the call with after
 * writing a sentence into msg.
 */
int jw_request_decode_id(const uint8_t *req, size_t len, char **id, char *msg,
                         size_t size);

/*
 * Decodes a ListRequest. Returns 0, or the gRPC status to fail the call
 * with after writing a sentence into msg.
 */
int jw_request_decode_list(const uint8_t *req, size_t len, char *msg,
                           size_t size);

#endif /* TELEPORTD_REQUEST_H */
