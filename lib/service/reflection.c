/*
 * gRPC server reflection (grpc.reflection.v1 and v1alpha: the same
 * messages, field for field, so one protobuf-c code reads both), answered
 * from the FileDescriptorProtos protoc wrote at build time for every file
 * the server serves (jobworker.proto, health.proto, both reflection.proto),
 * embedded by proto/embed.py. The descriptors are walked in their wire
 * form: nothing is parsed ahead or kept between calls.
 *
 * The rpc layer dispatches a call once its request stream ended with
 * exactly one message, so each ServerReflectionInfo stream answers one
 * request (what grpcio's reflection client sends); see docs/protocol.md.
 */
#include "reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflection.pb-c.h"
#include "request.h"
#include "wire.h"

extern const unsigned char jw__descriptor_set[];
extern const size_t jw__descriptor_set_len;

/* More files than the server serves (four): the set is ours, not a peer's. */
#define MAX_FILES 16
/* Nesting of messages a symbol may name. */
#define MAX_DEPTH 16

typedef struct {
  const uint8_t *p;
  size_t len;
} span_t;

typedef struct {
  span_t data; /* the serialized FileDescriptorProto */
  span_t name;
  span_t pkg;
} file_t;

typedef struct {
  file_t files[MAX_FILES];
  size_t n;
} fileset_t;

static bool span_eq(span_t s, const char *z, size_t zlen) {
  return s.len == zlen && memcmp(s.p, z, zlen) == 0;
}

/* The string field num of a message (the last occurrence), or empty. */
static span_t str_field(const uint8_t *p, size_t len, uint32_t num) {
  jw__wire_t w;
  jw__wire_field_t f;
  span_t s = {(const uint8_t *)"", 0};
  jw__wire_init(&w, p, len);
  while (jw__wire_next(&w, &f) == 1)
    if (f.num == num && f.type == 2)
      s = (span_t){f.data, f.len};
  return s;
}

/* Splits the embedded FileDescriptorSet (field 1: each file). */
static void load_files(fileset_t *fs) {
  jw__wire_t w;
  jw__wire_field_t f;
  fs->n = 0;
  jw__wire_init(&w, jw__descriptor_set, jw__descriptor_set_len);
  while (fs->n < MAX_FILES && jw__wire_next(&w, &f) == 1) {
    if (f.num != 1 || f.type != 2)
      continue;
    file_t *fl = &fs->files[fs->n++];
    fl->data = (span_t){f.data, f.len};
    fl->name = str_field(f.data, f.len, 1);
    fl->pkg = str_field(f.data, f.len, 2);
  }
}

/*
 * Whether sym (relative to the scope that holds the element) names the
 * element whose descriptor is p/len, or something declared in it. kind:
 * 'm' DescriptorProto (fields 2, nested 3, enums 4, oneofs 8), 's'
 * ServiceDescriptorProto (methods 2), 'l' a leaf (enum, field, method).
 */
static bool names(const uint8_t *p, size_t len, int kind, const char *sym,
                  size_t slen, int depth) {
  span_t name = str_field(p, len, 1);
  if (span_eq(name, sym, slen))
    return true;
  if (kind == 'l' || depth >= MAX_DEPTH || slen <= name.len + 1 ||
      memcmp(sym, name.p, name.len) != 0 || sym[name.len] != '.')
    return false;
  const char *rest = sym + name.len + 1;
  size_t rlen = slen - name.len - 1;
  jw__wire_t w;
  jw__wire_field_t f;
  jw__wire_init(&w, p, len);
  while (jw__wire_next(&w, &f) == 1) {
    if (f.type != 2)
      continue;
    int sub = 0;
    if (kind == 'm' && f.num == 3)
      sub = 'm';
    else if ((kind == 'm' && (f.num == 2 || f.num == 4 || f.num == 8)) ||
             (kind == 's' && f.num == 2))
      sub = 'l';
    if (sub != 0 && names(f.data, f.len, sub, rest, rlen, depth + 1))
      return true;
  }
  return false;
}

/* Whether file declares the fully-qualified symbol sym. */
static bool file_declares(const file_t *fl, const char *sym, size_t slen) {
  if (fl->pkg.len > 0) {
    if (slen <= fl->pkg.len + 1 || memcmp(sym, fl->pkg.p, fl->pkg.len) != 0 ||
        sym[fl->pkg.len] != '.')
      return false;
    sym += fl->pkg.len + 1;
    slen -= fl->pkg.len + 1;
  }
  jw__wire_t w;
  jw__wire_field_t f;
  jw__wire_init(&w, fl->data.p, fl->data.len);
  while (jw__wire_next(&w, &f) == 1) {
    if (f.type != 2)
      continue;
    /* message_type 4, enum_type 5, service 6, extension 7 */
    int kind = f.num == 4                 ? 'm'
               : f.num == 6               ? 's'
               : f.num == 5 || f.num == 7 ? 'l'
                                          : 0;
    if (kind != 0 && names(f.data, f.len, kind, sym, slen, 0))
      return true;
  }
  return false;
}

static int find_file(const fileset_t *fs, const char *name) {
  for (size_t i = 0; i < fs->n; i++)
    if (span_eq(fs->files[i].name, name, strlen(name)))
      return (int)i;
  return -1;
}

/*
 * Marks file i and, transitively, the files it imports (field 3) that the
 * set holds, in the order a client can load them: dependencies after
 * the file, each once.
 */
static void add_with_deps(const fileset_t *fs, size_t i, bool *want,
                          size_t *order, size_t *n) {
  if (want[i])
    return;
  want[i] = true;
  order[(*n)++] = i;
  jw__wire_t w;
  jw__wire_field_t f;
  jw__wire_init(&w, fs->files[i].data.p, fs->files[i].data.len);
  while (jw__wire_next(&w, &f) == 1) {
    if (f.num != 3 || f.type != 2)
      continue;
    for (size_t j = 0; j < fs->n; j++)
      if (span_eq(fs->files[j].name, (const char *)f.data, f.len))
        add_with_deps(fs, j, want, order, n);
  }
}

/* Packs resp and sends it as the stream's one message, then OK. */
static void
send_response(jw_rpc_call_t *call,
              const Grpc__Reflection__V1__ServerReflectionResponse *resp) {
  size_t n =
      grpc__reflection__v1__server_reflection_response__get_packed_size(resp);
  uint8_t *buf = malloc(n ? n : 1);
  if (buf == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  grpc__reflection__v1__server_reflection_response__pack(resp, buf);
  jw_rpc_call_reply(call, buf, n);
  free(buf);
}

void jw__reflection_info(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                         void *data) {
  Grpc__Reflection__V1__ServerReflectionRequest *rq =
      grpc__reflection__v1__server_reflection_request__unpack(NULL, len, req);
  if (rq == NULL) {
    jw_rpc_call_fail(call, JW_GRPC_INVALID_ARGUMENT,
                     "malformed ServerReflectionRequest");
    return;
  }
  fileset_t fs;
  load_files(&fs);

  Grpc__Reflection__V1__ServerReflectionResponse resp =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1__FileDescriptorResponse fdr =
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1__ListServiceResponse lsr =
      GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1__ExtensionNumberResponse enr =
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  Grpc__Reflection__V1__ErrorResponse err =
      GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  ProtobufCBinaryData blobs[MAX_FILES];
  Grpc__Reflection__V1__ServiceResponse svcs[MAX_FILES * 2];
  Grpc__Reflection__V1__ServiceResponse *svcp[MAX_FILES * 2];
  char svcnames[MAX_FILES * 2][128];
  char msg[256], q[160];
  bool want[MAX_FILES] = {false};
  size_t order[MAX_FILES];
  size_t n = 0;
  int found = -1;
  const char *what = NULL;

  resp.valid_host = rq->host;
  resp.original_request = rq;
  switch (rq->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    found = find_file(&fs, rq->file_by_filename);
    what = rq->file_by_filename;
    if (found < 0)
      snprintf(msg, sizeof(msg), "no file %s",
               jw_request_quote(what, q, sizeof(q)));
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    what = rq->file_containing_symbol;
    for (size_t i = 0; i < fs.n && found < 0; i++)
      if (file_declares(&fs.files[i], what, strlen(what)))
        found = (int)i;
    if (found < 0)
      snprintf(msg, sizeof(msg), "no symbol %s",
               jw_request_quote(what, q, sizeof(q)));
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    /* None of the served files declares an extension. */
    what = rq->file_containing_extension != NULL &&
                   rq->file_containing_extension->containing_type != NULL
               ? rq->file_containing_extension->containing_type
               : "";
    snprintf(msg, sizeof(msg), "no extension of %s",
             jw_request_quote(what, q, sizeof(q)));
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
    what = rq->all_extension_numbers_of_type;
    for (size_t i = 0; i < fs.n && found < 0; i++)
      if (file_declares(&fs.files[i], what, strlen(what)))
        found = (int)i;
    if (found >= 0) {
      /* A known type: it has no extensions. */
      enr.base_type_name = (char *)what;
      resp.message_response_case =
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
      resp.all_extension_numbers_response = &enr;
    } else {
      snprintf(msg, sizeof(msg), "no type %s",
               jw_request_quote(what, q, sizeof(q)));
    }
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    for (size_t i = 0; i < fs.n; i++) {
      jw__wire_t w;
      jw__wire_field_t f;
      jw__wire_init(&w, fs.files[i].data.p, fs.files[i].data.len);
      while (jw__wire_next(&w, &f) == 1 && lsr.n_service < MAX_FILES * 2) {
        if (f.num != 6 || f.type != 2)
          continue;
        span_t name = str_field(f.data, f.len, 1);
        span_t pkg = fs.files[i].pkg;
        size_t k = lsr.n_service++;
        snprintf(svcnames[k], sizeof(svcnames[k]), "%.*s%s%.*s", (int)pkg.len,
                 (const char *)pkg.p, pkg.len ? "." : "", (int)name.len,
                 (const char *)name.p);
        grpc__reflection__v1__service_response__init(&svcs[k]);
        svcs[k].name = svcnames[k];
        svcp[k] = &svcs[k];
      }
    }
    lsr.service = svcp;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp.list_services_response = &lsr;
    break;
  default:
    snprintf(msg, sizeof(msg), "the request asks for nothing");
    err.error_code = JW_GRPC_INVALID_ARGUMENT;
    break;
  }

  if (resp.message_response_case ==
          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET &&
      found >= 0) {
    add_with_deps(&fs, (size_t)found, want, order, &n);
    for (size_t i = 0; i < n; i++) {
      blobs[i].data = (uint8_t *)fs.files[order[i]].data.p;
      blobs[i].len = fs.files[order[i]].data.len;
    }
    fdr.n_file_descriptor_proto = n;
    fdr.file_descriptor_proto = blobs;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp.file_descriptor_response = &fdr;
  } else if (
      resp.message_response_case ==
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
    /* As gRPC's servers do: an error in the stream, the call still OK. */
    if (err.error_code == 0)
      err.error_code = JW_GRPC_NOT_FOUND;
    err.error_message = msg;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp.error_response = &err;
  }
  send_response(call, &resp);
  grpc__reflection__v1__server_reflection_request__free_unpacked(rq, NULL);
}
