/*
 * Unit tests for lib/common/list.h, the library's one intrusive list.
 */
#include <check.h>
#include <stdlib.h>

#include "../test_common.h"
#include "list.h"

typedef struct {
  int v;
  jw__list_t node;
} item_t;

static int values(jw__list_t *head, int *out, int cap) {
  jw__list_t *n;
  int k = 0;
  jw__list_foreach(n, head) {
    if (k < cap)
      out[k] = jw__list_data(n, item_t, node)->v;
    k++;
  }
  return k;
}

START_TEST(test_empty) {
  jw__list_t head;
  jw__list_init(&head);
  ck_assert(jw__list_empty(&head));
  ck_assert_ptr_null(jw__list_first(&head));
  ck_assert_ptr_null(jw__list_last(&head));
}
END_TEST

START_TEST(test_order_and_remove) {
  jw__list_t head;
  item_t it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
  int v[8];
  jw__list_init(&head);
  jw__list_insert_tail(&head, &it[1].node);
  jw__list_insert_tail(&head, &it[2].node);
  jw__list_insert_head(&head, &it[0].node);
  jw__list_insert_tail(&head, &it[3].node);
  ck_assert_int_eq(values(&head, v, 8), 4);
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(v[i], i + 1);
  ck_assert_ptr_eq(jw__list_first(&head), &it[0].node);
  ck_assert_ptr_eq(jw__list_last(&head), &it[3].node);
  /* Removing a middle node, then the same node again, changes nothing. */
  jw__list_remove(&it[1].node);
  ck_assert(!jw__list_linked(&it[1].node));
  jw__list_remove(&it[1].node);
  ck_assert_int_eq(values(&head, v, 8), 3);
  ck_assert_int_eq(v[0], 1);
  ck_assert_int_eq(v[1], 3);
  ck_assert_int_eq(v[2], 4);
  ck_assert(jw__list_linked(&it[2].node));
}
END_TEST

START_TEST(test_remove_while_iterating) {
  jw__list_t head, *n, *tmp;
  jw__list_init(&head);
  for (int i = 0; i < 100; i++) {
    item_t *it = calloc(1, sizeof(*it));
    ck_assert_ptr_nonnull(it);
    it->v = i;
    jw__list_insert_tail(&head, &it->node);
  }
  /* Drop the odd ones, then free the rest; LSan checks nothing leaks. */
  jw__list_foreach_safe(n, tmp, &head) {
    item_t *it = jw__list_data(n, item_t, node);
    if (it->v % 2) {
      jw__list_remove(n);
      free(it);
    }
  }
  int v[64];
  ck_assert_int_eq(values(&head, v, 64), 50);
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(v[i], 2 * i);
  jw__list_foreach_safe(n, tmp, &head) {
    jw__list_remove(n);
    free(jw__list_data(n, item_t, node));
  }
  ck_assert(jw__list_empty(&head));
}
END_TEST

/* Moving all of one list to the end of another keeps both orders and
 * leaves the source empty; an empty source changes nothing. */
START_TEST(test_move_all) {
  jw__list_t dst, src;
  item_t it[5] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}, {5, {0}}};
  int v[8];
  jw__list_init(&dst);
  jw__list_init(&src);
  jw__list_move_all(&dst, &src);
  ck_assert(jw__list_empty(&dst));
  jw__list_insert_tail(&dst, &it[0].node);
  for (int i = 1; i < 5; i++)
    jw__list_insert_tail(&src, &it[i].node);
  jw__list_move_all(&dst, &src);
  ck_assert(jw__list_empty(&src));
  ck_assert_int_eq(values(&dst, v, 8), 5);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(v[i], i + 1);
  ck_assert_ptr_eq(jw__list_last(&dst), &it[4].node);
  /* Into an empty list, and the moved nodes still unlink. */
  jw__list_move_all(&src, &dst);
  ck_assert(jw__list_empty(&dst));
  jw__list_remove(&it[2].node);
  ck_assert_int_eq(values(&src, v, 8), 4);
  ck_assert_int_eq(v[2], 4);
}
END_TEST

/* A zeroed node (calloc'd, never linked) is not linked and removes safely. */
START_TEST(test_zeroed_node) {
  item_t it = {0};
  ck_assert(!jw__list_linked(&it.node));
  jw__list_remove(&it.node);
  ck_assert_ptr_null(it.node.next);
}
END_TEST

int main(void) {
  Suite *s = suite_create("list");
  TCase *tc = test_tcase(s, "core", NULL, NULL, 0);
  const TTest *const tc_tests[] = {
      test_empty,    test_order_and_remove, test_remove_while_iterating,
      test_move_all, test_zeroed_node,      NULL};
  test_add_tests(tc, tc_tests);
  return test_run_suite(s);
}
