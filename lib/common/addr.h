/*
 * The one parser of "HOST:PORT" addresses, for the server's listen
 * address, the client library's and the teleport CLI's --addr. Each adds
 * its own policy on top (the server binds ":PORT" on every IPv4 address,
 * the CLI supplies a default port and reads ":PORT" as loopback); the
 * syntax is decided here once.
 */
#ifndef JW_COMMON_ADDR_H
#define JW_COMMON_ADDR_H

#include <stdbool.h>
#include <stddef.h>

/* The longest host part an address may have (a DNS name is at most 253). */
#define JW__ADDR_HOST_MAX 255

typedef struct {
  char host[JW__ADDR_HOST_MAX + 1]; /* without brackets; "" for ":PORT" */
  int port;                         /* 0 to 65535, or -1 when none given */
  bool ipv6;                        /* the host is an IPv6 literal */
} jw__addr_t;

/* The sentence jw__addr_parse gives for a malformed port. */
extern const char jw__addr_bad_port[];

/*
 * Parses "HOST:PORT", "[V6]:PORT", "[V6]", "HOST" or a bare IPv6 literal
 * (more than one colon, no brackets: all host, no port). The port is
 * decimal digits up to 65535. Returns 0, or JW_EINVAL with a sentence in
 * *why (never NULL then) saying what is wrong.
 */
int jw__addr_parse(const char *addr, jw__addr_t *out, const char **why);

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into host (without brackets) and
 * port: jw__addr_parse requiring a port. Returns 0 or JW_EINVAL.
 */
int jw__addr_split(const char *addr, char *host, size_t hostcap, int *port);

#endif /* JW_COMMON_ADDR_H */
