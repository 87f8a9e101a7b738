/*
 * Unit tests for server/trim.c: teleportd gives its heap's free pages
 * back once after a burst of connections, never without a note, and not
 * later and later while notes keep coming.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test_common.h"
#include "trim.h"

#define DELAY_MS 50

static uv_loop_t loop;
static jw_trim_t trim;
static int ntrims;

static void count_trim(void) { ntrims++; }

static void setup(void) {
  ntrims = 0;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  jw_trim_init(&trim, &loop, DELAY_MS, count_trim);
}

static void teardown(void) {
  jw_trim_close(&trim, NULL);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static int trims_at_least(void *arg) { return ntrims >= *(int *)arg; }

/* Runs the loop for ms (a ref'd timer keeps it from returning early). */
static void run_for(uint64_t ms) {
  int never = 1 << 30;
  test_run_until(&loop, trims_at_least, &never, ms);
}

START_TEST(test_no_note_no_trim) {
  run_for(4 * DELAY_MS);
  ck_assert_int_eq(ntrims, 0);
  ck_assert_uint_eq(trim.trims, 0);
}
END_TEST

/* A burst of notes (connections opening and closing) costs one trim, and
 * not before the delay. */
START_TEST(test_burst_trims_once_after_delay) {
  int one = 1;
  uint64_t t0 = uv_now(&loop);
  for (int i = 0; i < 100; i++)
    jw_trim_note(&trim);
  ck_assert(test_run_until(&loop, trims_at_least, &one, 100 * DELAY_MS));
  ck_assert_uint_ge(uv_now(&loop) - t0, DELAY_MS);
  run_for(4 * DELAY_MS);
  ck_assert_int_eq(ntrims, 1);
  ck_assert_uint_eq(trim.trims, 1);
  /* A note after the trim asks for the next one. */
  jw_trim_note(&trim);
  int two = 2;
  ck_assert(test_run_until(&loop, trims_at_least, &two, 100 * DELAY_MS));
}
END_TEST

/*
 * Notes that never stop do not put the trim off for ever: with a note
 * every fifth of the delay, trims come while the notes still do. libuv
 * runs due timers in the order they fall due, so the note timer's run
 * 3 delays after the first note comes after the trim due at 1 delay,
 * however late the loop runs them.
 */
static int nnotes, trims_seen_while_noting;

static void note_tick(uv_timer_t *t) {
  jw_trim_note(&trim);
  if (++nnotes == 15) {
    trims_seen_while_noting = ntrims;
    uv_timer_stop(t);
  }
}

START_TEST(test_steady_notes_still_trim) {
  uv_timer_t notes;
  nnotes = 0;
  trims_seen_while_noting = -1;
  uv_timer_init(&loop, &notes);
  jw_trim_note(&trim);
  uv_timer_start(&notes, note_tick, DELAY_MS / 5, DELAY_MS / 5);
  int done = 15;
  while (nnotes < done && uv_run(&loop, UV_RUN_ONCE) != 0)
    ;
  ck_assert_int_eq(nnotes, done);
  ck_assert_int_ge(trims_seen_while_noting, 2);
  uv_close((uv_handle_t *)&notes, NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* the handle is on this stack */
}
END_TEST

#if !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
static long rss_kib(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
    rss = -1;
  fclose(f);
  return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int real_trimmed(void *arg) { return ((jw_trim_t *)arg)->trims > 0; }
#endif

/*
 * The real trim (malloc_trim): 32 MiB of small blocks are written, then
 * all but one in 64 freed, as handshakes leave the heap between the
 * connections that stay. free() alone keeps those pages; the trim gives
 * back most of them. glibc's heap only: ASan's allocator is not it.
 */
START_TEST(test_trim_gives_pages_back) {
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  SKIP("malloc_trim acts on glibc's own heap (not under ASan)");
#else
  jw_trim_t real;
  if (under_valgrind())
    SKIP("malloc_trim acts on glibc's own heap (not valgrind's)");
  enum { N = 8192, SZ = 4000 };
  char **p = calloc(N, sizeof(*p));
  ck_assert_ptr_nonnull(p);
  for (int i = 0; i < N; i++) {
    p[i] = malloc(SZ);
    ck_assert_ptr_nonnull(p[i]);
    memset(p[i], 1, SZ);
  }
  for (int i = 0; i < N; i++)
    if (i % 64 != 63) {
      free(p[i]);
      p[i] = NULL;
    }
  long before = rss_kib();
  jw_trim_init(&real, &loop, 1, NULL);
  jw_trim_note(&real);
  ck_assert(test_run_until(&loop, real_trimmed, &real, 10000));
  ck_assert_uint_eq(real.trims, 1);
  long after = rss_kib();
  /* 32 MiB were written, 31.5 freed: at least half of that goes back. */
  ck_assert_int_gt(before, 0);
  ck_assert_int_le(after, before - 16 * 1024);
  jw_trim_close(&real, NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* the handle is on this stack */
  for (int i = 0; i < N; i++)
    free(p[i]);
  free(p);
#endif
}
END_TEST

int main(void) {
  const TTest *const tests[] = {
      test_no_note_no_trim, test_burst_trims_once_after_delay,
      test_steady_notes_still_trim, test_trim_gives_pages_back, NULL};
  return test_run_list("trim", setup, teardown, 0, tests);
}
