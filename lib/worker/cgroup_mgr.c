/*
 * jw_cgroup_mgr: finding the host's cgroup hierarchies (the mount table,
 * the server's own cgroup in each), choosing the backend, the parent
 * cgroups jobs get, and sweeping what a previous run left.
 *
 * Everything here is plain file I/O on cgroupfs, which the kernel answers
 * from memory: the calls are short and safe on the loop. The one call
 * that may wait (jw_cgroup_mgr_remove_stale) is made before serving.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cgroup_int.h"

static const struct {
  const char *name;
  unsigned bit;
} v2_ctrls[] = {
    {"memory", JW__V2_MEMORY},
    {"cpu", JW__V2_CPU},
    {"io", JW__V2_IO},
    {"pids", JW__V2_PIDS},
};

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
      ctrls = jw__cgroup_v1_bits(opts);
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
    jw__cg_hier_t *h = &mgr->h[mgr->nh];
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
    unsigned ctrls = v2 ? 0 : jw__cgroup_v1_bits(c1 + 1);
    if (!v2 && ctrls == 0)
      continue;
    for (size_t i = 0; i < mgr->nh; i++) {
      jw__cg_hier_t *h = &mgr->h[i];
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
      char *dir = jw__cgroup_join(h->mount, rel);
      if (dir == NULL)
        continue;
      h->parent = jw__cgroup_join(dir, mgr->name);
      free(dir);
    }
  }
  free(line);
  fclose(f);
}

/* The JW__V2_* controllers that own's cgroup.controllers offers. */
static unsigned v2_offered(const char *own) {
  char avail[512];
  unsigned want = 0;
  size_t i;

  if (jw__cgroup_read(own, "cgroup.controllers", avail, sizeof(avail)) < 0)
    return 0;
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
  return want;
}

/*
 * Enables the cgroup2 controllers the host offers in own's and the
 * parent's subtree_control. When own holds processes, the no-internal-
 * process rule makes the write fail with EBUSY: the manager then goes
 * without those controllers and records why (v2_busy), so that
 * jw_cgroup_mgr_adopt_self can move the caller out of the way and try
 * again. It never moves a process itself.
 */
static void enable_v2(jw_cgroup_mgr_t *mgr, const jw__cg_hier_t *h,
                      const char *own) {
  char word[16];

  mgr->v2_busy = 0;
  for (size_t i = 0; i < sizeof(v2_ctrls) / sizeof(v2_ctrls[0]); i++) {
    if (!(mgr->v2_want & v2_ctrls[i].bit))
      continue;
    snprintf(word, sizeof(word), "+%s", v2_ctrls[i].name);
    int err = jw__cgroup_write(own, "cgroup.subtree_control", word);
    if (err == -EBUSY)
      mgr->v2_busy = 1;
    if (err == 0 &&
        jw__cgroup_write(h->parent, "cgroup.subtree_control", word) == 0)
      mgr->v2_ctrls |= v2_ctrls[i].bit;
  }
}

/*
 * The server's own cgroup2 directory: the parent's, less its last
 * component ("/" at the root). Returns it newly allocated, or NULL.
 */
static char *own_dir(const jw__cg_hier_t *h) {
  char *own = strdup(h->parent);
  if (own == NULL)
    return NULL;
  *strrchr(own, '/') = '\0';
  if (own[0] == '\0') {
    free(own);
    return strdup("/");
  }
  return own;
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
  if (jw__cgroup_read(dir, "partition", buf, sizeof(buf)) < 0)
    return dev;
  if (jw__cgroup_read(dir, "../dev", buf, sizeof(buf)) < 0 ||
      sscanf(buf, "%u:%u", &ma, &mi) != 2)
    return 0;
  return makedev(ma, mi);
}

/* Each v1 controller and the capability (JW_CG_*) it gives. */
static const struct {
  unsigned ctrl, cap;
} v1_caps[] = {{JW__C_MEMORY, JW_CG_MEMORY},
               {JW__C_CPU, JW_CG_CPU},
               {JW__C_CPUACCT, JW_CG_CPUACCT},
               {JW__C_PIDS, JW_CG_PIDS},
               {JW__C_BLKIO, JW_CG_IO}};

unsigned jw__cgroup_v1_ctrls_for(unsigned caps) {
  unsigned ctrls = 0;
  for (size_t i = 0; i < sizeof(v1_caps) / sizeof(v1_caps[0]); i++)
    if (caps & v1_caps[i].cap)
      ctrls |= v1_caps[i].ctrl;
  return ctrls;
}

unsigned jw__cgroup_limits_need(const jw_limits_t *l) {
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
  return need;
}

/* Sets the capabilities from the usable hierarchies and controllers. */
static void set_caps(jw_cgroup_mgr_t *mgr) {
  mgr->caps = 0;
  for (size_t i = 0; i < mgr->nh; i++) {
    const jw__cg_hier_t *h = &mgr->h[i];
    if (h->parent == NULL)
      continue;
    if (h->v2) {
      mgr->caps |= JW_CG_KILL | JW_CG_CPUACCT;
    } else {
      /* The freezer is only needed where cgroup.kill is missing. */
      mgr->caps |= JW_CG_KILL;
      for (size_t k = 0; k < sizeof(v1_caps) / sizeof(v1_caps[0]); k++)
        if (h->ctrls & v1_caps[k].ctrl)
          mgr->caps |= v1_caps[k].cap;
    }
  }
  if (mgr->v2_ctrls & JW__V2_MEMORY)
    mgr->caps |= JW_CG_MEMORY;
  if (mgr->v2_ctrls & JW__V2_CPU)
    mgr->caps |= JW_CG_CPU;
  if (mgr->v2_ctrls & JW__V2_PIDS)
    mgr->caps |= JW_CG_PIDS;
  if (mgr->v2_ctrls & JW__V2_IO)
    mgr->caps |= JW_CG_IO;
  if (mgr->io_dev == 0)
    mgr->caps &= ~(unsigned)JW_CG_IO;
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
    jw__cg_hier_t *h = &mgr->h[i];
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
      char *own = own_dir(h);
      if (own != NULL) {
        mgr->v2_want = v2_offered(own);
        enable_v2(mgr, h, own);
        free(own);
      }
      char probe[PATH_MAX];
      snprintf(probe, sizeof(probe), "%s/cgroup.kill", h->parent);
      mgr->v2_kill = access(probe, W_OK) == 0;
    }
  }
  mgr->io_dev = whole_disk(opts->io_device);
  set_caps(mgr);

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

int jw_cgroup_mgr_adopt_self(jw_cgroup_mgr_t *mgr) {
  char leaf[NAME_MAX + 1];
  char *own, *ldir;
  jw__cg_hier_t *h;
  int err = 0;

  if (mgr == NULL)
    return -EINVAL;
  if (!mgr->v2_busy)
    return 0;
  h = &mgr->h[mgr->v2];
  own = own_dir(h);
  snprintf(leaf, sizeof(leaf), "%s-server", mgr->name);
  ldir = own != NULL ? jw__cgroup_join(own, leaf) : NULL;
  if (ldir == NULL) {
    free(own);
    return -ENOMEM;
  }
  if (mkdir(ldir, 0755) != 0 && errno != EEXIST)
    err = -errno;
  else
    err = jw__cgroup_write(ldir, "cgroup.procs", "0");
  if (err == 0) {
    enable_v2(mgr, h, own);
    set_caps(mgr);
  }
  free(ldir);
  free(own);
  return err;
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
  return jw__cgroup_limits_need(l) & ~jw_cgroup_mgr_caps(mgr);
}

const char *jw__cgroup_mgr_parent(const jw_cgroup_mgr_t *mgr,
                                  const char *ctrl) {
  unsigned bit;
  if (mgr == NULL)
    return NULL;
  if (ctrl[0] == '\0')
    return mgr->v2 >= 0 ? mgr->h[mgr->v2].parent : NULL;
  bit = jw__cgroup_v1_bit(ctrl);
  for (size_t i = 0; i < mgr->nh; i++)
    if (!mgr->h[i].v2 && (mgr->h[i].ctrls & bit))
      return mgr->h[i].parent;
  return NULL;
}

/* At most this many leftover job cgroups are removed by one sweep. */
#define STALE_MAX 65536

/*
 * Kills and removes one leftover job cgroup, waiting up to about two
 * seconds for its processes to leave. Returns 0 when removed.
 */
static int remove_stale_one(jw_cgroup_mgr_t *mgr, const char *name) {
  struct timespec ts = {0, 20 * 1000 * 1000};
  jw_cgroup_t *cg;
  int err = jw__cgroup_open_existing(mgr, name, &cg);

  if (err != 0)
    return err;
  for (int tries = 0; tries < 100; tries++) {
    jw_cgroup_kill(cg);
    if (jw_cgroup_remove(cg) == 0)
      return 0;
    nanosleep(&ts, NULL);
  }
  err = jw_cgroup_remove(cg);
  if (err != 0)
    jw_cgroup_free(cg);
  return err;
}

int jw_cgroup_mgr_remove_stale(jw_cgroup_mgr_t *mgr) {
  /* The job names seen in any hierarchy (char *), each removed once. */
  jw__buf_t names = {0};
  char **v;
  size_t n = 0;
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
      v = (char **)(void *)names.base;
      for (k = 0; k < n; k++)
        if (strcmp(v[k], e->d_name) == 0)
          break;
      if (k < n)
        continue;
      if (jw__buf_reserve(&names, sizeof(*v), 16 * sizeof(*v),
                          STALE_MAX * sizeof(*v)) != 0)
        break;
      v = (char **)(void *)names.base;
      if ((v[n] = strdup(e->d_name)) != NULL) {
        n++;
        names.len += sizeof(*v);
      }
    }
    closedir(d);
  }
  v = (char **)(void *)names.base;
  for (size_t k = 0; k < n; k++) {
    if (remove_stale_one(mgr, v[k]) == 0)
      removed++;
    free(v[k]);
  }
  jw__buf_free(&names);
  return removed;
}

void jw_cgroup_mgr_free(jw_cgroup_mgr_t *mgr) {
  if (mgr == NULL)
    return;
  jw__cgroup_pool_trim(mgr, 0, SIZE_MAX);
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
  if (jw__cgroup_read("/proc/sys/kernel", file, buf, sizeof(buf)) <= 0)
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
