/*
 * Internals of jw_cgroup shared by its three files (cgroup_mgr.c: the
 * manager; cgroup.c: the per-job cgroup; cgroup_ctl.c: the control files
 * and what each backend writes to them), jw_process and the unit tests.
 */
#ifndef JOBWORKER_CGROUP_INT_H
#define JOBWORKER_CGROUP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jobworker/cgroup.h"

/* At most this many hierarchies are used for one job. */
#define JW__CG_MAX_HIER 8

/* At most this many control files are written for one job's limits. */
#define JW__CG_MAX_SETTINGS 8

/* The v1 controllers a job may use, as bits of jw__cg_hier_t.ctrls. */
enum {
  JW__C_MEMORY = 1 << 0,
  JW__C_CPU = 1 << 1,
  JW__C_CPUACCT = 1 << 2,
  JW__C_PIDS = 1 << 3,
  JW__C_BLKIO = 1 << 4,
  JW__C_FREEZER = 1 << 5,
};

/* The cgroup2 controllers a job may use, as bits of mgr.v2_ctrls. */
enum {
  JW__V2_MEMORY = 1 << 0,
  JW__V2_CPU = 1 << 1,
  JW__V2_IO = 1 << 2,
  JW__V2_PIDS = 1 << 3
};

typedef struct {
  int v2;
  unsigned ctrls;   /* JW__C_* for v1 */
  char *mount;      /* where it is mounted */
  char *mount_root; /* the mount's root within the hierarchy */
  char *parent;     /* <mount>/<own path>/<name>, once usable */
} jw__cg_hier_t;

/*
 * At most this many empty job cgroups are kept for reuse (cgroup_pool.c),
 * each with its open descriptors (about a dozen).
 */
#define JW__CG_POOL_MAX 32

/*
 * A pooled v1 memory cgroup still charged with more than this (the page
 * cache of files its job wrote) is emptied (memory.force_empty, a reclaim
 * of 0.3 ms even when little is left); less (the kernel objects a job's
 * exit frees a little later) stays, and is taken off the next job's peak.
 */
#define JW__CG_POOL_CHARGE_MAX (1024 * 1024)

/* The longest owner name a pooled cgroup remembers (longer: not pooled). */
#define JW__CG_OWNER_MAX 128

/* The longest job cgroup name. */
#define JW__CG_NAME_MAX 64

/*
 * What a spawning process needs to enter the cgroup: opened by the parent
 * before the child exists, written to by the child without allocating.
 */
typedef struct {
  int v2_procs; /* the cgroup2 job directory's cgroup.procs; or -1 */
  int v1_procs[JW__CG_MAX_HIER]; /* cgroup.procs of each v1 job directory */
  size_t nv1;
  int kept; /* the cgroup's own descriptors: not closed by spawn_close */
} jw__cg_spawn_t;

/*
 * The descriptors a job cgroup keeps from its creation to its removal:
 * what a Start and a job's end would otherwise open by path each time.
 * -1 where the host has no such file.
 */
typedef struct {
  jw__cg_spawn_t spawn;
  int events;   /* cgroup2 cgroup.events */
  int kill;     /* cgroup2 cgroup.kill */
  int cpu;      /* v1 cpuacct.usage, or cgroup2 cpu.stat (cpu_v2) */
  int mem_peak; /* v1 memory.max_usage_in_bytes, or cgroup2 memory.peak */
  int mem_oom;  /* v1 memory.oom_control, or cgroup2 memory.events */
  int mem_now;  /* v1 memory.usage_in_bytes, or cgroup2 memory.current */
  int cpu_v2, mem_v2;
} jw__cg_fds_t;

struct jw_cgroup_mgr_s {
  char *name;
  jw__cg_hier_t h[JW__CG_MAX_HIER];
  size_t nh;
  int v2;            /* index of the cgroup2 hierarchy, or -1 */
  unsigned v2_ctrls; /* JW__V2_* enabled in the parent's subtree_control */
  unsigned v2_want;  /* JW__V2_* the own cgroup offers */
  int v2_busy;       /* the own cgroup2 directory holds processes */
  int v2_kill;       /* the parent has cgroup.kill */
  unsigned caps;
  dev_t io_dev;
  const char *backend;
  jw_cgroup_t *pool[JW__CG_POOL_MAX]; /* empty job cgroups, for reuse */
  size_t npool;
  uint64_t pool_taken; /* taken from the pool, ever */
};

struct jw_cgroup_s {
  jw_cgroup_mgr_t *mgr;
  char *dirs[JW__CG_MAX_HIER]; /* NULL where none (or already removed) */
  char name[JW__CG_NAME_MAX];
  int fds_open; /* fds holds descriptors (a cgroup of jw_cgroup_create) */
  jw__cg_fds_t fds;
  /*
   * What the counters that cannot be reset said when this job got the
   * cgroup: its usage is the difference.
   */
  uint64_t base_cpu_ns;
  uint64_t base_oom;
  /* What the last job left charged (under JW__CG_POOL_CHARGE_MAX). */
  uint64_t base_mem;
  /* The limits written, and the owner of the job that last ran in it. */
  jw_limits_t limits;
  char owner[JW__CG_OWNER_MAX];
};

/* Returns a newly allocated "a/b", or NULL. */
char *jw__cgroup_join(const char *a, const char *b);

/*
 * Reads a small file dir/file whole into buf (NUL-terminated, also on
 * failure). Returns its length or -errno.
 */
ssize_t jw__cgroup_read(const char *dir, const char *file, char *buf,
                        size_t size);

/* Writes value to dir/file in one write(). Returns 0 or -errno. */
int jw__cgroup_write(const char *dir, const char *file, const char *value);

/* Finds "key N" on a line of text; returns 0 and sets *out, or -ENOENT. */
int jw__cgroup_find_key(const char *text, const char *key, uint64_t *out);

/* The JW__C_* bits of a comma-separated list of v1 controller names. */
unsigned jw__cgroup_v1_bits(const char *list);

/* The JW__C_* bit of one v1 controller name, or 0. */
unsigned jw__cgroup_v1_bit(const char *ctrl);

/* The JW_CG_* capabilities that limits l (NULL: none) need. */
unsigned jw__cgroup_limits_need(const jw_limits_t *l);

/* The v1 controllers (JW__C_*) that give capabilities caps (JW_CG_*). */
unsigned jw__cgroup_v1_ctrls_for(unsigned caps);

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
 * Writes limits (NULL: none) into the job directories of cg, in each
 * backend's files. Returns 0 or the -errno of the first write that failed
 * and was not optional.
 */
int jw__cgroup_apply_limits(jw_cgroup_t *cg, const jw_limits_t *limits);

/* The job directory of the hierarchy holding v1 controller bit, or NULL. */
const char *jw__cgroup_dir_of(const jw_cgroup_t *cg, unsigned bit);

/* The cgroup2 job directory, or NULL. */
const char *jw__cgroup_v2_dir(const jw_cgroup_t *cg);

/*
 * Opens the job cgroup name that exists already under the manager's
 * parents (what a previous run left), as far as it exists. Returns 0 or
 * -ENOMEM.
 */
int jw__cgroup_open_existing(jw_cgroup_mgr_t *mgr, const char *name,
                             jw_cgroup_t **out);

/*
 * The parent directory jobs get in the hierarchy of v1 controller ctrl
 * ("memory", "pids", ...), or in the cgroup2 hierarchy for ""; NULL when
 * the manager has none there.
 */
const char *jw__cgroup_mgr_parent(const jw_cgroup_mgr_t *mgr, const char *ctrl);

/*
 * Fills s with the descriptors (O_CLOEXEC) of cg: its kept ones, or ones
 * opened for this spawn. Returns 0 or -errno; on failure nothing is left
 * open.
 */
int jw__cgroup_spawn_open(const jw_cgroup_t *cg, jw__cg_spawn_t *s);

/* Closes what jw__cgroup_spawn_open opened. */
void jw__cgroup_spawn_close(jw__cg_spawn_t *s);

/* cgroup.c: the kept descriptors */

/* Opens cg's kept descriptors (cg->fds). Returns 0 or -errno. */
int jw__cgroup_fds_open(jw_cgroup_t *cg);

/* Closes them. */
void jw__cgroup_fds_close(jw_cgroup_t *cg);

/*
 * Reads the cgroup's counters as the kernel has them (no baseline taken
 * off): the CPU time and the OOM kill count. Returns 0 or -errno.
 */
int jw__cgroup_raw_counters(jw_cgroup_t *cg, uint64_t *cpu_ns, uint64_t *oom);

/*
 * The usage from the kept descriptors (fds_open): one read of each file,
 * the counters less what they said when this job got the cgroup, into
 * out; the raw counters into *cpu_ns and *oom.
 */
void jw__cgroup_usage_kept(jw_cgroup_t *cg, jw_usage_t *out, uint64_t *cpu_ns,
                           uint64_t *oom);

/* Removes whatever directories are left; returns 0 or -EBUSY. */
int jw__cgroup_remove_dirs(jw_cgroup_t *cg);

/* Closes cg's descriptors and frees it (its directories stay). */
void jw__cgroup_free(jw_cgroup_t *cg);

/* cgroup_pool.c */

/*
 * Takes an empty job cgroup of owner's from the pool whose limits are
 * limits (NULL: none): a Start then makes, writes and opens nothing.
 * Returns 0 and *out, or -ENOENT when none fits.
 */
int jw__cgroup_pool_take(jw_cgroup_mgr_t *mgr, const char *owner,
                         const jw_limits_t *limits, jw_cgroup_t **out);

/*
 * Puts the cgroup of a final job of owner's into the pool instead of
 * removing it: when it is empty, nothing of the job is left in it to
 * charge or leak to the next (v1 memory with pages still charged is
 * emptied first), its peak is reset and the pool has room. *usage gets
 * the job's final usage, as jw_cgroup_usage gives it, from the reads the
 * pool needs anyway. Returns 0 (the pool has cg now) or a negative code
 * (the caller removes it).
 */
int jw__cgroup_pool_put(jw_cgroup_t *cg, const char *owner, jw_usage_t *usage);

/*
 * Removes up to max pooled cgroups beyond keep, the ones pooled longest
 * first. Returns how many are left in the pool.
 */
size_t jw__cgroup_pool_trim(jw_cgroup_mgr_t *mgr, size_t keep, size_t max);

#endif /* JOBWORKER_CGROUP_INT_H */
