/*
 * Unit tests for jw_cgroup and the jobs that run in cgroups and
 * namespaces: the settings each backend writes, a fake cgroup2 host, a
 * host without cgroups, and on the real host (through the supervisor)
 * kill-the-tree, pids, memory, CPU and io limits, limits together with
 * namespaces, and the removal of a previous run's leftovers. The
 * namespaces themselves are test_nsinit.c's.
 *
 * A case the host cannot support prints "SKIP <case>: <reason>" and
 * returns; it never passes silently.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "../../lib/worker/cgroup_int.h"
#include "../../lib/worker/supervisor_int.h"
#include "../test_common.h"
#include "jobworker/cgroup.h"
#include "jobworker/supervisor.h"

#define MIB (1024 * 1024)

static char tmp_root[] = "/tmp/jw-cg-XXXXXX";
static char data_dir[128];
static char mgr_name[64];
static uv_loop_t loop;
static jw_cgroup_mgr_t *mgr;
static jw_supervisor_t *sup;

/* Runs the loop until pred(arg) holds or timeout_ms passed. */
static int run_until(int (*pred)(void *), void *arg, uint64_t timeout_ms) {
  return test_run_until(&loop, pred, arg, timeout_ms);
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

static void run_for(uint64_t ms) { run_until(never, NULL, ms); }

static void open_env(dev_t io_device) {
  jw_cgroup_mgr_options_t co = {.name = mgr_name, .io_device = io_device};
  jw_supervisor_options_t so = {.data_dir = data_dir, .stop_grace_ms = 2000};
  ck_assert_int_eq(jw_cgroup_mgr_new(&co, &mgr), 0);
  so.cgroups = mgr;
  ck_assert_int_eq(jw_supervisor_new(&loop, &so, &sup), 0);
}

static int sup_done_flag;

static void on_sup_done(jw_supervisor_t *s, void *data) {
  (void)s;
  (void)data;
  sup_done_flag = 1;
}

static void close_env(void) {
  sup_done_flag = 0;
  jw_supervisor_shutdown(sup, on_sup_done, NULL);
  ck_assert(run_until(test_flag_set, &sup_done_flag, 30000));
  sup_done_flag = 0;
  jw_supervisor_close(sup, 0, on_sup_done, NULL);
  ck_assert(run_until(test_flag_set, &sup_done_flag, 30000));
  jw_cgroup_mgr_free(mgr);
  sup = NULL;
  mgr = NULL;
}

static void setup(void) {
  strcpy(tmp_root, "/tmp/jw-cg-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
  snprintf(data_dir, sizeof(data_dir), "%s/data", tmp_root);
  /*
   * The pid alone can repeat in another pid namespace sharing the host's
   * cgroups (a parallel run in a container): the temporary directory's
   * random suffix keeps two runs from sweeping each other's jobs.
   */
  snprintf(mgr_name, sizeof(mgr_name), "jwtest-%d-%s", (int)getpid(),
           tmp_root + strlen("/tmp/jw-cg-"));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  open_env(0);
}

static void teardown(void) {
  if (sup != NULL)
    close_env();
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  test_rm_tree(tmp_root);
}

/* Starts a job; returns what jw_supervisor_start returned. */
static int start(const char *const *argv, const jw_limits_t *lim,
                 unsigned isolation, char id[JW_ID_LEN + 1]) {
  jw_job_spec_t spec;
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, NULL, 0, NULL);
  if (lim != NULL)
    spec.limits = *lim;
  spec.isolation = isolation;
  return jw_supervisor_start(sup, NULL, &spec, id);
}

static int is_final(void *arg) {
  jw_job_info_t info;
  if (jw_supervisor_status(sup, arg, NULL, &info) != 0)
    return 1;
  return info.proc.state != JW_PROC_RUNNING;
}

static void wait_final(const char *id, uint64_t timeout_ms,
                       jw_job_info_t *info) {
  ck_assert_msg(run_until(is_final, (void *)id, timeout_ms),
                "job %s not final after %llu ms", id,
                (unsigned long long)timeout_ms);
  ck_assert_int_eq(jw_supervisor_status(sup, id, NULL, info), 0);
}

struct stop_ctx {
  int done;
  jw_proc_status_t st;
  jw_usage_t usage;
};

static void on_stopped(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  struct stop_ctx *c = req->data;
  ck_assert_int_eq(err, 0);
  c->st = info->proc;
  c->usage = info->usage;
  c->done = 1;
}

static void stop_job(const char *id, struct stop_ctx *c) {
  jw_stop_req_t req;
  memset(c, 0, sizeof(*c));
  req.data = c;
  ck_assert_int_eq(jw_supervisor_stop(sup, &req, id, NULL, on_stopped), 0);
  ck_assert(run_until(test_flag_set, &c->done, 20000));
}

/* The job's output (stdout and stderr together), NUL-terminated. */
static char *output_of(const char *id) {
  char path[256];
  struct stat st;
  char *buf;
  int fd;
  snprintf(path, sizeof(path), "%s/out-%s", tmp_root, id);
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_ge(jw__supervisor_get_output(sup, id, NULL, fd, fd), 0);
  ck_assert_int_eq(fstat(fd, &st), 0);
  buf = calloc(1, (size_t)st.st_size + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_int_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
  close(fd);
  unlink(path);
  return buf;
}

/* Whether job id has printed a whole line. */
static int has_line(void *id) {
  char *out = output_of(id);
  int done = strchr(out, '\n') != NULL;
  free(out);
  return done;
}

/* A job cgroup's directory in the hierarchy of ctrl ("" for cgroup2). */
static int job_dir(const char *ctrl, const char *id, char *buf, size_t size) {
  const char *parent = jw__cgroup_mgr_parent(mgr, ctrl);
  if (parent == NULL)
    return -1;
  snprintf(buf, size, "%s/%s", parent, id);
  return 0;
}

static int dir_gone(void *arg) {
  struct stat st;
  return stat(arg, &st) != 0;
}

/*
 * The number of job cgroups (subdirectories) under the parent of ctrl,
 * and the last one's path in buf; -1 without that hierarchy.
 */
static int job_dirs(const char *ctrl, char *buf, size_t size) {
  const char *parent = jw__cgroup_mgr_parent(mgr, ctrl);
  struct dirent *e;
  int n = 0;
  DIR *d;
  if (parent == NULL || (d = opendir(parent)) == NULL)
    return -1;
  while ((e = readdir(d)) != NULL) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.')
      continue;
    n++;
    if (buf != NULL)
      snprintf(buf, size, "%s/%s", parent, e->d_name);
  }
  closedir(d);
  return n;
}

/* The cgroup directory of the one job running, in the hierarchy of ctrl. */
static int running_job_dir(const char *ctrl, char *buf, size_t size) {
  int n = job_dirs(ctrl, buf, size);
  if (n < 0)
    return -1;
  ck_assert_int_eq(n, 1);
  return 0;
}

static int no_job_dirs(void *ctrl) { return job_dirs(ctrl, NULL, 0) <= 0; }

/*
 * Every directory of the test's job cgroups is removed soon after they
 * are final (each test has a parent of its own).
 */
static void assert_cgroups_removed(void) {
  static const char *const ctrls[] = {"", "memory", "cpu", "pids", "blkio"};
  for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++)
    ck_assert_msg(run_until(no_job_dirs, (void *)ctrls[i], 10000),
                  "a job cgroup is still there under %s",
                  jw__cgroup_mgr_parent(mgr, ctrls[i]));
}

/* Whether pid is gone (a zombie counts as gone): a test_run_until predicate. */
static int pid_gone(void *arg) { return test_pid_gone((pid_t) * (long *)arg); }

static long read_long(const char *dir, const char *file) {
  char path[600], buf[64] = {0};
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  f = fopen(path, "re");
  if (f == NULL)
    return -1;
  if (fgets(buf, sizeof(buf), f) == NULL)
    buf[0] = '\0';
  fclose(f);
  return strtol(buf, NULL, 10);
}

static const char *find_setting(const jw__cg_setting_t *s, size_t n,
                                const char *file) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(s[i].file, file) == 0)
      return s[i].value;
  return NULL;
}

/* A setting a test expects: its file and value. */
typedef struct {
  const char *file, *value;
} want_t;

/* Each of want (up to a NULL file) is among the n settings of s. */
static void assert_settings(const jw__cg_setting_t *s, size_t n,
                            const want_t *want) {
  for (; want->file != NULL; want++) {
    const char *got = find_setting(s, n, want->file);
    ck_assert_msg(got != NULL && strcmp(got, want->value) == 0,
                  "%s is \"%s\", want \"%s\"", want->file,
                  got != NULL ? got : "(not set)", want->value);
  }
}

/* Every limit set: 64 MiB, cpu_millis, 1 MiB/s read, 10 MiB/s write, 50. */
static jw_limits_t every_limit(int64_t cpu_millis) {
  return (jw_limits_t){.memory_bytes = 64LL * MIB,
                       .cpu_millis = cpu_millis,
                       .io_read_bps = 1 * MIB,
                       .io_write_bps = 10 * MIB,
                       .pids = 50};
}

START_TEST(test_v2_settings) {
  static const want_t want[] = {
      {"memory.max", "67108864"},  {"memory.swap.max", "0"},
      {"cpu.max", "20000 100000"}, {"io.max", "8:0 rbps=1048576 wbps=10485760"},
      {"pids.max", "50"},          {NULL, NULL}};
  jw__cg_setting_t s[JW__CG_MAX_SETTINGS];
  jw_limits_t l = every_limit(200);
  size_t n = jw__cgroup_v2_settings(&l, makedev(8, 0), s);
  assert_settings(s, n, want);

  /* Only what is set; a write-only io limit; the smallest CPU quota. */
  l = (jw_limits_t){.io_write_bps = 10 * MIB, .cpu_millis = 5};
  n = jw__cgroup_v2_settings(&l, makedev(254, 16), s);
  ck_assert_uint_eq(n, 2);
  ck_assert_str_eq(find_setting(s, n, "io.max"), "254:16 wbps=10485760");
  ck_assert_str_eq(find_setting(s, n, "cpu.max"), "1000 100000");
  /* No io device: no io limit can be written. */
  n = jw__cgroup_v2_settings(&l, 0, s);
  ck_assert_ptr_null(find_setting(s, n, "io.max"));
  ck_assert_uint_eq(jw__cgroup_v2_settings(NULL, 0, s), 0);
}
END_TEST

START_TEST(test_v1_settings) {
  static const want_t want[] = {
      {"memory.limit_in_bytes", "67108864"},
      {"memory.memsw.limit_in_bytes", "67108864"},
      {"cpu.cfs_period_us", "100000"},
      {"cpu.cfs_quota_us", "150000"},
      {"blkio.throttle.read_bps_device", "7:3 1048576"},
      {"blkio.throttle.write_bps_device", "7:3 10485760"},
      {"pids.max", "50"},
      {NULL, NULL}};
  jw__cg_setting_t s[JW__CG_MAX_SETTINGS];
  jw_limits_t l = every_limit(1500);
  size_t n = jw__cgroup_v1_settings(&l, makedev(7, 3), s);
  assert_settings(s, n, want);
  for (size_t i = 0; i < n; i++) {
    if (strncmp(s[i].file, "memory.", 7) == 0)
      ck_assert_str_eq(s[i].ctrl, "memory");
    if (strcmp(s[i].file, "memory.memsw.limit_in_bytes") == 0)
      ck_assert_int_eq(s[i].optional, 1);
  }
}
END_TEST

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "we");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

/*
 * A host without cgroups: the manager has no capabilities, jobs run as
 * before, and limits are refused.
 */
START_TEST(test_no_cgroup_host) {
  static const char *const echo[] = {"sh", "-c", "echo hi; exit 3", NULL};
  jw_cgroup_mgr_options_t o = {.name = "jwnone"};
  jw_limits_t l = {.memory_bytes = 64LL * MIB};
  char mi[300], pc[300], id[JW_ID_LEN + 1];
  jw_job_info_t info;
  jw_cgroup_t *cg;
  char *out;

  snprintf(mi, sizeof(mi), "%s/mountinfo", tmp_root);
  write_text(mi, "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
  snprintf(pc, sizeof(pc), "%s/cgroup", tmp_root);
  write_text(pc, "0::/\n");
  o.mountinfo_path = mi;
  o.proc_cgroup_path = pc;

  close_env();
  {
    jw_supervisor_options_t so = {.data_dir = data_dir};
    ck_assert_int_eq(jw_cgroup_mgr_new(&o, &mgr), 0);
    so.cgroups = mgr;
    ck_assert_int_eq(jw_supervisor_new(&loop, &so, &sup), 0);
  }
  ck_assert_str_eq(jw_cgroup_mgr_backend(mgr), "none");
  ck_assert_uint_eq(jw_cgroup_mgr_caps(mgr), 0);
  ck_assert_uint_ne(jw_cgroup_mgr_missing(mgr, &l), 0);
  ck_assert_int_eq(jw_cgroup_create(mgr, "x", NULL, &cg), JW_EUNSUPPORTED);

  ck_assert_int_eq(start(echo, &l, 0, id), JW_EUNSUPPORTED);
  ck_assert_int_eq(start(echo, NULL, 0, id), 0);
  wait_final(id, 10000, &info);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 3);
  ck_assert_uint_eq(info.usage.cpu_usage_ns, 0);
  out = output_of(id);
  ck_assert_str_eq(out, "hi\n");
  free(out);
}
END_TEST

/* The real host's backend, for the log of the test run. */
START_TEST(test_host_backend) {
  unsigned caps = jw_cgroup_mgr_caps(mgr);
  printf("host cgroup backend: %s caps:%s%s%s%s%s%s\n",
         jw_cgroup_mgr_backend(mgr), caps & JW_CG_KILL ? " kill" : "",
         caps & JW_CG_MEMORY ? " memory" : "", caps & JW_CG_CPU ? " cpu" : "",
         caps & JW_CG_CPUACCT ? " cpuacct" : "",
         caps & JW_CG_PIDS ? " pids" : "", caps & JW_CG_IO ? " io" : "");
  fflush(stdout);
}
END_TEST

/*
 * A process that left the job's process group (setsid) still dies when
 * the job is stopped, and the job's cgroup is removed.
 */
START_TEST(test_setsid_escape_killed) {
  static const char *const argv[] = {
      "sh", "-c", "setsid sleep 1000 & echo $!; sleep 1000", NULL};
  char id[JW_ID_LEN + 1];
  struct stop_ctx sc;
  char *out;
  long pid;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  ck_assert_int_eq(start(argv, NULL, 0, id), 0);
  /* The job prints the escaped pid once it is started. */
  ck_assert_msg(run_until(has_line, id, 10000), "no pid printed");
  out = output_of(id);
  pid = strtol(out, NULL, 10);
  free(out);
  ck_assert_int_gt(pid, 1);
  ck_assert(!pid_gone(&pid));
  stop_job(id, &sc);
  ck_assert_int_eq(sc.st.state, JW_PROC_STOPPED);
  ck_assert_msg(run_until(pid_gone, &pid, 5000), "setsid'd %ld survived", pid);
  assert_cgroups_removed();
}
END_TEST

/*
 * A job's cgroup is not named after its id (/proc/PID/cgroup is
 * world-readable), and the parent is 0711: a job of an unprivileged user
 * can read its own cgroup path but not list the other jobs' cgroups.
 */
START_TEST(test_job_cgroups_private) {
  char script[600], id[JW_ID_LEN + 1];
  const char *argv[] = {"sh", "-c", script, NULL};
  const char *parent;
  jw_job_spec_t spec;
  jw_job_info_t info;
  struct stat st;
  char *out;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  if (geteuid() != 0)
    SKIP("running a job as another user needs root");
  parent = jw__cgroup_mgr_parent(mgr, "");
  if (parent == NULL)
    parent = jw__cgroup_mgr_parent(mgr, "pids");
  ck_assert_ptr_nonnull(parent);
  ck_assert_int_eq(stat(parent, &st), 0);
  ck_assert_int_eq(st.st_mode & 07777, 0711);
  snprintf(script, sizeof(script),
           "cat /proc/self/cgroup; ls %s >/dev/null 2>&1 && echo listed; "
           "echo end",
           parent);
  memset(&spec, 0, sizeof(spec));
  spec.command = argv[0];
  spec.args = argv + 1;
  spec.nargs = 2;
  spec.creds.set_ids = true;
  spec.creds.uid = spec.creds.gid = 231071;
  ck_assert_int_eq(jw_supervisor_start(sup, NULL, &spec, id), 0);
  wait_final(id, 10000, &info);
  ck_assert_int_eq(info.uid, 231071);
  out = output_of(id);
  ck_assert_int_eq(info.proc.exit_code, 0);
  ck_assert_msg(strstr(out, "cg-") != NULL, "no job cgroup in: %s", out);
  ck_assert_msg(strstr(out, id) == NULL, "the job id is readable: %s", out);
  ck_assert_msg(strstr(out, "listed") == NULL, "parent listable: %s", out);
  ck_assert_ptr_nonnull(strstr(out, "end\n"));
  free(out);
}
END_TEST

/*
 * Whether the job's /proc/self/cgroup (out) puts it in a job cgroup in the
 * v1 hierarchy that holds ctrl alone: 1 yes, 0 no, -1 the host has no
 * such hierarchy (absent, or co-mounted with another controller).
 */
static int in_own_v1(const char *out, const char *ctrl) {
  char want[64];
  const char *line;
  int n = snprintf(want, sizeof(want), ":%s:", ctrl);
  for (line = out; line != NULL && *line != '\0';) {
    const char *nl = strchr(line, '\n');
    const char *hit = strstr(line, want);
    if (hit != NULL && (nl == NULL || hit < nl)) {
      const char *path = hit + n;
      const char *cg = strstr(path, "/cg-");
      return cg != NULL && (nl == NULL || cg < nl);
    }
    line = nl != NULL ? nl + 1 : NULL;
  }
  return -1;
}

/* Runs cat /proc/self/cgroup with limits l; returns what it printed. */
static char *cgroups_of_job(const jw_limits_t *l) {
  static const char *const argv[] = {"cat", "/proc/self/cgroup", NULL};
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  ck_assert_int_eq(start(argv, l, 0, id), 0);
  wait_final(id, 10000, &info);
  ck_assert_int_eq(info.proc.exit_code, 0);
  return output_of(id);
}

/*
 * A job joins the v1 hierarchies it needs, not every one: memory and
 * cpuacct always (its usage), cpu, blkio and pids only for a limit of
 * theirs. Joining one costs a migration at every Start. Where the host
 * co-mounts a controller with another, its hierarchy is not looked at.
 */
START_TEST(test_v1_hierarchies_as_needed) {
  static const char *const always[] = {"memory", "cpuacct"};
  static const char *const limited[] = {"cpu", "blkio", "pids"};
  jw_limits_t every = every_limit(500);
  jw_limits_t none;
  char *out;
  int seen = 0;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  memset(&none, 0, sizeof(none));
  out = cgroups_of_job(&none);
  for (size_t i = 0; i < 2; i++)
    ck_assert_msg(in_own_v1(out, always[i]) != 0,
                  "no limit: not in a job cgroup of %s: %s", always[i], out);
  for (size_t i = 0; i < 3; i++) {
    int r = in_own_v1(out, limited[i]);
    ck_assert_msg(r != 1, "no limit: in a job cgroup of %s: %s", limited[i],
                  out);
    seen += r == 0;
  }
  free(out);
  if (seen == 0)
    SKIP("no v1 cpu, blkio or pids hierarchy of its own on this host");
  /* The io limit needs a device; a host without one leaves blkio out. */
  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_IO))
    every.io_read_bps = every.io_write_bps = 0;
  out = cgroups_of_job(&every);
  for (size_t i = 0; i < 3; i++)
    if (strcmp(limited[i], "blkio") != 0 || every.io_write_bps > 0)
      ck_assert_msg(in_own_v1(out, limited[i]) != 0,
                    "limited: not in a job cgroup of %s: %s", limited[i], out);
  free(out);
  assert_cgroups_removed();
}
END_TEST

/* The peak of pids.current in dir, sampled on each loop turn. */
struct pids_sample {
  const char *dir;
  long peak;
};

/* Samples pids.current; holds once the peak reaches 10. */
static int pids_grew(void *arg) {
  struct pids_sample *ps = arg;
  long cur = read_long(ps->dir, "pids.current");
  if (cur > ps->peak)
    ps->peak = cur;
  return ps->peak >= 10;
}

/*
 * A fork bomb with pids=50 stays under 50; the host can fork; stop works.
 * The job's shell execs its sleep rather than forking it: once the bomb
 * fills the limit a fork would fail, and the shell would exit by itself
 * before the stop.
 */
START_TEST(test_fork_bomb_contained) {
  static const char *const argv[] = {
      "sh", "-c", "f() { f | f & }; f 2>/dev/null; exec sleep 1000", NULL};
  jw_limits_t l = {.pids = 50};
  char id[JW_ID_LEN + 1], dir[512];
  struct pids_sample ps;
  struct stop_ctx sc;
  long cur, peak;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_PIDS))
    SKIP("no pids controller on this host");
  ck_assert_int_eq(start(argv, &l, 0, id), 0);
  if (running_job_dir("pids", dir, sizeof(dir)) != 0)
    ck_assert_int_eq(running_job_dir("", dir, sizeof(dir)), 0);
  ps.dir = dir;
  ps.peak = 0;
  /* Until the bomb has grown (the host may be slow), then a second more. */
  ck_assert_msg(run_until(pids_grew, &ps, 20000), "the bomb never grew: %ld",
                ps.peak);
  for (int i = 0; i < 20; i++) {
    run_for(50);
    cur = read_long(dir, "pids.current");
    if (cur > ps.peak)
      ps.peak = cur;
  }
  peak = ps.peak;
  ck_assert_int_le(peak, 50);
  ck_assert_int_ge(peak, 10);
  /* The host is unaffected: this process can still start others. */
  ck_assert_int_eq(system("true"), 0);
  stop_job(id, &sc);
  ck_assert_int_eq(sc.st.state, JW_PROC_STOPPED);
  assert_cgroups_removed();
}
END_TEST

/* Runs argv with memory=64M to its end; info gets its final state. */
static void run_in_64m(const char *const *argv, jw_job_info_t *info) {
  jw_limits_t l = {.memory_bytes = 64LL * MIB};
  char id[JW_ID_LEN + 1];
  ck_assert_int_eq(start(argv, &l, 0, id), 0);
  wait_final(id, 30000, info);
}

/* A memory hog with memory=64M is killed by the OOM killer. */
START_TEST(test_memory_hog_oom) {
  static const char *const argv[] = {"dd",      "if=/dev/zero", "of=/dev/null",
                                     "bs=256M", "count=1",      NULL};
  jw_job_info_t info;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_MEMORY))
    SKIP("no memory controller on this host");
  run_in_64m(argv, &info);
  ck_assert_int_eq(info.proc.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(info.proc.signal, SIGKILL);
  ck_assert(info.usage.oom_killed);
  ck_assert_int_eq(info.limits.memory_bytes, 64LL * MIB);
  ck_assert_uint_gt(info.usage.memory_peak_bytes, 32ULL * MIB);
  ck_assert_uint_le(info.usage.memory_peak_bytes, 64ULL * MIB);
  assert_cgroups_removed();
}
END_TEST

/* A job well under its memory limit is not reported as OOM-killed. */
START_TEST(test_memory_within_limit) {
  static const char *const argv[] = {"dd",    "if=/dev/zero", "of=/dev/null",
                                     "bs=8M", "count=4",      NULL};
  jw_job_info_t info;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_MEMORY))
    SKIP("no memory controller on this host");
  run_in_64m(argv, &info);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 0);
  ck_assert(!info.usage.oom_killed);
  ck_assert_uint_gt(info.usage.memory_peak_bytes, 4ULL * MIB);
}
END_TEST

/* A CPU spinner with cpus=0.2 gets about a fifth of a CPU. */
START_TEST(test_cpu_limit) {
  static const char *const argv[] = {"sh", "-c", "while :; do :; done", NULL};
  jw_limits_t l = {.cpu_millis = 200};
  char id[JW_ID_LEN + 1];
  struct stop_ctx sc;
  double wall, rate;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_CPU) ||
      !(jw_cgroup_mgr_caps(mgr) & JW_CG_CPUACCT))
    SKIP("no cpu/cpuacct controller on this host");
  ck_assert_int_eq(start(argv, &l, 0, id), 0);
  run_for(2000);
  stop_job(id, &sc);
  ck_assert_int_eq(sc.st.state, JW_PROC_STOPPED);
  wall = (double)(sc.st.ended_at_ns - sc.st.started_at_ns) / 1e9;
  rate = (double)sc.usage.cpu_usage_ns / 1e9 / wall;
  printf("cpu limit 0.2: %.3f s of CPU in %.3f s (%.3f CPU)\n",
         (double)sc.usage.cpu_usage_ns / 1e9, wall, rate);
  ck_assert_msg(rate >= 0.1 && rate <= 0.3, "rate %.3f", rate);
}
END_TEST

/*
 * io_write_bps=10M: a direct-I/O write of 40 MiB to a loop device takes
 * at least 3 s.
 */
START_TEST(test_io_write_limit) {
  char img[200], cmd[600], dev[128], of[160], id[JW_ID_LEN + 1];
  const char *argv[] = {"dd",       "if=/dev/zero", of,  "bs=1M",
                        "count=40", "oflag=direct", NULL};
  jw_limits_t l = {.io_write_bps = 10 * MIB};
  jw_job_info_t info;
  struct stat st;
  double secs;

  if (geteuid() != 0)
    SKIP("loop devices need root");
  snprintf(img, sizeof(img), "%s/loop.img", tmp_root);
  snprintf(cmd, sizeof(cmd), "truncate -s 48M %s && losetup -f --show %s", img,
           img);
  test_sh_line(cmd, dev, sizeof(dev));
  if (dev[0] != '/' || stat(dev, &st) != 0 || !S_ISBLK(st.st_mode))
    SKIP("cannot set up a loop device (losetup -f --show failed)");
  close_env();
  open_env(st.st_rdev);
  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_IO)) {
    snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
    ck_assert_int_eq(system(cmd), 0);
    SKIP("no blkio/io controller on this host");
  }
  snprintf(of, sizeof(of), "of=%s", dev);
  ck_assert_int_eq(start(argv, &l, 0, id), 0);
  wait_final(id, 60000, &info);
  snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 0);
  secs = (double)(info.proc.ended_at_ns - info.proc.started_at_ns) / 1e9;
  printf("40 MiB at io_write_bps=10M on %s: %.2f s\n", dev, secs);
  ck_assert_msg(secs >= 3.0, "took only %.2f s", secs);
}
END_TEST

/* A job with limits and namespaces together still reports as usual. */
START_TEST(test_limits_with_isolation) {
  static const char *const argv[] = {"sh", "-c", "echo $$", NULL};
  jw_limits_t l = {.memory_bytes = 128LL * MIB, .pids = 100};
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  char *out;

  if (jw_cgroup_mgr_missing(mgr, &l) != 0)
    SKIP("no memory/pids controller on this host");
  if (start(argv, &l, JW_ISOLATE_PID | JW_ISOLATE_NET, id) == -EPERM)
    SKIP("namespaces need CAP_SYS_ADMIN");
  wait_final(id, 10000, &info);
  out = output_of(id);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_str_eq(out, "2\n");
  ck_assert_int_eq(info.limits.pids, 100);
  ck_assert_uint_gt(info.usage.cpu_usage_ns, 0);
  free(out);
  assert_cgroups_removed();
}
END_TEST

/*
 * What a killed server left behind (a cgroup with a process in it) is
 * killed and removed by the next manager of the same name.
 */
START_TEST(test_remove_stale) {
  jw_cgroup_t *cg;
  jw__cg_spawn_t s;
  char dir[512], c;
  int ready[2];
  pid_t pid;
  int ws;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  ck_assert_int_eq(jw_cgroup_create(mgr, "stalejob", NULL, &cg), 0);
  ck_assert_int_eq(jw__cgroup_spawn_open(cg, &s), 0);
  /* Closed by the exec (CLOEXEC): EOF means in the cgroup and sleeping. */
  ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(ready[0]);
    if (s.v2_procs >= 0 && write(s.v2_procs, "0", 1) != 1)
      _exit(1);
    for (size_t i = 0; i < s.nv1; i++)
      if (write(s.v1_procs[i], "0", 1) != 1)
        _exit(1);
    setsid();
    execlp("sleep", "sleep", "1000", (char *)NULL);
    if (write(ready[1], "x", 1) != 1)
      _exit(126);
    _exit(127);
  }
  close(ready[1]);
  jw__cgroup_spawn_close(&s);
  ck_assert_int_eq(read(ready[0], &c, 1), 0);
  close(ready[0]);
  /* The server "dies": its cgroup object is gone, the directory is not. */
  jw_cgroup_free(cg);
  ck_assert_int_eq(waitpid(pid, &ws, WNOHANG), 0);

  close_env();
  open_env(0);
  ck_assert_int_eq(jw_cgroup_mgr_remove_stale(mgr), 1);
  ck_assert_int_eq(waitpid(pid, &ws, 0), pid);
  ck_assert(WIFSIGNALED(ws));
  ck_assert_int_eq(WTERMSIG(ws), SIGKILL);
  if (job_dir("", "stalejob", dir, sizeof(dir)) == 0 ||
      job_dir("memory", "stalejob", dir, sizeof(dir)) == 0)
    ck_assert(dir_gone(dir));
  ck_assert_int_eq(jw_cgroup_mgr_remove_stale(mgr), 0);
}
END_TEST

static long minor_faults(void) {
  struct rusage ru;
  ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_minflt;
}

/*
 * Starting a job in a cgroup does not copy the server's address space:
 * the child shares it until its exec (clone(CLONE_VM | CLONE_VFORK)). A
 * fork would leave every page of the server write-protected, and the
 * server's next write to each page would fault (copy-on-write), also
 * after the child has exec'd.
 */
START_TEST(test_start_copies_no_pages) {
  static const char *const argv[] = {"true", NULL};
  const size_t npages = 2048, page = (size_t)sysconf(_SC_PAGESIZE);
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  long before, faults;
  char *mem;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  if (under_valgrind())
    SKIP("valgrind turns clone(CLONE_VM) into a fork");
  mem = mmap(NULL, npages * page, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(mem, MAP_FAILED);
  /* Page by page: a huge page would take one fault for 512 pages. */
  madvise(mem, npages * page, MADV_NOHUGEPAGE);
  memset(mem, 1, npages * page);
  ck_assert_int_eq(start(argv, NULL, 0, id), 0);
  before = minor_faults();
  for (size_t i = 0; i < npages; i++)
    mem[i * page] = 2;
  faults = minor_faults() - before;
  ck_assert_msg(faults < (long)npages / 4,
                "%ld faults writing %zu pages after a start", faults, npages);
  munmap(mem, npages * page);
  wait_final(id, 20000, &info);
  ck_assert_int_eq(info.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(info.proc.exit_code, 0);
}
END_TEST

/* A start that fails in the child reports the child's errno, in a cgroup. */
START_TEST(test_start_failure_in_cgroup) {
  static const char *const missing[] = {"/nonexistent/jw-no-such-command",
                                        NULL};
  char id[JW_ID_LEN + 1];

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  ck_assert_int_eq(start(missing, NULL, 0, id), -ENOENT);
  assert_cgroups_removed();
}
END_TEST

/* Starts argv for owner with limits and waits for it to be final. */
static void run_as(const char *owner, const char *const *argv,
                   const jw_limits_t *lim, jw_job_info_t *info,
                   char cg_name[80]) {
  jw_job_spec_t spec;
  char id[JW_ID_LEN + 1];
  struct job *j;

  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, NULL, 0, NULL);
  if (lim != NULL)
    spec.limits = *lim;
  ck_assert_int_eq(jw_supervisor_start(sup, owner, &spec, id), 0);
  wait_final(id, 60000, info);
  ck_assert_int_eq(jw__supervisor_lookup(sup, id, NULL, &j), 0);
  snprintf(cg_name, 80, "%s", j->cg_name);
}

/*
 * A final job's empty cgroup is reused by the owner's next job with the
 * same limits, and that job reports its own usage, not the cgroup's
 * earlier jobs': a CPU burner that then dies of OOM, and a /bin/true
 * after it in the same cgroup.
 */
START_TEST(test_reused_cgroup_reports_own_usage) {
  static const char *const hog[] = {
      "sh", "-c",
      "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; "
      "exec dd if=/dev/zero of=/dev/null bs=256M count=1",
      NULL};
  static const char *const quick[] = {"true", NULL};
  jw_limits_t l = {.memory_bytes = 64LL * MIB};
  char name1[80], name2[80];
  jw_job_info_t a, b;
  int mem = (jw_cgroup_mgr_caps(mgr) & JW_CG_MEMORY) != 0;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  run_as("alice", hog, mem ? &l : NULL, &a, name1);
  run_as("alice", quick, mem ? &l : NULL, &b, name2);
  ck_assert_str_eq(name1, name2);
  ck_assert_int_eq(b.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(b.proc.exit_code, 0);
  if (jw_cgroup_mgr_caps(mgr) & JW_CG_CPUACCT) {
    ck_assert_uint_gt(a.usage.cpu_usage_ns, 20ULL * 1000 * 1000);
    ck_assert_msg(b.usage.cpu_usage_ns < a.usage.cpu_usage_ns / 4,
                  "true used %llu ns after a job of %llu ns",
                  (unsigned long long)b.usage.cpu_usage_ns,
                  (unsigned long long)a.usage.cpu_usage_ns);
  }
  if (mem) {
    ck_assert(a.usage.oom_killed);
    ck_assert_uint_gt(a.usage.memory_peak_bytes, 32ULL * MIB);
    ck_assert(!b.usage.oom_killed);
    ck_assert_msg(b.usage.memory_peak_bytes < 8ULL * MIB,
                  "true peaked at %llu bytes after a job of %llu",
                  (unsigned long long)b.usage.memory_peak_bytes,
                  (unsigned long long)a.usage.memory_peak_bytes);
  }
  assert_cgroups_removed();
}
END_TEST

/*
 * A job with a PID namespace of its own runs in a reused cgroup, one that
 * the last job's end killed (cgroup.kill), as in a fresh one: the kernel
 * kills a child cloned with CLONE_INTO_CGROUP into such a cgroup at once.
 */
START_TEST(test_reused_cgroup_runs_pid_namespace) {
  static const char *const quick[] = {"true", NULL};
  static const char *const argv[] = {"sh", "-c", "echo $$", NULL};
  jw_job_spec_t spec;
  char name1[80], name2[80];
  char id[JW_ID_LEN + 1];
  jw_job_info_t a, b;
  struct job *j;
  char *out;
  int err;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  run_as("alice", quick, NULL, &a, name1);
  ck_assert_int_eq(a.proc.exit_code, 0);
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, NULL, 0, NULL);
  spec.isolation = JW_ISOLATE_PID;
  err = jw_supervisor_start(sup, "alice", &spec, id);
  if (err == -EPERM)
    SKIP("namespaces need CAP_SYS_ADMIN");
  ck_assert_int_eq(err, 0);
  wait_final(id, 60000, &b);
  ck_assert_int_eq(jw__supervisor_lookup(sup, id, NULL, &j), 0);
  snprintf(name2, sizeof(name2), "%s", j->cg_name);
  ck_assert_str_eq(name1, name2);
  ck_assert_msg(b.proc.state == JW_PROC_EXITED && b.proc.exit_code == 0,
                "the PID namespace job in a reused cgroup ended in state %d, "
                "exit %d, signal %d",
                (int)b.proc.state, b.proc.exit_code, b.proc.signal);
  out = output_of(id);
  ck_assert_str_eq(out, "2\n");
  free(out);
  assert_cgroups_removed();
}
END_TEST

/*
 * A job that leaves page cache charged to its cgroup (a file it wrote)
 * does not leave it to the next job in that cgroup: its peak is its own.
 */
START_TEST(test_reused_cgroup_emptied) {
  char cmd[256];
  const char *const writer[] = {"sh", "-c", cmd, NULL};
  static const char *const quick[] = {"true", NULL};
  char name1[80], name2[80];
  jw_job_info_t a, b;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_MEMORY))
    SKIP("no memory controller on this host");
  snprintf(cmd, sizeof(cmd),
           "dd if=/dev/zero of=%s/cache bs=1M count=16 2>/dev/null", tmp_root);
  run_as("alice", writer, NULL, &a, name1);
  ck_assert_int_eq(a.proc.exit_code, 0);
  run_as("alice", quick, NULL, &b, name2);
  if (strcmp(name1, name2) != 0) {
    /* Not pooled: only a cgroup2 memory cgroup still charged is removed. */
    ck_assert_msg(jw__cgroup_mgr_parent(mgr, "memory") == NULL,
                  "a v1 memory cgroup was not reused after force_empty");
  } else {
    ck_assert_msg(b.usage.memory_peak_bytes < 4ULL * MIB,
                  "true peaked at %llu bytes after a 16 MiB writer",
                  (unsigned long long)b.usage.memory_peak_bytes);
  }
  assert_cgroups_removed();
}
END_TEST

/* Another owner's job never gets a cgroup whose name an earlier job knew. */
START_TEST(test_pool_per_owner) {
  static const char *const quick[] = {"true", NULL};
  char name1[80], name2[80], name3[80];
  jw_limits_t l = {.pids = 40};
  jw_job_info_t info;

  if (!(jw_cgroup_mgr_caps(mgr) & JW_CG_KILL))
    SKIP("no usable cgroup hierarchy on this host");
  run_as("alice", quick, NULL, &info, name1);
  run_as("bob", quick, NULL, &info, name2);
  ck_assert_str_ne(name1, name2);
  /* Nor one with other limits. */
  if (jw_cgroup_mgr_caps(mgr) & JW_CG_PIDS) {
    run_as("alice", quick, &l, &info, name3);
    ck_assert_str_ne(name1, name3);
  }
  run_as("alice", quick, NULL, &info, name3);
  ck_assert_str_eq(name1, name3);
  assert_cgroups_removed();
}
END_TEST

static Suite *cgroup_suite(void) {
  Suite *s = suite_create("cgroup");
  TCase *tc = test_tcase(s, "core", setup, teardown, 0);
  TCase *host = test_tcase(s, "host", setup, teardown, 120);
  const TTest *const tc_tests[] = {test_v2_settings, test_v1_settings,
                                   test_no_cgroup_host, NULL};
  test_add_tests(tc, tc_tests);
  const TTest *const host_tests[] = {test_host_backend,
                                     test_setsid_escape_killed,
                                     test_job_cgroups_private,
                                     test_v1_hierarchies_as_needed,
                                     test_fork_bomb_contained,
                                     test_memory_hog_oom,
                                     test_memory_within_limit,
                                     test_cpu_limit,
                                     test_io_write_limit,
                                     test_limits_with_isolation,
                                     test_remove_stale,
                                     test_start_copies_no_pages,
                                     test_start_failure_in_cgroup,
                                     test_reused_cgroup_reports_own_usage,
                                     test_reused_cgroup_emptied,
                                     test_reused_cgroup_runs_pid_namespace,
                                     test_pool_per_owner,
                                     NULL};
  test_add_tests(host, host_tests);
  return s;
}

int main(void) { return test_run_suite(cgroup_suite()); }
