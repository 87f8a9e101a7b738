#!/usr/bin/python3
"""Makes the seed corpus of the fuzz targets under tests/fuzz from real
client traffic: protobuf requests from stubs that grpc_tools generates
from proto/jobworker.proto, framed as gRPC does, and the plaintext HTTP/2
bytes a real HTTP/2 client (python3-h2) sends for those calls. The seeds
are written into the build directory, never committed:

  OUT/request/*  one byte (how the fuzzer cuts the body) + a request body
  OUT/server/*   what a client sends after TLS: preface, SETTINGS, HEADERS,
                 DATA, ... for one or more calls
  OUT/grpc/*     one byte (which property) + grpc-timeout / grpc-message
                 values as clients and teleportd send them
  OUT/log/*      level, buffer size, time, then key/value pairs: the lines
                 teleportd logs, with client values of every kind and size

usage: make-seeds.py --proto proto/jobworker.proto --out DIR [--stamp FILE]
"""
import argparse
import hashlib
import importlib
import os
import shutil
import struct
import sys
import tempfile
import zlib

import h2.config
import h2.connection
import h2.settings
from grpc_tools import protoc

PREFIX = "/jobworker.v1.JobWorker/"


def load_pb(proto):
    tmp = tempfile.mkdtemp(prefix="jw-seeds-")
    d = os.path.dirname(os.path.abspath(proto))
    rc = protoc.main(["protoc", "-I" + d, "--python_out=" + tmp,
                      os.path.abspath(proto)])
    if rc != 0:
        sys.exit("protoc failed on %s" % proto)
    sys.path.insert(0, tmp)
    try:
        return importlib.import_module("jobworker_pb2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def requests(pb):
    """Every request type, as the CLI and outside clients send them."""
    jid = "6f1c2a9e0b7d4c3e8a5f1d2b3c4e5f60"
    lim = pb.Limits(memory_bytes=64 << 20, cpu_millis=500, io_read_bps=1 << 20,
                    io_write_bps=1 << 20, pids=32)
    iso = pb.Isolation(pid=True, mount=True, network=True)
    return {
        "Start": [
            pb.JobRequest(command="echo", args=["hello"]),
            pb.JobRequest(command="sh", args=["-c", "echo out; echo err >&2"],
                          env=["A=1", "B=two words"], working_dir="/tmp"),
            pb.JobRequest(command="/bin/true", limits=lim, isolation=iso),
            pb.JobRequest(command="ls", args=["-l", "/"], working_dir="/",
                          limits=pb.Limits(memory_bytes=1 << 30)),
            pb.JobRequest(command="", args=[]),
            pb.JobRequest(command="x", env=["NOEQUALS", "=v"]),
            pb.JobRequest(command="x", working_dir="/nonexistent/dir"),
            pb.JobRequest(command="x", args=["a\x01b\x7f"] * 3,
                          env=["K=\x1b[31m"]),
        ],
        "Status": [pb.StatusRequest(id=jid), pb.StatusRequest(id=""),
                   pb.StatusRequest(id="x" * 70)],
        "Stop": [pb.StopRequest(id=jid),
                 pb.StopRequest(id="123e4567-e89b-12d3-a456-426614174000")],
        "GetOutput": [pb.GetOutputRequest(id=jid)],
        "List": [pb.ListRequest()],
    }


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    h = hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, "%s-%s" % (name, h)), "wb") as f:
        f.write(data)


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    return c


def gzip_bytes(data):
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def headers(path, timeout=None, ctype="application/grpc", method="POST",
            enc=None):
    h = [(":method", method), (":scheme", "https"), (":path", path),
         (":authority", "localhost:3000"), ("content-type", ctype),
         ("te", "trailers"), ("user-agent", "jw-seeds/1 python-h2")]
    if timeout is not None:
        h.append(("grpc-timeout", timeout))
    if enc is not None:
        h += [("grpc-encoding", enc), ("grpc-accept-encoding", "gzip")]
    return h


def call(c, path, body, timeout=None, split=0, **kw):
    """One call on a new stream: HEADERS, then the body in DATA frames."""
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, headers(path, timeout, **kw), end_stream=body is None)
    if body is not None:
        if split and len(body) > split:
            for i in range(0, len(body), split):
                c.send_data(sid, body[i:i + split],
                            end_stream=i + split >= len(body))
        else:
            c.send_data(sid, body, end_stream=True)
    return sid


def server_seeds(out, reqs):
    # Each JobWorker call on a connection of its own, as the CLI makes it.
    for method, msgs in reqs.items():
        for i, m in enumerate(msgs):
            c = client()
            call(c, PREFIX + method, frame(m.SerializeToString()),
                 timeout="10S" if i % 2 else None)
            write(out, "server", "%s-%d" % (method.lower(), i),
                  c.data_to_send())
    # Several calls on one connection, some split over DATA frames.
    c = client()
    for method, msgs in reqs.items():
        call(c, PREFIX + method, frame(msgs[0].SerializeToString()), split=3)
    c.ping(b"12345678")
    write(out, "server", "many-calls", c.data_to_send())
    # The test service: unary, failing, ending later, streaming.
    for path, body in [("/test.Svc/Echo", b"hello"),
                       ("/test.Svc/Echo", b""),
                       ("/test.Svc/Fail", b"\x05not found: \x01%\xff"),
                       ("/test.Svc/Later", b"\x01"),
                       ("/test.Svc/Later", b"\x02"),
                       ("/test.Svc/Stream", b"\x07\x05"),
                       ("/test.Svc/Stream", b"\xff\x10")]:
        c = client()
        call(c, path, frame(body))
        write(out, "server", path.rsplit("/", 1)[1].lower(), c.data_to_send())
    # A stream the client then lets flow: window updates, then a reset.
    c = client()
    sid = call(c, "/test.Svc/Stream", frame(b"\x40\x08"))
    c.increment_flow_control_window(1 << 20)
    c.increment_flow_control_window(1 << 16, stream_id=sid)
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100,
                       h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384})
    c.reset_stream(sid)
    write(out, "server", "stream-window-reset", c.data_to_send())
    # Deadlines: already passed, short; a reset during a call ending later.
    for t in ["0m", "1m", "1n", "99999999H"]:
        c = client()
        call(c, "/test.Svc/Later", frame(b"\x01"), timeout=t)
        write(out, "server", "timeout", c.data_to_send())
    c = client()
    sid = call(c, "/test.Svc/Later", frame(b"\x03"))
    c.reset_stream(sid, error_code=8)
    write(out, "server", "later-cancel", c.data_to_send())
    # What the server must refuse: not POST, no gRPC content-type, unknown
    # method, bad timeout, compressed flag, two messages, a cut message,
    # a message over the limit, GOAWAY from the client.
    bad = [
        ("get", dict(path="/test.Svc/Echo", body=frame(b"x"), method="GET")),
        ("ctype", dict(path="/test.Svc/Echo", body=frame(b"x"),
                       ctype="text/plain")),
        ("ctype-plus", dict(path="/test.Svc/Echo", body=frame(b"x"),
                            ctype="application/grpc+proto")),
        ("nomethod", dict(path="/no.Such/Method", body=frame(b""))),
        ("badtimeout", dict(path="/test.Svc/Echo", body=frame(b"x"),
                            timeout="1x")),
        ("compressed", dict(path="/test.Svc/Echo", body=frame(b"x", 1))),
        ("two", dict(path="/test.Svc/Echo", body=frame(b"a") + frame(b"b"))),
        ("cut", dict(path="/test.Svc/Echo", body=frame(b"abcdef")[:-2])),
        ("nobody", dict(path="/test.Svc/Echo", body=None)),
        ("huge", dict(path="/test.Svc/Echo",
                      body=struct.pack(">BI", 0, 1 << 20) + b"x" * 100)),
    ]
    for name, kw in bad:
        c = client()
        call(c, kw.pop("path"), kw.pop("body"), **kw)
        write(out, "server", "bad-" + name, c.data_to_send())
    # gzip messages (grpc-encoding gzip): whole, split over DATA frames,
    # for a JobWorker method, and broken ones: cut, trailing bytes, a bomb
    # past the limit, an encoding the server does not take.
    hello = gzip_bytes(b"hello, compressed " * 30)
    start = gzip_bytes(reqs["Start"][1].SerializeToString())
    gz = [
        ("echo", "/test.Svc/Echo", frame(hello, 1), "gzip", 0),
        ("echo-split", "/test.Svc/Echo", frame(hello, 1), "gzip", 3),
        ("start", PREFIX + "Start", frame(start, 1), "gzip", 0),
        ("plain", "/test.Svc/Echo", frame(b"plain"), "gzip", 0),
        ("empty", "/test.Svc/Echo", frame(gzip_bytes(b""), 1), "gzip", 0),
        ("cut", "/test.Svc/Echo", frame(hello[:-6], 1), "gzip", 0),
        ("trailing", "/test.Svc/Echo", frame(hello + b"x", 1), "gzip", 0),
        ("bomb", "/test.Svc/Echo", frame(gzip_bytes(bytes(1 << 20)), 1),
         "gzip", 0),
        ("flag2", "/test.Svc/Echo", frame(hello, 2), "gzip", 0),
        ("deflate", "/test.Svc/Echo", frame(hello, 1), "deflate", 0),
    ]
    for name, path, body, enc, split in gz:
        c = client()
        call(c, path, body, split=split, enc=enc)
        write(out, "server", "gzip-" + name, c.data_to_send())
    c = client()
    call(c, "/test.Svc/Echo", frame(b"bye"))
    c.close_connection()
    write(out, "server", "goaway", c.data_to_send())


def request_seeds(out, reqs):
    for method, msgs in reqs.items():
        for i, m in enumerate(msgs):
            body = frame(m.SerializeToString())
            for cut in (0, 1, 7):
                write(out, "request", "%s-%d" % (method.lower(), i),
                      bytes([cut]) + body)
    # Two messages in one body, an empty one, a cut one, a bad flag.
    a = reqs["Start"][1].SerializeToString()
    write(out, "request", "two", b"\x03" + frame(a) + frame(b""))
    write(out, "request", "cut", b"\x00" + frame(a)[:-3])
    write(out, "request", "flag", b"\x00" + frame(a, 1))
    write(out, "request", "limit", b"\x00" + struct.pack(">BI", 0, 1 << 20))


def grpc_seeds(out):
    # 0: parse a timeout; 1: format a value; 2: encode+decode bytes;
    # 3: decode a header value; 4: status mappings; 5: inflate gzip under
    # a cap (2 bytes), split at a point (1 byte).
    for t in [b"100m", b"5S", b"1H", b"30M", b"10u", b"999999n", b"0m",
              b"99999999H", b"12345678m", b"1x", b"S", b"123456789S"]:
        write(out, "grpc", "timeout-parse", b"\x00" + t)
    for v in [0, 1, 999, 1000, 99999999, 100000000, 3600000 * 99999999,
              (1 << 64) - 1]:
        write(out, "grpc", "timeout-format", b"\x01" + struct.pack(">Q", v))
    # Messages teleportd sends, and bytes a handler might put in one.
    for m in ["job 6f1c2a9e0b7d4c3e8a5f1d2b3c4e5f60 not found",
              'env[0] "a\\x01" is not KEY=VALUE',
              "cannot start nope: command not found",
              "limits.memory_bytes 1 is below the smallest limit, 1048576",
              "100% done", "h\u00e9llo \u2713", "tab\there\nnewline"]:
        write(out, "grpc", "message", b"\x02" + m.encode())
    write(out, "grpc", "message-bytes", b"\x02" + bytes(range(256)))
    for e in [b"100%25 done", b"h%C3%A9llo", b"%", b"%4", b"%zz", b"%e2%9c%93",
              b"50%%41"]:
        write(out, "grpc", "message-decode", b"\x03" + e)
    write(out, "grpc", "status", b"\x04" + struct.pack(
        ">IIII", 404, 503, 8, 0xffffffff))
    text = b"gzip me, gzip me, gzip me " * 40
    z = gzip_bytes(text)
    for cap, split in [(len(text), 128), (len(text) - 1, 7), (0, 0),
                       (65535, 255)]:
        write(out, "grpc", "gunzip", b"\x05" + struct.pack(">HB", cap, split)
              + z)
    write(out, "grpc", "gunzip-bomb", b"\x05" + struct.pack(">HB", 4096, 9)
          + gzip_bytes(bytes(1 << 20)))
    write(out, "grpc", "gunzip-cut", b"\x05\xff\xff\x80" + z[:-5])
    write(out, "grpc", "gunzip-trailing", b"\x05\xff\xff\x80" + z + b"\x1f")
    write(out, "grpc", "gunzip-empty", b"\x05\x00\x00\x00" + gzip_bytes(b""))


LOG_KEYS = ["event", "peer", "cn", "method", "job", "status", "error",
            "duration", "msg", "signal", "addr", "count", "dir",
            "max_output_bytes"]


def log_input(pairs, level=1, size=0, sec=1764633600, nsec=123456789):
    """fuzz_log.c's input: level, buffer size (0: jw_log's), time, pairs;
    a value of None is the NULL that skips its pair."""
    b = struct.pack(">BHQI", level, size, sec, nsec)
    for k, v in pairs:
        v = b"\xff" if v is None else (v.encode() if isinstance(v, str) else v)
        b += bytes([LOG_KEYS.index(k)]) + v + b"\x00"
    return b


def log_seeds(out):
    def rpc(cn="alice", method="Start", job=None, status="OK",
            error=None):
        return [("event", "rpc"), ("peer", "127.0.0.1:54321"), ("cn", cn),
                ("method", method), ("job", job), ("status", status),
                ("duration", "0.123ms"), ("error", error)]
    write(out, "log", "rpc", log_input(rpc(job="6f1c2a9e0b7d4c3e8a5f1d2b")))
    write(out, "log", "rpc-error", log_input(rpc(
        status="INVALID_ARGUMENT", error='env[0] "a\x01" is not KEY=VALUE')))
    write(out, "log", "listening", log_input([
        ("event", "listening"), ("addr", "127.0.0.1:3000"),
        ("dir", "/var/lib/teleportd")]))
    write(out, "log", "signal", log_input([
        ("event", "signal"), ("signal", "Terminated"),
        ("msg", "stopping jobs")], level=2))
    # What the issue saw: an unknown method's path of ~1953 bytes, a CN of
    # ~1966 with a 4000-byte path; lengths all around the line's edge.
    for n in (1953, 2000, 2039, 2047, 2048, 4000):
        write(out, "log", "path", log_input(rpc(
            method="x" * n, status="UNIMPLEMENTED", error="unknown method")))
    write(out, "log", "cn-path", log_input(rpc(cn="c" * 1966,
                                                method="p" * 4000)))
    # Values that need quotes and escapes, UTF-8 and bytes that are not.
    for v in ["", "two words", 'say "hi"', "back\\slash", "a\nb\tc",
              "\x1b[31mred", "h\u00e9llo \u20ac", "\u20ac" * 100]:
        write(out, "log", "value", log_input(rpc(cn=v)))
    for v in [b"\xff\xfe", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80",
              b"\xf4\x90\x80\x80", bytes(range(1, 256))]:
        write(out, "log", "bytes", log_input(rpc(cn=v)))
    # Around the value cap, escaped values over the line, small buffers,
    # more pairs than a line takes, times far from now.
    for n in (255, 256, 257, 260):
        write(out, "log", "cap", log_input(rpc(error="e" * n)))
    write(out, "log", "escaped", log_input(rpc(
        cn="\x01" * 300, method="\x01" * 300, error="\x01" * 300)))
    for size in (1, 5, 6, 7, 40, 100, 300):
        write(out, "log", "size", log_input(rpc(), size=size))
    write(out, "log", "many", log_input([("count", str(i))
                                          for i in range(40)]))
    for sec in (0, (1 << 63) - 1, 1 << 62, 253402300799):
        write(out, "log", "time", log_input(rpc(), sec=sec, level=3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stamp")
    a = ap.parse_args()
    pb = load_pb(a.proto)
    reqs = requests(pb)
    server_seeds(a.out, reqs)
    request_seeds(a.out, reqs)
    grpc_seeds(a.out)
    log_seeds(a.out)
    if a.stamp:
        with open(a.stamp, "w") as f:
            f.write("ok\n")


if __name__ == "__main__":
    main()
