/*
 * jw_cgroup: a cgroup per job, for resource limits, usage figures and
 * killing everything a job started.
 *
 * A manager (jw_cgroup_mgr_t) finds out at runtime what the host offers
 * and picks a backend:
 *
 * - cgroup2 with controllers (most production hosts): one directory per
 *   job under a parent cgroup whose cgroup.subtree_control enables the
 *   memory, cpu, io and pids controllers.
 * - cgroup v1 controllers (memory, cpu, cpuacct, pids, blkio, freezer),
 *   each mounted on its own or co-mounted, one directory per job in each.
 * - the hybrid of the two: v1 controllers for the limits, and a cgroup2
 *   hierarchy without controllers for membership (atomic entry at spawn,
 *   cgroup.kill, cgroup.events).
 *
 * Every job directory lives under the server's own cgroup in each
 * hierarchy (from /proc/self/cgroup), in a parent named after the
 * manager: <mount>/<own path>/<name>/<job>. Without any usable hierarchy
 * the manager still exists, with no capabilities; jobs then run without a
 * cgroup and limits are refused.
 */
#ifndef JOBWORKER_CGROUP_H
#define JOBWORKER_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Resource limits; 0 in a field means no limit. */
typedef struct {
  int64_t memory_bytes;
  int64_t cpu_millis; /* 1000 = one CPU */
  int64_t io_read_bps;
  int64_t io_write_bps;
  int64_t pids;
} jw_limits_t;

/* What a job's cgroup says about it; zero where the host cannot tell. */
typedef struct {
  uint64_t cpu_usage_ns;
  uint64_t memory_peak_bytes;
  bool oom_killed;
} jw_usage_t;

/* Namespaces a job gets of its own (jw_process_options_t.isolation). */
enum {
  JW_ISOLATE_PID = 1 << 0,
  JW_ISOLATE_MOUNT = 1 << 1,
  JW_ISOLATE_NET = 1 << 2,
};

/* What a manager can do on this host (jw_cgroup_mgr_caps). */
enum {
  JW_CG_MEMORY = 1 << 0, /* memory limit, peak and OOM count */
  JW_CG_CPU = 1 << 1,    /* CPU bandwidth limit */
  JW_CG_IO = 1 << 2,     /* read/write bandwidth limits */
  JW_CG_PIDS = 1 << 3,   /* process count limit */
  JW_CG_KILL = 1 << 4,   /* a job cgroup at all: membership and kill */
  JW_CG_CPUACCT = 1 << 5 /* CPU usage */
};

typedef struct jw_cgroup_mgr_s jw_cgroup_mgr_t;
typedef struct jw_cgroup_s jw_cgroup_t;

typedef struct {
  /*
   * The parent cgroup's name, one path component (required). Two managers
   * with the same name and the same own cgroup share a parent: a restarted
   * server uses the same name to find what its previous run left.
   */
  const char *name;
  /*
   * The block device that io limits apply to; 0 means none (io limits are
   * then unsupported). A partition is mapped to its whole disk, as the
   * kernel throttles whole disks only.
   */
  dev_t io_device;
  /*
   * Test hooks: where to read the mount table and the own cgroup from.
   * NULL: /proc/self/mountinfo and /proc/self/cgroup.
   */
  const char *mountinfo_path;
  const char *proc_cgroup_path;
} jw_cgroup_mgr_options_t;

/*
 * Creates a manager: finds the cgroup hierarchies, the server's own cgroup
 * in each, and creates the parent cgroup in each usable one (enabling the
 * cgroup2 controllers in its subtree_control; when the server's own
 * cgroup2 directory holds processes, the server first moves itself into a
 * leaf "<name>-server" beside the parent, as the no-internal-process rule
 * requires). A host without usable cgroups is not an error: the manager
 * then has no capabilities. Returns 0, -EINVAL or -ENOMEM.
 */
int jw_cgroup_mgr_new(const jw_cgroup_mgr_options_t *opts,
                      jw_cgroup_mgr_t **out);

/* The JW_CG_* capabilities; 0 when the host offers none. */
unsigned jw_cgroup_mgr_caps(const jw_cgroup_mgr_t *mgr);

/*
 * A static description of the backend: "cgroup2", "cgroup1+cgroup2"
 * (the hybrid), "cgroup1" or "none".
 */
const char *jw_cgroup_mgr_backend(const jw_cgroup_mgr_t *mgr);

/* The io device in effect (a whole disk), or 0. */
dev_t jw_cgroup_mgr_io_device(const jw_cgroup_mgr_t *mgr);

/*
 * Returns the JW_CG_* capabilities that limits need and the manager lacks;
 * 0 when the manager can enforce them all.
 */
unsigned jw_cgroup_mgr_missing(const jw_cgroup_mgr_t *mgr,
                               const jw_limits_t *limits);

/*
 * Kills and removes every job cgroup found under the parent: what a
 * previous run left after it was killed. Blocks for at most about two
 * seconds waiting for killed processes to leave; call it before serving.
 * Returns the number of job cgroups removed (a cgroup that could not be
 * removed is not counted), or a negative code.
 */
int jw_cgroup_mgr_remove_stale(jw_cgroup_mgr_t *mgr);

/*
 * Frees the manager and removes its parent cgroups when they are empty.
 * Job cgroups must have been destroyed first.
 */
void jw_cgroup_mgr_free(jw_cgroup_mgr_t *mgr);

/*
 * Creates the cgroup named name (one path component) with limits (NULL:
 * none) in every hierarchy the manager uses; a directory of that name
 * that exists already is reused. Returns 0, JW_EUNSUPPORTED when a limit
 * needs a capability the manager lacks (or the manager has none at all),
 * -errno of a failed mkdir or write (nothing is left behind then), or
 * -ENOMEM.
 */
int jw_cgroup_create(jw_cgroup_mgr_t *mgr, const char *name,
                     const jw_limits_t *limits, jw_cgroup_t **out);

/*
 * Sends SIGKILL to every process in the cgroup: cgroup.kill on cgroup2,
 * otherwise freeze, kill each member, thaw (or kill members one by one
 * when there is no freezer). Returns 0 or -errno.
 */
int jw_cgroup_kill(jw_cgroup_t *cg);

/* Returns true when no process is left in the cgroup. */
bool jw_cgroup_is_empty(jw_cgroup_t *cg);

/* Reads the cgroup's usage figures into out. Returns 0 or -errno. */
int jw_cgroup_usage(jw_cgroup_t *cg, jw_usage_t *out);

/*
 * Removes the cgroup's directories. Returns 0 (then cg is freed), or
 * -EBUSY while processes are still in it (killed ones may take a moment
 * to leave; call again later; cg stays valid).
 */
int jw_cgroup_remove(jw_cgroup_t *cg);

/* Frees cg without removing its directories (for a cgroup left behind). */
void jw_cgroup_free(jw_cgroup_t *cg);

/*
 * The default process limit of a job, as systemd's DefaultTasksMax=15%:
 * 15% of the smaller of kernel.pid_max and kernel.threads-max (from
 * /proc/sys/kernel), at least 1. Returns it, or 0 when neither can be read.
 */
int64_t jw_cgroup_default_pids(void);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_CGROUP_H */
