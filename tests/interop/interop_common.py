"""Shared helpers for the interop tests (tests/interop/test_*.py).

Everything here stays on loopback, bounds every wait, and cleans up what
it started: teleportd processes are killed by PID, temp dirs removed.

The tests run on Debian's /usr/bin/python3 (python3-grpcio,
python3-grpc-tools, python3-h2). When started by another interpreter
without grpc, reexec() switches to /usr/bin/python3.
"""

import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

SYSTEM_PYTHON = "/usr/bin/python3"

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("JW_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("JW_BUILD_ROOT") or os.path.join(
    SOURCE_ROOT, "build")
TELEPORTD = os.path.join(BUILD_ROOT, "server", "teleportd")

# The HTTP/2 client connection preface followed by an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00" + \
    b"\x00\x00\x00\x00"

# A SETTINGS frame header (not an ACK) on stream 0: 3-byte length (a
# multiple of 6), type 4, flags 0, stream 0.
SETTINGS_RE = re.compile(rb"\x00\x00[\x00-\xff]\x04\x00\x00\x00\x00\x00")


def reexec():
    """Runs this script under /usr/bin/python3 when grpc is missing here."""
    try:
        import grpc  # noqa: F401
        import h2  # noqa: F401
        return
    except ImportError:
        pass
    if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) \
            and os.path.exists(SYSTEM_PYTHON):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    sys.stderr.write("interop: %s has no grpc/h2; install python3-grpcio, "
                     "python3-grpc-tools and python3-h2\n" % sys.executable)
    sys.exit(1)


# ---- certificates --------------------------------------------------------

_certs_tmp = None
_temp_dirs = []


def mktemp(prefix):
    """A temp dir removed at exit at the latest (even on SIGTERM)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(d)
    return d


def certs_dir():
    """This run's certificates: JW_TEST_CERTS, or made once into a temp dir
    (tests/make-certs.sh) when that is not set or not there."""
    global _certs_tmp
    d = os.environ.get("JW_TEST_CERTS")
    if d and os.path.exists(os.path.join(d, "alice.key")):
        return d
    if _certs_tmp is None:
        _certs_tmp = tempfile.mkdtemp(prefix="jw-interop-certs-")
        out = os.path.join(_certs_tmp, "c")
        subprocess.run([os.path.join(SOURCE_ROOT, "tests", "make-certs.sh"),
                        out], check=True, stdout=subprocess.DEVNULL,
                       timeout=120)
    return os.path.join(_certs_tmp, "c")


def cert(name):
    return os.path.join(certs_dir(), name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def openssl(*args, cwd=None, inp=None):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, input=inp,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" %
                           (" ".join(args), r.stderr.decode(errors="replace")))
    return r.stdout


def make_extra_certs(d):
    """Makes throwaway certificates (RSA 2048) in d:
    other-ca.cert/.key, a client "alice" signed by that other CA
    (otherca-alice), a serverAuth-only client "alice" signed by the test CA
    (serverauth-alice), a clientAuth certificate with no CN signed by the
    test CA (nocn), and a key that matches no certificate (stray.key).
    Returns a dict name -> (cert, key)."""
    ca_cert, ca_key = cert("ca.cert"), cert("ca.key")
    for k in ("other-ca", "otherca-alice", "serverauth-alice", "nocn",
              "stray"):
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                "rsa_keygen_bits:2048", "-out", os.path.join(d, k + ".key"))
    with open(os.path.join(d, "ca.ext"), "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n"
                "[dn]\nCN = other CA\n"
                "[v3_ca]\nbasicConstraints = critical, CA:TRUE\n"
                "keyUsage = critical, keyCertSign, cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    openssl("req", "-new", "-x509", "-key", "other-ca.key", "-config",
            "ca.ext", "-extensions", "v3_ca", "-days", "2", "-out",
            "other-ca.cert", cwd=d)

    def leaf(name, subj, eku, signer_cert, signer_key):
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = critical, CA:FALSE\n"
                    "keyUsage = critical, digitalSignature, "
                    "keyEncipherment\n"
                    "extendedKeyUsage = %s\n"
                    "subjectKeyIdentifier = hash\n"
                    "authorityKeyIdentifier = keyid\n" % eku)
        openssl("req", "-new", "-key", name + ".key", "-subj", subj, "-out",
                name + ".csr", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", signer_cert,
                "-CAkey", signer_key, "-set_serial",
                "0x" + os.urandom(8).hex(), "-days", "2", "-sha256",
                "-extfile", ext, "-out", name + ".cert", cwd=d)

    leaf("otherca-alice", "/CN=alice", "clientAuth",
         os.path.join(d, "other-ca.cert"), os.path.join(d, "other-ca.key"))
    leaf("serverauth-alice", "/CN=alice", "serverAuth", ca_cert, ca_key)
    leaf("nocn", "/O=jobworker tests/OU=no common name", "clientAuth",
         ca_cert, ca_key)
    return {k: (os.path.join(d, k + ".cert"), os.path.join(d, k + ".key"))
            for k in ("other-ca", "otherca-alice", "serverauth-alice",
                      "nocn", "stray")}


# ---- teleportd -----------------------------------------------------------

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_live_servers = set()


def _kill_live_servers(graceful=True):
    for srv in list(_live_servers):
        srv.cleanup(graceful)


def _on_term(signum, frame):
    # meson's timeout (or a Ctrl-C) must not leave teleportd or its jobs.
    _kill_live_servers(graceful=False)
    cleanup_global()
    sys.stderr.write("interop: killed by signal %d\n" % signum)
    os._exit(1)


class Server:
    """One teleportd on 127.0.0.1 with its own temp data dir; stderr goes
    to a log file read for the `event=listening ... port=N` line."""

    def __init__(self, stop_timeout="2s", extra_args=(), env_extra=None,
                 host="127.0.0.1", wrapper=()):
        # wrapper: a command teleportd runs under, which must exec it in
        # the same process (prlimit, unshare without --fork, sh -c 'exec').
        self.wrapper = list(wrapper)
        self.host = host
        self.tmp = mktemp("jw-interop-srv-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "teleportd.log")
        self.stop_timeout = stop_timeout
        self.extra_args = list(extra_args)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("TELEPORTD_")}
        self.env["JW_INTEROP_MARKER"] = "server-env-must-not-leak"
        if env_extra:
            self.env.update(env_extra)
        self.proc = None
        self.port = None
        self.exit_code = None

    def start(self, timeout=30):
        if not os.access(TELEPORTD, os.X_OK):
            raise RuntimeError("no teleportd binary at %s (JW_BUILD_ROOT=%s)"
                               % (TELEPORTD, BUILD_ROOT))
        hostport = ("[%s]:0" if ":" in self.host else "%s:0") % self.host
        args = [TELEPORTD, "--addr", hostport,
                "--cacert", cert("ca.cert"), "--cert", cert("server.cert"),
                "--key", cert("server.key"), "--data-dir", self.data_dir,
                "--stop-timeout", self.stop_timeout,
                "--log-level", "debug"] + self.extra_args
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.wrapper + args,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log,
                                     env=self.env, cwd=self.tmp)
        _live_servers.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"event=listening\b.*\bport=(\d+)",
                          read(self.log_path))
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = self.log_text()
        self.kill()
        raise RuntimeError("teleportd did not start listening (exit %r); "
                           "log:\n%s" % (self.proc.returncode, log))

    @property
    def addr(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (h, self.port)

    def log_text(self):
        try:
            return read(self.log_path).decode(errors="replace")
        except OSError:
            return ""

    def terminate(self, timeout=20):
        """SIGTERM, then waits; returns (exit code, seconds taken).
        Kills with SIGKILL after timeout (exit code None then)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None, 0.0)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        self.exit_code = rc
        return rc, time.monotonic() - t0

    def kill(self):
        """SIGKILLs teleportd by PID, and then the process group of each of
        its jobs (each job leads its own group), which would otherwise
        outlive it."""
        if self.proc is not None and self.proc.poll() is None:
            jobs = children_of(self.proc.pid)
            try:
                self.proc.kill()
            except OSError:
                pass
            for pid in jobs:
                st = proc_stat(pid)
                if st and st[1] == pid:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def cleanup(self, graceful=True):
        """Stops teleportd and removes what it used. graceful: SIGTERM
        first, so that its own shutdown stops its jobs and removes its
        cgroups (a SIGKILL leaves the cgroup tree of this temporary data
        directory, which no later server removes). A server still running
        after that (10 s), or every one when not graceful, is killed with
        its jobs' groups (kill)."""
        if graceful:
            self.terminate(timeout=10)
        self.kill()
        _live_servers.discard(self)
        try:
            self.log.close()
        except Exception:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- processes (for checking that jobs are gone) -------------------------

def serve_alice_bob(cls, stub_class, **server_args):
    """Starts cls.server, a Server(**server_args), and sets alice's and
    bob's channels to it (cls.alice_chan, cls.bob_chan) and stub_class
    stubs on them (cls.alice, cls.bob): a test class's setUpClass."""
    cls.server = Server(**server_args)
    try:
        cls.server.start()
    except Exception:
        cls.server.cleanup()
        raise
    cls.alice_chan = channel(cls.server.port, "alice")
    cls.bob_chan = channel(cls.server.port, "bob")
    cls.alice = stub_class(cls.alice_chan)
    cls.bob = stub_class(cls.bob_chan)


def proc_stat(pid):
    """(state, pgrp, starttime) of a live process, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[2]), int(rest[19])


def children_of(ppid):
    """PIDs of the live processes whose parent is ppid."""
    kids = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e, "rb") as f:
                s = f.read().decode(errors="replace")
        except OSError:
            continue
        if int(s[s.rindex(")") + 2:].split()[1]) == ppid:
            kids.append(int(e))
    return kids


def kill_groups(pgids):
    """SIGKILLs what is left of the given process groups."""
    for pid, pgid in processes_in_groups(set(pgids)):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(pred, secs=20.0):
    """Polls pred (bounded) until it holds; returns whether it did."""
    deadline = time.monotonic() + secs
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def processes_in_groups(pgids):
    """Live (non-zombie) processes whose process group is one of pgids."""
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        st = proc_stat(int(e))
        if st and st[0] != "Z" and st[1] in pgids:
            found.append((int(e), st[1]))
    return found


# ---- gRPC stubs ----------------------------------------------------------

_stub_dir = None


def load_stubs():
    """Generates Python stubs from proto/jobworker.proto into a temp dir
    (removed at exit) and returns (pb2, pb2_grpc)."""
    global _stub_dir
    if _stub_dir is None:
        _stub_dir = tempfile.mkdtemp(prefix="jw-interop-stubs-")
        r = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc",
             "-I", os.path.join(SOURCE_ROOT, "proto"),
             "--python_out", _stub_dir, "--grpc_python_out", _stub_dir,
             "jobworker.proto"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("grpc_tools.protoc failed:\n" +
                               r.stdout.decode(errors="replace"))
        sys.path.insert(0, _stub_dir)
    import jobworker_pb2
    import jobworker_pb2_grpc
    return jobworker_pb2, jobworker_pb2_grpc


def channel(port, who="alice", cert_key=None, host="127.0.0.1"):
    """A gRPC channel to host:port as client `who` (alice/bob) or with
    the given (cert, key) paths."""
    import grpc
    c, k = cert_key or (cert(who + ".cert"), cert(who + ".key"))
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(cert("ca.cert")), private_key=read(k),
        certificate_chain=read(c))
    h = "[%s]" % host if ":" in host else host
    return grpc.secure_channel("%s:%d" % (h, port), creds)


def cleanup_global():
    for d in _temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    if _stub_dir:
        shutil.rmtree(_stub_dir, ignore_errors=True)
    if _certs_tmp:
        shutil.rmtree(_certs_tmp, ignore_errors=True)


atexit.register(cleanup_global)
atexit.register(_kill_live_servers)


# ---- TLS / raw HTTP/2 ----------------------------------------------------

def tls_context(cert_key=None, alpn=("h2",), max_version=None,
                min_version=ssl.TLSVersion.TLSv1_3, cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    ctx.load_verify_locations(cafile or cert("ca.cert"))
    if cert_key:
        ctx.load_cert_chain(cert_key[0], cert_key[1])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_probe(port, ctx, timeout=5.0):
    """Connects, handshakes, sends the HTTP/2 preface and an empty
    SETTINGS frame, then reads until the server closes or timeout.
    Returns a dict: handshake (bool), error (str or None: handshake or
    read error), data (bytes received), closed (bool: the server ended
    the connection), version, cipher, alpn."""
    res = {"handshake": False, "error": None, "data": b"", "closed": False,
           "version": None, "cipher": None, "alpn": None}
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except (ssl.SSLError, OSError) as e:
        res["error"] = "handshake: %s" % e
        res["closed"] = True
        raw.close()
        return res
    res["handshake"] = True
    res["version"] = s.version()
    res["cipher"] = s.cipher()[0] if s.cipher() else None
    res["alpn"] = s.selected_alpn_protocol()
    try:
        s.sendall(H2_PREFACE)
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            b = s.recv(65536)
            if not b:
                res["closed"] = True
                break
            res["data"] += b
    except socket.timeout:
        pass
    except (ssl.SSLError, OSError) as e:
        res["error"] = "after handshake: %s" % e
        res["closed"] = True
    finally:
        s.close()
    return res


class H2Call:
    """The result of one raw HTTP/2 request."""

    def __init__(self):
        self.headers = {}
        self.trailers = {}
        self.data = b""
        self.reset = None  # RST_STREAM error code
        self.ended = False
        self.goaway = None

    @property
    def status(self):
        return self.headers.get(":status")

    def grpc_status(self):
        v = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return int(v) if v is not None else None


def h2_request(port, path, body, content_type="application/grpc",
               who="alice", extra_headers=(), timeout=5.0, end_stream=True,
               method="POST"):
    """One request over a fresh TLS+HTTP/2 connection made with the h2
    package. Waits until the stream ends or is reset, or timeout."""
    import h2.config
    import h2.connection
    import h2.events
    ctx = tls_context((cert(who + ".cert"), cert(who + ".key")))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    call = H2Call()
    try:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True,
                                      header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":path", path),
                (":authority", "127.0.0.1:%d" % port)]
        if content_type is not None:
            hdrs.append(("content-type", content_type))
        hdrs += [("te", "trailers")] + list(extra_headers)
        conn.send_headers(sid, hdrs, end_stream=(end_stream and not body))
        if body:
            # Respect the peer's flow control window.
            pending = body
            while pending:
                s.sendall(conn.data_to_send())
                win = min(conn.local_flow_control_window(sid),
                          conn.max_outbound_frame_size)
                if win <= 0:
                    b = s.recv(65536)
                    if not b:
                        break
                    for ev in conn.receive_data(b):
                        _h2_event(call, ev, sid)
                    if call.ended or call.reset is not None:
                        break
                    continue
                chunk, pending = pending[:win], pending[win:]
                conn.send_data(sid, chunk,
                               end_stream=(end_stream and not pending))
        s.sendall(conn.data_to_send())
        deadline = time.monotonic() + timeout
        while not call.ended and call.reset is None and \
                time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            for ev in conn.receive_data(b):
                _h2_event(call, ev, sid)
                if isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    finally:
        s.close()
    return call


def _h2_event(call, ev, sid):
    import h2.events
    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
        call.headers = dict(ev.headers)
    elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
        call.trailers = dict(ev.headers)
    elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
        call.data += ev.data
    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
        call.ended = True
    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
        call.reset = ev.error_code
    elif isinstance(ev, h2.events.ConnectionTerminated):
        call.goaway = ev.error_code
        call.ended = True


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


# ---- running ------------------------------------------------------------

def run_suite(name, cases):
    """Runs the unittest cases, prints a summary line, exits 0 or 1."""
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for c in cases:
        suite.addTests(loader.loadTestsFromTestCase(c))
    t0 = time.monotonic()
    try:
        result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout,
                                         buffer=False).run(suite)
    finally:
        cleanup_global()
    def ids(pairs):  # subtests count once, as their test
        return {getattr(t, "test_case", t).id() for t, _ in pairs}

    failed, errored = ids(result.failures), ids(result.errors)
    errored -= failed
    # Errors in setUpClass/tearDownClass are not tests of their own.
    tests = [x for x in failed | errored if "(" not in x]
    print("\n%s: %d run, %d passed, %d failed, %d with errors, %d skipped; "
          "%d failure(s) in all (%.1fs)" %
          (name, result.testsRun,
           result.testsRun - len(tests) - len(result.skipped),
           len([x for x in failed if "(" not in x]),
           len([x for x in errored if "(" not in x]), len(result.skipped),
           len(result.failures) + len(result.errors),
           time.monotonic() - t0))
    sys.stdout.flush()
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1
