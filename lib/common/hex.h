/*
 * Hex digits, for the percent-encodings of the library (gRPC messages,
 * certificate names in the uid table).
 */
#ifndef JW_COMMON_HEX_H
#define JW_COMMON_HEX_H

/* The value of hex digit c (either case), or -1. */
static inline int jw__hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

#endif /* JW_COMMON_HEX_H */
