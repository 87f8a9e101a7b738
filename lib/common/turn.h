/*
 * "On the next loop turn", one way for the whole library, and the loop's
 * turn counter.
 *
 * jw__turn_t runs a callback once on the next turn of the loop, from a
 * jw__turnq_t that its owner shares among many (a server's connections):
 * one uv_idle handle per queue, active only while a callback is due, and
 * a list node per turn. An active idle handle makes the loop poll for I/O
 * without blocking, and its callback runs in that same turn, after the
 * due timers and before the poll; a zero timeout timer would do the same
 * but runs among the timers, whose order against other zero timers is the
 * start order. Scheduling twice before the turn runs the callback once.
 * The callbacks due run in the order they were scheduled; one scheduled
 * by a callback runs on the turn after. A uv_idle handle per turn cost
 * each connection 120 bytes; a node on the shared queue costs 16.
 *
 * jw__turns_t counts the turns, for work budgeted per turn: a uv_prepare
 * handle, unref'd so that it keeps no loop alive, bumps turn just before
 * each poll for I/O. libuv 1.44 has no loop-count metric, and uv_now()
 * only moves per millisecond.
 */
#ifndef JW_COMMON_TURN_H
#define JW_COMMON_TURN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"

typedef struct jw__turn_s jw__turn_t;
typedef void (*jw__turn_cb)(jw__turn_t *t);

typedef struct {
  uv_idle_t idle;
  jw__list_t due; /* the turns scheduled, oldest first */
} jw__turnq_t;

void jw__turnq_init(jw__turnq_t *q, uv_loop_t *loop);

/* Closes the queue's handle (close_cb gets it, with data as its data).
 * The turns still on it are dropped: close their owners first. */
void jw__turnq_close(jw__turnq_t *q, void *data, uv_close_cb close_cb);

struct jw__turn_s {
  jw__list_t node; /* on q->due while scheduled */
  jw__turnq_t *q;
  jw__turn_cb cb;
  void *data; /* the owner's */
};

void jw__turn_init(jw__turn_t *t, jw__turnq_t *q, jw__turn_cb cb, void *data);

/* Asks for cb on the next turn; idempotent until it runs. */
void jw__turn_schedule(jw__turn_t *t);

/* Takes back a request not yet run; the turn may be freed after it. */
void jw__turn_cancel(jw__turn_t *t);

typedef struct {
  uv_prepare_t prepare;
  uint64_t turn;
  uint64_t spent_turn; /* the turn spent counts for */
  int spent;
} jw__turns_t;

/* Starts counting; close with jw__turns_close. */
void jw__turns_init(jw__turns_t *t, uv_loop_t *loop);

/*
 * Takes one unit of a budget of per_turn units per loop turn. Returns
 * false when this turn's budget is spent (try again on the next turn).
 */
bool jw__turns_spend(jw__turns_t *t, int per_turn);

/* Closes the handle: close_cb gets it with its data set to data. */
void jw__turns_close(jw__turns_t *t, void *data, uv_close_cb close_cb);

#endif /* JW_COMMON_TURN_H */
