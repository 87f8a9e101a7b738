/*
 * teleportd's flags (server/flags.c): every flag takes the forms --help
 * and docs document, refuses bad values with a message naming the flag
 * (or the environment variable it came from), reads its environment twin,
 * loses to the flag when both are given, and defaults to the documented
 * value. Expected values are written here, not taken from the code.
 */
#include <check.h>
#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test_common.h"
#include "flags.h"

#define KiB 1024ULL
#define MiB (1024ULL * 1024)
#define GiB (1024ULL * 1024 * 1024)

extern char **environ;

/* What one jw_flags_parse printed to stderr and stdout. */
static char err_out[8192], std_out[16384];

/* Removes every TELEPORTD_* variable, so that only what a test sets counts. */
static void clear_env(void) {
  for (;;) {
    char name[256];
    char **e;
    for (e = environ; *e != NULL; e++)
      if (strncmp(*e, "TELEPORTD_", 10) == 0)
        break;
    if (*e == NULL)
      return;
    size_t n = strcspn(*e, "=");
    ck_assert_uint_lt(n, sizeof(name));
    memcpy(name, *e, n);
    name[n] = '\0';
    ck_assert_int_eq(unsetenv(name), 0);
  }
}

static void read_all(int fd, char *buf, size_t size) {
  size_t got = 0;
  ssize_t n;
  lseek(fd, 0, SEEK_SET);
  while (got + 1 < size && (n = read(fd, buf + got, size - 1 - got)) > 0)
    got += (size_t)n;
  buf[got] = '\0';
}

/*
 * Runs jw_flags_parse on "teleportd" plus the NULL-terminated words,
 * with the certificates given unless the words say otherwise, capturing
 * stdout and stderr. Returns its result.
 */
static int parse_argv(jw_config_t *cfg, int with_certs, const char *const *w) {
  char *argv[64];
  int argc = 0, rc;
  argv[argc++] = "teleportd";
  if (with_certs) {
    argv[argc++] = "--cacert=ca.pem";
    argv[argc++] = "--cert=server.pem";
    argv[argc++] = "--key=server.key";
  }
  for (; *w != NULL; w++) {
    ck_assert_int_lt(argc, 63);
    argv[argc++] = (char *)*w;
  }
  argv[argc] = NULL;

  FILE *ef = tmpfile(), *of = tmpfile();
  ck_assert_ptr_nonnull(ef);
  ck_assert_ptr_nonnull(of);
  fflush(stdout);
  fflush(stderr);
  int save_err = dup(2), save_out = dup(1);
  ck_assert_int_ge(save_err, 0);
  ck_assert_int_ge(save_out, 0);
  dup2(fileno(ef), 2);
  dup2(fileno(of), 1);
  optind = 0; /* getopt starts afresh for each parse */
  rc = jw_flags_parse(cfg, argc, argv);
  fflush(stdout);
  fflush(stderr);
  dup2(save_err, 2);
  dup2(save_out, 1);
  close(save_err);
  close(save_out);
  read_all(fileno(ef), err_out, sizeof(err_out));
  read_all(fileno(of), std_out, sizeof(std_out));
  fclose(ef);
  fclose(of);
  return rc;
}

#define PARSE(cfg, ...)                                                        \
  parse_argv((cfg), 1, (const char *const[]){__VA_ARGS__, NULL})
#define PARSE_NOCERTS(cfg, ...)                                                \
  parse_argv((cfg), 0, (const char *const[]){__VA_ARGS__, NULL})

static void assert_err_has(const char *what) {
  ck_assert_msg(strstr(err_out, what) != NULL, "stderr does not say \"%s\": %s",
                what, err_out);
}

/*
 * var=bad in the environment fails a parse of the good argument arg,
 * naming var and bad. var stays set.
 */
static void assert_env_refused(jw_config_t *cfg, const char *var,
                               const char *bad, const char *arg) {
  char want[128];
  setenv(var, bad, 1);
  ck_assert_int_eq(PARSE(cfg, arg), 2);
  snprintf(want, sizeof(want), "invalid %s \"%s\"", var, bad);
  assert_err_has(want);
}

/* Each of bad given to --flag is refused, naming the flag, with want. */
static void assert_refused(const char *flag, const char *const *bad, size_t n,
                           const char *want) {
  jw_config_t cfg;
  char arg[96], named[96];
  snprintf(named, sizeof(named), "invalid --%s", flag);
  for (size_t i = 0; i < n; i++) {
    snprintf(arg, sizeof(arg), "--%s=%s", flag, bad[i]);
    ck_assert_msg(PARSE(&cfg, arg) == 2, "%s accepted", arg);
    assert_err_has(named);
    assert_err_has(want);
  }
}

/* The plain-number, size and duration flags, with their documented default. */
static const struct {
  const char *flag, *env;
  size_t off;
  uint64_t def;
  const char *good;    /* a documented form */
  uint64_t good_value; /* what it parses to */
  const char *bad[4];  /* refused, with a message naming the flag */
} u64_flags[] = {
    {"max-jobs",
     "TELEPORTD_MAX_JOBS",
     offsetof(jw_config_t, max_jobs),
     512,
     "7",
     7,
     {"x", "-1", "1000001", "7k"}},
    {"max-jobs-per-client",
     "TELEPORTD_MAX_JOBS_PER_CLIENT",
     offsetof(jw_config_t, max_jobs_per_client),
     64,
     "0",
     0,
     {"many", "-3", "2000000", "1.5"}},
    {"max-output-bytes",
     "TELEPORTD_MAX_OUTPUT_BYTES",
     offsetof(jw_config_t, max_output_bytes),
     GiB,
     "64K",
     64 * KiB,
     {"lots", "-1", "2P", "10Q"}},
    {"max-finished-per-client",
     "TELEPORTD_MAX_FINISHED_PER_CLIENT",
     offsetof(jw_config_t, max_finished_per_client),
     100,
     "3",
     3,
     {"1,000", "-1", "1000001", "3 "}},
    {"max-request-bytes",
     "TELEPORTD_MAX_REQUEST_BYTES",
     offsetof(jw_config_t, max_request_bytes),
     4 * MiB,
     "1M",
     MiB,
     {"0", "1023", "2G", "1Mb"}},
    {"max-streams",
     "TELEPORTD_MAX_STREAMS",
     offsetof(jw_config_t, max_streams),
     100,
     "8",
     8,
     {"0", "100001", "eight", "-8"}},
    {"handshake-timeout",
     "TELEPORTD_HANDSHAKE_TIMEOUT",
     offsetof(jw_config_t, handshake_timeout_ms),
     10000,
     "500ms",
     500,
     {"0", "2h", "10 s", "soon"}},
    {"max-args",
     "TELEPORTD_MAX_ARGS",
     offsetof(jw_config_t, max_args),
     1024,
     "16",
     16,
     {"-1", "1000001", "1e3", "sixteen"}},
    {"max-env",
     "TELEPORTD_MAX_ENV",
     offsetof(jw_config_t, max_env),
     256,
     "0",
     0,
     {"-1", "1000001", "0x10", "a"}},
    {"max-request-strings",
     "TELEPORTD_MAX_REQUEST_STRINGS",
     offsetof(jw_config_t, max_request_strings),
     256 * KiB,
     "2K",
     2 * KiB,
     {"2G", "-1", "K", "1.5.5"}},
    {"max-disk-per-client",
     "TELEPORTD_MAX_DISK_PER_CLIENT",
     offsetof(jw_config_t, max_disk_per_client),
     10 * GiB,
     "1G",
     GiB,
     {"2P", "-1G", "big", "1GG"}},
    {"request-timeout",
     "TELEPORTD_REQUEST_TIMEOUT",
     offsetof(jw_config_t, request_timeout_ms),
     30000,
     "2m",
     120000,
     {"0ms", "2h", "-1s", "1d"}},
    {"idle-timeout",
     "TELEPORTD_IDLE_TIMEOUT",
     offsetof(jw_config_t, idle_timeout_ms),
     300000,
     "1h",
     3600000,
     {"0", "25h", "1x", "forever"}},
    {"max-connections-per-client",
     "TELEPORTD_MAX_CONNECTIONS_PER_CLIENT",
     offsetof(jw_config_t, max_connections_per_client),
     32,
     "2",
     2,
     {"0", "1000001", "-2", "2.0"}},
    {"max-stop-timeout",
     "TELEPORTD_MAX_STOP_TIMEOUT",
     offsetof(jw_config_t, max_stop_timeout_ms),
     300000,
     "90s",
     90000,
     {"0", "2d", "-5m", "later"}},
    {"stop-timeout",
     "TELEPORTD_STOP_TIMEOUT",
     offsetof(jw_config_t, stop_timeout_ms),
     10000,
     "1.5s",
     1500,
     {"-1s", "1d", "ms", "soon"}},
};

#define NU64 (sizeof(u64_flags) / sizeof(u64_flags[0]))

static uint64_t u64_at(const jw_config_t *cfg, size_t off) {
  return *(const uint64_t *)((const char *)cfg + off);
}

START_TEST(test_defaults) {
  jw_config_t cfg;
  ck_assert_int_eq(PARSE(&cfg, "--data-dir=/tmp/x"), 0);
  ck_assert_str_eq(err_out, "");
  ck_assert_str_eq(cfg.addr, "127.0.0.1:3000");
  ck_assert_str_eq(cfg.cacert, "ca.pem");
  ck_assert_str_eq(cfg.cert, "server.pem");
  ck_assert_str_eq(cfg.key, "server.key");
  ck_assert_str_eq(cfg.data_dir, "/tmp/x");
  ck_assert_uint_eq(cfg.max_connections, 1024);
  ck_assert_int_eq(cfg.log_level, JW_LOG_INFO);
  ck_assert(cfg.allow_isolation);
  ck_assert(!cfg.default_pids_set);
  ck_assert_uint_eq(cfg.job_uid_first, 200000);
  ck_assert_uint_eq(cfg.job_uid_last, 265535);
  ck_assert_ptr_null(cfg.io_device);
  ck_assert_ptr_null(cfg.users_file);
  ck_assert_ptr_null(cfg.crl);
  for (size_t i = 0; i < NU64; i++)
    ck_assert_msg(u64_at(&cfg, u64_flags[i].off) == u64_flags[i].def,
                  "--%s defaults to %llu, not %llu", u64_flags[i].flag,
                  (unsigned long long)u64_at(&cfg, u64_flags[i].off),
                  (unsigned long long)u64_flags[i].def);
  jw_limits_t zero;
  memset(&zero, 0, sizeof(zero));
  ck_assert_int_eq(memcmp(&cfg.default_limits, &zero, sizeof(zero)), 0);
  ck_assert_int_eq(memcmp(&cfg.max_limits, &zero, sizeof(zero)), 0);
}
END_TEST

/* Without --data-dir: one that works for the user running the server. */
START_TEST(test_default_data_dir) {
  jw_config_t cfg;
  setenv("XDG_STATE_HOME", "/srv/state", 1);
  setenv("HOME", "/home/someone", 1);
  ck_assert_int_eq(PARSE(&cfg, "--log-level=info"), 0);
  if (geteuid() == 0)
    ck_assert_str_eq(cfg.data_dir, "/var/lib/teleportd");
  else
    ck_assert_str_eq(cfg.data_dir, "/srv/state/teleportd");
  /* An empty value is no value. */
  setenv("TELEPORTD_DATA_DIR", "", 1);
  setenv("TELEPORTD_ADDR", "", 1);
  ck_assert_int_eq(PARSE(&cfg, "--log-level=info"), 0);
  ck_assert_str_ne(cfg.data_dir, "");
  ck_assert_str_eq(cfg.addr, "127.0.0.1:3000");
}
END_TEST

/* Each number, size and duration flag: its form, as a flag and from env. */
START_TEST(test_u64_flags) {
  jw_config_t cfg;
  char arg[128];
  for (size_t i = 0; i < NU64; i++) {
    snprintf(arg, sizeof(arg), "--%s=%s", u64_flags[i].flag, u64_flags[i].good);
    ck_assert_msg(PARSE(&cfg, arg) == 0, "%s: %s", arg, err_out);
    ck_assert_msg(u64_at(&cfg, u64_flags[i].off) == u64_flags[i].good_value,
                  "%s parsed to %llu", arg,
                  (unsigned long long)u64_at(&cfg, u64_flags[i].off));
    /* The separate-word form too. */
    snprintf(arg, sizeof(arg), "--%s", u64_flags[i].flag);
    ck_assert_int_eq(PARSE(&cfg, arg, u64_flags[i].good), 0);
    ck_assert_uint_eq(u64_at(&cfg, u64_flags[i].off), u64_flags[i].good_value);

    setenv(u64_flags[i].env, u64_flags[i].good, 1);
    ck_assert_msg(PARSE(&cfg, "--log-level=info") == 0, "%s: %s",
                  u64_flags[i].env, err_out);
    ck_assert_msg(u64_at(&cfg, u64_flags[i].off) == u64_flags[i].good_value,
                  "%s=%s parsed to %llu", u64_flags[i].env, u64_flags[i].good,
                  (unsigned long long)u64_at(&cfg, u64_flags[i].off));
    /* The flag wins over its twin. */
    snprintf(
        arg, sizeof(arg), "--%s=%llu%s", u64_flags[i].flag,
        (unsigned long long)(u64_flags[i].def /
                             (strstr(u64_flags[i].flag, "timeout") ? 1000 : 1)),
        strstr(u64_flags[i].flag, "timeout") ? "s" : "");
    ck_assert_msg(PARSE(&cfg, arg) == 0, "%s: %s", arg, err_out);
    ck_assert_msg(u64_at(&cfg, u64_flags[i].off) == u64_flags[i].def,
                  "%s with %s set gave %llu", arg, u64_flags[i].env,
                  (unsigned long long)u64_at(&cfg, u64_flags[i].off));
    unsetenv(u64_flags[i].env);
  }
}
END_TEST

/* A bad value is refused (exit status 2) with its flag or variable named. */
START_TEST(test_u64_flags_refused) {
  jw_config_t cfg;
  char arg[128], quoted[96];
  for (size_t i = 0; i < NU64; i++) {
    for (size_t b = 0; b < 4; b++) {
      const char *v = u64_flags[i].bad[b];
      snprintf(arg, sizeof(arg), "--%s=%s", u64_flags[i].flag, v);
      ck_assert_msg(PARSE(&cfg, arg) == 2, "%s was accepted", arg);
      snprintf(quoted, sizeof(quoted), "invalid --%s \"%s\"", u64_flags[i].flag,
               v);
      assert_err_has(quoted);
      assert_err_has("want ");
      if (v[0] == '\0')
        continue; /* an empty variable is unset */
      setenv(u64_flags[i].env, v, 1);
      ck_assert_msg(PARSE(&cfg, "--log-level=info") == 2, "%s=%s accepted",
                    u64_flags[i].env, v);
      snprintf(quoted, sizeof(quoted), "invalid %s \"%s\"", u64_flags[i].env,
               v);
      assert_err_has(quoted);
      unsetenv(u64_flags[i].env);
    }
  }
}
END_TEST

START_TEST(test_string_flags) {
  static const struct {
    const char *flag, *env;
    size_t off;
  } f[] = {
      {"addr", "TELEPORTD_ADDR", offsetof(jw_config_t, addr)},
      {"cacert", "TELEPORTD_CACERT", offsetof(jw_config_t, cacert)},
      {"cert", "TELEPORTD_CERT", offsetof(jw_config_t, cert)},
      {"key", "TELEPORTD_KEY", offsetof(jw_config_t, key)},
      {"data-dir", "TELEPORTD_DATA_DIR", offsetof(jw_config_t, data_dir)},
      {"io-device", "TELEPORTD_IO_DEVICE", offsetof(jw_config_t, io_device)},
      {"users", "TELEPORTD_USERS", offsetof(jw_config_t, users_file)},
      {"crl", "TELEPORTD_CRL", offsetof(jw_config_t, crl)},
  };
  jw_config_t cfg;
  char arg[128];
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    setenv(f[i].env, "from-env", 1);
    ck_assert_int_eq(PARSE(&cfg, "--log-level=info"), 0);
    const char *got = *(const char **)((char *)&cfg + f[i].off);
    /* The certificate flags given by PARSE win over their twins. */
    if (strstr("cacert cert key", f[i].flag) == NULL)
      ck_assert_msg(got != NULL && strcmp(got, "from-env") == 0, "%s: %s",
                    f[i].env, got);
    snprintf(arg, sizeof(arg), "--%s=from-flag", f[i].flag);
    ck_assert_int_eq(PARSE(&cfg, arg), 0);
    got = *(const char **)((char *)&cfg + f[i].off);
    ck_assert_msg(got != NULL && strcmp(got, "from-flag") == 0, "%s: %s", arg,
                  got);
    unsetenv(f[i].env);
  }
  /* The certificates from the environment alone. */
  static const struct {
    const char *env, *value;
    size_t off;
  } certs[] = {{"TELEPORTD_CACERT", "a", offsetof(jw_config_t, cacert)},
               {"TELEPORTD_CERT", "b", offsetof(jw_config_t, cert)},
               {"TELEPORTD_KEY", "c", offsetof(jw_config_t, key)}};
  for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++)
    setenv(certs[i].env, certs[i].value, 1);
  ck_assert_int_eq(PARSE_NOCERTS(&cfg, "--log-level=info"), 0);
  for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++)
    ck_assert_str_eq(*(const char **)((char *)&cfg + certs[i].off),
                     certs[i].value);
}
END_TEST

START_TEST(test_missing_certificates) {
  /* The flags given (NULL-terminated) and what stderr says is missing. */
  static const struct {
    const char *argv[4];
    const char *err;
  } cases[] = {
      {{"--cert=a", "--key=b"}, "missing --cacert (or TELEPORTD_CACERT)"},
      {{"--cacert=a", "--key=b"}, "missing --cert (or TELEPORTD_CERT)"},
      {{"--cacert=a", "--cert=b"}, "missing --key (or TELEPORTD_KEY)"},
      {{"--cacert=", "--cert=b", "--key=c"}, "missing --cacert"},
  };
  jw_config_t cfg;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ck_assert_msg(parse_argv(&cfg, 0, cases[i].argv) == 2, "case %zu passed",
                  i);
    assert_err_has(cases[i].err);
  }
}
END_TEST

START_TEST(test_max_connections) {
  static const char *const bad[] = {"0", "1000001", "-1", "ten", "10 "};
  jw_config_t cfg;
  ck_assert_int_eq(PARSE(&cfg, "--max-connections=1"), 0);
  ck_assert_uint_eq(cfg.max_connections, 1);
  ck_assert_int_eq(PARSE(&cfg, "--max-connections", "1000000"), 0);
  ck_assert_uint_eq(cfg.max_connections, 1000000);
  setenv("TELEPORTD_MAX_CONNECTIONS", "77", 1);
  ck_assert_int_eq(PARSE(&cfg, "--log-level=info"), 0);
  ck_assert_uint_eq(cfg.max_connections, 77);
  ck_assert_int_eq(PARSE(&cfg, "--max-connections=5"), 0);
  ck_assert_uint_eq(cfg.max_connections, 5);
  assert_env_refused(&cfg, "TELEPORTD_MAX_CONNECTIONS", "0",
                     "--log-level=info");
  unsetenv("TELEPORTD_MAX_CONNECTIONS");
  assert_refused("max-connections", bad, sizeof(bad) / sizeof(bad[0]),
                 "want a whole number from 1 to 1000000");
}
END_TEST

START_TEST(test_log_level) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  static const jw_log_level_t levels[] = {JW_LOG_DEBUG, JW_LOG_INFO,
                                          JW_LOG_WARN, JW_LOG_ERROR};
  jw_config_t cfg;
  char arg[64];
  for (size_t i = 0; i < 4; i++) {
    snprintf(arg, sizeof(arg), "--log-level=%s", names[i]);
    ck_assert_int_eq(PARSE(&cfg, arg), 0);
    ck_assert_int_eq(cfg.log_level, levels[i]);
    setenv("TELEPORTD_LOG_LEVEL", names[i], 1);
    ck_assert_int_eq(PARSE(&cfg, "--max-jobs=1"), 0);
    ck_assert_int_eq(cfg.log_level, levels[i]);
  }
  ck_assert_int_eq(PARSE(&cfg, "--log-level=debug"), 0);
  ck_assert_int_eq(cfg.log_level, JW_LOG_DEBUG); /* env says error */
  ck_assert_int_eq(PARSE(&cfg, "--log-level=INFO"), 2);
  assert_err_has("invalid --log-level \"INFO\": want debug, info, warn or "
                 "error");
  assert_env_refused(&cfg, "TELEPORTD_LOG_LEVEL", "loud", "--max-jobs=1");
}
END_TEST

START_TEST(test_allow_isolation) {
  static const struct {
    const char *s;
    bool v;
  } ok[] = {{"true", true},   {"1", true},  {"yes", true},
            {"false", false}, {"0", false}, {"no", false}};
  jw_config_t cfg;
  char arg[64];
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    snprintf(arg, sizeof(arg), "--allow-isolation=%s", ok[i].s);
    ck_assert_int_eq(PARSE(&cfg, arg), 0);
    ck_assert(cfg.allow_isolation == ok[i].v);
    setenv("TELEPORTD_ALLOW_ISOLATION", ok[i].s, 1);
    ck_assert_int_eq(PARSE(&cfg, "--max-jobs=1"), 0);
    ck_assert(cfg.allow_isolation == ok[i].v);
  }
  setenv("TELEPORTD_ALLOW_ISOLATION", "false", 1);
  ck_assert_int_eq(PARSE(&cfg, "--allow-isolation=true"), 0);
  ck_assert(cfg.allow_isolation);
  ck_assert_int_eq(PARSE(&cfg, "--allow-isolation=maybe"), 2);
  assert_err_has("invalid --allow-isolation \"maybe\": want true or false");
  assert_env_refused(&cfg, "TELEPORTD_ALLOW_ISOLATION", "TRUE", "--max-jobs=1");
}
END_TEST

START_TEST(test_job_uid_range) {
  static const char *const bad[] = {
      "200000", "-5-10", "10-5",   "0-10",   "1-4294967295",  "1-1048577",
      "a-b",    "10-",   "10-20x", "10--20", "99999999999-1", "10-20-30"};
  jw_config_t cfg;
  ck_assert_int_eq(PARSE(&cfg, "--job-uid-range=1000-1999"), 0);
  ck_assert_uint_eq(cfg.job_uid_first, 1000);
  ck_assert_uint_eq(cfg.job_uid_last, 1999);
  ck_assert_int_eq(PARSE(&cfg, "--job-uid-range=5-5"), 0);
  ck_assert_uint_eq(cfg.job_uid_first, 5);
  ck_assert_uint_eq(cfg.job_uid_last, 5);
  ck_assert_int_eq(PARSE(&cfg, "--job-uid-range=1-1048576"), 0);
  ck_assert_uint_eq(cfg.job_uid_last, 1048576);
  setenv("TELEPORTD_JOB_UID_RANGE", "300000-300009", 1);
  ck_assert_int_eq(PARSE(&cfg, "--max-jobs=1"), 0);
  ck_assert_uint_eq(cfg.job_uid_first, 300000);
  ck_assert_uint_eq(cfg.job_uid_last, 300009);
  ck_assert_int_eq(PARSE(&cfg, "--job-uid-range=7-8"), 0);
  ck_assert_uint_eq(cfg.job_uid_first, 7);
  assert_env_refused(&cfg, "TELEPORTD_JOB_UID_RANGE", "x", "--max-jobs=1");
  unsetenv("TELEPORTD_JOB_UID_RANGE");
  assert_refused("job-uid-range", bad, sizeof(bad) / sizeof(bad[0]),
                 "want FIRST-LAST");
}
END_TEST

/* The variable of a flag: TELEPORTD_ and the flag in capitals, '-' as '_'. */
static void env_of(const char *flag, char *buf, size_t size) {
  int n = snprintf(buf, size, "TELEPORTD_%s", flag);
  ck_assert(n > 0 && (size_t)n < size);
  for (char *c = buf; *c != '\0'; c++)
    *c = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
}

/* The job limit flags: sizes, CPUs and counts, defaults and maximums. */
START_TEST(test_limit_flags) {
  /* Each flag's variable is TELEPORTD_ and its name (env_of); max-* set
   * the maximums, default-* the defaults. */
#define L(field) offsetof(jw_limits_t, field)
  static const struct {
    const char *flag, *good;
    size_t off;
    int64_t value;
    const char *bad, *want;
  } f[] = {
      {"default-memory", "512M", L(memory_bytes), 512 * MiB, "lots",
       "want a size"},
      {"max-memory", "2G", L(memory_bytes), 2 * GiB, "-1G", "want a size"},
      {"default-cpus", "0.5", L(cpu_millis), 500, "half",
       "want a number of CPUs"},
      {"max-cpus", "250m", L(cpu_millis), 250, "-2", "want a number of CPUs"},
      {"default-pids", "64", L(pids), 64, "-1", "want a whole number"},
      {"max-pids", "1000", L(pids), 1000, "10k", "want a whole number"},
      {"default-io-read", "10M", L(io_read_bps), 10 * MiB, "fast",
       "want a size"},
      {"max-io-read", "1G", L(io_read_bps), GiB, "1X", "want a size"},
      {"default-io-write", "4K", L(io_write_bps), 4 * KiB, "4KK",
       "want a size"},
      {"max-io-write", "8M", L(io_write_bps), 8 * MiB, "M", "want a size"},
  };
#undef L
  jw_config_t cfg;
  char arg[96], quoted[128], env[64];
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    bool max = strncmp(f[i].flag, "max-", 4) == 0;
    env_of(f[i].flag, env, sizeof(env));
    snprintf(arg, sizeof(arg), "--%s=%s", f[i].flag, f[i].good);
    ck_assert_msg(PARSE(&cfg, arg) == 0, "%s: %s", arg, err_out);
    jw_limits_t *l = max ? &cfg.max_limits : &cfg.default_limits;
    jw_limits_t *other = max ? &cfg.default_limits : &cfg.max_limits;
    ck_assert_int_eq(*(int64_t *)((char *)l + f[i].off), f[i].value);
    ck_assert_int_eq(*(int64_t *)((char *)other + f[i].off), 0);
    ck_assert(cfg.default_pids_set == (strcmp(f[i].flag, "default-pids") == 0));

    setenv(env, f[i].good, 1);
    ck_assert_int_eq(PARSE(&cfg, "--max-jobs=1"), 0);
    l = max ? &cfg.max_limits : &cfg.default_limits;
    ck_assert_int_eq(*(int64_t *)((char *)l + f[i].off), f[i].value);
    /* The flag wins: 0, no limit. */
    snprintf(arg, sizeof(arg), "--%s=0", f[i].flag);
    ck_assert_int_eq(PARSE(&cfg, arg), 0);
    ck_assert_int_eq(*(int64_t *)((char *)l + f[i].off), 0);

    setenv(env, f[i].bad, 1);
    ck_assert_int_eq(PARSE(&cfg, "--max-jobs=1"), 2);
    snprintf(quoted, sizeof(quoted), "invalid %s \"%s\": %s", env, f[i].bad,
             f[i].want);
    assert_err_has(quoted);
    unsetenv(env);
    snprintf(arg, sizeof(arg), "--%s=%s", f[i].flag, f[i].bad);
    ck_assert_int_eq(PARSE(&cfg, arg), 2);
    snprintf(quoted, sizeof(quoted), "invalid --%s \"%s\": %s", f[i].flag,
             f[i].bad, f[i].want);
    assert_err_has(quoted);
  }
  /* A default over its maximum is refused. */
  static const struct {
    const char *dflt, *max, *err;
  } over[] = {
      {"--default-memory=2G", "--max-memory=1G",
       "--default-memory is over --max-memory"},
      {"--default-cpus=2", "--max-cpus=1", "--default-cpus is over --max-cpus"},
      {"--default-pids=10", "--max-pids=9",
       "--default-pids is over --max-pids"},
      {"--default-io-write=2M", "--max-io-write=1M",
       "--default-io-write is over --max-io-write"},
  };
  for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
    ck_assert_msg(PARSE(&cfg, over[i].dflt, over[i].max) == 2,
                  "%s %s was accepted", over[i].dflt, over[i].max);
    assert_err_has(over[i].err);
  }
  ck_assert_int_eq(PARSE(&cfg, "--default-memory=1G", "--max-memory=1G"), 0);
}
END_TEST

START_TEST(test_usage_errors) {
  jw_config_t cfg;
  ck_assert_int_eq(PARSE(&cfg, "--no-such-flag"), 2);
  assert_err_has("unknown flag --no-such-flag");
  assert_err_has("Run 'teleportd --help' for usage.");
  ck_assert_int_eq(PARSE(&cfg, "--max-jobs"), 2);
  assert_err_has("--max-jobs needs a value");
  ck_assert_int_eq(PARSE(&cfg, "serve"), 2);
  assert_err_has("unexpected argument \"serve\"");
}
END_TEST

/* A --config file in a directory of its own; the path is in conf_path. */
static char conf_dir[64], conf_path[128];

static const char *write_conf(const char *text, mode_t mode) {
  if (conf_dir[0] == '\0') {
    snprintf(conf_dir, sizeof(conf_dir), "/tmp/test_flags.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(conf_dir));
  }
  snprintf(conf_path, sizeof(conf_path), "%s/teleportd.conf", conf_dir);
  unlink(conf_path);
  int fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  ck_assert_int_eq(fchmod(fd, mode), 0);
  ck_assert_int_eq(close(fd), 0);
  return conf_path;
}

static void remove_conf(void) {
  unlink(conf_path);
  rmdir(conf_dir);
  conf_dir[0] = '\0';
}

/* stderr names the file and line, then says what. */
static void assert_conf_err(unsigned line, const char *what) {
  char at[160];
  snprintf(at, sizeof(at), "%s:%u: ", conf_path, line);
  assert_err_has(at);
  assert_err_has(what);
}

START_TEST(test_config_file) {
  jw_config_t cfg;
  char arg[192];
  const char *path = write_conf("# teleportd on this host\n"
                                "\n"
                                "addr = 127.0.0.1:3999\n"
                                "  cacert=ca.pem\n"
                                "cert = /etc/teleportd/server.pem\r\n"
                                "key\t=\tserver key.pem  \n"
                                "max-jobs = 100\n"
                                "default-memory = 512M\n"
                                "log-level = debug\n"
                                "allow-isolation = false\n"
                                "job-uid-range = 300000-300009\n"
                                "request-timeout = 1m",
                                0644);
  snprintf(arg, sizeof(arg), "--config=%s", path);
  ck_assert_msg(PARSE_NOCERTS(&cfg, arg) == 0, "%s", err_out);
  ck_assert_str_eq(cfg.addr, "127.0.0.1:3999");
  ck_assert_str_eq(cfg.cacert, "ca.pem");
  ck_assert_str_eq(cfg.cert, "/etc/teleportd/server.pem");
  ck_assert_str_eq(cfg.key, "server key.pem");
  ck_assert_uint_eq(cfg.max_jobs, 100);
  ck_assert_int_eq(cfg.default_limits.memory_bytes, 512 * (int64_t)MiB);
  ck_assert_int_eq(cfg.log_level, JW_LOG_DEBUG);
  ck_assert(!cfg.allow_isolation);
  ck_assert_uint_eq(cfg.job_uid_first, 300000);
  ck_assert_uint_eq(cfg.job_uid_last, 300009);
  ck_assert_uint_eq(cfg.request_timeout_ms, 60000);
  /* What the file leaves out keeps its default. */
  ck_assert_uint_eq(cfg.max_jobs_per_client, 64);
  /* The variable names the file as well as the flag does. */
  setenv("TELEPORTD_CONFIG", path, 1);
  ck_assert_msg(PARSE_NOCERTS(&cfg, "--log-level=warn") == 0, "%s", err_out);
  ck_assert_uint_eq(cfg.max_jobs, 100);
  ck_assert_int_eq(cfg.log_level, JW_LOG_WARN);
  unsetenv("TELEPORTD_CONFIG");
  remove_conf();
}
END_TEST

/* Every flag of the tables is a key, parsed as the flag is. */
START_TEST(test_config_every_flag) {
  jw_config_t cfg;
  char text[256], arg[192];
  for (size_t i = 0; i < NU64; i++) {
    snprintf(text, sizeof(text), "%s = %s\n", u64_flags[i].flag,
             u64_flags[i].good);
    snprintf(arg, sizeof(arg), "--config=%s", write_conf(text, 0600));
    ck_assert_msg(PARSE(&cfg, arg) == 0, "%s: %s", text, err_out);
    ck_assert_msg(u64_at(&cfg, u64_flags[i].off) == u64_flags[i].good_value,
                  "%s parsed to %llu", text,
                  (unsigned long long)u64_at(&cfg, u64_flags[i].off));
    /* A bad value names the file, the line and the key. */
    snprintf(text, sizeof(text), "# bad\n%s = %s\n", u64_flags[i].flag,
             u64_flags[i].bad[0]);
    snprintf(arg, sizeof(arg), "--config=%s", write_conf(text, 0600));
    ck_assert_int_eq(PARSE(&cfg, arg), 2);
    snprintf(text, sizeof(text), "invalid %s \"%s\"", u64_flags[i].flag,
             u64_flags[i].bad[0]);
    assert_conf_err(2, text);
  }
  remove_conf();
}
END_TEST

/* flag > variable > file > default, setting by setting. */
START_TEST(test_config_precedence) {
  jw_config_t cfg;
  char arg[192];
  snprintf(arg, sizeof(arg), "--config=%s",
           write_conf("max-jobs = 7\nmax-args = 9\n", 0600));
  ck_assert_int_eq(PARSE(&cfg, arg), 0);
  ck_assert_uint_eq(cfg.max_jobs, 7);
  ck_assert_uint_eq(cfg.max_env, 256); /* not in the file: the default */
  setenv("TELEPORTD_MAX_JOBS", "8", 1);
  ck_assert_int_eq(PARSE(&cfg, arg), 0);
  ck_assert_uint_eq(cfg.max_jobs, 8);
  ck_assert_uint_eq(cfg.max_args, 9);
  ck_assert_int_eq(PARSE(&cfg, arg, "--max-jobs=6"), 0);
  ck_assert_uint_eq(cfg.max_jobs, 6);
  ck_assert_uint_eq(cfg.max_args, 9);
  /* The flag wins wherever it comes on the command line. */
  ck_assert_int_eq(PARSE(&cfg, "--max-jobs=5", arg), 0);
  ck_assert_uint_eq(cfg.max_jobs, 5);
  /* An empty variable counts as unset. */
  setenv("TELEPORTD_MAX_JOBS", "", 1);
  ck_assert_int_eq(PARSE(&cfg, arg), 0);
  ck_assert_uint_eq(cfg.max_jobs, 7);
  unsetenv("TELEPORTD_MAX_JOBS");
  /* The file is checked whole even where a flag wins. */
  snprintf(arg, sizeof(arg), "--config=%s", write_conf("max-jobs = x\n", 0600));
  ck_assert_int_eq(PARSE(&cfg, arg, "--max-jobs=5"), 0);
  snprintf(arg, sizeof(arg), "--config=%s", write_conf("max-jbos = 1\n", 0600));
  ck_assert_int_eq(PARSE(&cfg, arg, "--max-jobs=5"), 2);
  remove_conf();
}
END_TEST

START_TEST(test_config_refused) {
  static const struct {
    const char *text;
    unsigned line;
    const char *what;
  } cases[] = {
      {"addr = 127.0.0.1:1\nmax-jbos = 3\n", 2,
       "unknown key max-jbos (did you mean max-jobs?)"},
      {"frobnicate = 1\n", 1, "unknown key frobnicate (the keys are"},
      {"\nmax-jobs = 1\n# again\nmax-jobs = 2\n", 4,
       "max-jobs given twice (first on line 2)"},
      {"addr 127.0.0.1:1\n", 1, "want \"key = value\""},
      {"addr =\n", 1, "the key has no value"},
      {"[server]\naddr = x\n", 2, "sections are not used"},
      {"config = /etc/other.conf\n", 1, "cannot name another"},
      {"help = 1\n", 1, "unknown key help"},
      {"max-jobs = 1\nlog-level = loud\n", 2, "invalid log-level \"loud\""},
  };
  jw_config_t cfg;
  char arg[192];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(arg, sizeof(arg), "--config=%s", write_conf(cases[i].text, 0600));
    ck_assert_msg(PARSE(&cfg, arg) == 2, "accepted: %s", cases[i].text);
    assert_conf_err(cases[i].line, cases[i].what);
  }
  /* Anyone may write it: refused, naming it. */
  snprintf(arg, sizeof(arg), "--config=%s", write_conf("max-jobs = 1\n", 0666));
  ck_assert_int_eq(PARSE(&cfg, arg), 2);
  assert_err_has("refusing the configuration file");
  assert_err_has(conf_path);
  assert_err_has("anyone may write it");
  /* Group-writable is the owner's business. */
  snprintf(arg, sizeof(arg), "--config=%s", write_conf("max-jobs = 1\n", 0664));
  ck_assert_msg(PARSE(&cfg, arg) == 0, "%s", err_out);
  remove_conf();
  ck_assert_int_eq(PARSE(&cfg, "--config=/nonexistent/teleportd.conf"), 2);
  assert_err_has("cannot read the configuration file "
                 "/nonexistent/teleportd.conf: No such file or directory");
  ck_assert_int_eq(PARSE(&cfg, "--config=/tmp"), 2);
  assert_err_has("/tmp: Is a directory");
  ck_assert_int_eq(PARSE(&cfg, "--config"), 2);
  assert_err_has("--config needs a value");
}
END_TEST

START_TEST(test_help_and_version) {
  jw_config_t cfg;
  ck_assert_int_eq(PARSE_NOCERTS(&cfg, "--help"), 1);
  ck_assert_ptr_nonnull(strstr(std_out, "Usage: teleportd [FLAGS]"));
  ck_assert_str_eq(err_out, "");
  ck_assert_int_eq(PARSE_NOCERTS(&cfg, "-h"), 1);
  ck_assert_ptr_nonnull(strstr(std_out, "Usage: teleportd [FLAGS]"));
  /* Every flag and its twin are documented. */
  for (size_t i = 0; i < NU64; i++) {
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s ", u64_flags[i].flag);
    ck_assert_msg(strstr(std_out, flag) != NULL, "%s not in --help", flag);
    ck_assert_msg(strstr(std_out, u64_flags[i].env) != NULL, "%s not in --help",
                  u64_flags[i].env);
  }
  /* Each with its default, as the docs write it. */
  static const char *const shown[NU64] = {
      "512", "64",   "1G",  "100", "4M", "100", "10s", "1024",
      "256", "256K", "10G", "30s", "5m", "32",  "5m",  "10s"};
  for (size_t i = 0; i < NU64; i++) {
    const char *at = strstr(std_out, u64_flags[i].env);
    ck_assert_ptr_nonnull(at);
    const char *d = strstr(at, "default");
    ck_assert_msg(d != NULL && d - at < 80, "%s: no default in --help",
                  u64_flags[i].env);
    d += strlen("default");
    d += strspn(d, " \n");
    size_t n = strlen(shown[i]);
    ck_assert_msg(strncmp(d, shown[i], n) == 0 && d[n] == ')',
                  "--help: %s default %.8s, want %s", u64_flags[i].env, d,
                  shown[i]);
  }
  /* --config and the order of precedence. */
  ck_assert_ptr_nonnull(strstr(std_out, "--config FILE "));
  ck_assert_ptr_nonnull(strstr(std_out, "TELEPORTD_CONFIG"));
  ck_assert_ptr_nonnull(strstr(std_out,
                               "A flag wins over its variable, which wins\n"
                               "                         over FILE"));
  ck_assert_int_eq(PARSE_NOCERTS(&cfg, "--version"), 1);
  ck_assert_int_eq(strncmp(std_out, "teleportd ", 10), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("flags");
  /* Each test starts with no TELEPORTD_* variable set. */
  TCase *tc = test_tcase(s, "core", clear_env, NULL, 0);
  const TTest *const tc_tests[] = {
      test_defaults,          test_default_data_dir,  test_u64_flags,
      test_u64_flags_refused, test_string_flags,      test_missing_certificates,
      test_max_connections,   test_log_level,         test_allow_isolation,
      test_job_uid_range,     test_limit_flags,       test_usage_errors,
      test_config_file,       test_config_every_flag, test_config_precedence,
      test_config_refused,    test_help_and_version,  NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
