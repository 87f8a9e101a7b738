"""End to end: SIGHUP reloads teleportd without losing a job.

Starts the real teleportd on 127.0.0.1 (a free port) with its own data
directory and certificate files copied into the test's temp dir, talks to
it with Python grpcio, and checks:

- a job printing `seq 1 300` over 15 s survives two reloads: the same pid
  in Status after each, and its whole output, read after its end, is
  exactly 1..300, once each, in order;
- a follow GetOutput stream open at a reload ends with UNAVAILABLE
  (grpc-status 14), and a new GetOutput after it gets the full output;
- a reload with a broken certificate file is refused (`event=reload_refused`
  naming why); the server keeps serving on the same connection and the
  job keeps running;
- a reload with rotated certificate files (another CA) re-reads them: a
  client of the new CA connects after it, which it cannot before;
- a SIGTERM right after a SIGHUP, whichever step of the reload it meets
  (the check, the flush, the exec), stops the server cleanly: exit 0,
  the job stopped, nothing of it left running.

Every process started here is killed by its pid; the temp dir is removed.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# The e2e suites' helpers (they re-execute this on Debian's python3 when
# the one running it has no grpc).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_common import (SOURCE_ROOT, TELEPORTD, check, failures,  # noqa: E402
                        load_stubs, log)
import grpc  # noqa: E402

TMP = tempfile.mkdtemp(prefix="jw-e2e-reload-")
server = None


# The run-time limit of the job that runs across both reloads (ms).
TIMED_MS = 16000


def make_certs(name):
    d = os.path.join(TMP, name)
    subprocess.run([os.path.join(SOURCE_ROOT, "tests", "make-certs.sh"), d],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return d


def read(path):
    with open(path, "rb") as f:
        return f.read()


def install(certs, live):
    """Puts certs' CA, server cert and key at the paths the server reads."""
    for name in ("ca.cert", "server.cert", "server.key"):
        shutil.copyfile(os.path.join(certs, name), os.path.join(live, name))


class Server:
    def __init__(self, live, data_dir, name="teleportd"):
        self.log_path = os.path.join(TMP, name + ".log")
        self.logf = open(self.log_path, "wb")
        args = [TELEPORTD, "--addr", "127.0.0.1:0",
                "--cacert", os.path.join(live, "ca.cert"),
                "--cert", os.path.join(live, "server.cert"),
                "--key", os.path.join(live, "server.key"),
                "--data-dir", data_dir, "--stop-timeout", "2s"]
        self.proc = subprocess.Popen(args, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"event=listening\b.*\bport=(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("teleportd did not start:\n" + self.text())

    def text(self):
        return read(self.log_path).decode(errors="replace")

    def count(self, event):
        return len(re.findall(r"event=%s\b" % event, self.text()))

    def wait_event(self, event, n, timeout):
        """Waits until event was logged n times; False after timeout s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(event) >= n:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def channel(self, certs):
        creds = grpc.ssl_channel_credentials(
            read(os.path.join(certs, "ca.cert")),
            read(os.path.join(certs, "alice.key")),
            read(os.path.join(certs, "alice.cert")))
        return grpc.secure_channel("127.0.0.1:%d" % self.port, creds)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class Follower(threading.Thread):
    """A follow GetOutput; keeps what it got and how it ended."""

    def __init__(self, stub, job_id):
        super().__init__(daemon=True)
        self.call = stub.GetOutput(pb.GetOutputRequest(id=job_id),
                                   timeout=120)
        self.data = b""
        self.code = None
        self.details = ""

    def run(self):
        try:
            for msg in self.call:
                self.data += msg.data
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.code = e.code()
            self.details = e.details() or ""


def whole_output(stub, job_id):
    """Every byte of the job's output: a follow read of a final job."""
    return b"".join(m.data for m in stub.GetOutput(
        pb.GetOutputRequest(id=job_id), timeout=60))


def reload_and_wait(n):
    server.proc.send_signal(signal.SIGHUP)
    return server.wait_event("reloaded", n, 60)


pb, pb_grpc = load_stubs()
WANT = b"".join(b"%d\n" % i for i in range(1, 301))


def main():
    global server
    ca_a = make_certs("certs-a")
    ca_b = make_certs("certs-b")
    live = os.path.join(TMP, "live")
    os.mkdir(live)
    install(ca_a, live)
    server = Server(live, os.path.join(TMP, "data"))
    chan = server.channel(ca_a)
    stub = pb_grpc.JobWorkerStub(chan)

    st = stub.Start(pb.JobRequest(
        command="sh", args=["-c", "for i in $(seq 1 300); do echo $i; "
                            "sleep 0.05; done"]), timeout=30, wait_for_ready=True)
    pid = st.pid
    check(pid > 0, "the job runs with a pid (%d)" % pid)
    # A run-time limit that passes after both reloads: the next process
    # keeps counting it from the job's start.
    timed = stub.Start(pb.JobRequest(command="sleep", args=["600"],
                                     timeout_ms=TIMED_MS), timeout=30)

    # Reload 1: a follow stream open across it ends with UNAVAILABLE.
    follower = Follower(stub, st.id)
    follower.start()
    time.sleep(1)
    check(reload_and_wait(1), "the first reload completes (event=reloaded)")
    follower.join(60)
    # The server's trailers say so, not a cut connection.
    check(follower.code == grpc.StatusCode.UNAVAILABLE and
          "reloading" in follower.details,
          "the follow stream open at the reload ends with UNAVAILABLE in "
          "its trailers (%s: %s)" % (follower.code, follower.details))
    check(WANT.startswith(follower.data),
          "what the stream got before is a prefix of the output")
    s1 = stub.Status(pb.StatusRequest(id=st.id), timeout=30, wait_for_ready=True)
    check(s1.pid == pid and s1.state == pb.JOB_STATE_RUNNING,
          "after the first reload the job runs with the same pid (%d, %s)"
          % (s1.pid, pb.JobState.Name(s1.state)))
    # A new follow GetOutput gets the output from its first byte on.
    again = Follower(stub, st.id)
    again.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and \
            len(again.data) <= len(follower.data):
        time.sleep(0.05)
    got = again.data
    again.call.cancel()
    again.join(30)
    check(len(got) > len(follower.data) and WANT.startswith(got),
          "a new GetOutput after the reload gets the output from its start "
          "(%d bytes, %d before the reload)" % (len(got), len(follower.data)))

    # A broken certificate file: the reload is refused, nothing changes.
    shutil.copyfile(os.path.join(live, "server.cert"),
                    os.path.join(TMP, "server.cert.good"))
    with open(os.path.join(live, "server.cert"), "wb") as f:
        f.write(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    server.proc.send_signal(signal.SIGHUP)
    check(server.wait_event("reload_refused", 1, 60),
          "a reload with a broken certificate is refused")
    m = re.search(r"event=reload_refused.*", server.text())
    check(m is not None and "cert" in m.group(0),
          "the refusal says why: %s" % (m.group(0) if m else ""))
    time.sleep(0.5)
    check(server.count("reload_exec") == 1,
          "the refused reload did not re-execute")
    s2 = stub.Status(pb.StatusRequest(id=st.id), timeout=30, wait_for_ready=True)
    check(s2.pid == pid and s2.state == pb.JOB_STATE_RUNNING,
          "the server still serves on the same connection; the job runs")

    # Rotated files (another CA): the second reload reads them.
    install(ca_b, live)
    chan_b = server.channel(ca_b)
    try:
        pb_grpc.JobWorkerStub(chan_b).List(pb.ListRequest(), timeout=5)
        before = True
    except grpc.RpcError:
        before = False
    chan_b.close()
    check(not before, "a client of the new CA is refused before the reload")
    check(reload_and_wait(2), "the second reload completes")
    chan.close()
    chan_b = server.channel(ca_b)
    stub_b = pb_grpc.JobWorkerStub(chan_b)
    s3 = stub_b.Status(pb.StatusRequest(id=st.id), timeout=30, wait_for_ready=True)
    check(s3.pid == pid,
          "a client of the rotated CA connects; the job has the same pid")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s4 = stub_b.Status(pb.StatusRequest(id=st.id), timeout=30, wait_for_ready=True)
        if s4.state != pb.JOB_STATE_RUNNING:
            break
        time.sleep(0.2)
    check(s4.state == pb.JOB_STATE_EXITED and s4.exit_code == 0 and s4.pid == pid,
          "the job ends by itself: %s, exit %d"
          % (pb.JobState.Name(s4.state), s4.exit_code))
    deadline = time.monotonic() + TIMED_MS / 1000.0 + 60
    while time.monotonic() < deadline:
        t = stub_b.Status(pb.StatusRequest(id=timed.id), timeout=30,
                          wait_for_ready=True)
        if t.state != pb.JOB_STATE_RUNNING and \
                t.state != pb.JOB_STATE_STOPPING:
            break
        time.sleep(0.2)
    ran_ms = (t.ended_at_unix_nano - t.started_at_unix_nano) / 1e6
    check(t.end_reason == pb.END_REASON_TIMED_OUT and t.pid == timed.pid and
          TIMED_MS <= ran_ms < TIMED_MS + 30000,
          "a job's run-time limit holds across two reloads: %s after %.0f ms "
          "(limit %d)" % (pb.EndReason.Name(t.end_reason), ran_ms, TIMED_MS))
    out = whole_output(stub_b, st.id)
    check(out == WANT, "its whole output is exactly seq 1 300 (%d bytes of "
          "%d)" % (len(out), len(WANT)))
    chan_b.close()
    server.stop()
    check(server.proc.returncode == 0, "SIGTERM after the reloads: exit 0")

    # SIGTERM at each step of a reload: the server still stops cleanly.
    for i, delay in enumerate(d / 1000.0 for d in range(0, 300, 20)):
        server = Server(live, os.path.join(TMP, "data-term"), "term%d" % i)
        c = server.channel(ca_b)
        job = pb_grpc.JobWorkerStub(c).Start(
            pb.JobRequest(command="sleep", args=["300"]), timeout=30,
            wait_for_ready=True)
        c.close()
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(delay)
        server.proc.send_signal(signal.SIGTERM)
        try:
            rc = server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        gone = False
        for _ in range(100):
            try:
                os.kill(job.pid, 0)
            except ProcessLookupError:
                gone = True
                break
            time.sleep(0.05)
        check(rc == 0 and gone,
              "SIGTERM %.0f ms after SIGHUP: exit %s, job pid %d gone: %s"
              % (delay * 1000, rc, job.pid, gone))
        server.stop()


try:
    main()
except Exception as e:  # noqa: BLE001 - any failure is reported
    import traceback
    traceback.print_exc()
    failures.append(repr(e))
finally:
    if server is not None:
        server.stop()
        if failures:
            log("--- teleportd log ---\n" + server.text())
    shutil.rmtree(TMP, ignore_errors=True)

if failures:
    log("%d check(s) failed" % len(failures))
    sys.exit(1)
log("all checks passed")
