/*
 * A reader of the protobuf wire format, for the few places that walk
 * messages protobuf-c has no generated code for (FileDescriptorProtos) or
 * whose strings must keep their length (a NUL byte must not shorten a
 * service name into a known one). Internal.
 */
#ifndef JW_SERVICE_WIRE_H
#define JW_SERVICE_WIRE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
} jw__wire_t;

typedef struct {
  uint32_t num;
  uint32_t type;       /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
  uint64_t v;          /* types 0, 1, 5 */
  const uint8_t *data; /* type 2 */
  size_t len;
} jw__wire_field_t;

static inline void jw__wire_init(jw__wire_t *w, const uint8_t *p, size_t len) {
  w->p = p;
  w->end = p + len;
}

static inline int jw__wire_varint(jw__wire_t *w, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (w->p >= w->end)
      return -1;
    uint8_t b = *w->p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

/*
 * The next field: 1 with *f filled, 0 at the end, -1 for malformed input
 * (truncated, a length past the end, groups, field number 0).
 */
static inline int jw__wire_next(jw__wire_t *w, jw__wire_field_t *f) {
  uint64_t key;
  if (w->p >= w->end)
    return 0;
  if (jw__wire_varint(w, &key) != 0 || (key >> 3) == 0 ||
      (key >> 3) > 0x1fffffff)
    return -1;
  f->num = (uint32_t)(key >> 3);
  f->type = (uint32_t)(key & 7);
  f->v = 0;
  f->data = NULL;
  f->len = 0;
  switch (f->type) {
  case 0:
    return jw__wire_varint(w, &f->v) == 0 ? 1 : -1;
  case 1:
  case 5: {
    size_t n = f->type == 1 ? 8 : 4;
    if ((size_t)(w->end - w->p) < n)
      return -1;
    for (size_t i = 0; i < n; i++)
      f->v |= (uint64_t)w->p[i] << (8 * i);
    w->p += n;
    return 1;
  }
  case 2: {
    uint64_t n;
    if (jw__wire_varint(w, &n) != 0 || n > (uint64_t)(w->end - w->p))
      return -1;
    f->data = w->p;
    f->len = (size_t)n;
    w->p += n;
    return 1;
  }
  default:
    return -1;
  }
}

#endif /* JW_SERVICE_WIRE_H */
