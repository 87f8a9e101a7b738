/*
 * What a user types, checked and turned into what the server wants: job
 * ids given by a prefix, a command name with a typo, --addr with a scheme,
 * a signal by name or number. Pure functions, no I/O, so that
 * tests/unit/test_cli_names.c can drive them directly.
 */
#ifndef TELEPORT_NAMES_H
#define TELEPORT_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* A job id as Start returns it: 32 lowercase hex digits. */
#define CLI_ID_LEN 32
/* The shortest prefix of an id that is looked up. */
#define CLI_ID_PREFIX_MIN 4

/* What cli_id_kind says about an ID argument. */
typedef enum {
  CLI_ID_FULL,   /* 32 hex digits: used as it is */
  CLI_ID_PREFIX, /* 4 to 31 hex digits: resolved through List */
  CLI_ID_SHORT,  /* 1 to 3 hex digits: too short to look up */
  CLI_ID_OTHER,  /* anything else: sent as it is (the server says) */
} cli_id_kind_t;

/* Classifies an ID argument (case-insensitive hex). */
cli_id_kind_t cli_id_kind(const char *arg);

/*
 * Counts the ids of ids[0..n) that start with prefix (case-insensitive);
 * *first is the index of the first match (unchanged when there is none).
 */
size_t cli_id_match(const char *prefix, const char *const *ids, size_t n,
                    size_t *first);

/*
 * The name of names[0..n) nearest to word: one that word is a prefix of
 * (at least 2 characters), else the nearest by edit distance when that is
 * at most 2 and less than the word's length. NULL when none is near.
 */
const char *cli_suggest(const char *word, const char *const *names, size_t n);

/*
 * Normalizes an address to HOST:PORT ([V6]:PORT for IPv6), adding the
 * default port (3000) when there is none and 127.0.0.1 for ":PORT". An
 * "https://" scheme and a trailing "/" are accepted and dropped; any other
 * scheme is refused (teleportd speaks only TLS). Returns 0, or -1 with a
 * reason in why.
 */
int cli_addr_normalize(const char *in, char *out, size_t outlen,
                       const char **why);

/*
 * Parses a signal: a number from 1 to 64, or a name with or without "SIG",
 * in any case ("USR1", "sigterm"). Returns its number, or -1.
 */
int cli_parse_signal(const char *s);

#endif /* TELEPORT_NAMES_H */
