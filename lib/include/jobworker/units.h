/*
 * The units of teleportd's flags and the teleport CLI (docs/isolation.md,
 * docs/cli.md): sizes, CPU amounts and durations, parsed exactly (no
 * floating point): digits, optionally a point and more digits, then the
 * unit.
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

/* The longest duration jw_parse_duration takes: 365 days. */
#define JW_DURATION_MAX_MS (86400000ULL * 365)

/*
 * Parses a duration such as "10s", "500ms", "2m", "1h", "1.5s" or plain
 * seconds ("7") into milliseconds, a fraction of one rounded down. Digits
 * and a point only; at most JW_DURATION_MAX_MS. Returns 0 or -EINVAL.
 */
int jw_parse_duration(const char *s, uint64_t *ms);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_UNITS_H */
