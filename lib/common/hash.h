/*
 * FNV-1a, the one string hash of the library (job table buckets, names
 * derived from paths). Not for anything an attacker must not steer: job
 * ids, its main keys, are random.
 */
#ifndef JW_COMMON_HASH_H
#define JW_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * One body for both widths: FNV-1a is the same loop with the offset basis
 * and prime of its width (the 32-bit one names the cgroup parent from the
 * data directory, so its value must not change).
 */
#define JW__FNV1A(name, type, basis, prime)                                    \
  static inline type name(const void *p, size_t n) {                           \
    const unsigned char *s = p;                                                \
    type h = (basis);                                                          \
    for (size_t i = 0; i < n; i++)                                             \
      h = (type)((h ^ s[i]) * (prime));                                        \
    return h;                                                                  \
  }

JW__FNV1A(jw__fnv1a64, uint64_t, 1469598103934665603ULL, 1099511628211ULL)
JW__FNV1A(jw__fnv1a32, uint32_t, 2166136261u, 16777619u)

#endif /* JW_COMMON_HASH_H */
