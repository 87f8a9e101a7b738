/*
 * jw_parse_size, jw_parse_cpus: the sizes and CPU amounts that limits are
 * given in (docs/isolation.md), for the server's flags, the CLI and any
 * embedder that takes limits from people.
 */
#ifndef JOBWORKER_UNITS_H
#define JOBWORKER_UNITS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parses a size such as "512M", "64MiB", "1G", "4096" or "1.5G" (binary
 * units: K = 1024, either case, then optionally "B" or "iB"; a fraction is
 * rounded down to a byte, and a size without a unit has none) into bytes.
 * Digits only: no sign, space, hex, exponent, nan or inf. Returns 0, or
 * -EINVAL for anything else or a size over INT64_MAX.
 */
int jw_parse_size(const char *s, int64_t *out);

/*
 * Parses a CPU amount such as "0.5", "2" or "250m" (thousandths) into
 * thousandths of a CPU, rounded to the nearest. Digits and a point only,
 * the number at most 1000000. Returns 0 or -EINVAL.
 */
int jw_parse_cpus(const char *s, int64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_UNITS_H */
