/*
 * jw_cgroup's control files: reading and writing them, the v1 controller
 * names, and which file and format each limit is written to per backend.
 *
 * Everything here is plain file I/O on cgroupfs, which the kernel answers
 * from memory: the calls are short and safe on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cgroup_int.h"

static const struct {
  const char *name;
  unsigned bit;
} v1_ctrls[] = {
    {"memory", JW__C_MEMORY},   {"cpu", JW__C_CPU},
    {"cpuacct", JW__C_CPUACCT}, {"pids", JW__C_PIDS},
    {"blkio", JW__C_BLKIO},     {"freezer", JW__C_FREEZER},
};

/* The CFS period used for CPU limits, and the kernel's smallest quota. */
#define CPU_PERIOD_US 100000
#define CPU_MIN_QUOTA_US 1000

/* Returns a newly allocated "a/b", or NULL. */
char *jw__cgroup_join(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *p;
  while (na > 1 && a[na - 1] == '/')
    na--;
  while (*b == '/')
    b++, nb--;
  p = malloc(na + nb + 2);
  if (p == NULL)
    return NULL;
  memcpy(p, a, na);
  p[na] = '/';
  memcpy(p + na + 1, b, nb + 1);
  if (nb == 0)
    p[na] = '\0';
  return p;
}

/* Reads a small file whole into buf (NUL-terminated). Returns len or -errno. */
ssize_t jw__cgroup_read(const char *dir, const char *file, char *buf,
                        size_t size) {
  char path[PATH_MAX];
  ssize_t n, total = 0;
  int fd;

  buf[0] = '\0'; /* even on failure, so no caller can read garbage */
  if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
    return -ENAMETOOLONG;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  while ((size_t)total + 1 < size) {
    n = read(fd, buf + total, size - 1 - (size_t)total);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    if (n == 0)
      break;
    total += n;
  }
  close(fd);
  buf[total] = '\0';
  return total;
}

/* Writes value to dir/file in one write(). Returns 0 or -errno. */
int jw__cgroup_write(const char *dir, const char *file, const char *value) {
  char path[PATH_MAX];
  size_t len = strlen(value);
  ssize_t n;
  int fd;

  if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
    return -ENAMETOOLONG;
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  do
    n = write(fd, value, len);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  close(fd);
  return (size_t)n == len ? 0 : -EIO;
}

/* Finds "key N" on a line of text; returns 0 and sets *out, or -ENOENT. */
int jw__cgroup_find_key(const char *text, const char *key, uint64_t *out) {
  size_t klen = strlen(key);
  const char *p = text;
  while (p != NULL && *p != '\0') {
    if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
      *out = strtoull(p + klen + 1, NULL, 10);
      return 0;
    }
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return -ENOENT;
}

size_t jw__cgroup_v2_settings(const jw_limits_t *l, dev_t dev,
                              jw__cg_setting_t *out) {
  size_t n = 0;
  if (l == NULL)
    return 0;
  if (l->memory_bytes > 0) {
    out[n] = (jw__cg_setting_t){.ctrl = ""};
    snprintf(out[n].file, sizeof(out[n].file), "memory.max");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, l->memory_bytes);
    n++;
    /* Without this a job could use swap past its limit. */
    out[n] = (jw__cg_setting_t){.ctrl = "", .optional = 1};
    snprintf(out[n].file, sizeof(out[n].file), "memory.swap.max");
    snprintf(out[n].value, sizeof(out[n].value), "0");
    n++;
  }
  if (l->cpu_millis > 0) {
    int64_t quota = l->cpu_millis * (CPU_PERIOD_US / 1000);
    if (quota < CPU_MIN_QUOTA_US)
      quota = CPU_MIN_QUOTA_US;
    out[n] = (jw__cg_setting_t){.ctrl = ""};
    snprintf(out[n].file, sizeof(out[n].file), "cpu.max");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64 " %d", quota,
             CPU_PERIOD_US);
    n++;
  }
  if ((l->io_read_bps > 0 || l->io_write_bps > 0) && dev != 0) {
    int o;
    out[n] = (jw__cg_setting_t){.ctrl = ""};
    snprintf(out[n].file, sizeof(out[n].file), "io.max");
    o = snprintf(out[n].value, sizeof(out[n].value), "%u:%u", major(dev),
                 minor(dev));
    if (l->io_read_bps > 0)
      o += snprintf(out[n].value + o, sizeof(out[n].value) - (size_t)o,
                    " rbps=%" PRId64, l->io_read_bps);
    if (l->io_write_bps > 0)
      snprintf(out[n].value + o, sizeof(out[n].value) - (size_t)o,
               " wbps=%" PRId64, l->io_write_bps);
    n++;
  }
  if (l->pids > 0) {
    out[n] = (jw__cg_setting_t){.ctrl = ""};
    snprintf(out[n].file, sizeof(out[n].file), "pids.max");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, l->pids);
    n++;
  }
  return n;
}

size_t jw__cgroup_v1_settings(const jw_limits_t *l, dev_t dev,
                              jw__cg_setting_t *out) {
  size_t n = 0;
  if (l == NULL)
    return 0;
  if (l->memory_bytes > 0) {
    out[n] = (jw__cg_setting_t){.ctrl = "memory"};
    snprintf(out[n].file, sizeof(out[n].file), "memory.limit_in_bytes");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, l->memory_bytes);
    n++;
    /*
     * Memory plus swap gets the same limit, so that swap is no way
     * around it; the file exists only with swap accounting, and must be
     * written after the memory limit (it may never be below it).
     */
    out[n] = (jw__cg_setting_t){.ctrl = "memory", .optional = 1};
    snprintf(out[n].file, sizeof(out[n].file), "memory.memsw.limit_in_bytes");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, l->memory_bytes);
    n++;
  }
  if (l->cpu_millis > 0) {
    int64_t quota = l->cpu_millis * (CPU_PERIOD_US / 1000);
    if (quota < CPU_MIN_QUOTA_US)
      quota = CPU_MIN_QUOTA_US;
    out[n] = (jw__cg_setting_t){.ctrl = "cpu"};
    snprintf(out[n].file, sizeof(out[n].file), "cpu.cfs_period_us");
    snprintf(out[n].value, sizeof(out[n].value), "%d", CPU_PERIOD_US);
    n++;
    out[n] = (jw__cg_setting_t){.ctrl = "cpu"};
    snprintf(out[n].file, sizeof(out[n].file), "cpu.cfs_quota_us");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, quota);
    n++;
  }
  if (l->io_read_bps > 0 && dev != 0) {
    out[n] = (jw__cg_setting_t){.ctrl = "blkio"};
    snprintf(out[n].file, sizeof(out[n].file),
             "blkio.throttle.read_bps_device");
    snprintf(out[n].value, sizeof(out[n].value), "%u:%u %" PRId64, major(dev),
             minor(dev), l->io_read_bps);
    n++;
  }
  if (l->io_write_bps > 0 && dev != 0) {
    out[n] = (jw__cg_setting_t){.ctrl = "blkio"};
    snprintf(out[n].file, sizeof(out[n].file),
             "blkio.throttle.write_bps_device");
    snprintf(out[n].value, sizeof(out[n].value), "%u:%u %" PRId64, major(dev),
             minor(dev), l->io_write_bps);
    n++;
  }
  if (l->pids > 0) {
    out[n] = (jw__cg_setting_t){.ctrl = "pids"};
    snprintf(out[n].file, sizeof(out[n].file), "pids.max");
    snprintf(out[n].value, sizeof(out[n].value), "%" PRId64, l->pids);
    n++;
  }
  return n;
}

unsigned jw__cgroup_v1_bits(const char *list) {
  unsigned bits = 0;
  const char *p = list;
  while (*p != '\0') {
    size_t len = strcspn(p, ",");
    for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++)
      if (strlen(v1_ctrls[i].name) == len &&
          strncmp(p, v1_ctrls[i].name, len) == 0)
        bits |= v1_ctrls[i].bit;
    p += len;
    if (*p == ',')
      p++;
  }
  return bits;
}

unsigned jw__cgroup_v1_bit(const char *ctrl) {
  for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++)
    if (strcmp(v1_ctrls[i].name, ctrl) == 0)
      return v1_ctrls[i].bit;
  return 0;
}

int jw__cgroup_apply_limits(jw_cgroup_t *cg, const jw_limits_t *limits) {
  jw__cg_setting_t set[JW__CG_MAX_SETTINGS];
  const jw_cgroup_mgr_t *mgr = cg->mgr;
  size_t i, n;
  int err;

  if (mgr->v2 >= 0 && mgr->v2_ctrls != 0) {
    n = jw__cgroup_v2_settings(limits, mgr->io_dev, set);
    for (i = 0; i < n; i++) {
      /* A controller not in the subtree leaves its files out. */
      const char *f = set[i].file;
      if ((strncmp(f, "memory.", 7) == 0 && !(mgr->v2_ctrls & JW__V2_MEMORY)) ||
          (strncmp(f, "cpu.", 4) == 0 && !(mgr->v2_ctrls & JW__V2_CPU)) ||
          (strncmp(f, "io.", 3) == 0 && !(mgr->v2_ctrls & JW__V2_IO)) ||
          (strncmp(f, "pids.", 5) == 0 && !(mgr->v2_ctrls & JW__V2_PIDS)))
        continue;
      err = jw__cgroup_write(jw__cgroup_v2_dir(cg), f, set[i].value);
      if (err < 0 && !set[i].optional)
        return err;
    }
  }
  n = jw__cgroup_v1_settings(limits, mgr->io_dev, set);
  for (i = 0; i < n; i++) {
    const char *dir = jw__cgroup_dir_of(cg, jw__cgroup_v1_bit(set[i].ctrl));
    if (dir == NULL)
      continue; /* cgroup2 holds that controller */
    err = jw__cgroup_write(dir, set[i].file, set[i].value);
    if (err < 0 && !set[i].optional)
      return err;
  }
  return 0;
}
