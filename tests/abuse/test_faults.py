"""Faults around teleportd: its data directory's disk full, its file
descriptors exhausted, and teleportd killed with SIGKILL while jobs run.
"""

import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import abuse_common as ac  # noqa: E402
from abuse_common import ic  # noqa: E402


def can_mount_tmpfs():
    try:
        r = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o size=1m jw-abuse-probe /mnt"],
            capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Faults(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pb, cls.rpc = ic.load_stubs()

    def setUp(self):
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.cleanup()

    def server(self, **kw):
        srv = ic.Server(**kw)
        self.servers.append(srv)
        return srv

    def stub(self, srv, who="alice"):
        return self.rpc.JobWorkerStub(ic.channel(srv.port, who))

    def wait_final(self, stub, jid, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            st = stub.Status(self.pb.StatusRequest(id=jid), timeout=5)
            if st.state != self.pb.JOB_STATE_RUNNING or \
                    time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def test_disk_full(self):
        """The data directory on a 1 MiB tmpfs (in a mount namespace of
        teleportd's own, so the mount goes with it): a job writing 3 MB
        keeps running and exits 0, what did not fit is dropped, logged and
        counted in JobStatus and at the end of GetOutput, and the server
        keeps serving."""
        if not can_mount_tmpfs():
            self.skipTest("cannot mount a tmpfs in a mount namespace here")
        srv = self.server(extra_args=["--log-level", "info"])
        os.makedirs(srv.data_dir, exist_ok=True)
        srv.wrapper = ["unshare", "-m", "--propagation", "private", "sh",
                       "-c", 'mount -t tmpfs -o size=1m,mode=0700 jw-abuse '
                       '"$0" && '
                       'exec "$@"', srv.data_dir]
        srv.start()
        stub = self.stub(srv)
        total = 3000000
        job = stub.Start(self.pb.JobRequest(
            command="sh", args=["-c", "head -c %d /dev/zero; echo end"
                                % total]), timeout=10)
        st = self.wait_final(stub, job.id)
        self.assertEqual(st.state, self.pb.JOB_STATE_EXITED)
        self.assertEqual(st.exit_code, 0)
        self.assertGreater(st.output_dropped_bytes, 0)
        self.assertLess(st.output_bytes, 1 << 20)
        self.assertEqual(st.output_bytes + st.output_dropped_bytes,
                         total + 4)
        out = list(stub.GetOutput(self.pb.GetOutputRequest(id=job.id),
                                  timeout=20))
        self.assertEqual(sum(len(m.data) for m in out), st.output_bytes)
        self.assertEqual(out[-1].dropped_bytes, st.output_dropped_bytes)
        log = srv.log_text()
        self.assertIn("event=output_write_failed", log)
        self.assertIn("No space left on device", log)
        ac.assert_alive(self, srv)
        job2 = stub.Start(self.pb.JobRequest(command="true"), timeout=10)
        self.assertEqual(self.wait_final(stub, job2.id).exit_code, 0)

    def test_emfile(self):
        """teleportd with a hard limit of 64 descriptors: Start fails with
        RESOURCE_EXHAUSTED once they are used up, the open connection
        keeps working, a new connection is closed without the accept loop
        spinning, and all is well again once jobs end."""
        import grpc
        srv = self.server(
            extra_args=["--max-jobs", "0", "--max-jobs-per-client", "0",
                        "--log-level", "info"],
            wrapper=["prlimit", "--nofile=64:64"]).start()
        pid = srv.proc.pid
        stub = self.stub(srv)
        stub.List(self.pb.ListRequest(), timeout=5)
        err = None
        for _ in range(60):
            try:
                stub.Start(self.pb.JobRequest(command="sleep", args=["60"]),
                           timeout=10)
            except grpc.RpcError as e:
                err = e
                break
        self.assertIsNotNone(err, "64 descriptors never ran out")
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                         err.details())
        self.assertIn("file descriptors", err.details())
        # The open connection works.
        jobs = stub.List(self.pb.ListRequest(), timeout=5).jobs
        self.assertGreater(len(jobs), 0)
        # A new connection now: refused or closed, not served, and the
        # server does not spin on the pending accept.
        cpu0 = ac.cpu_seconds(pid)
        t0 = time.monotonic()
        try:
            r = ac.RawConn(srv.port, timeout=3)
            r.read_for(2, until=lambda x: x.closed)
            r.close()
        except OSError:
            pass
        cpu = ac.cpu_seconds(pid) - cpu0
        self.assertLess(cpu, 0.8 * (time.monotonic() - t0) + 0.2,
                        "teleportd spun: %.2fs CPU" % cpu)
        ac.assert_alive(self, srv)
        # Jobs end, descriptors come back, new clients and starts work.
        for j in jobs:
            stub.Stop(self.pb.StopRequest(id=j.id), timeout=20)
        fresh = self.stub(srv, "bob")
        deadline = time.monotonic() + 20
        while True:
            try:
                fresh.List(self.pb.ListRequest(), timeout=3)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        job = fresh.Start(self.pb.JobRequest(command="true"), timeout=10)
        self.assertEqual(self.wait_final(fresh, job.id).exit_code, 0)

    def test_sigkill_and_restart(self):
        """teleportd killed with SIGKILL: each job's leader dies with it
        (PR_SET_PDEATHSIG); processes the leader forked die too where jobs
        have cgroups (the restarted server kills what its previous run
        left), and without cgroups they may outlive it (docs/security.md).
        A teleportd restarted on the same data directory knows both jobs
        from their records: final, ended by the crash, logs kept."""
        srv = self.server(extra_args=["--log-level", "info"]).start()
        stub = self.stub(srv)
        a = stub.Start(self.pb.JobRequest(command="sleep", args=["300"]),
                       timeout=10)
        b = stub.Start(self.pb.JobRequest(
            command="sh", args=["-c", "sleep 300 & sleep 300 & wait"]),
            timeout=10)
        pgids = {a.pid, b.pid}
        # Both leaders and the two sleeps b forks, before the kill.
        ic.wait_until(lambda: len(ic.processes_in_groups(pgids)) >= 4, 10)
        self.assertGreaterEqual(len(ic.processes_in_groups(pgids)), 4)
        cgroups = "event=cgroups " in srv.log_text()
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
                ic.proc_stat(a.pid) or ic.proc_stat(b.pid)):
            time.sleep(0.05)
        for pid in (a.pid, b.pid):
            st = ic.proc_stat(pid)
            self.assertTrue(st is None or st[0] == "Z",
                            "job leader %d outlived teleportd" % pid)
        left = ic.processes_in_groups(pgids)
        sys.stdout.write("  after SIGKILL: %d process(es) of the jobs' "
                         "groups left (cgroups: %s)\n" % (len(left), cgroups))
        # Restart on the same data directory.
        srv2 = self.server(extra_args=["--log-level", "info"])
        srv2.data_dir = srv.data_dir
        srv2.start()
        log = srv2.log_text()
        self.assertNotIn("event=stale_logs_removed", log)
        self.assertEqual(sorted(f for f in os.listdir(srv.data_dir)
                                if f.endswith(".log")),
                         sorted([a.id + ".log", b.id + ".log"]))
        # Audited as ended by the crash, with a start time from the record.
        ends = re.findall(r"event=job_end .*reason=crash .*duration=([0-9.]+)s",
                          log)
        self.assertEqual(len(ends), 2, log)
        # The jobs ran for seconds, not since the epoch (a start time of 0).
        self.assertTrue(all(float(d) < 600 for d in ends), ends)
        if cgroups:
            deadline = time.monotonic() + 5
            while ic.processes_in_groups(pgids) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(ic.processes_in_groups(pgids), [])
        else:
            ic.kill_groups(pgids)
        stub2 = self.stub(srv2)
        jobs = stub2.List(self.pb.ListRequest(), timeout=5).jobs
        self.assertEqual([j.id for j in jobs], [a.id, b.id])
        for j in jobs:
            self.assertEqual(j.state, self.pb.JOB_STATE_STOPPED)
            self.assertEqual(j.end_reason, self.pb.END_REASON_SERVER_CRASH)
            self.assertGreater(j.started_at_unix_nano, 0)
            self.assertGreaterEqual(j.ended_at_unix_nano,
                                    j.started_at_unix_nano)
        job = stub2.Start(self.pb.JobRequest(command="true"), timeout=10)
        self.assertEqual(self.wait_final(stub2, job.id).exit_code, 0)


if __name__ == "__main__":
    ic.reexec()
    sys.exit(ic.run_suite("abuse-faults", [Faults]))
