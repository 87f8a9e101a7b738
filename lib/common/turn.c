#include "turn.h"

static void on_idle(uv_idle_t *h) {
  jw__turn_t *t = h->data;
  /* Stopped first: the callback may schedule the next turn. */
  uv_idle_stop(h);
  t->cb(t);
}

void jw__turn_init(jw__turn_t *t, uv_loop_t *loop, jw__turn_cb cb, void *data) {
  uv_idle_init(loop, &t->idle);
  t->idle.data = t;
  t->cb = cb;
  t->data = data;
}

void jw__turn_schedule(jw__turn_t *t) {
  if (uv_is_closing((uv_handle_t *)&t->idle) ||
      uv_is_active((uv_handle_t *)&t->idle))
    return;
  uv_idle_start(&t->idle, on_idle);
}

void jw__turn_cancel(jw__turn_t *t) { uv_idle_stop(&t->idle); }

void jw__turn_close(jw__turn_t *t, uv_close_cb close_cb) {
  uv_idle_stop(&t->idle);
  if (uv_is_closing((uv_handle_t *)&t->idle))
    return;
  t->idle.data = t->data;
  uv_close((uv_handle_t *)&t->idle, close_cb);
}

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
