#!/usr/bin/python3
"""teleportd's lifecycle: SIGTERM with running jobs (one ignoring SIGTERM)
and an open GetOutput stream exits 0 within the stop timeout plus a few
seconds, leaving no process of any job and ending the stream with OK;
bad flags and unusable certificate files give one clear line on stderr
and exit 2 before listening; --help lists every flag with its default.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402

pb, pb_grpc = ic.load_stubs()

STOP_GRACE = 2.0
RUNNING = pb.JobState.Value("JOB_STATE_RUNNING")


class Shutdown(unittest.TestCase):

    def setUp(self):
        self.server = ic.Server(stop_timeout="2s")
        self.server.start()
        self.chan = ic.channel(self.server.port, "alice")
        self.stub = pb_grpc.JobWorkerStub(self.chan)

    def tearDown(self):
        self.chan.close()
        self.server.cleanup()  # kills it by PID if still running

    def start(self, command, args=()):
        st = self.stub.Start(pb.JobRequest(command=command, args=list(args)),
                             timeout=10)
        self.assertEqual(st.state, RUNNING)
        return st

    def wait_for_output(self, job_id, want, timeout=10):
        stream = self.stub.GetOutput(pb.GetOutputRequest(id=job_id),
                                     timeout=timeout)
        got = b""
        for m in stream:
            got += m.data
            if want in got:
                break
        stream.cancel()
        self.assertIn(want, got)

    def test_sigterm_stops_jobs_ends_streams_exits_0(self):
        jobs = [self.start("sleep", ["1000"]) for _ in range(4)]
        trap = self.start("sh", ["-c", 'trap "" TERM; echo ready; '
                                 'sleep 1000'])
        talk = self.start("sh", ["-c", "echo hello; sleep 1000"])
        jobs += [trap, talk]
        self.wait_for_output(trap.id, b"ready")  # the trap is in place
        self.wait_for_output(talk.id, b"hello")

        pgids = set()
        for j in jobs:
            st = self.stub.Status(pb.StatusRequest(id=j.id), timeout=10)
            self.assertEqual(st.state, RUNNING)
            stat = ic.proc_stat(st.pid)
            self.assertIsNotNone(stat, "job pid %d not in /proc" % st.pid)
            self.assertEqual(stat[1], st.pid, "job leads its process group")
            pgids.add(st.pid)
        # Whatever the outcome, nothing of these jobs outlives the test.
        self.addCleanup(ic.kill_groups, set(pgids))
        # "ready" and "hello" are printed before the shells fork their
        # sleeps: wait (bounded) until both children exist.
        deadline = time.monotonic() + 10
        before = ic.processes_in_groups(pgids)
        while len(before) < len(jobs) + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            before = ic.processes_in_groups(pgids)
        self.assertGreaterEqual(len(before), len(jobs) + 2,
                                "the sh jobs' sleep children: %r" % before)

        res = {}

        caught_up = threading.Event()

        def reader():
            out = b""
            try:
                for m in self.stub.GetOutput(
                        pb.GetOutputRequest(id=talk.id), timeout=30):
                    out += m.data
                    if out == b"hello\n":
                        caught_up.set()
                res["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                res["code"] = e.code()
                res["details"] = e.details()
            res["out"] = out

        t = threading.Thread(target=reader)
        t.start()
        # The stream is open and caught up before the shutdown.
        self.assertTrue(caught_up.wait(20), "the stream never caught up")

        rc, took = self.server.terminate(timeout=STOP_GRACE + 15)
        log = self.server.log_text()
        self.assertEqual(rc, 0, "exit status after SIGTERM; log tail:\n" +
                         log[-3000:])
        self.assertLess(took, STOP_GRACE + 5,
                        "shutdown took %.1fs with --stop-timeout 2s" % took)
        self.assertGreater(took, STOP_GRACE - 0.3,
                           "exited before the TERM-trapping job's grace "
                           "period (%.1fs)" % took)

        deadline = time.monotonic() + 1.0
        left = ic.processes_in_groups(pgids)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = ic.processes_in_groups(pgids)
        self.assertEqual(left, [], "job processes remain after exit")

        t.join(10)
        self.assertFalse(t.is_alive(), "GetOutput stream still open")
        self.assertEqual(res.get("code"), grpc.StatusCode.OK,
                         "stream end: %r" % res)
        self.assertEqual(res.get("out"), b"hello\n")

    def test_sigint_exits_0(self):
        st = self.start("sleep", ["1000"])
        self.addCleanup(ic.kill_groups, {st.pid})
        self.server.proc.send_signal(signal.SIGINT)
        try:
            rc = self.server.proc.wait(STOP_GRACE + 10)
        except subprocess.TimeoutExpired:
            rc = "still running"
        self.assertEqual(rc, 0)
        deadline = time.monotonic() + 1.0
        while ic.processes_in_groups({st.pid}) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(ic.processes_in_groups({st.pid}), [])

    def test_second_server_on_same_data_dir_refused(self):
        r = run_teleportd(["--addr", "127.0.0.1:%d" % ic.free_port(),
                           "--cacert", ic.cert("ca.cert"),
                           "--cert", ic.cert("server.cert"),
                           "--key", ic.cert("server.key"),
                           "--data-dir", self.server.data_dir])
        check_startup_failure(self, r, self.server.data_dir)
        # The first one is unharmed.
        self.stub.List(pb.ListRequest(), timeout=10)


def run_teleportd(args, timeout=15):
    """Runs teleportd to completion; kills it (by PID) after timeout.
    Returns (exit code or None, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TELEPORTD_")}
    p = subprocess.Popen([ic.TELEPORTD] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(errors="replace"), \
            err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        return None, out.decode(errors="replace"), err.decode(errors="replace")


HINT = "Run 'teleportd --help' for usage."


def check_startup_failure(tc, r, mention):
    rc, out, err = r
    tc.assertEqual(rc, 2, "exit status; stderr %r" % err)
    tc.assertNotIn("event=listening", err + out, "it listened first")
    lines = [l for l in err.splitlines() if l.strip()]
    tc.assertTrue(lines, "nothing on stderr")
    tc.assertTrue(lines[0].startswith("teleportd: "),
                  "first line: %r" % lines[0])
    tc.assertTrue(len(lines) == 1 or (len(lines) == 2 and lines[1] == HINT),
                  "want one line (plus the --help hint): %r" % lines)
    tc.assertLess(len(lines[0]), 400)
    if mention:
        tc.assertIn(mention, lines[0], "the line should name %r" % mention)


class Startup(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = ic.mktemp("jw-interop-startup-")
        try:
            cls.extra = ic.make_extra_certs(cls.tmp)
        except Exception:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        cls.garbage = os.path.join(cls.tmp, "garbage.pem")
        with open(cls.garbage, "w") as f:
            f.write("this is not a PEM file\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def base(self, **over):
        a = {"--addr": "127.0.0.1:%d" % ic.free_port(),
             "--cacert": ic.cert("ca.cert"), "--cert": ic.cert("server.cert"),
             "--key": ic.cert("server.key"),
             "--data-dir": os.path.join(self.tmp, "data"),
             "--stop-timeout": "2s"}
        a.update(over)
        args = []
        for k, v in a.items():
            if v is not None:
                args += [k, v]
        return args

    def expect_fail(self, args, mention):
        check_startup_failure(self, run_teleportd(args), mention)

    def test_bad_flags(self):
        cases = [
            (self.base() + ["--bogus"], "--bogus"),
            (self.base() + ["stray-argument"], "stray-argument"),
            (self.base(**{"--stop-timeout": "banana"}), "banana"),
            (self.base(**{"--max-connections": "0"}), "--max-connections"),
            (self.base(**{"--log-level": "loud"}), "loud"),
            (self.base(**{"--addr": "not-an-address"}), "not-an-address"),
            (self.base(**{"--cacert": None}), "--cacert"),
            (self.base()[:-1], "--stop-timeout"),  # flag without a value
            # Sizes and CPUs parse only as docs/isolation.md says: strtod's
            # nan, hex and exponents are refused, naming the flag.
            (self.base() + ["--default-memory", "nan"], "--default-memory"),
            (self.base() + ["--max-memory", "nan"], "--max-memory"),
            (self.base() + ["--max-io-read", "0x10M"], "--max-io-read"),
            (self.base() + ["--max-cpus", "1e3"], "--max-cpus"),
            (self.base() + ["--default-cpus", "inf"], "--default-cpus"),
        ]
        for args, mention in cases:
            with self.subTest(mention):
                self.expect_fail(args, mention)

    def test_address_in_use(self):
        """A port another process listens on: exit 1 (a runtime failure,
        not a bad flag), one line naming the address and what to do."""
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
            addr = "127.0.0.1:%d" % sock.getsockname()[1]
            rc, out, err = run_teleportd(self.base(**{"--addr": addr}))
        finally:
            sock.close()
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(rc, 1, "exit status; stderr %r" % err)
        self.assertNotIn("event=listening", err + out)
        self.assertEqual(
            lines[-1], "teleportd: cannot listen on %s: Address already in "
            "use (another process listens there: stop it, or give another "
            "--addr)" % addr)

    def test_unusable_certificate_files(self):
        missing = os.path.join(self.tmp, "no-such.cert")
        cases = [
            ({"--cert": missing}, missing),
            ({"--key": missing}, missing),
            ({"--cacert": missing}, missing),
            ({"--cert": self.garbage}, self.garbage),
            ({"--key": self.garbage}, self.garbage),
            ({"--cert": self.tmp}, self.tmp),
        ]
        if os.geteuid() != 0:  # root reads mode 000 files anyway
            unreadable = os.path.join(self.tmp, "unreadable.key")
            shutil.copy(ic.cert("server.key"), unreadable)
            os.chmod(unreadable, 0)
            cases.append(({"--key": unreadable}, unreadable))
        for over, mention in cases:
            with self.subTest(repr(over)):
                self.expect_fail(self.base(**over), mention)

    def test_key_not_matching_certificate(self):
        stray_key = self.extra["stray"][1]
        rc, out, err = run_teleportd(self.base(**{"--key": stray_key}))
        check_startup_failure(self, (rc, out, err), None)
        self.assertRegex(err.lower(), r"match|mismatch|does not belong",
                         "the line should say the key does not match")

    def test_help_lists_every_flag_with_defaults(self):
        rc, out, err = run_teleportd(["--help"])
        self.assertEqual(rc, 0, err)
        self.assertNotIn("event=listening", out + err)
        flags = ["--addr", "--cacert", "--cert", "--key", "--data-dir",
                 "--stop-timeout", "--max-connections", "--log-level",
                 "--help", "--version"]
        for f in flags:
            self.assertRegex(out, r"(^|\s|,)%s\b" % re.escape(f),
                             "--help does not list %s" % f)
        # Each flag with a default says it in its own entry.
        entries = re.split(r"\n\s{0,4}(?=-)", out)
        for f, want in (("--addr", "127.0.0.1:3000"), ("--data-dir", None),
                        ("--stop-timeout", "10s"),
                        ("--max-connections", "1024"),
                        ("--log-level", "info")):
            with self.subTest(f):
                e = [x for x in entries if x.lstrip().startswith(f + " ")]
                self.assertEqual(len(e), 1, "entry for %s in %r" % (f, out))
                self.assertIn("default", e[0])
                if want:
                    self.assertIn(want, e[0])
        rc, out2, _ = run_teleportd(["-h"])
        self.assertEqual((rc, out2), (0, out))
        rc, out3, _ = run_teleportd(["--version"])
        self.assertEqual(rc, 0)
        self.assertTrue(out3.startswith("teleportd "), out3)


if __name__ == "__main__":
    sys.exit(ic.run_suite("shutdown", [Shutdown, Startup]))
