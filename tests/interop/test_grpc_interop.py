#!/usr/bin/python3
"""Interop: teleportd against a real gRPC implementation (Debian's
python3-grpcio), with stubs generated from proto/jobworker.proto at test
time, plus raw HTTP/2 (python3-h2) for what a gRPC library will not send.

One teleportd per test class (temp data dir, --stop-timeout 2s); the class
teardown SIGTERMs it and checks it exits 0. Loopback only; every wait is
bounded.
"""

import os
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402

pb, pb_grpc = ic.load_stubs()

STATE = pb.JobState
RUNNING = STATE.Value("JOB_STATE_RUNNING")
EXITED = STATE.Value("JOB_STATE_EXITED")
SIGNALED = STATE.Value("JOB_STATE_SIGNALED")
STOPPED = STATE.Value("JOB_STATE_STOPPED")
STDOUT = pb.OutputStream.Value("OUTPUT_STREAM_STDOUT")
STDERR = pb.OutputStream.Value("OUTPUT_STREAM_STDERR")
STOP_GRACE = 2.0  # --stop-timeout of the servers below
RPC_TIMEOUT = 15  # seconds, for every unary call
SVC = "/jobworker.v1.JobWorker/"


def raw_unary(chan, method):
    """A unary call that sends and returns raw bytes."""
    return chan.unary_unary(method, request_serializer=lambda b: b,
                            response_deserializer=lambda b: b)


def raw_stream(chan, method):
    return chan.unary_stream(method, request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)


def pb_string(field, data):
    """A length-delimited protobuf field (for short strings)."""
    assert len(data) < 128
    return bytes([(field << 3) | 2, len(data)]) + data


class ServerCase(unittest.TestCase):
    """A test class with its own teleportd and alice/bob stubs."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = ic.mktemp("jw-interop-")
        # Jobs run as their client's own unprivileged user: they write and
        # read files and work in this directory, as in /tmp.
        os.chmod(cls.tmp, 0o1777)
        ic.serve_alice_bob(cls, pb_grpc.JobWorkerStub, stop_timeout="2s")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.alice_chan.close()
            cls.bob_chan.close()
            rc, took = cls.server.terminate(timeout=STOP_GRACE + 15)
            if rc != 0:
                raise AssertionError(
                    "teleportd exit status after SIGTERM: got %r, want 0 "
                    "(%.1fs); log tail:\n%s" %
                    (rc, took, cls.server.log_text()[-4000:]))
        finally:
            cls.server.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --

    def start(self, command, args=(), env=(), wd="", who=None):
        stub = who or self.alice
        st = stub.Start(pb.JobRequest(command=command, args=list(args),
                                      env=list(env), working_dir=wd),
                        timeout=RPC_TIMEOUT)
        self.assertEqual(st.state, RUNNING, "Start answers RUNNING")
        return st

    def wait_final(self, job_id, who=None, timeout=15.0):
        stub = who or self.alice
        deadline = time.monotonic() + timeout
        while True:
            st = stub.Status(pb.StatusRequest(id=job_id), timeout=RPC_TIMEOUT)
            if st.state != RUNNING:
                return st
            if time.monotonic() > deadline:
                self.fail("job %s still RUNNING after %.0fs" %
                          (job_id, timeout))
            time.sleep(0.05)

    def output(self, job_id, who=None, timeout=20.0):
        """The whole GetOutput stream: (stdout bytes, stderr bytes, n)."""
        stub = who or self.alice
        out, err, n = bytearray(), bytearray(), 0
        for m in stub.GetOutput(pb.GetOutputRequest(id=job_id),
                                timeout=timeout):
            n += 1
            self.assertIn(m.stream, (STDOUT, STDERR))
            (out if m.stream == STDOUT else err).extend(m.data)
        return bytes(out), bytes(err), n

    def assertCode(self, code, fn, *args, **kw):
        """fn(*args) must fail with code and a non-empty message."""
        with self.assertRaises(grpc.RpcError) as cm:
            r = fn(*args, **kw)
            if hasattr(r, "__next__"):  # a server stream
                for _ in r:
                    pass
        e = cm.exception
        self.assertEqual(e.code(), code,
                         "got %s: %r" % (e.code(), e.details()))
        if code not in (grpc.StatusCode.UNIMPLEMENTED,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED):
            self.assertTrue(e.details(), "error message is empty")
        return e

    def stop_quietly(self, job_id, who=None):
        try:
            (who or self.alice).Stop(pb.StopRequest(id=job_id),
                                     timeout=RPC_TIMEOUT)
        except grpc.RpcError:
            pass


class JobRpcs(ServerCase):
    """Start, Status, Stop, GetOutput, List."""

    def test_start_and_status_fields(self):
        t0 = time.time_ns()
        st = self.start("sh", ["-c", "printf abc; exit 3"])
        self.assertRegex(st.id, r"^[0-9a-f]{32}$")
        self.assertEqual(st.owner, "alice")
        self.assertEqual(st.command, "sh")
        self.assertEqual(list(st.args), ["-c", "printf abc; exit 3"])
        self.assertGreater(st.pid, 1)
        self.assertEqual(st.ended_at_unix_nano, 0)
        self.assertLess(abs(st.started_at_unix_nano - t0), 60 * 10**9,
                        "started_at is unix ns, near now")
        fin = self.wait_final(st.id)
        self.assertEqual(fin.state, EXITED)
        self.assertEqual(fin.exit_code, 3)
        self.assertEqual(fin.signal, 0)
        self.assertEqual(fin.id, st.id)
        self.assertEqual(fin.pid, st.pid)
        self.assertEqual(fin.started_at_unix_nano, st.started_at_unix_nano)
        self.assertGreaterEqual(fin.ended_at_unix_nano,
                                fin.started_at_unix_nano)
        self.assertEqual(fin.output_bytes, 3)
        self.assertEqual(self.output(st.id)[:2], (b"abc", b""))

    def test_exit_zero_and_signaled(self):
        st = self.start("true")
        fin = self.wait_final(st.id)
        self.assertEqual((fin.state, fin.exit_code, fin.signal),
                         (EXITED, 0, 0))
        st = self.start("sh", ["-c", "kill -KILL $$"])
        fin = self.wait_final(st.id)
        self.assertEqual((fin.state, fin.signal), (SIGNALED, 9))

    def test_output_replay_byte_exact_with_stderr_apart(self):
        out = os.urandom(1024 * 1024 + 13) + b"\x00\xff no newline"
        err = os.urandom(256 * 1024 + 7) + b"\x00"
        fo, fe = os.path.join(self.tmp, "out.bin"), os.path.join(
            self.tmp, "err.bin")
        with open(fo, "wb") as f:
            f.write(out)
        with open(fe, "wb") as f:
            f.write(err)
        st = self.start("sh", ["-c", 'cat "$1"; cat "$2" >&2; cat "$1"',
                               "sh", fo, fe])
        fin = self.wait_final(st.id)
        self.assertEqual((fin.state, fin.exit_code), (EXITED, 0))
        self.assertEqual(fin.output_bytes, 2 * len(out) + len(err))
        got_out, got_err, n = self.output(st.id)
        self.assertEqual(len(got_out), 2 * len(out))
        self.assertTrue(got_out == out + out, "stdout differs")
        self.assertEqual(len(got_err), len(err))
        self.assertTrue(got_err == err, "stderr differs")
        # Two readers at once see the same bytes.
        res = []
        ths = [threading.Thread(target=lambda: res.append(
            self.output(st.id)[:2])) for _ in range(2)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
        self.assertEqual(len(res), 2)
        for r in res:
            self.assertTrue(r == (out + out, err), "concurrent replay differs")

    def test_output_live(self):
        trigger = os.path.join(self.tmp, "go-live")
        script = ('printf "%s" "$1"; printf "%s" "$2" >&2; i=0; '
                  'while [ ! -e "$3" ] && [ $i -lt 300 ]; do sleep 0.05; '
                  'i=$((i+1)); done; printf "%s" "$4"; printf "%s" "$5" >&2')
        st = self.start("sh", ["-c", script, "sh", "out-one|", "err-one|",
                               trigger, "out-two", "err-two"])
        out, err = bytearray(), bytearray()
        triggered_after = None
        stream = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                      timeout=20)
        for m in stream:
            (out if m.stream == STDOUT else err).extend(m.data)
            if triggered_after is None and out == b"out-one|" and \
                    err == b"err-one|":
                # Everything so far arrived while the job waits: live.
                triggered_after = (bytes(out), bytes(err))
                open(trigger, "w").close()
        self.assertEqual(triggered_after, (b"out-one|", b"err-one|"),
                         "first part did not arrive before the job went on")
        self.assertEqual(bytes(out), b"out-one|out-two")
        self.assertEqual(bytes(err), b"err-one|err-two")
        self.assertEqual(stream.code(), grpc.StatusCode.OK)
        fin = self.wait_final(st.id)
        self.assertEqual((fin.state, fin.exit_code), (EXITED, 0))

    def test_output_live_large_binary(self):
        parts = [os.urandom(n) for n in (300 * 1024, 100 * 1024, 200 * 1024,
                                         150 * 1024 + 1)]
        files = []
        for i, data in enumerate(parts):
            files.append(os.path.join(self.tmp, "live%d.bin" % i))
            with open(files[-1], "wb") as f:
                f.write(data)
        trigger = os.path.join(self.tmp, "go-live-large")
        script = ('cat "$1"; cat "$2" >&2; i=0; '
                  'while [ ! -e "$5" ] && [ $i -lt 300 ]; do sleep 0.05; '
                  'i=$((i+1)); done; cat "$3"; cat "$4" >&2')
        st = self.start("sh", ["-c", script, "sh"] + files + [trigger])
        out, err = bytearray(), bytearray()
        live = False
        stream = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                      timeout=30)
        for m in stream:
            (out if m.stream == STDOUT else err).extend(m.data)
            if not live and len(out) == len(parts[0]) and \
                    len(err) == len(parts[1]):
                live = True
                self.assertTrue(out == parts[0] and err == parts[1])
                open(trigger, "w").close()
        self.assertTrue(live, "first half not streamed before the trigger")
        self.assertEqual((len(out), len(err)),
                         (len(parts[0]) + len(parts[2]),
                          len(parts[1]) + len(parts[3])))
        self.assertTrue(out == parts[0] + parts[2], "stdout differs")
        self.assertTrue(err == parts[1] + parts[3], "stderr differs")

    def test_many_concurrent_readers(self):
        data = os.urandom(512 * 1024)
        f = os.path.join(self.tmp, "many.bin")
        with open(f, "wb") as fh:
            fh.write(data)
        trigger = os.path.join(self.tmp, "many-go")
        # The job sends its data only once all 12 readers have its first
        # line: each stream is live, not a replay of a finished job.
        st = self.start("sh", ["-c", 'echo ready; i=0; while [ ! -e "$2" ] '
                               '&& [ $i -lt 600 ]; do sleep 0.05; '
                               'i=$((i+1)); done; cat "$1"', "sh", f, trigger])
        res, lock, attached = [], threading.Lock(), [0]

        def reader():
            got, seen = bytearray(), False
            for m in self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                          timeout=30):
                got.extend(m.data)
                if not seen and got.startswith(b"ready\n"):
                    seen = True
                    with lock:
                        attached[0] += 1
            res.append(bytes(got))

        ths = [threading.Thread(target=reader) for _ in range(12)]
        for t in ths:
            t.start()
        all_in = ic.wait_until(lambda: attached[0] == 12, 30)
        open(trigger, "w").close()
        for t in ths:
            t.join(40)
        self.assertTrue(all_in, "the 12 readers did not all attach")
        self.assertEqual(len(res), 12, "some readers failed or hung")
        self.assertTrue(all(r == b"ready\n" + data for r in res),
                        "a reader got different bytes")

    def test_clean_env_and_working_dir(self):
        st = self.start("env", env=["FOO=bar baz", "EMPTY=", "X=a=b"])
        self.wait_final(st.id)
        lines = self.output(st.id)[0].decode().splitlines()
        self.assertIn("FOO=bar baz", lines)
        self.assertIn("EMPTY=", lines)
        self.assertIn("X=a=b", lines)
        self.assertTrue(any(l.startswith("PATH=") for l in lines),
                        "a default PATH: %r" % lines)
        self.assertFalse(any("JW_INTEROP_MARKER" in l for l in lines),
                         "server environment leaked into the job: %r" % lines)
        wd = os.path.realpath(self.tmp)
        st = self.start("pwd", wd=wd)
        self.wait_final(st.id)
        self.assertEqual(self.output(st.id)[0], wd.encode() + b"\n")
        # stdin is /dev/null: cat ends at once with no output.
        st = self.start("cat")
        fin = self.wait_final(st.id, timeout=10)
        self.assertEqual((fin.state, fin.exit_code, fin.output_bytes),
                         (EXITED, 0, 0))
        # No shell: the command is run directly, arguments untouched.
        st = self.start("echo", ["$HOME", "*", "a b"])
        self.wait_final(st.id)
        self.assertEqual(self.output(st.id)[0], b"$HOME * a b\n")

    def test_empty_working_dir_is_server_cwd(self):
        # proto/jobworker.proto: "The working directory; empty means the
        # server's own working directory." (The server runs in its tmp dir.)
        st = self.start("pwd")
        self.wait_final(st.id)
        self.assertEqual(self.output(st.id)[0],
                         os.path.realpath(self.server.tmp).encode() +
                         b"\n", "empty working_dir: the server's cwd")

    def test_stop_process_group_and_stop_again(self):
        st = self.start("sh", ["-c", "sleep 60 & sleep 60; wait"])
        stat = ic.proc_stat(st.pid)
        self.assertIsNotNone(stat, "job process not found in /proc")
        self.assertEqual(stat[1], st.pid, "the job leads its process group")
        # The shell and both its sleeps, before the stop.
        ic.wait_until(lambda: len(ic.processes_in_groups({st.pid})) >= 3, 10)
        self.assertGreaterEqual(len(ic.processes_in_groups({st.pid})), 3,
                                "the job's children did not start")
        t0 = time.monotonic()
        fin = self.alice.Stop(pb.StopRequest(id=st.id), timeout=RPC_TIMEOUT)
        took = time.monotonic() - t0
        self.assertEqual(fin.state, STOPPED)
        self.assertEqual(fin.signal, 15)
        self.assertGreater(fin.ended_at_unix_nano, 0)
        self.assertLess(took, STOP_GRACE, "SIGTERM alone ends it")
        deadline = time.monotonic() + 3
        while ic.processes_in_groups({st.pid}) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(ic.processes_in_groups({st.pid}), [],
                         "processes of the stopped job's group remain")
        again = self.alice.Stop(pb.StopRequest(id=st.id), timeout=RPC_TIMEOUT)
        self.assertEqual((again.state, again.signal, again.ended_at_unix_nano),
                         (STOPPED, 15, fin.ended_at_unix_nano))

    def test_stop_finished_job_returns_its_status(self):
        st = self.start("sh", ["-c", "exit 5"])
        self.wait_final(st.id)
        fin = self.alice.Stop(pb.StopRequest(id=st.id), timeout=RPC_TIMEOUT)
        self.assertEqual((fin.state, fin.exit_code), (EXITED, 5))

    def test_stop_job_that_traps_term(self):
        st = self.start("sh", ["-c", 'trap "" TERM; echo ready; sleep 100'])
        # Wait until the trap is in place (the job said so).
        stream = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                      timeout=10)
        for m in stream:
            if b"ready" in m.data:
                break
        stream.cancel()
        t0 = time.monotonic()
        fin = self.alice.Stop(pb.StopRequest(id=st.id),
                              timeout=STOP_GRACE + 10)
        took = time.monotonic() - t0
        self.assertEqual(fin.state, STOPPED)
        self.assertEqual(fin.signal, 9)
        self.assertLess(took, STOP_GRACE + 1.0,
                        "Stop took %.2fs with --stop-timeout 2s" % took)
        self.assertGreater(took, STOP_GRACE - 0.3,
                           "SIGKILL came before the grace period (%.2fs)"
                           % took)
        # Stop answers once the job is final, and with a cgroup that is
        # once its cgroup is empty: nothing of the job may be left then.
        self.assertEqual(ic.processes_in_groups({st.pid}), [],
                         "processes of the stopped job's group remain")

    def test_list_shows_only_callers_jobs(self):
        a1 = self.start("true").id
        b1 = self.start("true", who=self.bob).id
        a2 = self.start("true").id
        al = self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT).jobs
        bl = self.bob.List(pb.ListRequest(), timeout=RPC_TIMEOUT).jobs
        aids = [j.id for j in al]
        bids = [j.id for j in bl]
        self.assertTrue(all(j.owner == "alice" for j in al))
        self.assertTrue(all(j.owner == "bob" for j in bl))
        self.assertIn(a1, aids)
        self.assertIn(a2, aids)
        self.assertLess(aids.index(a1), aids.index(a2), "oldest first")
        self.assertNotIn(b1, aids)
        self.assertIn(b1, bids)
        self.assertNotIn(a1, bids)
        self.assertNotIn(a2, bids)
        self.assertEqual(len(set(aids)), len(aids))
        st = self.bob.Status(pb.StatusRequest(id=b1), timeout=RPC_TIMEOUT)
        self.assertEqual(st.owner, "bob")


class Errors(ServerCase):
    """Status codes for bad requests and other clients' jobs."""

    def test_not_found(self):
        unknown = os.urandom(16).hex()
        C = grpc.StatusCode.NOT_FOUND
        self.assertCode(C, self.alice.Status, pb.StatusRequest(id=unknown),
                        timeout=RPC_TIMEOUT)
        self.assertCode(C, self.alice.Stop, pb.StopRequest(id=unknown),
                        timeout=RPC_TIMEOUT)
        self.assertCode(C, self.alice.GetOutput,
                        pb.GetOutputRequest(id=unknown), timeout=RPC_TIMEOUT)
        for bad in ("", "not-a-job-id", "x" * 1000):
            e = self.assertCode(C, self.alice.Status,
                                pb.StatusRequest(id=bad), timeout=RPC_TIMEOUT)
            self.assertLess(len(e.details()), 400, "message stays short")

    def test_permission_denied_other_cn(self):
        st = self.start("sleep", ["30"])
        try:
            C = grpc.StatusCode.PERMISSION_DENIED
            self.assertCode(C, self.bob.Status, pb.StatusRequest(id=st.id),
                            timeout=RPC_TIMEOUT)
            self.assertCode(C, self.bob.Stop, pb.StopRequest(id=st.id),
                            timeout=RPC_TIMEOUT)
            self.assertCode(C, self.bob.GetOutput,
                            pb.GetOutputRequest(id=st.id),
                            timeout=RPC_TIMEOUT)
            now = self.alice.Status(pb.StatusRequest(id=st.id),
                                    timeout=RPC_TIMEOUT)
            self.assertEqual(now.state, RUNNING, "bob's Stop did nothing")
        finally:
            self.stop_quietly(st.id)

    def test_invalid_argument(self):
        f = os.path.join(self.tmp, "a-file")
        open(f, "w").close()
        cases = [
            ("empty command", dict(command="")),
            ("NUL in command", dict(command="ec\x00ho")),
            ("NUL in args", dict(command="echo", args=["ok", "a\x00b"])),
            ("NUL in env", dict(command="echo", env=["A=1", "B=\x00"])),
            ("NUL in working_dir", dict(command="echo",
                                        working_dir=self.tmp + "\x00x")),
            ("env without =", dict(command="echo", env=["NOEQUALS"])),
            ("env with empty key", dict(command="echo", env=["=value"])),
            ("command not found", dict(command="jw-no-such-command-x1")),
            ("missing path", dict(command="/nonexistent/bin/jw")),
            ("missing working dir", dict(command="echo",
                                         working_dir="/nonexistent/jw-dir")),
            ("working dir is a file", dict(command="echo", working_dir=f)),
        ]
        before = {j.id for j in self.alice.List(
            pb.ListRequest(), timeout=RPC_TIMEOUT).jobs}
        for name, kw in cases:
            with self.subTest(name):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT,
                                self.alice.Start, pb.JobRequest(**kw),
                                timeout=RPC_TIMEOUT)
        after = self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT).jobs
        self.assertEqual([j for j in after if j.id not in before and
                          j.state == RUNNING], [],
                         "a refused Start left a running job")

    def test_argument_list_too_long_is_not_internal(self):
        # execve refuses (E2BIG): the request is at fault, not the server.
        # Which client-fault code is a judgment call; INTERNAL is wrong.
        for name, req in (
                ("one 200 KiB arg", pb.JobRequest(
                    command="echo", args=["x" * (200 * 1024)])),
                ("3 MB of args", pb.JobRequest(
                    command="echo", args=["y" * 1000] * 3000))):
            with self.subTest(name):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.alice.Start(req, timeout=30)
                self.assertIn(cm.exception.code(),
                              (grpc.StatusCode.INVALID_ARGUMENT,
                               grpc.StatusCode.RESOURCE_EXHAUSTED),
                              "got %s: %r" % (cm.exception.code(),
                                              cm.exception.details()))

    def test_invalid_argument_hand_built_bytes(self):
        # command "echo", args ["a\0b"], built by hand on the wire.
        start = raw_unary(self.alice_chan, SVC + "Start")
        msg = pb_string(1, b"echo") + pb_string(2, b"a\x00b")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, start, msg,
                        timeout=RPC_TIMEOUT)
        msg = pb_string(1, b"\x00echo")
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, start, msg,
                        timeout=RPC_TIMEOUT)
        # An id with a NUL byte is not any job's id.
        status = raw_unary(self.alice_chan, SVC + "Status")
        with self.assertRaises(grpc.RpcError) as cm:
            status(pb_string(1, b"ab\x00cd"), timeout=RPC_TIMEOUT)
        self.assertIn(cm.exception.code(),
                      (grpc.StatusCode.INVALID_ARGUMENT,
                       grpc.StatusCode.NOT_FOUND))

    def test_invalid_utf8_refused_and_list_still_decodes(self):
        # grpcio refuses to decode a reply string that is not UTF-8: had
        # the server kept such a job, the client's own List would break.
        start = raw_unary(self.alice_chan, SVC + "Start")
        for name, msg, field in (
                ("arg", pb_string(1, b"true") + pb_string(2, b"\xc3\x28"),
                 "args[0]"),
                ("overlong", pb_string(1, b"/bin/\xc0\xaftrue"), "command"),
                ("surrogate", pb_string(1, b"true") +
                 pb_string(3, b"A=\xed\xa0\x80"), "env[0]"),
                ("past U+10FFFF", pb_string(1, b"true") +
                 pb_string(4, b"/\xf4\x90\x80\x80"), "working_dir")):
            with self.subTest(name):
                with self.assertRaises(grpc.RpcError) as cm:
                    start(msg, timeout=RPC_TIMEOUT)
                self.assertEqual(cm.exception.code(),
                                 grpc.StatusCode.INVALID_ARGUMENT)
                self.assertEqual(cm.exception.details(),
                                 field + " is not valid UTF-8")
        status = raw_unary(self.alice_chan, SVC + "Status")
        with self.assertRaises(grpc.RpcError) as cm:
            status(pb_string(1, b"\xff"), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # Not a message at all is the client's fault too.
        with self.assertRaises(grpc.RpcError) as cm:
            start(b"\xff\xff\xff", timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # A valid non-ASCII job round-trips, and List decodes in grpcio.
        st = self.alice.Start(pb.JobRequest(command="true",
                                            args=["caf\u00e9 \U0001f600"]),
                              timeout=RPC_TIMEOUT)
        jobs = self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT).jobs
        self.assertIn(["caf\u00e9 \U0001f600"],
                      [list(j.args) for j in jobs if j.id == st.id])

    def test_unknown_method_and_service(self):
        for path in (SVC + "Nope", "/jobworker.v1.Nope/Start",
                     "/grpc.health.v1.Health/Nope", SVC + "start"):
            with self.subTest(path):
                self.assertCode(grpc.StatusCode.UNIMPLEMENTED,
                                raw_unary(self.alice_chan, path), b"",
                                timeout=RPC_TIMEOUT)
        # Still serving on the same connection.
        self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT)

    def test_request_too_large(self):
        big = "x" * (5 * 1024 * 1024)
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, self.alice.Start,
                        pb.JobRequest(command="echo", args=[big]),
                        timeout=30)
        # The server is fine afterwards, on the same channel.
        st = self.start("echo", ["after"])
        self.wait_final(st.id)
        self.assertEqual(self.output(st.id)[0], b"after\n")


class Http2(ServerCase):
    """Raw HTTP/2 (python3-h2) for what a gRPC client would not send."""

    def test_raw_grpc_call_works(self):
        for ct in ("application/grpc", "application/grpc+proto"):
            with self.subTest(ct):
                c = ic.h2_request(self.server.port, SVC + "List",
                                  ic.grpc_frame(b""), content_type=ct)
                self.assertEqual(c.status, "200", vars(c))
                self.assertEqual(c.grpc_status(), 0, vars(c))
                self.assertTrue(c.headers.get("content-type", "")
                                .startswith("application/grpc"))

    def test_non_grpc_content_type_is_415(self):
        for ct in ("application/json", "text/plain", None):
            with self.subTest(str(ct)):
                c = ic.h2_request(self.server.port, SVC + "List",
                                  ic.grpc_frame(b""), content_type=ct)
                self.assertEqual(c.status, "415", vars(c))
        # Still serving.
        self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT)

    def test_compressed_request_refused_with_accept_encoding(self):
        # gRPC's compression spec: a message in an encoding the server does
        # not take is UNIMPLEMENTED, and grpc-accept-encoding tells the
        # client what to send instead.
        body = b"\x01" + (3).to_bytes(4, "big") + b"abc"
        for enc in ("deflate", "snappy"):
            with self.subTest(enc):
                c = ic.h2_request(self.server.port, SVC + "List", body,
                                  extra_headers=[("grpc-encoding", enc)])
                self.assertEqual(c.status, "200", vars(c))
                self.assertEqual(c.grpc_status(),
                                 grpc.StatusCode.UNIMPLEMENTED.value[0],
                                 vars(c))
                self.assertEqual(c.headers.get("grpc-accept-encoding"),
                                 "identity,gzip", vars(c))

    def test_non_grpc_requests_get_http_answers(self):
        # An HTTP client (curl, a browser, a health checker) gets an HTTP
        # answer with a text body, not a gRPC Trailers-Only response.
        cases = [("GET", None, b"", "405"), ("DELETE", None, b"", "405"),
                 ("POST", "application/json", b'{"a": 1}' * 500, "415"),
                 ("POST", None, b"x" * 20000, "415"),
                 ("GET", "application/grpc", b"", "405")]
        for method, ct, body, want in cases:
            with self.subTest(method=method, ct=ct):
                c = ic.h2_request(self.server.port, "/", body,
                                  content_type=ct, method=method)
                self.assertEqual(c.status, want, vars(c))
                self.assertTrue(c.ended, vars(c))
                self.assertIsNone(c.reset, vars(c))
                self.assertEqual(c.headers.get("content-type"),
                                 "text/plain; charset=utf-8", vars(c))
                self.assertNotIn("grpc-status", c.headers)
                self.assertEqual(c.trailers, {})
                self.assertIn(b"gRPC server", c.data)
                self.assertEqual(int(c.headers["content-length"]),
                                 len(c.data))
                if want == "405":
                    self.assertEqual(c.headers.get("allow"), "POST")
        c = ic.h2_request(self.server.port, "/", b"", content_type=None,
                          method="HEAD")
        self.assertEqual(c.status, "405", vars(c))
        self.assertTrue(c.ended, vars(c))
        self.assertEqual(c.data, b"", "a HEAD answer has no body")
        self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT)

    def test_non_grpc_answer_waits_for_end_of_request(self):
        # Answering before the request ended (and resetting it) loses the
        # answer for clients still sending; it follows END_STREAM instead.
        c = ic.h2_request(self.server.port, "/", b"partial body",
                          content_type="text/plain", end_stream=False,
                          timeout=1.0)
        self.assertIsNone(c.status, "answered before the request ended: "
                          "%r" % vars(c))
        self.assertIsNone(c.reset, vars(c))
        # A body past the server's discard cap (64 KiB) is answered without
        # waiting for its end; the stream is then reset with NO_ERROR.
        c = ic.h2_request(self.server.port, "/", b"y" * (80 << 10),
                          content_type="text/plain", end_stream=False,
                          timeout=5.0)
        self.assertEqual(c.status, "415", vars(c))
        self.assertIn(c.reset, (None, 0), vars(c))

    def test_peer_vanishes_mid_stream(self):
        st = self.start("sh", ["-c", 'i=0; while [ $i -lt 600 ]; do '
                               'echo "tick $i"; i=$((i+1)); sleep 0.05; '
                               'done'])
        try:
            for _ in range(3):
                # The socket is closed without RST_STREAM or GOAWAY.
                c = ic.h2_request(self.server.port, SVC + "GetOutput",
                                  ic.grpc_frame(pb.GetOutputRequest(
                                      id=st.id).SerializeToString()),
                                  timeout=0.7)
                self.assertEqual(c.status, "200", vars(c))
                self.assertFalse(c.ended)
                self.assertTrue(c.data.startswith(b"\x00"), c.data[:20])
            now = self.alice.Status(pb.StatusRequest(id=st.id),
                                    timeout=RPC_TIMEOUT)
            self.assertEqual(now.state, RUNNING)
            s = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                     timeout=10)
            self.assertTrue(next(iter(s)).data.startswith(b"tick 0\n"))
            s.cancel()
        finally:
            self.stop_quietly(st.id)

    def test_server_enforces_grpc_timeout(self):
        st = self.start("sleep", ["60"])
        try:
            t0 = time.monotonic()
            c = ic.h2_request(self.server.port, SVC + "GetOutput",
                              ic.grpc_frame(pb.GetOutputRequest(
                                  id=st.id).SerializeToString()),
                              extra_headers=[("grpc-timeout", "1S")],
                              timeout=6)
            took = time.monotonic() - t0
            ended = c.reset is not None or \
                c.grpc_status() == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            self.assertTrue(ended, "stream not ended by the server at its "
                            "deadline: %r" % vars(c))
            self.assertLess(took, 4.0)
        finally:
            self.stop_quietly(st.id)


class DeadlinesAndCancel(ServerCase):

    def test_deadline_exceeded_then_fine(self):
        st = self.start("sleep", ["60"])
        try:
            t0 = time.monotonic()
            self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED,
                            self.alice.GetOutput,
                            pb.GetOutputRequest(id=st.id), timeout=1)
            self.assertLess(time.monotonic() - t0, 5)
            now = self.alice.Status(pb.StatusRequest(id=st.id),
                                    timeout=RPC_TIMEOUT)
            self.assertEqual(now.state, RUNNING)
            other = self.start("echo", ["fine"])
            self.wait_final(other.id)
            self.assertEqual(self.output(other.id)[0], b"fine\n")
        finally:
            self.stop_quietly(st.id)

    def test_stream_deadline_is_deadline_exceeded_every_time(self):
        # The server's timer and the client's fire together; a server that
        # reset the stream (RST_STREAM CANCEL) instead of sending
        # grpc-status 4 made the client report CANCELLED whenever the reset
        # won the race. Four readers, five calls each, all must end with
        # DEADLINE_EXCEEDED.
        st = self.start("sleep", ["60"])
        codes = []
        lock = threading.Lock()

        def reader():
            for _ in range(5):
                try:
                    for _ in self.alice.GetOutput(
                            pb.GetOutputRequest(id=st.id), timeout=1):
                        pass
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                with lock:
                    codes.append(code)

        try:
            threads = [threading.Thread(target=reader) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertFalse(any(t.is_alive() for t in threads),
                             "a reader did not end")
            self.assertEqual(len(codes), 20)
            wrong = [c for c in codes
                     if c != grpc.StatusCode.DEADLINE_EXCEEDED]
            self.assertEqual(wrong, [], "codes other than "
                             "DEADLINE_EXCEEDED: %d of 20 (%s)" %
                             (len(wrong), sorted({str(c) for c in wrong})))
        finally:
            self.stop_quietly(st.id)

    def test_server_deadline_sends_status_4_on_started_stream(self):
        # Seen on the wire (no client-side deadline timer in python3-h2):
        # the stream's headers went out, then the deadline passes, and the
        # stream ends with trailers grpc-status 4, not a reset.
        st = self.start("sh", ["-c", "echo started; sleep 60"])
        try:
            c = ic.h2_request(self.server.port, SVC + "GetOutput",
                              ic.grpc_frame(pb.GetOutputRequest(
                                  id=st.id).SerializeToString()),
                              extra_headers=[("grpc-timeout", "500m")],
                              timeout=10)
            self.assertEqual(c.status, "200", vars(c))
            self.assertTrue(c.data.startswith(b"\x00"), vars(c))
            self.assertIsNone(c.reset, vars(c))
            self.assertTrue(c.ended, vars(c))
            self.assertEqual(c.trailers.get("grpc-status"), "4", vars(c))
            self.assertEqual(c.trailers.get("grpc-message"),
                             "deadline exceeded", vars(c))
        finally:
            self.stop_quietly(st.id)

    def test_cancel_stream_midway(self):
        st = self.start("sh", ["-c", 'i=0; while [ $i -lt 300 ]; do '
                               'echo "line $i"; i=$((i+1)); sleep 0.05; done'])
        try:
            for attempt in range(2):
                stream = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                              timeout=20)
                got = bytearray()
                for m in stream:
                    got.extend(m.data)
                    if got.count(b"\n") >= 3:
                        break
                self.assertTrue(got.startswith(b"line 0\nline 1\n"),
                                "replay starts at the first byte: %r" %
                                bytes(got[:40]))
                stream.cancel()
                with self.assertRaises(grpc.RpcError) as cm:
                    for _ in stream:
                        pass
                self.assertEqual(cm.exception.code(),
                                 grpc.StatusCode.CANCELLED)
                # The job goes on printing after the cancel.
                req = pb.StatusRequest(id=st.id)
                at_cancel = self.alice.Status(
                    req, timeout=RPC_TIMEOUT).output_bytes
                ic.wait_until(lambda: self.alice.Status(
                    req, timeout=RPC_TIMEOUT).output_bytes > at_cancel, 10)
                now = self.alice.Status(req, timeout=RPC_TIMEOUT)
                self.assertGreater(now.output_bytes, at_cancel,
                                   "no output after the cancel")
                self.assertEqual(now.state, RUNNING,
                                 "the job keeps running after a cancel")
            # Many canceled streams later the server still answers.
            for _ in range(20):
                s = self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                         timeout=20)
                next(iter(s))
                s.cancel()
            self.alice.List(pb.ListRequest(), timeout=RPC_TIMEOUT)
        finally:
            self.stop_quietly(st.id)

    def test_stream_ends_when_job_stopped(self):
        st = self.start("sh", ["-c", "echo started; sleep 60"])
        res = {}
        live = threading.Event()

        def reader():
            out = bytearray()
            try:
                for m in self.alice.GetOutput(pb.GetOutputRequest(id=st.id),
                                              timeout=20):
                    out.extend(m.data)
                    if out == b"started\n":
                        live.set()
                res["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                res["code"] = e.code()
            res["out"] = (bytes(out),)

        t = threading.Thread(target=reader)
        t.start()
        self.assertTrue(live.wait(20), "the stream never caught up")
        fin = self.alice.Stop(pb.StopRequest(id=st.id), timeout=RPC_TIMEOUT)
        self.assertEqual(fin.state, STOPPED)
        t.join(10)
        self.assertFalse(t.is_alive(), "stream did not end after Stop")
        self.assertEqual(res.get("code"), grpc.StatusCode.OK)
        self.assertEqual(res["out"][0], b"started\n")


if __name__ == "__main__":
    sys.exit(ic.run_suite("grpc-interop", [JobRpcs, Errors, Http2,
                                           DeadlinesAndCancel]))
