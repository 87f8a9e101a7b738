/*
 * jw_cgroup: one cgroup per job in the manager's hierarchies, its limits
 * (written as cgroup_ctl.c says), usage, kill and removal.
 *
 * Everything here is plain file I/O on cgroupfs, which the kernel answers
 * from memory: the calls are short and safe on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup_int.h"
#include "jobworker/error.h"

/*
 * The v1 controllers a job with limits l needs: the ones of the usage
 * every job reports (memory, cpuacct), the ones that enforce l, and the
 * freezer where cgroup.kill is missing. A v1 hierarchy with none of them
 * is left alone: joining it costs a mkdir when the cgroup is made and a
 * migration at every spawn, and changes nothing. The cgroup2 hierarchy is
 * always joined.
 */
static unsigned v1_wanted(const jw_cgroup_mgr_t *mgr, const jw_limits_t *l) {
  unsigned want = jw__cgroup_v1_ctrls_for(JW_CG_MEMORY | JW_CG_CPUACCT |
                                          jw__cgroup_limits_need(l));
  return mgr->v2_kill ? want : want | JW__C_FREEZER;
}

/* Whether a job needing v1 controllers want joins hierarchy h. */
static int uses(const jw__cg_hier_t *h, unsigned want) {
  return h->parent != NULL && (h->v2 || (h->ctrls & want) != 0);
}

static void free_cg(jw_cgroup_t *cg) {
  jw__cgroup_fds_close(cg);
  for (size_t i = 0; i < JW__CG_MAX_HIER; i++)
    free(cg->dirs[i]);
  free(cg);
}

void jw__cgroup_free(jw_cgroup_t *cg) { free_cg(cg); }

/* Opens dir/file; -1 (and *err set unless optional) when it cannot. */
static int open_in(const char *dir, const char *file, int flags) {
  char path[PATH_MAX];
  if (dir == NULL ||
      snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
    return -1;
  return open(path, flags | O_CLOEXEC);
}

int jw__cgroup_fds_open(jw_cgroup_t *cg) {
  jw__cg_fds_t *f = &cg->fds;
  const char *v2 = jw__cgroup_v2_dir(cg);
  const char *d;
  int err;

  f->events = f->kill = f->cpu = f->mem_peak = f->mem_oom = f->mem_now = -1;
  f->cpu_v2 = f->mem_v2 = 0;
  err = jw__cgroup_spawn_open(cg, &f->spawn);
  if (err < 0)
    return err;
  f->spawn.kept = 1;
  cg->fds_open = 1;
  /* The usage files are optional: a figure the host lacks stays 0. */
  f->events = open_in(v2, "cgroup.events", O_RDONLY);
  if (cg->mgr->v2_kill)
    f->kill = open_in(v2, "cgroup.kill", O_WRONLY);
  if ((d = jw__cgroup_dir_of(cg, JW__C_CPUACCT)) != NULL) {
    f->cpu = open_in(d, "cpuacct.usage", O_RDWR);
  } else if (v2 != NULL) {
    f->cpu = open_in(v2, "cpu.stat", O_RDONLY);
    f->cpu_v2 = 1;
  }
  if ((d = jw__cgroup_dir_of(cg, JW__C_MEMORY)) != NULL) {
    f->mem_peak = open_in(d, "memory.max_usage_in_bytes", O_RDWR);
    f->mem_oom = open_in(d, "memory.oom_control", O_RDONLY);
    f->mem_now = open_in(d, "memory.usage_in_bytes", O_RDONLY);
  } else if (v2 != NULL && (cg->mgr->v2_ctrls & JW__V2_MEMORY)) {
    f->mem_peak = open_in(v2, "memory.peak", O_RDWR);
    if (f->mem_peak < 0)
      f->mem_peak = open_in(v2, "memory.peak", O_RDONLY);
    f->mem_oom = open_in(v2, "memory.events", O_RDONLY);
    f->mem_now = open_in(v2, "memory.current", O_RDONLY);
    f->mem_v2 = 1;
  }
  return 0;
}

void jw__cgroup_fds_close(jw_cgroup_t *cg) {
  jw__cg_fds_t *f = &cg->fds;
  int *fds[] = {&f->events,   &f->kill,    &f->cpu,
                &f->mem_peak, &f->mem_oom, &f->mem_now};
  if (!cg->fds_open)
    return;
  cg->fds_open = 0;
  f->spawn.kept = 0;
  jw__cgroup_spawn_close(&f->spawn);
  for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
    if (*fds[i] >= 0) {
      close(*fds[i]);
      *fds[i] = -1;
    }
}

/* Reads a kept file whole from its start (NUL-terminated); len or -errno. */
static ssize_t read_fd(int fd, char *buf, size_t size) {
  ssize_t n;
  buf[0] = '\0';
  if (fd < 0)
    return -ENOENT;
  do
    n = pread(fd, buf, size - 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return -errno;
  buf[n] = '\0';
  return n;
}

/* The job directory of the hierarchy holding v1 controller ctrl, or NULL. */
const char *jw__cgroup_dir_of(const jw_cgroup_t *cg, unsigned ctrl) {
  for (size_t i = 0; i < cg->mgr->nh; i++)
    if (cg->dirs[i] != NULL && !cg->mgr->h[i].v2 &&
        (cg->mgr->h[i].ctrls & ctrl))
      return cg->dirs[i];
  return NULL;
}

const char *jw__cgroup_v2_dir(const jw_cgroup_t *cg) {
  return cg->mgr->v2 >= 0 ? cg->dirs[cg->mgr->v2] : NULL;
}

int jw__cgroup_remove_dirs(jw_cgroup_t *cg) {
  int busy = 0;
  /* A directory goes with its files: nothing may read them after. */
  jw__cgroup_fds_close(cg);
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
  jw_cgroup_t *cg;
  unsigned want;
  size_t i;
  int err = 0;

  /* "." and ".." would name the parent or the server's own cgroup. */
  if (mgr == NULL || name == NULL || out == NULL || name[0] == '\0' ||
      strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
      strcmp(name, "..") == 0)
    return -EINVAL;
  if ((mgr->caps & JW_CG_KILL) == 0 || jw_cgroup_mgr_missing(mgr, limits))
    return JW_EUNSUPPORTED;
  if (strlen(name) >= sizeof(cg->name))
    return -EINVAL;
  cg = calloc(1, sizeof(*cg));
  if (cg == NULL)
    return -ENOMEM;
  cg->mgr = mgr;
  snprintf(cg->name, sizeof(cg->name), "%s", name); /* fits: checked */
  if (limits != NULL)
    cg->limits = *limits;
  want = v1_wanted(mgr, &cg->limits);
  for (i = 0; i < mgr->nh; i++) {
    if (!uses(&mgr->h[i], want))
      continue;
    cg->dirs[i] = jw__cgroup_join(mgr->h[i].parent, name);
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

  err = jw__cgroup_apply_limits(cg, limits);
  if (err < 0 || (err = jw__cgroup_fds_open(cg)) < 0)
    goto fail;
  *out = cg;
  return 0;

fail:
  jw__cgroup_remove_dirs(cg);
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
  const char *d = jw__cgroup_v2_dir(cg);
  if (d != NULL)
    return d;
  d = jw__cgroup_dir_of(cg, JW__C_FREEZER);
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
  if (cg->fds_open && cg->fds.kill >= 0) {
    ssize_t n;
    do
      n = pwrite(cg->fds.kill, "1", 1, 0);
    while (n < 0 && errno == EINTR);
    if (n == 1)
      return 0;
  }
  d = jw__cgroup_v2_dir(cg);
  if (d != NULL && cg->mgr->v2_kill) {
    err = jw__cgroup_write(d, "cgroup.kill", "1");
    if (err == 0 || err == -ENOENT)
      return err == -ENOENT ? 0 : err;
  }
  /*
   * Frozen members cannot fork between the listing and the kill; they die
   * as soon as they are thawed.
   */
  d = jw__cgroup_dir_of(cg, JW__C_FREEZER);
  if (d != NULL) {
    int frozen = jw__cgroup_write(d, "freezer.state", "FROZEN") == 0;
    signal_members(d, SIGKILL);
    if (frozen)
      jw__cgroup_write(d, "freezer.state", "THAWED");
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
  if (cg->fds_open && cg->fds.events >= 0 &&
      read_fd(cg->fds.events, buf, sizeof(buf)) > 0 &&
      jw__cgroup_find_key(buf, "populated", &populated) == 0)
    return populated == 0;
  d = jw__cgroup_v2_dir(cg);
  if (d != NULL && jw__cgroup_read(d, "cgroup.events", buf, sizeof(buf)) > 0 &&
      jw__cgroup_find_key(buf, "populated", &populated) == 0)
    return populated == 0;
  d = members_dir(cg);
  if (d == NULL)
    return true;
  return jw__cgroup_read(d, "cgroup.procs", buf, sizeof(buf)) <= 0;
}

int jw__cgroup_raw_counters(jw_cgroup_t *cg, uint64_t *cpu_ns, uint64_t *oom) {
  const jw__cg_fds_t *f = &cg->fds;
  char buf[2048];
  uint64_t v;

  *cpu_ns = *oom = 0;
  if (!cg->fds_open)
    return -EBADF;
  if (read_fd(f->cpu, buf, sizeof(buf)) > 0) {
    if (!f->cpu_v2)
      *cpu_ns = strtoull(buf, NULL, 10);
    else if (jw__cgroup_find_key(buf, "usage_usec", &v) == 0)
      *cpu_ns = v * 1000;
  }
  if (read_fd(f->mem_oom, buf, sizeof(buf)) > 0 &&
      jw__cgroup_find_key(buf, "oom_kill", &v) == 0)
    *oom = v;
  return 0;
}

/*
 * The usage from the kept descriptors: one read of each file, the
 * counters less what they said when this job got the cgroup (a reused
 * one carries its earlier jobs' counts).
 */
void jw__cgroup_usage_kept(jw_cgroup_t *cg, jw_usage_t *out, uint64_t *cpu_ns,
                           uint64_t *oom) {
  char buf[64];

  memset(out, 0, sizeof(*out));
  jw__cgroup_raw_counters(cg, cpu_ns, oom);
  out->cpu_usage_ns = *cpu_ns > cg->base_cpu_ns ? *cpu_ns - cg->base_cpu_ns : 0;
  out->oom_killed = *oom > cg->base_oom;
  if (read_fd(cg->fds.mem_peak, buf, sizeof(buf)) > 0) {
    uint64_t peak = strtoull(buf, NULL, 10);
    out->memory_peak_bytes = peak > cg->base_mem ? peak - cg->base_mem : 0;
  }
}

int jw_cgroup_usage(jw_cgroup_t *cg, jw_usage_t *out) {
  char buf[2048];
  const char *d;
  uint64_t v;

  if (cg == NULL || out == NULL)
    return -EINVAL;
  if (cg->fds_open) {
    uint64_t cpu, oom;
    jw__cgroup_usage_kept(cg, out, &cpu, &oom);
    return 0;
  }
  memset(out, 0, sizeof(*out));
  if ((d = jw__cgroup_dir_of(cg, JW__C_CPUACCT)) != NULL) {
    if (jw__cgroup_read(d, "cpuacct.usage", buf, sizeof(buf)) > 0)
      out->cpu_usage_ns = strtoull(buf, NULL, 10);
  } else if ((d = jw__cgroup_v2_dir(cg)) != NULL &&
             jw__cgroup_read(d, "cpu.stat", buf, sizeof(buf)) > 0 &&
             jw__cgroup_find_key(buf, "usage_usec", &v) == 0) {
    out->cpu_usage_ns = v * 1000;
  }
  if ((d = jw__cgroup_dir_of(cg, JW__C_MEMORY)) != NULL) {
    if (jw__cgroup_read(d, "memory.max_usage_in_bytes", buf, sizeof(buf)) > 0)
      out->memory_peak_bytes = strtoull(buf, NULL, 10);
    if (jw__cgroup_read(d, "memory.oom_control", buf, sizeof(buf)) > 0 &&
        jw__cgroup_find_key(buf, "oom_kill", &v) == 0)
      out->oom_killed = v > 0;
  } else if ((d = jw__cgroup_v2_dir(cg)) != NULL &&
             (cg->mgr->v2_ctrls & JW__V2_MEMORY)) {
    if (jw__cgroup_read(d, "memory.peak", buf, sizeof(buf)) > 0)
      out->memory_peak_bytes = strtoull(buf, NULL, 10);
    if (jw__cgroup_read(d, "memory.events", buf, sizeof(buf)) > 0 &&
        jw__cgroup_find_key(buf, "oom_kill", &v) == 0)
      out->oom_killed = v > 0;
  }
  return 0;
}

int jw_cgroup_remove(jw_cgroup_t *cg) {
  if (cg == NULL)
    return 0;
  if (jw__cgroup_remove_dirs(cg) != 0)
    return -EBUSY;
  free_cg(cg);
  return 0;
}

void jw_cgroup_free(jw_cgroup_t *cg) {
  if (cg != NULL)
    free_cg(cg);
}

int jw__cgroup_open_existing(jw_cgroup_mgr_t *mgr, const char *name,
                             jw_cgroup_t **out) {
  jw_cgroup_t *cg = calloc(1, sizeof(*cg));

  if (cg == NULL)
    return -ENOMEM;
  cg->mgr = mgr;
  for (size_t i = 0; i < mgr->nh; i++) {
    struct stat st;
    if (mgr->h[i].parent == NULL)
      continue;
    cg->dirs[i] = jw__cgroup_join(mgr->h[i].parent, name);
    if (cg->dirs[i] == NULL) {
      free_cg(cg);
      return -ENOMEM;
    }
    if (stat(cg->dirs[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
      free(cg->dirs[i]);
      cg->dirs[i] = NULL;
    }
  }
  *out = cg;
  return 0;
}

int jw__cgroup_spawn_open(const jw_cgroup_t *cg, jw__cg_spawn_t *s) {
  const char *d;
  char path[PATH_MAX];
  int err;

  s->v2_procs = -1;
  s->nv1 = 0;
  s->kept = 0;
  if (cg == NULL)
    return 0;
  if (cg->fds_open) {
    *s = cg->fds.spawn;
    return 0;
  }
  d = jw__cgroup_v2_dir(cg);
  if (d != NULL) {
    snprintf(path, sizeof(path), "%s/cgroup.procs", d);
    s->v2_procs = open(path, O_WRONLY | O_CLOEXEC);
    if (s->v2_procs < 0)
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
  if (s->kept)
    return; /* the cgroup's own: closed with it */
  if (s->v2_procs >= 0)
    close(s->v2_procs);
  for (size_t i = 0; i < s->nv1; i++)
    close(s->v1_procs[i]);
  s->v2_procs = -1;
  s->nv1 = 0;
}
