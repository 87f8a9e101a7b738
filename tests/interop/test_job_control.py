#!/usr/bin/python3
"""Interop: job control against teleportd through python3-grpcio, with
stubs generated from proto/jobworker.proto at test time: GetOutput's
offset, no_follow and tail_lines and JobOutput.offset; Wait, Signal and
Remove; Stop's and Start's timeout_ms; STOPPING and JobStatus's
end_reason, output_cap_bytes and timeout_ms.

One teleportd for the class (temp data dir, --stop-timeout 2s,
--max-output-bytes 64K, --max-stop-timeout 3s); the teardown SIGTERMs it
and checks it exits 0. Loopback only; every wait is bounded.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402

from test_grpc_interop import (  # noqa: E402
    EXITED, RPC_TIMEOUT, RUNNING, SIGNALED, STOPPED, ServerCase, pb)

STOPPING = pb.JobState.Value("JOB_STATE_STOPPING")
REASON = pb.EndReason
CAP = 64 * 1024
MAX_STOP = 3.0  # --max-stop-timeout below, in seconds
STOP_GRACE = 2.0  # --stop-timeout


class JobControl(ServerCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = ic.mktemp("jw-interop-")
        os.chmod(cls.tmp, 0o1777)
        ic.serve_alice_bob(cls, ic_stub(), stop_timeout="2s",
                           extra_args=["--max-output-bytes", "64K",
                                       "--max-stop-timeout", "3s"])

    def stream(self, job_id, **kw):
        """GetOutput with kw: (bytes in order, messages)."""
        msgs = list(self.alice.GetOutput(
            pb.GetOutputRequest(id=job_id, **kw), timeout=20))
        return b"".join(m.data for m in msgs), msgs

    def test_offset_resumes_exactly(self):
        st = self.start("printf", ["0123456789"])
        self.wait_final(st.id)
        data, msgs = self.stream(st.id, offset=5)
        self.assertEqual(data, b"56789")
        self.assertEqual(msgs[0].offset, 5)
        data, msgs = self.stream(st.id, offset=10)
        self.assertEqual(data, b"")

    def test_offsets_are_contiguous_across_streams(self):
        # 200 KB in both streams; each message's offset is where the last
        # one ended, and a resume from any of them misses nothing.
        st = self.start("sh", ["-c", "i=0; while [ $i -lt 400 ]; do "
                               "printf '%0500d' $i; printf e >&2; "
                               "i=$((i+1)); done"])
        self.wait_final(st.id)
        whole, msgs = self.stream(st.id)
        end = 0
        for m in msgs:
            if m.data:
                self.assertEqual(m.offset, end)
                end += len(m.data)
        self.assertEqual(end, len(whole))
        mid = msgs[len(msgs) // 2].offset + 7
        rest, _ = self.stream(st.id, offset=mid)
        self.assertEqual(rest, whole[mid:])

    def test_tail_lines(self):
        st = self.start("seq", ["1", "100"])
        self.wait_final(st.id)
        data, msgs = self.stream(st.id, tail_lines=3)
        self.assertEqual(data, b"98\n99\n100\n")
        self.assertEqual(msgs[0].offset, 282)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT,
                        self.alice.GetOutput,
                        pb.GetOutputRequest(id=st.id, tail_lines=1000001),
                        timeout=RPC_TIMEOUT)

    def test_no_follow_of_running_job(self):
        st = self.start("sh", ["-c", "echo one; sleep 60"])
        try:
            ic.wait_until(lambda: self.alice.Status(
                pb.StatusRequest(id=st.id),
                timeout=RPC_TIMEOUT).output_bytes == 4, 15)
            t0 = time.monotonic()
            data, _ = self.stream(st.id, no_follow=True)
            self.assertEqual(data, b"one\n")
            self.assertLess(time.monotonic() - t0, 15)
        finally:
            self.stop_quietly(st.id)

    def test_wait_and_its_deadline(self):
        st = self.start("sh", ["-c", "sleep 0.2; exit 7"])
        fin = self.alice.Wait(pb.WaitRequest(id=st.id), timeout=20)
        self.assertEqual((fin.state, fin.exit_code, fin.end_reason),
                         (EXITED, 7, REASON.Value("END_REASON_EXITED")))
        st = self.start("sleep", ["60"])
        try:
            codes = []
            lock = threading.Lock()

            def waiter():
                for _ in range(5):
                    try:
                        self.alice.Wait(pb.WaitRequest(id=st.id), timeout=1)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as e:
                        code = e.code()
                    with lock:
                        codes.append(code)

            threads = [threading.Thread(target=waiter) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertFalse(any(t.is_alive() for t in threads))
            self.assertEqual(codes,
                             [grpc.StatusCode.DEADLINE_EXCEEDED] * 20)
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.bob.Wait,
                            pb.WaitRequest(id=st.id), timeout=RPC_TIMEOUT)
        finally:
            self.stop_quietly(st.id)

    def test_signal_reaches_trap(self):
        st = self.start("sh", ["-c", "trap 'echo got USR1; exit 3' USR1; "
                               "echo ready; while :; do sleep 0.05; done"])
        ic.wait_until(lambda: self.alice.Status(
            pb.StatusRequest(id=st.id), timeout=RPC_TIMEOUT).output_bytes > 0,
            15)
        self.alice.Signal(pb.SignalRequest(id=st.id, signal_name="SIGUSR1"),
                          timeout=RPC_TIMEOUT)
        fin = self.alice.Wait(pb.WaitRequest(id=st.id), timeout=20)
        self.assertEqual((fin.state, fin.exit_code), (EXITED, 3))
        # The group's sleep dies of it too (sh says so on stderr).
        self.assertEqual(self.output(st.id)[0], b"ready\ngot USR1\n")
        self.assertCode(grpc.StatusCode.FAILED_PRECONDITION,
                        self.alice.Signal,
                        pb.SignalRequest(id=st.id, signal=15),
                        timeout=RPC_TIMEOUT)

    def test_signal_by_number_and_bad_signals(self):
        st = self.start("sleep", ["60"])
        try:
            for bad in (pb.SignalRequest(id=st.id, signal=65),
                        pb.SignalRequest(id=st.id, signal_name="FOO"),
                        pb.SignalRequest(id=st.id),
                        pb.SignalRequest(id=st.id, signal=9,
                                         signal_name="KILL")):
                self.assertCode(grpc.StatusCode.INVALID_ARGUMENT,
                                self.alice.Signal, bad, timeout=RPC_TIMEOUT)
            self.assertCode(grpc.StatusCode.PERMISSION_DENIED,
                            self.bob.Signal,
                            pb.SignalRequest(id=st.id, signal=9),
                            timeout=RPC_TIMEOUT)
            self.alice.Signal(pb.SignalRequest(id=st.id, signal=9),
                              timeout=RPC_TIMEOUT)
            fin = self.alice.Wait(pb.WaitRequest(id=st.id), timeout=20)
            self.assertEqual((fin.state, fin.signal, fin.end_reason),
                             (SIGNALED, 9,
                              REASON.Value("END_REASON_STOPPED")))
        finally:
            self.stop_quietly(st.id)

    def test_remove(self):
        st = self.start("sleep", ["60"])
        try:
            self.assertCode(grpc.StatusCode.FAILED_PRECONDITION,
                            self.alice.Remove, pb.RemoveRequest(id=st.id),
                            timeout=RPC_TIMEOUT)
        finally:
            self.stop_quietly(st.id)
        self.assertCode(grpc.StatusCode.PERMISSION_DENIED, self.bob.Remove,
                        pb.RemoveRequest(id=st.id), timeout=RPC_TIMEOUT)
        gone = self.alice.Remove(pb.RemoveRequest(id=st.id),
                                 timeout=RPC_TIMEOUT)
        self.assertEqual((gone.id, gone.state), (st.id, STOPPED))
        self.assertFalse(os.path.exists(os.path.join(
            self.server.data_dir, st.id + ".log")))
        for call, req in ((self.alice.Status, pb.StatusRequest),
                          (self.alice.Wait, pb.WaitRequest),
                          (self.alice.Remove, pb.RemoveRequest),
                          (self.alice.GetOutput, pb.GetOutputRequest)):
            self.assertCode(grpc.StatusCode.NOT_FOUND, call, req(id=st.id),
                            timeout=RPC_TIMEOUT)

    def test_stop_timeout_is_capped_and_stopping_shows(self):
        st = self.start("sh", ["-c", "trap '' TERM; echo ready; sleep 60"])
        ic.wait_until(lambda: self.alice.Status(
            pb.StatusRequest(id=st.id), timeout=RPC_TIMEOUT).output_bytes > 0,
            15)
        res = {}

        def stopper():
            t0 = time.monotonic()
            res["st"] = self.alice.Stop(
                pb.StopRequest(id=st.id, timeout_ms=3600 * 1000), timeout=60)
            res["took"] = time.monotonic() - t0

        t = threading.Thread(target=stopper)
        t.start()
        seen = ic.wait_until(lambda: self.alice.Status(
            pb.StatusRequest(id=st.id),
            timeout=RPC_TIMEOUT).state == STOPPING, 15)
        t.join(60)
        self.assertFalse(t.is_alive())
        self.assertTrue(seen, "never STOPPING")
        fin = res["st"]
        self.assertEqual((fin.state, fin.signal, fin.end_reason),
                         (STOPPED, 9, REASON.Value("END_REASON_STOPPED")))
        # The hour asked is cut to --max-stop-timeout (3 s): past the 2 s
        # default grace, and far from the hour even on a loaded host.
        self.assertGreaterEqual(res["took"], MAX_STOP - 0.1)
        self.assertLess(res["took"], MAX_STOP + 30)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.alice.Stop,
                        pb.StopRequest(id=st.id, timeout_ms=-1),
                        timeout=RPC_TIMEOUT)

    def test_start_timeout_ends_job_timed_out(self):
        t0 = time.monotonic()
        st = self.alice.Start(pb.JobRequest(command="sleep", args=["30"],
                                            timeout_ms=1000),
                              timeout=RPC_TIMEOUT)
        self.assertEqual(st.timeout_ms, 1000)
        fin = self.alice.Wait(pb.WaitRequest(id=st.id), timeout=30)
        took = time.monotonic() - t0
        self.assertEqual((fin.state, fin.end_reason),
                         (STOPPED, REASON.Value("END_REASON_TIMED_OUT")))
        # The 1 s limit, the grace, and room for a loaded host; sleep 30
        # would take 30 s.
        self.assertGreaterEqual(took, 0.95)
        self.assertLess(took, 1 + STOP_GRACE + 10)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, self.alice.Start,
                        pb.JobRequest(command="true", timeout_ms=-1),
                        timeout=RPC_TIMEOUT)

    def test_status_fields_cap_and_reason(self):
        st = self.start("head", ["-c", "100000", "/dev/zero"])
        fin = self.alice.Wait(pb.WaitRequest(id=st.id), timeout=20)
        self.assertEqual(fin.output_cap_bytes, CAP)
        self.assertEqual(fin.output_bytes, CAP)
        self.assertEqual(fin.output_dropped_bytes, 100000 - CAP)
        self.assertEqual(fin.end_reason, REASON.Value("END_REASON_EXITED"))
        self.assertEqual(fin.timeout_ms, 0)
        run = self.start("sleep", ["60"])
        try:
            now = self.alice.Status(pb.StatusRequest(id=run.id),
                                    timeout=RPC_TIMEOUT)
            self.assertEqual((now.state, now.end_reason),
                             (RUNNING, REASON.Value("END_REASON_UNSPECIFIED")))
        finally:
            self.stop_quietly(run.id)


def ic_stub():
    from test_grpc_interop import pb_grpc
    return pb_grpc.JobWorkerStub


if __name__ == "__main__":
    sys.exit(ic.run_suite("job-control", [JobControl]))
