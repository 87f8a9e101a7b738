/*
 * teleportd's heap given back when connections have come and gone
 * (trim.h).
 */
#include "trim.h"

#include <stddef.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static void trim_heap(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void on_timer(uv_timer_t *h) {
  jw_trim_t *t = h->data;
  t->trim();
  t->trims++;
}

void jw_trim_init(jw_trim_t *t, uv_loop_t *loop, uint64_t delay_ms,
                  void (*trim)(void)) {
  t->delay_ms = delay_ms ? delay_ms : JW_TRIM_DELAY_MS;
  t->trim = trim ? trim : trim_heap;
  t->trims = 0;
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_unref((uv_handle_t *)&t->timer);
}

void jw_trim_note(jw_trim_t *t) {
  if (uv_is_active((uv_handle_t *)&t->timer) ||
      uv_is_closing((uv_handle_t *)&t->timer))
    return;
  uv_timer_start(&t->timer, on_timer, t->delay_ms, 0);
}

void jw_trim_close(jw_trim_t *t, uv_close_cb cb) {
  if (!uv_is_closing((uv_handle_t *)&t->timer))
    uv_close((uv_handle_t *)&t->timer, cb);
}
