"""bench/reload.py: how long a reload (SIGHUP) leaves new clients unserved.

Starts teleportd (loopback, its own data directory and certificates) with
1000 jobs, 100 of them running (`sleep 600`) and 900 finished (`true`),
then sends SIGHUP while a prober opens a new TLS connection every few
milliseconds and asks one Status on it. It reports:

- no_service_ms: the longest time between two answers a new connection
  got, from the SIGHUP until the reloaded server answered (the window in
  which a client connecting anew waits: the check, the 500 ms stream
  flush, the exec and the restore of the 1000 records);
- hup_to_reloaded_ms: from the SIGHUP to the reloaded server's
  `event=reloaded` log line;
- that the 100 running jobs kept their pids.

Usage: bench/reload.py TELEPORTD CERTS_DIR CLIENT WORK_DIR [--json OUT]
(CERTS_DIR holds ca.cert, server.cert, server.key, CLIENT.cert and
CLIENT.key, as jw-certs or tests/make-certs.sh make them). Exits 0 when
the goal (no_service_ms under 1000) is met and every job is kept.
Every process it starts is killed by its pid at the end.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS, RUNNING = 1000, 100
# The tests' stub generator (proto/jobworker.proto into a temp dir).
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "interop"))
from interop_common import load_stubs  # noqa: E402


def main():
    teleportd, certs, client, work = sys.argv[1:5]
    json_out = sys.argv[6] if len(sys.argv) > 6 and \
        sys.argv[5] == "--json" else None
    pb, pb_grpc = load_stubs()
    data = os.path.join(work, "reload-data")
    shutil.rmtree(data, ignore_errors=True)
    log_path = os.path.join(work, "reload-teleportd.log")
    logf = open(log_path, "wb")
    proc = subprocess.Popen(
        [teleportd, "--addr", "127.0.0.1:0",
         "--cacert", os.path.join(certs, "ca.cert"),
         "--cert", os.path.join(certs, "server.cert"),
         "--key", os.path.join(certs, "server.key"),
         "--data-dir", data, "--stop-timeout", "1s",
         "--max-jobs-per-client", str(JOBS),
         "--max-finished-per-client", str(JOBS)],
        stdout=logf, stderr=subprocess.STDOUT)

    def text():
        with open(log_path, "rb") as f:
            return f.read().decode(errors="replace")

    creds = grpc.ssl_channel_credentials(
        open(os.path.join(certs, "ca.cert"), "rb").read(),
        open(os.path.join(certs, client + ".key"), "rb").read(),
        open(os.path.join(certs, client + ".cert"), "rb").read())
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            m = re.search(r"event=listening\b.*\bport=(\d+)", text())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        if port is None:
            raise RuntimeError("teleportd did not start:\n" + text())
        target = "127.0.0.1:%d" % port
        chan = grpc.secure_channel(target, creds)
        stub = pb_grpc.JobWorkerStub(chan)
        running = []
        for i in range(JOBS):
            cmd = ("sleep", ["600"]) if i < RUNNING else ("true", [])
            st = stub.Start(pb.JobRequest(command=cmd[0], args=cmd[1]),
                            timeout=30, wait_for_ready=True)
            if i < RUNNING:
                running.append((st.id, st.pid))
        probe_id = running[0][0]
        chan.close()
        time.sleep(1)  # the 900 `true` jobs end

        answers = []  # monotonic times of answers on new connections
        stop = threading.Event()

        def prober():
            while not stop.is_set():
                c = grpc.secure_channel(target, creds)
                try:
                    pb_grpc.JobWorkerStub(c).Status(
                        pb.StatusRequest(id=probe_id), timeout=5)
                    answers.append(time.monotonic())
                except grpc.RpcError:
                    pass
                c.close()
                time.sleep(0.005)

        t = threading.Thread(target=prober, daemon=True)
        t.start()
        time.sleep(0.5)
        t_hup = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        t_reloaded = None
        deadline = t_hup + 60
        while time.monotonic() < deadline:
            if "event=reload_failed" in text() or proc.poll() is not None:
                raise RuntimeError("the reload failed:\n" + text())
            if "event=reload_exec" in text() and t_reloaded is None:
                t_reloaded = time.monotonic()
            if t_reloaded is not None and \
                    any(a > t_reloaded for a in answers):
                break
            time.sleep(0.01)
        time.sleep(0.3)
        stop.set()
        t.join(10)
        seen = [a for a in answers if a >= t_hup - 0.5]
        first_after = min(a for a in answers if a > t_reloaded)
        gaps = [b - a for a, b in zip(seen, seen[1:]) if b <= first_after]
        no_service = max(gaps + [first_after - max(
            [a for a in seen if a <= t_hup] or [t_hup])])

        chan = grpc.secure_channel(target, creds)
        stub = pb_grpc.JobWorkerStub(chan)
        same = 0
        for job_id, pid in running:
            st = stub.Status(pb.StatusRequest(id=job_id), timeout=30,
                             wait_for_ready=True)
            same += st.pid == pid and st.state == pb.JOB_STATE_RUNNING
        total = len(stub.List(pb.ListRequest(), timeout=30).jobs)
        chan.close()
        result = {
            "jobs": total, "running": RUNNING, "running_kept": same,
            "no_service_ms": round(no_service * 1000, 1),
            "hup_to_exec_ms": round((t_reloaded - t_hup) * 1000, 1),
            "hup_to_first_new_answer_ms": round(
                (first_after - t_hup) * 1000, 1),
            "probes": len(seen),
        }
        print(json.dumps(result))
        if json_out:
            with open(json_out, "w") as f:
                json.dump(result, f)
        ok = same == RUNNING and total == JOBS and no_service < 1.0
        return 0 if ok else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logf.close()


if __name__ == "__main__":
    sys.exit(main())
