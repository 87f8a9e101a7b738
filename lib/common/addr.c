#include "addr.h"

#include <string.h>

#include "jobworker/error.h"

const char jw__addr_bad_port[] = "the port must be a number from 0 to 65535";

/* Decimal digits, at least one, up to 65535. */
static int parse_port(const char *p, int *port) {
  long v = 0;
  if (*p == '\0')
    return JW_EINVAL;
  for (; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return JW_EINVAL;
    v = v * 10 + (*p - '0');
    if (v > 65535)
      return JW_EINVAL;
  }
  *port = (int)v;
  return 0;
}

static int set_host(jw__addr_t *out, const char *p, size_t len,
                    const char **why) {
  if (len > JW__ADDR_HOST_MAX) {
    *why = "it is too long";
    return JW_EINVAL;
  }
  memcpy(out->host, p, len);
  out->host[len] = '\0';
  return 0;
}

int jw__addr_parse(const char *addr, jw__addr_t *out, const char **why) {
  const char *colon;
  memset(out, 0, sizeof(*out));
  out->port = -1;
  *why = NULL;
  if (addr == NULL || addr[0] == '\0') {
    *why = "it is empty";
    return JW_EINVAL;
  }
  if (addr[0] == '[') {
    const char *end = strchr(addr, ']');
    if (end == NULL || end == addr + 1) {
      *why = "an IPv6 address goes in brackets: [::1]:3000";
      return JW_EINVAL;
    }
    out->ipv6 = true;
    if (set_host(out, addr + 1, (size_t)(end - addr - 1), why) != 0)
      return JW_EINVAL;
    if (end[1] == '\0')
      return 0;
    if (end[1] != ':' || parse_port(end + 2, &out->port) != 0) {
      *why = jw__addr_bad_port;
      return JW_EINVAL;
    }
    return 0;
  }
  colon = strchr(addr, ':');
  if (colon == NULL)
    return set_host(out, addr, strlen(addr), why);
  if (strchr(colon + 1, ':') != NULL) {
    /* More than one colon and no brackets: a bare IPv6 address. */
    out->ipv6 = true;
    return set_host(out, addr, strlen(addr), why);
  }
  if (set_host(out, addr, (size_t)(colon - addr), why) != 0)
    return JW_EINVAL;
  if (parse_port(colon + 1, &out->port) != 0) {
    *why = jw__addr_bad_port;
    return JW_EINVAL;
  }
  return 0;
}

int jw__addr_split(const char *addr, char *host, size_t hostcap, int *port) {
  jw__addr_t a;
  const char *why;
  if (jw__addr_parse(addr, &a, &why) != 0 || a.port < 0 ||
      strlen(a.host) >= hostcap)
    return JW_EINVAL;
  memcpy(host, a.host, strlen(a.host) + 1);
  *port = a.port;
  return 0;
}
