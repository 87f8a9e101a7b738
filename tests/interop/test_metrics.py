"""GET /metrics on teleportd's TLS port, over HTTP/2 with the h2 package
(docs/operations.md#metrics): a CN listed in --metrics-cn gets the
Prometheus text exposition (200, version=0.0.4), every other CN a 403,
HEAD the headers alone; the counters move with a Start and a Status;
`promtool check metrics` accepts the body when promtool is installed
(make deps installs it: the Debian package prometheus). The audit lines
of a job's start and end are in the log.

Runs on Debian's /usr/bin/python3; everything stays on loopback.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

RPC_TIMEOUT = 30
CTYPE = "text/plain; version=0.0.4; charset=utf-8"
START = "/jobworker.v1.JobWorker/Start"
STATUS = "/jobworker.v1.JobWorker/Status"

# Every family the documentation promises.
FAMILIES = [
    "teleportd_jobs_started_total", "teleportd_jobs_running",
    "teleportd_jobs_finished_total", "teleportd_output_bytes_total",
    "teleportd_output_dropped_bytes_total", "teleportd_connections_open",
    "teleportd_rpcs_total", "teleportd_rpc_duration_seconds",
    "teleportd_handshake_failures_total", "process_resident_memory_bytes",
    "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
    "process_start_time_seconds", "process_virtual_memory_bytes",
]

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels)): value} and the # TYPE of each family;
    fails on any line that is not a comment or a sample."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = ic.Server(extra_args=["--metrics-cn", "carol,alice",
                                        "--request-timeout", "3s"])
        cls.srv.start()
        cls.pb, cls.pb_grpc = ic.load_stubs()

    @classmethod
    def tearDownClass(cls):
        cls.srv.cleanup()

    def get(self, who="alice", method="GET", path="/metrics"):
        return ic.h2_request(self.srv.port, path, b"", content_type=None,
                             who=who, method=method, timeout=20)

    def scrape(self):
        call = self.get()
        self.assertEqual(call.status, "200", call.data[:300])
        self.assertEqual(call.headers.get("content-type"), CTYPE)
        self.assertEqual(int(call.headers["content-length"]), len(call.data))
        return call.data.decode()

    def test_allowed_cn_gets_every_metric(self):
        samples, types = parse(self.scrape())
        names = {n for n, _ in samples}
        for fam in FAMILIES:
            if types.get(fam) == "histogram":
                self.assertIn(fam + "_bucket", names)
                self.assertIn(fam + "_sum", names)
                self.assertIn(fam + "_count", names)
            else:
                self.assertIn(fam, types, fam)
        self.assertEqual(types["teleportd_rpc_duration_seconds"], "histogram")
        self.assertGreater(value(samples, "process_resident_memory_bytes"), 0)
        self.assertGreater(value(samples, "process_open_fds"), 0)
        # This very connection is open while it is counted.
        self.assertGreaterEqual(value(samples, "teleportd_connections_open"),
                                1)

    def test_counters_move_with_start_and_status(self):
        before, _ = parse(self.scrape())
        ch = ic.channel(self.srv.port, "alice")
        try:
            stub = self.pb_grpc.JobWorkerStub(ch)
            st = stub.Start(self.pb.JobRequest(command="/bin/echo",
                                               args=["metrics", "x"]),
                            timeout=RPC_TIMEOUT)
            # Until it is final (bounded: the job is an echo).
            deadline = time.monotonic() + RPC_TIMEOUT
            while time.monotonic() < deadline:
                now = stub.Status(self.pb.StatusRequest(id=st.id),
                                  timeout=RPC_TIMEOUT)
                if now.state not in (self.pb.JOB_STATE_UNSPECIFIED,
                                     self.pb.JOB_STATE_RUNNING):
                    break
                time.sleep(0.05)
        finally:
            ch.close()
        after, _ = parse(self.scrape())
        self.assertEqual(
            value(after, "teleportd_jobs_started_total", owner="alice") -
            value(before, "teleportd_jobs_started_total", owner="alice"), 1)
        self.assertEqual(
            value(after, "teleportd_jobs_finished_total", reason="exited") -
            value(before, "teleportd_jobs_finished_total", reason="exited"),
            1)
        self.assertEqual(
            value(after, "teleportd_output_bytes_total") -
            value(before, "teleportd_output_bytes_total"), len("metrics x\n"))
        self.assertEqual(
            value(after, "teleportd_rpcs_total", method=START, code="OK") -
            value(before, "teleportd_rpcs_total", method=START, code="OK"), 1)
        self.assertGreaterEqual(
            value(after, "teleportd_rpcs_total", method=STATUS, code="OK") -
            value(before, "teleportd_rpcs_total", method=STATUS, code="OK"),
            1)
        self.assertEqual(
            value(after, "teleportd_rpc_duration_seconds_count",
                  method=START) -
            value(before, "teleportd_rpc_duration_seconds_count",
                  method=START), 1)
        self.assertEqual(
            value(after, "teleportd_rpc_duration_seconds_bucket",
                  method=START, le="+Inf"),
            value(after, "teleportd_rpc_duration_seconds_count",
                  method=START))
        # The audit lines of that job, in the logfmt log.
        log = self.srv.log_text()
        self.assertRegex(log, r"event=job_start owner=alice job=%s "
                         r"command=/bin/echo args=2 uid=\d+ gid=\d+" % st.id)
        self.assertRegex(log, r"event=job_end owner=alice job=%s "
                         r"state=exited exit_code=0 reason=exited cpu_ns=\d+ "
                         r"mem_peak=\d+ output_bytes=10 dropped=0 "
                         r"duration=[0-9.]+s" % st.id)

    def test_handshake_failures_by_reason(self):
        before, _ = parse(self.scrape())
        # No client certificate; then a client offering no h2 in ALPN.
        ic.tls_probe(self.srv.port, ic.tls_context(None), timeout=5)
        ic.tls_probe(self.srv.port,
                     ic.tls_context((ic.cert("alice.cert"),
                                     ic.cert("alice.key")),
                                    alpn=("http/1.1",)), timeout=5)
        after, _ = parse(self.scrape())
        for reason in ("no_certificate", "alpn"):
            self.assertEqual(
                value(after, "teleportd_handshake_failures_total",
                      reason=reason) -
                value(before, "teleportd_handshake_failures_total",
                      reason=reason), 1, reason)

    def test_other_cn_gets_403(self):
        call = self.get(who="bob")
        self.assertEqual(call.status, "403")
        self.assertIn(b"--metrics-cn", call.data)
        self.assertNotIn(b"teleportd_", call.data)

    def test_head(self):
        body = self.get()
        call = self.get(method="HEAD")
        self.assertEqual(call.status, "200")
        self.assertEqual(call.headers.get("content-type"), CTYPE)
        self.assertEqual(call.data, b"")
        # About the length a GET gets (counters move between the two).
        self.assertGreater(int(call.headers["content-length"]),
                           len(body.data) // 2)
        self.assertEqual(self.get(who="bob", method="HEAD").status, "403")

    def test_other_paths_and_methods_still_refused(self):
        self.assertEqual(self.get(path="/metrics/x").status, "405")
        self.assertEqual(self.get(method="DELETE").status, "405")

    def test_unended_or_bodied_get_does_not_run_the_handler(self):
        # The body is produced once the request ended: a GET that never
        # ends gets 408 at the request timeout (3s), one with more than
        # 64 KiB of body 413, and neither a metrics text.
        call = ic.h2_request(self.srv.port, "/metrics", b"",
                             content_type=None, method="GET",
                             end_stream=False, timeout=30)
        self.assertEqual(call.status, "408")
        self.assertNotIn(b"teleportd_", call.data)
        call = ic.h2_request(self.srv.port, "/metrics", b"x" * 70000,
                             content_type=None, method="GET", timeout=30)
        self.assertEqual(call.status, "413")
        self.assertNotIn(b"teleportd_", call.data)

    def test_promtool_accepts_the_body(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool is not installed (Debian: apt-get install "
                          "prometheus, or make deps)")
        text = self.scrape()
        r = subprocess.run([promtool, "check", "metrics"],
                           input=text.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))


class MetricsUnsetTest(unittest.TestCase):
    """Without --metrics-cn no CN may read the metrics."""

    def test_every_cn_gets_403(self):
        srv = ic.Server()
        try:
            srv.start()
            for who in ("alice", "bob"):
                call = ic.h2_request(srv.port, "/metrics", b"",
                                     content_type=None, who=who,
                                     method="GET", timeout=20)
                self.assertEqual(call.status, "403", who)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    ic.run_suite("metrics", [MetricsTest, MetricsUnsetTest])
