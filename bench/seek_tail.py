#!/usr/bin/python3
"""bench/seek_tail.py: how fast GetOutput resumes deep in a large finished
log and tails its last lines, seen from a gRPC client (python3-grpcio).

Starts one job that writes --bytes of 100-byte lines (1 GiB by default),
waits until it is final, then times RUNS GetOutput calls from offset
--bytes - 1 MiB and RUNS with tail_lines 10, each from the call to its
first message (the connection is up before the first). Each answer is
checked against what the job wrote. Prints one JSON object: the median,
p90 and max in ms of each (resume_*_ms, tail_*_ms).

Loopback only (--addr must be 127.0.0.1:PORT); every wait is bounded.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

LINE = 100  # bytes per line: 99 of text and a newline


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="jw-bench-stubs-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I",
                    proto_dir, "--python_out", out, "--grpc_python_out", out,
                    "jobworker.proto"], check=True, timeout=60)
    sys.path.insert(0, out)
    import jobworker_pb2
    import jobworker_pb2_grpc
    return jobworker_pb2, jobworker_pb2_grpc


def line_at(n):
    """Line n (0-based) as the job writes it."""
    return b"%099d\n" % n


def first_message_ms(stub, pb, req):
    t0 = time.monotonic()
    it = stub.GetOutput(req, timeout=30)
    m = next(iter(it))
    ms = (time.monotonic() - t0) * 1000
    it.cancel()
    return ms, m


def summary(name, xs):
    xs = sorted(xs)
    return {name + "_median_ms": round(statistics.median(xs), 3),
            name + "_p90_ms": round(xs[int(0.9 * (len(xs) - 1))], 3),
            name + "_max_ms": round(xs[-1], 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--data-dir", help="the server's data directory: then "
                    "also time each call with the log's pages dropped from "
                    "the page cache first (cold_*)")
    ap.add_argument("--proto", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "proto"))
    a = ap.parse_args()
    if not a.addr.startswith("127.0.0.1:"):
        sys.exit("seek_tail: loopback only (127.0.0.1:PORT)")
    lines = a.bytes // LINE
    size = lines * LINE
    pb, pb_grpc = stubs(a.proto)
    creds = grpc.ssl_channel_credentials(
        open(a.cacert, "rb").read(), open(a.key, "rb").read(),
        open(a.cert, "rb").read())
    chan = grpc.secure_channel(a.addr, creds, options=[
        ("grpc.ssl_target_name_override", "localhost"),
        ("grpc.max_receive_message_length", 8 << 20)])
    stub = pb_grpc.JobWorkerStub(chan)
    # seq -f makes every line LINE bytes: the offset of line n is n * LINE.
    job = stub.Start(pb.JobRequest(
        command="seq", args=["-f", "%099.0f", "0", str(lines - 1)]),
        timeout=30)
    t0 = time.monotonic()
    fin = stub.Wait(pb.WaitRequest(id=job.id), timeout=600)
    write_s = time.monotonic() - t0
    if fin.output_bytes != size:
        sys.exit("seek_tail: the job wrote %d bytes, want %d (is "
                 "--max-output-bytes below it?)" % (fin.output_bytes, size))

    resume, tail = [], []
    off = size - (1 << 20)
    for _ in range(a.runs):
        ms, m = first_message_ms(stub, pb, pb.GetOutputRequest(
            id=job.id, offset=off))
        n = off // LINE
        want = line_at(n)[off - n * LINE:]
        if m.offset != off or not m.data.startswith(want[:len(m.data)]):
            sys.exit("seek_tail: resume at %d got offset %d %r" %
                     (off, m.offset, m.data[:40]))
        resume.append(ms)
        ms, m = first_message_ms(stub, pb, pb.GetOutputRequest(
            id=job.id, tail_lines=10))
        if m.offset != size - 10 * LINE or \
                not m.data.startswith(line_at(lines - 10)):
            sys.exit("seek_tail: tail got offset %d %r" %
                     (m.offset, m.data[:40]))
        tail.append(ms)
    cold = {}
    if a.data_dir:
        path = os.path.join(a.data_dir, job.id + ".log")
        for name, req in (("cold_resume", pb.GetOutputRequest(
                id=job.id, offset=off)), ("cold_tail", pb.GetOutputRequest(
                id=job.id, tail_lines=10))):
            xs = []
            for _ in range(a.runs):
                fd = os.open(path, os.O_RDONLY)
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
                xs.append(first_message_ms(stub, pb, req)[0])
            cold.update(summary(name, xs))
    stub.Remove(pb.RemoveRequest(id=job.id), timeout=30)
    chan.close()
    out = {"bytes": size, "runs": a.runs, "offset": off,
           "write_seconds": round(write_s, 2)}
    out.update(summary("resume", resume))
    out.update(summary("tail", tail))
    out.update(cold)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
