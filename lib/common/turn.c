#include "turn.h"

/*
 * The turns due now are taken off the queue first, so that one scheduled
 * by a callback waits for the next turn, and each is unlinked before its
 * callback: the callback may schedule it again, cancel another or free
 * its owner (a cancelled turn is off the list it was on).
 */
static void on_idle(uv_idle_t *h) {
  jw__turnq_t *q = h->data;
  jw__list_t now, *n;
  jw__list_init(&now);
  jw__list_move_all(&now, &q->due);
  while ((n = jw__list_first(&now)) != NULL) {
    jw__turn_t *t = jw__list_data(n, jw__turn_t, node);
    jw__list_remove(n);
    t->cb(t);
  }
  if (jw__list_empty(&q->due))
    uv_idle_stop(h);
}

void jw__turnq_init(jw__turnq_t *q, uv_loop_t *loop) {
  uv_idle_init(loop, &q->idle);
  q->idle.data = q;
  jw__list_init(&q->due);
}

void jw__turnq_close(jw__turnq_t *q, void *data, uv_close_cb close_cb) {
  jw__list_t *n;
  while ((n = jw__list_first(&q->due)) != NULL)
    jw__list_remove(n);
  /* Closing stops the handle: data can point at the owner now. */
  q->idle.data = data;
  uv_close((uv_handle_t *)&q->idle, close_cb);
}

void jw__turn_init(jw__turn_t *t, jw__turnq_t *q, jw__turn_cb cb, void *data) {
  jw__list_init(&t->node);
  t->q = q;
  t->cb = cb;
  t->data = data;
}

void jw__turn_schedule(jw__turn_t *t) {
  if (jw__list_linked(&t->node) || uv_is_closing((uv_handle_t *)&t->q->idle))
    return;
  jw__list_insert_tail(&t->q->due, &t->node);
  uv_idle_start(&t->q->idle, on_idle);
}

void jw__turn_cancel(jw__turn_t *t) { jw__list_remove(&t->node); }

static void turns_prepare_cb(uv_prepare_t *h) {
  jw__turns_t *t = h->data;
  t->turn++;
}

void jw__turns_init(jw__turns_t *t, uv_loop_t *loop) {
  t->turn = 1;
  t->spent_turn = 0;
  t->spent = 0;
  uv_prepare_init(loop, &t->prepare);
  t->prepare.data = t;
  uv_prepare_start(&t->prepare, turns_prepare_cb);
  uv_unref((uv_handle_t *)&t->prepare);
}

bool jw__turns_spend(jw__turns_t *t, int per_turn) {
  if (t->spent_turn != t->turn) {
    t->spent_turn = t->turn;
    t->spent = 0;
  }
  return t->spent++ < per_turn;
}

void jw__turns_close(jw__turns_t *t, void *data, uv_close_cb close_cb) {
  /* Closing stops the prepare handle: data can point at the owner now. */
  t->prepare.data = data;
  uv_close((uv_handle_t *)&t->prepare, close_cb);
}
