"""Hostile HTTP/2 clients with a valid certificate, against teleportd.

Each case starts its own teleportd and a well-behaved client (probe.py,
as bob, in its own process), measures that client's idle latency, runs
the attack as alice over mTLS on 127.0.0.1, and then asserts what the
server answered (or that it closed the connection), that it is still up,
that its memory stayed flat where the attack could have grown it, that
the well-behaved client kept being served within LATENCY_FACTOR of its
idle latency, and that its witness job and every byte of its output are
intact (docs/security.md, threat model).
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import abuse_common as ac  # noqa: E402
from abuse_common import ic  # noqa: E402

MAX_PER_CLIENT = 8


class H2Abuse(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = ic.load_stubs()

    def setUp(self):
        self.srv = ic.Server(extra_args=[
            "--max-jobs-per-client", str(MAX_PER_CLIENT), "--max-jobs", "32",
            "--log-level", "info"], env_extra=ac.server_env()).start()
        self.probe = ac.Probe(self.srv.port)
        self.rss0 = ac.rss_bytes(self.srv.proc.pid)
        self.conns = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        self.probe.close()
        self.srv.cleanup()

    def conn(self, **kw):
        c = ac.RawConn(self.srv.port, **kw)
        self.conns.append(c)
        return c

    def test_reflection_answers_before_the_client_half_closes(self):
        """A reflection request on a stream the client keeps open (as
        grpcurl's client does) is answered at once: the server does not
        wait for END_STREAM, then ends the stream itself."""
        c = self.conn()
        path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        hdrs = [(":method", "POST"), (":scheme", "https"), (":path", path),
                (":authority", "127.0.0.1:%d" % self.srv.port),
                ("content-type", "application/grpc"), ("te", "trailers")]
        msg = b"\x3a\x00"  # ServerReflectionRequest{list_services: ""}
        body = b"\x00" + len(msg).to_bytes(4, "big") + msg
        c.send(ac.frame(ac.HEADERS, ac.END_HEADERS, 1, ac.hpack_block(hdrs)) +
               ac.frame(ac.DATA, 0, 1, body))  # no END_STREAM
        c.read_for(20, until=lambda k: any(
            f[1] & ac.END_STREAM for f in k.frames
            if f[2] == 1 and f[0] in (ac.DATA, ac.HEADERS)))
        data = b"".join(f[3] for f in c.of_type(ac.DATA, 1))
        self.assertGreater(len(data), 5, "no answer while the stream is open")
        self.assertIn(b"jobworker.v1.JobWorker", data)
        ended = [f for f in c.frames if f[2] == 1 and f[1] & ac.END_STREAM]
        self.assertTrue(ended, "the server did not end the stream")

    def finish(self, memory=True):
        """The checks every case shares, after its attack."""
        res = self.probe.finish()
        ac.assert_alive(self, self.srv)
        if memory:
            grew = ac.rss_bytes(self.srv.proc.pid) - self.rss0
            self.assertLess(grew, ac.RSS_GROWTH_MAX,
                            "teleportd RSS grew by %d bytes" % grew)
        self.probe.check(self, res)
        sys.stdout.write("  probe: idle p50 %.2f ms, attack p50 %.2f ms, "
                         "max %.1f ms, %d calls\n" %
                         (self.probe.idle_p50 * 1e3, res["p50"] * 1e3,
                          res["max"] * 1e3, res["n"]))

    def repeat(self, attack, seconds=2.0, times=200):
        """Runs attack() (which asserts on its own result) again and again
        for at least seconds, so that the probe's latency is measured
        under attack and not beside it; at most times runs."""
        t0 = time.monotonic()
        n = 0
        while n < times and (n == 0 or time.monotonic() - t0 < seconds):
            attack()
            for c in self.conns:
                c.close()
            self.conns = []
            n += 1
        return n

    def stub(self, who="alice"):
        return self.rpc.JobWorkerStub(ic.channel(self.srv.port, who))

    # ---- the cases ------------------------------------------------------

    def test_rapid_reset(self):
        """20 000 Start requests, each reset right after it was sent:
        nghttp2's reset rate limit sends GOAWAY and the connection closes;
        no more jobs run than --max-jobs-per-client allows."""
        block = ac.hpack_block(ac.grpc_headers(self.srv.port, "Start"))
        body = ic.grpc_frame(self.pb.JobRequest(
            command="sleep", args=["30"]).SerializeToString())
        self.repeat(lambda: self._rapid_reset(block, body), seconds=3)
        self.finish()

    def _rapid_reset(self, block, body):
        c = self.conn()
        sent = 0
        sid = 1
        t0 = time.monotonic()
        while sent < 20000 and not c.closed and time.monotonic() - t0 < 30:
            batch = []
            for _ in range(250):
                batch.append(ac.frame(ac.HEADERS, ac.END_HEADERS, sid, block))
                batch.append(ac.frame(ac.DATA, ac.END_STREAM, sid, body))
                batch.append(ac.rst(sid))
                sid += 2
            if not c.send(b"".join(batch)):
                break
            sent += 250
            c.read_for(0.01)
        c.read_for(10, until=lambda x: x.closed)
        self.assertIsNotNone(c.goaway, "no GOAWAY after %d resets" % sent)
        self.assertTrue(c.closed, "the connection stayed open")
        jobs = self.stub().List(self.pb.ListRequest(), timeout=10).jobs
        running = [j for j in jobs if j.state == self.pb.JOB_STATE_RUNNING]
        self.assertLessEqual(len(running), MAX_PER_CLIENT)
        sys.stdout.write("  %d streams sent, GOAWAY %r, %d jobs ran\n" %
                         (sent, c.goaway, len(running)))

    def test_continuation_flood(self):
        """A header block that never ends (HEADERS without END_HEADERS,
        then CONTINUATION after CONTINUATION): the connection is closed
        after a bounded number of frames."""
        hdrs = ac.grpc_headers(self.srv.port, "Status") + \
            [("x-pad-%d" % i, "v" * 100) for i in range(20000)]
        block = ac.hpack_block(hdrs)
        self.repeat(lambda: self._continuation(block))
        self.finish()

    def _continuation(self, block):
        c = self.conn()
        c.send(ac.frame(ac.HEADERS, 0, 1, block[:100]))
        off, frames = 100, 0
        t0 = time.monotonic()
        while off < len(block) and frames < 20000 and not c.closed and \
                time.monotonic() - t0 < 20:
            batch = []
            for _ in range(100):
                batch.append(ac.frame(ac.CONTINUATION, 0, 1,
                                      block[off:off + 100]))
                off += 100
                frames += 1
            if not c.send(b"".join(batch)):
                break
            c.read_for(0.005)
        c.read_for(10, until=lambda x: x.closed)
        self.assertTrue(c.closed, "still open after %d CONTINUATION frames"
                        % frames)
        self.assertLess(frames, 20000)

    def test_settings_many_entries(self):
        """One SETTINGS frame with 1000 entries: GOAWAY ENHANCE_YOUR_CALM
        and the connection closes."""
        def attack():
            c = self.conn()
            c.send(ac.settings([(0x100 + i, 0) for i in range(1000)]))
            c.read_for(10, until=lambda x: x.closed)
            self.assertTrue(c.closed)
            self.assertIsNotNone(c.goaway)
            self.assertEqual(c.goaway[1], ac.ENHANCE_YOUR_CALM)
        self.repeat(attack)
        self.finish()

    def test_settings_ping_flood_without_reading(self):
        """PING and SETTINGS frames, each owing an ACK, sent by a client
        that never reads: the server stops queueing ACKs and closes the
        connection; its memory stays flat."""
        unit = b"".join(ac.frame(ac.PING, 0, 0, b"12345678") +
                        ac.settings() for _ in range(500))
        n = self.repeat(lambda: self._flood(unit))
        # nghttp2 counts the ACKs it owes (at most 1000 queued); the
        # connection's write buffer is capped, so they do queue up.
        self.assertGreaterEqual(self.srv.log_text().count(
            "Flooding was detected"), n)
        self.finish()

    def _flood(self, unit):
        c = self.conn(rcvbuf=4096, timeout=2.0)
        sent = 0
        t0 = time.monotonic()
        while sent < 200000 and time.monotonic() - t0 < 20:
            if not c.send(unit):
                break
            sent += 1000
        # Only now read: what the server wrote, then its close.
        c.sock.settimeout(1.0)
        c.read_for(15, until=lambda x: x.closed)
        self.assertTrue(c.closed, "still open after %d frames" % sent)

    def _big_header_case(self, headers):
        c = self.conn()
        block = ac.hpack_block(ac.grpc_headers(self.srv.port, "Start") +
                               headers)
        pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = [ac.frame(ac.HEADERS, ac.END_HEADERS if len(pieces) == 1
                        else 0, 1, pieces[0])]
        for i, p in enumerate(pieces[1:], 1):
            out.append(ac.frame(ac.CONTINUATION, ac.END_HEADERS
                                if i == len(pieces) - 1 else 0, 1, p))
        body = ic.grpc_frame(self.pb.JobRequest(
            command="true").SerializeToString())
        out.append(ac.frame(ac.DATA, ac.END_STREAM, 1, body))
        c.send(b"".join(out))
        c.read_for(10, until=lambda x: x.closed or x.rst_code(1) is not None
                   or any(f[1] & ac.END_STREAM
                          for f in x.of_type(ac.HEADERS, 1)))
        refused = c.closed or c.goaway is not None or \
            c.rst_code(1) is not None
        self.assertTrue(refused, "a %d-byte header block was accepted: %r"
                        % (len(block), c.frames))
        # Nothing ran: alice has no job.
        self.assertEqual(
            len(self.stub().List(self.pb.ListRequest(), timeout=10).jobs), 0)
        return c

    def test_header_block_64k(self):
        """64 KiB of headers (one big field, then 1024 small ones): the
        stream or the connection is refused, no job starts."""
        def attack():
            c = self._big_header_case([("x-big", "a" * 65536)])
            c = self._big_header_case([("x-h%04d" % i, "b" * 32)
                                       for i in range(1024)])
        self.repeat(attack)
        self.finish()

    def test_header_block_256k(self):
        self.repeat(lambda: self._big_header_case(
            [("x-big", "a" * (256 * 1024))]))
        self.finish()

    def test_stream_id_reuse(self):
        """HEADERS again on a stream that is closed: RFC 9113 5.1 makes
        frames on a closed stream a connection error of type
        STREAM_CLOSED: GOAWAY STREAM_CLOSED, and the connection closes."""
        block = ac.hpack_block(ac.grpc_headers(self.srv.port, "Status"))
        body = ic.grpc_frame(self.pb.StatusRequest(
            id="0" * 32).SerializeToString())
        req = ac.frame(ac.HEADERS, ac.END_HEADERS, 1, block) + \
            ac.frame(ac.DATA, ac.END_STREAM, 1, body)
        self.repeat(lambda: self._reuse(req))
        self.finish()

    def _reuse(self, req):
        c = self.conn()
        c.send(req)
        c.read_for(10, until=lambda x: any(
            f[1] & ac.END_STREAM for f in x.of_type(ac.HEADERS, 1)))
        self.assertIsNone(c.goaway)
        c.send(req)
        c.read_for(10, until=lambda x: x.closed)
        self.assertIsNotNone(c.goaway, "no GOAWAY for a reused stream id")
        self.assertEqual(c.goaway[1], ac.STREAM_CLOSED)
        self.assertTrue(c.closed)

    def test_oversized_frame(self):
        """A DATA frame over SETTINGS_MAX_FRAME_SIZE (16384, the server
        sets no larger): GOAWAY FRAME_SIZE_ERROR."""
        block = ac.hpack_block(ac.grpc_headers(self.srv.port, "Start"))

        def attack():
            c = self.conn()
            c.send(ac.frame(ac.HEADERS, ac.END_HEADERS, 1, block) +
                   ac.frame(ac.DATA, 0, 1, b"\x00" * 16385))
            c.read_for(10, until=lambda x: x.closed)
            self.assertIsNotNone(c.goaway)
            self.assertEqual(c.goaway[1], ac.FRAME_SIZE_ERROR)
            self.assertTrue(c.closed)
        self.repeat(attack)
        self.finish()

    def test_zero_window_get_output(self):
        """GetOutput from a client whose stream window is 0 forever: the
        server sends the response headers and no DATA, does not spin, and
        its memory does not grow with the job's 32 MiB of output."""
        stub = self.stub()
        job = stub.Start(self.pb.JobRequest(
            command="head", args=["-c", str(32 << 20), "/dev/zero"]),
            timeout=10)
        deadline = time.monotonic() + 30
        while stub.Status(self.pb.StatusRequest(id=job.id), timeout=5).state \
                == self.pb.JOB_STATE_RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        rss0 = ac.rss_bytes(self.srv.proc.pid)
        c = self.conn(client_settings=[(ac.SETTINGS_INITIAL_WINDOW_SIZE, 0)])
        block = ac.hpack_block(ac.grpc_headers(self.srv.port, "GetOutput"))
        body = ic.grpc_frame(self.pb.GetOutputRequest(
            id=job.id).SerializeToString())
        # The request body goes out before our SETTINGS take effect on the
        # server's side of the window: DATA from us is not limited by it.
        c.send(ac.frame(ac.HEADERS, ac.END_HEADERS, 1, block) +
               ac.frame(ac.DATA, ac.END_STREAM, 1, body))
        c.read_for(1)
        cpu0 = ac.cpu_seconds(self.srv.proc.pid)
        c.read_for(3)
        cpu = ac.cpu_seconds(self.srv.proc.pid) - cpu0
        self.assertFalse(c.closed)
        self.assertEqual(len(c.of_type(ac.HEADERS, 1)), 1,
                         "no response headers: %r" % c.frames)
        self.assertEqual(c.of_type(ac.DATA, 1), [])
        # The probe calls every 10 ms meanwhile; a spinning stream would
        # take a whole CPU.
        self.assertLess(cpu, 1.5, "teleportd used %.2fs CPU in 3s" % cpu)
        grew = ac.rss_bytes(self.srv.proc.pid) - rss0
        self.assertLess(grew, ac.RSS_GROWTH_MAX)
        self.finish()

    def test_zero_window_deadline_still_ends_stream(self):
        """A started GetOutput whose deadline passes ends with trailers
        grpc-status 4 when it can; a client that gives no window for them
        gets RST_STREAM(CANCEL) a grace period (2 s) later instead of a
        stream held open for ever."""
        stub = self.stub()
        job = stub.Start(self.pb.JobRequest(command="sh", args=[
            "-c", "echo started; sleep 60"]), timeout=10)
        c = self.conn(client_settings=[(ac.SETTINGS_INITIAL_WINDOW_SIZE, 0)])
        block = ac.hpack_block(ac.grpc_headers(
            self.srv.port, "GetOutput", extra=[("grpc-timeout", "500m")]))
        body = ic.grpc_frame(self.pb.GetOutputRequest(
            id=job.id).SerializeToString())
        c.send(ac.frame(ac.HEADERS, ac.END_HEADERS, 1, block) +
               ac.frame(ac.DATA, ac.END_STREAM, 1, body))
        # 0.5 s deadline + 2 s grace, with a wide margin for a loaded host.
        c.read_for(20, until=lambda c: c.of_type(ac.RST_STREAM, 1))
        self.assertEqual(len(c.of_type(ac.HEADERS, 1)), 1,
                         "response headers only, no trailers: %r" % c.frames)
        self.assertEqual(c.of_type(ac.DATA, 1), [])
        self.assertEqual(c.rst_code(1), ac.CANCEL, "no reset: %r" % c.frames)
        stub.Stop(self.pb.StopRequest(id=job.id), timeout=10)
        self.finish()

    def test_bad_length_prefixes(self):
        """Length prefix 0xFFFFFFFF: RESOURCE_EXHAUSTED before anything is
        buffered; a message cut short: INTERNAL; the compressed flag
        without grpc-encoding: INTERNAL."""
        self.repeat(self._bad_prefixes)
        self.assertEqual(
            len(self.stub().List(self.pb.ListRequest(), timeout=10).jobs), 0)
        self.finish()

    def _bad_prefixes(self):
        path = "/jobworker.v1.JobWorker/Start"
        r = ic.h2_request(self.srv.port, path, b"\x00\xff\xff\xff\xff")
        self.assertEqual(r.grpc_status(), 8, r.headers)
        r = ic.h2_request(self.srv.port, path,
                          b"\x00\x00\x00\x00\x64" + b"x" * 10)
        self.assertEqual(r.grpc_status(), 13, r.headers)
        msg = self.pb.JobRequest(command="true").SerializeToString()
        r = ic.h2_request(self.srv.port, path, b"\x01" +
                          len(msg).to_bytes(4, "big") + msg)
        self.assertEqual(r.grpc_status(), 13, r.headers)


if __name__ == "__main__":
    ic.reexec()
    sys.exit(ic.run_suite("abuse-h2", [H2Abuse]))
