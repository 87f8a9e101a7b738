#!/usr/bin/python3
"""The gRPC ecosystem services against python grpcio, with stubs that
grpc_tools.protoc generates from Debian's grpc-proto files:
grpc.health.v1.Health Check and Watch (SERVING, NOT_FOUND /
SERVICE_UNKNOWN for other names, NOT_SERVING then the end of the stream
once teleportd gets SIGTERM, a certificate required, no job created) and
server reflection v1 and v1alpha (list services, file by filename, file
containing symbol, NOT_FOUND for an unknown symbol)."""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_common as ic  # noqa: E402

ic.reexec()

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402

pb, pb_grpc = ic.load_stubs()

GRPC_PROTO = os.environ.get("JW_GRPC_PROTO_DIR", "/usr/share/grpc-proto")
SERVICE = "jobworker.v1.JobWorker"


def gen_stubs():
    """health_pb2(_grpc), reflection_pb2(_grpc) for v1, and for v1alpha
    under another file name (both files are "reflection.proto", which one
    descriptor pool cannot hold twice)."""
    d = tempfile.mkdtemp(prefix="jw-health-stubs-")
    shutil.copy(os.path.join(GRPC_PROTO, "grpc/health/v1/health.proto"), d)
    shutil.copy(os.path.join(GRPC_PROTO, "grpc/reflection/v1/reflection.proto"),
                d)
    shutil.copy(os.path.join(GRPC_PROTO,
                             "grpc/reflection/v1alpha/reflection.proto"),
                os.path.join(d, "reflection_v1alpha.proto"))
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", d,
         "--python_out", d, "--grpc_python_out", d, "health.proto",
         "reflection.proto", "reflection_v1alpha.proto"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("grpc_tools.protoc failed:\n" +
                           r.stdout.decode(errors="replace"))
    sys.path.insert(0, d)
    ic._temp_dirs.append(d)
    return [importlib.import_module(m) for m in (
        "health_pb2", "health_pb2_grpc", "reflection_pb2",
        "reflection_pb2_grpc", "reflection_v1alpha_pb2",
        "reflection_v1alpha_pb2_grpc")]


(hpb, hpb_grpc, rpb, rpb_grpc, rapb, rapb_grpc) = gen_stubs()
SERVING = hpb.HealthCheckResponse.SERVING
NOT_SERVING = hpb.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = hpb.HealthCheckResponse.SERVICE_UNKNOWN


class Base(unittest.TestCase):

    def setUp(self):
        self.server = ic.Server(stop_timeout="2s")
        self.server.start()
        self.chan = ic.channel(self.server.port, "alice")
        self.health = hpb_grpc.HealthStub(self.chan)

    def tearDown(self):
        self.chan.close()
        self.server.cleanup()


class Health(Base):

    def test_check_serving(self):
        for name in ("", SERVICE):
            with self.subTest(service=name):
                r = self.health.Check(hpb.HealthCheckRequest(service=name),
                                      timeout=10)
                self.assertEqual(r.status, SERVING)

    def test_check_unknown_is_not_found(self):
        for name in ("nope.v1.Nope", SERVICE + "\x00", "jobworker.v1"):
            with self.subTest(service=name):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.health.Check(hpb.HealthCheckRequest(service=name),
                                      timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
                self.assertIn("unknown service", cm.exception.details())

    def test_watch_unknown_is_service_unknown(self):
        stream = self.health.Watch(hpb.HealthCheckRequest(service="x.Y"),
                                   timeout=10)
        self.assertEqual(next(stream).status, SERVICE_UNKNOWN)
        stream.cancel()

    def test_watch_then_sigterm(self):
        streams = [self.health.Watch(hpb.HealthCheckRequest(service=n),
                                     timeout=30) for n in ("", SERVICE)]
        for s in streams:
            self.assertEqual(next(s).status, SERVING)
        self.server.proc.send_signal(ic.signal.SIGTERM)
        for s in streams:
            self.assertEqual(next(s).status, NOT_SERVING)
            # Then the stream ends with OK rather than holding the shutdown.
            self.assertEqual(list(s), [])
            self.assertEqual(s.code(), grpc.StatusCode.OK)
        self.assertEqual(self.server.proc.wait(timeout=60), 0)

    def test_no_certificate_is_refused(self):
        creds = grpc.ssl_channel_credentials(
            root_certificates=ic.read(ic.cert("ca.cert")))
        with grpc.secure_channel("127.0.0.1:%d" % self.server.port,
                                 creds) as ch:
            with self.assertRaises(grpc.RpcError) as cm:
                hpb_grpc.HealthStub(ch).Check(hpb.HealthCheckRequest(),
                                              timeout=10)
            self.assertEqual(cm.exception.code(),
                             grpc.StatusCode.UNAVAILABLE)

    def test_checks_create_no_job(self):
        jw = pb_grpc.JobWorkerStub(self.chan)
        before = len(jw.List(pb.ListRequest(), timeout=10).jobs)
        for _ in range(20):
            self.health.Check(hpb.HealthCheckRequest(), timeout=10)
        self.assertEqual(len(jw.List(pb.ListRequest(), timeout=10).jobs),
                         before)
        self.assertEqual(before, 0)


class Reflection(Base):

    def ask(self, mod, mod_grpc, **kw):
        stub = mod_grpc.ServerReflectionStub(self.chan)
        resp = list(stub.ServerReflectionInfo(
            iter([mod.ServerReflectionRequest(**kw)]), timeout=10))
        self.assertEqual(len(resp), 1)
        return resp[0]

    def each_version(self):
        for name, mod, mod_grpc in (("v1", rpb, rpb_grpc),
                                    ("v1alpha", rapb, rapb_grpc)):
            with self.subTest(version=name):
                yield mod, mod_grpc

    def files(self, resp):
        self.assertEqual(resp.WhichOneof("message_response"),
                         "file_descriptor_response")
        out = []
        for b in resp.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(b)
            out.append(fd)
        return out

    def check_jobworker(self, fds):
        self.assertEqual(fds[0].name, "jobworker.proto")
        self.assertEqual(fds[0].package, "jobworker.v1")
        svc = [s for s in fds[0].service if s.name == "JobWorker"]
        self.assertEqual(len(svc), 1)
        self.assertEqual(sorted(m.name for m in svc[0].method),
                         ["GetOutput", "List", "Remove", "Signal", "Start",
                          "Status", "Stop", "Wait"])

    def test_answer_without_half_close(self):
        """As grpcurl's grpcreflect client does: send a request, keep the
        stream open and wait for the answer; when the stream ends, open a
        new one for the next request. Each answer must come while the
        client has not half-closed (it used to wait for the request
        timeout)."""
        import threading
        for mod, mod_grpc in self.each_version():
            stub = mod_grpc.ServerReflectionStub(self.chan)
            for kw in ({"list_services": ""},
                       {"file_by_filename": "jobworker.proto"}):
                answered = threading.Event()
                early = []

                def requests(req=mod.ServerReflectionRequest(**kw)):
                    yield req
                    # The stream stays open until the answer is in (or a
                    # bound passes: then the test fails below).
                    early.append(answered.wait(20))

                call = stub.ServerReflectionInfo(requests(), timeout=25)
                first = next(call)
                answered.set()
                self.assertNotEqual(first.WhichOneof("message_response"),
                                    "error_response", first)
                # The server then ends the stream by itself, with OK.
                self.assertEqual(list(call), [])
                self.assertEqual(call.code(), grpc.StatusCode.OK)
                # The answer came while the request side was still open:
                # the generator either was not resumed at all before the
                # call ended, or found the answer in when it was.
                self.assertNotIn(False, early, kw)

    def test_list_services(self):
        for mod, mod_grpc in self.each_version():
            r = self.ask(mod, mod_grpc, list_services="")
            names = sorted(s.name for s in r.list_services_response.service)
            self.assertEqual(names, [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                SERVICE])

    def test_file_by_filename(self):
        for mod, mod_grpc in self.each_version():
            self.check_jobworker(self.files(self.ask(
                mod, mod_grpc, file_by_filename="jobworker.proto")))
            fds = self.files(self.ask(
                mod, mod_grpc,
                file_by_filename="grpc/health/v1/health.proto"))
            self.assertEqual(fds[0].service[0].name, "Health")

    def test_file_containing_symbol(self):
        for mod, mod_grpc in self.each_version():
            for sym in (SERVICE, SERVICE + ".Start", "jobworker.v1.JobStatus",
                        "jobworker.v1.JobState"):
                with self.subTest(symbol=sym):
                    self.check_jobworker(self.files(self.ask(
                        mod, mod_grpc, file_containing_symbol=sym)))
            fds = self.files(self.ask(
                mod, mod_grpc,
                file_containing_symbol="grpc.reflection.v1alpha."
                                       "ServerReflection"))
            self.assertEqual(fds[0].name,
                             "grpc/reflection/v1alpha/reflection.proto")

    def test_unknown_symbol_is_not_found(self):
        for mod, mod_grpc in self.each_version():
            for kw in ({"file_containing_symbol": "jobworker.v1.Nope"},
                       {"file_containing_symbol": "jobworker.v1"},
                       {"file_by_filename": "nope.proto"}):
                with self.subTest(**kw):
                    r = self.ask(mod, mod_grpc, **kw)
                    self.assertEqual(r.WhichOneof("message_response"),
                                     "error_response")
                    self.assertEqual(r.error_response.error_code,
                                     grpc.StatusCode.NOT_FOUND.value[0])

    def test_descriptor_pool_from_reflection(self):
        """What grpcio's reflection client does: load the files the server
        sends into a DescriptorPool and look the service up there."""
        pool = descriptor_pool.DescriptorPool()
        for fd in self.files(self.ask(rpb, rpb_grpc,
                                      file_containing_symbol=SERVICE)):
            pool.Add(fd)
        svc = pool.FindServiceByName(SERVICE)
        start = svc.FindMethodByName("Start")
        self.assertEqual(start.input_type.full_name, "jobworker.v1.JobRequest")
        self.assertEqual(start.output_type.full_name, "jobworker.v1.JobStatus")
        self.assertTrue(svc.FindMethodByName("GetOutput").server_streaming)

    def test_extensions(self):
        r = self.ask(rpb, rpb_grpc,
                     all_extension_numbers_of_type="jobworker.v1.JobRequest")
        self.assertEqual(r.all_extension_numbers_response.base_type_name,
                         "jobworker.v1.JobRequest")
        self.assertEqual(
            list(r.all_extension_numbers_response.extension_number), [])
        r = self.ask(rpb, rpb_grpc,
                     all_extension_numbers_of_type="jobworker.v1.Nope")
        self.assertEqual(r.error_response.error_code,
                         grpc.StatusCode.NOT_FOUND.value[0])
        ext = rpb.ExtensionRequest(containing_type="jobworker.v1.JobRequest",
                                   extension_number=100)
        r = self.ask(rpb, rpb_grpc, file_containing_extension=ext)
        self.assertEqual(r.error_response.error_code,
                         grpc.StatusCode.NOT_FOUND.value[0])

    def test_empty_request_is_invalid_argument(self):
        r = self.ask(rpb, rpb_grpc)
        self.assertEqual(r.error_response.error_code,
                         grpc.StatusCode.INVALID_ARGUMENT.value[0])

    def test_creates_no_job(self):
        self.ask(rpb, rpb_grpc, list_services="")
        jw = pb_grpc.JobWorkerStub(self.chan)
        self.assertEqual(len(jw.List(pb.ListRequest(), timeout=10).jobs), 0)


if __name__ == "__main__":
    sys.exit(ic.run_suite("health-reflection", [Health, Reflection]))
