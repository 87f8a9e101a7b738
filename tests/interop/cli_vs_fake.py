#!/usr/bin/python3
"""The teleport CLI against a real gRPC server that is not teleportd.

A small JobWorker server on Python's grpcio (Debian's python3-grpcio),
generated at test time from proto/jobworker.proto, serves canned jobs over
mutual TLS with the test certificates: finished, killed, running and
held-open jobs, a stream of several MiB split between stdout and stderr, a
stream that fails midway, and ids that fail with every gRPC status code.
The CLI must behave against it exactly as it does against teleportd:
the same output, the same one-line errors, the same exit codes.

Run with /usr/bin/python3 (the python3 first on PATH may lack grpcio).
Environment: JW_BUILD_ROOT (the meson build dir), JW_SOURCE_ROOT,
JW_TEST_CERTS (ca.cert, server.*, alice.*, bob.*; made here with
certs/jw-certs when absent). Prints what passed and failed, then
"N passed, N failed"; exits 1 on any failure.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent import futures

SRC = os.environ.get("JW_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("JW_BUILD_ROOT") or os.path.join(SRC, "build")
TELEPORT = os.path.join(BUILD, "client", "teleport")
TMP = tempfile.mkdtemp(prefix="jw-cli-fake-")

# The fake server's handshake failures are the point of some checks; the
# grpc core library need not log them.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
try:
    import grpc
except ImportError:
    print("cli_vs_fake: /usr/bin/python3 has no grpc module: "
          "apt-get install python3-grpcio python3-grpc-tools (make deps)")
    sys.exit(1)


def gen_stubs():
    """Generates the Python stubs from the wire contract into TMP."""
    out = os.path.join(TMP, "stubs")
    os.makedirs(out)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc",
         "--proto_path=" + os.path.join(SRC, "proto"),
         "--python_out=" + out, "--grpc_python_out=" + out,
         os.path.join(SRC, "proto", "jobworker.proto")],
        check=True)
    sys.path.insert(0, out)


gen_stubs()
import jobworker_pb2 as pb  # noqa: E402
import jobworker_pb2_grpc as pbrpc  # noqa: E402


def test_certs():
    """The run's certificates, or a fresh set when the harness made none."""
    d = os.environ.get("JW_TEST_CERTS")
    if d and os.path.isfile(os.path.join(d, "bob.key")):
        return d
    d = os.path.join(TMP, "certs")
    tool = os.environ.get("JW_CERTS_TOOL") or os.path.join(
        SRC, "certs", "jw-certs")
    for args in (["init"], ["server"], ["client", "alice"],
                 ["client", "bob"]):
        subprocess.run([tool, "--dir", d] + args, check=True,
                       stdout=subprocess.DEVNULL)
    return d


CERTS = test_certs()


def other_ca():
    """A second CA and a client it signed: trusted by nobody here."""
    d = os.path.join(TMP, "other")
    os.makedirs(d)
    ossl = ["openssl"]

    def run(*a):
        subprocess.run(ossl + list(a), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/ca.key",
        "-out", d + "/ca.cert", "-subj", "/CN=other test CA", "-days", "2")
    run("req", "-new", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", d + "/mallory.key",
        "-out", d + "/mallory.csr", "-subj", "/CN=mallory")
    with open(d + "/ext", "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", d + "/mallory.csr", "-CA", d + "/ca.cert",
        "-CAkey", d + "/ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", d + "/ext", "-out", d + "/mallory.cert")
    return d


# ---- the fake server ---------------------------------------------------

OUT, ERR = pb.OUTPUT_STREAM_STDOUT, pb.OUTPUT_STREAM_STDERR
T0 = 1700000000 * 10**9  # 2023-11-14T22:13:20Z


class Job:
    def __init__(self, jid, owner, command, args, state, pid=0, exit_code=0,
                 sig=0, started=T0, ended=0, chunks=(), hold=False,
                 fail_after=None):
        self.id, self.owner, self.command, self.args = jid, owner, command, \
            list(args)
        self.state, self.pid, self.exit_code, self.signal = state, pid, \
            exit_code, sig
        self.started, self.ended = started, ended
        self.chunks = list(chunks)
        self.hold = hold  # stream the chunks, then wait for a Stop
        self.fail_after = fail_after  # (code, message) after the chunks
        self.stopped = threading.Event()

    def status(self):
        return pb.JobStatus(
            id=self.id, owner=self.owner, command=self.command,
            args=self.args, state=self.state, pid=self.pid,
            exit_code=self.exit_code, signal=self.signal,
            started_at_unix_nano=self.started,
            ended_at_unix_nano=self.ended,
            output_bytes=sum(len(d) for _, d in self.chunks))


def big_chunks():
    """Several MiB of random bytes, 64 KiB chunks, every fifth on stderr."""
    rnd = random.Random(20240501)
    chunks = []
    for i in range(96):  # 6 MiB
        chunks.append((ERR if i % 5 == 4 else OUT, rnd.randbytes(65536)))
    return chunks


ID_DONE = "0123456789abcdef0123456789abcdef"
ID_KILLED = "deadbeefdeadbeefdeadbeefdeadbeef"
ID_HELD = "5eed5eed5eed5eed5eed5eed5eed5eed"
ID_BIG = "b16b16b16b16b16b16b16b16b16b16b1"
ID_MIDFAIL = "fa11fa11fa11fa11fa11fa11fa11fa11"
ID_BOB = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
BIG = big_chunks()


class FakeWorker(pbrpc.JobWorkerServicer):
    def __init__(self):
        self.lock = threading.Lock()
        self.jobs = {}
        self.requests = []
        self.cancelled_streams = 0
        for job in [
            Job(ID_DONE, "alice", "echo", ["hello world", "it's"],
                pb.JOB_STATE_EXITED, pid=4242, started=T0,
                ended=T0 + 1234000000,
                chunks=[(OUT, b"hello world it's\n"), (ERR, b"a warning\n"),
                        (OUT, b"bye\n")]),
            Job(ID_KILLED, "alice", "sleep", ["100"], pb.JOB_STATE_SIGNALED,
                pid=4343, sig=9, started=T0 + 60 * 10**9,
                ended=T0 + 183 * 10**9),
            Job(ID_BIG, "alice", "cat", ["/data/big"], pb.JOB_STATE_EXITED,
                pid=4444, started=T0 + 120 * 10**9,
                ended=T0 + 125 * 10**9, chunks=BIG),
            Job(ID_MIDFAIL, "alice", "flaky", [], pb.JOB_STATE_EXITED,
                pid=4545, started=T0 + 180 * 10**9,
                ended=T0 + 181 * 10**9, chunks=[(OUT, b"partial\n")],
                fail_after=(grpc.StatusCode.INTERNAL, "disk on fire")),
            Job(ID_HELD, "alice", "tail", ["-f", "/var/log/syslog"],
                pb.JOB_STATE_RUNNING, pid=4646, started=T0 + 240 * 10**9,
                chunks=[(OUT, b"tick\n")], hold=True),
            Job(ID_BOB, "bob", "whoami", [], pb.JOB_STATE_EXITED, pid=4747,
                started=T0 + 300 * 10**9, ended=T0 + 301 * 10**9,
                chunks=[(OUT, b"bob\n")]),
        ]:
            self.jobs[job.id] = job

    @staticmethod
    def caller(context):
        cn = context.auth_context().get("x509_common_name")
        return cn[0].decode() if cn else None

    def lookup(self, jid, context):
        """The caller's job jid, or aborts as teleportd would."""
        if jid.startswith("fail-"):
            name = jid[5:]
            code = grpc.StatusCode[name]
            context.abort(code, "canned %s: \u00fcber 100%% sure" % name)
        with self.lock:
            job = self.jobs.get(jid)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "job %s not found" % jid)
        if job.owner != self.caller(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "job %s belongs to another client" % jid)
        return job

    def Start(self, request, context):
        cn = self.caller(context)
        with self.lock:
            self.requests.append(request)
        cmd, args = request.command, list(request.args)
        if cmd == "":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "command is empty")
        if cmd == "missing-cmd":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          'cannot start "missing-cmd": command not found')
        now = time.time_ns()
        job = Job(uuid.uuid4().hex, cn, cmd, args, pb.JOB_STATE_EXITED,
                  pid=5000 + len(self.requests), started=now, ended=now + 1)
        if cmd == "fake-echo-request":
            body = json.dumps({"command": cmd, "args": args,
                               "env": list(request.env),
                               "working_dir": request.working_dir})
            job.chunks = [(OUT, body.encode())]
        elif cmd == "fake-exit":
            job.exit_code = int(args[0])
            job.chunks = [(OUT, b"exiting\n"), (ERR, b"oops\n")]
        elif cmd == "fake-kill":
            job.state, job.signal = pb.JOB_STATE_SIGNALED, int(args[0])
        elif cmd == "fake-hold":
            job.state, job.ended, job.hold = pb.JOB_STATE_RUNNING, 0, True
            job.chunks = [(OUT, b"tick\n")]
        else:
            job.chunks = [(OUT, ("ran %s\n" % cmd).encode())]
        with self.lock:
            self.jobs[job.id] = job
        st = job.status()
        st.state, st.ended_at_unix_nano, st.exit_code, st.signal = \
            pb.JOB_STATE_RUNNING, 0, 0, 0
        return st

    def Status(self, request, context):
        return self.lookup(request.id, context).status()

    def Stop(self, request, context):
        job = self.lookup(request.id, context)
        if job.state == pb.JOB_STATE_RUNNING:
            job.state, job.signal, job.ended = pb.JOB_STATE_STOPPED, 15, \
                time.time_ns()
            job.stopped.set()
        return job.status()

    def GetOutput(self, request, context):
        job = self.lookup(request.id, context)
        if job.hold:
            # grpc runs this when the call ends for any reason: for a held
            # stream before its job was stopped, that is the client leaving.
            def gone():
                if not job.stopped.is_set():
                    with self.lock:
                        self.cancelled_streams += 1
            context.add_callback(gone)
        for stream, data in job.chunks:
            yield pb.JobOutput(data=data, stream=stream)
        if job.fail_after:
            context.abort(*job.fail_after)
        if job.hold:
            while context.is_active() and not job.stopped.wait(0.05):
                pass

    def List(self, request, context):
        cn = self.caller(context)
        with self.lock:
            mine = [j for j in self.jobs.values() if j.owner == cn]
        mine.sort(key=lambda j: j.started)
        return pb.ListResponse(jobs=[j.status() for j in mine])


def read(name):
    with open(os.path.join(CERTS, name), "rb") as f:
        return f.read()


def start_fake():
    worker = FakeWorker()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pbrpc.add_JobWorkerServicer_to_server(worker, server)
    creds = grpc.ssl_server_credentials(
        [(read("server.key"), read("server.cert"))],
        root_certificates=read("ca.cert"), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, worker, port


# ---- the checks --------------------------------------------------------

passed, failed = [], []


def check(name, ok, detail=""):
    if ok:
        passed.append(name)
        print("ok   %s" % name)
    else:
        failed.append(name)
        print("FAIL %s%s" % (name, ("\n     " + detail) if detail else ""))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def base_env(user="alice"):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TELEPORT_")}
    env.update(TZ="UTC",
               TELEPORT_CACERT=os.path.join(CERTS, "ca.cert"),
               TELEPORT_CERT=os.path.join(CERTS, user + ".cert"),
               TELEPORT_KEY=os.path.join(CERTS, user + ".key"),
               TELEPORT_ADDR=ADDR)
    return env


def tp(*args, user="alice", env=None, drop=(), timeout=60):
    e = base_env(user)
    e.update(env or {})
    for k in drop:
        e.pop(k, None)
    return subprocess.run([TELEPORT] + list(args), env=e,
                          capture_output=True, timeout=timeout)


def one_line_error(p, needle, code=1):
    """Exit code, empty stdout, and stderr of one line containing needle."""
    err = p.stderr.decode(errors="replace")
    ok = (p.returncode == code and p.stdout == b"" and
          err.startswith("teleport") and err.count("\n") == 1 and
          needle in err)
    return ok, "exit %d, stdout %r, stderr %r (wanted %r)" % (
        p.returncode, p.stdout[:200], err, needle)


def usage_error(p, needle):
    err = p.stderr.decode(errors="replace")
    ok = (p.returncode == 2 and needle in err and "--help" in err and
          p.stdout == b"")
    return ok, "exit %d, stderr %r (wanted %r)" % (p.returncode, err, needle)


def test_usage():
    p = tp("--version")
    check("--version", p.returncode == 0 and
          re.match(rb"^teleport \d+\.\d+\.\d+\n$", p.stdout), repr(p))
    p = tp("--help")
    text = p.stdout.decode()
    check("--help names every command, flag, env var and exit code",
          p.returncode == 0 and all(w in text for w in (
              "start", "status", "output", "stop", "list", "--cacert",
              "--cert", "--key", "--addr", "TELEPORT_CACERT",
              "TELEPORT_ADDR", "Exit status", "130")), text)
    for cmd, words in (("start", ("-l", "-e", "-C", "--")),
                       ("output", ("Ctrl-C", "keeps running")),
                       ("status", ("--json",)), ("list", ("--json",)),
                       ("stop", ("SIGTERM",))):
        p = tp(cmd, "--help")
        check("%s --help" % cmd, p.returncode == 0 and
              all(w in p.stdout.decode() for w in words) and
              "Exit status" in p.stdout.decode(), repr(p))
    check("help start == start --help",
          tp("help", "start").stdout == tp("start", "--help").stdout)
    p = tp()
    check("no command: exit 2 and the help on stderr",
          p.returncode == 2 and b"Usage" in p.stderr and p.stdout == b"")
    check("unknown command", *usage_error(tp("frobnicate"),
                                          "unknown command 'frobnicate'"))
    check("unknown global flag", *usage_error(tp("--bogus", "list"),
                                              "unknown option '--bogus'"))
    check("unknown command flag", *usage_error(tp("status", "-x", ID_DONE),
                                               "unknown option '-x'"))
    check("flag without value", *usage_error(tp("list", "--addr"),
                                             "'--addr' needs a value"))
    check("status without ID", *usage_error(tp("status"), "missing job ID"))
    check("output without ID", *usage_error(tp("output"), "missing job ID"))
    check("stop without ID", *usage_error(tp("stop"), "missing job ID"))
    check("start without command",
          *usage_error(tp("start", "-l"), "missing the command"))
    check("status with two IDs",
          *usage_error(tp("status", "a", "b"), "unexpected argument 'b'"))
    check("-e without =", *usage_error(tp("start", "-e", "FOO", "true"),
                                       "KEY=VALUE"))
    for flag, value in (("--memory", "nan"), ("--memory", "1e3M"),
                        ("--io-write", "0x10"), ("--cpus", "inf"),
                        ("--cpus", "1e2")):
        check("%s %s refused, naming the flag" % (flag, value),
              *usage_error(tp("start", flag, value, "true"),
                           "%s takes" % flag))
    p = tp("list", drop=("TELEPORT_CACERT",))
    check("missing cacert named with flag and env var",
          p.returncode == 2 and
          b"missing --cacert (or TELEPORT_CACERT)" in p.stderr, repr(p))
    p = tp("list", drop=("TELEPORT_CERT", "TELEPORT_KEY"))
    check("every missing setting named",
          p.returncode == 2 and b"--cert (or TELEPORT_CERT)" in p.stderr and
          b"--key (or TELEPORT_KEY)" in p.stderr and
          p.stderr.count(b"\n") == 1, repr(p))
    check("bad port", *one_line_error(tp("list", "--addr", "127.0.0.1:99999"),
                                      "invalid address", code=2))


def test_status_and_list():
    p = tp("status", ID_DONE)
    out = p.stdout.decode()
    check("status: human summary", p.returncode == 0 and all(s in out for s in (
        "ID:        " + ID_DONE, "Owner:     alice",
        "Command:   echo 'hello world' 'it'\\''s'",
        "State:     EXITED (exit code 0)", "PID:       4242",
        "Started:   2023-11-14T22:13:20+00:00", "Duration:  1.234s",
        "Output:    31 bytes")), out)
    p = tp("status", "--json", ID_DONE)
    try:
        js = json.loads(p.stdout)
    except ValueError:
        js = None
    want = {
        "id": ID_DONE, "owner": "alice", "command": "echo",
        "args": ["hello world", "it's"], "state": "EXITED", "pid": 4242,
        "exit_code": 0, "signal": 0, "started_at_unix_nano": T0,
        "ended_at_unix_nano": T0 + 1234000000, "output_bytes": 31}
    # Fields the contract grows later (limits, usage) may follow; these
    # must be there, exactly.
    check("status --json: the JobStatus fields", p.returncode == 0 and
          isinstance(js, dict) and
          {k: js.get(k) for k in want} == want, repr(p.stdout))
    p = tp("status", ID_KILLED)
    check("status: killed by a signal", p.returncode == 0 and
          b"SIGNALED (killed by SIGKILL, signal 9)" in p.stdout and
          b"Duration:  2m03s" in p.stdout, p.stdout.decode())
    p = tp("status", ID_HELD, "--json")
    js = json.loads(p.stdout) if p.returncode == 0 else {}
    check("status --json after the ID; running job has ended 0",
          js.get("state") == "RUNNING" and js.get("ended_at_unix_nano") == 0,
          repr(p))
    p = tp("status", ID_HELD)
    check("status: running job says so", b"(still running)" in p.stdout,
          p.stdout.decode())

    p = tp("list", "--json")
    try:
        js = json.loads(p.stdout)
    except ValueError:
        js = None
    ids = [j["id"] for j in js] if isinstance(js, list) else []
    check("list --json: my jobs only, oldest first",
          p.returncode == 0 and ids[:5] == [ID_DONE, ID_KILLED, ID_BIG,
                                            ID_MIDFAIL, ID_HELD] and
          ID_BOB not in ids, repr(p.stdout[:300]))
    p = tp("list")
    lines = p.stdout.decode().splitlines()
    check("list: header and one row per job, newest last",
          p.returncode == 0 and lines[0].split() == [
              "ID", "STATE", "EXIT", "PID", "STARTED", "DURATION",
              "COMMAND"] and lines[1].startswith(ID_DONE) and
          "EXITED" in lines[1] and "echo 'hello world'" in lines[1] and
          "SIGKILL" in lines[2] and "2023-11-14 22:14:20" in lines[2] and
          ID_BOB not in p.stdout.decode(), p.stdout.decode())
    p = tp("list", "--json", user="bob")
    js = json.loads(p.stdout) if p.returncode == 0 else None
    check("list --json as bob", isinstance(js, list) and
          [j["id"] for j in js] == [ID_BOB], repr(p))


def test_output():
    p = tp("output", ID_DONE)
    check("output: stdout and stderr kept apart",
          p.returncode == 0 and p.stdout == b"hello world it's\nbye\n" and
          p.stderr == b"a warning\n", repr(p))
    path = os.path.join(TMP, "big.out")
    with open(path, "wb") as f:
        e = base_env()
        p = subprocess.run([TELEPORT, "output", ID_BIG], env=e, stdout=f,
                           stderr=subprocess.PIPE, timeout=120)
    with open(path, "rb") as f:
        got = f.read()
    want_out = b"".join(d for s, d in BIG if s == OUT)
    want_err = b"".join(d for s, d in BIG if s == ERR)
    check("output: %d MiB stream byte-identical, stderr apart" %
          (sum(len(d) for _, d in BIG) >> 20),
          p.returncode == 0 and got == want_out and p.stderr == want_err,
          "exit %d, %d/%d stdout bytes, %d/%d stderr bytes" % (
              p.returncode, len(got), len(want_out), len(p.stderr),
              len(want_err)))
    p = tp("output", ID_MIDFAIL)
    err = p.stderr.decode()
    check("output: a stream failing midway keeps its bytes and says why",
          p.returncode == 1 and p.stdout == b"partial\n" and
          err == "teleport: server error: INTERNAL: disk on fire\n", repr(p))


def test_start():
    p = tp("start", "fake-echo-request", "-la", "--foo", "--", "x")
    jid = p.stdout.decode().strip()
    check("start: prints the id alone", p.returncode == 0 and
          re.fullmatch(r"[0-9a-f]{32}\n", p.stdout.decode()) and
          p.stderr == b"", repr(p))
    req = json.loads(tp("output", jid).stdout)
    check("start: everything after the command belongs to the job",
          req["args"] == ["-la", "--foo", "--", "x"], repr(req))
    p = tp("start", "-e", "A=1", "--env", "B=x=y", "-C", "/srv/app",
           "--addr", ADDR, "--", "fake-echo-request", "-e", "C=2")
    req = json.loads(tp("output", p.stdout.decode().strip()).stdout)
    check("start: -e, -C, connection flags after the command name, --",
          p.returncode == 0 and req == {
              "command": "fake-echo-request", "args": ["-e", "C=2"],
              "env": ["A=1", "B=x=y"], "working_dir": "/srv/app"},
          repr(req))
    weird = ["tab\there", 'quote " and \\ backslash', "new\nline",
             "\u00fcnic\u00f8de \u2603 \U0001f600", "ctl \x01\x1f\x7f", ""]
    p = tp("start", "fake-echo-request", *weird)
    p = tp("status", "--json", p.stdout.decode().strip())
    try:
        js = json.loads(p.stdout)
    except ValueError:
        js = {}
    check("status --json: arguments with quotes, control bytes, unicode",
          js.get("args") == weird, repr(p.stdout))
    p = tp("start", "--json", "fake-exit", "0")
    js = json.loads(p.stdout) if p.returncode == 0 else {}
    check("start --json prints the status", js.get("state") == "RUNNING" and
          js.get("command") == "fake-exit", repr(p))
    p = tp("start", "-l", "fake-exit", "3")
    check("start -l: output streamed, exit code of the job",
          p.returncode == 3 and p.stdout == b"exiting\n" and
          p.stderr == b"oops\n", repr(p))
    p = tp("start", "-l", "fake-exit", "0")
    check("start -l: exit 0", p.returncode == 0, repr(p))
    p = tp("start", "-l", "fake-kill", "9")
    check("start -l: killed by SIGKILL exits 137", p.returncode == 137,
          repr(p))
    check("start: refused command",
          *one_line_error(tp("start", "missing-cmd"),
                          'teleport: cannot start "missing-cmd": '
                          'command not found'))


def test_stop():
    p = tp("start", "fake-hold")
    jid = p.stdout.decode().strip()
    p = tp("stop", jid)
    check("stop: prints the final state", p.returncode == 0 and
          b"State:     STOPPED (ended by SIGTERM, signal 15)" in p.stdout,
          repr(p))
    p = tp("stop", "--json", jid)
    js = json.loads(p.stdout) if p.returncode == 0 else {}
    check("stop again --json: still the final state",
          js.get("state") == "STOPPED" and js.get("signal") == 15, repr(p))


def wait_for(pred, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_detach_and_pipe(worker):
    for label, args in (("output", ["output", ID_HELD]),
                        ("start -l", ["start", "-l", "fake-hold"])):
        before = worker.cancelled_streams
        proc = subprocess.Popen([TELEPORT] + args, env=base_env(),
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        # A CLI that never prints must not hang the test on the read.
        watchdog = threading.Timer(30, proc.kill)
        watchdog.start()
        first = proc.stdout.read(5)
        watchdog.cancel()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err = err.decode()
        jid = ID_HELD if label == "output" else \
            re.search(r"job ([0-9a-f]{32}) keeps", err or "x")
        jid = jid if isinstance(jid, str) else (jid.group(1) if jid else "?")
        check("%s: Ctrl-C detaches with 130 and a note" % label,
              first == b"tick\n" and proc.returncode == 130 and
              ("detached; job %s keeps running" % jid) in err and
              err.count("\n") == 1, "exit %s, stderr %r" % (
                  proc.returncode, err))
        check("%s: the server saw the stream cancelled" % label,
              wait_for(lambda: worker.cancelled_streams > before))
        p = tp("status", "--json", jid)
        check("%s: the job keeps running after Ctrl-C" % label,
              p.returncode == 0 and
              json.loads(p.stdout)["state"] == "RUNNING", repr(p))

    proc = subprocess.Popen([TELEPORT, "output", ID_BIG], env=base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    proc.stdout.read(1000)
    proc.stdout.close()
    try:
        err = proc.stderr.read()
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    watchdog.cancel()
    check("output | head: quiet exit 141 when the reader goes away",
          proc.returncode == 141 and err == b"",
          "exit %s, stderr %r" % (proc.returncode, err))


EXPECTED = {
    "CANCELLED": "the Status call was cancelled",
    "UNKNOWN": "server error: UNKNOWN: canned UNKNOWN: \u00fcber 100% sure",
    "INVALID_ARGUMENT": "the server rejected the request: canned",
    "DEADLINE_EXCEEDED": "did not answer Status in time",
    "NOT_FOUND": "job fail-NOT_FOUND not found",
    "ALREADY_EXISTS": "server error: ALREADY_EXISTS: canned",
    "PERMISSION_DENIED": "job fail-PERMISSION_DENIED belongs to another "
                         "client",
    "RESOURCE_EXHAUSTED": "the server is at a limit: canned",
    "FAILED_PRECONDITION": "server error: FAILED_PRECONDITION: canned",
    "ABORTED": "server error: ABORTED: canned",
    "OUT_OF_RANGE": "server error: OUT_OF_RANGE: canned",
    "UNIMPLEMENTED": "does not implement Status",
    "INTERNAL": "server error: INTERNAL: canned",
    "UNAVAILABLE": "is unavailable: canned",
    "DATA_LOSS": "server error: DATA_LOSS: canned",
    "UNAUTHENTICATED": "did not accept the identity in",
}


def test_errors(oca):
    for name, needle in EXPECTED.items():
        p = tp("status", "fail-" + name)
        check("status: %s" % name, *one_line_error(p, needle))
    for cmd in ("output", "stop"):
        check("%s: NOT_FOUND" % cmd, *one_line_error(
            tp(cmd, "fail-NOT_FOUND"), "job fail-NOT_FOUND not found"))
    # The server's UNAVAILABLE on a connection that stays up is its answer:
    # said once, not followed by reconnects.
    check("output: UNAVAILABLE", *one_line_error(
        tp("output", "fail-UNAVAILABLE"), "is unavailable: canned"))
    for cmd in ("status", "output", "stop"):
        check("%s: another client's job" % cmd, *one_line_error(
            tp(cmd, ID_BOB), "job %s belongs to another client" % ID_BOB))
    check("unknown id", *one_line_error(tp("status", "f" * 32),
                                        "job %s not found" % ("f" * 32)))

    port = free_port()
    check("server down: connection refused at ADDR",
          *one_line_error(tp("list", "--addr", "127.0.0.1:%d" % port),
                          "connection refused at 127.0.0.1:%d: is teleportd "
                          "running?" % port))
    check("wrong CA: not signed by CACERT",
          *one_line_error(tp("list", "--cacert", oca + "/ca.cert"),
                          "the server's certificate is not signed by %s" %
                          (oca + "/ca.cert")))
    check("client certificate from another CA: refused",
          *one_line_error(tp("list", "--cert", oca + "/mallory.cert",
                             "--key", oca + "/mallory.key"),
                          "refused this client certificate"))
    check("missing key file named",
          *one_line_error(tp("list", "--key", TMP + "/nope.key"),
                          "cannot read the client key %s/nope.key (--key): "
                          "No such file or directory" % TMP))
    check("key of another certificate",
          *one_line_error(tp("list", "--key",
                             os.path.join(CERTS, "bob.key")), "key"))
    fake_port = ADDR.rsplit(":", 1)[1]
    check("--addr localhost:PORT (a name, tried on each address)",
          tp("list", "--addr", "localhost:" + fake_port).returncode == 0)
    check("--addr :PORT means 127.0.0.1",
          tp("list", "--addr", ":" + fake_port).returncode == 0)
    # Refused where the host has IPv6 on lo, unreachable where it has not.
    check("--addr [::1]:PORT kept as an IPv6 address",
          *one_line_error(tp("list", "--addr", "[::1]:%d" % port),
                          " [::1]:%d" % port))
    check("flags win over the environment",
          tp("list", "--addr", ADDR,
             env={"TELEPORT_ADDR": "127.0.0.1:%d" % port}).returncode == 0)


ADDR = None


def main():
    global ADDR
    if not os.access(TELEPORT, os.X_OK):
        print("cli_vs_fake: %s is not built" % TELEPORT)
        return 1
    oca = other_ca()
    server, worker, port = start_fake()
    ADDR = "127.0.0.1:%d" % port
    try:
        for t in (test_usage, test_status_and_list, test_output, test_start,
                  test_stop, lambda: test_detach_and_pipe(worker),
                  lambda: test_errors(oca)):
            try:
                t()
            except Exception:
                check(getattr(t, "__name__", "test") + " raised", False,
                      traceback.format_exc())
    finally:
        server.stop(0)
        shutil.rmtree(TMP, ignore_errors=True)
    print()
    if failed:
        print("failed: " + ", ".join(failed))
    print("%d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
