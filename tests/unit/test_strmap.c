/*
 * Unit tests for lib/common/strmap, the library's one string-keyed hash:
 * both key shapes, growth past the first buckets with every element still
 * found, removal, and a failed growth that leaves a working map.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../failmalloc.h"
#include "../test_common.h"
#include "strmap.h"

typedef struct {
  char key[16];
  jw__list_t node;
} arr_item_t;

typedef struct {
  jw__list_t node;
  char *name;
} ptr_item_t;

#define N 1000

START_TEST(test_array_keys_grow) {
  jw__strmap_t m;
  arr_item_t *it = calloc(N, sizeof(*it));
  ck_assert_ptr_nonnull(it);
  ck_assert_int_eq(jw__strmap_init(&m, arr_item_t, node, key, false), 0);
  ck_assert_ptr_null(jw__strmap_find(&m, "k0"));
  for (int i = 0; i < N; i++) {
    snprintf(it[i].key, sizeof(it[i].key), "k%d", i);
    jw__strmap_insert(&m, &it[i].node);
  }
  ck_assert_uint_eq(m.count, N);
  ck_assert_uint_ge(m.nbuckets, N);
  for (int i = 0; i < N; i++)
    ck_assert_ptr_eq(jw__strmap_find(&m, it[i].key), &it[i].node);
  ck_assert_ptr_null(jw__strmap_find(&m, "k1000"));
  ck_assert_ptr_null(jw__strmap_find(&m, NULL));
  /* Every other one out; the rest still found, the removed not. */
  for (int i = 0; i < N; i += 2)
    jw__strmap_remove(&m, &it[i].node);
  jw__strmap_remove(&m, &it[0].node); /* twice: harmless */
  ck_assert_uint_eq(m.count, N / 2);
  for (int i = 0; i < N; i++)
    ck_assert_ptr_eq(jw__strmap_find(&m, it[i].key),
                     i % 2 ? &it[i].node : NULL);
  jw__strmap_destroy(&m);
  free(it);
}
END_TEST

START_TEST(test_pointer_keys) {
  jw__strmap_t m;
  ptr_item_t a = {.name = "alice"}, b = {.name = "bob"};
  ck_assert_int_eq(jw__strmap_init(&m, ptr_item_t, node, name, true), 0);
  jw__strmap_insert(&m, &a.node);
  jw__strmap_insert(&m, &b.node);
  ck_assert_ptr_eq(jw__strmap_find(&m, "alice"), &a.node);
  ck_assert_ptr_eq(jw__strmap_find(&m, "bob"), &b.node);
  ck_assert_ptr_null(jw__strmap_find(&m, "carol"));
  jw__strmap_remove(&m, &a.node);
  ck_assert_ptr_null(jw__strmap_find(&m, "alice"));
  jw__strmap_destroy(&m);
}
END_TEST

/* Every allocation failing in turn: init says -ENOMEM, growth keeps going. */
START_TEST(test_failmalloc) {
  arr_item_t *it = calloc(200, sizeof(*it));
  size_t n, calls = 0;
  ck_assert_ptr_nonnull(it);
  for (n = 1;; n++) {
    jw__strmap_t m;
    failmalloc_arm(n);
    int r = jw__strmap_init(&m, arr_item_t, node, key, false);
    if (r != 0) {
      calls = failmalloc_disarm();
      ck_assert_int_eq(r, -ENOMEM);
      continue;
    }
    for (int i = 0; i < 200; i++) {
      snprintf(it[i].key, sizeof(it[i].key), "k%d", i);
      jw__strmap_insert(&m, &it[i].node);
    }
    calls = failmalloc_disarm();
    for (int i = 0; i < 200; i++)
      ck_assert_ptr_eq(jw__strmap_find(&m, it[i].key), &it[i].node);
    jw__strmap_destroy(&m);
    if (n > calls)
      break;
  }
  ck_assert_uint_gt(n, 2);
  free(it);
}
END_TEST

int main(void) {
  Suite *s = suite_create("strmap");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {test_array_keys_grow, test_pointer_keys,
                                   test_failmalloc, NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
