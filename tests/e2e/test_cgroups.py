"""End to end: teleportd's cgroups, limits and isolation over gRPC.

Starts the real teleportd on 127.0.0.1 (a free port) with its own data
directory, talks to it with Python grpcio (stubs generated at test time
from proto/jobworker.proto), and checks:

- limits over the server's maximum are refused with INVALID_ARGUMENT
  naming the field; defaults fill in what a request leaves at 0;
- a memory hog under memory=64M ends SIGNALED with oom_killed, and the
  status carries the limits and usage;
- isolation: a PID-isolated `ps -e` sees two processes;
- teleportd SIGKILLed with a job running (its setsid'd grandchild outlives
  it), then restarted on the same data directory: the leftover process is
  killed, its cgroup removed, and the log says
  `event=stale_cgroups_removed count=1`.

A case the host cannot support prints "SKIP <case>: <reason>". Every
process started here is killed by its pid; the temp dir is removed.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SYSTEM_PYTHON = "/usr/bin/python3"

try:
    import grpc
except ImportError:
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    raise

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("JW_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("JW_BUILD_ROOT") or os.path.join(
    SOURCE_ROOT, "build")
TELEPORTD = os.path.join(BUILD_ROOT, "server", "teleportd")

TMP = tempfile.mkdtemp(prefix="jw-e2e-cg-")
started = []  # teleportd Popen objects, killed at the end
failures = []


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    if cond:
        log("ok   " + what)
    else:
        log("FAIL " + what)
        failures.append(what)


def certs_dir():
    d = os.environ.get("JW_TEST_CERTS")
    if d and os.path.exists(os.path.join(d, "alice.key")):
        return d
    d = os.path.join(TMP, "certs")
    subprocess.run([os.path.join(SOURCE_ROOT, "tests", "make-certs.sh"), d],
                   check=True, stdout=subprocess.DEVNULL)
    return d


def stubs():
    out = os.path.join(TMP, "stubs")
    os.mkdir(out)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc",
                    "-I", os.path.join(SOURCE_ROOT, "proto"),
                    "--python_out", out, "--grpc_python_out", out,
                    "jobworker.proto"], check=True)
    sys.path.insert(0, out)
    import jobworker_pb2
    import jobworker_pb2_grpc
    return jobworker_pb2, jobworker_pb2_grpc


pb, pb_grpc = stubs()
CERTS = certs_dir()


class Server:
    """One teleportd, its log in TMP, port read from its listening line."""

    def __init__(self, data_dir, name, extra=()):
        self.log_path = os.path.join(TMP, name + ".log")
        self.logf = open(self.log_path, "wb")
        args = [TELEPORTD, "--addr", "127.0.0.1:0",
                "--cacert", os.path.join(CERTS, "ca.cert"),
                "--cert", os.path.join(CERTS, "server.cert"),
                "--key", os.path.join(CERTS, "server.key"),
                "--data-dir", data_dir, "--stop-timeout", "2s"] + list(extra)
        self.proc = subprocess.Popen(args, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        started.append(self.proc)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"event=listening\b.*\bport=(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("teleportd did not start:\n" + self.text())
        creds = grpc.ssl_channel_credentials(
            open(os.path.join(CERTS, "ca.cert"), "rb").read(),
            open(os.path.join(CERTS, "alice.key"), "rb").read(),
            open(os.path.join(CERTS, "alice.cert"), "rb").read())
        self.channel = grpc.secure_channel("127.0.0.1:%d" % self.port, creds)
        self.stub = pb_grpc.JobWorkerStub(self.channel)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def wait_final(stub, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = stub.Status(pb.StatusRequest(id=job_id), timeout=10)
        if st.state != pb.JOB_STATE_RUNNING:
            return st
        time.sleep(0.05)
    raise RuntimeError("job %s not final" % job_id)


def output(stub, job_id):
    return b"".join(o.data for o in
                    stub.GetOutput(pb.GetOutputRequest(id=job_id), timeout=30))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def backend(srv):
    m = re.search(r"event=cgroups\b.*\bbackend=(\S+).*\blimits=(\S+)",
                  srv.text())
    return (m.group(1), m.group(2).split(",")) if m else (None, [])


def test_limits_and_isolation():
    data = os.path.join(TMP, "data1")
    srv = Server(data, "limits", ["--max-memory", "256M",
                                  "--default-pids", "512"])
    try:
        be, limits = backend(srv)
        log("backend %s, limits %s" % (be, limits))
        try:
            srv.stub.Start(pb.JobRequest(
                command="true", limits=pb.Limits(memory_bytes=1 << 30)),
                timeout=10)
            check(False, "over --max-memory is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and
                  "limits.memory_bytes" in e.details() and
                  "--max-memory" in e.details(),
                  "over --max-memory: INVALID_ARGUMENT naming the field "
                  "(%s)" % e.details())
        if "memory" not in limits or "pids" not in limits:
            log("SKIP memory hog: no memory/pids controller (%s)" % be)
        else:
            job = srv.stub.Start(pb.JobRequest(
                command="dd", args=["if=/dev/zero", "of=/dev/null",
                                    "bs=256M", "count=1"],
                limits=pb.Limits(memory_bytes=64 << 20)), timeout=10)
            st = wait_final(srv.stub, job.id)
            check(st.state == pb.JOB_STATE_SIGNALED and st.signal == 9 and
                  st.oom_killed, "memory hog: SIGNALED 9, oom_killed (%s)" %
                  str(st).replace("\n", " "))
            check(st.limits.memory_bytes == 64 << 20 and
                  st.limits.pids == 512,
                  "status carries the limits, the default pids filled in")
            check(st.memory_peak_bytes > 0 and st.cpu_usage_ns > 0,
                  "status carries usage")
        job = srv.stub.Start(pb.JobRequest(
            command="ps", args=["-e", "-o", "pid="],
            isolation=pb.Isolation(pid=True)), timeout=10)
        st = wait_final(srv.stub, job.id)
        pids = output(srv.stub, job.id).split()
        check(st.state == pb.JOB_STATE_EXITED and pids == [b"1", b"2"],
              "pid isolation: ps -e sees init and itself (%r)" % pids)
    finally:
        srv.stop()
    check("stale_cgroups_removed" not in srv.text(),
          "a fresh data dir has no stale cgroups")


def test_restart_removes_leftovers():
    data = os.path.join(TMP, "data2")
    srv = Server(data, "run1")
    be, _ = backend(srv)
    if be is None:
        srv.stop()
        log("SKIP restart: no usable cgroup hierarchy on this host")
        return
    job = srv.stub.Start(pb.JobRequest(
        command="sh", args=["-c", "setsid sleep 1000 & echo $!; sleep 1000"]),
        timeout=10)
    deadline = time.monotonic() + 10
    out = b""
    while time.monotonic() < deadline and not out.strip():
        time.sleep(0.1)
        out = _first_output(srv, job.id)
    escaped = int(out.split()[0])
    dirs = [d for d in glob.glob("/sys/fs/cgroup/**/teleportd-*/" + job.id,
                                 recursive=True)]
    check(pid_alive(escaped) and dirs, "the job runs in cgroups %s" % dirs)
    srv.stop(signal.SIGKILL)
    time.sleep(0.3)
    check(pid_alive(escaped),
          "the setsid'd process outlives the SIGKILLed server")
    srv2 = Server(data, "run2")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(escaped):
            time.sleep(0.05)
        check(not pid_alive(escaped), "the restarted server killed it")
        check(re.search(r"event=stale_cgroups_removed\b.*\bcount=1\b",
                        srv2.text()) is not None,
              "the log says event=stale_cgroups_removed count=1")
        check(not any(os.path.exists(d) for d in dirs),
              "the leftover cgroup directories are gone")
    finally:
        srv2.stop()
        if pid_alive(escaped):
            os.kill(escaped, signal.SIGKILL)


def _first_output(srv, job_id):
    """The job's output so far, without waiting for its end."""
    call = srv.stub.GetOutput(pb.GetOutputRequest(id=job_id), timeout=5)
    try:
        for o in call:
            if o.data:
                return o.data
    finally:
        call.cancel()
    return b""


def main():
    if not os.access(TELEPORTD, os.X_OK):
        log("teleportd not built at " + TELEPORTD)
        return 1
    try:
        test_limits_and_isolation()
        test_restart_removes_leftovers()
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(TMP, ignore_errors=True)
    if failures:
        log("%d failed" % len(failures))
        return 1
    log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
