/*
 * The pool of empty job cgroups: a final job's cgroup is kept, with its
 * open descriptors, for the next Start of the same owner with the same
 * limits, instead of being removed. Making a cgroup costs a mkdir in each
 * hierarchy (six v1 ones and cgroup2 on a hybrid host: every controller
 * creates its control files), its limit writes and a dozen opens; removing
 * it an rmdir each. A pooled one costs a Start nothing of that.
 *
 * What a reused cgroup must not carry from one job to the next:
 * - processes: it is pooled only when empty (cgroup.events, or no pid in
 *   cgroup.procs), and a job's process is killed with it anyway;
 * - counters: v1 memory.max_usage_in_bytes and cgroup2 memory.peak (the
 *   kept descriptor) are reset to the current usage; the CPU time and the
 *   OOM kill count, which cgroup2 cannot reset, are read once when the job
 *   ends (the read that gives its usage) and taken off the next job's
 *   figures (jw_cgroup_usage);
 * - memory: pages the last job left charged (page cache of the files it
 *   wrote, kernel objects) would count against the next job's limit and
 *   peak. Up to JW__CG_POOL_CHARGE_MAX (1 MiB; a /bin/true leaves 50-400
 *   KiB of kernel objects its exit frees a little later) is accepted and
 *   taken off the next job's peak; beyond it v1 memory is emptied with
 *   memory.force_empty, and a cgroup2 one (no such file) is removed
 *   rather than pooled. A job's limit so has at most 1 MiB of reclaimable
 *   pages of an earlier job of the same owner in it;
 * - its name: /proc/PID/cgroup shows it, and the job that ran in it knew
 *   it; another tenant's job must not be found by it, so a cgroup is
 *   reused for the same owner's jobs only;
 * - limits: only a cgroup whose limits are the new job's is taken, so
 *   nothing is written.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup_int.h"

static int write_fd(int fd, const char *v) {
  size_t len = strlen(v);
  ssize_t n;
  if (fd < 0)
    return -ENOENT;
  do
    n = pwrite(fd, v, len, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return -errno;
  return (size_t)n == len ? 0 : -EIO;
}

static uint64_t read_u64(int fd) {
  char buf[32];
  ssize_t n;
  do
    n = pread(fd, buf, sizeof(buf) - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return strtoull(buf, NULL, 10);
}

int jw__cgroup_pool_take(jw_cgroup_mgr_t *mgr, const char *owner,
                         const jw_limits_t *limits, jw_cgroup_t **out) {
  jw_limits_t none;
  if (mgr == NULL || owner == NULL)
    return -ENOENT;
  if (limits == NULL) {
    memset(&none, 0, sizeof(none));
    limits = &none;
  }
  /* The most recently pooled first: its pages are the warmest. */
  for (size_t i = mgr->npool; i-- > 0;) {
    jw_cgroup_t *cg = mgr->pool[i];
    if (strcmp(cg->owner, owner) != 0 ||
        memcmp(&cg->limits, limits, sizeof(*limits)) != 0)
      continue;
    memmove(&mgr->pool[i], &mgr->pool[i + 1],
            (mgr->npool - i - 1) * sizeof(mgr->pool[0]));
    mgr->npool--;
    mgr->pool_taken++;
    *out = cg;
    return 0;
  }
  return -ENOENT;
}

int jw__cgroup_pool_put(jw_cgroup_t *cg, const char *owner, jw_usage_t *usage) {
  jw_cgroup_mgr_t *mgr = cg->mgr;
  jw__cg_fds_t *f = &cg->fds;
  uint64_t cpu, oom;
  bool empty;
  int err;

  if (!cg->fds_open || owner == NULL || strlen(owner) >= sizeof(cg->owner)) {
    jw_cgroup_usage(cg, usage);
    return -EINVAL;
  }
  /*
   * Whether it is empty first: the counters of an empty cgroup no longer
   * move, so the one read of them is both the job's final usage and the
   * next job's baseline.
   */
  empty = jw_cgroup_is_empty(cg);
  jw__cgroup_usage_kept(cg, usage, &cpu, &oom);
  if (mgr->npool >= JW__CG_POOL_MAX)
    return -ENOSPC;
  if (!empty)
    return -EBUSY;
  cg->base_mem = f->mem_now >= 0 ? read_u64(f->mem_now) : 0;
  if (cg->base_mem > JW__CG_POOL_CHARGE_MAX) {
    const char *d = jw__cgroup_dir_of(cg, JW__C_MEMORY);
    if (f->mem_v2 || d == NULL ||
        jw__cgroup_write(d, "memory.force_empty", "0") < 0)
      return -EBUSY;
    cg->base_mem = read_u64(f->mem_now);
    if (cg->base_mem > JW__CG_POOL_CHARGE_MAX)
      return -EBUSY;
  }
  /*
   * The peak starts again from the current usage. cgroup2's memory.peak
   * resets only for the descriptor written to (Linux 6.12), the one kept.
   */
  if (f->mem_peak >= 0 &&
      (err = write_fd(f->mem_peak, f->mem_v2 ? "reset" : "0")) < 0)
    return err;
  cg->base_cpu_ns = cpu;
  cg->base_oom = oom;
  /* Fits: checked above. */
  snprintf(cg->owner, sizeof(cg->owner), "%s", owner);
  mgr->pool[mgr->npool++] = cg;
  return 0;
}

size_t jw__cgroup_pool_trim(jw_cgroup_mgr_t *mgr, size_t keep, size_t max) {
  size_t n = 0;
  if (mgr == NULL)
    return 0;
  while (mgr->npool > keep && n < max) {
    jw_cgroup_t *cg = mgr->pool[0];
    memmove(&mgr->pool[0], &mgr->pool[1],
            (mgr->npool - 1) * sizeof(mgr->pool[0]));
    mgr->npool--;
    n++;
    /* Empty, so the rmdir does not fail but for a vanished hierarchy. */
    jw__cgroup_remove_dirs(cg);
    jw__cgroup_free(cg);
  }
  return mgr->npool;
}
