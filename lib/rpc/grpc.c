/*
 * gRPC over HTTP/2 pieces without a connection: status names, message
 * framing, grpc-timeout and grpc-message, as gRPC's PROTOCOL-HTTP2.md
 * describes them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hex.h"
#include "jobworker/error.h"
#include "jobworker/grpc.h"

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *jw_grpc_status_name(int status) {
  if (status < 0 || status > JW_GRPC_UNAUTHENTICATED)
    return "UNKNOWN_STATUS";
  return status_names[status];
}

void jw_grpc_prefix_write(uint8_t out[JW_GRPC_PREFIX_LEN], uint32_t len) {
  out[0] = 0;
  out[1] = (uint8_t)(len >> 24);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 8);
  out[4] = (uint8_t)len;
}

void jw_grpc_deframer_init(jw_grpc_deframer_t *d, size_t max_message) {
  memset(d, 0, sizeof(*d));
  d->max_message = max_message;
}

void jw_grpc_deframer_reset(jw_grpc_deframer_t *d) {
  /* What the stream's headers set (max_message, compressed_ok) stays. */
  free(d->buf);
  d->buf = NULL;
  d->cap = 0;
  d->hdr_len = 0;
  d->len = 0;
  d->need = 0;
}

bool jw_grpc_deframer_partial(const jw_grpc_deframer_t *d) {
  return d->hdr_len > 0;
}

int jw_grpc_deframer_next(jw_grpc_deframer_t *d, const uint8_t **p, size_t *n,
                          const uint8_t **msg, size_t *len) {
  /* A message handed out from the buffer last time is released now. */
  if (d->buf != NULL && d->len == d->need && d->hdr_len == 0) {
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
    d->len = d->need = 0;
  }
  while (*n > 0) {
    if (d->hdr_len < JW_GRPC_PREFIX_LEN) {
      size_t take = JW_GRPC_PREFIX_LEN - d->hdr_len;
      if (take > *n)
        take = *n;
      memcpy(d->hdr + d->hdr_len, *p, take);
      d->hdr_len += take;
      *p += take;
      *n -= take;
      if (d->hdr_len < JW_GRPC_PREFIX_LEN)
        return 0;
      d->flag = d->hdr[0];
      d->need = (size_t)d->hdr[1] << 24 | (size_t)d->hdr[2] << 16 |
                (size_t)d->hdr[3] << 8 | (size_t)d->hdr[4];
      d->len = 0;
      /* Both checks come from the prefix alone, before any buffering. */
      if (d->flag > 1 || (d->flag == 1 && !d->compressed_ok))
        return JW_EINVAL;
      if (d->need > d->max_message)
        return JW_ELIMIT;
    }
    if (d->need == 0) {
      d->hdr_len = 0;
      *msg = d->hdr;
      *len = 0;
      return 1;
    }
    if (*n == 0)
      return 0; /* nothing of the body yet: nothing to buffer */
    /* The whole message is in this chunk: hand it out in place. */
    if (d->buf == NULL && *n >= d->need) {
      *msg = *p;
      *len = d->need;
      *p += d->need;
      *n -= d->need;
      d->hdr_len = 0;
      d->need = 0;
      return 1;
    }
    size_t take = d->need - d->len;
    if (take > *n)
      take = *n;
    if (d->buf == NULL || d->len + take > d->cap) {
      /* Doubling keeps the copies linear; the announced length caps it. */
      size_t cap = jw__buf_grow_cap(d->cap, d->len + take, 16384, d->need);
      uint8_t *nb = realloc(d->buf, cap);
      if (nb == NULL)
        return -ENOMEM;
      d->buf = nb;
      d->cap = cap;
    }
    memcpy(d->buf + d->len, *p, take);
    d->len += take;
    *p += take;
    *n -= take;
    if (d->len < d->need)
      return 0;
    /* Complete: the buffer stays until the next call frees it. */
    d->hdr_len = 0;
    *msg = d->buf;
    *len = d->need;
    return 1;
  }
  return 0;
}

int jw_grpc_timeout_parse(const char *s, size_t len, uint64_t *ms) {
  if (s == NULL || len < 2 || len > 9)
    return JW_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return JW_EINVAL;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  /* Eight digits of hours is about 3.6e14 ms: no overflow in 64 bits. */
  switch (s[len - 1]) {
  case 'H':
    *ms = v * 3600000;
    break;
  case 'M':
    *ms = v * 60000;
    break;
  case 'S':
    *ms = v * 1000;
    break;
  case 'm':
    *ms = v;
    break;
  case 'u':
    *ms = (v + 999) / 1000;
    break;
  case 'n':
    *ms = (v + 999999) / 1000000;
    break;
  default:
    return JW_EINVAL;
  }
  return 0;
}

int jw_grpc_timeout_format(uint64_t ms, char *buf, size_t cap) {
  static const struct {
    uint64_t ms;
    char unit;
  } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
  const uint64_t max = 99999999;
  size_t i;
  uint64_t v = ms;
  for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    /* Rounded up without ms + unit - 1, which wraps near UINT64_MAX. */
    v = ms / units[i].ms + (ms % units[i].ms != 0);
    if (v <= max)
      break;
  }
  if (i == sizeof(units) / sizeof(units[0])) {
    i--;
    v = max;
  }
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  if (cap < (size_t)n + 2)
    return JW_EINVAL;
  for (int k = 0; k < n; k++)
    buf[k] = tmp[n - 1 - k];
  buf[n] = units[i].unit;
  buf[n + 1] = '\0';
  return n + 1;
}

size_t jw_grpc_message_encode(const uint8_t *in, size_t len, char *out,
                              size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = in[i];
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      if (o + 1 < cap)
        out[o] = (char)c;
      o++;
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      for (int k = 0; k < 3; k++, o++)
        if (o + 1 < cap)
          out[o] = e[k];
    }
  }
  if (cap > 0)
    out[o < cap ? o : cap - 1] = '\0';
  return o;
}

size_t jw_grpc_message_decode(const char *in, size_t len, uint8_t *out,
                              size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = (uint8_t)in[i];
    if (c == '%' && i + 2 < len && jw__hexval(in[i + 1]) >= 0 &&
        jw__hexval(in[i + 2]) >= 0) {
      c = (uint8_t)(jw__hexval(in[i + 1]) << 4 | jw__hexval(in[i + 2]));
      i += 2;
    }
    if (o + 1 < cap)
      out[o] = c;
    o++;
  }
  if (cap > 0)
    out[o < cap ? o : cap - 1] = '\0';
  return o;
}

int jw_grpc_status_from_http(int http_status) {
  switch (http_status) {
  case 400:
  case 431:
    return JW_GRPC_INTERNAL;
  case 401:
    return JW_GRPC_UNAUTHENTICATED;
  case 403:
    return JW_GRPC_PERMISSION_DENIED;
  case 404:
    return JW_GRPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return JW_GRPC_UNAVAILABLE;
  default:
    return JW_GRPC_UNKNOWN;
  }
}

int jw_grpc_status_from_h2_error(uint32_t error_code) {
  switch (error_code) {
  case 7: /* REFUSED_STREAM: nothing was processed; it may be retried. */
    return JW_GRPC_UNAVAILABLE;
  case 8: /* CANCEL */
    return JW_GRPC_CANCELLED;
  case 11: /* ENHANCE_YOUR_CALM */
    return JW_GRPC_RESOURCE_EXHAUSTED;
  case 12: /* INADEQUATE_SECURITY */
    return JW_GRPC_PERMISSION_DENIED;
  default:
    return JW_GRPC_INTERNAL;
  }
}
