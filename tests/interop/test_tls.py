#!/usr/bin/python3
"""TLS policy of teleportd, seen from `openssl s_client` and Python's ssl:
TLS 1.3 only, the five TLS 1.3 suites each accepted alone, a client
certificate required and verified against the CA with the clientAuth
purpose, ALPN h2 required. A refused connection never gets an HTTP/2 frame
(no server SETTINGS); an accepted one does. A certificate without a CN is
refused on the first RPC with UNAUTHENTICATED.
"""

import os
import shutil
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402

pb, pb_grpc = ic.load_stubs()

SUITES = ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
          "TLS_AES_128_GCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
          "TLS_AES_128_CCM_SHA256"]


class Tls(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = ic.mktemp("jw-interop-tls-")
        cls.server = None
        try:
            cls.extra = ic.make_extra_certs(cls.tmp)
            cls.preface = os.path.join(cls.tmp, "preface.bin")
            with open(cls.preface, "wb") as f:
                f.write(ic.H2_PREFACE)
            cls.server = ic.Server(stop_timeout="2s")
            cls.server.start()
        except Exception:
            if cls.server:
                cls.server.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        try:
            rc, took = cls.server.terminate(timeout=20)
            if rc != 0:
                raise AssertionError(
                    "teleportd exit status after SIGTERM: got %r, want 0; "
                    "log tail:\n%s" % (rc, cls.server.log_text()[-4000:]))
        finally:
            cls.server.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- openssl s_client --

    def s_client(self, args, wait_settings, timeout=6.0):
        """Runs s_client with the HTTP/2 preface on stdin (-ign_eof keeps
        it reading after that). With wait_settings it is ended as soon as
        a SETTINGS frame shows up in its output; otherwise it must end by
        itself (the server closed) within timeout. Returns (exited by
        itself, exit code, stdout bytes, stderr text)."""
        out_path = os.path.join(self.tmp, "s_client.out")
        err_path = os.path.join(self.tmp, "s_client.err")
        cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.port,
               "-CAfile", ic.cert("ca.cert"), "-verify_return_error",
               "-ign_eof"] + args
        with open(self.preface, "rb") as inp, open(out_path, "wb") as out, \
                open(err_path, "wb") as err:
            p = subprocess.Popen(cmd, stdin=inp, stdout=out, stderr=err)
        try:
            deadline = time.monotonic() + timeout
            by_itself = False
            while time.monotonic() < deadline:
                if p.poll() is not None:
                    by_itself = True
                    break
                if wait_settings and ic.SETTINGS_RE.search(ic.read(out_path)):
                    break
                time.sleep(0.05)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        return (by_itself, p.returncode, ic.read(out_path),
                ic.read(err_path).decode(errors="replace"))

    def assertRefusedSClient(self, args):
        by_itself, rc, out, err = self.s_client(args, wait_settings=False)
        self.assertTrue(by_itself, "server kept the connection open; "
                        "stdout %r stderr %r" % (out[-300:], err[-300:]))
        self.assertIsNone(ic.SETTINGS_RE.search(out),
                          "an HTTP/2 SETTINGS frame was sent: %r" % out[-300:])
        self.assertNotIn(b"\x00", out, "application data was received")

    def assertRefusedProbe(self, ctx):
        r = ic.tls_probe(self.port, ctx)
        self.assertTrue(r["closed"], "server kept the connection open: %r"
                        % r)
        self.assertEqual(r["data"], b"", "bytes after the handshake: %r" % r)
        return r

    def alice(self):
        return (ic.cert("alice.cert"), ic.cert("alice.key"))

    # -- refusals --

    def test_tls12_refused(self):
        self.assertRefusedSClient(["-tls1_2", "-alpn", "h2", "-cert",
                                   ic.cert("alice.cert"), "-key",
                                   ic.cert("alice.key")])
        r = self.assertRefusedProbe(ic.tls_context(
            self.alice(), min_version=ssl.TLSVersion.TLSv1_2,
            max_version=ssl.TLSVersion.TLSv1_2))
        self.assertFalse(r["handshake"], "a TLS 1.2 handshake completed")

    def test_tls12_and_13_offered_gets_13(self):
        r = ic.tls_probe(self.port, ic.tls_context(
            self.alice(), min_version=ssl.TLSVersion.TLSv1_2), timeout=2)
        self.assertEqual(r["version"], "TLSv1.3", r)

    def test_no_client_certificate_refused(self):
        self.assertRefusedSClient(["-tls1_3", "-alpn", "h2"])
        self.assertRefusedProbe(ic.tls_context(None))

    def test_certificate_from_another_ca_refused(self):
        c, k = self.extra["otherca-alice"]
        self.assertRefusedSClient(["-tls1_3", "-alpn", "h2", "-cert", c,
                                   "-key", k])
        self.assertRefusedProbe(ic.tls_context((c, k)))

    def test_server_auth_only_certificate_refused(self):
        c, k = self.extra["serverauth-alice"]
        self.assertRefusedSClient(["-tls1_3", "-alpn", "h2", "-cert", c,
                                   "-key", k])
        self.assertRefusedProbe(ic.tls_context((c, k)))

    def test_no_alpn_refused(self):
        self.assertRefusedSClient(["-tls1_3", "-cert", ic.cert("alice.cert"),
                                   "-key", ic.cert("alice.key")])
        self.assertRefusedProbe(ic.tls_context(self.alice(), alpn=None))

    def test_other_alpn_refused(self):
        self.assertRefusedSClient(["-tls1_3", "-alpn", "http/1.1", "-cert",
                                   ic.cert("alice.cert"), "-key",
                                   ic.cert("alice.key")])
        self.assertRefusedProbe(ic.tls_context(self.alice(),
                                               alpn=("http/1.1",)))

    def refused_log_line(self, ctx):
        """Connects with ctx, lets the handshake fail, and returns the
        server's conn_refused log line for this connection (found by the
        client's port; waits up to 10 s for it)."""
        import socket
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        mine = "peer=127.0.0.1:%d " % raw.getsockname()[1]
        try:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            try:
                s.sendall(ic.H2_PREFACE)
                s.recv(1024)
            except (ssl.SSLError, OSError):
                pass
            s.close()
        except (ssl.SSLError, OSError):
            raw.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.server.log_text().splitlines():
                if "event=conn_refused" in line and mine in line:
                    return line
            time.sleep(0.05)
        self.fail("no conn_refused line for %s" % mine)

    def test_refusals_logged_as_alerts_we_sent(self):
        # The server's own alerts were logged as "the peer sent a TLS
        # alert", which sends an operator looking at the wrong side.
        cases = [
            (ic.tls_context(None), "certificate required"),
            (ic.tls_context(self.alice(), alpn=("http/1.1",)),
             "no application protocol"),
            (ic.tls_context(self.alice(), min_version=ssl.TLSVersion.TLSv1_2,
                            max_version=ssl.TLSVersion.TLSv1_2),
             "protocol version"),
        ]
        for ctx, alert in cases:
            with self.subTest(alert):
                line = self.refused_log_line(ctx)
                self.assertIn('error="TLS handshake failed: we sent alert '
                              + alert + ": ", line)
                self.assertNotIn("peer sent", line)

    # -- revocation --

    def test_revoked_client_refused(self):
        """jw-certs revoke writes a CRL; teleportd --crl refuses the revoked
        client at the handshake (certificate_revoked) and the CLI says the
        server refused the certificate; another client still works."""
        d = os.path.join(self.tmp, "rev")
        os.mkdir(d)
        for f in ("ca.cert", "ca.key"):
            shutil.copy(ic.cert(f), os.path.join(d, f))
        tool = os.environ.get("JW_CERTS_TOOL") or os.path.join(
            ic.SOURCE_ROOT, "certs", "jw-certs")

        def certs(*args):
            return subprocess.run([tool, "--dir", d] + list(args),
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=300,
                                  check=True).stdout.decode()

        certs("client", "carol")
        certs("client", "dave")
        certs("revoke", "carol")
        listed = certs("list")
        self.assertRegex(listed, r"(?m)^carol +[0-9A-F]+ +\w{3} .*GMT +revoked$")
        self.assertRegex(listed, r"(?m)^dave +[0-9A-F]+ +\w{3} .*GMT +valid$")
        srv = ic.Server(stop_timeout="2s",
                        extra_args=["--crl", os.path.join(d, "crl.pem")])
        srv.start()
        try:
            carol = (os.path.join(d, "carol.cert"), os.path.join(d, "carol.key"))
            dave = (os.path.join(d, "dave.cert"), os.path.join(d, "dave.key"))
            r = ic.tls_probe(srv.port, ic.tls_context(carol))
            self.assertTrue(r["closed"], r)
            self.assertEqual(r["data"], b"", r)
            self.assertIn("revoked", r["error"] or "", r)
            cli = subprocess.run(
                [os.path.join(ic.BUILD_ROOT, "client", "teleport"), "--addr",
                 "127.0.0.1:%d" % srv.port, "--cacert", ic.cert("ca.cert"),
                 "--cert", carol[0], "--key", carol[1], "list"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertNotEqual(cli.returncode, 0)
            self.assertIn("refused this client certificate",
                          cli.stderr.decode(errors="replace"))
            for who in (dave, self.alice()):
                ch = ic.channel(srv.port, cert_key=who)
                try:
                    pb_grpc.JobWorkerStub(ch).List(pb.ListRequest(), timeout=30)
                finally:
                    ch.close()
        finally:
            srv.terminate(timeout=20)
            srv.cleanup()

    def test_bad_crl_refused_at_start(self):
        """A missing CRL, one that is no CRL, or one of another CA: teleportd
        refuses to start (exit 2) and names the file."""
        junk = os.path.join(self.tmp, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a CRL\n")
        other = os.path.join(self.tmp, "other-crl.pem")
        d = os.path.dirname(self.extra["other-ca"][0])
        conf = os.path.join(self.tmp, "other-ca.cnf")
        index = os.path.join(self.tmp, "other-index.txt")
        open(index, "w").close()
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca = x\n[x]\ndatabase = %s\n"
                    "default_md = sha256\ndefault_crl_days = 2\n" % index)
        ic.openssl("ca", "-gencrl", "-config", conf, "-keyfile",
                   self.extra["other-ca"][1], "-cert",
                   self.extra["other-ca"][0], "-out", other, cwd=d)
        for path, why in ((os.path.join(self.tmp, "none.pem"), "cannot read"),
                          (junk, "no CRL"), (other, "not signed by the CA")):
            r = subprocess.run(
                [ic.TELEPORTD, "--addr", "127.0.0.1:0", "--cacert",
                 ic.cert("ca.cert"), "--cert", ic.cert("server.cert"), "--key",
                 ic.cert("server.key"), "--data-dir",
                 os.path.join(self.tmp, "crl-data"), "--crl", path],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            err = r.stderr.decode(errors="replace")
            self.assertEqual(r.returncode, 2, err)
            self.assertIn(path, err)
            self.assertIn(why, err)

    # -- acceptance --

    def test_each_tls13_suite_accepted_alone(self):
        for suite in SUITES:
            with self.subTest(suite):
                by_itself, rc, out, err = self.s_client(
                    ["-tls1_3", "-ciphersuites", suite, "-alpn", "h2",
                     "-cert", ic.cert("alice.cert"), "-key",
                     ic.cert("alice.key")], wait_settings=True)
                text = out.decode("latin-1")
                self.assertTrue("Cipher is " + suite in text or
                                "Ciphersuite: " + suite in text,
                                "suite not negotiated; stdout %r stderr %r" %
                                (text[-600:], err[-600:]))
                self.assertIn("ALPN protocol: h2", text)
                self.assertIsNotNone(ic.SETTINGS_RE.search(out),
                                     "no SETTINGS frame from the server; "
                                     "stderr %r" % err[-600:])
                self.assertFalse(by_itself and rc != 0,
                                 "s_client failed: %r" % err[-600:])

    def test_good_handshake_gets_settings(self):
        r = ic.tls_probe(self.port, ic.tls_context(self.alice()), timeout=2)
        self.assertTrue(r["handshake"], r)
        self.assertEqual(r["version"], "TLSv1.3")
        self.assertEqual(r["alpn"], "h2")
        self.assertGreaterEqual(len(r["data"]), 9, r)
        # The first frame the server sends is its SETTINGS (not an ACK).
        self.assertEqual(r["data"][3], 4, r["data"][:9])
        self.assertEqual(r["data"][4] & 1, 0, "first SETTINGS is not an ACK")
        self.assertEqual(r["data"][5:9], b"\x00\x00\x00\x00")

    # -- identity --

    def test_certificate_without_cn_unauthenticated(self):
        chan = ic.channel(self.port, cert_key=self.extra["nocn"])
        try:
            stub = pb_grpc.JobWorkerStub(chan)
            for call, req in ((stub.List, pb.ListRequest()),
                              (stub.Start, pb.JobRequest(command="true"))):
                with self.assertRaises(grpc.RpcError) as cm:
                    call(req, timeout=10)
                self.assertEqual(cm.exception.code(),
                                 grpc.StatusCode.UNAUTHENTICATED,
                                 cm.exception.details())
                self.assertTrue(cm.exception.details())
        finally:
            chan.close()
        # Alice is unaffected.
        chan = ic.channel(self.port, "alice")
        try:
            pb_grpc.JobWorkerStub(chan).List(pb.ListRequest(), timeout=10)
        finally:
            chan.close()


def ipv6_loopback():
    import socket
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback here")
class Ipv6(unittest.TestCase):
    """teleportd on [::1]: the server certificate's ::1 SAN verifies and
    the same policy holds."""

    def test_ipv6_loopback(self):
        server = ic.Server(stop_timeout="2s", host="::1")
        try:
            server.start()
            chan = ic.channel(server.port, "alice", host="::1")
            try:
                stub = pb_grpc.JobWorkerStub(chan)
                st = stub.Start(pb.JobRequest(command="echo", args=["v6"]),
                                timeout=10)
                out = b"".join(m.data for m in stub.GetOutput(
                    pb.GetOutputRequest(id=st.id), timeout=10))
                self.assertEqual(out, b"v6\n")
            finally:
                chan.close()
            rc, _ = server.terminate(timeout=20)
            self.assertEqual(rc, 0, server.log_text()[-3000:])
        finally:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(ic.run_suite("tls-policy", [Tls, Ipv6]))
