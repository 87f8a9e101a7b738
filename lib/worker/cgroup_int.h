/*
 * Internals of jw_cgroup shared with jw_process and the unit tests.
 */
#ifndef JOBWORKER_CGROUP_INT_H
#define JOBWORKER_CGROUP_INT_H

#include <stddef.h>
#include <sys/types.h>

#include "jobworker/cgroup.h"

/* At most this many hierarchies are used for one job. */
#define JW__CG_MAX_HIER 8

/* At most this many control files are written for one job's limits. */
#define JW__CG_MAX_SETTINGS 8

/*
 * One control file write: ctrl names the v1 controller whose hierarchy
 * holds the file ("" on cgroup2). An optional write may fail (the file is
 * missing on some kernels) without failing the cgroup.
 */
typedef struct {
  const char *ctrl;
  char file[48];
  char value[96];
  int optional;
} jw__cg_setting_t;

/*
 * The writes that put limits on a cgroup2 job directory, in order.
 * Returns how many were stored in out (at most JW__CG_MAX_SETTINGS).
 */
size_t jw__cgroup_v2_settings(const jw_limits_t *limits, dev_t io_device,
                              jw__cg_setting_t *out);

/* The same for cgroup v1 controllers. */
size_t jw__cgroup_v1_settings(const jw_limits_t *limits, dev_t io_device,
                              jw__cg_setting_t *out);

/*
 * The parent directory jobs get in the hierarchy of v1 controller ctrl
 * ("memory", "pids", ...), or in the cgroup2 hierarchy for ""; NULL when
 * the manager has none there.
 */
const char *jw__cgroup_mgr_parent(const jw_cgroup_mgr_t *mgr, const char *ctrl);

/*
 * What a spawning process needs to enter the cgroup: opened by the parent
 * before the child exists, written to by the child without allocating.
 */
typedef struct {
  int v2_dir;   /* the cgroup2 job directory, for CLONE_INTO_CGROUP; or -1 */
  int v2_procs; /* its cgroup.procs, where clone3 is missing; or -1 */
  int v1_procs[JW__CG_MAX_HIER]; /* cgroup.procs of each v1 job directory */
  size_t nv1;
} jw__cg_spawn_t;

/*
 * Opens the descriptors (O_CLOEXEC) in s. Returns 0 or -errno; on failure
 * nothing is left open.
 */
int jw__cgroup_spawn_open(const jw_cgroup_t *cg, jw__cg_spawn_t *s);

/* Closes what jw__cgroup_spawn_open opened. */
void jw__cgroup_spawn_close(jw__cg_spawn_t *s);

#endif /* JOBWORKER_CGROUP_INT_H */
