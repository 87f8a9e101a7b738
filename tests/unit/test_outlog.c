/*
 * Unit tests for jw_outlog: the record format, byte-exact reads, stream
 * coalescing, JW_EAGAIN and notification, closing readers and the log from
 * callbacks, the lifetime of a closed log with readers, and every
 * allocation failing in turn.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/worker/outlog_index_int.h"
#include "../../lib/worker/outlog_int.h"
#include "../failmalloc.h"
#include "../test_common.h"
#include "jobworker/error.h"
#include "jobworker/outlog.h"

static char dir[] = "/tmp/jw-outlog-XXXXXX";
static char path[64];

static void setup(void) {
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/log", dir);
}

static void teardown(void) {
  unlink(path);
  rmdir(dir);
  strcpy(dir, "/tmp/jw-outlog-XXXXXX");
}

static jw_outlog_t *new_log(void) {
  jw_outlog_t *log = NULL;
  ck_assert_int_eq(jw_outlog_create(path, &log), 0);
  ck_assert_ptr_nonnull(log);
  return log;
}

START_TEST(test_create_exclusive) {
  jw_outlog_t *log = new_log();
  jw_outlog_t *again = NULL;
  struct stat st;
  ck_assert_int_eq(jw_outlog_create(path, &again), -EEXIST);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_uint_eq(st.st_mode & 0777, 0600);
  jw_outlog_close(log, 1);
  ck_assert_int_eq(stat(path, &st), -1);
}
END_TEST

START_TEST(test_record_format) {
  jw_outlog_t *log = new_log();
  unsigned char buf[64];
  int fd;
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "ab", 2), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "xyz", 3), 0);
  ck_assert_uint_eq(jw_outlog_bytes(log), 5);
  jw_outlog_close(log, 0);
  fd = open(path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(read(fd, buf, sizeof(buf)), 15);
  close(fd);
  ck_assert(memcmp(buf, "\0\2\0\0\0ab\1\3\0\0\0xyz", 15) == 0);
}
END_TEST

/*
 * What the log says it takes on disk is what its file takes, headers
 * included (the per-client disk cap counts it); a drop the caller counts
 * reaches the readers.
 */
START_TEST(test_disk_bytes_and_drop) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r = NULL;
  struct stat st;
  ck_assert_uint_eq(jw_outlog_disk_bytes(log), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "ab", 2), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "xyz", 3), 0);
  ck_assert_uint_eq(jw_outlog_disk_bytes(log), 5 + 2 * JW_OUTLOG_RECORD_HDR);
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_uint_eq((uint64_t)st.st_size, jw_outlog_disk_bytes(log));
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  jw_outlog_drop(log, 1000);
  ck_assert_uint_eq(jw_outlog_dropped(log), 1000);
  ck_assert_uint_eq(jw_outlog_reader_dropped(r), 1000);
  ck_assert_uint_eq(jw_outlog_bytes(log), 5);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
}
END_TEST

START_TEST(test_binary_roundtrip_and_coalescing) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char data[10000], got[20000];
  ssize_t n;
  size_t i;
  for (i = 0; i < sizeof(data); i++)
    data[i] = (char)(i * 7 + (i >> 8));
  data[0] = '\0';
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  /* Three stdout records then one stderr record. */
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, data, 100), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, data + 100, 900), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, data + 1000, 9000), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "e", 1), 0);
  /* A small read takes part of a record. */
  n = jw_outlog_read(r, got, 50, &s);
  ck_assert_int_eq(n, 50);
  ck_assert_int_eq(s, JW_STDOUT);
  /* A big read coalesces the rest of stdout and stops at the stream change. */
  n = jw_outlog_read(r, got + 50, sizeof(got) - 50, &s);
  ck_assert_int_eq(n, 9950);
  ck_assert_int_eq(s, JW_STDOUT);
  ck_assert(memcmp(got, data, sizeof(data)) == 0);
  ck_assert_uint_eq(jw__outlog_reader_offset(r), 10000);
  n = jw_outlog_read(r, got, sizeof(got), &s);
  ck_assert_int_eq(n, 1);
  ck_assert_int_eq(s, JW_STDERR);
  ck_assert_int_eq(got[0], 'e');
  ck_assert_int_eq(jw_outlog_read(r, got, sizeof(got), &s), JW_EAGAIN);
  jw_outlog_finish(log);
  ck_assert_int_eq(jw_outlog_read(r, got, sizeof(got), &s), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "x", 1), JW_ECLOSED);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * A notify callback's context: it counts the calls and, as asked, closes
 * the other reader, the log (when log is set) and its own reader, in that
 * order.
 */
struct notified {
  int calls;
  jw_outlog_reader_t *self;
  jw_outlog_reader_t *other;
  jw_outlog_t *log;
  int close_self;
  int close_other;
};

static void on_notify(jw_outlog_reader_t *r, void *data) {
  struct notified *c = data;
  c->calls++;
  ck_assert_ptr_eq(r, c->self);
  if (c->close_other && c->other != NULL) {
    jw_outlog_reader_close(c->other);
    c->other = NULL;
  }
  if (c->log != NULL) {
    jw_outlog_close(c->log, 1);
    c->log = NULL;
  }
  if (c->close_self) {
    jw_outlog_reader_close(r);
    c->self = NULL;
  }
}

START_TEST(test_notify_once_per_eagain) {
  jw_outlog_t *log = new_log();
  struct notified c = {0};
  jw_stream_t s;
  char buf[16];
  ck_assert_int_eq(jw_outlog_reader_open(log, on_notify, &c, &c.self), 0);
  /* No JW_EAGAIN yet: appends do not notify. */
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "a", 1), 0);
  ck_assert_int_eq(c.calls, 0);
  ck_assert_int_eq(jw_outlog_read(c.self, buf, sizeof(buf), &s), 1);
  ck_assert_int_eq(jw_outlog_read(c.self, buf, sizeof(buf), &s), JW_EAGAIN);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "b", 1), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "c", 1), 0);
  ck_assert_int_eq(c.calls, 1);
  ck_assert_int_eq(jw_outlog_read(c.self, buf, sizeof(buf), &s), 2);
  ck_assert_int_eq(jw_outlog_read(c.self, buf, sizeof(buf), &s), JW_EAGAIN);
  /* The end is news too. */
  jw_outlog_finish(log);
  ck_assert_int_eq(c.calls, 2);
  ck_assert_int_eq(jw_outlog_read(c.self, buf, sizeof(buf), &s), 0);
  jw_outlog_reader_close(c.self);
  jw_outlog_close(log, 1);
}
END_TEST

START_TEST(test_close_from_notify) {
  jw_outlog_t *log = new_log();
  struct notified a = {0}, b = {0}, d = {0};
  jw_stream_t s;
  char buf[16];
  ck_assert_int_eq(jw_outlog_reader_open(log, on_notify, &a, &a.self), 0);
  ck_assert_int_eq(jw_outlog_reader_open(log, on_notify, &b, &b.self), 0);
  ck_assert_int_eq(jw_outlog_reader_open(log, on_notify, &d, &d.self), 0);
  ck_assert_int_eq(jw_outlog_read(a.self, buf, sizeof(buf), &s), JW_EAGAIN);
  ck_assert_int_eq(jw_outlog_read(b.self, buf, sizeof(buf), &s), JW_EAGAIN);
  ck_assert_int_eq(jw_outlog_read(d.self, buf, sizeof(buf), &s), JW_EAGAIN);
  /* a closes itself and b (which is waiting too); d must still be told. */
  a.close_self = 1;
  a.close_other = 1;
  a.other = b.self;
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "z", 1), 0);
  ck_assert_int_eq(a.calls, 1);
  ck_assert_int_eq(b.calls, 0);
  ck_assert_int_eq(d.calls, 1);
  ck_assert_int_eq(jw_outlog_read(d.self, buf, sizeof(buf), &s), 1);
  ck_assert_int_eq(s, JW_STDERR);
  jw_outlog_reader_close(d.self);
  jw_outlog_close(log, 1);
}
END_TEST

START_TEST(test_late_reader_replays) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char buf[8];
  int i;
  for (i = 0; i < 100; i++)
    ck_assert_int_eq(
        jw_outlog_append(log, i % 2 ? JW_STDERR : JW_STDOUT, "0123456789", 10),
        0);
  jw_outlog_finish(log);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  for (i = 0; i < 100; i++) {
    ck_assert_int_eq(jw_outlog_read(r, buf, 8, &s), 8);
    ck_assert_int_eq(s, i % 2 ? JW_STDERR : JW_STDOUT);
    ck_assert_int_eq(jw_outlog_read(r, buf, 8, &s), 2);
    ck_assert_int_eq(s, i % 2 ? JW_STDERR : JW_STDOUT);
    ck_assert(memcmp(buf, "89", 2) == 0);
  }
  ck_assert_int_eq(jw_outlog_read(r, buf, 8, &s), 0);
  ck_assert_uint_eq(jw__outlog_reader_offset(r), 1000);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * A log closed under an open reader lives on for it: the reader reads to
 * the end (the close ends the log), then the log goes with the reader
 * (LSan fails the test if it does not). The file's name goes at once.
 */
START_TEST(test_reader_outlives_log) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char buf[8];
  struct stat st;
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "abc", 3), 0);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  jw_outlog_drop(log, 7);
  jw_outlog_close(log, 1);
  ck_assert_int_eq(stat(path, &st), -1);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 3);
  ck_assert(memcmp(buf, "abc", 3) == 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 0);
  ck_assert_uint_eq(jw_outlog_reader_dropped(r), 7);
  jw_outlog_reader_close(r);
}
END_TEST

START_TEST(test_log_close_from_notify) {
  struct notified a = {0}, b = {0};
  jw_stream_t s;
  char buf[8];
  /* The log and its only reader closed in the callback: both go after. */
  a.log = new_log();
  a.close_self = 1;
  ck_assert_int_eq(jw_outlog_reader_open(a.log, on_notify, &a, &a.self), 0);
  ck_assert_int_eq(jw_outlog_read(a.self, buf, sizeof(buf), &s), JW_EAGAIN);
  ck_assert_int_eq(jw_outlog_append(a.log, JW_STDOUT, "x", 1), 0);
  ck_assert_int_eq(a.calls, 1);
  ck_assert_ptr_null(a.self);
  /* The log closed in the callback, the reader kept: it reads on. */
  unlink(path);
  b.log = new_log();
  ck_assert_int_eq(jw_outlog_reader_open(b.log, on_notify, &b, &b.self), 0);
  ck_assert_int_eq(jw_outlog_read(b.self, buf, sizeof(buf), &s), JW_EAGAIN);
  ck_assert_int_eq(jw_outlog_append(b.log, JW_STDERR, "yz", 2), 0);
  ck_assert_int_eq(b.calls, 1);
  ck_assert_int_eq(jw_outlog_read(b.self, buf, sizeof(buf), &s), 2);
  ck_assert_int_eq(s, JW_STDERR);
  ck_assert_int_eq(jw_outlog_read(b.self, buf, sizeof(buf), &s), 0);
  jw_outlog_reader_close(b.self);
}
END_TEST

/* A second close of a log that still lives for a reader is caught. */
START_TEST(test_close_twice_aborts) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  jw_outlog_close(log, 1);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * A finished log without readers holds no descriptor; a reader opens one
 * again and gives it back when it closes.
 */
START_TEST(test_finished_log_releases_fd) {
  jw_outlog_t *log;
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char buf[8];
  int base = test_count_fds();
  log = new_log();
  ck_assert_int_eq(test_count_fds(), base + 1);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "abc", 3), 0);
  jw_outlog_finish(log);
  ck_assert_int_eq(test_count_fds(), base);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  ck_assert_int_eq(test_count_fds(), base + 1);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 3);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 0);
  jw_outlog_reader_close(r);
  ck_assert_int_eq(test_count_fds(), base);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * Every allocation of create, append, reader_open and read failing in turn
 * (nghttp2's failmalloc_test): each call fails with -ENOMEM and changes
 * nothing, and nothing leaks (LSan checks at the end of the test).
 */
START_TEST(test_failmalloc) {
  size_t n;
  int injected = 1;
  for (n = 0; injected && n < 100; n++) {
    jw_outlog_t *log = NULL;
    jw_outlog_reader_t *r = NULL;
    jw_stream_t s;
    char buf[8];
    int err;
    failmalloc_arm(n);
    err = jw_outlog_create(path, &log);
    if (err == 0)
      err = jw_outlog_append(log, JW_STDOUT, "abc", 3);
    if (err == 0)
      err = jw_outlog_reader_open(log, NULL, NULL, &r);
    injected = n < failmalloc_disarm();
    if (!injected)
      ck_assert_int_eq(err, 0);
    else
      ck_assert_int_eq(err, -ENOMEM);
    if (log != NULL) {
      /* What did go is complete: the reader gets every byte. */
      if (r != NULL) {
        ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 3);
        jw_outlog_reader_close(r);
      }
      jw_outlog_close(log, 1);
    }
    ck_assert_int_eq(access(path, F_OK), -1);
  }
  ck_assert(!injected);
  fprintf(stderr, "failmalloc: %zu allocations failed in turn\n", n - 1);
  ck_assert_uint_gt(n, 1);
}
END_TEST

START_TEST(test_invalid) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char buf[4];
  ck_assert_int_eq(jw_outlog_append(log, (jw_stream_t)7, "a", 1), -EINVAL);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "", 0), 0);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, 0, &s), -EINVAL);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), JW_EAGAIN);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
  ck_assert_int_eq(jw_outlog_create("/nonexistent/dir/log", &log), -ENOENT);
}
END_TEST

/* The byte at output offset i of the seek tests' logs. */
static unsigned char pattern(uint64_t i) {
  return (unsigned char)(i * 7 + i / 251);
}

/*
 * A reader opened at an offset starts there, in the middle of a record if
 * need be, across streams; past the end it gets the next byte appended.
 */
START_TEST(test_open_at_offset) {
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  jw_stream_t s;
  char buf[16];
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "012", 3), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "3456", 4), 0);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "789", 3), 0);

  ck_assert_int_eq(jw_outlog_reader_open_at(log, 5, NULL, NULL, &r), 0);
  ck_assert_uint_eq(jw_outlog_reader_offset(r), 5);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 2);
  ck_assert_int_eq(s, JW_STDERR);
  ck_assert_int_eq(memcmp(buf, "56", 2), 0);
  ck_assert_uint_eq(jw_outlog_reader_offset(r), 7);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 3);
  ck_assert_int_eq(s, JW_STDOUT);
  ck_assert_int_eq(memcmp(buf, "789", 3), 0);
  jw_outlog_reader_close(r);

  /* At a record's first byte, and at the very end. */
  ck_assert_int_eq(jw_outlog_reader_open_at(log, 3, NULL, NULL, &r), 0);
  ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 4);
  ck_assert_int_eq(memcmp(buf, "3456", 4), 0);
  jw_outlog_reader_close(r);
  /* At the end, and past it: the next byte appended, at offset 10. */
  static const uint64_t at[] = {10, 1000};
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(jw_outlog_reader_open_at(log, at[i], NULL, NULL, &r), 0);
    ck_assert_uint_eq(jw_outlog_reader_offset(r), 10 + 2 * i);
    ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), JW_EAGAIN);
    ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "ab", 2), 0);
    ck_assert_int_eq(jw_outlog_read(r, buf, sizeof(buf), &s), 2);
    ck_assert_int_eq(memcmp(buf, "ab", 2), 0);
    ck_assert_uint_eq(jw_outlog_reader_offset(r), 12 + 2 * i);
    jw_outlog_reader_close(r);
  }
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * Seeks into a log of many records (more than one index step) land on the
 * right byte, and read byte-exact from there to the end.
 */
START_TEST(test_seek_across_index) {
  jw_outlog_t *log = new_log();
  const uint64_t total = 5u << 20;
  unsigned char *src = malloc(total), *got = malloc(total);
  uint64_t off = 0;
  ck_assert_ptr_nonnull(src);
  ck_assert_ptr_nonnull(got);
  for (uint64_t i = 0; i < total; i++)
    src[i] = pattern(i);
  /* Records of uneven sizes, 1 byte to 70 KB, alternating streams. */
  for (unsigned k = 0; off < total; k++) {
    uint64_t n = 1 + (k * 7919u) % 70000u;
    if (n > total - off)
      n = total - off;
    ck_assert_int_eq(jw_outlog_append(log, k % 3 ? JW_STDOUT : JW_STDERR,
                                      src + off, (size_t)n),
                     0);
    off += n;
  }
  jw_outlog_finish(log);
  static const uint64_t at[] = {
      0, 1, 4093, (1u << 20) - 1, 1u << 20, (3u << 20) + 12345, (5u << 20) - 1};
  for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
    jw_outlog_reader_t *r;
    jw_stream_t s;
    uint64_t n = 0;
    ssize_t k;
    ck_assert_int_eq(jw_outlog_reader_open_at(log, at[i], NULL, NULL, &r), 0);
    ck_assert_uint_eq(jw_outlog_reader_offset(r), at[i]);
    while ((k = jw_outlog_read(r, got + n, 65536, &s)) > 0)
      n += (uint64_t)k;
    ck_assert_int_eq(k, 0);
    ck_assert_uint_eq(n, total - at[i]);
    ck_assert_int_eq(memcmp(got, src + at[i], (size_t)n), 0);
    jw_outlog_reader_close(r);
  }
  jw_outlog_close(log, 1);
  free(src);
  free(got);
}
END_TEST

/* The index stays within its bound however long the log grows. */
START_TEST(test_index_bounded) {
  jw__outidx_t idx = {0};
  for (uint64_t i = 0; i < 3 * JW__OUTIDX_MAX; i++)
    jw__outidx_note(&idx, i * JW__OUTIDX_STEP, i * 1000);
  ck_assert_uint_le(idx.n, JW__OUTIDX_MAX);
  ck_assert_uint_ge(idx.n, JW__OUTIDX_MAX / 4);
  ck_assert_uint_eq(idx.step, 4u * JW__OUTIDX_STEP);
  ck_assert_uint_eq(idx.v[0].file_off, 0);
  for (size_t i = 1; i < idx.n; i++)
    ck_assert_uint_gt(idx.v[i].out_off, idx.v[i - 1].out_off);
  jw__outidx_free(&idx);
}
END_TEST

/*
 * A log opened again from its file (after a restart) has no index: one
 * walk over its headers builds the same one, and seeks work from it.
 */
START_TEST(test_index_build_from_file) {
  jw_outlog_t *log = new_log();
  const uint64_t total = 3u << 20;
  unsigned char *src = malloc(total);
  jw__outidx_t idx = {0};
  jw__outidx_pos_t pos;
  struct stat sb;
  unsigned char c;
  ck_assert_ptr_nonnull(src);
  for (uint64_t i = 0; i < total; i++)
    src[i] = pattern(i);
  for (uint64_t off = 0; off < total; off += 1000)
    ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, src + off,
                                      total - off < 1000 ? total - off : 1000),
                     0);
  jw_outlog_finish(log);
  int fd = open(path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(fstat(fd, &sb), 0);
  ck_assert_int_eq(jw__outidx_build(&idx, fd, (uint64_t)sb.st_size), 0);
  /* 3 MiB of payload and its headers: a little over 3 MiB of file. */
  ck_assert_uint_eq(idx.n, 4);
  for (size_t i = 0; i < idx.n; i++)
    ck_assert_uint_eq(idx.v[i].file_off,
                      idx.v[i].out_off / 1000 * (1000 + JW_OUTLOG_RECORD_HDR));
  static const uint64_t at[] = {0, 999, 1000, (2u << 20) + 77, total - 1};
  for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
    ck_assert_int_eq(
        jw__outidx_locate(&idx, fd, (uint64_t)sb.st_size, at[i], &pos), 0);
    ck_assert_int_eq(pread(fd, &c, 1, (off_t)pos.file_off), 1);
    ck_assert_uint_eq(c, src[at[i]]);
    uint64_t start = at[i] / 1000 * 1000;
    uint64_t len = total - start < 1000 ? total - start : 1000;
    ck_assert_uint_eq(pos.rec_left, start + len - at[i]);
  }
  close(fd);
  jw__outidx_free(&idx);
  jw_outlog_close(log, 1);
  free(src);
}
END_TEST

/* Appends text in pieces of n bytes. */
static void append_pieces(jw_outlog_t *log, const char *text, size_t n) {
  size_t len = strlen(text);
  for (size_t o = 0; o < len; o += n)
    ck_assert_int_eq(
        jw_outlog_append(log, JW_STDOUT, text + o, len - o < n ? len - o : n),
        0);
}

/* What a reader opened at from and moved to the last nlines lines reads. */
static char *tail_of(jw_outlog_t *log, uint64_t from, uint32_t nlines) {
  jw_outlog_reader_t *r;
  jw_stream_t s;
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  ssize_t k;
  ck_assert_int_eq(jw_outlog_reader_open_at(log, from, NULL, NULL, &r), 0);
  ck_assert_int_eq(jw_outlog_reader_tail(r, nlines), 0);
  while ((k = jw_outlog_read(r, out + n, cap - 1 - n, &s)) > 0) {
    n += (size_t)k;
    if (n == cap - 1)
      out = realloc(out, cap *= 2);
  }
  ck_assert(k == 0 || k == JW_EAGAIN);
  out[n] = '\0';
  jw_outlog_reader_close(r);
  return out;
}

/* What a reader opened at from reads to the end of a finished log. */
static size_t read_from(jw_outlog_t *log, uint64_t from, char *out,
                        size_t cap) {
  jw_outlog_reader_t *r;
  jw_stream_t s;
  size_t n = 0;
  ssize_t k;
  ck_assert_int_eq(jw_outlog_reader_open_at(log, from, NULL, NULL, &r), 0);
  while ((k = jw_outlog_read(r, out + n, cap - n < 7 ? cap - n : 7, &s)) > 0)
    n += (size_t)k;
  ck_assert_int_eq(k, 0);
  jw_outlog_reader_close(r);
  return n;
}

/*
 * A log opened again from its file (a restart, a reload) and appended to
 * before any seek: a reader opened at every byte offset, also in the middle
 * of a record before the reopen, reads exactly the output from there (the
 * bytes of a record header never come out as output), and a tail counts
 * the lines of both parts.
 */
START_TEST(test_reopen_then_append_then_seek) {
  jw_outlog_t *log = new_log();
  char want[4096] = "", got[4096];
  for (int i = 1; i <= 200; i++) {
    char line[32];
    int n = snprintf(line, sizeof(line), "line %d\n", i);
    if (i == 101) {
      jw_outlog_close(log, 0);
      ck_assert_int_eq(jw_outlog_reopen(path, &log, NULL), 0);
    }
    ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, line, (size_t)n), 0);
    strcat(want, line);
  }
  jw_outlog_finish(log);
  size_t len = strlen(want);
  ck_assert_uint_eq(jw_outlog_bytes(log), len);
  for (uint64_t off = 0; off <= len; off++) {
    size_t n = read_from(log, off, got, sizeof(got));
    ck_assert_msg(n == len - off && memcmp(got, want + off, n) == 0,
                  "from byte %llu: %zu bytes, not the %zu of the output",
                  (unsigned long long)off, n, len - off);
  }
  char *t = tail_of(log, 0, 102);
  ck_assert_str_eq(t, strstr(want, "line 99\n"));
  free(t);
  jw_outlog_close(log, 1);
}
END_TEST

/* The index's first entry is the log's start, whatever is noted first. */
START_TEST(test_index_starts_at_zero) {
  jw__outidx_t idx = {0};
  jw__outidx_note(&idx, 5u << 20, 4u << 20);
  ck_assert_uint_eq(idx.n, 2);
  ck_assert_uint_eq(idx.v[0].file_off, 0);
  ck_assert_uint_eq(idx.v[0].out_off, 0);
  ck_assert_uint_eq(idx.v[1].file_off, 5u << 20);
  jw__outidx_free(&idx);
}
END_TEST

START_TEST(test_tail_lines) {
  jw_outlog_t *log = new_log();
  char text[400] = "";
  char *t;
  for (int i = 1; i <= 100; i++)
    snprintf(text + strlen(text), sizeof(text) - strlen(text), "%d\n", i);
  append_pieces(log, text, 7);
  t = tail_of(log, 0, 3);
  ck_assert_str_eq(t, "98\n99\n100\n");
  free(t);
  t = tail_of(log, 0, 1);
  ck_assert_str_eq(t, "100\n");
  free(t);
  /* More lines than there are: all of them; 0: no change. */
  t = tail_of(log, 0, 1000);
  ck_assert_str_eq(t, text);
  free(t);
  t = tail_of(log, 0, 0);
  ck_assert_str_eq(t, text);
  free(t);
  /* From an offset on: the tail never goes before it. */
  t = tail_of(log, strlen(text) - 5, 3);
  ck_assert_str_eq(t, "\n100\n");
  free(t);
  /* A last line without its newline counts. */
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, "x\ny", 3), 0);
  t = tail_of(log, 0, 2);
  ck_assert_str_eq(t, "x\ny");
  free(t);
  t = tail_of(log, 0, 3);
  ck_assert_str_eq(t, "100\nx\ny");
  free(t);
  jw_outlog_close(log, 1);

  /* An empty log, and one that is a single newline. */
  log = new_log();
  t = tail_of(log, 0, 5);
  ck_assert_str_eq(t, "");
  free(t);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, "\n", 1), 0);
  t = tail_of(log, 0, 5);
  ck_assert_str_eq(t, "\n");
  free(t);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * A tail across index steps: the lines it wants start several steps back
 * (a 3 MiB line), and small records in between.
 */
START_TEST(test_tail_across_index) {
  jw_outlog_t *log = new_log();
  size_t big = 3u << 20;
  char *line = malloc(big + 1);
  char *t;
  memset(line, 'z', big);
  line[big] = '\0';
  append_pieces(log, "head\nA\n", 3);
  append_pieces(log, line, 65536);
  append_pieces(log, "\nB\nC\n", 1);
  t = tail_of(log, 0, 3);
  ck_assert_uint_eq(strlen(t), big + 5);
  ck_assert_int_eq(memcmp(t, line, big), 0);
  ck_assert_str_eq(t + big, "\nB\nC\n");
  free(t);
  t = tail_of(log, 0, 4);
  ck_assert_uint_eq(strlen(t), big + 7);
  ck_assert_int_eq(memcmp(t, "A\n", 2), 0);
  free(t);
  jw_outlog_close(log, 1);
  free(line);
}
END_TEST

/* The payload bytes of the log's file, records parsed by hand. */
static size_t file_payload(char *out, size_t cap) {
  unsigned char hdr[5];
  size_t n = 0;
  int fd = open(path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  while (read(fd, hdr, 5) == 5) {
    size_t len = (size_t)hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 |
                 (size_t)hdr[4] << 24;
    ck_assert_uint_le(n + len, cap);
    ck_assert_int_eq(read(fd, out + n, len), (ssize_t)len);
    n += len;
  }
  close(fd);
  return n;
}

/*
 * Replaying a log of line-sized records reads the file in blocks: a
 * number of preads that depends on the file's size, not on its records
 * (it was two per record), and the bytes and their streams come out
 * exactly as written, a change of stream still ending a read.
 */
START_TEST(test_replay_small_records_in_blocks) {
  enum { RECORDS = 65536, REC = 16, PER_STREAM = 1000 };
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r;
  char rec[REC], buf[16384];
  uint64_t at = 0, before;
  jw_stream_t s;
  ssize_t n;
  int i, reads = 0;
  for (i = 0; i < RECORDS; i++) {
    for (int k = 0; k < REC; k++)
      rec[k] = (char)pattern((uint64_t)i * REC + (uint64_t)k);
    ck_assert_int_eq(
        jw_outlog_append(log, (i / PER_STREAM) % 2 ? JW_STDERR : JW_STDOUT, rec,
                         REC),
        0);
  }
  jw_outlog_finish(log);
  ck_assert_int_eq(jw_outlog_reader_open(log, NULL, NULL, &r), 0);
  before = jw__outlog_reader_preads();
  while ((n = jw_outlog_read(r, buf, sizeof(buf), &s)) > 0) {
    uint64_t rec_no = at / REC;
    reads++;
    ck_assert_int_le(reads, RECORDS);
    /* One stream per read: it ends where the stream changes. */
    ck_assert_int_eq(s, (rec_no / PER_STREAM) % 2 ? JW_STDERR : JW_STDOUT);
    ck_assert_uint_le((at + (uint64_t)n - 1) / REC / PER_STREAM,
                      rec_no / PER_STREAM);
    for (ssize_t k = 0; k < n; k++)
      if ((unsigned char)buf[k] != pattern(at + (uint64_t)k))
        ck_abort_msg("byte %llu differs", (unsigned long long)at + k);
    at += (uint64_t)n;
  }
  ck_assert_int_eq(n, 0);
  ck_assert_uint_eq(at, (uint64_t)RECORDS * REC);
  /* 64 KiB or more per pread; a margin for reads cut at a block's end. */
  ck_assert_uint_le(jw__outlog_reader_preads() - before,
                    jw_outlog_disk_bytes(log) / 65536 + 2);
  jw_outlog_reader_close(r);
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * Readers that are caught up get what is appended from memory, without a
 * pread, all of them (fan-out); what they get is what the file holds. A
 * record too large to keep in memory still reaches them, from the file.
 */
START_TEST(test_caught_up_readers_read_from_memory) {
  enum { READERS = 3, LINES = 2000, BIG = 300 * 1024 };
  jw_outlog_t *log = new_log();
  jw_outlog_reader_t *r[READERS];
  struct notified c[READERS];
  static char got[READERS][LINES * 16 + BIG], file[LINES * 16 + BIG];
  static char big[BIG];
  size_t len[READERS] = {0}, total = 0;
  jw_stream_t s;
  uint64_t before;
  ssize_t n;
  int i, k;
  memset(c, 0, sizeof(c));
  for (k = 0; k < READERS; k++) {
    ck_assert_int_eq(jw_outlog_reader_open(log, on_notify, &c[k], &r[k]), 0);
    c[k].self = r[k];
    ck_assert_int_eq(jw_outlog_read(r[k], got[k], 16, &s), JW_EAGAIN);
  }
  before = jw__outlog_reader_preads();
  for (i = 0; i < LINES; i++) {
    char line[16];
    int m = snprintf(line, sizeof(line), "line %d\n", i);
    ck_assert_int_eq(jw_outlog_append(log, JW_STDOUT, line, (size_t)m), 0);
    total += (size_t)m;
    for (k = 0; k < READERS; k++) {
      ck_assert_int_eq(c[k].calls, i + 1);
      n = jw_outlog_read(r[k], got[k] + len[k], sizeof(got[k]) - len[k], &s);
      ck_assert_int_eq(n, m);
      len[k] += (size_t)n;
      ck_assert_int_eq(jw_outlog_read(r[k], got[k] + len[k], 16, &s),
                       JW_EAGAIN);
    }
  }
  ck_assert_uint_eq(jw__outlog_reader_preads() - before, 0);
  for (i = 0; i < BIG; i++)
    big[i] = (char)pattern((uint64_t)i);
  ck_assert_int_eq(jw_outlog_append(log, JW_STDERR, big, BIG), 0);
  total += BIG;
  jw_outlog_finish(log);
  ck_assert_uint_eq(file_payload(file, sizeof(file)), total);
  for (k = 0; k < READERS; k++) {
    int rounds = 0;
    while ((n = jw_outlog_read(r[k], got[k] + len[k], 16384, &s)) > 0) {
      ck_assert_int_eq(s, JW_STDERR);
      len[k] += (size_t)n;
      ck_assert_int_le(++rounds, BIG);
    }
    ck_assert_int_eq(n, 0);
    ck_assert_uint_eq(len[k], total);
    ck_assert(memcmp(got[k], file, total) == 0);
    jw_outlog_reader_close(r[k]);
  }
  jw_outlog_close(log, 1);
}
END_TEST

/*
 * Replays of more logs than there are blocks, interleaved read by read:
 * blocks are evicted and refilled, and each reader still gets its own
 * log's bytes.
 */
START_TEST(test_interleaved_replays) {
  enum { LOGS = 7, RECORDS = 10000 };
  jw_outlog_t *logs[LOGS];
  jw_outlog_reader_t *r[LOGS];
  uint64_t at[LOGS] = {0};
  char p[LOGS][64], buf[4096];
  int live = LOGS, rounds = 0;
  for (int l = 0; l < LOGS; l++) {
    snprintf(p[l], sizeof(p[l]), "%s/log%d", dir, l);
    ck_assert_int_eq(jw_outlog_create(p[l], &logs[l]), 0);
    for (int i = 0; i < RECORDS; i++) {
      char rec[8];
      for (int k = 0; k < 8; k++)
        rec[k] = (char)(pattern((uint64_t)i * 8 + (uint64_t)k) + l);
      ck_assert_int_eq(jw_outlog_append(logs[l], JW_STDOUT, rec, 8), 0);
    }
    jw_outlog_finish(logs[l]);
    ck_assert_int_eq(jw_outlog_reader_open(logs[l], NULL, NULL, &r[l]), 0);
  }
  while (live > 0) {
    ck_assert_int_le(++rounds, RECORDS * 8);
    for (int l = 0; l < LOGS; l++) {
      jw_stream_t s;
      ssize_t n;
      if (r[l] == NULL)
        continue;
      n = jw_outlog_read(r[l], buf, (size_t)(1 + (rounds * 37 + l) % 4096), &s);
      ck_assert_int_ge(n, 0);
      if (n == 0) {
        ck_assert_uint_eq(at[l], (uint64_t)RECORDS * 8);
        jw_outlog_reader_close(r[l]);
        r[l] = NULL;
        live--;
        continue;
      }
      for (ssize_t k = 0; k < n; k++)
        if ((unsigned char)buf[k] !=
            (unsigned char)(pattern(at[l] + (uint64_t)k) + l))
          ck_abort_msg("log %d: byte %llu differs", l,
                       (unsigned long long)at[l] + k);
      at[l] += (uint64_t)n;
    }
  }
  for (int l = 0; l < LOGS; l++) {
    jw_outlog_close(logs[l], 1);
  }
}
END_TEST

static Suite *outlog_suite(void) {
  Suite *s = suite_create("outlog");
  TCase *tc = test_tcase(s, "core", setup, teardown, 0);
  const TTest *const tc_tests[] = {test_create_exclusive,
                                   test_record_format,
                                   test_binary_roundtrip_and_coalescing,
                                   test_notify_once_per_eagain,
                                   test_close_from_notify,
                                   test_late_reader_replays,
                                   test_reader_outlives_log,
                                   test_finished_log_releases_fd,
                                   test_invalid,
                                   test_disk_bytes_and_drop,
                                   test_log_close_from_notify,
                                   test_open_at_offset,
                                   test_seek_across_index,
                                   test_index_bounded,
                                   test_index_build_from_file,
                                   test_tail_lines,
                                   test_tail_across_index,
                                   test_reopen_then_append_then_seek,
                                   test_index_starts_at_zero,
                                   test_replay_small_records_in_blocks,
                                   test_caught_up_readers_read_from_memory,
                                   test_interleaved_replays,
                                   NULL};
  test_add_tests(tc, tc_tests);
  tcase_add_test_raise_signal(tc, test_close_twice_aborts, SIGABRT);
  tcase_add_test(tc, test_failmalloc);
  return s;
}

int main(void) { return test_run_suite(outlog_suite()); }
