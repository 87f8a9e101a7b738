"""End to end: durable job records across teleportd's restarts and crashes.

Starts the real teleportd on 127.0.0.1 (a free port) with its own data
directory, talks to it with Python grpcio (stubs generated at test time
from proto/jobworker.proto), and checks:

- SIGTERM, then a start on the same data directory: a finished job's
  stdout and stderr come back byte for byte (NUL and 0xff bytes, no
  newline at the end), with its status and its owner: bob still gets the
  same refusal as before the restart; a job running at the SIGTERM is
  STOPPED with END_REASON_SERVER_SHUTDOWN;
- SIGKILL of teleportd while a job runs whose grandchild left its process
  group (setsid): the restarted server shows the job final with
  END_REASON_SERVER_CRASH and its output from before the crash, and
  neither the job's process nor the grandchild is left (by pid);
- the crash storm: 400 Starts, eight in flight, teleportd SIGKILLed in the
  middle; after the restart every id a Start answered is found by Status;
- env values are written into the records only with --keep-env true.

A case the host cannot support prints "SKIP <case>: <reason>". Every
process started here is killed by its pid; the temp dir is removed.
"""

import os
import re
import shutil
import signal
import sys
import threading
import time

import e2e_common
from e2e_common import check, failures, log

TMP, CERTS, pb, pb_grpc = e2e_common.init("jw-e2e-durable-")
os.chmod(TMP, 0o711)
pids_to_kill = []  # job pids a failed check may leave
grpc = e2e_common.grpc


class Server(e2e_common.Server):
    """A teleportd with no job limits, given a minute to start and stop."""

    def __init__(self, data_dir, name, extra=()):
        super().__init__(data_dir, name,
                         ["--max-jobs-per-client", "0", "--max-jobs", "0",
                          "--max-finished-per-client", "0"] + list(extra),
                         wait_s=60)


def start(stub, *argv):
    return stub.Start(pb.JobRequest(command=argv[0], args=list(argv[1:])),
                      timeout=30).id


def wait_final(stub, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = stub.Status(pb.StatusRequest(id=job_id), timeout=30)
        if st.state != pb.JOB_STATE_RUNNING:
            return st
        time.sleep(0.05)
    return st


def output(stub, job_id):
    """stdout and stderr of a final job, apart."""
    out = {pb.OUTPUT_STREAM_STDOUT: b"", pb.OUTPUT_STREAM_STDERR: b""}
    for m in stub.GetOutput(pb.GetOutputRequest(id=job_id), timeout=60):
        out[m.stream] += m.data
    return out[pb.OUTPUT_STREAM_STDOUT], out[pb.OUTPUT_STREAM_STDERR]


def refusal(stub, job_id):
    try:
        stub.Status(pb.StatusRequest(id=job_id), timeout=30)
        return None
    except grpc.RpcError as e:
        return e.code()


def restored_status(s, job_id, what):
    """The status of job_id on the restarted server s, or None after a
    failed check `what` (s is stopped then)."""
    try:
        return s.stub.Status(pb.StatusRequest(id=job_id), timeout=30)
    except grpc.RpcError as e:
        check(False, "%s (%s)" % (what, e.code()))
        s.stop()
        return None


def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def wait_gone(pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_gone(pid):
            return True
        time.sleep(0.1)
    return pid_gone(pid)


def test_sigterm_restart():
    data = os.path.join(TMP, "restart")
    s = Server(data, "restart-1")
    script = ("printf 'out\\000\\377bin\\001'; printf 'err\\000\\200' >&2; "
              "printf 'more'; exit 7")
    done = s.stub.Start(pb.JobRequest(command="/bin/sh", args=["-c", script],
                                      timeout_ms=600000), timeout=30).id
    before = wait_final(s.stub, done)
    out_before, err_before = output(s.stub, done)
    bob_before = refusal(s.bob, done)
    running = start(s.stub, "sleep", "1000")
    run_st = s.stub.Status(pb.StatusRequest(id=running), timeout=30)
    pids_to_kill.append(run_st.pid)
    s.stop(signal.SIGTERM)
    check(s.proc.returncode == 0, "restart: teleportd exits 0 at SIGTERM")

    # What a previous run left for nothing: a log without a record, the
    # journal's temporary file; and a file that is not the server's.
    orphan = os.path.join(data, "0123456789abcdef0123456789abcdef.log")
    tmp = os.path.join(data, "jobs.journal.tmp")
    notes = os.path.join(data, "notes.log")
    for path in (orphan, tmp, notes):
        with open(path, "w") as f:
            f.write("x")
    s = Server(data, "restart-2")
    check(not os.path.exists(orphan) and not os.path.exists(tmp) and
          os.path.exists(notes) and
          os.path.exists(os.path.join(data, "jobs.journal")) and
          os.path.exists(os.path.join(data, done + ".log")),
          "restart: the sweep keeps the journal and its jobs' logs, removes "
          "the rest of its own (%s)" % sorted(os.listdir(data)))
    st = restored_status(s, done, "restart: finished job found")
    if st is None:
        return
    check(st.state == pb.JOB_STATE_EXITED and st.exit_code == 7 and
          st.end_reason == pb.END_REASON_EXITED,
          "restart: finished job EXITED 7, reason exited")
    check(st.owner == before.owner and st.pid == before.pid and
          st.started_at_unix_nano == before.started_at_unix_nano and
          st.ended_at_unix_nano == before.ended_at_unix_nano and
          list(st.args) == list(before.args) and
          st.timeout_ms == before.timeout_ms == 600000,
          "restart: status kept (owner, pid, times, args, timeout)")
    out, err = output(s.stub, done)
    check(out == b"out\x00\xffbin\x01more" and out == out_before,
          "restart: stdout byte-identical (%r)" % out)
    check(err == b"err\x00\x80" and err == err_before,
          "restart: stderr byte-identical (%r)" % err)
    check(bob_before is not None and refusal(s.bob, done) == bob_before,
          "restart: bob still refused (%s)" % bob_before)
    ids = [j.id for j in s.stub.List(pb.ListRequest(), timeout=30).jobs]
    check(ids == [done, running], "restart: List has both, oldest first")
    st = s.stub.Status(pb.StatusRequest(id=running), timeout=30)
    check(st.state == pb.JOB_STATE_STOPPED and
          st.end_reason == pb.END_REASON_SERVER_SHUTDOWN,
          "restart: job running at SIGTERM STOPPED, reason server shutdown "
          "(state %d reason %d)" % (st.state, st.end_reason))
    s.stop()


def test_keep_env():
    """Env values reach the journal only with --keep-env true."""
    for flag, want in (("false", False), ("true", True)):
        data = os.path.join(TMP, "env-" + flag)
        s = Server(data, "env-" + flag, ["--keep-env", flag])
        job = s.stub.Start(pb.JobRequest(command="true",
                                         env=["TOKEN=hunter2-e2e-secret"]),
                           timeout=30).id
        wait_final(s.stub, job)
        s.stop()
        try:
            with open(os.path.join(data, "jobs.journal"), "rb") as f:
                journal = f.read()
        except FileNotFoundError:
            journal = b""
        check((b"hunter2-e2e-secret" in journal) == want and
              job.encode() in journal,
              "--keep-env %s: env value %s the journal" %
              (flag, "in" if want else "not in"))


def test_sigkill_crash():
    data = os.path.join(TMP, "crash")
    s = Server(data, "crash-1")
    if "cgroups_unavailable" in s.text():
        log("SKIP crash: no cgroup to find an escaped grandchild by")
        s.stop()
        return
    # The job runs as a user of its own: it writes where anyone may.
    gc_dir = os.path.join(TMP, "gc")
    os.mkdir(gc_dir)
    os.chmod(gc_dir, 0o1777)
    gc_file = os.path.join(gc_dir, "pid")
    script = ("printf 'before\\000crash'; printf 'to stderr' >&2; "
              "setsid sh -c 'echo $$ > %s; exec sleep 1000' & "
              "exec sleep 1000" % gc_file)
    job = start(s.stub, "/bin/sh", "-c", script)
    deadline = time.monotonic() + 30
    gc = None
    while time.monotonic() < deadline and gc is None:
        try:
            with open(gc_file) as f:
                gc = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    st = s.stub.Status(pb.StatusRequest(id=job), timeout=30)
    while time.monotonic() < deadline and st.output_bytes < 21:
        time.sleep(0.05)
        st = s.stub.Status(pb.StatusRequest(id=job), timeout=30)
    # A started job's pid reaches its record at the next flush of the
    # records (every 100 ms at most): wait five of them.
    time.sleep(0.5)
    check(gc is not None, "crash: the grandchild runs (setsid)")
    if gc is not None:
        pids_to_kill.append(gc)
    pids_to_kill.append(st.pid)
    s.stop(signal.SIGKILL)
    check(gc is not None and not pid_gone(gc),
          "crash: the grandchild outlives the SIGKILLed server")

    s = Server(data, "crash-2")
    st2 = restored_status(s, job, "crash: job found after the restart")
    if st2 is None:
        return
    check(st2.state != pb.JOB_STATE_RUNNING and
          st2.end_reason == pb.END_REASON_SERVER_CRASH,
          "crash: job final, reason server crash (state %d reason %d)" %
          (st2.state, st2.end_reason))
    check(st2.owner == st.owner and st2.pid == st.pid,
          "crash: owner and pid kept (%r %d, %r %d)" %
          (st2.owner, st2.pid, st.owner, st.pid))
    out, err = output(s.stub, job)
    check(out == b"before\x00crash" and err == b"to stderr",
          "crash: output before the crash readable (%r, %r)" % (out, err))
    check(wait_gone(st.pid), "crash: the job's process is gone")
    check(gc is not None and wait_gone(gc), "crash: the grandchild is gone")
    s.stop()


def test_crash_storm():
    data = os.path.join(TMP, "storm")
    s = Server(data, "storm-1")
    total, in_flight, kill_at = 400, 8, 150
    answered = []
    lock = threading.Lock()
    cond = threading.Condition(lock)
    state = {"sent": 0, "pending": 0, "killed": False}

    def on_done(fut):
        with cond:
            state["pending"] -= 1
            try:
                answered.append(fut.result().id)
            except grpc.RpcError:
                pass
            if len(answered) >= kill_at and not state["killed"]:
                state["killed"] = True
                s.proc.send_signal(signal.SIGKILL)
            cond.notify_all()

    req = pb.JobRequest(command="true")
    with cond:
        while state["sent"] < total and s.proc.poll() is None:
            while state["pending"] >= in_flight:
                cond.wait(timeout=1)
            fut = s.stub.Start.future(req, timeout=30)
            state["sent"] += 1
            state["pending"] += 1
            cond.release()
            fut.add_done_callback(on_done)
            cond.acquire()
        deadline = time.monotonic() + 60
        while state["pending"] > 0 and time.monotonic() < deadline:
            cond.wait(timeout=1)
    if not state["killed"]:
        s.proc.send_signal(signal.SIGKILL)
    s.stop(signal.SIGKILL)
    ids = list(answered)
    check(len(ids) >= kill_at, "storm: %d Starts answered before the kill"
          % len(ids))
    s = Server(data, "storm-2")
    lost = []
    for i in ids:
        if refusal(s.stub, i) is not None:
            lost.append(i)
    check(not lost, "storm: every answered id found after the restart "
          "(%d of %d lost)" % (len(lost), len(ids)))
    s.stop()


def main():
    try:
        test_sigterm_restart()
        test_keep_env()
        test_sigkill_crash()
        test_crash_storm()
    finally:
        e2e_common.kill_started()
        for pid in pids_to_kill:
            if pid > 0 and not pid_gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(TMP, ignore_errors=True)
    log("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
