/*
 * One TLS + HTTP/2 connection on a libuv TCP handle, shared by the server
 * and client roles: the read path uv_read -> SSL_read (reading the bytes
 * in hand through the connection's BIO) -> nghttp2_session_mem_recv, the
 * write path nghttp2_session_mem_send -> SSL_write (whose BIO appends the
 * records to the gather buffer) -> uv_write with one write in flight and
 * the next batch gathering meanwhile. The role owns the nghttp2 session
 * and the policy; this file owns bytes, buffers and handle lifetimes.
 */
#ifndef JW_RPC_CONN_INT_H
#define JW_RPC_CONN_INT_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "turn.h"

/* The plaintext of one full TLS record (SSL3_RT_MAX_PLAIN_LENGTH). */
#define JW__CONN_RECORD 16384
/* Plaintext is staged up to one full TLS record before SSL_write. */
#define JW__CONN_STAGE JW__CONN_RECORD
/*
 * The payload of a DATA frame we send: with its 9-byte header a full
 * frame is one full TLS record.
 */
#define JW__CONN_DATA_MAX (JW__CONN_RECORD - 9)
/* The gather buffer stops taking frames past this; nghttp2 keeps the rest. */
#define JW__CONN_WBUF_CAP (64 * 1024)
/*
 * A write buffer never grows past this: the gather cap plus the largest
 * single write that can follow it (a 64 KiB header block sent through,
 * and TLS framing or a handshake flight).
 */
#define JW__CONN_WBUF_MAX (JW__CONN_WBUF_CAP + 96 * 1024)
#define JW__CONN_RBUF 65536
/*
 * Received bytes TLS has not taken yet (a handshake step put off to the
 * next turn) are kept up to this; more before the handshake is refused.
 */
#define JW__CONN_PEND_MAX (2 * JW__CONN_RBUF)

/*
 * nghttp2's allocations of this size or more (its 16,394-byte outbound
 * frame buffer, its 4 KiB stream table) get a mapping of their own, of
 * which the kernel backs only the pages touched; at most this many per
 * connection at a time.
 */
#define JW__CONN_H2_MAP_MIN 4096
#define JW__CONN_H2_MAPS 4

/*
 * The size of nghttp2's outbound frame buffer, the one its session makes
 * when created and keeps: NGHTTP2_FRAMEBUF_CHUNKLEN of nghttp2_session.h,
 * a frame header, a pad length byte and a 16 KiB payload.
 */
#define JW__CONN_H2_FRAMEBUF (9 + 1 + 16384)

typedef struct jw__conn_s jw__conn_t;

/*
 * How the connection's bytes reach the peer and how its socket ends. The
 * connection core calls these and knows no mode of its own: the TCP
 * transport (jw__tcp_transport, the default) writes to and closes c->tcp;
 * a role with another life for its socket (the client reopens it for the
 * next address) wraps it, and the plaintext test connection of the test
 * builds replaces it.
 */
typedef struct {
  /*
   * Hands the gathered bytes (c->gather, not empty, no write in flight)
   * to the peer. A transport that starts a write sets c->writing and
   * moves the bytes out of gather; its completion is write_cb's. One
   * that keeps them (a test reading them itself) returns 0 and leaves
   * them. Returns 0 or a negative code (the connection has been failed).
   */
  int (*write)(jw__conn_t *c);
  /* Closes the socket's handle, counted in c->open_handles. */
  void (*close)(jw__conn_t *c);
} jw__transport_ops_t;

/* The TCP transport: uv_write to c->tcp, one write in flight. */
extern const jw__transport_ops_t jw__tcp_transport;
int jw__tcp_write(jw__conn_t *c);
void jw__tcp_close(jw__conn_t *c);

typedef struct {
  /*
   * Whether a handshake step may run now (NULL: always). When not, the
   * step is put off to the next loop turn (jw__conn_schedule), with the
   * bytes it needs kept in c->pend.
   */
  bool (*handshake_step)(jw__conn_t *c);
  /* TLS is up. Returns 0, or a negative code to fail the connection. */
  int (*handshake_done)(jw__conn_t *c);
  /*
   * The connection failed (socket error, end of stream, TLS error, HTTP/2
   * protocol error): err is the code, c->errmsg says why. Input is no
   * longer processed; the role decides when to close.
   */
  void (*failed)(jw__conn_t *c, int err);
  /* Work scheduled with jw__conn_schedule, on the next loop turn. */
  void (*deferred)(jw__conn_t *c);
  /* After input was processed or a write finished, output flushed. */
  void (*after_io)(jw__conn_t *c);
  /* Every handle is closed; the role frees what holds c. */
  void (*closed)(jw__conn_t *c);
} jw__conn_ops_t;

struct jw__conn_s {
  uv_loop_t *loop;
  const jw__conn_ops_t *ops;
  const jw__transport_ops_t *transport; /* &jw__tcp_transport unless set */
  void *owner;
  uv_tcp_t tcp;
  jw__turn_t next; /* runs deferred work and the send on the next turn */
  int open_handles;
  SSL *ssl; /* owns the BIO (conn.c), which reads in/pend, writes gather */
  nghttp2_session *h2;
  bool server;
  bool tls_up;
  bool dead;          /* failed: no more input, no more frames */
  bool closing;       /* handles are closing or will close */
  bool close_wait;    /* close once the written bytes are out */
  bool writing;       /* a uv_write is in flight */
  bool in_input;      /* a flush follows anyway */
  bool turn_owed;     /* server: scheduled during input, run at its end */
  bool hs_deferred;   /* server handshake step put off to the next turn */
  bool read_paused;   /* the role stopped reading (output backlog) */
  uint64_t nwrites;   /* writes completed: the socket's progress */
  int alert_recv;     /* the last fatal TLS alert received, or -1 */
  int alert_sent;     /* the last fatal TLS alert our side sent, or -1 */
  uv_write_t *wreq;   /* with the write buffers: made by a write, freed idle */
  jw__buf_t gather;   /* TLS records waiting for the next write */
  jw__buf_t inflight; /* the write in flight */
  /*
   * Received bytes for TLS: first pend (kept between inputs, and only
   * then: empty and freed once TLS took them), then the caller's bytes
   * in hand during jw__conn_input (in, in_len; not owned).
   */
  jw__buf_t pend;
  const uint8_t *in;
  size_t in_len;
  struct {
    void *p;
    size_t len;
    bool framebuf;             /* the session's frame buffer (jw__conn_quiet) */
  } h2_maps[JW__CONN_H2_MAPS]; /* nghttp2's large blocks (conn.c) */
  size_t h2_heap;              /* nghttp2's bytes on the heap */
  bool h2_creating;            /* in jw__conn_h2_new */
  bool h2_sent;   /* nghttp2 made frames since the last jw__conn_quiet */
  bool fb_backed; /* the frame buffer was written since its last release */
  /*
   * Why it failed, set by jw__conn_fail (NULL before): on the heap, as
   * few connections ever fail, or a fixed sentence when that fails.
   */
  char *errmsg;
};

/*
 * Initializes the tcp handle with the TCP transport; the next-turn work
 * goes on turns, the owner's queue, which must outlive the connection's
 * close. Timeouts are the role's (a server's sweep, a client's timer).
 * Returns 0 or a UV code.
 */
int jw__conn_init(jw__conn_t *c, uv_loop_t *loop, jw__turnq_t *turns,
                  const jw__conn_ops_t *ops, void *owner, bool server);

/*
 * Starts TLS on the connected tcp handle: creates the SSL object, starts
 * reading; the client side also sends its ClientHello. host (client only)
 * is the name or IP the server certificate must match. Returns 0 or a
 * negative code.
 */
int jw__conn_start_tls(jw__conn_t *c, SSL_CTX *ctx, const char *host);

/* Feeds received bytes as if read from the socket. */
void jw__conn_input(jw__conn_t *c, const uint8_t *p, size_t n);

/* Asks for a send (and the deferred hook) on the next loop turn. */
void jw__conn_schedule(jw__conn_t *c);

/*
 * Stops (pause) or resumes reading the socket: a role whose output is
 * backed up stops taking input that would make more of it (h2o does the
 * same past a soft cap). Idempotent.
 */
void jw__conn_read_pause(jw__conn_t *c, bool pause);

/* Runs the nghttp2 send loop now and starts a write if none is in flight. */
void jw__conn_flush(jw__conn_t *c);

/*
 * Creates c's nghttp2 session in c's role with the options and SETTINGS
 * both roles share (our stream and connection windows, the header list
 * limit, a 64 KiB cap on header blocks we send) plus the role's own first
 * setting, and conn_window as the connection's receive window. Windows
 * are never updated automatically: each role gives credit back with
 * nghttp2_session_consume as bytes leave its memory (the client so that a
 * paused call holds the server back, the server so that its windows bound
 * the request bytes it holds). Returns 0, -ENOMEM or JW_EHTTP2.
 */
int jw__conn_h2_new(jw__conn_t *c, const nghttp2_session_callbacks *cbs,
                    void *user, int32_t conn_window,
                    nghttp2_settings_entry first);

/*
 * nghttp2's data_source_read_length_callback for both roles: every DATA
 * frame carries at most JW__CONN_DATA_MAX bytes, whatever the peer's
 * SETTINGS_MAX_FRAME_SIZE, so that a full frame is one TLS record. With
 * nghttp2's own 16,384-byte payloads each full frame took a record of
 * 16,384 bytes and a second of 9: twice the records to seal here and to
 * open at the peer.
 */
ssize_t jw__conn_data_length(nghttp2_session *session, uint8_t frame_type,
                             int32_t stream_id, int32_t session_window,
                             int32_t stream_window, uint32_t max_frame_size,
                             void *user_data);

/*
 * The bytes c holds now outside OpenSSL: its write request and buffers,
 * its pending input buffer, its nghttp2 session's heap blocks and the pages of
 * its mapped blocks the kernel backs (for tests and benchmarks).
 */
size_t jw__conn_held(const jw__conn_t *c);

/*
 * Called for each connection every so often (the server's sweep): when
 * nghttp2 made no frame since the last call and has none to make, gives
 * the pages of its frame buffer back to the kernel (the buffer is dead
 * between frames), once until the next frame. Costs a store per frame
 * sent and, per quiet connection, one madvise.
 */
void jw__conn_quiet(jw__conn_t *c);

/* Marks the connection failed with err and a sentence; calls ops->failed. */
void jw__conn_fail(jw__conn_t *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Closes the handles. graceful: a close_notify is sent and what is queued
 * goes out first (bounded by the caller's timer); otherwise at once.
 * ops->closed runs when every handle is closed.
 */
void jw__conn_close(jw__conn_t *c, bool graceful);

/* The close callback of the connection's handles (counts them down). */
void jw__conn_handle_closed(uv_handle_t *h);

/* "ip:port" or "[ip]:port" of the peer, "?" when unknown. */
void jw__conn_peer(jw__conn_t *c, char *buf, size_t cap);

#endif /* JW_RPC_CONN_INT_H */
