/*
 * Unit tests for lib/common/turn.c's next-turn queue: the turns a server's
 * connections share run once each, in the order they were scheduled, on
 * the next turn of the loop; a turn scheduled by a callback waits for the
 * turn after; a cancelled one never runs; and the queue's handle is idle
 * (the loop may block) once nothing is due.
 */
#include <check.h>
#include <stdlib.h>

#include "../test_common.h"
#include "turn.h"

static uv_loop_t loop;
static jw__turnq_t q;
static int order[16], norder;

typedef struct {
  jw__turn_t t;
  int id;
  jw__turn_t *cancel; /* cancelled from this one's callback */
  bool again;         /* schedules itself once more */
  void **free_owner;  /* frees *free_owner after cancelling its turn */
} item_t;

static void on_turn(jw__turn_t *t) {
  item_t *it = t->data;
  if (norder < 16)
    order[norder++] = it->id;
  if (it->cancel != NULL)
    jw__turn_cancel(it->cancel);
  if (it->free_owner != NULL) {
    free(*it->free_owner);
    *it->free_owner = NULL;
  }
  if (it->again) {
    it->again = false;
    jw__turn_schedule(t);
  }
}

static void item(item_t *it, int id) {
  it->id = id;
  jw__turn_init(&it->t, &q, on_turn, it);
}

static void setup(void) {
  norder = 0;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  jw__turnq_init(&q, &loop);
}

static void teardown(void) {
  jw__turnq_close(&q, NULL, NULL);
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
}

START_TEST(test_once_in_order) {
  item_t a = {0}, b = {0}, c = {0};
  item(&a, 1);
  item(&b, 2);
  item(&c, 3);
  jw__turn_schedule(&b.t);
  jw__turn_schedule(&a.t);
  jw__turn_schedule(&b.t); /* already due: runs once, where it was */
  jw__turn_schedule(&c.t);
  ck_assert(uv_is_active((uv_handle_t *)&q.idle));
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(norder, 3);
  ck_assert_int_eq(order[0], 2);
  ck_assert_int_eq(order[1], 1);
  ck_assert_int_eq(order[2], 3);
  /* Nothing due: the handle is stopped, so the loop would block in poll. */
  ck_assert(!uv_is_active((uv_handle_t *)&q.idle));
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(norder, 3);
}
END_TEST

START_TEST(test_scheduled_from_callback_waits_a_turn) {
  item_t a = {0}, b = {0};
  item(&a, 1);
  item(&b, 2);
  a.again = true;
  jw__turn_schedule(&a.t);
  jw__turn_schedule(&b.t);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(norder, 2); /* a, b; not a again in the same turn */
  ck_assert(uv_is_active((uv_handle_t *)&q.idle));
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(norder, 3);
  ck_assert_int_eq(order[2], 1);
  ck_assert(!uv_is_active((uv_handle_t *)&q.idle));
}
END_TEST

/* A callback cancels a turn due after it in the same turn and frees its
 * owner, as closing another connection does: the freed one never runs
 * (ASan sees no stale use), and the one between still does. */
START_TEST(test_cancel_and_free_from_callback) {
  item_t a = {0}, b = {0};
  item_t *c = calloc(1, sizeof(*c));
  void *owner = c;
  ck_assert_ptr_nonnull(c);
  item(&a, 1);
  item(&b, 2);
  item(c, 3);
  a.cancel = &c->t;
  a.free_owner = &owner;
  jw__turn_schedule(&a.t);
  jw__turn_schedule(&b.t);
  jw__turn_schedule(&c->t);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(norder, 2);
  ck_assert_int_eq(order[0], 1);
  ck_assert_int_eq(order[1], 2);
  ck_assert_ptr_null(owner);
  ck_assert(!uv_is_active((uv_handle_t *)&q.idle));
}
END_TEST

/* Closing the queue drops what is due: nothing runs after. */
START_TEST(test_close_drops_due) {
  item_t a = {0};
  item(&a, 1);
  jw__turn_schedule(&a.t);
  jw__turnq_close(&q, NULL, NULL);
  jw__turn_schedule(&a.t); /* closing: refused */
  ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ck_assert_int_eq(norder, 0);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  /* teardown's close and run find nothing left */
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  jw__turnq_init(&q, &loop);
}
END_TEST

int main(void) {
  const TTest *const tests[] = {
      test_once_in_order, test_scheduled_from_callback_waits_a_turn,
      test_cancel_and_free_from_callback, test_close_drops_due, NULL};
  return test_run_list("turn", setup, teardown, 0, tests);
}
