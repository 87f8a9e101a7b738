"""What the Python end-to-end suites (test_cgroups.py, test_durable.py)
share: the ok/FAIL log, a temp dir with certificates and grpcio stubs
generated from proto/jobworker.proto, and a real teleportd on 127.0.0.1
whose port is read from its listening line.

init() sets TMP, CERTS, pb and pb_grpc; every teleportd a Server starts
is in `started`, for the suite's main to kill by its Popen at the end.
"""

import os
import re
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

# Where the tree and the build are: the interop tests' helpers say it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "interop"))
from interop_common import SOURCE_ROOT, TELEPORTD, load_stubs  # noqa: E402,F401

TMP = None
CERTS = None
pb = None
pb_grpc = None
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


def _certs_dir():
    d = os.environ.get("JW_TEST_CERTS")
    if d and os.path.exists(os.path.join(d, "bob.key")):
        return d
    d = os.path.join(TMP, "certs")
    subprocess.run([os.path.join(SOURCE_ROOT, "tests", "make-certs.sh"), d],
                   check=True, stdout=subprocess.DEVNULL)
    return d


def init(prefix):
    """Makes the suite's temp dir, stubs and certificates; returns
    (TMP, CERTS, pb, pb_grpc)."""
    global TMP, CERTS, pb, pb_grpc
    TMP = tempfile.mkdtemp(prefix=prefix)
    pb, pb_grpc = load_stubs()
    CERTS = _certs_dir()
    return TMP, CERTS, pb, pb_grpc


def channel(port, who):
    """A TLS channel to 127.0.0.1:port with the certificate of who."""
    creds = grpc.ssl_channel_credentials(
        open(os.path.join(CERTS, "ca.cert"), "rb").read(),
        open(os.path.join(CERTS, who + ".key"), "rb").read(),
        open(os.path.join(CERTS, who + ".cert"), "rb").read())
    return grpc.secure_channel("127.0.0.1:%d" % port, creds)


class Server:
    """One teleportd, its log in TMP, port read from its listening line;
    stub is alice's client, bob bob's. wait_s bounds the start and the
    stop."""

    def __init__(self, data_dir, name, extra=(), wait_s=30):
        self.wait_s = wait_s
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
        deadline = time.monotonic() + wait_s
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"event=listening\b.*\bport=(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("teleportd did not start:\n" + self.text())
        self.channel = channel(self.port, "alice")
        self.stub = pb_grpc.JobWorkerStub(self.channel)
        self.bob_channel = channel(self.port, "bob")
        self.bob = pb_grpc.JobWorkerStub(self.bob_channel)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        self.channel.close()
        self.bob_channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def kill_started():
    """Kills every teleportd a Server started that still runs."""
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()
