/*
 * Unit tests for job records (lib/worker/record.c) and the supervisor's
 * durable records: the format's round trip, every truncation and every
 * flipped byte read whole or refused, lengths that lie refused, and the
 * restore of finished, running and broken records by jw_supervisor_new.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "../../lib/common/hash.h"
#include "../../lib/worker/record.h"
#include "../../lib/worker/supervisor_int.h"
#include "../test_common.h"
#include "jobworker/supervisor.h"
#include "supervisor_harness.h"

static char tmp_root[] = "/tmp/jw-rec-XXXXXX";
static char data_dir[128];

static void setup(void) {
  ck_assert_ptr_nonnull(mkdtemp(tmp_root));
  snprintf(data_dir, sizeof(data_dir), "%s/data", tmp_root);
  ck_assert_int_eq(mkdir(data_dir, 0700), 0);
}

static void teardown(void) {
  test_rm_tree(tmp_root);
  strcpy(tmp_root, "/tmp/jw-rec-XXXXXX");
}

static const char *const sample_args[] = {"-c", "echo hi; printf '\\001'", ""};
static const char *const sample_env[] = {"A=1", "SECRET=s3"};

static void sample(jw__record_t *r) {
  memset(r, 0, sizeof(*r));
  memcpy(r->id, "0123456789abcdef0123456789abcdef", JW_ID_LEN + 1);
  r->owner = "alice";
  r->command = "/bin/sh";
  r->args = sample_args;
  r->nargs = 3;
  r->working_dir = "/tmp";
  r->env = sample_env;
  r->nenv = 2;
  r->limits.memory_bytes = 1 << 20;
  r->limits.cpu_millis = 500;
  r->limits.io_read_bps = 7;
  r->limits.io_write_bps = 8;
  r->limits.pids = 9;
  r->isolation = JW_ISOLATE_PID;
  r->uid = 1000;
  r->gid = 1001;
  r->proc.state = JW_PROC_SIGNALED;
  r->proc.pid = 4242;
  r->proc.exit_code = 0;
  r->proc.signal = 9;
  r->proc.started_at_ns = 1700000000123456789LL;
  r->proc.ended_at_ns = 1700000001123456789LL;
  r->output_bytes = 123456;
  r->output_dropped = 77;
  r->usage.cpu_usage_ns = 999;
  r->usage.memory_peak_bytes = 4096;
  r->usage.oom_killed = true;
  r->end_reason = JW_END_OOM_KILLED;
  r->cg_name = "cg-00112233445566778899aabbccddeeff";
  r->pid_start = 31337;
  r->age_seq = 5;
  r->fin_seq = 6;
  r->timeout_ms = 90000;
}

START_TEST(test_round_trip) {
  jw__record_t a, b;
  unsigned char *buf;
  size_t len;
  const char *why = NULL;

  sample(&a);
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  ck_assert_int_eq(jw__record_decode(buf, len, &b, &why), 0);
  ck_assert_str_eq(b.id, a.id);
  ck_assert_str_eq(b.owner, "alice");
  ck_assert_str_eq(b.command, "/bin/sh");
  ck_assert_uint_eq(b.nargs, 3);
  for (size_t i = 0; i < 3; i++)
    ck_assert_str_eq(b.args[i], sample_args[i]);
  ck_assert_ptr_null(b.args[3]);
  ck_assert_str_eq(b.working_dir, "/tmp");
  ck_assert_uint_eq(b.nenv, 2);
  ck_assert_str_eq(b.env[1], "SECRET=s3");
  ck_assert(memcmp(&a.limits, &b.limits, sizeof(a.limits)) == 0);
  ck_assert_uint_eq(b.isolation, JW_ISOLATE_PID);
  ck_assert_uint_eq(b.uid, 1000);
  ck_assert_uint_eq(b.gid, 1001);
  ck_assert(memcmp(&a.proc, &b.proc, sizeof(a.proc)) == 0);
  ck_assert_uint_eq(b.output_bytes, 123456);
  ck_assert_uint_eq(b.output_dropped, 77);
  ck_assert_uint_eq(b.usage.cpu_usage_ns, 999);
  ck_assert_uint_eq(b.usage.memory_peak_bytes, 4096);
  ck_assert(b.usage.oom_killed);
  ck_assert_int_eq(b.end_reason, JW_END_OOM_KILLED);
  ck_assert_str_eq(b.cg_name, a.cg_name);
  ck_assert_uint_eq(b.pid_start, 31337);
  ck_assert_uint_eq(b.age_seq, 5);
  ck_assert_uint_eq(b.fin_seq, 6);
  ck_assert_uint_eq(b.timeout_ms, 90000);
  jw__record_free(&b);
  free(buf);
}
END_TEST

START_TEST(test_encode_refuses_bad_fields) {
  jw__record_t a;
  unsigned char *buf;
  size_t len;
  sample(&a);
  a.id[3] = 'G';
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), -EINVAL);
  sample(&a);
  a.cg_name = "../../etc";
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), -EINVAL);
  sample(&a);
  a.nargs = JW__REC_MAX_ITEMS + 1;
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), -EINVAL);
}
END_TEST

/*
 * Every prefix of a record, and the record with every byte flipped, is
 * refused (the checksum and the length say so) and never read past.
 */
START_TEST(test_every_truncation_and_flip_refused) {
  jw__record_t a, b;
  unsigned char *buf, *copy;
  size_t len;

  sample(&a);
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  for (size_t cut = 0; cut < len; cut++) {
    /* An exact-size copy: ASan sees any read past its end. */
    copy = malloc(cut > 0 ? cut : 1);
    memcpy(copy, buf, cut);
    ck_assert_int_lt(jw__record_decode(copy, cut, &b, NULL), 0);
    ck_assert_ptr_null(b.mem_);
    free(copy);
  }
  copy = malloc(len);
  for (size_t i = 0; i < len; i++) {
    for (int bit = 0; bit < 8; bit++) {
      int r;
      memcpy(copy, buf, len);
      copy[i] ^= (unsigned char)(1u << bit);
      r = jw__record_decode(copy, len, &b, NULL);
      ck_assert_int_lt(r, 0);
    }
  }
  free(copy);
  free(buf);
}
END_TEST

/* Rewrites the header's length and checksum for a body of blen bytes. */
static void reseal(unsigned char *buf, size_t blen) {
  uint64_t h = jw__fnv1a64(buf + JW__REC_HDR, blen);
  for (int i = 0; i < 4; i++)
    buf[12 + i] = (unsigned char)(blen >> (8 * i));
  for (int i = 0; i < 8; i++)
    buf[16 + i] = (unsigned char)(h >> (8 * i));
}

/*
 * A body cut at every offset, or with any byte set to 0x00 or 0xff, under
 * a header that vouches for it: the decoder's own checks read it whole or
 * refuse it, within the bytes it has.
 */
START_TEST(test_resealed_bodies_read_or_refused) {
  jw__record_t a, b;
  unsigned char *buf, *copy;
  size_t len, blen;
  int ok = 0, refused = 0;

  sample(&a);
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  blen = len - JW__REC_HDR;
  for (size_t cut = 0; cut < blen; cut++) {
    copy = malloc(JW__REC_HDR + cut);
    memcpy(copy, buf, JW__REC_HDR + cut);
    reseal(copy, cut);
    ck_assert_int_eq(jw__record_decode(copy, JW__REC_HDR + cut, &b, NULL),
                     -EBADMSG);
    free(copy);
  }
  copy = malloc(len);
  for (size_t i = JW__REC_HDR; i < len; i++) {
    static const unsigned char vals[] = {0x00, 0xff, 0x7f, 0x80};
    for (size_t v = 0; v < sizeof(vals); v++) {
      int r;
      memcpy(copy, buf, len);
      copy[i] = vals[v];
      reseal(copy, blen);
      r = jw__record_decode(copy, len, &b, NULL);
      if (r == 0) {
        ok++;
        ck_assert_ptr_nonnull(b.command);
        ck_assert_uint_le(b.nargs, JW__REC_MAX_ITEMS);
        for (size_t k = 0; k < b.nargs; k++)
          ck_assert_ptr_nonnull(b.args[k]);
        jw__record_free(&b);
      } else {
        ck_assert(r == -EBADMSG || r == -EPROTONOSUPPORT);
        refused++;
      }
    }
  }
  /* Both happen: a changed letter reads, a changed length does not. */
  ck_assert_int_gt(ok, 0);
  ck_assert_int_gt(refused, 0);
  free(copy);
  free(buf);
}
END_TEST

START_TEST(test_lying_lengths_refused) {
  jw__record_t a, b;
  unsigned char *buf;
  size_t len;
  const char *why = NULL;
  /* The owner's length is the first field after the 32-byte id. */
  size_t owner_len_at = JW__REC_HDR + JW_ID_LEN;

  sample(&a);
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  buf[owner_len_at + 3] = 0x7f; /* ~2 GiB */
  reseal(buf, len - JW__REC_HDR);
  ck_assert_int_eq(jw__record_decode(buf, len, &b, &why), -EBADMSG);
  ck_assert_ptr_nonnull(why);
  free(buf);

  /* A NUL inside a string. */
  sample(&a);
  a.owner = "al";
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  buf[owner_len_at + 4 + 1] = '\0';
  reseal(buf, len - JW__REC_HDR);
  ck_assert_int_eq(jw__record_decode(buf, len, &b, NULL), -EBADMSG);
  free(buf);

  /* A newer version is told apart. */
  sample(&a);
  ck_assert_int_eq(jw__record_encode(&a, &buf, &len), 0);
  buf[8] = 2;
  ck_assert_int_eq(jw__record_decode(buf, len, &b, &why), -EPROTONOSUPPORT);
  free(buf);
}
END_TEST

static int count_suffix(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  size_t sl = strlen(suffix);
  ck_assert_ptr_nonnull(d);
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
      n++;
  }
  closedir(d);
  return n;
}

/* ---- the journal ------------------------------------------------------ */

struct seen {
  int recs, dels, bad;
  char last_id[JW_ID_LEN + 1];
  uint64_t last_bytes;
};

static void seen_rec(jw__record_t *rec, void *data) {
  struct seen *s = data;
  s->recs++;
  memcpy(s->last_id, rec->id, JW_ID_LEN + 1);
  s->last_bytes = rec->output_bytes;
  jw__record_free(rec);
}

static void seen_del(const char *id, void *data) {
  struct seen *s = data;
  (void)id;
  s->dels++;
}

static void seen_bad(uint64_t off, int err, const char *why, void *data) {
  struct seen *s = data;
  (void)off;
  ck_assert_int_lt(err, 0);
  ck_assert_ptr_nonnull(why);
  s->bad++;
}

static const jw__journal_visitor_t seen_visitor = {seen_rec, seen_del, seen_bad,
                                                   NULL};

static struct seen parse(const unsigned char *buf, size_t len) {
  struct seen s;
  jw__journal_visitor_t v = seen_visitor;
  memset(&s, 0, sizeof(s));
  v.data = &s;
  ck_assert_int_eq(jw__journal_parse(buf, len, &v), 0);
  return s;
}

/* Three records and a removal, one after the other; entry ends in ends. */
static unsigned char *sample_journal(size_t *len, size_t ends[4]) {
  jw__record_t a;
  unsigned char *buf = NULL, *one;
  size_t n = 0, l;
  sample(&a);
  for (int i = 0; i < 3; i++) {
    a.output_bytes = (uint64_t)i;
    a.id[0] = (char)('0' + i);
    ck_assert_int_eq(jw__record_encode(&a, &one, &l), 0);
    buf = realloc(buf, n + l + JW__DEL_LEN);
    memcpy(buf + n, one, l);
    free(one);
    n += l;
    ends[i] = n;
  }
  jw__record_encode_del(a.id, buf + n);
  n += JW__DEL_LEN;
  ends[3] = n;
  *len = n;
  return buf;
}

START_TEST(test_journal_parse) {
  size_t len, ends[4];
  unsigned char *buf = sample_journal(&len, ends);
  struct seen s = parse(buf, len);
  ck_assert_int_eq(s.recs, 3);
  ck_assert_int_eq(s.dels, 1);
  ck_assert_int_eq(s.bad, 0);
  ck_assert_uint_eq(s.last_bytes, 2);
  free(buf);
}
END_TEST

/*
 * The journal cut at every byte offset (a crash in the middle of an
 * append): every entry before the cut is read, the torn one is reported,
 * nothing is read past the end (an exact-size copy, under ASan).
 */
START_TEST(test_journal_every_truncation) {
  size_t len, ends[4];
  unsigned char *buf = sample_journal(&len, ends);
  for (size_t cut = 0; cut <= len; cut++) {
    unsigned char *copy = malloc(cut > 0 ? cut : 1);
    int whole = 0;
    struct seen s;
    memcpy(copy, buf, cut);
    s = parse(copy, cut);
    for (int i = 0; i < 4; i++)
      whole += ends[i] <= cut;
    ck_assert_int_eq(s.recs + s.dels, whole);
    ck_assert_int_eq(s.bad,
                     cut == 0 || (whole > 0 && ends[whole - 1] == cut) ? 0 : 1);
    free(copy);
  }
  free(buf);
}
END_TEST

/*
 * Every bit of the journal flipped in turn (a bad block): exactly the
 * entry it is in is refused, the others are read.
 */
START_TEST(test_journal_every_flip) {
  size_t len, ends[4];
  unsigned char *buf = sample_journal(&len, ends);
  unsigned char *copy = malloc(len);
  for (size_t i = 0; i < len; i++) {
    for (int bit = 0; bit < 8; bit++) {
      struct seen s;
      memcpy(copy, buf, len);
      copy[i] ^= (unsigned char)(1u << bit);
      s = parse(copy, len);
      ck_assert_int_eq(s.recs + s.dels, 3);
      ck_assert_int_ge(s.bad, 1);
    }
  }
  free(copy);
  free(buf);
}
END_TEST

START_TEST(test_pid_start) {
  ck_assert_uint_eq(jw__record_pid_start(-1), 0);
  ck_assert_uint_gt(jw__record_pid_start(getpid()), 0);
  ck_assert_uint_eq(jw__record_pid_start(getpid()),
                    jw__record_pid_start(getpid()));
}
END_TEST

/* Appends a record (or bytes) to the data directory's journal. */
static void journal_append(const void *buf, size_t len) {
  char path[256];
  int fd;
  snprintf(path, sizeof(path), "%s/%s", data_dir, JW__JOURNAL);
  fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
  close(fd);
}

static void journal_append_record(const jw__record_t *r) {
  unsigned char *buf;
  size_t len;
  ck_assert_int_eq(jw__record_encode(r, &buf, &len), 0);
  journal_append(buf, len);
  free(buf);
}

/* The journal's last record of id (in *out, to free), or 0 if none. */
struct find {
  const char *id;
  jw__record_t rec;
  int found;
  int live; /* records of distinct ids not removed since, roughly */
};

static void find_rec(jw__record_t *rec, void *data) {
  struct find *f = data;
  if (strcmp(rec->id, f->id) == 0) {
    if (f->found)
      jw__record_free(&f->rec);
    f->rec = *rec;
    f->found = 1;
    return;
  }
  jw__record_free(rec);
}

static void find_del(const char *id, void *data) {
  struct find *f = data;
  if (strcmp(id, f->id) == 0 && f->found) {
    jw__record_free(&f->rec);
    f->found = 0;
  }
}

static void find_bad(uint64_t off, int err, const char *why, void *data) {
  (void)off;
  (void)err;
  (void)why;
  (void)data;
  ck_abort_msg("the journal has a bad entry");
}

static int journal_find(const char *id, jw__record_t *out);

static const char *journal_path(void) {
  static char path[256];
  snprintf(path, sizeof(path), "%s/%s", data_dir, JW__JOURNAL);
  return path;
}

/* Reads the journal in data_dir whole and parses it through v. */
static void journal_visit(jw__journal_visitor_t *v) {
  struct stat st;
  unsigned char *buf;
  int fd = open(journal_path(), O_RDONLY);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(fstat(fd, &st), 0);
  buf = malloc((size_t)st.st_size + 1);
  ck_assert_int_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
  close(fd);
  ck_assert_int_eq(jw__journal_parse(buf, (size_t)st.st_size, v), 0);
  free(buf);
}

static int has_record(const char *id) {
  jw__record_t r;
  if (!journal_find(id, &r))
    return 0;
  jw__record_free(&r);
  return 1;
}

static int journal_find(const char *id, jw__record_t *out) {
  struct find f;
  jw__journal_visitor_t v = {find_rec, find_del, find_bad, &f};
  memset(&f, 0, sizeof(f));
  f.id = id;
  journal_visit(&v);
  if (f.found)
    *out = f.rec;
  return f.found;
}

/* ---- the supervisor's restore ------------------------------------------ */

struct env {
  uv_loop_t loop;
  jw_supervisor_t *sup;
  int done;
  int rec_errors;
  char last_error_path[256];
  int crash_ends; /* on_job_end calls with JW_END_SERVER_CRASH */
};

static void on_job_end(const jw_job_info_t *info, void *data) {
  struct env *e = data;
  if (info->end_reason == JW_END_SERVER_CRASH)
    e->crash_ends++;
}

static void on_record_error(const char *path, int err, const char *why,
                            void *data) {
  struct env *e = data;
  (void)err;
  ck_assert_ptr_nonnull(why);
  e->rec_errors++;
  snprintf(e->last_error_path, sizeof(e->last_error_path), "%s", path);
}

static uint64_t disk_cap; /* max_disk_per_owner of the next env_open */

static void env_open_opts(struct env *e, size_t max_finished) {
  jw_supervisor_options_t o;
  memset(e, 0, sizeof(*e));
  ck_assert_int_eq(uv_loop_init(&e->loop), 0);
  memset(&o, 0, sizeof(o));
  o.data_dir = data_dir;
  o.stop_grace_ms = 2000;
  o.durable = true;
  o.max_finished_per_owner = max_finished;
  o.max_disk_per_owner = disk_cap;
  o.on_record_error = on_record_error;
  o.on_job_end = on_job_end;
  o.data = e;
  ck_assert_int_eq(jw_supervisor_new(&e->loop, &o, &e->sup), 0);
}

static void env_open(struct env *e) { env_open_opts(e, 0); }

static int closed_calls;
static void on_closed(jw_supervisor_t *sup, void *data) {
  (void)sup;
  (void)data;
  closed_calls++;
}

static void env_end(struct env *e, int keep) {
  closed_calls = 0;
  jw_supervisor_close(e->sup, keep, on_closed, NULL);
  ck_assert_int_eq(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(closed_calls, 1);
  ck_assert_int_eq(uv_loop_close(&e->loop), 0);
  e->sup = NULL;
}

static jw_job_info_t wait_final(struct env *e, const char *id) {
  return test_wait_final(&e->loop, e->sup, id);
}

static void start_sh(struct env *e, const char *owner, const char *script,
                     char id[JW_ID_LEN + 1]) {
  const char *args[] = {"-c", script};
  jw_job_spec_t spec;
  memset(&spec, 0, sizeof(spec));
  spec.command = "/bin/sh";
  spec.args = args;
  spec.nargs = 2;
  ck_assert_int_eq(jw_supervisor_start(e->sup, owner, &spec, id), 0);
}

/* The job's stdout and stderr, apart, via temporary files. */
static void output_of(struct env *e, const char *id, char *out, size_t *nout,
                      char *err, size_t *nerr) {
  char po[256], pe[256];
  int fo, fe;
  snprintf(po, sizeof(po), "%s/out", tmp_root);
  snprintf(pe, sizeof(pe), "%s/err", tmp_root);
  fo = open(po, O_RDWR | O_CREAT | O_TRUNC, 0600);
  fe = open(pe, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(jw__supervisor_get_output(e->sup, id, NULL, fo, fe), 0);
  *nout = (size_t)pread(fo, out, *nout, 0);
  *nerr = (size_t)pread(fe, err, *nerr, 0);
  close(fo);
  close(fe);
}

START_TEST(test_restart_keeps_finished_jobs) {
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], id3[JW_ID_LEN + 1];
  char out[256], err[256];
  size_t no = sizeof(out), ne = sizeof(err);
  jw_job_info_t a, b;

  env_open(&e);
  start_sh(&e, "alice", "printf 'a\\000b\\377'; printf 'E\\001' >&2; exit 3",
           id1);
  a = wait_final(&e, id1);
  start_sh(&e, "bob", "kill -9 $$", id2);
  wait_final(&e, id2);
  start_sh(&e, "alice", "echo third", id3);
  wait_final(&e, id3);
  ck_assert_int_eq(a.end_reason, JW_END_EXITED);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &b), 0);
  ck_assert_int_eq(b.end_reason, JW_END_SIGNALED);
  env_end(&e, 1);

  env_open(&e);
  ck_assert_int_eq(e.rec_errors, 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, "bob", &b), JW_EOWNER);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, "alice", &b), 0);
  ck_assert_str_eq(b.owner, "alice");
  ck_assert_str_eq(b.command, "/bin/sh");
  ck_assert_uint_eq(b.nargs, 2);
  ck_assert_int_eq(b.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(b.proc.exit_code, 3);
  ck_assert_int_eq(b.proc.pid, a.proc.pid);
  ck_assert_int_eq(b.proc.started_at_ns, a.proc.started_at_ns);
  ck_assert_int_eq(b.proc.ended_at_ns, a.proc.ended_at_ns);
  ck_assert_int_eq(b.end_reason, JW_END_EXITED);
  ck_assert_uint_eq(b.output_bytes, 6);
  output_of(&e, id1, out, &no, err, &ne);
  ck_assert_uint_eq(no, 4);
  ck_assert(memcmp(out, "a\0b\377", 4) == 0);
  ck_assert_uint_eq(ne, 2);
  ck_assert(memcmp(err, "E\001", 2) == 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &b), 0);
  ck_assert_int_eq(b.proc.state, JW_PROC_SIGNALED);
  ck_assert_int_eq(b.proc.signal, SIGKILL);
  ck_assert_int_eq(b.end_reason, JW_END_SIGNALED);
  /* Oldest first, as before. */
  ck_assert_uint_eq(jw_supervisor_list(e.sup, "alice", NULL, NULL), 2);
  ck_assert_uint_eq(jw_supervisor_list(e.sup, NULL, NULL, NULL), 3);
  {
    jw__list_t *n = jw__list_first(&e.sup->table.jobs);
    ck_assert_str_eq(job_of(jw__jobent_of_age(n))->e.id, id1);
  }
  /* A job started now is younger than all of them, and its own. */
  start_sh(&e, "alice", "true", id2);
  wait_final(&e, id2);
  {
    jw__list_t *n = e.sup->table.jobs.prev;
    ck_assert_str_eq(job_of(jw__jobent_of_age(n))->e.id, id2);
  }
  /* Without keep_logs the records go with the logs. */
  env_end(&e, 0);
  ck_assert_int_ne(access(journal_path(), F_OK), 0);
  ck_assert_int_eq(count_suffix(data_dir, ".log"), 0);
}
END_TEST

/*
 * The flush fsyncs only logs that hold a byte, so a job that printed
 * nothing may lose its (empty) log file with the power. Its record still
 * counts: after the restart it is found, final, with no output, and the
 * log is made again; a job that printed keeps its bytes.
 */
START_TEST(test_lost_empty_log_restored_empty) {
  struct env e;
  char quiet[JW_ID_LEN + 1], loud[JW_ID_LEN + 1], p[256];
  char out[64], err[64];
  size_t no = sizeof(out), ne = sizeof(err);
  jw_job_info_t a, b;

  env_open(&e);
  start_sh(&e, "alice", "exit 4", quiet);
  a = wait_final(&e, quiet);
  start_sh(&e, "alice", "printf kept", loud);
  wait_final(&e, loud);
  env_end(&e, 1);

  snprintf(p, sizeof(p), "%s/%s.log", data_dir, quiet);
  ck_assert_int_eq(unlink(p), 0);
  env_open(&e);
  ck_assert_int_eq(e.rec_errors, 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, quiet, "alice", &b), 0);
  ck_assert_int_eq(b.proc.state, JW_PROC_EXITED);
  ck_assert_int_eq(b.proc.exit_code, 4);
  ck_assert_int_eq(b.proc.ended_at_ns, a.proc.ended_at_ns);
  ck_assert_uint_eq(b.output_bytes, 0);
  output_of(&e, quiet, out, &no, err, &ne);
  ck_assert_uint_eq(no, 0);
  ck_assert_uint_eq(ne, 0);
  ck_assert_int_eq(access(p, F_OK), 0);
  no = sizeof(out);
  ne = sizeof(err);
  output_of(&e, loud, out, &no, err, &ne);
  ck_assert_uint_eq(no, 4);
  ck_assert(memcmp(out, "kept", 4) == 0);
  ck_assert_uint_eq(ne, 0);
  env_end(&e, 0);
}
END_TEST

START_TEST(test_retention_order_and_eviction_across_restarts) {
  struct env e;
  char ids[4][JW_ID_LEN + 1];
  jw_job_info_t info;

  env_open(&e);
  for (int i = 0; i < 3; i++) {
    start_sh(&e, "o", "true", ids[i]);
    wait_final(&e, ids[i]);
  }
  env_end(&e, 1);
  for (int i = 0; i < 3; i++)
    ck_assert(has_record(ids[i]));
  /* A tighter retention at the next start keeps the two that ended last. */
  env_open_opts(&e, 2);
  ck_assert_int_eq(jw_supervisor_status(e.sup, ids[0], NULL, &info),
                   JW_ENOTFOUND);
  ck_assert(!has_record(ids[0]));
  ck_assert_int_eq(count_suffix(data_dir, ".log"), 2);
  start_sh(&e, "o", "true", ids[3]);
  wait_final(&e, ids[3]);
  /* The one that finished first of the restored ones went. */
  ck_assert_int_eq(jw_supervisor_status(e.sup, ids[1], NULL, &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup, ids[2], NULL, &info), 0);
  ck_assert(!has_record(ids[1]));
  ck_assert(has_record(ids[2]) && has_record(ids[3]));
  ck_assert_int_eq(count_suffix(data_dir, ".log"), 2);
  env_end(&e, 1);
}
END_TEST

static void on_done(jw_supervisor_t *sup, void *data) {
  (void)sup;
  ((struct env *)data)->done = 1;
}

/*
 * A started job's record gets its pid at the next flush (at most 100 ms
 * on), and its start time, so that a crash finds the job's own process;
 * the Start itself reads nothing of /proc for it.
 */
static int all_flushed(void *arg) {
  jw_supervisor_t *sup = arg;
  return !sup->jdirty && !sup->flush_busy && jw__list_empty(&sup->stale);
}

START_TEST(test_pid_recorded_at_next_flush) {
  struct env e;
  char id[JW_ID_LEN + 1];
  jw_job_info_t info;
  jw__record_t r;

  env_open(&e);
  start_sh(&e, "o", "exec sleep 100", id);
  ck_assert(journal_find(id, &r));
  ck_assert_int_eq(r.proc.state, JW_PROC_RUNNING);
  ck_assert_int_eq(r.proc.pid, 0);
  ck_assert_str_eq(r.cg_name, "");
  jw__record_free(&r);
  /* The start time is read for that record, not by the Start. */
  ck_assert_uint_eq(job_of(jw__jobtable_find(&e.sup->table, id))->pid_start, 0);
  /* Written, not yet fsynced: that waits for the flush timer. */
  ck_assert(e.sup->jdirty);
  ck_assert(uv_is_active((uv_handle_t *)&e.sup->flush_timer));
  ck_assert(test_run_until(&e.loop, all_flushed, e.sup, 20000));
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  ck_assert(journal_find(id, &r));
  ck_assert_int_eq(r.proc.state, JW_PROC_RUNNING);
  ck_assert_int_eq(r.proc.pid, info.proc.pid);
  ck_assert_uint_eq(r.pid_start, jw__record_pid_start(info.proc.pid));
  ck_assert_uint_gt(r.pid_start, 0);
  jw__record_free(&r);
  /* Nothing more is due: the timer runs only while there is. */
  ck_assert(!uv_is_active((uv_handle_t *)&e.sup->flush_timer));
  env_end(&e, 1);
}
END_TEST

static void count_rec(jw__record_t *rec, void *data) {
  (*(int *)data)++;
  jw__record_free(rec);
}
static void count_del(const char *id, void *data) {
  (void)id;
  (*(int *)data)++;
}

/* Entries in the journal now. */
static int journal_entries(void) {
  int n = 0;
  jw__journal_visitor_t v = {count_rec, count_del, find_bad, &n};
  journal_visit(&v);
  return n;
}

/*
 * Replaced entries do not pile up: once they are most of the journal it
 * is rewritten with the current records, which a restart still reads.
 */
START_TEST(test_journal_compacted_while_running) {
  struct env e;
  char ids[8][JW_ID_LEN + 1];
  jw_job_info_t info;

  env_open_opts(&e, 2);
  e.sup->compact_min = 1;
  for (int i = 0; i < 8; i++) {
    start_sh(&e, "o", "echo x", ids[i]);
    wait_final(&e, ids[i]);
  }
  /* 8 jobs, 3 entries each and 6 removals without the rewrites. */
  ck_assert_int_le(journal_entries(), 8);
  env_end(&e, 1);
  env_open(&e);
  for (int i = 0; i < 8; i++)
    ck_assert_int_eq(jw_supervisor_status(e.sup, ids[i], NULL, &info),
                     i < 6 ? JW_ENOTFOUND : 0);
  ck_assert_int_eq(journal_entries(), 2);
  ck_assert_int_eq(count_suffix(data_dir, ".log"), 2);
  env_end(&e, 1);
}
END_TEST

/*
 * The disk cap counts the logs of restored jobs: a new job's output makes
 * room by removing the restored job that finished first, record and log.
 */
START_TEST(test_disk_cap_counts_restored_jobs) {
  struct env e;
  char old1[JW_ID_LEN + 1], old2[JW_ID_LEN + 1], id[JW_ID_LEN + 1];
  jw_job_info_t info;

  env_open(&e);
  start_sh(&e, "o", "head -c 3000 /dev/zero", old1);
  wait_final(&e, old1);
  start_sh(&e, "o", "head -c 3000 /dev/zero", old2);
  wait_final(&e, old2);
  env_end(&e, 1);
  /* Room for about three such logs: the fourth's output needs one gone. */
  disk_cap = 9500;
  env_open(&e);
  disk_cap = 0;
  start_sh(&e, "o", "head -c 3000 /dev/zero; sleep 0.2; head -c 3000 /dev/zero",
           id);
  info = wait_final(&e, id);
  ck_assert_uint_eq(info.output_bytes, 6000);
  ck_assert_uint_eq(info.output_dropped, 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, old1, NULL, &info),
                   JW_ENOTFOUND);
  ck_assert_int_eq(jw_supervisor_status(e.sup, old2, NULL, &info), 0);
  ck_assert(!has_record(old1));
  ck_assert_int_eq(count_suffix(data_dir, ".log"), 2);
  env_end(&e, 1);
}
END_TEST

/*
 * A log reopened after a crash is cut back to its last whole record and
 * goes on as a log written here: appends after it, readers see it all.
 */
START_TEST(test_outlog_reopen_cuts_and_appends) {
  static const unsigned char torn[] = {0, 2, 0, 0, 0, 'h', 'i', 1, 9, 0};
  char path[256], buf[64];
  jw_outlog_t *log;
  jw_outlog_reader_t *r;
  jw_stream_t st;
  uint64_t cut = 0;
  int fd;

  snprintf(path, sizeof(path), "%s/x.log", tmp_root);
  ck_assert_int_eq(jw_outlog_reopen(path, &log, NULL), -ENOENT);
  fd = open(path, O_WRONLY | O_CREAT, 0600);
  ck_assert_int_eq(write(fd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
  close(fd);
  ck_assert_int_eq(jw_outlog_reopen(path, &log, &cut), 0);
  ck_assert_uint_eq(cut, 3);
  ck_assert_uint_eq(jw_outlog_bytes(log), 2);
  ck_assert_uint_eq(jw_outlog_disk_bytes(log), 7);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "err", 3), 0);
  jw_outlog_finish(log);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &st), 2);
  ck_assert(st == JW_STDOUT && memcmp(buf, "hi", 2) == 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &st), 3);
  ck_assert(st == JW_STDERR && memcmp(buf, "err", 3) == 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &st), 0);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
  ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

static int stopped;
static void on_stopped(jw_stop_req_t *req, int err, const jw_job_info_t *info) {
  (void)req;
  ck_assert_int_eq(err, 0);
  ck_assert_int_eq(info->end_reason, JW_END_STOPPED);
  stopped = 1;
}

START_TEST(test_shutdown_and_stop_reasons) {
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1];
  jw_job_info_t info;
  jw_stop_req_t req;

  env_open(&e);
  start_sh(&e, "o", "exec sleep 100", id1);
  start_sh(&e, "o", "exec sleep 100", id2);
  memset(&req, 0, sizeof(req));
  ck_assert_int_eq(jw_supervisor_stop(e.sup, &req, id1, NULL, on_stopped), 0);
  wait_final(&e, id1);
  ck_assert(test_run_until(&e.loop, test_flag_set, &stopped, 20000));
  ck_assert_int_eq(jw_supervisor_shutdown(e.sup, on_done, &e), 0);
  ck_assert(test_run_until(&e.loop, test_flag_set, &e.done, 20000));
  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, NULL, &info), 0);
  ck_assert_int_eq(info.end_reason, JW_END_STOPPED);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_SHUTDOWN);
  env_end(&e, 1);
  env_open(&e);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_SHUTDOWN);
  ck_assert_str_eq(jw_end_reason_name(info.end_reason), "server_shutdown");
  env_end(&e, 1);
}
END_TEST

/* A process of its own group that the test forks, as a job's would be. */
static pid_t fork_sleeper(void) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sleep", "sleep", "100", (char *)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

/* Writes a RUNNING record for pid (pid_start as given) and a torn log. */
static void crashed_job(const char *id, pid_t pid, uint64_t pid_start) {
  jw__record_t r;
  char path[256];
  /* Two whole records ("out", "err") and half of a third. */
  static const unsigned char log[] = {0, 3, 0, 0, 0, 'o', 'u', 't',
                                      1, 3, 0, 0, 0, 'e', 'r', 'r',
                                      0, 9, 0, 0, 0, 'x'};
  int fd;
  memset(&r, 0, sizeof(r));
  memcpy(r.id, id, JW_ID_LEN + 1);
  r.owner = "carol";
  r.command = "sleep";
  r.working_dir = "";
  r.cg_name = "";
  r.proc.state = JW_PROC_RUNNING;
  r.proc.pid = pid;
  r.proc.started_at_ns = 1;
  r.pid_start = pid_start;
  r.age_seq = 1;
  journal_append_record(&r);
  snprintf(path, sizeof(path), "%s/%s.log", data_dir, id);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_eq(write(fd, log, sizeof(log)), (ssize_t)sizeof(log));
  close(fd);
}

static int reaped(pid_t pid, int *status) {
  for (int i = 0; i < 500; i++) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
      return 1;
    usleep(10000);
  }
  return 0;
}

START_TEST(test_crashed_job_killed_and_final) {
  static const char id[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  static const char id2[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
  struct env e;
  jw_job_info_t info;
  char out[64], err[64];
  size_t no = sizeof(out), ne = sizeof(err);
  pid_t pid = fork_sleeper(), other = fork_sleeper();
  int status;
  struct stat st;
  char path[256];

  /* Wait until the child is sleep, so its start time is what we record. */
  usleep(100000);
  crashed_job(id, pid, jw__record_pid_start(pid));
  /* A record whose pid was given to another process since: not killed. */
  crashed_job(id2, other, jw__record_pid_start(other) + 1);
  env_open(&e);
  ck_assert(reaped(pid, &status));
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ck_assert_int_eq(waitpid(other, &status, WNOHANG), 0);
  /* Both ended as crashed jobs, each told to on_job_end once. */
  ck_assert_int_eq(e.crash_ends, 2);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, "carol", &info), 0);
  ck_assert_int_eq(info.proc.state, JW_PROC_STOPPED);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_CRASH);
  ck_assert_int_gt(info.proc.ended_at_ns, 0);
  ck_assert_uint_eq(jw_supervisor_running(e.sup), 0);
  /* Its output up to the crash, without the torn record. */
  ck_assert_uint_eq(info.output_bytes, 6);
  output_of(&e, id, out, &no, err, &ne);
  ck_assert_uint_eq(no, 3);
  ck_assert(memcmp(out, "out", 3) == 0);
  ck_assert_uint_eq(ne, 3);
  ck_assert(memcmp(err, "err", 3) == 0);
  snprintf(path, sizeof(path), "%s/%s.log", data_dir, id);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq(st.st_size, 16);
  env_end(&e, 1);
  kill(other, SIGKILL);
  ck_assert(reaped(other, &status));
  /* Final on disk too: the next start kills nothing and says the same. */
  env_open(&e);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id, NULL, &info), 0);
  ck_assert_int_eq(info.end_reason, JW_END_SERVER_CRASH);
  env_end(&e, 1);
}
END_TEST

/*
 * A damaged stretch in the middle of the journal (a bad block) and a torn
 * tail: both reported with the journal's name, the jobs around them
 * restored, and the journal rewritten whole.
 */
START_TEST(test_broken_journal_reported_others_restored) {
  struct env e;
  char id1[JW_ID_LEN + 1], id2[JW_ID_LEN + 1], tmp[512];
  jw_job_info_t info;
  int fd;

  env_open(&e);
  start_sh(&e, "o", "echo one", id1);
  wait_final(&e, id1);
  env_end(&e, 1);
  journal_append("JWJOBREC\1\0\0\0garbage", 19);
  env_open(&e);
  start_sh(&e, "o", "echo two", id2);
  wait_final(&e, id2);
  ck_assert_int_eq(e.rec_errors, 1);
  ck_assert_ptr_nonnull(strstr(e.last_error_path, JW__JOURNAL));
  env_end(&e, 1);
  /* A tail cut in the middle of an entry, and a rewrite's leftover. */
  journal_append("JWJOBREC\1\0\0\0\100\0\0\0", 16);
  snprintf(tmp, sizeof(tmp), "%s/%s", data_dir, JW__JOURNAL_TMP);
  fd = open(tmp, O_WRONLY | O_CREAT, 0600);
  close(fd);
  env_open(&e);
  ck_assert_int_eq(e.rec_errors, 1);
  ck_assert_ptr_nonnull(strstr(e.last_error_path, JW__JOURNAL));
  ck_assert_int_eq(jw_supervisor_status(e.sup, id1, NULL, &info), 0);
  ck_assert_int_eq(jw_supervisor_status(e.sup, id2, NULL, &info), 0);
  ck_assert_int_ne(access(tmp, F_OK), 0);
  env_end(&e, 1);
  /* Rewritten at that start: nothing bad is left in it. */
  ck_assert(has_record(id1) && has_record(id2));
}
END_TEST

START_TEST(test_env_kept_only_with_keep_env) {
  struct env e;
  char id[JW_ID_LEN + 1];
  const char *argv[] = {"/bin/sh", "-c", "true", NULL};
  const char *envv[] = {"TOKEN=hunter2"};
  jw_job_spec_t spec;
  jw__record_t r;

  env_open(&e);
  memset(&spec, 0, sizeof(spec));
  TEST_SET_COMMAND(&spec, argv, envv, 1, "/tmp");
  ck_assert_int_eq(jw_supervisor_start(e.sup, "o", &spec, id), 0);
  wait_final(&e, id);
  ck_assert(journal_find(id, &r));
  ck_assert_uint_eq(r.nenv, 0);
  ck_assert_str_eq(r.working_dir, "/tmp");
  jw__record_free(&r);
  e.sup->keep_env = 1;
  ck_assert_int_eq(jw_supervisor_start(e.sup, "o", &spec, id), 0);
  wait_final(&e, id);
  ck_assert(journal_find(id, &r));
  ck_assert_uint_eq(r.nenv, 1);
  ck_assert_str_eq(r.env[0], "TOKEN=hunter2");
  jw__record_free(&r);
  env_end(&e, 1);
}
END_TEST

int main(void) {
  const TTest *const tests[] = {
      test_round_trip,
      test_encode_refuses_bad_fields,
      test_every_truncation_and_flip_refused,
      test_resealed_bodies_read_or_refused,
      test_lying_lengths_refused,
      test_journal_parse,
      test_journal_every_truncation,
      test_journal_every_flip,
      test_pid_start,
      test_restart_keeps_finished_jobs,
      test_lost_empty_log_restored_empty,
      test_retention_order_and_eviction_across_restarts,
      test_shutdown_and_stop_reasons,
      test_pid_recorded_at_next_flush,
      test_journal_compacted_while_running,
      test_disk_cap_counts_restored_jobs,
      test_outlog_reopen_cuts_and_appends,
      test_crashed_job_killed_and_final,
      test_broken_journal_reported_others_restored,
      test_env_kept_only_with_keep_env,
      NULL};
  return test_run_list("record", setup, teardown, 120, tests);
}
