"""10 000 TCP connections to teleportd, half of them sending a TLS
ClientHello and then nothing: an attacker with only the network.

teleportd runs with --max-connections 1000 and --handshake-timeout 2s:
connections past the cap are closed at accept, the others when their
handshake does not finish in time. A client connected before the flood
keeps being served within LATENCY_FACTOR of its idle latency, a new
client is served once the flood's connections are gone, and the server's
descriptors and memory come back.
"""

import errno
import os
import resource
import select
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import abuse_common as ac  # noqa: E402
from abuse_common import ic  # noqa: E402

N_CONNS = 10000
MAX_CONNS = 1000
HANDSHAKE_TIMEOUT_S = 2
PER_CONN_BUDGET = 256 << 10


def client_hello():
    """The bytes of one TLS 1.3 ClientHello (offering h2), made with a
    memory BIO; the same bytes are sent on every connection."""
    ctx = ic.tls_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class ConnFlood(unittest.TestCase):

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < N_CONNS + 200:
            self.skipTest("RLIMIT_NOFILE hard limit %d is below %d" %
                          (hard, N_CONNS + 200))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.srv = ic.Server(extra_args=[
            "--max-connections", str(MAX_CONNS), "--handshake-timeout",
            "%ds" % HANDSHAKE_TIMEOUT_S, "--log-level", "info"],
            env_extra=ac.server_env()).start()
        self.probe = ac.Probe(self.srv.port)
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.probe.close()
        self.srv.cleanup()

    def test_idle_and_hello_flood(self):
        pid = self.srv.proc.pid
        fds0, rss0 = ac.fd_count(pid), ac.rss_bytes(pid)
        hello = client_hello()
        ep = select.epoll()
        pending = {}  # fd -> (socket, send hello)
        t0 = time.monotonic()
        for i in range(N_CONNS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            self.socks.append(s)
            e = s.connect_ex(("127.0.0.1", self.srv.port))
            if e not in (0, errno.EINPROGRESS):
                continue
            pending[s.fileno()] = (s, i % 2 == 0)
            ep.register(s.fileno(), select.EPOLLOUT)
        # Connected sockets of the hello half send it; the others stay
        # silent. Bounded: what has not connected in 20 s counts as
        # refused (its SYN was never taken).
        open_fds = {}
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            for fd, ev in ep.poll(0.2):
                if fd not in pending:
                    continue  # one of open_fds: read in the next phase
                s, send_hello = pending.pop(fd)
                ep.unregister(fd)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    continue
                if send_hello:
                    try:
                        s.send(hello)
                    except OSError:
                        continue
                open_fds[fd] = s
                ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        connect_s = time.monotonic() - t0
        # The server must now hold none of them: those past the cap were
        # closed at accept, the others by the handshake timeout. (Client
        # sockets may still look established where the kernel's accept
        # queue overflowed and the server side never existed, so the
        # server's own descriptors are what counts.)
        closed, deadline = 0, time.monotonic() + 2 * HANDSHAKE_TIMEOUT_S + 3
        while time.monotonic() < deadline:
            for fd, ev in ep.poll(0.2):
                s = open_fds.get(fd)
                if s is None:
                    continue
                try:
                    while s.recv(65536):
                        pass
                    gone = True
                except BlockingIOError:
                    gone = bool(ev & (select.EPOLLRDHUP | select.EPOLLHUP))
                except OSError:
                    gone = True
                if gone:
                    ep.unregister(fd)
                    del open_fds[fd]
                    closed += 1
        ep.close()
        # SYNs the kernel dropped are still being retried; closing our
        # sockets ends them, and the server must then be back where it was.
        for s in self.socks:
            s.close()
        self.socks = []
        deadline = time.monotonic() + 20
        while ac.fd_count(pid) > fds0 + 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        flood_s = time.monotonic() - t0
        res = self.probe.finish()
        ac.assert_alive(self, self.srv)
        self.assertLessEqual(ac.fd_count(pid), fds0 + 10,
                             "teleportd holds %d descriptors after %.0fs "
                             "(%d before)" % (ac.fd_count(pid), flood_s, fds0))
        self.assertGreater(closed, MAX_CONNS)
        log = self.srv.log_text()
        self.assertIn("connection limit reached", log)
        self.assertIn("TLS handshake timed out", log)
        # A new client is served.
        pb, rpc = ic.load_stubs()
        stub = rpc.JobWorkerStub(ic.channel(self.srv.port, "alice"))
        self.assertEqual(len(stub.List(pb.ListRequest(), timeout=10).jobs), 0)
        # Memory is bounded by the cap: each connection, until its
        # handshake is done, holds its read and staging buffers (80 KiB)
        # and OpenSSL's handshake state; the allocator keeps the peak.
        grew = ac.rss_bytes(pid) - rss0
        self.assertLess(grew, MAX_CONNS * PER_CONN_BUDGET,
                        "RSS grew by %d bytes" % grew)
        self.probe.check(self, res)
        sys.stdout.write(
            "  %d connections in %.1fs, %d closed by the server, all gone "
            "after %.1fs; probe idle p50 %.2f ms, flood p50 %.2f ms, max "
            "%.1f ms, %d calls\n" % (N_CONNS, connect_s, closed, flood_s,
                                     self.probe.idle_p50 * 1e3,
                                     res["p50"] * 1e3, res["max"] * 1e3,
                                     res["n"]))


if __name__ == "__main__":
    ic.reexec()
    sys.exit(ic.run_suite("abuse-conn-flood", [ConnFlood]))
