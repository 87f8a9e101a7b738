/*
 * Unit tests for the reload state (server/reload.c): what a reloading
 * teleportd leaves for the next image is taken whole, or refused whole
 * with a reason and every descriptor it names closed.
 */
#include <check.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../test_common.h"
#include "reload.h"

#define HDR 24
#define ENTRY (JW_ID_LEN + 8 * 4 + 8)

static void put32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }

/* A state of n entries: header, then each job's fields as reload.h says. */
static size_t make_state(unsigned char *buf, uint32_t version, uint32_t n,
                         int listen_fd, const int (*fds)[4]) {
  memcpy(buf, "JWRELOAD", 8);
  put32(buf + 8, (int32_t)version);
  put32(buf + 12, (int32_t)n);
  put32(buf + 16, listen_fd);
  put32(buf + 20, 0);
  for (uint32_t i = 0; i < n; i++) {
    unsigned char *e = buf + HDR + i * ENTRY;
    uint64_t ms = 250;
    memset(e, 'a' + (int)i, JW_ID_LEN);
    put32(e + JW_ID_LEN, 1000 + (int)i);
    for (int k = 0; k < 4; k++)
      put32(e + JW_ID_LEN + 4 + 4 * k, fds[i][k]);
    put32(e + JW_ID_LEN + 20, 0); /* reaped */
    put32(e + JW_ID_LEN + 24, 0); /* wstatus */
    put32(e + JW_ID_LEN + 28, 3); /* stop_reason */
    memcpy(e + JW_ID_LEN + 32, &ms, 8);
  }
  return HDR + n * ENTRY;
}

/* Puts len bytes of buf in a memfd named by the variable; returns it. */
static int offer(const unsigned char *buf, size_t len) {
  char v[16];
  int fd = memfd_create("test-reload", 0);
  ck_assert_int_ge(fd, 3);
  ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
  snprintf(v, sizeof(v), "%d", fd);
  setenv(JW_RELOAD_ENV, v, 1);
  return fd;
}

static int is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* A listening socket and one job's two pipes' read ends. */
static void make_fds(int *lfd, int job[4], int w[2]) {
  int a[2], b[2];
  *lfd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(*lfd, 3);
  ck_assert_int_eq(pipe(a), 0);
  ck_assert_int_eq(pipe(b), 0);
  job[0] = -1;
  job[1] = a[0];
  job[2] = b[0];
  job[3] = -1;
  w[0] = a[1];
  w[1] = b[1];
}

START_TEST(test_no_state) {
  jw_reload_state_t st;
  char err[128];
  unsetenv(JW_RELOAD_ENV);
  ck_assert_int_eq(jw_reload_take(&st, err, sizeof(err)), 0);
  ck_assert_int_eq(st.listen_fd, -1);
  ck_assert_uint_eq(st.njobs, 0);
}
END_TEST

START_TEST(test_state_taken_whole) {
  static unsigned char buf[HDR + 2 * ENTRY];
  int lfd, job[2][4], w[2][2];
  jw_reload_state_t st;
  char err[128];
  make_fds(&lfd, job[0], w[0]);
  close(lfd);
  make_fds(&lfd, job[1], w[1]);
  int mfd = offer(buf, make_state(buf, 1, 2, lfd, (const int(*)[4])job));
  ck_assert_int_eq(jw_reload_take(&st, err, sizeof(err)), 1);
  ck_assert_ptr_null(getenv(JW_RELOAD_ENV));
  ck_assert(!is_open(mfd));
  ck_assert_int_eq(st.listen_fd, lfd);
  ck_assert_uint_eq(st.njobs, 2);
  ck_assert_int_eq(st.jobs[1].proc.pid, 1001);
  ck_assert_int_eq(st.jobs[1].proc.out_fd, job[1][1]);
  ck_assert_int_eq(st.jobs[1].proc.err_fd, job[1][2]);
  ck_assert_int_eq(st.jobs[1].proc.pidfd, -1);
  ck_assert_int_eq(st.jobs[1].stop_reason, JW_END_STOPPED);
  ck_assert_uint_eq(st.jobs[1].proc.kill_in_ms, 250);
  ck_assert_uint_eq(strlen(st.jobs[0].id), JW_ID_LEN);
  jw_reload_state_free(&st);
  close(lfd);
  for (int i = 0; i < 2; i++)
    for (int k = 1; k < 3; k++)
      close(job[i][k]);
  for (int i = 0; i < 2; i++) {
    close(w[i][0]);
    close(w[i][1]);
  }
}
END_TEST

/*
 * Each way a state can be wrong: refused with a reason, the variable
 * unset, and every descriptor it names closed (they are nobody's).
 */
static void refused(int how) {
  static unsigned char buf[HDR + 2 * ENTRY];
  int lfd, job[1][4], w[2];
  jw_reload_state_t st;
  char err[128] = "";
  size_t len;
  make_fds(&lfd, job[0], w);
  len = make_state(buf, how == 1 ? 2 : 1, 1, lfd, (const int(*)[4])job);
  if (how == 0)
    buf[0] = 'X';
  if (how == 2)
    len--;
  if (how == 3)
    put32(buf + 12, (int32_t)JW_RELOAD_MAX_JOBS + 1);
  if (how == 4)
    put32(buf + HDR + JW_ID_LEN + 4, 1000); /* a pidfd that is not open */
  int mfd = offer(buf, len);
  ck_assert_int_eq(jw_reload_take(&st, err, sizeof(err)), -1);
  ck_assert_msg(err[0] != '\0', "no reason given");
  ck_assert_ptr_null(getenv(JW_RELOAD_ENV));
  ck_assert_int_eq(st.listen_fd, -1);
  ck_assert(!is_open(mfd));
  ck_assert(!is_open(lfd));
  if (how != 2) {
    ck_assert(!is_open(job[0][1]));
    ck_assert(!is_open(job[0][2]));
  } else {
    close(job[0][1]);
    close(job[0][2]);
  }
  close(w[0]);
  close(w[1]);
}

START_TEST(test_bad_magic) { refused(0); }
END_TEST
START_TEST(test_other_version) { refused(1); }
END_TEST
START_TEST(test_wrong_size) { refused(2); }
END_TEST
START_TEST(test_too_many_jobs) { refused(3); }
END_TEST
START_TEST(test_closed_descriptor) { refused(4); }
END_TEST

START_TEST(test_not_a_descriptor) {
  jw_reload_state_t st;
  char err[128] = "";
  setenv(JW_RELOAD_ENV, "12x", 1);
  ck_assert_int_eq(jw_reload_take(&st, err, sizeof(err)), -1);
  ck_assert_ptr_nonnull(strstr(err, JW_RELOAD_ENV));
  ck_assert_ptr_null(getenv(JW_RELOAD_ENV));
}
END_TEST

int main(void) {
  Suite *s = suite_create("reload");
  TCase *tc = test_tcase(s, "state", NULL, NULL, 30);
  const TTest *const tests[] = {
      test_no_state,          test_state_taken_whole, test_bad_magic,
      test_other_version,     test_wrong_size,        test_too_many_jobs,
      test_closed_descriptor, test_not_a_descriptor,  NULL};
  test_add_tests(tc, tests);
  return test_run_suite(s);
}
