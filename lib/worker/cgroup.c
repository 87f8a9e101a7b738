/*
 * jw_cgroup: finding the host's cgroup hierarchies, one cgroup per job in
 * them, limits, usage, kill and removal.
 *
 * Everything here is plain file I/O on cgroupfs, which the kernel answers
 * from memory: the calls are short and safe on the loop. The one call
 * that may wait (jw_cgroup_mgr_remove_stale) is made before serving.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cgroup_int.h"
#include "jobworker/error.h"

/* The v1 controllers a job may use, as bits of hier.ctrls. */
enum {
  C_MEMORY = 1 << 0,
  C_CPU = 1 << 1,
  C_CPUACCT = 1 << 2,
  C_PIDS = 1 << 3,
  C_BLKIO = 1 << 4,
  C_FREEZER = 1 << 5,
};

static const struct {
  const char *name;
  unsigned bit;
} v1_ctrls[] = {
    {"memory", C_MEMORY}, {"cpu", C_CPU},     {"cpuacct", C_CPUACCT},
    {"pids", C_PIDS},     {"blkio", C_BLKIO}, {"freezer", C_FREEZER},
};

/* The cgroup2 controllers a job may use, as bits of mgr.v2_ctrls. */
enum { V2_MEMORY = 1 << 0, V2_CPU = 1 << 1, V2_IO = 1 << 2, V2_PIDS = 1 << 3 };

static const struct {
  const char *name;
  unsigned bit;
} v2_ctrls[] = {
    {"memory", V2_MEMORY},
    {"cpu", V2_CPU},
    {"io", V2_IO},
    {"pids", V2_PIDS},
};

/* The CFS period used for CPU limits, and the kernel's smallest quota. */
#define CPU_PERIOD_US 100000
#define CPU_MIN_QUOTA_US 1000

struct hier {
  int v2;
  unsigned ctrls;   /* C_* for v1 */
  char *mount;      /* where it is mounted */
  char *mount_root; /* the mount's root within the hierarchy */
  char *parent;     /* <mount>/<own path>/<name>, once usable */
};

struct jw_cgroup_mgr_s {
  char *name;
  struct hier h[JW__CG_MAX_HIER];
  size_t nh;
  int v2;            /* index of the cgroup2 hierarchy, or -1 */
  unsigned v2_ctrls; /* V2_* enabled in the parent's subtree_control */
  int v2_kill;       /* the parent has cgroup.kill */
  unsigned caps;
  dev_t io_dev;
  const char *backend;
};

struct jw_cgroup_s {
  jw_cgroup_mgr_t *mgr;
  char *dirs[JW__CG_MAX_HIER]; /* NULL where none (or already removed) */
};

/* Returns a newly allocated "a/b", or NULL. */
static char *join(const char *a, const char *b) {
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
static ssize_t read_file(const char *dir, const char *file, char *buf,
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
static int write_file(const char *dir, const char *file, const char *value) {
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
static int find_key(const char *text, const char *key, uint64_t *out) {
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

/* Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo. */
static void unescape(char *s) {
  char *o = s;
  for (; *s != '\0'; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
        s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
      *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
}

static unsigned parse_v1_ctrls(const char *list) {
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

/* Adds the cgroup hierarchies of the mount table to mgr. */
static void scan_mounts(jw_cgroup_mgr_t *mgr, const char *path) {
  FILE *f = fopen(path, "re");
  char *line = NULL;
  size_t cap = 0;

  if (f == NULL)
    return;
  while (getline(&line, &cap, f) > 0 && mgr->nh < JW__CG_MAX_HIER) {
    char *fields[8] = {NULL};
    char *save = NULL, *tok, *sep;
    const char *fstype, *opts;
    size_t nf = 0;
    unsigned ctrls = 0;
    int v2;

    sep = strstr(line, " - ");
    if (sep == NULL)
      continue;
    *sep = '\0';
    for (tok = strtok_r(line, " ", &save); tok != NULL && nf < 8;
         tok = strtok_r(NULL, " ", &save))
      fields[nf++] = tok;
    if (nf < 5)
      continue;
    save = NULL;
    fstype = strtok_r(sep + 3, " ", &save);
    if (fstype == NULL || strtok_r(NULL, " ", &save) == NULL)
      continue;
    opts = strtok_r(NULL, " \n", &save);
    if (opts == NULL)
      opts = "";
    v2 = strcmp(fstype, "cgroup2") == 0;
    if (!v2 && strcmp(fstype, "cgroup") != 0)
      continue;
    if (!v2) {
      ctrls = parse_v1_ctrls(opts);
      if (ctrls == 0)
        continue;
    }
    /* The first mount of a hierarchy wins; bind mounts repeat it. */
    int dup = 0;
    for (size_t i = 0; i < mgr->nh; i++)
      if ((v2 && mgr->h[i].v2) || (!v2 && (mgr->h[i].ctrls & ctrls) != 0))
        dup = 1;
    if (dup)
      continue;
    unescape(fields[3]);
    unescape(fields[4]);
    struct hier *h = &mgr->h[mgr->nh];
    h->v2 = v2;
    h->ctrls = ctrls;
    h->mount = strdup(fields[4]);
    h->mount_root = strdup(fields[3]);
    if (h->mount == NULL || h->mount_root == NULL) {
      free(h->mount);
      free(h->mount_root);
      memset(h, 0, sizeof(*h));
      continue;
    }
    if (v2)
      mgr->v2 = (int)mgr->nh;
    mgr->nh++;
  }
  free(line);
  fclose(f);
}

/*
 * Finds the own cgroup of each hierarchy in /proc/self/cgroup and sets
 * its parent path. A hierarchy whose own cgroup lies outside what its
 * mount shows stays unusable (parent NULL).
 */
static void find_own(jw_cgroup_mgr_t *mgr, const char *path) {
  FILE *f = fopen(path, "re");
  char *line = NULL;
  size_t cap = 0;

  if (f == NULL)
    return;
  while (getline(&line, &cap, f) > 0) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
    char *own;
    if (c2 == NULL)
      continue;
    *c1 = '\0';
    *c2 = '\0';
    own = c2 + 1;
    own[strcspn(own, "\n")] = '\0';
    int v2 = strcmp(line, "0") == 0 && c1[1] == '\0';
    unsigned ctrls = v2 ? 0 : parse_v1_ctrls(c1 + 1);
    if (!v2 && ctrls == 0)
      continue;
    for (size_t i = 0; i < mgr->nh; i++) {
      struct hier *h = &mgr->h[i];
      const char *rel;
      size_t rlen;
      if (h->parent != NULL || h->v2 != v2 || (!v2 && h->ctrls != ctrls))
        continue;
      /* The path is relative to the hierarchy; the mount shows its root. */
      rlen = strlen(h->mount_root);
      if (strcmp(h->mount_root, "/") == 0)
        rel = own;
      else if (strncmp(own, h->mount_root, rlen) == 0 &&
               (own[rlen] == '/' || own[rlen] == '\0'))
        rel = own + rlen;
      else
        continue;
      if (strstr(rel, "/..") != NULL)
        continue;
      char *dir = join(h->mount, rel);
      if (dir == NULL)
        continue;
      h->parent = join(dir, mgr->name);
      free(dir);
    }
  }
  free(line);
  fclose(f);
}

/*
 * Enables the cgroup2 controllers the host offers in own's and the
 * parent's subtree_control. When own holds processes (the no-internal-
 * process rule makes the write fail with EBUSY), this process moves into a
 * leaf beside the parent first.
 */
static void enable_v2(jw_cgroup_mgr_t *mgr, struct hier *h, const char *own) {
  char avail[512], word[16];
  unsigned want = 0;
  size_t i;

  if (read_file(own, "cgroup.controllers", avail, sizeof(avail)) < 0)
    return;
  for (i = 0; i < sizeof(v2_ctrls) / sizeof(v2_ctrls[0]); i++) {
    const char *p = avail;
    size_t len = strlen(v2_ctrls[i].name);
    while ((p = strstr(p, v2_ctrls[i].name)) != NULL) {
      if ((p == avail || p[-1] == ' ') &&
          (p[len] == ' ' || p[len] == '\n' || p[len] == '\0')) {
        want |= v2_ctrls[i].bit;
        break;
      }
      p += len;
    }
  }
  if (want == 0)
    return;
  for (i = 0; i < sizeof(v2_ctrls) / sizeof(v2_ctrls[0]); i++) {
    if (!(want & v2_ctrls[i].bit))
      continue;
    snprintf(word, sizeof(word), "+%s", v2_ctrls[i].name);
    int err = write_file(own, "cgroup.subtree_control", word);
    if (err == -EBUSY) {
      char leaf[NAME_MAX + 1];
      char *ldir;
      snprintf(leaf, sizeof(leaf), "%s-server", mgr->name);
      ldir = join(own, leaf);
      if (ldir == NULL)
        return;
      if ((mkdir(ldir, 0755) == 0 || errno == EEXIST) &&
          write_file(ldir, "cgroup.procs", "0") == 0)
        err = write_file(own, "cgroup.subtree_control", word);
      free(ldir);
    }
    if (err == 0 && write_file(h->parent, "cgroup.subtree_control", word) == 0)
      mgr->v2_ctrls |= v2_ctrls[i].bit;
  }
}

/* Maps a partition to its whole disk, which is what the kernel throttles. */
static dev_t whole_disk(dev_t dev) {
  char dir[64], buf[64];
  unsigned ma, mi;
  struct stat st;

  if (dev == 0 || major(dev) == 0)
    return 0;
  snprintf(dir, sizeof(dir), "/sys/dev/block/%u:%u", major(dev), minor(dev));
  if (stat(dir, &st) != 0)
    return 0;
  if (read_file(dir, "partition", buf, sizeof(buf)) < 0)
    return dev;
  if (read_file(dir, "../dev", buf, sizeof(buf)) < 0 ||
      sscanf(buf, "%u:%u", &ma, &mi) != 2)
    return 0;
  return makedev(ma, mi);
}

int jw_cgroup_mgr_new(const jw_cgroup_mgr_options_t *opts,
                      jw_cgroup_mgr_t **out) {
  jw_cgroup_mgr_t *mgr;
  size_t i;

  if (opts == NULL || out == NULL || opts->name == NULL ||
      opts->name[0] == '\0' || strchr(opts->name, '/') != NULL ||
      strcmp(opts->name, ".") == 0 || strcmp(opts->name, "..") == 0)
    return -EINVAL;
  mgr = calloc(1, sizeof(*mgr));
  if (mgr == NULL || (mgr->name = strdup(opts->name)) == NULL) {
    free(mgr);
    return -ENOMEM;
  }
  mgr->v2 = -1;
  scan_mounts(mgr, opts->mountinfo_path != NULL ? opts->mountinfo_path
                                                : "/proc/self/mountinfo");
  find_own(mgr, opts->proc_cgroup_path != NULL ? opts->proc_cgroup_path
                                               : "/proc/self/cgroup");

  for (i = 0; i < mgr->nh; i++) {
    struct hier *h = &mgr->h[i];
    if (h->parent == NULL)
      continue;
    /*
     * Searchable but not listable (also when a previous run made it
     * 0755): a job sees its own cgroup's path in /proc/self/cgroup, but
     * must not list the other jobs' cgroups beside it.
     */
    if ((mkdir(h->parent, 0711) != 0 && errno != EEXIST) ||
        chmod(h->parent, 0711) != 0) {
      free(h->parent);
      h->parent = NULL;
      continue;
    }
    if (h->v2) {
      char *own = strdup(h->parent);
      if (own != NULL) {
        *strrchr(own, '/') = '\0';
        enable_v2(mgr, h, own[0] != '\0' ? own : "/");
        free(own);
      }
      char probe[PATH_MAX];
      snprintf(probe, sizeof(probe), "%s/cgroup.kill", h->parent);
      mgr->v2_kill = access(probe, W_OK) == 0;
      mgr->caps |= JW_CG_KILL | JW_CG_CPUACCT;
    } else {
      /* The freezer is only needed where cgroup.kill is missing. */
      mgr->caps |= JW_CG_KILL;
      if (h->ctrls & C_MEMORY)
        mgr->caps |= JW_CG_MEMORY;
      if (h->ctrls & C_CPU)
        mgr->caps |= JW_CG_CPU;
      if (h->ctrls & C_CPUACCT)
        mgr->caps |= JW_CG_CPUACCT;
      if (h->ctrls & C_PIDS)
        mgr->caps |= JW_CG_PIDS;
      if (h->ctrls & C_BLKIO)
        mgr->caps |= JW_CG_IO;
    }
  }
  if (mgr->v2_ctrls & V2_MEMORY)
    mgr->caps |= JW_CG_MEMORY;
  if (mgr->v2_ctrls & V2_CPU)
    mgr->caps |= JW_CG_CPU;
  if (mgr->v2_ctrls & V2_PIDS)
    mgr->caps |= JW_CG_PIDS;
  if (mgr->v2_ctrls & V2_IO)
    mgr->caps |= JW_CG_IO;
  mgr->io_dev = whole_disk(opts->io_device);
  if (mgr->io_dev == 0)
    mgr->caps &= ~(unsigned)JW_CG_IO;

  int has_v1 = 0, has_v2 = mgr->v2 >= 0 && mgr->h[mgr->v2].parent != NULL;
  for (i = 0; i < mgr->nh; i++)
    if (!mgr->h[i].v2 && mgr->h[i].parent != NULL)
      has_v1 = 1;
  if (has_v1 && has_v2)
    mgr->backend = "cgroup1+cgroup2";
  else if (has_v1)
    mgr->backend = "cgroup1";
  else if (has_v2)
    mgr->backend = "cgroup2";
  else
    mgr->backend = "none";
  *out = mgr;
  return 0;
}

unsigned jw_cgroup_mgr_caps(const jw_cgroup_mgr_t *mgr) {
  return mgr != NULL ? mgr->caps : 0;
}

const char *jw_cgroup_mgr_backend(const jw_cgroup_mgr_t *mgr) {
  return mgr != NULL ? mgr->backend : "none";
}

dev_t jw_cgroup_mgr_io_device(const jw_cgroup_mgr_t *mgr) {
  return mgr != NULL ? mgr->io_dev : 0;
}

unsigned jw_cgroup_mgr_missing(const jw_cgroup_mgr_t *mgr,
                               const jw_limits_t *l) {
  unsigned need = 0;
  if (l == NULL)
    return 0;
  if (l->memory_bytes > 0)
    need |= JW_CG_MEMORY;
  if (l->cpu_millis > 0)
    need |= JW_CG_CPU;
  if (l->io_read_bps > 0 || l->io_write_bps > 0)
    need |= JW_CG_IO;
  if (l->pids > 0)
    need |= JW_CG_PIDS;
  return need & ~jw_cgroup_mgr_caps(mgr);
}

/*
 * Whether a job uses hierarchy h: the cgroup2 one always, a v1 one for
 * the controllers we use (the freezer only where cgroup.kill is missing).
 */
static int uses(const jw_cgroup_mgr_t *mgr, const struct hier *h) {
  unsigned want = C_MEMORY | C_CPU | C_CPUACCT | C_PIDS | C_BLKIO;
  if (h->parent == NULL)
    return 0;
  if (h->v2)
    return 1;
  if (!mgr->v2_kill)
    want |= C_FREEZER;
  return (h->ctrls & want) != 0;
}

static void free_cg(jw_cgroup_t *cg) {
  for (size_t i = 0; i < JW__CG_MAX_HIER; i++)
    free(cg->dirs[i]);
  free(cg);
}

/* The job directory of the hierarchy holding v1 controller ctrl, or NULL. */
static const char *dir_of(const jw_cgroup_t *cg, unsigned ctrl) {
  for (size_t i = 0; i < cg->mgr->nh; i++)
    if (cg->dirs[i] != NULL && !cg->mgr->h[i].v2 &&
        (cg->mgr->h[i].ctrls & ctrl))
      return cg->dirs[i];
  return NULL;
}

static const char *v2_dir(const jw_cgroup_t *cg) {
  return cg->mgr->v2 >= 0 ? cg->dirs[cg->mgr->v2] : NULL;
}

static unsigned v1_bit(const char *ctrl) {
  for (size_t i = 0; i < sizeof(v1_ctrls) / sizeof(v1_ctrls[0]); i++)
    if (strcmp(v1_ctrls[i].name, ctrl) == 0)
      return v1_ctrls[i].bit;
  return 0;
}

/* Removes whatever directories are left; returns 0 or -EBUSY. */
static int remove_dirs(jw_cgroup_t *cg) {
  int busy = 0;
  for (size_t i = cg->mgr->nh; i-- > 0;) {
    if (cg->dirs[i] == NULL)
      continue;
    if (rmdir(cg->dirs[i]) == 0 || errno == ENOENT) {
      free(cg->dirs[i]);
      cg->dirs[i] = NULL;
    } else {
      busy = 1;
    }
  }
  return busy ? -EBUSY : 0;
}

int jw_cgroup_create(jw_cgroup_mgr_t *mgr, const char *name,
                     const jw_limits_t *limits, jw_cgroup_t **out) {
  jw__cg_setting_t set[JW__CG_MAX_SETTINGS];
  jw_cgroup_t *cg;
  size_t i, n;
  int err = 0;

  if (mgr == NULL || name == NULL || out == NULL || name[0] == '\0' ||
      strchr(name, '/') != NULL)
    return -EINVAL;
  if ((mgr->caps & JW_CG_KILL) == 0 || jw_cgroup_mgr_missing(mgr, limits))
    return JW_EUNSUPPORTED;
  cg = calloc(1, sizeof(*cg));
  if (cg == NULL)
    return -ENOMEM;
  cg->mgr = mgr;
  for (i = 0; i < mgr->nh; i++) {
    if (!uses(mgr, &mgr->h[i]))
      continue;
    cg->dirs[i] = join(mgr->h[i].parent, name);
    if (cg->dirs[i] == NULL) {
      err = -ENOMEM;
      goto fail;
    }
    if (mkdir(cg->dirs[i], 0755) != 0 && errno != EEXIST) {
      err = -errno;
      free(cg->dirs[i]);
      cg->dirs[i] = NULL;
      goto fail;
    }
  }

  if (mgr->v2 >= 0 && mgr->v2_ctrls != 0) {
    n = jw__cgroup_v2_settings(limits, mgr->io_dev, set);
    for (i = 0; i < n; i++) {
      /* A controller not in the subtree leaves its files out. */
      const char *f = set[i].file;
      if ((strncmp(f, "memory.", 7) == 0 && !(mgr->v2_ctrls & V2_MEMORY)) ||
          (strncmp(f, "cpu.", 4) == 0 && !(mgr->v2_ctrls & V2_CPU)) ||
          (strncmp(f, "io.", 3) == 0 && !(mgr->v2_ctrls & V2_IO)) ||
          (strncmp(f, "pids.", 5) == 0 && !(mgr->v2_ctrls & V2_PIDS)))
        continue;
      err = write_file(v2_dir(cg), f, set[i].value);
      if (err < 0 && !set[i].optional)
        goto fail;
    }
  }
  n = jw__cgroup_v1_settings(limits, mgr->io_dev, set);
  for (i = 0; i < n; i++) {
    const char *dir = dir_of(cg, v1_bit(set[i].ctrl));
    if (dir == NULL)
      continue; /* cgroup2 holds that controller */
    err = write_file(dir, set[i].file, set[i].value);
    if (err < 0 && !set[i].optional)
      goto fail;
  }
  *out = cg;
  return 0;

fail:
  remove_dirs(cg);
  free_cg(cg);
  return err;
}

/* Sends sig to each process listed in dir/cgroup.procs; returns the count. */
static int signal_members(const char *dir, int sig) {
  char path[PATH_MAX];
  FILE *f;
  long pid;
  int n = 0;

  snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
  f = fopen(path, "re");
  if (f == NULL)
    return -errno;
  while (fscanf(f, "%ld", &pid) == 1)
    if (pid > 0 && kill((pid_t)pid, sig) == 0)
      n++;
  fclose(f);
  return n;
}

/* The directory that lists every member: cgroup2's, else any v1 one. */
static const char *members_dir(const jw_cgroup_t *cg) {
  const char *d = v2_dir(cg);
  if (d != NULL)
    return d;
  d = dir_of(cg, C_FREEZER);
  if (d != NULL)
    return d;
  for (size_t i = 0; i < cg->mgr->nh; i++)
    if (cg->dirs[i] != NULL)
      return cg->dirs[i];
  return NULL;
}

int jw_cgroup_kill(jw_cgroup_t *cg) {
  const char *d;
  int err;

  if (cg == NULL)
    return -EINVAL;
  d = v2_dir(cg);
  if (d != NULL && cg->mgr->v2_kill) {
    err = write_file(d, "cgroup.kill", "1");
    if (err == 0 || err == -ENOENT)
      return err == -ENOENT ? 0 : err;
  }
  /*
   * Frozen members cannot fork between the listing and the kill; they die
   * as soon as they are thawed.
   */
  d = dir_of(cg, C_FREEZER);
  if (d != NULL) {
    int frozen = write_file(d, "freezer.state", "FROZEN") == 0;
    signal_members(d, SIGKILL);
    if (frozen)
      write_file(d, "freezer.state", "THAWED");
    return 0;
  }
  d = members_dir(cg);
  if (d == NULL)
    return 0;
  /* Without a freezer, repeat to catch what was forked meanwhile. */
  for (int i = 0; i < 8; i++) {
    err = signal_members(d, SIGKILL);
    if (err <= 0)
      return err < 0 && err != -ENOENT ? err : 0;
  }
  return 0;
}

bool jw_cgroup_is_empty(jw_cgroup_t *cg) {
  char buf[256];
  const char *d;
  uint64_t populated;

  if (cg == NULL)
    return true;
  d = v2_dir(cg);
  if (d != NULL && read_file(d, "cgroup.events", buf, sizeof(buf)) > 0 &&
      find_key(buf, "populated", &populated) == 0)
    return populated == 0;
  d = members_dir(cg);
  if (d == NULL)
    return true;
  return read_file(d, "cgroup.procs", buf, sizeof(buf)) <= 0;
}

int jw_cgroup_usage(jw_cgroup_t *cg, jw_usage_t *out) {
  char buf[2048];
  const char *d;
  uint64_t v;

  if (cg == NULL || out == NULL)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  if ((d = dir_of(cg, C_CPUACCT)) != NULL) {
    if (read_file(d, "cpuacct.usage", buf, sizeof(buf)) > 0)
      out->cpu_usage_ns = strtoull(buf, NULL, 10);
  } else if ((d = v2_dir(cg)) != NULL &&
             read_file(d, "cpu.stat", buf, sizeof(buf)) > 0 &&
             find_key(buf, "usage_usec", &v) == 0) {
    out->cpu_usage_ns = v * 1000;
  }
  if ((d = dir_of(cg, C_MEMORY)) != NULL) {
    if (read_file(d, "memory.max_usage_in_bytes", buf, sizeof(buf)) > 0)
      out->memory_peak_bytes = strtoull(buf, NULL, 10);
    if (read_file(d, "memory.oom_control", buf, sizeof(buf)) > 0 &&
        find_key(buf, "oom_kill", &v) == 0)
      out->oom_killed = v > 0;
  } else if ((d = v2_dir(cg)) != NULL && (cg->mgr->v2_ctrls & V2_MEMORY)) {
    if (read_file(d, "memory.peak", buf, sizeof(buf)) > 0)
      out->memory_peak_bytes = strtoull(buf, NULL, 10);
    if (read_file(d, "memory.events", buf, sizeof(buf)) > 0 &&
        find_key(buf, "oom_kill", &v) == 0)
      out->oom_killed = v > 0;
  }
  return 0;
}

int jw_cgroup_remove(jw_cgroup_t *cg) {
  if (cg == NULL)
    return 0;
  if (remove_dirs(cg) != 0)
    return -EBUSY;
  free_cg(cg);
  return 0;
}

void jw_cgroup_free(jw_cgroup_t *cg) {
  if (cg != NULL)
    free_cg(cg);
}

const char *jw__cgroup_mgr_parent(const jw_cgroup_mgr_t *mgr,
                                  const char *ctrl) {
  unsigned bit;
  if (mgr == NULL)
    return NULL;
  if (ctrl[0] == '\0')
    return mgr->v2 >= 0 ? mgr->h[mgr->v2].parent : NULL;
  bit = v1_bit(ctrl);
  for (size_t i = 0; i < mgr->nh; i++)
    if (!mgr->h[i].v2 && (mgr->h[i].ctrls & bit))
      return mgr->h[i].parent;
  return NULL;
}

int jw__cgroup_spawn_open(const jw_cgroup_t *cg, jw__cg_spawn_t *s) {
  const char *d;
  char path[PATH_MAX];
  int err;

  s->v2_dir = -1;
  s->v2_procs = -1;
  s->nv1 = 0;
  if (cg == NULL)
    return 0;
  d = v2_dir(cg);
  if (d != NULL) {
    s->v2_dir = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof(path), "%s/cgroup.procs", d);
    s->v2_procs = open(path, O_WRONLY | O_CLOEXEC);
    if (s->v2_dir < 0 || s->v2_procs < 0)
      goto fail;
  }
  for (size_t i = 0; i < cg->mgr->nh; i++) {
    int fd;
    if (cg->dirs[i] == NULL || cg->mgr->h[i].v2)
      continue;
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dirs[i]);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      goto fail;
    s->v1_procs[s->nv1++] = fd;
  }
  return 0;

fail:
  err = -errno;
  jw__cgroup_spawn_close(s);
  return err;
}

void jw__cgroup_spawn_close(jw__cg_spawn_t *s) {
  if (s->v2_dir >= 0)
    close(s->v2_dir);
  if (s->v2_procs >= 0)
    close(s->v2_procs);
  for (size_t i = 0; i < s->nv1; i++)
    close(s->v1_procs[i]);
  s->v2_dir = -1;
  s->v2_procs = -1;
  s->nv1 = 0;
}

/*
 * Kills and removes one leftover job cgroup, waiting up to about two
 * seconds for its processes to leave. Returns 0 when removed.
 */
static int remove_stale_one(jw_cgroup_mgr_t *mgr, const char *name) {
  jw_cgroup_t *cg = calloc(1, sizeof(*cg));
  struct timespec ts = {0, 20 * 1000 * 1000};
  int err = 0;

  if (cg == NULL)
    return -ENOMEM;
  cg->mgr = mgr;
  for (size_t i = 0; i < mgr->nh; i++) {
    struct stat st;
    if (mgr->h[i].parent == NULL)
      continue;
    cg->dirs[i] = join(mgr->h[i].parent, name);
    if (cg->dirs[i] == NULL) {
      free_cg(cg);
      return -ENOMEM;
    }
    if (stat(cg->dirs[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
      free(cg->dirs[i]);
      cg->dirs[i] = NULL;
    }
  }
  for (int tries = 0; tries < 100; tries++) {
    jw_cgroup_kill(cg);
    if (remove_dirs(cg) == 0)
      break;
    nanosleep(&ts, NULL);
  }
  err = remove_dirs(cg);
  free_cg(cg);
  return err;
}

int jw_cgroup_mgr_remove_stale(jw_cgroup_mgr_t *mgr) {
  /* The job names seen in any hierarchy, each removed once. */
  char **names = NULL;
  size_t n = 0, cap = 0;
  int removed = 0;

  if (mgr == NULL)
    return -EINVAL;
  for (size_t i = 0; i < mgr->nh; i++) {
    DIR *d;
    struct dirent *e;
    if (mgr->h[i].parent == NULL || (d = opendir(mgr->h[i].parent)) == NULL)
      continue;
    while ((e = readdir(d)) != NULL) {
      size_t k;
      if (e->d_type != DT_DIR || e->d_name[0] == '.')
        continue;
      for (k = 0; k < n; k++)
        if (strcmp(names[k], e->d_name) == 0)
          break;
      if (k < n)
        continue;
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        char **nn = realloc(names, ncap * sizeof(*nn));
        if (nn == NULL)
          break;
        names = nn;
        cap = ncap;
      }
      if ((names[n] = strdup(e->d_name)) != NULL)
        n++;
    }
    closedir(d);
  }
  for (size_t k = 0; k < n; k++) {
    if (remove_stale_one(mgr, names[k]) == 0)
      removed++;
    free(names[k]);
  }
  free(names);
  return removed;
}

void jw_cgroup_mgr_free(jw_cgroup_mgr_t *mgr) {
  if (mgr == NULL)
    return;
  for (size_t i = 0; i < mgr->nh; i++) {
    /* Fails harmlessly while another server's jobs share the parent. */
    if (mgr->h[i].parent != NULL)
      rmdir(mgr->h[i].parent);
    free(mgr->h[i].parent);
    free(mgr->h[i].mount);
    free(mgr->h[i].mount_root);
  }
  free(mgr->name);
  free(mgr);
}

/* A positive number from a /proc/sys file, or 0. */
static int64_t read_sysctl(const char *file) {
  char buf[32];
  int64_t v;
  if (read_file("/proc/sys/kernel", file, buf, sizeof(buf)) <= 0)
    return 0;
  v = strtoll(buf, NULL, 10);
  return v > 0 ? v : 0;
}

int64_t jw_cgroup_default_pids(void) {
  int64_t pid_max = read_sysctl("pid_max");
  int64_t threads = read_sysctl("threads-max");
  int64_t m =
      pid_max == 0 || (threads != 0 && threads < pid_max) ? threads : pid_max;
  if (m == 0)
    return 0;
  m = m * 15 / 100;
  return m > 0 ? m : 1;
}
