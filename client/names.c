/*
 * The user's words checked and normalized (see names.h). Nothing here
 * prints or allocates; every length a user controls is capped.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "names.h"

#define DEFAULT_PORT "3000"

cli_id_kind_t cli_id_kind(const char *arg) {
  size_t n = 0;

  while (arg[n] != '\0') {
    if (!isxdigit((unsigned char)arg[n]) || n >= CLI_ID_LEN)
      return CLI_ID_OTHER;
    n++;
  }
  if (n == CLI_ID_LEN)
    return CLI_ID_FULL;
  if (n >= CLI_ID_PREFIX_MIN)
    return CLI_ID_PREFIX;
  return n > 0 ? CLI_ID_SHORT : CLI_ID_OTHER;
}

size_t cli_id_match(const char *prefix, const char *const *ids, size_t n,
                    size_t *first) {
  size_t len = strlen(prefix), i, count = 0;

  for (i = 0; i < n; i++) {
    if (ids[i] != NULL && strncasecmp(ids[i], prefix, len) == 0) {
      if (count++ == 0)
        *first = i;
    }
  }
  return count;
}

/* Longer words are not typos of a command name. */
#define SUGGEST_MAX 32

/*
 * The edit distance of a and b, both shorter than SUGGEST_MAX, counting a
 * swap of two neighbours as one edit (the optimal string alignment
 * distance): "stauts" is one edit from "status", two from "start".
 */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j;
  size_t d[SUGGEST_MAX + 1][SUGGEST_MAX + 1];

  for (i = 0; i <= la; i++)
    d[i][0] = i;
  for (j = 0; j <= lb; j++)
    d[0][j] = j;
  for (i = 1; i <= la; i++) {
    for (j = 1; j <= lb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  }
  return d[la][lb];
}

const char *cli_suggest(const char *word, const char *const *names, size_t n) {
  size_t len = strlen(word), i, best_d = 3;
  const char *best = NULL;

  if (len == 0 || len >= SUGGEST_MAX)
    return NULL;
  if (len >= 2) {
    for (i = 0; i < n; i++) {
      if (strncmp(names[i], word, len) == 0)
        return names[i];
    }
  }
  for (i = 0; i < n; i++) {
    size_t d;
    if (strlen(names[i]) >= SUGGEST_MAX)
      continue;
    d = distance(word, names[i]);
    if (d < best_d && d < len) {
      best_d = d;
      best = names[i];
    }
  }
  return best;
}

int cli_addr_normalize(const char *in, char *out, size_t outlen,
                       const char **why) {
  char buf[300];
  const char *scheme = strstr(in, "://");
  jw__addr_t a;
  size_t len;
  int n;

  /*
   * A URL is what people paste from a browser or a config of another
   * tool; https:// is what teleportd speaks, so it names the same place.
   */
  if (scheme != NULL) {
    if (scheme - in != 5 || strncasecmp(in, "https", 5) != 0) {
      *why = "the only scheme teleportd speaks is https:// (or none)";
      return -1;
    }
    in = scheme + 3;
  }
  len = strlen(in);
  if (scheme != NULL && len > 0 && in[len - 1] == '/')
    len--;
  if (len >= sizeof(buf)) {
    *why = "it is too long";
    return -1;
  }
  memcpy(buf, in, len);
  buf[len] = '\0';
  if (scheme != NULL && strchr(buf, '/') != NULL) {
    *why = "a path after the address means nothing to teleportd";
    return -1;
  }
  /* The syntax is the library's (lib/common/addr.c); the defaults are the
   * CLI's: the port teleportd listens on, and ":PORT" on loopback. */
  *why = NULL;
  if (jw__addr_parse(buf, &a, why) != 0 || a.port == 0) {
    if (*why == NULL || *why == jw__addr_bad_port)
      *why = "the port must be a number from 1 to 65535";
    return -1;
  }
  if (a.port < 0)
    n = snprintf(out, outlen, a.ipv6 ? "[%s]:%s" : "%s:%s", a.host,
                 DEFAULT_PORT);
  else if (a.host[0] == '\0')
    n = snprintf(out, outlen, "127.0.0.1%s", buf);
  else
    n = snprintf(out, outlen, "%s", buf);
  if (n < 0 || (size_t)n >= outlen) {
    *why = "it is too long";
    return -1;
  }
  return 0;
}

int cli_parse_signal(const char *s) {
  const char *name = s;
  char *end;
  long v;
  int sig;

  if (isdigit((unsigned char)s[0])) {
    v = strtol(s, &end, 10);
    return *end == '\0' && v >= 1 && v <= 64 ? (int)v : -1;
  }
  if (strncasecmp(name, "SIG", 3) == 0)
    name += 3;
  for (sig = 1; sig < 32; sig++) {
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev != NULL && strcasecmp(abbrev, name) == 0)
      return sig;
  }
  return -1;
}
