/*
 * Unit tests for the supervisor's job table (lib/worker/jobtable.c): ids,
 * the age order, the per-owner records (jobs, running count, finished
 * FIFO, disk), growth past the initial buckets, and every allocation
 * failing in turn.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/worker/jobtable_int.h"
#include "../failmalloc.h"
#include "../test_common.h"

static jw__jobtable_t t;

static void setup(void) { ck_assert_int_eq(jw__jobtable_init(&t), 0); }

static void teardown(void) {
  ck_assert_uint_eq(t.njobs, 0);
  ck_assert_uint_eq(t.nowners, 0);
  jw__jobtable_destroy(&t);
}

/* Inserts a running job with id "job<n>" for owner. */
static void add(jw__jobent_t *e, int n, const char *owner) {
  jw__owner_t *o = jw__jobtable_owner_get(&t, owner);
  ck_assert_ptr_nonnull(o);
  memset(e, 0, sizeof(*e));
  snprintf(e->id, sizeof(e->id), "job%d", n);
  jw__jobtable_insert(&t, e, o);
}

/* Adds job1 and job2 for alice and job3 for third; returns alice. */
static jw__owner_t *add_three(jw__jobent_t *a, jw__jobent_t *b, jw__jobent_t *c,
                              const char *third) {
  add(a, 1, "alice");
  add(b, 2, "alice");
  add(c, 3, third);
  return a->owner;
}

START_TEST(test_find_and_remove) {
  jw__jobent_t a, b;
  add(&a, 1, "alice");
  add(&b, 2, "bob");
  ck_assert_ptr_eq(jw__jobtable_find(&t, "job1"), &a);
  ck_assert_ptr_eq(jw__jobtable_find(&t, "job2"), &b);
  ck_assert_ptr_null(jw__jobtable_find(&t, "job3"));
  ck_assert_ptr_null(jw__jobtable_find(&t, NULL));
  ck_assert_str_eq(a.owner->name, "alice");
  ck_assert_uint_eq(t.njobs, 2);
  ck_assert_uint_eq(t.nrunning, 2);
  jw__jobtable_remove(&t, &a);
  ck_assert_ptr_null(jw__jobtable_find(&t, "job1"));
  ck_assert_ptr_null(a.owner);
  /* A second remove is harmless. */
  jw__jobtable_remove(&t, &a);
  ck_assert_uint_eq(t.njobs, 1);
  ck_assert_uint_eq(t.nrunning, 1);
  jw__jobtable_remove(&t, &b);
}
END_TEST

/* The owner record lives while it has jobs, and only then. */
START_TEST(test_owner_records) {
  jw__jobent_t a1, a2, b;
  jw__owner_t *o;
  ck_assert_ptr_null(jw__jobtable_owner(&t, "alice"));
  add(&a1, 1, "alice");
  add(&a2, 2, "alice");
  add(&b, 3, "bob");
  o = jw__jobtable_owner(&t, "alice");
  ck_assert_ptr_eq(o, a1.owner);
  ck_assert_ptr_eq(o, a2.owner);
  ck_assert_uint_eq(o->njobs, 2);
  ck_assert_uint_eq(o->nrunning, 2);
  ck_assert_uint_eq(t.nowners, 2);
  jw__jobtable_remove(&t, &a1);
  ck_assert_ptr_eq(jw__jobtable_owner(&t, "alice"), o);
  jw__jobtable_remove(&t, &a2);
  ck_assert_ptr_null(jw__jobtable_owner(&t, "alice"));
  ck_assert_uint_eq(t.nowners, 1);
  /* A record got but given no job goes back; one in use stays. */
  o = jw__jobtable_owner_get(&t, "carol");
  ck_assert_ptr_nonnull(o);
  jw__jobtable_owner_put(&t, o);
  ck_assert_ptr_null(jw__jobtable_owner(&t, "carol"));
  jw__jobtable_owner_put(&t, jw__jobtable_owner_get(&t, "bob"));
  ck_assert_ptr_eq(jw__jobtable_owner(&t, "bob"), b.owner);
  jw__jobtable_remove(&t, &b);
}
END_TEST

/* The table lists oldest first; an owner's list holds its jobs alone. */
START_TEST(test_age_and_owner_order) {
  jw__jobent_t e[6];
  jw__list_t *n;
  int i = 0;
  for (int k = 0; k < 6; k++)
    add(&e[k], k, k % 2 ? "bob" : "alice");
  jw__list_foreach(n, &t.jobs) ck_assert_ptr_eq(jw__jobent_of_age(n), &e[i++]);
  ck_assert_int_eq(i, 6);
  i = 0;
  jw__list_foreach(n, &jw__jobtable_owner(&t, "bob")->jobs) {
    ck_assert_ptr_eq(jw__jobent_of_owner(n), &e[2 * i + 1]);
    i++;
  }
  ck_assert_int_eq(i, 3);
  for (int k = 0; k < 6; k++)
    jw__jobtable_remove(&t, &e[k]);
}
END_TEST

/*
 * Finished jobs come out in the order they became final, whatever order
 * they started in; the running counts follow.
 */
START_TEST(test_finished_fifo) {
  jw__jobent_t a, b, c;
  jw__owner_t *o = add_three(&a, &b, &c, "alice");
  ck_assert_ptr_null(jw__jobtable_first_finished(o, NULL));
  jw__jobtable_set_final(&t, &c);
  jw__jobtable_set_final(&t, &a);
  /* Twice is once. */
  jw__jobtable_set_final(&t, &a);
  ck_assert_uint_eq(o->nrunning, 1);
  ck_assert_uint_eq(o->nfinished, 2);
  ck_assert_uint_eq(t.nrunning, 1);
  ck_assert_ptr_eq(jw__jobtable_first_finished(o, NULL), &c);
  ck_assert_ptr_eq(jw__jobtable_first_finished(o, &c), &a);
  jw__jobtable_remove(&t, &c);
  ck_assert_ptr_eq(jw__jobtable_first_finished(o, NULL), &a);
  ck_assert_uint_eq(o->nfinished, 1);
  /* Removing a running job takes it off the running counts. */
  jw__jobtable_remove(&t, &b);
  ck_assert_uint_eq(o->nrunning, 0);
  ck_assert_uint_eq(t.nrunning, 0);
  jw__jobtable_remove(&t, &a);
}
END_TEST

START_TEST(test_disk_per_owner) {
  jw__jobent_t a, b, c;
  jw__owner_t *o = add_three(&a, &b, &c, "bob");
  jw__jobtable_set_disk(&a, 100);
  jw__jobtable_set_disk(&b, 50);
  jw__jobtable_set_disk(&a, 150);
  jw__jobtable_set_disk(&c, 7);
  ck_assert_uint_eq(o->disk, 200);
  ck_assert_uint_eq(c.owner->disk, 7);
  jw__jobtable_remove(&t, &a);
  ck_assert_uint_eq(o->disk, 50);
  /* Out of the table, a job counts no more. */
  jw__jobtable_set_disk(&a, 1000);
  ck_assert_uint_eq(o->disk, 50);
  jw__jobtable_remove(&t, &b);
  jw__jobtable_remove(&t, &c);
}
END_TEST

/* Past the initial buckets every job and owner is still found. */
START_TEST(test_growth) {
  enum { N = 1000 };
  jw__jobent_t *e = calloc(N, sizeof(*e));
  char owner[16], id[16];
  ck_assert_ptr_nonnull(e);
  for (int k = 0; k < N; k++) {
    snprintf(owner, sizeof(owner), "o%d", k % 300);
    add(&e[k], k, owner);
  }
  ck_assert_uint_gt(t.ids.nbuckets, 64);
  ck_assert_uint_gt(t.owners.nbuckets, 64);
  ck_assert_uint_eq(t.nowners, 300);
  for (int k = 0; k < N; k++) {
    snprintf(id, sizeof(id), "job%d", k);
    snprintf(owner, sizeof(owner), "o%d", k % 300);
    ck_assert_ptr_eq(jw__jobtable_find(&t, id), &e[k]);
    ck_assert_ptr_eq(jw__jobtable_owner(&t, owner), e[k].owner);
  }
  for (int k = 0; k < N; k++)
    jw__jobtable_remove(&t, &e[k]);
  free(e);
}
END_TEST

/*
 * Every allocation failing in turn: init and owner_get say -ENOMEM /
 * NULL and leave nothing; a hash that cannot grow keeps every entry.
 */
START_TEST(test_failmalloc) {
  size_t n;
  int injected = 1;
  jw__jobtable_destroy(&t);
  for (n = 0; injected && n < 1000; n++) {
    jw__jobent_t *e = calloc(80, sizeof(*e));
    char owner[16];
    int err, k, added = 0;
    ck_assert_ptr_nonnull(e);
    failmalloc_arm(n);
    err = jw__jobtable_init(&t);
    for (k = 0; err == 0 && k < 80; k++) {
      jw__owner_t *o;
      snprintf(owner, sizeof(owner), "o%d", k);
      o = jw__jobtable_owner_get(&t, owner);
      if (o == NULL) {
        err = -ENOMEM;
        break;
      }
      snprintf(e[k].id, sizeof(e[k].id), "job%d", k);
      jw__jobtable_insert(&t, &e[k], o);
      added++;
    }
    injected = n < failmalloc_disarm();
    /* A failed growth is no error: the hash only gets fuller. */
    if (err != 0)
      ck_assert(injected && err == -ENOMEM);
    if (err == 0 || added > 0 || t.ids.buckets != NULL) {
      for (k = 0; k < added; k++) {
        snprintf(owner, sizeof(owner), "job%d", k);
        ck_assert_ptr_eq(jw__jobtable_find(&t, owner), &e[k]);
        jw__jobtable_remove(&t, &e[k]);
      }
      ck_assert_uint_eq(t.nowners, 0);
      jw__jobtable_destroy(&t);
    }
    free(e);
  }
  ck_assert(!injected);
  fprintf(stderr, "failmalloc: %zu allocations failed in turn\n", n - 1);
  /* The teardown checks an empty table. */
  ck_assert_int_eq(jw__jobtable_init(&t), 0);
}
END_TEST

static Suite *jobtable_suite(void) {
  Suite *s = suite_create("jobtable");
  TCase *tc = test_tcase(s, "core", setup, teardown, 0);
  const TTest *const tc_tests[] = {test_find_and_remove,     test_owner_records,
                                   test_age_and_owner_order, test_finished_fifo,
                                   test_disk_per_owner,      test_growth,
                                   test_failmalloc,          NULL};
  test_add_tests(tc, tc_tests);
  return s;
}

int main(void) { return test_run_suite(jobtable_suite()); }
