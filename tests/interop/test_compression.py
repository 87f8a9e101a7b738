#!/usr/bin/python3
"""Interop: gzip request messages (grpc-encoding: gzip) against Debian's
python3-grpcio and raw HTTP/2 (python3-h2): compressed calls work, the
request limit applies to the inflated message (a bomb is refused with
RESOURCE_EXHAUSTED while the server's memory stays flat), broken gzip is
INTERNAL, other encodings are UNIMPLEMENTED, and every response says
grpc-accept-encoding: identity,gzip.

One teleportd for the class (test_grpc_interop.ServerCase). Loopback only;
every wait is bounded.
"""

import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402

import test_grpc_interop as base  # noqa: E402

pb = base.pb
SVC = base.SVC
ACCEPT = "identity,gzip"
LIMIT = 4 << 20  # teleportd's default --max-request-bytes
CODE = {c.value[0]: c for c in grpc.StatusCode}


def gzip_bytes(data):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def gzip_frame(z, flag=1):
    return bytes([flag]) + len(z).to_bytes(4, "big") + z


def gzip_bomb(mib):
    """A valid gzip stream of mib MiB of zeros, about 1 KiB per MiB: one
    fully flushed deflate block repeated (each starts afresh), with the
    right CRC and length in the trailer."""
    zeros = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    blk = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()[:-8]
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return head + blk * (mib - 1) + tail + struct.pack(
        "<II", crc, (mib << 20) & 0xffffffff)


def vm(pid, key):
    """VmRSS (resident now) or VmHWM (the peak) of pid, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Helpers:
    """Raw gzip calls and what every answer must carry."""

    def h2(self, method, body, enc="gzip", **kw):
        hdrs = [("grpc-encoding", enc)] if enc else []
        return ic.h2_request(self.server.port, SVC + method, body,
                             extra_headers=hdrs, timeout=30, **kw)

    def assertStatus(self, c, code, accept=ACCEPT):
        self.assertEqual(c.status, "200", vars(c))
        self.assertEqual(c.grpc_status(), code.value[0],
                         "got %s: %r" % (CODE.get(c.grpc_status()), vars(c)))
        self.assertEqual(c.headers.get("grpc-accept-encoding"), accept,
                         vars(c))
        self.assertNotIn("grpc-encoding", c.headers, "responses are identity")


class Compression(Helpers, base.ServerCase):
    """grpc-encoding gzip on requests; what responses say."""

    def test_grpcio_gzip_start_works(self):
        # A long, compressible argument: grpcio sends it gzip-compressed.
        arg = "compress me " * 2000
        chan = ic.channel(self.server.port, "alice")
        try:
            stub = base.pb_grpc.JobWorkerStub(chan)
            st = stub.Start(pb.JobRequest(command="printf", args=["%s", arg]),
                            timeout=base.RPC_TIMEOUT,
                            compression=grpc.Compression.Gzip)
            self.assertEqual(st.state, base.RUNNING)
            self.assertEqual(list(st.args), ["%s", arg])
            self.wait_final(st.id)
            self.assertEqual(self.output(st.id)[0], arg.encode())
            # The whole channel compressing works as well.
            gz = grpc.secure_channel(
                "127.0.0.1:%d" % self.server.port,
                grpc.ssl_channel_credentials(
                    root_certificates=ic.read(ic.cert("ca.cert")),
                    private_key=ic.read(ic.cert("alice.key")),
                    certificate_chain=ic.read(ic.cert("alice.cert"))),
                compression=grpc.Compression.Gzip)
            try:
                ids = [j.id for j in base.pb_grpc.JobWorkerStub(gz).List(
                    pb.ListRequest(), timeout=base.RPC_TIMEOUT).jobs]
                self.assertIn(st.id, ids)
            finally:
                gz.close()
        finally:
            chan.close()

    def test_limit_applies_after_inflating(self):
        # 5 MiB of 'x' compress to a few KiB: refused all the same.
        big = "x" * (5 << 20)
        e = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            self.alice.Start,
                            pb.JobRequest(command="echo", args=[big]),
                            timeout=60, compression=grpc.Compression.Gzip)
        self.assertIn("inflates past the limit of %d bytes" % LIMIT,
                      e.details())

    def test_raw_gzip_request(self):
        # An empty ListRequest, gzip-compressed, by hand.
        c = self.h2("List", gzip_frame(gzip_bytes(b"")))
        self.assertStatus(c, grpc.StatusCode.OK)
        # Start with a JobRequest{command: "true"} compressed.
        c = self.h2("Start", gzip_frame(gzip_bytes(b"\x0a\x04true")))
        self.assertStatus(c, grpc.StatusCode.OK)
        # An uncompressed message (flag 0) under grpc-encoding gzip is fine.
        c = self.h2("List", ic.grpc_frame(b""))
        self.assertStatus(c, grpc.StatusCode.OK)

    def test_broken_gzip_is_internal(self):
        good = gzip_bytes(b"\x0a\x04true" * 50)
        bad_crc = bytearray(good)
        bad_crc[-6] ^= 0x55
        cases = {
            "truncated": (good[:-10], "the gzip stream is truncated"),
            "not gzip": (b"plain bytes, no gzip", "corrupt gzip data"),
            "bad crc": (bytes(bad_crc), "corrupt gzip data"),
            "trailing": (good + b"\x00",
                         "bytes follow the end of the gzip stream"),
            "empty": (b"", "the gzip stream is truncated"),
        }
        for name, (z, why) in cases.items():
            with self.subTest(name):
                c = self.h2("Start", gzip_frame(z))
                self.assertStatus(c, grpc.StatusCode.INTERNAL)
                self.assertEqual(c.headers.get("grpc-message"),
                                 ("gzip request message: " + why)
                                 .replace("%", "%25"))
        # The compressed flag without a grpc-encoding is INTERNAL too.
        c = self.h2("List", gzip_frame(gzip_bytes(b"")), enc=None)
        self.assertStatus(c, grpc.StatusCode.INTERNAL)

    def test_other_encodings_unimplemented(self):
        body = gzip_frame(b"abc")
        for enc in ("deflate", "snappy", "br", "GZIP"):
            with self.subTest(enc):
                c = self.h2("List", body, enc=enc)
                self.assertStatus(c, grpc.StatusCode.UNIMPLEMENTED)
                self.assertIn("grpc-encoding %s is not supported" % enc,
                              c.headers.get("grpc-message", ""))

    def test_every_response_says_accept_encoding(self):
        # A reply with a body, a stream, and Trailers-Only errors.
        self.assertStatus(self.h2("List", ic.grpc_frame(b""), enc=None),
                          grpc.StatusCode.OK)
        st = self.start("true")
        self.wait_final(st.id)
        c = self.h2("GetOutput", ic.grpc_frame(
            base.pb_string(1, st.id.encode())), enc=None)
        self.assertStatus(c, grpc.StatusCode.OK)
        self.assertStatus(self.h2("Status", ic.grpc_frame(
            base.pb_string(1, b"0" * 32)), enc=None),
            grpc.StatusCode.NOT_FOUND)
        self.assertStatus(self.h2("NoSuchMethod", ic.grpc_frame(b""),
                                  enc=None),
                          grpc.StatusCode.UNIMPLEMENTED)
        self.assertStatus(self.h2("List", b"\x00\x00\x00", enc=None),
                          grpc.StatusCode.INTERNAL)



class Bomb(Helpers, base.ServerCase):
    """A gzip bomb, on a server of its own whose memory is measured. ASan
    keeps freed memory in a quarantine (256 MiB by default) that would
    count as growth: this server runs with a small one, as the abuse
    tests' servers whose memory they measure do."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = ic.mktemp("jw-interop-gz-")
        opts = os.environ.get("ASAN_OPTIONS", "")
        ic.serve_alice_bob(
            cls, base.pb_grpc.JobWorkerStub, stop_timeout="2s", env_extra={
                "ASAN_OPTIONS": (opts + ":" if opts else "") +
                "quarantine_size_mb=2:thread_local_quarantine_size_kb=64"})

    def test_gzip_bomb_refused_memory_flat(self):
        bomb = gzip_bomb(1024)  # 1 GiB of zeros in about 1 MiB
        self.assertLess(len(bomb), LIMIT)
        # Warm up: the connection and call paths allocated once.
        self.assertStatus(self.h2("List", gzip_frame(gzip_bytes(b""))),
                          grpc.StatusCode.OK)
        before = vm(self.server.proc.pid, "VmRSS")
        for _ in range(3):
            c = self.h2("List", gzip_frame(bomb))
            self.assertStatus(c, grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("inflates past the limit",
                          c.headers.get("grpc-message", ""))
        # The peak, not just what is left: nothing near the 1 GiB.
        grown = vm(self.server.proc.pid, "VmHWM") - before
        self.assertLess(grown, 16 << 20,
                        "teleportd peak RSS grew by %d bytes" % grown)
        print("bomb x3: peak RSS grew by %d KiB" % (grown >> 10))
        # Still serving, compressed or not.
        self.assertStatus(self.h2("List", gzip_frame(gzip_bytes(b""))),
                          grpc.StatusCode.OK)
        self.alice.List(pb.ListRequest(), timeout=base.RPC_TIMEOUT)


if __name__ == "__main__":
    sys.exit(ic.run_suite("grpc-compression", [Compression, Bomb]))
