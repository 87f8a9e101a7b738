/*
 * teleportd's heap, given back to the kernel once connections have come
 * and gone.
 *
 * A TLS handshake allocates and frees tens of KiB on the way (the
 * client's certificate and key decoded, the key exchange, the handshake
 * messages). When many run at once, what they free is left in holes
 * between the chunks of the connections that stay: counted in the RSS,
 * reused only by the next burst of handshakes. glibc's free(3) returns
 * memory to the kernel only from the top of the heap; malloc_trim(3)
 * returns every whole free page, wherever it is.
 *
 * jw_trim_note says memory may just have been freed (a connection was
 * opened, refused or closed). The trim runs JW_TRIM_DELAY_MS after the
 * first note since the last trim: a burst of connections costs one trim,
 * and notes that never stop cost at most one per delay (a note does not
 * put a pending trim off). The timer does not keep the loop alive.
 *
 * Without glibc the default trim does nothing.
 */
#ifndef TELEPORTD_TRIM_H
#define TELEPORTD_TRIM_H

#include <stdint.h>
#include <uv.h>

#define JW_TRIM_DELAY_MS 250

typedef struct {
  uv_timer_t timer;
  uint64_t delay_ms;
  void (*trim)(void); /* malloc_trim(0) unless set */
  uint64_t trims;     /* trims run */
} jw_trim_t;

/* delay_ms 0: JW_TRIM_DELAY_MS. trim NULL: malloc_trim(0). */
void jw_trim_init(jw_trim_t *t, uv_loop_t *loop, uint64_t delay_ms,
                  void (*trim)(void));

void jw_trim_note(jw_trim_t *t);

/* Closes the timer; cb (may be NULL) gets the timer's handle. */
void jw_trim_close(jw_trim_t *t, uv_close_cb cb);

#endif /* TELEPORTD_TRIM_H */
