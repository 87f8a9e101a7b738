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
  `event=stale_cgroups_removed count=1`; the job's cgroup is not named
  after its id;
- job users: each client's jobs run as a uid of its own (no groups, no
  capabilities, no_new_privs), kept across a restart; bob's job cannot
  read alice's log, list the data directory or signal alice's job; the
  users file maps to root and refuses `CN -`; the default pids limit;
  teleportd as nobody runs jobs as nobody and says so;
- the data directory: StrictModes refusals, the lock file symlink, the
  sweep deleting only the server's own logs.

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
import time

import e2e_common
from e2e_common import Server, TELEPORTD, check, failures, log, started

TMP, CERTS, pb, pb_grpc = e2e_common.init("jw-e2e-cg-")
grpc = e2e_common.grpc


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


def read_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


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
            check(st.end_reason == pb.END_REASON_OOM_KILLED,
                  "memory hog: end reason oom killed (%d)" % st.end_reason)
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
    # The job's cgroup is named by a token of its own, not by its id
    # (/proc/PID/cgroup is world-readable).
    with open("/proc/%d/cgroup" % escaped) as f:
        paths = [line.rstrip("\n").split(":", 2)[2] for line in f]
    names = {p.rsplit("/", 1)[1] for p in paths
             if "/teleportd-" in p and p.rsplit("/", 1)[1].startswith("cg-")}
    check(len(names) == 1 and job.id not in "".join(paths),
          "the job's cgroup is not named after its id (%s)" % paths)
    dirs = [d for n in names
            for d in glob.glob("/sys/fs/cgroup/**/teleportd-*/" + n,
                               recursive=True)]
    check(pid_alive(escaped) and dirs, "the job runs in cgroups %s" % dirs)
    srv.stop(signal.SIGKILL)
    # The job's leader dies with the server (PR_SET_PDEATHSIG): once it
    # has, the setsid'd process is on its own.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pid_alive(job.pid):
        time.sleep(0.05)
    check(not pid_alive(job.pid), "the job's leader died with the server")
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


def stub_for(srv, name):
    """A second client of srv, with the certificate of name."""
    channel = e2e_common.channel(srv.port, name)
    return channel, pb_grpc.JobWorkerStub(channel)


def run_sh(stub, script):
    st = stub.Start(pb.JobRequest(command="sh", args=["-c", script]),
                    timeout=10)
    final = wait_final(stub, st.id)
    return final, output(stub, st.id).decode(errors="replace")


def kernel_default_pids():
    vals = []
    for f in ("pid_max", "threads-max"):
        with open("/proc/sys/kernel/" + f) as fh:
            vals.append(int(fh.read()))
    return max(1, min(vals) * 15 // 100)


def pids_max_of(pid):
    """pids.max of the cgroup pid is in (v1 pids controller or cgroup2)."""
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for base in (["/sys/fs/cgroup/pids"] if "pids" in ctrls.split(",")
                         else ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                         if ctrls == "" else []):
                try:
                    with open(base + path + "/pids.max") as fh:
                        return fh.read().strip()
                except OSError:
                    pass
    return None


def test_job_users():
    """Each client's jobs run as an unprivileged user of its own."""
    if os.geteuid() != 0:
        log("SKIP job users: teleportd is not root here")
        return
    # Only the data directory (0700) may stand between the jobs and the
    # logs: the test's own directory lets every user through.
    os.chmod(TMP, 0o711)
    data = os.path.join(TMP, "data3")
    srv = Server(data, "users1")
    bch, bob = stub_for(srv, "bob")
    try:
        ids = "id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs):' " \
              "/proc/self/status"
        st, out = run_sh(srv.stub, ids)
        a = out.split("\n")
        check(st.exit_code == 0 and 200000 <= int(a[0]) <= 265535 and
              a[1] == a[0] and a[2] == a[0] and
              a[3] == "CapEff:\t0000000000000000" and a[4] == "NoNewPrivs:\t1",
              "alice's job runs as a uid of the range, no groups, no caps, "
              "no_new_privs (%r)" % out)
        st, out = run_sh(bob, "id -u")
        check(out.strip() != a[0] and 200000 <= int(out) <= 265535,
              "bob's job runs as another uid (%s, alice %s)" % (out.strip(),
                                                               a[0]))
        if "pids" in backend(srv)[1]:
            check(st.limits.pids == kernel_default_pids(),
                  "no --default-pids: a job gets 15%% of the kernel's max "
                  "(%d, want %d)" % (st.limits.pids, kernel_default_pids()))
        sleeper = srv.stub.Start(pb.JobRequest(command="sleep",
                                               args=["600"]), timeout=10)
        # Until the job has exec'd sleep (bounded).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                read_cmdline(sleeper.pid) != b"sleep\x00600\x00":
            time.sleep(0.05)
        if "pids" in backend(srv)[1]:
            check(pids_max_of(sleeper.pid) == str(kernel_default_pids()),
                  "the job's cgroup holds that pids.max (%s)" %
                  pids_max_of(sleeper.pid))
        log_file = os.path.join(data, sleeper.id + ".log")
        check(os.path.exists(log_file), "alice's log is in the data dir")
        # 2>&1: the refusals must come before "---", and only one stream
        # keeps its order against the other (stdout and stderr are two
        # pipes, read in whatever order they become ready).
        st, out = run_sh(bob, "exec 2>&1; cat %s; ls %s; "
                         "kill -0 %d && echo KILLED; "
                         "echo ---; cat /proc/self/cgroup; env" %
                         (log_file, data, sleeper.pid))
        before, _, after = out.partition("---")
        check("Permission denied" in before and "KILLED" not in out and
              "Operation not permitted" in before and after and
              sleeper.id not in after and st.id not in after,
              "bob's job cannot read alice's log, list the data dir, or "
              "signal alice's job (%r)" % out)
        srv.stub.Stop(pb.StopRequest(id=sleeper.id), timeout=30)
        private = os.path.join(TMP, "private")
        os.mkdir(private, 0o700)
        try:
            srv.stub.Start(pb.JobRequest(command="true", working_dir=private),
                           timeout=10)
            check(False, "a working dir the job's user cannot enter fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and
                  "job's user (uid %s)" % a[0] in e.details(),
                  "a working dir the job's user cannot enter: %s %s" %
                  (e.code(), e.details()))
    finally:
        bch.close()
        srv.stop()

    # A restart keeps alice's uid; the users file refuses bob, maps alice
    # to root.
    srv = Server(data, "users2")
    try:
        st, out = run_sh(srv.stub, "id -u")
        check(out.strip() == a[0], "alice keeps uid %s across a restart (%s)"
              % (a[0], out.strip()))
    finally:
        srv.stop()
    users = os.path.join(TMP, "users")
    with open(users, "w") as f:
        f.write("# test\nalice root\nbob -\n")
    srv = Server(data, "users3", ["--users", users])
    bch, bob = stub_for(srv, "bob")
    try:
        st, out = run_sh(srv.stub, "id -u")
        check(out.strip() == "0", "--users maps alice to root (%s)" % out)
        try:
            bob.Start(pb.JobRequest(command="true"), timeout=10)
            check(False, "bob (CN -) is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.PERMISSION_DENIED and
                  "may not run jobs" in e.details(),
                  "bob (CN -) is refused: %s %s" % (e.code(), e.details()))
    finally:
        bch.close()
        srv.stop()


def test_unprivileged_server():
    """teleportd not as root: jobs run as its own user, and one log line
    at start says so."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        log("SKIP unprivileged server: needs root and setpriv to drop to "
            "nobody")
        return
    home = os.path.join(TMP, "nobody")
    os.mkdir(home, 0o700)
    for f in ("ca.cert", "server.cert", "server.key"):
        shutil.copy(os.path.join(CERTS, f), os.path.join(home, f))
        os.chown(os.path.join(home, f), 65534, 65534)
    os.chown(home, 65534, 65534)
    os.chmod(TMP, 0o711)
    log_path = os.path.join(TMP, "nobody.log")
    with open(log_path, "wb") as logf:
        p = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             TELEPORTD, "--addr", "127.0.0.1:0",
             "--cacert", os.path.join(home, "ca.cert"),
             "--cert", os.path.join(home, "server.cert"),
             "--key", os.path.join(home, "server.key"),
             "--data-dir", os.path.join(home, "data")],
            stdout=logf, stderr=subprocess.STDOUT)
    started.append(p)
    try:
        port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            with open(log_path, "rb") as f:
                text = f.read().decode(errors="replace")
            m = re.search(r"event=listening\b.*\bport=(\d+)", text)
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        check(port is not None, "teleportd runs as nobody: %s" % text[-500:])
        if port is None:
            return
        lines = [ln for ln in text.splitlines() if "event=job_users" in ln]
        check(len(lines) == 1 and "not root" in lines[0] and
              "uid=65534" in lines[0],
              "one log line says jobs run as teleportd's user: %s" % lines)
        with e2e_common.channel(port, "alice") as ch:
            st, out = run_sh(pb_grpc.JobWorkerStub(ch), "id -u")
        check(out.strip() == "65534",
              "its jobs run as its own user (%s)" % out.strip())
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def refused_start(data_dir, extra=()):
    """Runs teleportd expecting it to refuse to start: (exit code, stderr)."""
    args = [TELEPORTD, "--addr", "127.0.0.1:0",
            "--cacert", os.path.join(CERTS, "ca.cert"),
            "--cert", os.path.join(CERTS, "server.cert"),
            "--key", os.path.join(CERTS, "server.key"),
            "--data-dir", data_dir] + list(extra)
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    started.append(p)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return p.returncode, err.decode(errors="replace")


def test_data_dir():
    """StrictModes for --data-dir; the sweep only deletes the server's own."""
    base = os.path.join(TMP, "dd")
    os.mkdir(base, 0o755)
    loose = os.path.join(base, "loose")
    os.mkdir(loose)
    os.chmod(loose, 0o777)
    rc, err = refused_start(loose)
    check(rc == 2 and loose in err and "writable" in err,
          "a world-writable data dir is refused, named: %r" % err)
    shared = os.path.join(base, "shared")
    os.mkdir(shared, 0o775)
    os.chmod(shared, 0o775)
    inner = os.path.join(shared, "data")
    os.mkdir(inner, 0o700)
    rc, err = refused_start(inner)
    check(rc == 2 and shared in err and "writable" in err,
          "a group-writable parent is refused, named: %r" % err)
    if os.geteuid() == 0:
        other = os.path.join(base, "other")
        os.mkdir(other, 0o700)
        os.chown(other, 4242, 4242)
        rc, err = refused_start(other)
        check(rc == 2 and other in err and "owned by uid 4242" in err,
              "a data dir of another user is refused, named: %r" % err)
    link = os.path.join(base, "link")
    os.mkdir(link, 0o700)
    os.symlink(os.path.join(base, "elsewhere"),
               os.path.join(link, "teleportd.lock"))
    rc, err = refused_start(link)
    check(rc == 2 and "symbolic link" in err and
          not os.path.exists(os.path.join(base, "elsewhere")),
          "a symlinked lock file is refused and not followed: %r" % err)

    keep = os.path.join(base, "keep")
    os.mkdir(keep, 0o755)
    own = "0123456789abcdef0123456789abcdef.log"
    mine = ["notes.log", "ABCDEF0123456789ABCDEF0123456789.log",
            "0123456789abcdef0123456789abcdef.log.bak", "x.txt"]
    for n in [own] + mine:
        with open(os.path.join(keep, n), "w") as f:
            f.write("x")
    srv = Server(keep, "datadir")
    srv.stop()
    left = sorted(os.listdir(keep))
    check(own not in left and all(n in left for n in mine),
          "the sweep removes only the server's own logs (left %s)" % left)
    check(os.stat(keep).st_mode & 0o777 == 0o700,
          "a data dir others could list is made 0700")


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
        test_job_users()
        test_data_dir()
        test_unprivileged_server()
    finally:
        e2e_common.kill_started()
        shutil.rmtree(TMP, ignore_errors=True)
    if failures:
        log("%d failed" % len(failures))
        return 1
    log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
