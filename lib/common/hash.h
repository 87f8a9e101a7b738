/*
 * FNV-1a, the one string hash of the library (job table buckets, names
 * derived from paths). Not for anything an attacker must not steer: job
 * ids, its main keys, are random.
 */
#ifndef JW_COMMON_HASH_H
#define JW_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t jw__fnv1a64(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ULL;
  return h;
}

static inline uint32_t jw__fnv1a32(const void *p, size_t n) {
  const unsigned char *s = p;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 16777619u;
  return h;
}

#endif /* JW_COMMON_HASH_H */
