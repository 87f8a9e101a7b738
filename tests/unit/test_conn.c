/*
 * The connection core (lib/rpc/conn.c) over a real loopback socket, with
 * no TLS and no HTTP/2 session: the bytes a role gathers go out through
 * the transport with one write in flight, a graceful close waits for the
 * write and a hard one does not, idle connections hold no write memory,
 * and deferred work runs once on the next loop turn.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "conn_int.h"
#include "rpc_test.h"
#include "tls_int.h"

static uv_loop_t loop;
static uv_tcp_t listener;
static uv_tcp_t peer; /* the accepted end */
static bool peer_open;
static bool peer_eof;
static uint8_t *got;
static size_t got_len, got_cap;
static uv_connect_t creq;
static bool connected;

static jw__conn_t conn;
static jw__turnq_t nexts;
static bool closed;
static int nclosed;
static int ndeferred;
static int nfailed;
static int ntransport_writes;

static int op_handshake_done(jw__conn_t *c) { return 0; }
static void op_failed(jw__conn_t *c, int err) { nfailed++; }
static void op_deferred(jw__conn_t *c) { ndeferred++; }
static void op_closed(jw__conn_t *c) {
  closed = true;
  nclosed++;
}
static const jw__conn_ops_t ops = {
    NULL, op_handshake_done, op_failed, op_deferred, NULL, op_closed};

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  if (got_cap - got_len < 65536) {
    got_cap = got_cap * 2 + 65536;
    got = realloc(got, got_cap);
    ck_assert_ptr_nonnull(got);
  }
  *b = uv_buf_init((char *)got + got_len, (unsigned)(got_cap - got_len));
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n > 0)
    got_len += (size_t)n;
  else if (n < 0)
    peer_eof = true;
}

static void on_peer(uv_stream_t *l, int status) {
  ck_assert_int_eq(status, 0);
  uv_tcp_init(&loop, &peer);
  ck_assert_int_eq(uv_accept(l, (uv_stream_t *)&peer), 0);
  peer_open = true;
}

static void on_connect(uv_connect_t *req, int status) {
  ck_assert_int_eq(status, 0);
  connected = true;
}

static void setup(void) {
  struct sockaddr_in a;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  closed = peer_open = peer_eof = connected = false;
  nclosed = ndeferred = nfailed = ntransport_writes = 0;
  got = NULL;
  got_len = got_cap = 0;
  memset(&conn, 0, sizeof(conn));
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", 0, &a);
  ck_assert_int_eq(uv_tcp_bind(&listener, (struct sockaddr *)&a, 0), 0);
  ck_assert_int_eq(uv_listen((uv_stream_t *)&listener, 8, on_peer), 0);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len);
  jw__turnq_init(&nexts, &loop);
  ck_assert_int_eq(jw__conn_init(&conn, &loop, &nexts, &ops, NULL, false), 0);
  ck_assert_int_eq(
      uv_tcp_connect(&creq, &conn.tcp, (struct sockaddr *)&bound, on_connect),
      0);
  ck_assert(rpc_test_run_until(&loop, &connected, 10000));
  ck_assert(rpc_test_run_until(&loop, &peer_open, 10000));
}

static void teardown(void) {
  if (!conn.closing)
    jw__conn_close(&conn, false);
  ck_assert(rpc_test_run_until(&loop, &closed, 10000));
  ck_assert_int_eq(nclosed, 1);
  if (peer_open)
    uv_close((uv_handle_t *)&peer, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
  jw__turnq_close(&nexts, NULL, NULL);
  ck_assert_int_eq(rpc_test_drain(&loop), 0);
  free(got);
}

static uint8_t pattern(size_t i, uint8_t seed) {
  return (uint8_t)(((i + seed) * 2654435761u) >> 11);
}

/* Appends n bytes to the gather buffer, as a role's frames would be. */
static void gather(size_t n, uint8_t seed) {
  size_t off = conn.gather.len;
  ck_assert_int_eq(jw__buf_reserve(&conn.gather, n, 16384, SIZE_MAX), 0);
  for (size_t i = 0; i < n; i++)
    conn.gather.base[off + i] = pattern(i, seed);
  conn.gather.len += n;
}

static size_t want_len;
static bool got_enough(void) { return got_len >= want_len; }

static bool received(size_t n) {
  want_len = n;
  return rpc_test_run_pred(&loop, got_enough, 20000);
}

/* More than loopback's socket buffers take while the peer does not read. */
#define BIG (32u << 20)

/*
 * A write the socket takes whole is finished inside the flush: no write
 * request in flight, nothing left gathered, the write counted, and the
 * buffers given back at once.
 */
START_TEST(test_write_the_socket_takes_is_done_at_once) {
  uv_read_start((uv_stream_t *)&peer, peer_alloc, peer_read);
  gather(100, 1);
  jw__conn_flush(&conn);
  ck_assert(!conn.writing);
  ck_assert_uint_eq(uv_stream_get_write_queue_size((uv_stream_t *)&conn.tcp),
                    0);
  ck_assert_uint_eq(conn.gather.len, 0);
  ck_assert_uint_eq(conn.nwrites, 1);
  ck_assert_ptr_null(conn.gather.base);
  ck_assert_ptr_null(conn.inflight.base);
  gather(200, 2);
  jw__conn_flush(&conn);
  ck_assert(!conn.writing);
  ck_assert_uint_eq(conn.nwrites, 2);
  ck_assert(received(300));
  ck_assert_uint_eq(got_len, 300);
  for (size_t i = 0; i < 100; i++)
    ck_assert_uint_eq(got[i], pattern(i, 1));
  for (size_t i = 0; i < 200; i++)
    ck_assert_uint_eq(got[100 + i], pattern(i, 2));
  ck_assert_int_eq(nfailed, 0);
}
END_TEST

/*
 * What the socket does not take is the one write in flight; the next
 * batch gathers behind it, not beside it, and leaves after it.
 */
START_TEST(test_one_write_in_flight) {
  gather(BIG, 1);
  jw__conn_flush(&conn);
  ck_assert(conn.writing);
  size_t first = conn.inflight.len;
  ck_assert_uint_gt(first, 0);
  ck_assert_uint_le(first, BIG);
  ck_assert_uint_eq(conn.gather.len, 0);
  /* A second batch gathers behind the write in flight, not beside it. */
  gather(200, 2);
  jw__conn_flush(&conn);
  ck_assert(conn.writing);
  ck_assert_uint_eq(conn.inflight.len, first);
  ck_assert_uint_eq(conn.gather.len, 200);
  uv_read_start((uv_stream_t *)&peer, peer_alloc, peer_read);
  ck_assert(received(BIG + 200));
  ck_assert_uint_eq(got_len, BIG + 200);
  for (size_t i = 0; i < BIG; i += 4093)
    ck_assert_uint_eq(got[i], pattern(i, 1));
  ck_assert_uint_eq(got[BIG - 1], pattern(BIG - 1, 1));
  for (size_t i = 0; i < 200; i++)
    ck_assert_uint_eq(got[BIG + i], pattern(i, 2));
  ck_assert_uint_eq(conn.nwrites, 2);
  ck_assert_int_eq(nfailed, 0);
}
END_TEST

START_TEST(test_idle_connection_gives_buffers_back) {
  uv_read_start((uv_stream_t *)&peer, peer_alloc, peer_read);
  gather(50000, 3);
  jw__conn_flush(&conn);
  ck_assert(received(50000));
  bool never = false;
  rpc_test_run_until(&loop, &never, 20);
  ck_assert(!conn.writing);
  /* Nothing to send: neither buffer holds memory any more. */
  ck_assert_ptr_null(conn.gather.base);
  ck_assert_ptr_null(conn.inflight.base);
  ck_assert_uint_eq(conn.gather.cap + conn.inflight.cap, 0);
}
END_TEST

START_TEST(test_graceful_close_waits_for_the_write) {
  gather(BIG, 4);
  jw__conn_flush(&conn);
  ck_assert(conn.writing);
  jw__conn_close(&conn, true);
  ck_assert(conn.closing);
  ck_assert(conn.close_wait);
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert(!closed); /* the write is still in flight */
  uv_read_start((uv_stream_t *)&peer, peer_alloc, peer_read);
  /* The write callback finishes the close once every byte is out. */
  ck_assert(rpc_test_run_until(&loop, &closed, 30000));
  ck_assert_int_eq(nclosed, 1);
  ck_assert(rpc_test_run_until(&loop, &peer_eof, 10000));
  ck_assert_uint_eq(got_len, BIG);
  for (size_t i = 0; i < BIG; i += 4093)
    ck_assert_uint_eq(got[i], pattern(i, 4));
}
END_TEST

START_TEST(test_hard_close_cuts_the_write) {
  gather(BIG, 5);
  jw__conn_flush(&conn);
  ck_assert(conn.writing);
  jw__conn_close(&conn, false);
  /* Closed once, from the loop, with the write canceled under it. */
  ck_assert(!closed);
  ck_assert(rpc_test_run_until(&loop, &closed, 10000));
  ck_assert_int_eq(nclosed, 1);
  ck_assert(!conn.writing);
}
END_TEST

START_TEST(test_schedule_runs_once_on_the_next_turn) {
  jw__conn_schedule(&conn);
  jw__conn_schedule(&conn);
  ck_assert_int_eq(ndeferred, 0); /* never from inside the call */
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(ndeferred, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(ndeferred, 1);
  jw__conn_schedule(&conn);
  uv_run(&loop, UV_RUN_NOWAIT);
  ck_assert_int_eq(ndeferred, 2);
  /* Work scheduled and then closed over never runs. */
  jw__conn_schedule(&conn);
  jw__conn_close(&conn, false);
  ck_assert(rpc_test_run_until(&loop, &closed, 10000));
  ck_assert_int_eq(ndeferred, 2);
}
END_TEST

static int keep_write(jw__conn_t *c) {
  ntransport_writes++;
  return 0;
}

static const jw__transport_ops_t keeping = {keep_write, jw__tcp_close};

START_TEST(test_transport_decides_how_bytes_leave) {
  conn.transport = &keeping;
  uv_read_start((uv_stream_t *)&peer, peer_alloc, peer_read);
  gather(64, 6);
  jw__conn_flush(&conn);
  /* The core hands the bytes to the transport and starts no write. */
  ck_assert_int_eq(ntransport_writes, 1);
  ck_assert(!conn.writing);
  ck_assert_uint_eq(conn.gather.len, 64);
  bool never = false;
  rpc_test_run_until(&loop, &never, 50);
  ck_assert_uint_eq(got_len, 0);
  /* Nothing gathered: the transport is not asked. */
  conn.gather.len = 0;
  jw__conn_flush(&conn);
  ck_assert_int_eq(ntransport_writes, 1);
}
END_TEST

static bool never_now(jw__conn_t *c) { return false; }
static const jw__conn_ops_t deferring_ops = {
    never_now, op_handshake_done, op_failed, op_deferred, NULL, op_closed};

/*
 * Bytes received while the server's handshake step is put off are kept
 * for it, up to JW__CONN_PEND_MAX: a peer sending more before the
 * handshake gets a clear error, not a buffer as large as it likes.
 */
START_TEST(test_input_before_the_handshake_is_capped) {
  jw_tls_ctx_t *tls = rpc_test_tls(true);
  conn.ops = &deferring_ops;
  conn.server = true;
  ck_assert_int_eq(jw__conn_start_tls(&conn, jw__tls_ctx_ssl(tls), NULL), 0);
  static uint8_t junk[JW__CONN_PEND_MAX / 2];
  memset(junk, 0x16, sizeof(junk));
  jw__conn_input(&conn, junk, sizeof(junk));
  ck_assert_int_eq(nfailed, 0);
  ck_assert_uint_eq(conn.pend.len, sizeof(junk));
  jw__conn_input(&conn, junk, sizeof(junk));
  ck_assert_int_eq(nfailed, 0); /* exactly the cap is kept */
  jw__conn_input(&conn, junk, 1);
  ck_assert_int_eq(nfailed, 1);
  ck_assert(conn.dead);
  ck_assert_msg(strstr(conn.errmsg, "before the TLS handshake") != NULL, "%s",
                conn.errmsg);
  ck_assert_uint_le(conn.pend.len, JW__CONN_PEND_MAX);
  jw_tls_ctx_free(tls);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conn");
  TCase *tc = test_tcase(s, "conn", setup, teardown, 120);
  const TTest *const tc_tests[] = {test_write_the_socket_takes_is_done_at_once,
                                   test_one_write_in_flight,
                                   test_idle_connection_gives_buffers_back,
                                   test_graceful_close_waits_for_the_write,
                                   test_hard_close_cuts_the_write,
                                   test_schedule_runs_once_on_the_next_turn,
                                   test_transport_decides_how_bytes_leave,
                                   test_input_before_the_handshake_is_capped,
                                   NULL};
  test_add_tests(tc, tc_tests);
  return rpc_test_main(s);
}
