/*
 * Unit tests for jw_cgroup_mgr (lib/worker/cgroup_mgr.c) on fake cgroup
 * trees of plain files: the mount table and the own cgroup it reads, the
 * backend it picks and the parent cgroups.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../../lib/worker/cgroup_int.h"
#include "../test_common.h"
#include "jobworker/cgroup.h"

#define MIB (1024 * 1024)

static char tmp_root[] = "/tmp/jw-cgm-XXXXXX";

static void setup(void) {
  strcpy(tmp_root, "/tmp/jw-cgm-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
}

static void teardown(void) { test_rm_tree(tmp_root); }

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "we");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
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

  snprintf(fs, sizeof(fs), "%s/fakecg", tmp_root);
  snprintf(own, sizeof(own), "%s/svc", fs);
  snprintf(parent, sizeof(parent), "%s/jwfake", own);
  snprintf(job, sizeof(job), "%s/job1", parent);
  ck_assert_int_eq(mkdir(fs, 0755), 0);
  ck_assert_int_eq(mkdir(own, 0755), 0);
  ck_assert_int_eq(mkdir(parent, 0755), 0);
  ck_assert_int_eq(mkdir(job, 0755), 0);
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
  snprintf(mi, sizeof(mi), "%s/mountinfo", tmp_root);
  snprintf(buf, sizeof(buf), "30 23 0:26 / ");
  {
    FILE *f = fopen(mi, "we");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
    fprintf(f, "30 23 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw\n", fs);
    fclose(f);
  }
  snprintf(pc, sizeof(pc), "%s/cgroup", tmp_root);
  write_text(pc, "0::/svc\n");
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
  /* The spawn descriptors are the cgroup2 directory and its procs file. */
  {
    jw__cg_spawn_t s;
    ck_assert_int_eq(jw__cgroup_spawn_open(cg, &s), 0);
    ck_assert_int_ge(s.v2_dir, 0);
    ck_assert_int_ge(s.v2_procs, 0);
    ck_assert_uint_eq(s.nv1, 0);
    jw__cgroup_spawn_close(&s);
  }
  jw_cgroup_free(cg);
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

  snprintf(fs, sizeof(fs), "%s/cg", tmp_root);
  snprintf(mem, sizeof(mem), "%s/mem ory", fs);
  snprintf(cpu, sizeof(cpu), "%s/cpu,cpuacct", fs);
  snprintf(pids, sizeof(pids), "%s/pids", fs);
  snprintf(uni, sizeof(uni), "%s/unified", fs);
  ck_assert_int_eq(mkdir(fs, 0755), 0);
  ck_assert_int_eq(mkdir(mem, 0755), 0);
  ck_assert_int_eq(mkdir(cpu, 0755), 0);
  ck_assert_int_eq(mkdir(pids, 0755), 0);
  ck_assert_int_eq(mkdir(uni, 0755), 0);
  snprintf(want, sizeof(want), "%s/svc", mem);
  ck_assert_int_eq(mkdir(want, 0755), 0);
  snprintf(want, sizeof(want), "%s/svc", cpu);
  ck_assert_int_eq(mkdir(want, 0755), 0);
  snprintf(want, sizeof(want), "%s/svc", uni);
  ck_assert_int_eq(mkdir(want, 0755), 0);
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
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_fake_cgroup2_host);
  tcase_add_test(tc, test_mgr_hybrid_mountinfo);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return test_run_suite(cgroup_mgr_suite()); }
