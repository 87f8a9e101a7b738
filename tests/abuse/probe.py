"""The well-behaved client of the abuse tests, run by abuse_common.Probe.

Usage: probe.py PORT WHO. Starts a witness job that writes known lines
over a few seconds, prints "IDLE <p50 seconds> <p99>" after timing 100
Status calls, then calls Status every 10 ms until a line arrives on stdin,
then prints "ATTACK <p50> <max> <calls> <errors> <p99>" and, once the
witness job is
final, "WITNESS ok" when it exited 0 and GetOutput returned every byte
(else "WITNESS <what is wrong>").
"""

import os
import select
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "interop"))

import interop_common as ic  # noqa: E402

LINES = 150
WITNESS = ("i=0; while [ $i -lt %d ]; do echo witness line $i; "
           "i=$((i+1)); sleep 0.02; done" % LINES)
EXPECTED = b"".join(b"witness line %d\n" % i for i in range(LINES))


def p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, (len(xs) * 99) // 100)] if xs else 0.0


def main():
    port, who = int(sys.argv[1]), sys.argv[2]
    pb, rpc = ic.load_stubs()
    stub = rpc.JobWorkerStub(ic.channel(port, who))
    job = stub.Start(pb.JobRequest(command="sh", args=["-c", WITNESS]),
                     timeout=20)
    req = pb.StatusRequest(id=job.id)
    for _ in range(10):
        stub.Status(req, timeout=5)
    idle = []
    for _ in range(100):
        t0 = time.monotonic()
        stub.Status(req, timeout=5)
        idle.append(time.monotonic() - t0)
        time.sleep(0.005)
    print("IDLE %.6f %.6f" % (p50(idle), p99(idle)), flush=True)

    lat, errors = [], 0
    while True:
        r, _, _ = select.select([sys.stdin], [], [], 0.01)
        if r:
            break
        t0 = time.monotonic()
        try:
            stub.Status(req, timeout=5)
            lat.append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - any failure counts
            errors += 1
            sys.stderr.write("probe: %s\n" % e)
    print("ATTACK %.6f %.6f %d %d %.6f" % (p50(lat), max(lat) if lat else 0.0,
                                          len(lat), errors, p99(lat)),
          flush=True)

    deadline = time.monotonic() + 30
    st = stub.Status(req, timeout=5)
    while st.state == pb.JOB_STATE_RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
        st = stub.Status(req, timeout=5)
    data = b"".join(m.data for m in stub.GetOutput(
        pb.GetOutputRequest(id=job.id), timeout=20))
    if st.state != pb.JOB_STATE_EXITED or st.exit_code != 0:
        print("WITNESS job ended as %s/%d" % (st.state, st.exit_code),
              flush=True)
    elif data != EXPECTED:
        print("WITNESS output differs (%d bytes, want %d)" %
              (len(data), len(EXPECTED)), flush=True)
    else:
        print("WITNESS ok", flush=True)


if __name__ == "__main__":
    ic.reexec()
    try:
        main()
    finally:
        ic.cleanup_global()
