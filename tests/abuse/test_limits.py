"""teleportd's limits, each hit on purpose, and a client guessing another
client's job ids.

Every limit answers RESOURCE_EXHAUSTED with a message naming the limit
and its value (or, for streams and connections, refuses at the HTTP/2 or
TCP level as docs/protocol.md says); output past --max-output-bytes is
dropped while the job keeps running and both JobStatus and GetOutput say
how much; the oldest finished jobs go, with their logs.
"""

import glob
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import abuse_common as ac  # noqa: E402
from abuse_common import ic  # noqa: E402

RE = 8  # RESOURCE_EXHAUSTED


class Limits(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = ic.load_stubs()
        cls.srv = ic.Server(extra_args=[
            "--max-jobs", "5", "--max-jobs-per-client", "3",
            "--max-output-bytes", "64K", "--max-request-bytes", "64K",
            "--max-streams", "4", "--max-connections", "8",
            "--log-level", "info"],
            env_extra={"TELEPORTD_MAX_FINISHED_PER_CLIENT": "3"}).start()
        cls.alice = cls.rpc.JobWorkerStub(ic.channel(cls.srv.port, "alice"))
        cls.bob = cls.rpc.JobWorkerStub(ic.channel(cls.srv.port, "bob"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.cleanup()

    def start(self, stub, *argv):
        return stub.Start(self.pb.JobRequest(command=argv[0],
                                             args=list(argv[1:])), timeout=10)

    def wait_final(self, stub, jid):
        deadline = time.monotonic() + 20
        while True:
            st = stub.Status(self.pb.StatusRequest(id=jid), timeout=5)
            if st.state != self.pb.JOB_STATE_RUNNING or \
                    time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def stop_all(self, stub):
        for j in stub.List(self.pb.ListRequest(), timeout=10).jobs:
            if j.state == self.pb.JOB_STATE_RUNNING:
                stub.Stop(self.pb.StopRequest(id=j.id), timeout=20)

    def assert_exhausted(self, fn, *needles):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                         cm.exception.details())
        for n in needles:
            self.assertIn(n, cm.exception.details())
        return cm.exception.details()

    def test_1_running_jobs(self):
        """--max-jobs-per-client=3, --max-jobs=5."""
        try:
            for _ in range(3):
                self.start(self.alice, "sleep", "30")
            self.assert_exhausted(
                lambda: self.start(self.alice, "sleep", "30"),
                "running jobs per client limit reached "
                "(--max-jobs-per-client=3)")
            for _ in range(2):
                self.start(self.bob, "sleep", "30")
            self.assert_exhausted(
                lambda: self.start(self.bob, "sleep", "30"),
                "running jobs limit reached (--max-jobs=5)")
        finally:
            self.stop_all(self.alice)
            self.stop_all(self.bob)
        # Stopped jobs no longer count.
        self.start(self.alice, "true")

    def test_2_output_cap(self):
        """--max-output-bytes=64K: the job runs on, what is past the cap is
        dropped and counted; GetOutput ends with a message saying so."""
        total = 200000
        job = self.start(self.alice, "sh", "-c",
                         "head -c %d /dev/zero; echo tail; exit 3" % total)
        # A reader attached while the job runs is never stalled.
        out = list(self.alice.GetOutput(self.pb.GetOutputRequest(id=job.id),
                                        timeout=20))
        st = self.wait_final(self.alice, job.id)
        self.assertEqual(st.state, self.pb.JOB_STATE_EXITED)
        self.assertEqual(st.exit_code, 3)
        self.assertEqual(st.output_bytes, 65536)
        self.assertEqual(st.output_dropped_bytes, total + 5 - 65536)
        data = b"".join(m.data for m in out)
        self.assertEqual(data, b"\0" * 65536)
        self.assertEqual(out[-1].data, b"")
        self.assertEqual(out[-1].dropped_bytes, total + 5 - 65536)
        self.assertTrue(all(m.dropped_bytes == 0 for m in out[:-1]))
        self.assertIn("event=output_capped", self.srv.log_text())

    def test_3_finished_retention(self):
        """TELEPORTD_MAX_FINISHED_PER_CLIENT=3: the job that finished first
        goes, with its log file; other clients' jobs stay."""
        import grpc
        self.stop_all(self.alice)
        bobs = self.start(self.bob, "true")
        self.wait_final(self.bob, bobs.id)
        ids = []
        for i in range(5):
            ids.append(self.start(self.alice, "echo", str(i)).id)
            self.wait_final(self.alice, ids[-1])
        kept = [j.id for j in self.alice.List(self.pb.ListRequest(),
                                              timeout=10).jobs]
        self.assertEqual(kept, ids[2:])
        with self.assertRaises(grpc.RpcError) as cm:
            self.alice.Status(self.pb.StatusRequest(id=ids[0]), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        logs = {os.path.basename(p)[:-4] for p in
                glob.glob(os.path.join(self.srv.data_dir, "*.log"))}
        self.assertFalse({ids[0], ids[1]} & logs)
        self.assertTrue(set(ids[2:]) <= logs)
        self.assertEqual(self.bob.Status(self.pb.StatusRequest(id=bobs.id),
                                         timeout=5).id, bobs.id)

    def test_4_request_size(self):
        """--max-request-bytes=64K: refused from the length prefix."""
        msg = self.assert_exhausted(
            lambda: self.start(self.alice, "echo", "x" * 100000), "65536")
        self.assertIn("exceeds the limit", msg)

    def test_5_streams_per_connection(self):
        """--max-streams=4 (SETTINGS_MAX_CONCURRENT_STREAMS): a client that
        respects it (grpcio queues the rest) gets all its 8 concurrent
        calls answered; one that opens a fifth stream anyway gets GOAWAY
        PROTOCOL_ERROR (nghttp2's choice among the two RFC 9113 5.1.2
        allows)."""
        job = self.start(self.alice, "sh", "-c", "sleep 1; echo done")
        try:
            calls = [self.alice.GetOutput.__call__(
                self.pb.GetOutputRequest(id=job.id), timeout=20)
                for _ in range(8)]
            for call in calls:
                self.assertEqual(b"".join(m.data for m in call), b"done\n")
            job = self.start(self.alice, "sleep", "5")
            c = ac.RawConn(self.srv.port)
            block = ac.hpack_block(ac.grpc_headers(self.srv.port,
                                                   "GetOutput"))
            body = ic.grpc_frame(self.pb.GetOutputRequest(
                id=job.id).SerializeToString())
            # The limit applies once our ACK of the server's SETTINGS is in.
            c.read_for(2, until=lambda x: x.of_type(ac.SETTINGS, 0) and
                       any(f[1] & ac.ACK for f in x.of_type(ac.SETTINGS)))
            out = b""
            for sid in (1, 3, 5, 7, 9):
                out += ac.frame(ac.HEADERS, ac.END_HEADERS, sid, block) + \
                    ac.frame(ac.DATA, ac.END_STREAM, sid, body)
            c.send(out)
            c.read_for(5, until=lambda x: x.closed)
            self.assertIsNotNone(c.goaway)
            self.assertEqual(c.goaway[1], ac.PROTOCOL_ERROR)
            self.assertTrue(c.closed)
            c.close()
        finally:
            self.stop_all(self.alice)

    def test_6_connections(self):
        """--max-connections=8: past it a connection is closed at accept;
        the ones open keep working."""
        conns = []
        try:
            # Two gRPC channels of this class already hold a connection.
            for _ in range(6):
                conns.append(ac.RawConn(self.srv.port))
                conns[-1].read_for(1, until=lambda x: x.of_type(ac.SETTINGS))
            with self.assertRaises((OSError, AssertionError)):
                extra = ac.RawConn(self.srv.port, timeout=5)
                extra.read_for(3, until=lambda x: x.closed)
                conns.append(extra)
                self.assertFalse(extra.closed)
            self.assertIn("connection limit reached", self.srv.log_text())
            self.alice.List(self.pb.ListRequest(), timeout=5)
        finally:
            for c in conns:
                c.close()

    def test_7_guessed_ids(self):
        """bob on alice's job ids: PERMISSION_DENIED without saying whose or
        what; 10 000 guessed ids: NOT_FOUND; nothing of alice's in bob's
        List."""
        import grpc
        job = self.start(self.alice, "sh", "-c", "echo secret-output")
        self.wait_final(self.alice, job.id)
        for call, req in ((self.bob.Status, self.pb.StatusRequest),
                          (self.bob.Stop, self.pb.StopRequest)):
            with self.assertRaises(grpc.RpcError) as cm:
                call(req(id=job.id), timeout=5)
            self.assertEqual(cm.exception.code(),
                             grpc.StatusCode.PERMISSION_DENIED)
            for secret in ("alice", "secret", "sh"):
                self.assertNotIn(secret, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.bob.GetOutput(self.pb.GetOutputRequest(id=job.id),
                                    timeout=5))
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.PERMISSION_DENIED)
        self.assertNotIn(job.id, [j.id for j in self.bob.List(
            self.pb.ListRequest(), timeout=5).jobs])
        codes = {}
        ids = [os.urandom(16).hex() for _ in range(10000)]
        for i in range(0, len(ids), 250):
            futs = [self.bob.Status.future(self.pb.StatusRequest(id=x),
                                           timeout=30)
                    for x in ids[i:i + 250]]
            for x, f in zip(ids[i:i + 250], futs):
                try:
                    f.result()
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.RpcError as e:
                    codes[e.code().name] = codes.get(e.code().name, 0) + 1
                    self.assertEqual(e.details(), "job %s not found" % x)
        self.assertEqual(codes, {"NOT_FOUND": 10000})
        ac.assert_alive(self, self.srv)


class RequestCaps(unittest.TestCase):
    """--max-args, --max-env, --max-request-strings refuse a Start with
    INVALID_ARGUMENT naming the flag; --max-disk-per-client removes the
    client's oldest finished jobs, then drops its output."""

    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = ic.load_stubs()
        cls.srv = ic.Server(extra_args=[
            "--max-args", "3", "--max-env", "2",
            "--max-request-strings", "1K",
            "--max-disk-per-client", "100K"]).start()
        cls.alice = cls.rpc.JobWorkerStub(ic.channel(cls.srv.port, "alice"))
        cls.bob = cls.rpc.JobWorkerStub(ic.channel(cls.srv.port, "bob"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.cleanup()

    def refused(self, needle, **kw):
        import grpc
        with self.assertRaises(grpc.RpcError) as cm:
            self.alice.Start(self.pb.JobRequest(**kw), timeout=10)
        self.assertEqual(cm.exception.code(),
                         grpc.StatusCode.INVALID_ARGUMENT,
                         cm.exception.details())
        self.assertIn(needle, cm.exception.details())

    def run_job(self, stub, *argv):
        st = stub.Start(self.pb.JobRequest(command=argv[0],
                                           args=list(argv[1:])), timeout=10)
        deadline = time.monotonic() + 20
        while st.state == self.pb.JOB_STATE_RUNNING and \
                time.monotonic() < deadline:
            time.sleep(0.02)
            st = stub.Status(self.pb.StatusRequest(id=st.id), timeout=5)
        return st

    def test_counts_and_bytes(self):
        self.refused("more than 3 args entries (--max-args)",
                     command="true", args=["a"] * 4)
        self.refused("more than 2 env entries (--max-env)",
                     command="true", env=["A=1"] * 3)
        self.refused("more than 1024 bytes (--max-request-strings)",
                     command="true", args=["x" * 1100])
        st = self.alice.Start(self.pb.JobRequest(
            command="true", args=["a"] * 3, env=["A=1"] * 2), timeout=10)
        self.assertEqual(list(st.args), ["a"] * 3)

    def test_disk_per_client(self):
        import grpc
        first = self.run_job(self.alice, "head", "-c", "40000", "/dev/zero")
        self.run_job(self.alice, "head", "-c", "40000", "/dev/zero")
        bobs = self.run_job(self.bob, "head", "-c", "90000", "/dev/zero")
        third = self.run_job(self.alice, "head", "-c", "40000", "/dev/zero")
        self.assertEqual((third.output_bytes, third.output_dropped_bytes),
                         (40000, 0))
        with self.assertRaises(grpc.RpcError) as cm:
            self.alice.Status(self.pb.StatusRequest(id=first.id), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        big = self.run_job(self.alice, "head", "-c", "200000", "/dev/zero")
        self.assertEqual(big.state, self.pb.JOB_STATE_EXITED)
        self.assertEqual(big.output_bytes + big.output_dropped_bytes, 200000)
        self.assertLessEqual(big.output_bytes, 100 * 1024)
        self.assertGreater(big.output_dropped_bytes, 0)
        self.assertEqual(
            self.bob.Status(self.pb.StatusRequest(id=bobs.id),
                            timeout=5).output_bytes, 90000)
        deadline = time.monotonic() + 10
        while "output_disk_capped" not in self.srv.log_text() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("max_disk_per_client=102400",
                      self.srv.log_text())


class BadFlags(unittest.TestCase):

    def test_bad_values_exit_2(self):
        for args in (["--max-jobs", "-1"], ["--max-streams", "0"],
                     ["--max-request-bytes", "12"],
                     ["--max-output-bytes", "lots"],
                     ["--handshake-timeout", "forever"],
                     ["--max-finished-per-client", "1e3"],
                     ["--max-args", "-1"], ["--max-env", "many"],
                     ["--max-request-strings", "1T"],
                     ["--max-disk-per-client", "lots"],
                     ["--request-timeout", "soon"],
                     ["--idle-timeout", "0"],
                     ["--max-connections-per-client", "0"]):
            r = subprocess.run([ic.TELEPORTD, "--cacert", "x", "--cert", "x",
                                "--key", "x"] + args, capture_output=True,
                               timeout=20)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(args[0].encode(), r.stderr)
        r = subprocess.run([ic.TELEPORTD, "--help"], capture_output=True,
                           timeout=20)
        for flag in ("--max-jobs ", "--max-jobs-per-client", "--max-streams",
                     "--max-output-bytes", "--max-finished-per-client",
                     "--max-request-bytes", "--handshake-timeout",
                     "TELEPORTD_HANDSHAKE_TIMEOUT", "--max-args",
                     "--max-env", "--max-request-strings",
                     "--max-disk-per-client", "--request-timeout",
                     "TELEPORTD_REQUEST_TIMEOUT", "--idle-timeout",
                     "TELEPORTD_IDLE_TIMEOUT", "--max-connections-per-client",
                     "TELEPORTD_MAX_CONNECTIONS_PER_CLIENT"):
            self.assertIn(flag.encode(), r.stdout)


if __name__ == "__main__":
    ic.reexec()
    sys.exit(ic.run_suite("abuse-limits", [Limits, RequestCaps, BadFlags]))
