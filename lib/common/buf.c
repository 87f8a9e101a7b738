#include "buf.h"

#include <errno.h>
#include <stdlib.h>

#include "jobworker/error.h"

size_t jw__buf_grow_cap(size_t cap, size_t need, size_t min, size_t max) {
  if (need > max)
    return 0;
  if (need <= cap)
    return cap;
  size_t n = cap > min ? cap : (min > 0 ? min : 1);
  while (n < need) {
    if (n > max / 2) {
      n = max;
      break;
    }
    n *= 2;
  }
  return n > max ? max : n;
}

int jw__buf_reserve(jw__buf_t *b, size_t more, size_t min, size_t max) {
  if (more > SIZE_MAX - b->len)
    return JW_ELIMIT;
  size_t cap = jw__buf_grow_cap(b->cap, b->len + more, min, max);
  if (cap == 0)
    return JW_ELIMIT;
  if (cap == b->cap)
    return 0;
  uint8_t *p = realloc(b->base, cap);
  if (p == NULL)
    return -ENOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}

void jw__buf_free(jw__buf_t *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}
