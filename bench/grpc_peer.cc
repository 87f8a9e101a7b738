// grpc-peer: the gRPC C++ server that the benchmark compares teleportd
// with. It serves the same proto/jobworker.proto with mutual TLS on the
// same certificates, but runs nothing: Start records a job in an in-memory
// map, Status answers from that map, and GetOutput streams the job's
// output as a fixed number of 32 KiB messages built once in memory. The
// output size of a job is taken from a "-c N" argument (as in
// "head -c N /dev/zero"), so the load generator drives both servers with
// the same requests. A line-printing job,
// awk 'BEGIN{for(i=0;i<N;i++){print i; fflush()}}', gets its N lines as
// output, built once per job and streamed as 32 KiB messages too.
//
// It uses the callback API (the one gRPC recommends for servers that care
// about cost) and the library's defaults otherwise.

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <signal.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "jobworker.grpc.pb.h"

namespace {

using jobworker::v1::GetOutputRequest;
using jobworker::v1::JobOutput;
using jobworker::v1::JobRequest;
using jobworker::v1::JobStatus;
using jobworker::v1::ListRequest;
using jobworker::v1::ListResponse;
using jobworker::v1::StatusRequest;
using jobworker::v1::StopRequest;

constexpr size_t kChunk = 32 * 1024;
// A line-printing job's output is held in memory: 10M lines are 78 MiB.
constexpr uint64_t kMaxLines = 10000000;

std::string ReadFile(const char *path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "grpc-peer: cannot read %s\n", path);
    std::exit(1);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses "4096", "64K", "16M", "4G" as head(1) does (powers of 1024).
uint64_t ParseSize(const std::string &s) {
  char *end = nullptr;
  uint64_t v = std::strtoull(s.c_str(), &end, 10);
  switch (end != nullptr ? *end : '\0') {
  case 'K':
  case 'k':
    return v << 10;
  case 'M':
    return v << 20;
  case 'G':
    return v << 30;
  default:
    return v;
  }
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// N lines of `awk 'BEGIN{for(i=0;i<N;i++){print i; fflush()}}'`, when
// the request is that program (and N is within kMaxLines).
bool ParseLines(const JobRequest &req, uint64_t *n) {
  unsigned long long v = 0;
  int end = 0;
  if (req.command() != "awk" || req.args_size() != 1 ||
      std::sscanf(req.args(0).c_str(),
                  "BEGIN{for(i=0;i<%llu;i++){print i; fflush()}}%n", &v,
                  &end) != 1 ||
      static_cast<size_t>(end) != req.args(0).size() || v > kMaxLines)
    return false;
  *n = v;
  return true;
}

using Messages = std::vector<JobOutput>;

// The output of a line-printing job as kChunk-byte messages.
std::shared_ptr<const Messages> LinesMessages(uint64_t n) {
  std::string out;
  char buf[32];
  for (uint64_t i = 0; i < n; i++)
    out.append(buf, static_cast<size_t>(
                        std::snprintf(buf, sizeof(buf), "%" PRIu64 "\n", i)));
  auto msgs = std::make_shared<Messages>();
  for (size_t off = 0; off < out.size(); off += kChunk) {
    msgs->emplace_back();
    msgs->back().set_data(out.substr(off, kChunk));
  }
  return msgs;
}

struct Job {
  JobStatus status;
  uint64_t chunks = 0; // GetOutput messages of kChunk zero bytes
  std::shared_ptr<const Messages> text; // or these (a line-printing job)
};

// Streams a job's chunks (the same zero message, or the job's own
// messages); one write in flight, as gRPC requires.
class OutputWriter : public grpc::ServerWriteReactor<JobOutput> {
public:
  OutputWriter(const JobOutput *msg, uint64_t chunks,
               std::shared_ptr<const Messages> text)
      : msg_(msg), left_(text ? text->size() : chunks), text_(std::move(text)) {
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    Next();
  }

  void OnDone() override { delete this; }
  void OnCancel() override {}

private:
  void Next() {
    if (left_ == 0) {
      Finish(grpc::Status::OK);
      return;
    }
    left_--;
    StartWrite(text_ ? &(*text_)[next_++] : msg_);
  }

  const JobOutput *msg_;
  uint64_t left_;
  std::shared_ptr<const Messages> text_;
  size_t next_ = 0;
};

class Service final : public jobworker::v1::JobWorker::CallbackService {
public:
  Service() : rng_(std::random_device{}()) {
    chunk_.set_data(std::string(kChunk, '\0'));
  }

  grpc::ServerUnaryReactor *Start(grpc::CallbackServerContext *ctx,
                                  const JobRequest *req,
                                  JobStatus *resp) override {
    auto *r = ctx->DefaultReactor();
    if (req->command().empty()) {
      r->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty command"));
      return r;
    }
    Job job;
    uint64_t bytes = 0;
    for (int i = 0; i + 1 < req->args_size(); i++)
      if (req->args(i) == "-c")
        bytes = ParseSize(req->args(i + 1));
    job.chunks = (bytes + kChunk - 1) / kChunk;
    uint64_t lines = 0, out_bytes = job.chunks * kChunk;
    if (ParseLines(*req, &lines)) {
      job.text = LinesMessages(lines);
      out_bytes = 0;
      for (const auto &m : *job.text)
        out_bytes += m.data().size();
    }
    JobStatus &st = job.status;
    st.set_id(NewId());
    st.set_owner(Owner(ctx));
    st.set_command(req->command());
    for (const auto &a : req->args())
      st.add_args(a);
    st.set_state(jobworker::v1::JOB_STATE_RUNNING);
    st.set_pid(1);
    st.set_started_at_unix_nano(NowNanos());
    if (job.chunks > 0 || job.text) {
      // Output "from memory" is all there at once: the job is final.
      st.set_state(jobworker::v1::JOB_STATE_EXITED);
      st.set_ended_at_unix_nano(st.started_at_unix_nano());
      st.set_output_bytes(out_bytes);
    }
    *resp = st;
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_[st.id()] = std::move(job);
    }
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerUnaryReactor *Status(grpc::CallbackServerContext *ctx,
                                   const StatusRequest *req,
                                   JobStatus *resp) override {
    auto *r = ctx->DefaultReactor();
    r->Finish(Lookup(req->id(), resp));
    return r;
  }

  grpc::ServerUnaryReactor *Stop(grpc::CallbackServerContext *ctx,
                                 const StopRequest *req,
                                 JobStatus *resp) override {
    auto *r = ctx->DefaultReactor();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(req->id());
    if (it == jobs_.end()) {
      r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such job"));
      return r;
    }
    JobStatus &st = it->second.status;
    if (st.state() == jobworker::v1::JOB_STATE_RUNNING) {
      st.set_state(jobworker::v1::JOB_STATE_STOPPED);
      st.set_signal(SIGTERM);
      st.set_ended_at_unix_nano(NowNanos());
    }
    *resp = st;
    r->Finish(grpc::Status::OK);
    return r;
  }

  grpc::ServerWriteReactor<JobOutput> *
  GetOutput(grpc::CallbackServerContext *ctx,
            const GetOutputRequest *req) override {
    uint64_t chunks = 0;
    std::shared_ptr<const Messages> text;
    grpc::Status s = Lookup(req->id(), nullptr, &chunks, &text);
    if (!s.ok()) {
      class Failed : public grpc::ServerWriteReactor<JobOutput> {
      public:
        explicit Failed(const grpc::Status &st) { Finish(st); }
        void OnDone() override { delete this; }
      };
      return new Failed(s);
    }
    return new OutputWriter(&chunk_, chunks, std::move(text));
  }

  grpc::ServerUnaryReactor *List(grpc::CallbackServerContext *ctx,
                                 const ListRequest *req,
                                 ListResponse *resp) override {
    auto *r = ctx->DefaultReactor();
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto &kv : jobs_)
      *resp->add_jobs() = kv.second.status;
    r->Finish(grpc::Status::OK);
    return r;
  }

private:
  grpc::Status Lookup(const std::string &id, JobStatus *out,
                      uint64_t *chunks = nullptr,
                      std::shared_ptr<const Messages> *text = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end())
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such job");
    if (out != nullptr)
      *out = it->second.status;
    if (chunks != nullptr)
      *chunks = it->second.chunks;
    if (text != nullptr)
      *text = it->second.text;
    return grpc::Status::OK;
  }

  static std::string Owner(grpc::CallbackServerContext *ctx) {
    auto cn = ctx->auth_context()->FindPropertyValues("x509_common_name");
    return cn.empty() ? std::string() : std::string(cn[0].data(), cn[0].size());
  }

  std::string NewId() {
    std::lock_guard<std::mutex> lock(mu_);
    char buf[33];
    std::snprintf(buf, sizeof(buf), "%016" PRIx64 "%016" PRIx64,
                  static_cast<uint64_t>(rng_()), static_cast<uint64_t>(rng_()));
    return buf;
  }

  std::mutex mu_;
  std::unordered_map<std::string, Job> jobs_;
  std::mt19937_64 rng_;
  JobOutput chunk_;
};

void Usage() {
  std::fprintf(stderr, "usage: grpc-peer --addr HOST:PORT --cacert F "
                       "--cert F --key F\n");
  std::exit(2);
}

} // namespace

int main(int argc, char **argv) {
  const char *addr = nullptr, *cacert = nullptr, *cert = nullptr,
             *key = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--addr") == 0)
      addr = argv[i + 1];
    else if (std::strcmp(argv[i], "--cacert") == 0)
      cacert = argv[i + 1];
    else if (std::strcmp(argv[i], "--cert") == 0)
      cert = argv[i + 1];
    else if (std::strcmp(argv[i], "--key") == 0)
      key = argv[i + 1];
    else
      Usage();
  }
  if (addr == nullptr || cacert == nullptr || cert == nullptr || key == nullptr)
    Usage();

  // The signals are taken synchronously by the main thread below; block
  // them before gRPC starts its threads so that none of those gets them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = ReadFile(cacert);
  ssl.pem_key_cert_pairs.push_back({ReadFile(key), ReadFile(cert)});

  Service service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(addr, grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc-peer: cannot listen on %s\n", addr);
    return 1;
  }
  std::printf("ready port=%d\n", port);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
