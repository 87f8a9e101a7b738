/*
 * Decoding and checking the JobWorker requests (see request.h). Moved out
 * of service.c unchanged in behaviour so that the fuzzers can call it.
 */
#include "request.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobworker/grpc.h"

const char *jw_request_quote(const char *s, char *buf, size_t size) {
  size_t o = 0;
  for (size_t i = 0; s[i] != '\0'; i++) {
    /*
     * Room for this byte (at most 4 as \xNN) and then "..." with its NUL;
     * otherwise, or past 64 bytes, the rendering ends with "...".
     */
    if (i >= 64 || o + 8 > size) {
      memcpy(buf + o, "...", 4);
      return buf;
    }
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    else
      buf[o++] = (char)c;
  }
  buf[o] = '\0';
  return buf;
}

/*
 * protobuf-c keeps string fields as C strings and so silently cuts them at
 * their first NUL byte. Every string in our requests is a top-level
 * length-delimited field, so a walk over the wire form finds NULs before
 * they can be cut. The message was already unpacked successfully, so its
 * structure is known to be sound; the bounds checks are for safety only.
 * Returns the field number holding a NUL and its index among repeats, or 0.
 * Only fields 1 to 4 are strings; later ones are messages (JobRequest's
 * limits and isolation), whose bytes may well be 0.
 */
static uint32_t find_nul(const uint8_t *p, size_t len, size_t *index) {
  size_t i = 0;
  size_t seen[8] = {0};
  while (i < len) {
    uint64_t key = 0, v = 0;
    int shift = 0;
    while (i < len && shift < 64) {
      key |= (uint64_t)(p[i] & 0x7f) << shift;
      shift += 7;
      if (!(p[i++] & 0x80))
        break;
    }
    uint32_t field = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
      while (i < len && (p[i++] & 0x80))
        ;
      break;
    case 1:
      i += 8;
      break;
    case 5:
      i += 4;
      break;
    case 2:
      shift = 0;
      while (i < len && shift < 64) {
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        shift += 7;
        if (!(p[i++] & 0x80))
          break;
      }
      if (v > len - i)
        return 0;
      if (field <= 4 && memchr(p + i, 0, (size_t)v) != NULL) {
        *index = field < 8 ? seen[field] : 0;
        return field;
      }
      if (field < 8)
        seen[field]++;
      i += (size_t)v;
      break;
    default:
      return 0;
    }
  }
  return 0;
}

/* Checks a Start request; on a problem writes a sentence into msg. */
static bool check_start(const Jobworker__V1__JobRequest *r, const uint8_t *req,
                        size_t len, char *msg, size_t size) {
  static const char *const names[] = {NULL, "command", "args", "env",
                                      "working_dir"};
  char q[80];
  size_t idx = 0;
  uint32_t field = find_nul(req, len, &idx);
  if (field >= 1 && field <= 4) {
    if (field == 2 || field == 3)
      snprintf(msg, size, "%s[%zu] contains a NUL byte", names[field], idx);
    else
      snprintf(msg, size, "%s contains a NUL byte", names[field]);
    return false;
  }
  if (r->command[0] == '\0') {
    snprintf(msg, size, "command is empty");
    return false;
  }
  for (size_t i = 0; i < r->n_env; i++) {
    const char *eq = strchr(r->env[i], '=');
    if (eq == NULL || eq == r->env[i]) {
      snprintf(msg, size, "env[%zu] \"%s\" is not KEY=VALUE", i,
               jw_request_quote(r->env[i], q, sizeof(q)));
      return false;
    }
  }
  if (r->working_dir[0] != '\0') {
    struct stat sb;
    if (stat(r->working_dir, &sb) != 0) {
      snprintf(msg, size, "working directory %s: %s",
               jw_request_quote(r->working_dir, q, sizeof(q)), strerror(errno));
      return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
      snprintf(msg, size, "working directory %s is not a directory",
               jw_request_quote(r->working_dir, q, sizeof(q)));
      return false;
    }
  }
  return true;
}

int jw_request_decode_start(const uint8_t *req, size_t len,
                            Jobworker__V1__JobRequest **out, char *msg,
                            size_t size) {
  Jobworker__V1__JobRequest *r =
      jobworker__v1__job_request__unpack(NULL, len, req);
  *out = NULL;
  if (r == NULL) {
    snprintf(msg, size, "cannot parse JobRequest");
    return JW_GRPC_INTERNAL;
  }
  if (!check_start(r, req, len, msg, size)) {
    jobworker__v1__job_request__free_unpacked(r, NULL);
    return JW_GRPC_INVALID_ARGUMENT;
  }
  *out = r;
  return 0;
}

int jw_request_decode_id(const uint8_t *req, size_t len, char **id, char *msg,
                         size_t size) {
  /* StatusRequest, StopRequest and GetOutputRequest share one shape. */
  Jobworker__V1__StatusRequest *r =
      jobworker__v1__status_request__unpack(NULL, len, req);
  size_t idx;
  int code = 0;
  *id = NULL;
  if (r == NULL) {
    snprintf(msg, size, "cannot parse request message");
    return JW_GRPC_INTERNAL;
  }
  if (find_nul(req, len, &idx) != 0) {
    snprintf(msg, size, "job id contains a NUL byte");
    code = JW_GRPC_INVALID_ARGUMENT;
  } else if ((*id = strdup(r->id)) == NULL) {
    snprintf(msg, size, "out of memory");
    code = JW_GRPC_RESOURCE_EXHAUSTED;
  }
  jobworker__v1__status_request__free_unpacked(r, NULL);
  return code;
}

int jw_request_decode_list(const uint8_t *req, size_t len, char *msg,
                           size_t size) {
  Jobworker__V1__ListRequest *r =
      jobworker__v1__list_request__unpack(NULL, len, req);
  if (r == NULL) {
    snprintf(msg, size, "cannot parse ListRequest");
    return JW_GRPC_INTERNAL;
  }
  jobworker__v1__list_request__free_unpacked(r, NULL);
  return 0;
}
