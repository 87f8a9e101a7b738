"""Helpers for the hostile-client tests (tests/abuse/test_*.py).

Builds on tests/interop/interop_common.py (teleportd on a free loopback
port with the run's test certificates, gRPC stubs, raw HTTP/2 requests)
and adds what an attacker needs: hand-made HTTP/2 frames over mTLS, a
frame reader, the server's RSS and CPU time from /proc, and a
well-behaved client in a process of its own (probe.py) whose latency is
measured while the attack runs.

Everything stays on 127.0.0.1, every loop is bounded in count and time,
and what a test starts is killed by PID (interop_common does it for the
servers; Probe.close for the probe).
"""

import os
import socket
import ssl
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))

import interop_common as ic  # noqa: E402

# HTTP/2 frame types and error codes (RFC 9113).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, \
    SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, \
    CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = range(12)
SETTINGS_INITIAL_WINDOW_SIZE = 4

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Memory growth the server may show across an attack. teleportd's own
# buffers per connection are capped (64 KiB read, 256 KiB gather, one
# write in flight, nghttp2's queues bounded by its flood limits); under
# ASan freed memory sits in quarantine (256 MiB by default, but only what
# is freed counts) and malloc keeps arenas, so RSS does not return to the
# byte. 16 MiB is far above what bounded buffers for the few connections
# an attack holds can take, and far below what an unbounded queue fed by
# megabytes of frames would reach.
RSS_GROWTH_MAX = 16 << 20

# The well-behaved client's p50 latency during an attack may be at most
# this many times its idle p50. Idle p50 on loopback is around a
# millisecond, at the scheduler's granularity on a small machine shared
# by the server, the attacker and the probe, so idle is taken as at
# least IDLE_FLOOR_S.
LATENCY_FACTOR = 10

# ASan keeps freed memory in a quarantine (256 MiB by default) to catch
# use after free, so under ASan RSS grows with every connection opened
# and closed until the quarantine is full, leak or not. Servers whose
# memory a test measures run with a small quarantine: use after free is
# still caught for recently freed memory, and RSS means what it says.
def server_env():
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") +
            "quarantine_size_mb=2:thread_local_quarantine_size_kb=64"}


IDLE_FLOOR_S = 0.002


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7fffffff) + payload


def settings(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def rst(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def grpc_headers(port, method, extra=()):
    """An HPACK block for a gRPC request (encoded once; see hpack_block)."""
    return [(":method", "POST"), (":scheme", "https"),
            (":path", "/jobworker.v1.JobWorker/" + method),
            (":authority", "127.0.0.1:%d" % port),
            ("content-type", "application/grpc"), ("te", "trailers")] + \
        list(extra)


def hpack_block(headers):
    """Encodes headers without the dynamic table, so that the block can be
    sent any number of times on a connection."""
    import hpack
    enc = hpack.Encoder()
    enc.header_table_size = 0
    # The first block after a table size change starts with the update;
    # encode twice and keep the second, which is self-contained.
    enc.encode(headers)
    return enc.encode([(k, v) for k, v in headers])


def recv_some(sock, deadline, least, most):
    """One recv of up to 64 KiB from sock, waiting at most until deadline
    (time.monotonic()) but at least least and at most most seconds.
    Returns the bytes, None when that wait passed with nothing, or b""
    once the server closed or the connection failed."""
    sock.settimeout(max(least, min(most, deadline - time.monotonic())))
    try:
        return sock.recv(65536)
    except socket.timeout:
        return None
    except (ssl.SSLError, OSError):
        return b""


class RawConn:
    """A TLS connection (ALPN h2, client certificate) on which the test
    writes whatever bytes it wants and parses the frames it gets back."""

    def __init__(self, port, who="alice", timeout=10.0, preface=True,
                 client_settings=(), rcvbuf=None):
        ctx = ic.tls_context((ic.cert(who + ".cert"), ic.cert(who + ".key")))
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        self.frames = []
        self.goaway = None  # (last stream id, error code)
        self.closed = False
        if preface:
            self.send(PREFACE + settings(client_settings))

    def send(self, data):
        """Sends data; returns False once the server closed or stopped
        taking bytes (a send timeout), True otherwise."""
        try:
            self.sock.sendall(data)
            return True
        except (socket.timeout, ssl.SSLError, OSError):
            return False

    def read_for(self, seconds, until=None):
        """Reads frames for up to seconds, or until until(self) holds or the
        server closes. Returns the frames read by this call."""
        start = len(self.frames)
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            if until is not None and until(self):
                break
            b = recv_some(self.sock, deadline, 0.01, 0.2)
            if b is None:
                continue
            if not b:
                self.closed = True
                break
            self.buf += b
            self._parse()
        return self.frames[start:]

    def _parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            self.frames.append((ftype, flags, sid, payload))
            if ftype == GOAWAY and self.goaway is None:
                self.goaway = (int.from_bytes(payload[:4], "big") & 0x7fffffff,
                               int.from_bytes(payload[4:8], "big"))
            if ftype == SETTINGS and not flags & ACK:
                self.send(settings(ack=True))

    def of_type(self, ftype, sid=None):
        return [f for f in self.frames
                if f[0] == ftype and (sid is None or f[2] == sid)]

    def rst_code(self, sid):
        r = self.of_type(RST_STREAM, sid)
        return int.from_bytes(r[0][3][:4], "big") if r else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Probe:
    """The well-behaved client (probe.py as bob, in a process of its own
    so that the attacker's Python does not skew its timings): it starts a
    witness job, measures idle latency of Status calls, keeps calling
    during the attack, and at the end checks the witness job's status and
    every byte of its output."""

    def __init__(self, port, who="bob"):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "probe.py"), str(port), who],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=dict(os.environ))
        line = self._line(60)
        if not line.startswith("IDLE "):
            self.close()
            raise RuntimeError("probe did not start: %r" % line)
        self.idle_p50 = float(line.split()[1])
        self.idle_p99 = float(line.split()[2])

    def _line(self, timeout):
        import select
        deadline = time.monotonic() + timeout
        out = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                if c == b"\n":
                    return out.decode(errors="replace")
                out += c
        return out.decode(errors="replace")

    def finish(self):
        """Stops the calls; returns dict(p50, max, n, errors, witness)."""
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        res = {"p50": None, "max": None, "n": 0, "errors": -1, "p99": None,
               "witness": "no answer"}
        line = self._line(60)
        while line and not line.startswith("ATTACK "):
            sys.stdout.write("  probe says: %s\n" % line)
            line = self._line(60)
        if line.startswith("ATTACK "):
            p = line.split()
            res.update(p50=float(p[1]), max=float(p[2]), n=int(p[3]),
                       errors=int(p[4]), p99=float(p[5]))
        line = self._line(60)
        if line.startswith("WITNESS "):
            res["witness"] = line[len("WITNESS "):]
        self.close()
        return res

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def check(self, test, res):
        """The assertions every attack shares."""
        bound = LATENCY_FACTOR * max(self.idle_p50, IDLE_FLOOR_S)
        assert_probe(test, res, "p50", bound, lambda: (
            "p50 latency %.2f ms during the attack is over %dx idle "
            "(%.2f ms)" % (res["p50"] * 1e3, LATENCY_FACTOR,
                           self.idle_p50 * 1e3)))


def assert_probe(test, res, quantile, bound, slow):
    """What a well-behaved client's probe res must show: calls made, none
    failed, res[quantile] (seconds) at most bound (else the message slow()
    makes, once the calls are known to exist), and the witness job's output
    intact."""
    test.assertGreater(res["n"], 0, "the probe made no call: %r" % res)
    test.assertEqual(res["errors"], 0,
                     "well-behaved client calls failed: %r" % res)
    test.assertLessEqual(res[quantile], bound, slow())
    test.assertEqual(res["witness"], "ok",
                     "the witness job or its output was lost")


def assert_alive(test, srv):
    test.assertIsNone(srv.proc.poll(), "teleportd died:\n" + srv.log_text())
