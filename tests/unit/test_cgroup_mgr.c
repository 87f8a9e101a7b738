/*
 * Unit tests for jw_cgroup_mgr (lib/worker/cgroup_mgr.c) on fake cgroup
 * trees of plain files: the mount table and the own cgroup it reads, the
 * backend it picks, the parent cgroups, and that it moves no process
 * unless asked (jw_cgroup_mgr_adopt_self).
 *
 * The suite is linked with -Wl,--wrap=write: __wrap_write plays the
 * kernel's no-internal-process rule for the fake own cgroup (enabling a
 * controller there fails with EBUSY while its cgroup.procs lists a
 * process) and its move of a process ("0" written to another
 * cgroup.procs empties the own one).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../../lib/worker/cgroup_int.h"
#include "../test_common.h"
#include "jobworker/cgroup.h"
#include "jobworker/error.h"

#define MIB (1024 * 1024)

static char tmp_root[] = "/tmp/jw-cgm-XXXXXX";

/* The fake own cgroup whose rule __wrap_write plays; "" for none. */
static char rule_own[512];

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __wrap_write(int fd, const void *buf, size_t n);

static off_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

ssize_t __wrap_write(int fd, const void *buf, size_t n) {
  char link[64], path[PATH_MAX], procs[600], ctl[600];
  ssize_t len;

  if (rule_own[0] == '\0')
    return __real_write(fd, buf, n);
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  len = readlink(link, path, sizeof(path) - 1);
  if (len <= 0)
    return __real_write(fd, buf, n);
  path[len] = '\0';
  snprintf(procs, sizeof(procs), "%s/cgroup.procs", rule_own);
  snprintf(ctl, sizeof(ctl), "%s/cgroup.subtree_control", rule_own);
  if (strcmp(path, ctl) == 0 && file_size(procs) > 0) {
    errno = EBUSY;
    return -1;
  }
  len = (ssize_t)strlen(path);
  if (strcmp(path, procs) != 0 && len > 13 &&
      strcmp(path + len - 13, "/cgroup.procs") == 0 && n == 1 &&
      ((const char *)buf)[0] == '0')
    ck_assert_int_eq(truncate(procs, 0), 0);
  return __real_write(fd, buf, n);
}

static void setup(void) {
  strcpy(tmp_root, "/tmp/jw-cgm-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
  rule_own[0] = '\0';
}

static void teardown(void) {
  rule_own[0] = '\0';
  test_rm_tree(tmp_root);
}

/* Sets buf to parent/name and makes that directory. */
static void make_dir(char *buf, size_t size, const char *parent,
                     const char *name) {
  ck_assert_int_lt(snprintf(buf, size, "%s/%s", parent, name), (int)size);
  ck_assert_int_eq(mkdir(buf, 0755), 0);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "we");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/*
 * Writes the fake mountinfo (fs as the cgroup2 mount) and the fake
 * /proc/self/cgroup (own cgroup /svc) in tmp_root; mi and pc get their
 * paths.
 */
static void fake_v2_mounts(const char *fs, char *mi, size_t mi_size, char *pc,
                           size_t pc_size) {
  FILE *f;
  snprintf(mi, mi_size, "%s/mountinfo", tmp_root);
  f = fopen(mi, "we");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
  fprintf(f, "30 23 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw\n", fs);
  fclose(f);
  snprintf(pc, pc_size, "%s/cgroup", tmp_root);
  write_text(pc, "0::/svc\n");
}

static void read_text(const char *dir, const char *file, char *buf,
                      size_t size) {
  char path[600];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  f = fopen(path, "re");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  if (fgets(buf, (int)size, f) == NULL)
    buf[0] = '\0';
  fclose(f);
}

/*
 * A pure cgroup2 host, faked with plain files: the backend is chosen from
 * the mount table, controllers are enabled, and the job's limits land in
 * memory.max, cpu.max, io.max and pids.max.
 */
START_TEST(test_fake_cgroup2_host) {
  char fs[256], own[300], parent[400], job[500], path[600], buf[128];
  static const char *const files[] = {
      "memory.max", "memory.swap.max", "cpu.max",    "io.max",
      "pids.max",   "cgroup.procs",    "cgroup.kill"};
  jw_cgroup_mgr_options_t o = {.name = "jwfake"};
  jw_limits_t l = {.memory_bytes = 64LL * MIB,
                   .cpu_millis = 200,
                   .io_read_bps = 1 * MIB,
                   .io_write_bps = 10 * MIB,
                   .pids = 50};
  jw_cgroup_mgr_t *m;
  jw_cgroup_t *cg;
  struct stat st;
  char mi[300], pc[300];
  dev_t dev = 0;

  make_dir(fs, sizeof(fs), tmp_root, "fakecg");
  make_dir(own, sizeof(own), fs, "svc");
  make_dir(parent, sizeof(parent), own, "jwfake");
  make_dir(job, sizeof(job), parent, "job1");
  snprintf(path, sizeof(path), "%s/cgroup.controllers", own);
  write_text(path, "cpuset cpu io memory hugetlb pids\n");
  snprintf(path, sizeof(path), "%s/cgroup.subtree_control", own);
  write_text(path, "");
  snprintf(path, sizeof(path), "%s/cgroup.subtree_control", parent);
  write_text(path, "");
  snprintf(path, sizeof(path), "%s/cgroup.kill", parent);
  write_text(path, "");
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", job, files[i]);
    write_text(path, "");
  }
  snprintf(buf, sizeof(buf), "30 23 0:26 / ");
  fake_v2_mounts(fs, mi, sizeof(mi), pc, sizeof(pc));
  o.mountinfo_path = mi;
  o.proc_cgroup_path = pc;
  if (stat("/", &st) == 0)
    dev = st.st_dev;
  o.io_device = dev;

  ck_assert_int_eq(jw_cgroup_mgr_new(&o, &m), 0);
  ck_assert_str_eq(jw_cgroup_mgr_backend(m), "cgroup2");
  ck_assert_uint_eq(jw_cgroup_mgr_caps(m) &
                        (JW_CG_MEMORY | JW_CG_CPU | JW_CG_PIDS | JW_CG_KILL),
                    JW_CG_MEMORY | JW_CG_CPU | JW_CG_PIDS | JW_CG_KILL);
  ck_assert_str_eq(jw__cgroup_mgr_parent(m, ""), parent);
  if (!(jw_cgroup_mgr_caps(m) & JW_CG_IO)) {
    printf("SKIP %s (io part): / is not on a block device\n", __func__);
    l.io_read_bps = l.io_write_bps = 0;
  }
  ck_assert_int_eq(jw_cgroup_create(m, "job1", &l, &cg), 0);
  read_text(job, "memory.max", buf, sizeof(buf));
  ck_assert_str_eq(buf, "67108864");
  read_text(job, "memory.swap.max", buf, sizeof(buf));
  ck_assert_str_eq(buf, "0");
  read_text(job, "cpu.max", buf, sizeof(buf));
  ck_assert_str_eq(buf, "20000 100000");
  read_text(job, "pids.max", buf, sizeof(buf));
  ck_assert_str_eq(buf, "50");
  if (l.io_write_bps != 0) {
    char want[96];
    dev_t d = jw_cgroup_mgr_io_device(m);
    snprintf(want, sizeof(want), "%u:%u rbps=1048576 wbps=10485760", major(d),
             minor(d));
    read_text(job, "io.max", buf, sizeof(buf));
    ck_assert_str_eq(buf, want);
  }
  /* The kill is cgroup.kill. */
  ck_assert_int_eq(jw_cgroup_kill(cg), 0);
  read_text(job, "cgroup.kill", buf, sizeof(buf));
  ck_assert_str_eq(buf, "1");
  /* The spawn descriptor is the cgroup2 directory's procs file. */
  {
    jw__cg_spawn_t s;
    ck_assert_int_eq(jw__cgroup_spawn_open(cg, &s), 0);
    ck_assert_int_ge(s.v2_procs, 0);
    ck_assert_uint_eq(s.nv1, 0);
    jw__cgroup_spawn_close(&s);
  }
  jw_cgroup_free(cg);
  jw_cgroup_mgr_free(m);
}
END_TEST

/* Makes dir with the (empty) control files listed, NULL-terminated. */
static void make_cg(const char *dir, const char *const *files) {
  char path[700];
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  for (size_t i = 0; files[i] != NULL; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    write_text(path, "");
  }
}

/*
 * A fake cgroup2 tree at <tmp>/fakecg with the own cgroup /svc, its
 * parent "jwfake" and the leaf "jwfake-server" (plain directories get no
 * control files from mkdir, so they are made here); own, parent and leaf
 * are set to their paths, and opts to read the fake tables.
 */
static void fake_v2_tree(jw_cgroup_mgr_options_t *o, char *own, char *parent,
                         char *leaf, size_t size) {
  static const char *const own_files[] = {"cgroup.subtree_control",
                                          "cgroup.procs", NULL};
  static const char *const parent_files[] = {
      "cgroup.subtree_control", "cgroup.procs", "cgroup.kill", NULL};
  static const char *const leaf_files[] = {"cgroup.procs", NULL};
  static char mi[300], pc[300];
  char fs[256], path[600];

  make_dir(fs, sizeof(fs), tmp_root, "fakecg");
  snprintf(own, size, "%s/svc", fs);
  snprintf(parent, size, "%s/jwfake", own);
  snprintf(leaf, size, "%s/jwfake-server", own);
  make_cg(own, own_files);
  make_cg(parent, parent_files);
  make_cg(leaf, leaf_files);
  snprintf(path, sizeof(path), "%s/cgroup.controllers", own);
  write_text(path, "cpuset cpu io memory hugetlb pids\n");
  fake_v2_mounts(fs, mi, sizeof(mi), pc, sizeof(pc));
  *o = (jw_cgroup_mgr_options_t){
      .name = "jwfake", .mountinfo_path = mi, .proc_cgroup_path = pc};
}

/* The first line of dir/file without its newline, "" when empty. */
static void first_line(const char *dir, const char *file, char *buf,
                       size_t size) {
  read_text(dir, file, buf, size);
  buf[strcspn(buf, "\n")] = '\0';
}

/*
 * The own cgroup holds a process (the caller): the manager does not move
 * it. It goes without the cgroup2 limits (the caps say so, and a job with
 * a limit is refused) until the caller opts in with
 * jw_cgroup_mgr_adopt_self, which moves it into the leaf and enables them.
 */
START_TEST(test_mgr_moves_nothing_unless_asked) {
  char own[400], parent[400], leaf[400], buf[64], path[600];
  jw_limits_t l = {.memory_bytes = 64LL * MIB, .pids = 50};
  const unsigned v2_limits = JW_CG_MEMORY | JW_CG_CPU | JW_CG_PIDS;
  jw_cgroup_mgr_options_t o;
  jw_cgroup_mgr_t *m;
  jw_cgroup_t *cg;

  fake_v2_tree(&o, own, parent, leaf, sizeof(own));
  snprintf(path, sizeof(path), "%s/cgroup.procs", own);
  snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
  write_text(path, buf);
  snprintf(rule_own, sizeof(rule_own), "%s", own);

  ck_assert_int_eq(jw_cgroup_mgr_new(&o, &m), 0);
  ck_assert_str_eq(jw_cgroup_mgr_backend(m), "cgroup2");
  /* Nothing moved: the caller is still in its own cgroup. */
  first_line(leaf, "cgroup.procs", buf, sizeof(buf));
  ck_assert_str_eq(buf, "");
  ck_assert_int_gt(file_size(path), 0);
  /* Membership and kill, but no cgroup2 limits. */
  ck_assert_uint_eq(jw_cgroup_mgr_caps(m) & JW_CG_KILL, JW_CG_KILL);
  ck_assert_uint_eq(jw_cgroup_mgr_caps(m) & v2_limits, 0);
  ck_assert_uint_eq(jw_cgroup_mgr_missing(m, &l), JW_CG_MEMORY | JW_CG_PIDS);
  ck_assert_int_eq(jw_cgroup_create(m, "job1", &l, &cg), JW_EUNSUPPORTED);

  /* Opting in moves the caller into the leaf and enables the limits. */
  ck_assert_int_eq(jw_cgroup_mgr_adopt_self(m), 0);
  first_line(leaf, "cgroup.procs", buf, sizeof(buf));
  ck_assert_str_eq(buf, "0");
  ck_assert_int_eq(file_size(path), 0);
  ck_assert_uint_eq(jw_cgroup_mgr_caps(m) & v2_limits, v2_limits);
  ck_assert_uint_eq(jw_cgroup_mgr_missing(m, &l), 0);
  /* Once moved, there is nothing more to do. */
  ck_assert_int_eq(jw_cgroup_mgr_adopt_self(m), 0);
  jw_cgroup_mgr_free(m);
}
END_TEST

/*
 * Where the own cgroup holds no process, the controllers are enabled at
 * once and jw_cgroup_mgr_adopt_self moves nothing.
 */
START_TEST(test_mgr_adopt_self_noop) {
  char own[400], parent[400], leaf[400], buf[64];
  const unsigned v2_limits = JW_CG_MEMORY | JW_CG_CPU | JW_CG_PIDS;
  jw_cgroup_mgr_options_t o;
  jw_cgroup_mgr_t *m;

  fake_v2_tree(&o, own, parent, leaf, sizeof(own));
  snprintf(rule_own, sizeof(rule_own), "%s", own);
  ck_assert_int_eq(jw_cgroup_mgr_new(&o, &m), 0);
  ck_assert_uint_eq(jw_cgroup_mgr_caps(m) & v2_limits, v2_limits);
  ck_assert_int_eq(jw_cgroup_mgr_adopt_self(m), 0);
  first_line(leaf, "cgroup.procs", buf, sizeof(buf));
  ck_assert_str_eq(buf, "");
  ck_assert_int_eq(jw_cgroup_mgr_adopt_self(NULL), -EINVAL);
  jw_cgroup_mgr_free(m);
}
END_TEST

/*
 * Names that would leave the parent are refused: a manager's name and a
 * job cgroup's name are one path component, never "." or "..", which
 * would make the parent or the server's own cgroup a job's.
 */
START_TEST(test_mgr_bad_names) {
  static const char *const bad[] = {"", "a/b", ".", "..", "/x"};
  char own[400], parent[400], leaf[400];
  jw_cgroup_mgr_options_t o;
  jw_cgroup_mgr_t *m;
  jw_cgroup_t *cg;

  fake_v2_tree(&o, own, parent, leaf, sizeof(own));
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    jw_cgroup_mgr_options_t b = o;
    b.name = bad[i];
    m = NULL;
    ck_assert_msg(jw_cgroup_mgr_new(&b, &m) == -EINVAL, "manager '%s'", bad[i]);
    ck_assert_ptr_null(m);
  }
  ck_assert_int_eq(jw_cgroup_mgr_new(NULL, &m), -EINVAL);
  ck_assert_int_eq(jw_cgroup_mgr_new(&o, &m), 0);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    ck_assert_msg(jw_cgroup_create(m, bad[i], NULL, &cg) == -EINVAL,
                  "job cgroup '%s'", bad[i]);
  ck_assert_int_eq(jw_cgroup_create(m, NULL, NULL, &cg), -EINVAL);
  jw_cgroup_mgr_free(m);
}
END_TEST

/*
 * The hybrid, from a mount table with escapes and a bind mount: v1
 * controllers (cpu and cpuacct co-mounted, memory on a path with a space)
 * beside a cgroup2 hierarchy without controllers; the first mount of a
 * hierarchy wins, and the own cgroup of each comes from /proc/self/cgroup.
 * A hierarchy whose own cgroup lies outside what its mount shows is not
 * used.
 */
START_TEST(test_mgr_hybrid_mountinfo) {
  char fs[256], mem[300], cpu[300], pids[300], uni[300], mi[300], pc[300];
  char want[600];
  jw_cgroup_mgr_options_t o = {.name = "jwfake"};
  jw_cgroup_mgr_t *m;
  unsigned caps;
  FILE *f;

  make_dir(fs, sizeof(fs), tmp_root, "cg");
  make_dir(mem, sizeof(mem), fs, "mem ory");
  make_dir(cpu, sizeof(cpu), fs, "cpu,cpuacct");
  make_dir(pids, sizeof(pids), fs, "pids");
  make_dir(uni, sizeof(uni), fs, "unified");
  make_dir(want, sizeof(want), mem, "svc");
  make_dir(want, sizeof(want), cpu, "svc");
  make_dir(want, sizeof(want), uni, "svc");
  snprintf(mi, sizeof(mi), "%s/mountinfo", tmp_root);
  f = fopen(mi, "we");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
  fprintf(f,
          "32 31 0:29 / %s/mem\\040ory rw,relatime shared:9 - cgroup "
          "cgroup rw,memory\n",
          fs);
  fprintf(f, "33 31 0:30 / %s rw,relatime - cgroup cgroup rw,cpu,cpuacct\n",
          cpu);
  /* A bind mount of the memory hierarchy elsewhere: ignored. */
  fprintf(f, "34 31 0:29 /svc %s/elsewhere rw - cgroup cgroup rw,memory\n", fs);
  /* The pids mount shows only /other: the own cgroup /svc is outside. */
  fprintf(f, "35 31 0:31 /other %s rw - cgroup cgroup rw,pids\n", pids);
  fprintf(f, "36 31 0:32 / %s rw - cgroup2 cgroup2 rw\n", uni);
  fprintf(f, "37 31 0:33 / %s/devices rw - cgroup cgroup rw,devices\n", fs);
  fclose(f);
  snprintf(pc, sizeof(pc), "%s/cgroup", tmp_root);
  write_text(pc, "5:devices:/svc\n4:pids:/svc\n3:memory:/svc\n"
                 "2:cpu,cpuacct:/svc\n1:name=systemd:/svc\n0::/svc\n");
  o.mountinfo_path = mi;
  o.proc_cgroup_path = pc;

  ck_assert_int_eq(jw_cgroup_mgr_new(&o, &m), 0);
  ck_assert_str_eq(jw_cgroup_mgr_backend(m), "cgroup1+cgroup2");
  caps = jw_cgroup_mgr_caps(m);
  ck_assert_uint_eq(caps & (JW_CG_KILL | JW_CG_MEMORY | JW_CG_CPU |
                            JW_CG_CPUACCT | JW_CG_PIDS),
                    JW_CG_KILL | JW_CG_MEMORY | JW_CG_CPU | JW_CG_CPUACCT);
  snprintf(want, sizeof(want), "%s/svc/jwfake", mem);
  ck_assert_str_eq(jw__cgroup_mgr_parent(m, "memory"), want);
  snprintf(want, sizeof(want), "%s/svc/jwfake", cpu);
  ck_assert_str_eq(jw__cgroup_mgr_parent(m, "cpu"), want);
  ck_assert_str_eq(jw__cgroup_mgr_parent(m, "cpuacct"), want);
  snprintf(want, sizeof(want), "%s/svc/jwfake", uni);
  ck_assert_str_eq(jw__cgroup_mgr_parent(m, ""), want);
  ck_assert_ptr_null(jw__cgroup_mgr_parent(m, "pids"));
  ck_assert_ptr_null(jw__cgroup_mgr_parent(m, "blkio"));
  {
    struct stat st;
    ck_assert_int_eq(stat(jw__cgroup_mgr_parent(m, "memory"), &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0711);
  }
  jw_cgroup_mgr_free(m);
  /* The parents, empty, went with the manager. */
  ck_assert_int_ne(access(want, F_OK), 0);
}
END_TEST

static Suite *cgroup_mgr_suite(void) {
  Suite *s = suite_create("cgroup_mgr");
  TCase *tc = test_tcase(s, "core", setup, teardown, 0);
  const TTest *const tc_tests[] = {
      test_fake_cgroup2_host,    test_mgr_moves_nothing_unless_asked,
      test_mgr_adopt_self_noop,  test_mgr_bad_names,
      test_mgr_hybrid_mountinfo, NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(cgroup_mgr_suite()); }
