/*
 * Decoding and checking the JobWorker requests (see request.h).
 *
 * Every request is checked on the wire before protobuf-c sees it, by one
 * walk driven by the message's protobuf-c descriptor: protobuf-c keeps
 * string fields as C strings, so it silently cuts them at a NUL byte, and
 * it stores whatever bytes a string holds, UTF-8 or not (which breaks the
 * client's own List later in a strict decoder such as grpcio's). It also
 * allocates per element of a repeated field and per occurrence of any
 * field, so counts are refused here, before that memory is spent.
 */
#include "request.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobworker/grpc.h"

/* The largest field number protobuf allows (2^29 - 1). */
#define MAX_FIELD_NUMBER 536870911u
/* Messages nest at most this deep; ours nest one level. */
#define MAX_DEPTH 8
/*
 * Occurrences of a field that has no cap of its own (a singular field, an
 * unknown field, a repeated field without a rule) in one message. A real
 * encoder writes a singular field once; concatenated messages repeat it.
 */
#define MAX_OTHER_REPEATS 64

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
 * Returns the length of the well-formed UTF-8 prefix of s (n when all of
 * it is): no overlong forms, no surrogates (U+D800..U+DFFF), nothing past
 * U+10FFFF, as RFC 3629 and protobuf's proto3 string rule require.
 */
static size_t utf8_valid_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      k = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      k = 2;
      if (c == 0xe0)
        lo = 0xa0; /* overlong below U+0800 */
      else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
      k = 3;
      if (c == 0xf0)
        lo = 0x90; /* overlong below U+10000 */
      else if (c == 0xf4)
        hi = 0x8f; /* past U+10FFFF */
    } else {
      return i; /* continuation byte, 0xc0/0xc1, 0xf5.. */
    }
    if (n - i <= k)
      return i;
    if (s[i + 1] < lo || s[i + 1] > hi)
      return i;
    for (size_t j = 2; j <= k; j++)
      if ((s[i + j] & 0xc0) != 0x80)
        return i;
    i += k + 1;
  }
  return n;
}

/*
 * Reads a varint of at most max bytes at *i. Returns false when it runs
 * past the end or is longer (protobuf-c takes 5-byte tags and lengths,
 * 10-byte values; anything it would refuse is refused here first).
 */
static bool get_varint(const uint8_t *p, size_t len, size_t *i, unsigned max,
                       uint64_t *out) {
  uint64_t v = 0;
  for (unsigned k = 0; k < max && *i < len; k++) {
    uint8_t b = p[(*i)++];
    if (k == 9 && b > 1)
      return false; /* past 64 bits */
    v |= (uint64_t)(b & 0x7f) << (7 * k);
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return false;
}

/* The wire type a field of this descriptor type is written with. */
static unsigned wire_type_of(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 1;
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
    return 5;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_MESSAGE:
    return 2;
  default:
    return 0;
  }
}

typedef struct {
  const jw_request_rules_t *rules;
  size_t string_bytes;
  char *msg;
  size_t size;
} walk_t;

/* The field's name for a message: "args[3]", "limits.pids", "field 9". */
static void name_field(char *buf, size_t size, const char *prefix,
                       const ProtobufCFieldDescriptor *f, uint64_t number,
                       size_t index) {
  if (f == NULL)
    snprintf(buf, size, "%sfield %llu", prefix, (unsigned long long)number);
  else if (f->label == PROTOBUF_C_LABEL_REPEATED)
    snprintf(buf, size, "%s%s[%zu]", prefix, f->name, index);
  else
    snprintf(buf, size, "%s%s", prefix, f->name);
}

/* The cap on occurrences of f at the top level, with its flag, or none. */
static const jw_request_cap_t *find_cap(const walk_t *w, int depth,
                                        const ProtobufCFieldDescriptor *f) {
  if (depth != 0 || f == NULL || f->label != PROTOBUF_C_LABEL_REPEATED)
    return NULL;
  for (size_t i = 0; i < w->rules->ncaps; i++)
    if (strcmp(w->rules->caps[i].field, f->name) == 0)
      return &w->rules->caps[i];
  return NULL;
}

/*
 * Counts one more occurrence (or packed element) of field f (NULL:
 * unknown). Returns false after writing why into the walk's message.
 */
static bool count_one(walk_t *w, int depth, const char *prefix,
                      const ProtobufCFieldDescriptor *f, uint64_t number,
                      size_t *count) {
  const jw_request_cap_t *cap = find_cap(w, depth, f);
  size_t max = cap != NULL ? cap->max : MAX_OTHER_REPEATS;
  char name[96];
  if (++*count <= max || (cap != NULL && cap->max == 0))
    return true;
  if (f != NULL)
    snprintf(name, sizeof(name), "%s%s", prefix, f->name);
  else
    name_field(name, sizeof(name), prefix, NULL, number, 0);
  if (cap != NULL)
    snprintf(w->msg, w->size, "more than %zu %s entries (%s)", max, name,
             cap->flag);
  else
    snprintf(w->msg, w->size, "%s occurs more than %zu times", name, max);
  return false;
}

static bool walk_message(walk_t *w, const ProtobufCMessageDescriptor *desc,
                         const uint8_t *p, size_t len, int depth,
                         const char *prefix);

/* Checks one length-delimited field's payload against its descriptor. */
static bool check_payload(walk_t *w, const ProtobufCFieldDescriptor *f,
                          const uint8_t *p, size_t n, int depth,
                          const char *prefix, size_t index) {
  char name[96];
  if (f->type == PROTOBUF_C_TYPE_STRING) {
    name_field(name, sizeof(name), prefix, f, 0, index);
    /* The cap first, so that an oversized string is not even read. */
    w->string_bytes += n;
    if (w->rules->max_string_bytes > 0 &&
        w->string_bytes > w->rules->max_string_bytes) {
      snprintf(w->msg, w->size,
               "the request's strings take more than %zu bytes (%s)",
               w->rules->max_string_bytes, w->rules->bytes_flag);
      return false;
    }
    if (memchr(p, 0, n) != NULL) {
      snprintf(w->msg, w->size, "%s contains a NUL byte", name);
      return false;
    }
    if (utf8_valid_prefix(p, n) != n) {
      snprintf(w->msg, w->size, "%s is not valid UTF-8", name);
      return false;
    }
    return true;
  }
  if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
    char sub[sizeof(name) + 2];
    if (depth + 1 >= MAX_DEPTH) {
      snprintf(w->msg, w->size, "messages nested more than %d deep", MAX_DEPTH);
      return false;
    }
    name_field(name, sizeof(name), prefix, f, 0, index);
    snprintf(sub, sizeof(sub), "%s.", name);
    return walk_message(w, f->descriptor, p, n, depth + 1, sub);
  }
  return true; /* bytes: any content */
}

/* Walks a packed repeated scalar, counting its elements. */
static bool walk_packed(walk_t *w, const ProtobufCFieldDescriptor *f,
                        const uint8_t *p, size_t n, int depth,
                        const char *prefix, size_t *count) {
  unsigned wt = wire_type_of(f->type);
  size_t size = wt == 1 ? 8 : 4, i = 0;
  char name[96];
  name_field(name, sizeof(name), prefix, f, 0, *count);
  if (wt != 0 && n % size != 0) {
    snprintf(w->msg, w->size, "malformed message: packed %s is cut short",
             name);
    return false;
  }
  while (i < n) {
    uint64_t v;
    if (wt != 0)
      i += size;
    else if (!get_varint(p, n, &i, 10, &v)) {
      snprintf(w->msg, w->size, "malformed message: bad varint in %s", name);
      return false;
    }
    if (!count_one(w, depth, prefix, f, f->id, count))
      return false;
  }
  return true;
}

/*
 * Walks one message of type desc on the wire, checking every field it
 * holds and skipping unknown ones. Returns false after writing why.
 */
static bool walk_message(walk_t *w, const ProtobufCMessageDescriptor *desc,
                         const uint8_t *p, size_t len, int depth,
                         const char *prefix) {
  enum { STACK_FIELDS = 32 };
  size_t stack[STACK_FIELDS] = {0}, unknown = 0;
  size_t *counts = stack;
  bool ok = false;
  size_t i = 0;
  if (desc->n_fields > STACK_FIELDS &&
      (counts = calloc(desc->n_fields, sizeof(*counts))) == NULL) {
    snprintf(w->msg, w->size, "out of memory");
    return false;
  }
  while (i < len) {
    uint64_t key, v;
    size_t at = i;
    if (!get_varint(p, len, &i, 5, &key)) {
      snprintf(w->msg, w->size, "malformed message: bad tag at byte %zu", at);
      goto out;
    }
    uint64_t number = key >> 3;
    unsigned wt = (unsigned)(key & 7);
    if (number == 0 || number > MAX_FIELD_NUMBER) {
      snprintf(w->msg, w->size,
               "malformed message: invalid field number %llu at byte %zu",
               (unsigned long long)number, at);
      goto out;
    }
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(desc, (unsigned)number);
    size_t *count = f != NULL ? &counts[f - desc->fields] : &unknown;
    char name[96];
    name_field(name, sizeof(name), prefix, f, number, *count);
    bool packed = f != NULL && f->label == PROTOBUF_C_LABEL_REPEATED &&
                  wt == 2 && wire_type_of(f->type) != 2;
    if (f != NULL && !packed && wt != wire_type_of(f->type)) {
      snprintf(w->msg, w->size, "malformed message: %s has wire type %u", name,
               wt);
      goto out;
    }
    switch (wt) {
    case 0:
      if (!get_varint(p, len, &i, 10, &v)) {
        snprintf(w->msg, w->size, "malformed message: bad varint in %s", name);
        goto out;
      }
      break;
    case 1:
    case 5: {
      size_t n = wt == 1 ? 8 : 4;
      if (len - i < n) {
        snprintf(w->msg, w->size, "malformed message: %s is cut short", name);
        goto out;
      }
      i += n;
      break;
    }
    case 2:
      if (!get_varint(p, len, &i, 5, &v) || v > len - i) {
        snprintf(w->msg, w->size,
                 "malformed message: the length of %s runs past the end", name);
        goto out;
      }
      if (packed) {
        if (!walk_packed(w, f, p + i, (size_t)v, depth, prefix, count))
          goto out;
        i += (size_t)v;
        continue;
      }
      if (f != NULL &&
          !check_payload(w, f, p + i, (size_t)v, depth, prefix, *count))
        goto out;
      i += (size_t)v;
      break;
    default:
      /* Groups (3, 4) are gone from proto3; 6 and 7 do not exist. */
      snprintf(w->msg, w->size,
               "malformed message: unsupported wire type %u in %s", wt, name);
      goto out;
    }
    if (!count_one(w, depth, prefix, f, number, count))
      goto out;
  }
  ok = true;
out:
  if (counts != stack)
    free(counts);
  return ok;
}

int jw_request_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                     size_t len, const jw_request_rules_t *rules, char *msg,
                     size_t size) {
  static const jw_request_rules_t none = {0};
  walk_t w = {rules != NULL ? rules : &none, 0, msg, size};
  return walk_message(&w, desc, buf, len, 0, "") ? 0 : JW_GRPC_INVALID_ARGUMENT;
}

/*
 * Checks the fields of a Start request that the wire walk cannot judge;
 * on a problem writes a sentence into msg.
 */
static bool check_start(const Jobworker__V1__JobRequest *r, char *msg,
                        size_t size) {
  char q[80];
  if (r->command[0] == '\0') {
    snprintf(msg, size, "command is empty");
    return false;
  }
  /* Longer names cannot be executed (ENAMETOOLONG) or entered. */
  if (strlen(r->command) >= PATH_MAX) {
    snprintf(msg, size, "command is longer than %d bytes", PATH_MAX - 1);
    return false;
  }
  if (r->timeout_ms < 0 ||
      (uint64_t)r->timeout_ms > JW_REQUEST_MAX_TIMEOUT_MS) {
    snprintf(msg, size,
             "timeout_ms %lld is out of range (0: none; at most %llu, a "
             "year)",
             (long long)r->timeout_ms, JW_REQUEST_MAX_TIMEOUT_MS);
    return false;
  }
  if (strlen(r->working_dir) >= PATH_MAX) {
    snprintf(msg, size, "working_dir is longer than %d bytes", PATH_MAX - 1);
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

/*
 * The rules for every request: the server's caps on a Start's args, env
 * and string bytes (the same byte cap bounds a job id).
 */
static jw_request_rules_t make_rules(const jw_request_limits_t *lim,
                                     jw_request_cap_t caps[2]) {
  static const jw_request_limits_t defaults = JW_REQUEST_LIMITS_DEFAULT;
  if (lim == NULL)
    lim = &defaults;
  caps[0] = (jw_request_cap_t){"args", lim->max_args, "--max-args"};
  caps[1] = (jw_request_cap_t){"env", lim->max_env, "--max-env"};
  return (jw_request_rules_t){caps, 2, lim->max_request_strings,
                              "--max-request-strings"};
}

int jw_request_decode_start(const uint8_t *req, size_t len,
                            const jw_request_limits_t *lim,
                            Jobworker__V1__JobRequest **out, char *msg,
                            size_t size) {
  jw_request_cap_t caps[2];
  jw_request_rules_t rules = make_rules(lim, caps);
  *out = NULL;
  int code = jw_request_check(&jobworker__v1__job_request__descriptor, req, len,
                              &rules, msg, size);
  if (code != 0)
    return code;
  Jobworker__V1__JobRequest *r =
      jobworker__v1__job_request__unpack(NULL, len, req);
  if (r == NULL) {
    /* Walked cleanly, so only memory can have failed. */
    snprintf(msg, size, "out of memory decoding JobRequest");
    return JW_GRPC_RESOURCE_EXHAUSTED;
  }
  if (!check_start(r, msg, size)) {
    jobworker__v1__job_request__free_unpacked(r, NULL);
    return JW_GRPC_INVALID_ARGUMENT;
  }
  *out = r;
  return 0;
}

jw_job_spec_t jw_request_job_spec(const Jobworker__V1__JobRequest *r) {
  return (jw_job_spec_t){
      .command = r->command,
      .args = (const char *const *)r->args,
      .nargs = r->n_args,
      .env = (const char *const *)r->env,
      .nenv = r->n_env,
      .working_dir = r->working_dir,
      .timeout_ms = (uint64_t)r->timeout_ms,
  };
}

int jw_request_decode_id(const uint8_t *req, size_t len, char **id, char *msg,
                         size_t size) {
  /* StatusRequest, StopRequest and GetOutputRequest share one shape. */
  jw_request_cap_t caps[2];
  jw_request_rules_t rules = make_rules(NULL, caps);
  *id = NULL;
  int code = jw_request_check(&jobworker__v1__status_request__descriptor, req,
                              len, &rules, msg, size);
  if (code != 0)
    return code;
  Jobworker__V1__StatusRequest *r =
      jobworker__v1__status_request__unpack(NULL, len, req);
  if (r == NULL || (*id = strdup(r->id)) == NULL) {
    snprintf(msg, size, "out of memory");
    code = JW_GRPC_RESOURCE_EXHAUSTED;
  }
  if (r != NULL)
    jobworker__v1__status_request__free_unpacked(r, NULL);
  return code;
}

char *jw_request_unpack_id(jw_rpc_call_t *call, const uint8_t *req,
                           size_t len) {
  char msg[128];
  char *id;
  int code = jw_request_decode_id(req, len, &id, msg, sizeof(msg));
  if (code != 0) {
    jw_rpc_call_fail(call, code, msg);
    return NULL;
  }
  jw_rpc_call_set_tag(call, id);
  return id;
}

int jw_request_decode_list(const uint8_t *req, size_t len, char *msg,
                           size_t size) {
  /* ListRequest has no fields; nothing is unpacked. */
  return jw_request_check(&jobworker__v1__list_request__descriptor, req, len,
                          NULL, msg, size);
}

/*
 * Checks req as a message of type desc under the default rules and
 * unpacks it. Returns 0 with *out set, or the status to fail with.
 */
static int check_unpack(const ProtobufCMessageDescriptor *desc,
                        const uint8_t *req, size_t len, ProtobufCMessage **out,
                        char *msg, size_t size) {
  jw_request_cap_t caps[2];
  jw_request_rules_t rules = make_rules(NULL, caps);
  int code = jw_request_check(desc, req, len, &rules, msg, size);
  *out = NULL;
  if (code != 0)
    return code;
  *out = protobuf_c_message_unpack(desc, NULL, len, req);
  if (*out == NULL) {
    /* Walked cleanly, so only memory can have failed. */
    snprintf(msg, size, "out of memory");
    return JW_GRPC_RESOURCE_EXHAUSTED;
  }
  return 0;
}

int jw_request_decode_output(const uint8_t *req, size_t len,
                             Jobworker__V1__GetOutputRequest **out, char *msg,
                             size_t size) {
  ProtobufCMessage *m;
  int code = check_unpack(&jobworker__v1__get_output_request__descriptor, req,
                          len, &m, msg, size);
  *out = NULL;
  if (code != 0)
    return code;
  Jobworker__V1__GetOutputRequest *r = (Jobworker__V1__GetOutputRequest *)m;
  if (r->tail_lines > JW_REQUEST_MAX_TAIL_LINES) {
    snprintf(msg, size, "tail_lines %u is over the maximum %u", r->tail_lines,
             JW_REQUEST_MAX_TAIL_LINES);
    protobuf_c_message_free_unpacked(m, NULL);
    return JW_GRPC_INVALID_ARGUMENT;
  }
  *out = r;
  return 0;
}

int jw_request_decode_stop(const uint8_t *req, size_t len, char **id,
                           uint64_t *timeout_ms, char *msg, size_t size) {
  ProtobufCMessage *m;
  int code = check_unpack(&jobworker__v1__stop_request__descriptor, req, len,
                          &m, msg, size);
  *id = NULL;
  if (code != 0)
    return code;
  Jobworker__V1__StopRequest *r = (Jobworker__V1__StopRequest *)m;
  if (r->timeout_ms < 0) {
    snprintf(msg, size,
             "timeout_ms %lld is negative (0: the server's grace period)",
             (long long)r->timeout_ms);
    code = JW_GRPC_INVALID_ARGUMENT;
  } else if ((*id = strdup(r->id)) == NULL) {
    snprintf(msg, size, "out of memory");
    code = JW_GRPC_RESOURCE_EXHAUSTED;
  }
  *timeout_ms = r->timeout_ms > 0 ? (uint64_t)r->timeout_ms : 0;
  protobuf_c_message_free_unpacked(m, NULL);
  return code;
}

int jw_request_signal_number(const char *name) {
  static const struct {
    const char *name;
    int sig;
  } sigs[] = {
      {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT},
      {"ILL", SIGILL},   {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
      {"IOT", SIGIOT},   {"BUS", SIGBUS},       {"FPE", SIGFPE},
      {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
      {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},
      {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},
      {"CONT", SIGCONT}, {"STOP", SIGSTOP},     {"TSTP", SIGTSTP},
      {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
      {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM},
      {"PROF", SIGPROF}, {"WINCH", SIGWINCH},   {"IO", SIGIO},
      {"POLL", SIGPOLL}, {"PWR", SIGPWR},       {"SYS", SIGSYS},
  };
  char up[16];
  size_t n = strlen(name), i;
  if (n >= sizeof(up))
    return 0;
  for (i = 0; i <= n; i++)
    up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
  const char *p = strncmp(up, "SIG", 3) == 0 ? up + 3 : up;
  for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    if (strcmp(p, sigs[i].name) == 0)
      return sigs[i].sig;
  /* RTMIN, RTMIN+N, RTMAX, RTMAX-N, as kill(1) takes them. */
  int base = strncmp(p, "RTMIN", 5) == 0   ? SIGRTMIN
             : strncmp(p, "RTMAX", 5) == 0 ? SIGRTMAX
                                           : 0;
  if (base == 0)
    return 0;
  p += 5;
  if (*p == '\0')
    return base;
  if ((*p != '+' || base != SIGRTMIN) && (*p != '-' || base != SIGRTMAX))
    return 0;
  int sign = *p == '+' ? 1 : -1, k = 0;
  if (p[1] == '\0')
    return 0;
  for (p++; *p != '\0'; p++) {
    if (*p < '0' || *p > '9' || k > 64)
      return 0;
    k = k * 10 + (*p - '0');
  }
  int sig = base + sign * k;
  return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : 0;
}

int jw_request_decode_signal(const uint8_t *req, size_t len, char **id,
                             int *sig, char *msg, size_t size) {
  ProtobufCMessage *m;
  char q[80];
  int code = check_unpack(&jobworker__v1__signal_request__descriptor, req, len,
                          &m, msg, size);
  *id = NULL;
  *sig = 0;
  if (code != 0)
    return code;
  Jobworker__V1__SignalRequest *r = (Jobworker__V1__SignalRequest *)m;
  code = JW_GRPC_INVALID_ARGUMENT;
  if (r->signal != 0 && r->signal_name[0] != '\0')
    snprintf(msg, size, "give signal or signal_name, not both");
  else if (r->signal == 0 && r->signal_name[0] == '\0')
    snprintf(msg, size, "no signal: give signal (1..64) or signal_name");
  else if (r->signal != 0 && (r->signal < 1 || r->signal > 64))
    snprintf(msg, size, "signal %d is out of range (1..64)", (int)r->signal);
  else if (r->signal == 0 &&
           (*sig = jw_request_signal_number(r->signal_name)) == 0)
    snprintf(msg, size, "unknown signal_name %s",
             jw_request_quote(r->signal_name, q, sizeof(q)));
  else if ((*id = strdup(r->id)) == NULL)
    snprintf(msg, size, "out of memory"), code = JW_GRPC_RESOURCE_EXHAUSTED;
  else
    code = 0;
  if (code == 0 && r->signal != 0)
    *sig = (int)r->signal;
  protobuf_c_message_free_unpacked(m, NULL);
  return code;
}
