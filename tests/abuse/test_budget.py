"""One connection, one client: bounded (docs/protocol.md#limits).

Each attack runs against a fresh release teleportd (the plain build/, as
users run it; see server_binary) while a well-behaved client (probe.py as
bob) calls Status every 10 ms:

  1. 2 connections x 100 streams of 4 MiB requests that never finish;
  2. 50 List calls from a reader whose window is zero, after Starts with
     big args;
  3. 1200 GetOutput streams whose reader's window is 100 bytes;
  4. HEADERS-only streams with a short --request-timeout;
  5. one client opening every --max-connections slot;
  6. 50 List calls from a client with open windows that never reads its
     socket.

Each asserts that the server's RSS (VmRSS, sampled every 50 ms) grows by
less than RSS_BUDGET, that the attack ends by itself or by the configured
timeout (a generous margin over it, for a loaded machine), and that the
well-behaved client's p99 stays under LATENCY_FACTOR times its idle p99.
Idle p99 on loopback is a fraction of a millisecond on a quiet machine;
on a loaded 2-core machine shared with the attacker's Python, 10x of
that says nothing about teleportd, so idle is taken as at least
IDLE_FLOOR_S.
"""

import os
import re
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import abuse_common as ac  # noqa: E402
from abuse_common import ic  # noqa: E402

MiB = 1 << 20

# What the issue asks: every attack costs the server less than this.
RSS_BUDGET = 64 * MiB
# Under ASan (only when no release build is there) the shadow memory and
# redzones roughly double what the same buffers cost: the bound doubles.
ASAN_RSS_FACTOR = 2

LATENCY_FACTOR = 10
IDLE_FLOOR_S = 0.005

# Short timeouts keep the suite quick; the margins allow for load.
# The idle timeout is the longer one, as by default (30 s and 5 min): a
# connection whose only calls wait for their requests is idle, so a
# shorter idle timeout would close it before the request timeout ends
# them.
REQUEST_TIMEOUT_S = 3
IDLE_TIMEOUT_S = 5
MARGIN_S = 20

# JW_BUDGET_BASE=1 runs the attacks against a teleportd from before these
# limits (JW_RELEASE_TELEPORTD) without the flags it does not know, to
# show what each attack costs there.
BASE = os.environ.get("JW_BUDGET_BASE") == "1"

DEADLINE_EXCEEDED = 4


def server_binary():
    """The release teleportd: JW_RELEASE_TELEPORTD, else build/ beside the
    build this suite runs from (make test builds both), else this build's
    own (then the RSS bound is scaled for ASan)."""
    cands = [os.environ.get("JW_RELEASE_TELEPORTD"),
             os.path.join(ic.SOURCE_ROOT, "build", "server", "teleportd"),
             os.path.join(os.path.dirname(ic.BUILD_ROOT), "build", "server",
                          "teleportd")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c, 1
    return ic.TELEPORTD, ASAN_RSS_FACTOR


class RssWatch(threading.Thread):
    """Samples the server's VmRSS every 50 ms until stopped; keeps the
    highest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.base = ac.rss_bytes(pid)
        self.peak = self.base
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.wait(0.05):
            try:
                self.peak = max(self.peak, ac.rss_bytes(self.pid))
            except OSError:
                return

    def stop(self):
        self.halt.set()
        self.join(5)
        return self.peak - self.base


def grpc_msg(payload=b""):
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


class H2Client:
    """A TLS connection driven by the h2 library, so that the attacker
    honours flow control (an attacker that overruns a window only gets
    its connection closed) and sees every window the server opens."""

    def __init__(self, port, who="alice", initial_window=None):
        import h2.config
        import h2.connection
        import h2.settings
        ctx = ic.tls_context((ic.cert(who + ".cert"), ic.cert(who + ".key")))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        if initial_window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                        initial_window})
        self.conn.initiate_connection()
        self.ended = {}  # stream id -> grpc-status (or "reset")
        self.closed = False
        self.goaway = None
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.settimeout(10)
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                self.closed = True

    def pump(self, seconds):
        """Reads what the server sent for up to seconds (less when nothing
        comes)."""
        import h2.events
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            b = ac.recv_some(self.sock, deadline, 0.005, 0.05)
            if b is None:
                return
            if not b:
                self.closed = True
                return
            try:
                events = self.conn.receive_data(b)
            except Exception:  # noqa: BLE001 - a protocol error ends it
                self.closed = True
                return
            for ev in events:
                sid = getattr(ev, "stream_id", None)
                if isinstance(ev, (h2.events.ResponseReceived,
                                   h2.events.TrailersReceived)):
                    for k, v in ev.headers:
                        if k == "grpc-status":
                            self.ended[sid] = int(v)
                elif isinstance(ev, h2.events.StreamReset):
                    self.ended.setdefault(sid, "reset")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.goaway = (ev.error_code, ev.additional_data)
            self.flush()

    def open(self, port, method):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, ac.grpc_headers(port, method))
        return sid

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Budget(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = ic.load_stubs()
        cls.binary, cls.rss_factor = server_binary()
        sys.stdout.write("teleportd under test: %s\n" % cls.binary)

    def setUp(self):
        self.srv = None
        self.probe = None
        self.opened = []

    def tearDown(self):
        for c in self.opened:
            c.close()
        if self.probe is not None:
            self.probe.close()
        if self.srv is not None:
            self.srv.cleanup()

    def serve(self, *extra, idle=IDLE_TIMEOUT_S):
        saved = ic.TELEPORTD
        ic.TELEPORTD = self.binary
        args = ["--request-timeout", "%ds" % REQUEST_TIMEOUT_S,
                "--idle-timeout", "%ds" % idle, "--log-level", "info"] + \
            list(extra)
        if BASE:
            args = [a for i, a in enumerate(args)
                    if not (a in ("--request-timeout", "--idle-timeout",
                                  "--max-connections-per-client") or
                            args[i - 1] in ("--request-timeout",
                                            "--idle-timeout",
                                            "--max-connections-per-client"))]
        try:
            self.srv = ic.Server(extra_args=args,
                                 env_extra=ac.server_env()).start()
        finally:
            ic.TELEPORTD = saved
        self.probe = ac.Probe(self.srv.port)
        return self.srv

    def finish(self, watch, what):
        """The assertions every attack shares: memory and latency."""
        grown = watch.stop()
        res = self.probe.finish()
        self.probe = None
        bound = LATENCY_FACTOR * max(self.probe_idle_p99, IDLE_FLOOR_S)
        sys.stdout.write(
            "%s: RSS +%.1f MiB (peak %.1f MiB); probe p99 %.2f ms, idle p99 "
            "%.2f ms, %d calls\n" % (
                what, grown / MiB, watch.peak / MiB,
                (res["p99"] or 0) * 1e3, self.probe_idle_p99 * 1e3, res["n"]))
        ac.assert_alive(self, self.srv)
        self.assertLess(grown, RSS_BUDGET * self.rss_factor,
                        "%s: server RSS grew by %.1f MiB" % (what,
                                                              grown / MiB))
        ac.assert_probe(self, res, "p99", bound, lambda: (
            "%s: p99 %.2f ms is over %dx idle p99 (%.2f ms, floor %.0f ms)"
            % (what, res["p99"] * 1e3, LATENCY_FACTOR,
               self.probe_idle_p99 * 1e3, IDLE_FLOOR_S * 1e3)))

    def watch(self):
        self.probe_idle_p99 = self.probe.idle_p99
        return RssWatch(self.srv.proc.pid)

    def test_1_partial_requests(self):
        """2 connections x 100 streams of 4 MiB Start requests that never
        finish: the server holds what its budget and windows allow, and
        the request timeout ends every one."""
        srv = self.serve()
        watch = self.watch()
        body = grpc_msg(b"\x0a" + b"\x80\x80\x80\x02" + b"x" * (4 * MiB - 16))
        conns = [H2Client(srv.port) for _ in range(2)]
        self.opened += conns
        sent = {}
        for c in conns:
            for _ in range(100):
                sent[(c, c.open(srv.port, "Start"))] = 0
            c.flush()
        t0 = time.monotonic()
        # Push every stream as far as its window allows, never the last
        # byte, until the server ends them all or the time is up.
        limit = REQUEST_TIMEOUT_S + MARGIN_S
        while time.monotonic() - t0 < limit:
            progress = False
            for (c, sid), off in list(sent.items()):
                if c.closed or sid in c.ended:
                    continue
                room = min(c.conn.local_flow_control_window(sid),
                           c.conn.max_outbound_frame_size,
                           len(body) - 1 - off)
                if room <= 0:
                    continue
                try:
                    c.conn.send_data(sid, body[off:off + room])
                except Exception:  # noqa: BLE001 - stream closed meanwhile
                    continue
                sent[(c, sid)] = off + room
                progress = True
            for c in conns:
                c.flush()
                c.pump(0.0 if progress else 0.1)
            if all(sid in c.ended or c.closed for c, sid in sent):
                break
        took = time.monotonic() - t0
        pushed = sum(sent.values())
        ended = sum(1 for c, sid in sent if sid in c.ended)
        sys.stdout.write("partial requests: %.1f MiB taken, %d/200 streams "
                         "ended in %.1f s\n" % (pushed / MiB, ended, took))
        self.finish(watch, "partial requests")
        self.assertEqual(ended, 200, "streams still open after %.1f s" % took)
        for c, sid in sent:
            self.assertEqual(c.ended[sid], DEADLINE_EXCEEDED)
        self.assertLess(pushed, 64 * MiB,
                        "the server took %.1f MiB of unfinished requests"
                        % (pushed / MiB))

    def start_big_jobs(self, stub, n, size):
        """n finished jobs whose args add up to about size bytes each (the
        arg size is halved while the server refuses it)."""
        import grpc
        made, ids = 0, []
        for _ in range(n + 8):
            if made == n:
                break
            try:
                ids.append(stub.Start(self.pb.JobRequest(
                    command="true", args=["y" * 1000] * (size // 1000)),
                    timeout=20).id)
                made += 1
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.RESOURCE_EXHAUSTED) or \
                        size < 4000:
                    raise
                size //= 2
        # Finished: each is final (bounded wait).
        for i in ids:
            ic.wait_until(lambda: stub.Status(
                self.pb.StatusRequest(id=i), timeout=20).state !=
                self.pb.JOB_STATE_RUNNING, 20)
        return made

    def test_2_zero_window_lists(self):
        """50 List calls from a client whose window is zero: their replies
        wait, and the connection, on which nothing moves, is closed as
        idle."""
        srv = self.serve("--max-finished-per-client", "64")
        alice = self.rpc.JobWorkerStub(ic.channel(srv.port, "alice"))
        made = self.start_big_jobs(alice, 20, 900 * 1000)
        self.assertGreater(made, 0)
        watch = self.watch()
        c = ac.RawConn(srv.port, client_settings=[
            (ac.SETTINGS_INITIAL_WINDOW_SIZE, 0)])
        self.opened.append(c)
        block = ac.hpack_block(ac.grpc_headers(srv.port, "List"))
        out = b""
        for i in range(50):
            sid = 1 + 2 * i
            out += ac.frame(ac.HEADERS, ac.END_HEADERS, sid, block)
            out += ac.frame(ac.DATA, ac.END_STREAM, sid, grpc_msg())
        c.send(out)
        t0 = time.monotonic()
        c.read_for(IDLE_TIMEOUT_S + MARGIN_S, until=lambda x: x.goaway)
        c.read_for(5)
        took = time.monotonic() - t0
        sys.stdout.write("zero-window lists: %d jobs; closed %s after %.1f s\n"
                         % (made, c.goaway is not None, took))
        self.finish(watch, "zero-window lists")
        self.assertIsNotNone(c.goaway, "the connection was never closed")
        self.assertLess(took, IDLE_TIMEOUT_S + MARGIN_S)

    def test_3_tiny_window_readers(self):
        """12 connections x 100 GetOutput streams read through a 100-byte
        window: no staging buffer per stream, and connections that stop
        reading are closed as idle."""
        srv = self.serve()
        alice = self.rpc.JobWorkerStub(ic.channel(srv.port, "alice"))
        job = alice.Start(self.pb.JobRequest(
            command="head", args=["-c", "1000000", "/dev/zero"]), timeout=20)
        deadline = time.monotonic() + 20
        while alice.Status(self.pb.StatusRequest(id=job.id), timeout=5) \
                .state == self.pb.JOB_STATE_RUNNING and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        watch = self.watch()
        req = grpc_msg(self.pb.GetOutputRequest(id=job.id).SerializeToString())
        block = ac.hpack_block(ac.grpc_headers(srv.port, "GetOutput"))
        conns = []
        for _ in range(12):
            c = ac.RawConn(srv.port, client_settings=[
                (ac.SETTINGS_INITIAL_WINDOW_SIZE, 100)])
            self.opened.append(c)
            conns.append(c)
            out = b""
            for i in range(100):
                sid = 1 + 2 * i
                out += ac.frame(ac.HEADERS, ac.END_HEADERS, sid, block)
                out += ac.frame(ac.DATA, ac.END_STREAM, sid, req)
            c.send(out)
        t0 = time.monotonic()
        limit = IDLE_TIMEOUT_S + MARGIN_S
        for c in conns:
            c.read_for(max(0.1, limit - (time.monotonic() - t0)),
                       until=lambda x: x.goaway)
        took = time.monotonic() - t0
        data = sum(len(f[3]) for c in conns for f in c.of_type(ac.DATA))
        shut = sum(1 for c in conns if c.goaway is not None or c.closed)
        sys.stdout.write("tiny windows: %d bytes of output read, %d/12 "
                         "connections closed after %.1f s\n"
                         % (data, shut, took))
        self.finish(watch, "tiny windows")
        self.assertGreater(data, 0, "nothing was sent through the windows")
        self.assertEqual(shut, 12, "connections still open after %.1f s"
                         % took)

    def test_4_headers_only(self):
        """100 streams that send HEADERS and nothing more: ended by the
        request timeout, and the connection then closed as idle."""
        srv = self.serve()
        watch = self.watch()
        c = ac.RawConn(srv.port)
        self.opened.append(c)
        block = ac.hpack_block(ac.grpc_headers(srv.port, "Start"))
        c.send(b"".join(ac.frame(ac.HEADERS, ac.END_HEADERS, 1 + 2 * i, block)
                        for i in range(100)))
        t0 = time.monotonic()
        c.read_for(REQUEST_TIMEOUT_S + IDLE_TIMEOUT_S + MARGIN_S,
                   until=lambda x: x.goaway)
        took = time.monotonic() - t0
        c.read_for(2)
        ended = set(f[2] for f in c.of_type(ac.HEADERS)
                    if f[1] & ac.END_STREAM)
        resets = set(f[2] for f in c.of_type(ac.RST_STREAM))
        sys.stdout.write("headers only: %d/100 ended, %d reset, closed %s "
                         "after %.1f s\n" % (len(ended), len(resets),
                                             c.goaway is not None, took))
        self.finish(watch, "headers only")
        self.assertEqual(len(ended), 100, "streams never ended")
        self.assertEqual(len(resets), 100)
        self.assertGreaterEqual(took, REQUEST_TIMEOUT_S - 0.5,
                                "ended before the request timeout")
        self.assertIsNotNone(c.goaway, "the connection was never closed")
        self.assertLess(took, REQUEST_TIMEOUT_S + IDLE_TIMEOUT_S + MARGIN_S)
        self.assertIn(b"did not arrive within the request timeout",
                      ic.read(srv.log_path))

    def test_5_one_client_every_slot(self):
        """One client tries to hold every --max-connections slot: past
        --max-connections-per-client it is refused with a reason, and
        another client still gets in."""
        import grpc
        srv = self.serve("--max-connections", "12",
                         "--max-connections-per-client", "4", idle=60)
        watch = self.watch()
        conns = []
        for _ in range(11):
            try:
                c = ac.RawConn(srv.port)
            except (OSError, ssl.SSLError):
                break
            self.opened.append(c)
            conns.append(c)
            c.read_for(0.3, until=lambda x: x.goaway or x.closed)
        for c in conns:
            if c.goaway is not None:
                c.read_for(5, until=lambda x: x.closed)
        refused = [c for c in conns if c.goaway is not None]
        kept = [c for c in conns if c.goaway is None and not c.closed]
        # Another client, on a connection of its own, is still served.
        st = None
        err = None
        try:
            bob = self.rpc.JobWorkerStub(ic.channel(srv.port, "bob"))
            st = bob.List(self.pb.ListRequest(), timeout=10)
        except grpc.RpcError as e:
            err = e
        log = ic.read(srv.log_path)
        sys.stdout.write("every slot: %d connections, %d kept, %d refused\n"
                         % (len(conns), len(kept), len(refused)))
        self.finish(watch, "every slot")
        self.assertEqual(len(kept), 4)
        self.assertEqual(len(refused), len(conns) - 4)
        for c in refused:
            self.assertEqual(c.goaway[1], ac.ENHANCE_YOUR_CALM)
            debug = [f[3][8:] for f in c.of_type(ac.GOAWAY)][0]
            self.assertIn(b"too many connections from this client", debug)
        self.assertTrue(re.search(
            rb"event=conn_refused\b.*too many connections from this client "
            rb"\(limit 4\)", log), "no conn_refused line with the reason")
        self.assertIsNone(err, "another client was locked out: %s" % err)
        self.assertIsNotNone(st)


    def test_6_socket_non_reader(self):
        """50 List calls with every window open from a client that never
        reads its socket: the replies wait in the socket and the server,
        whose writes no longer complete, closes the connection as idle."""
        srv = self.serve("--max-finished-per-client", "64")
        alice = self.rpc.JobWorkerStub(ic.channel(srv.port, "alice"))
        made = self.start_big_jobs(alice, 20, 900 * 1000)
        self.assertGreater(made, 0)
        watch = self.watch()
        c = ac.RawConn(srv.port, rcvbuf=64 * 1024, client_settings=[
            (ac.SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff)])
        self.opened.append(c)
        port = c.sock.getsockname()[1]
        block = ac.hpack_block(ac.grpc_headers(srv.port, "List"))
        out = ac.frame(ac.WINDOW_UPDATE, 0, 0,
                       (0x7fffffff - 65535).to_bytes(4, "big"))
        for i in range(50):
            sid = 1 + 2 * i
            out += ac.frame(ac.HEADERS, ac.END_HEADERS, sid, block)
            out += ac.frame(ac.DATA, ac.END_STREAM, sid, grpc_msg())
        c.send(out)
        closed = re.compile(rb"event=conn_close\b[^\n]*127\.0\.0\.1:%d\b"
                            % port)
        t0 = time.monotonic()
        limit = IDLE_TIMEOUT_S + MARGIN_S
        while time.monotonic() - t0 < limit and \
                not closed.search(ic.read(srv.log_path)):
            time.sleep(0.2)
        took = time.monotonic() - t0
        gone = closed.search(ic.read(srv.log_path)) is not None
        sys.stdout.write("socket non-reader: %d jobs; closed %s after %.1f s\n"
                         % (made, gone, took))
        self.finish(watch, "socket non-reader")
        self.assertTrue(gone, "the connection was never closed")


if __name__ == "__main__":
    ic.reexec()
    sys.exit(ic.run_suite("abuse-budget", [Budget]))
