// grpc-load: the benchmark's second load generator, built on gRPC C++'s own
// async client (Debian's libgrpc++), so that the unary figures also describe
// the load shape a real gRPC client makes: each call is its own HTTP/2
// stream, written when the library writes it (about one write and one read
// per call), over channels of the library's defaults.
//
// Modes:
//   unary  Status of one `sleep 600` job, --inflight calls kept in flight
//          (closed loop) over --conns channels for --duration seconds after
//          --warmup; QPS and latency percentiles. The job is stopped after.
//   start  Start of /bin/true the same way; jobs per second.
//   stream --subs GetOutput server streams of one job over --conns channels:
//          a new `head -c --bytes /dev/zero` (or with --lines N a new
//          `awk 'BEGIN{for(i=0;i<N;i++){print i; fflush()}}'`, one write per
//          line), the streams opened while it runs (live), or with --replay
//          once it is final; or --job ID (a final job; --bytes or --lines
//          say what it wrote). Every stream's bytes are compared with the
//          job's output as they arrive and its length checked at the end;
//          aggregate MiB/s, the server's CPU and its RSS peak (VmRSS sampled
//          every 10 ms by a thread of its own).
//
// Each channel gets its own connection (a local subchannel pool); the calls
// are spread over them round robin. One thread drives one completion queue,
// as jw-load drives one libuv loop. With --server-pid the server's CPU time
// and run-queue wait are read at the start and end of the measured window.
// It talks to loopback addresses only, is bounded in time (--timeout), and
// prints one JSON object on stdout with the same keys as jw-load's; failures
// go to stderr with exit status 1.

#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jobworker.grpc.pb.h"

namespace {

using jobworker::v1::GetOutputRequest;
using jobworker::v1::JobOutput;
using jobworker::v1::JobRequest;
using jobworker::v1::JobStatus;
using jobworker::v1::JobWorker;
using jobworker::v1::StatusRequest;
using jobworker::v1::StopRequest;

// The latencies kept: 16 Mi samples (128 MiB) bound the memory of a long run.
constexpr size_t kMaxLatencies = 16u * 1024 * 1024;
constexpr int kMaxConns = 1024;
constexpr int kMaxInflight = 65536;
// A call that takes longer than this is a failure, not a latency.
constexpr int kCallDeadlineS = 10;
constexpr int kMaxSubs = 100000;
// The --lines job's output is built in memory to compare with: 10M lines
// are 78 MiB.
constexpr uint64_t kMaxLines = 10000000;
constexpr int kSampleMs = 10;
constexpr int kPollMs = 20;

uint64_t NowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::string ReadFile(const char *path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "grpc-load: cannot read %s\n", path);
    std::exit(1);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The user+system CPU seconds of a process (all its threads).
double ReadCpuS(int pid) {
  if (pid <= 0)
    return 0;
  char path[64], buf[1024];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = std::fopen(path, "r");
  if (f == nullptr)
    return 0;
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  char *p = std::strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  // After the command: state, then fields 4..13, then utime and stime.
  if (p == nullptr || std::sscanf(p + 2,
                                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                                  "%*u %llu %llu",
                                  &ut, &st) != 2)
    return 0;
  return static_cast<double>(ut + st) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The seconds a process's threads waited runnable for a CPU (schedstat).
double ReadWaitS(int pid) {
  if (pid <= 0)
    return 0;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (d == nullptr)
    return 0;
  double total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != nullptr) {
    if (e->d_name[0] == '.')
      continue;
    char f[384], line[128];
    std::snprintf(f, sizeof(f), "%s/%s/schedstat", path, e->d_name);
    FILE *fp = std::fopen(f, "r");
    if (fp == nullptr)
      continue;
    unsigned long long run = 0, wait = 0;
    if (std::fgets(line, sizeof(line), fp) != nullptr &&
        std::sscanf(line, "%llu %llu", &run, &wait) == 2)
      total += static_cast<double>(wait) / 1e9;
    std::fclose(fp);
  }
  closedir(d);
  return total;
}

// The resident set of a process (VmRSS), KiB; 0 when unknown.
long ReadRssKib(int pid) {
  if (pid <= 0)
    return 0;
  char path[64], line[256];
  std::snprintf(path, sizeof(path), "/proc/%d/status", pid);
  FILE *f = std::fopen(path, "r");
  if (f == nullptr)
    return 0;
  long kb = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr)
    if (std::sscanf(line, "VmRSS: %ld", &kb) == 1)
      break;
  std::fclose(f);
  return kb;
}

struct CpuMark {
  uint64_t wall_ns = 0;
  double server_s = 0, client_s = 0, server_wait_s = 0, client_wait_s = 0;
};

CpuMark Mark(int server_pid) {
  CpuMark m;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  m.wall_ns = NowNs();
  m.server_s = ReadCpuS(server_pid);
  m.server_wait_s = ReadWaitS(server_pid);
  m.client_wait_s = ReadWaitS(getpid());
  m.client_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
               ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  return m;
}

// One call in flight; a new one per call, as a client makes them.
struct Call {
  int slot = 0;
  uint64_t t0 = 0;
  grpc::ClientContext ctx;
  JobStatus reply;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<JobStatus>> rpc;
};

struct Options {
  std::string mode = "unary";
  const char *addr = nullptr, *cacert = nullptr, *cert = nullptr,
             *key = nullptr;
  const char *job = nullptr;
  int conns = 1, inflight = 1, subs = 1, server_pid = 0;
  uint64_t bytes = 0, lines = 0;
  bool replay = false;
  double duration_s = 2, warmup_s = 0.5, timeout_s = 120;
};

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: grpc-load MODE --addr HOST:PORT --cacert F --cert F "
               "--key F\n"
               "  MODE: unary | start | stream\n"
               "  --conns N       connections (default 1, at most %d)\n"
               "  --inflight N    calls in flight (default 1, at most %d)\n"
               "  --subs N        GetOutput streams (stream; default 1, at "
               "most %d)\n"
               "  --bytes N       the job writes N zero bytes (stream)\n"
               "  --lines N       the job prints N lines, one write each "
               "(stream; at most %" PRIu64 ")\n"
               "  --job ID        stream this final job's output\n"
               "  --replay        open the streams once the job is final\n"
               "  --duration S    measured seconds (default 2)\n"
               "  --warmup S      seconds before measuring (default 0.5)\n"
               "  --server-pid P  read this process's CPU time\n"
               "  --timeout S     give up after S seconds (default 120)\n",
               kMaxConns, kMaxInflight, kMaxSubs, kMaxLines);
  std::exit(2);
}

Options Parse(int argc, char **argv) {
  Options o;
  if (argc < 2)
    Usage();
  o.mode = argv[1];
  if (o.mode != "unary" && o.mode != "start" && o.mode != "stream")
    Usage();
  for (int i = 2; i < argc; i += 2) {
    if (std::strcmp(argv[i], "--replay") == 0) {
      o.replay = true;
      i--; // a flag without a value
      continue;
    }
    if (i + 1 >= argc)
      Usage();
    const char *k = argv[i], *v = argv[i + 1];
    if (std::strcmp(k, "--subs") == 0)
      o.subs = std::atoi(v);
    else if (std::strcmp(k, "--bytes") == 0)
      o.bytes = std::strtoull(v, nullptr, 10);
    else if (std::strcmp(k, "--lines") == 0)
      o.lines = std::strtoull(v, nullptr, 10);
    else if (std::strcmp(k, "--job") == 0)
      o.job = v;
    else if (std::strcmp(k, "--addr") == 0)
      o.addr = v;
    else if (std::strcmp(k, "--cacert") == 0)
      o.cacert = v;
    else if (std::strcmp(k, "--cert") == 0)
      o.cert = v;
    else if (std::strcmp(k, "--key") == 0)
      o.key = v;
    else if (std::strcmp(k, "--conns") == 0)
      o.conns = std::atoi(v);
    else if (std::strcmp(k, "--inflight") == 0)
      o.inflight = std::atoi(v);
    else if (std::strcmp(k, "--duration") == 0)
      o.duration_s = std::atof(v);
    else if (std::strcmp(k, "--warmup") == 0)
      o.warmup_s = std::atof(v);
    else if (std::strcmp(k, "--server-pid") == 0)
      o.server_pid = std::atoi(v);
    else if (std::strcmp(k, "--timeout") == 0)
      o.timeout_s = std::atof(v);
    else
      Usage();
  }
  if (o.addr == nullptr || o.cacert == nullptr || o.cert == nullptr ||
      o.key == nullptr || o.conns < 1 || o.conns > kMaxConns ||
      o.inflight < 1 || o.inflight > kMaxInflight || o.subs < 1 ||
      o.subs > kMaxSubs || o.lines > kMaxLines ||
      (o.bytes > 0 && o.lines > 0) ||
      (o.mode == "stream" && o.job == nullptr && o.bytes == 0 &&
       o.lines == 0) ||
      o.duration_s <= 0 || o.warmup_s < 0 || o.timeout_s <= 0 ||
      o.duration_s + o.warmup_s >= o.timeout_s)
    Usage();
  // Loopback only: this program is a load generator.
  if (std::strncmp(o.addr, "127.", 4) != 0 &&
      std::strncmp(o.addr, "[::1]", 5) != 0 &&
      std::strncmp(o.addr, "localhost:", 10) != 0) {
    std::fprintf(stderr, "grpc-load: --addr must be a loopback address\n");
    std::exit(2);
  }
  return o;
}

double Pct(const std::vector<uint64_t> &lat, double p) {
  if (lat.empty())
    return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(lat.size() - 1) + 0.5);
  return static_cast<double>(lat[i]) / 1000.0;
}

} // namespace

namespace {

// The output of `awk 'BEGIN{for(i=0;i<N;i++){print i; fflush()}}'`.
std::string LinesOutput(uint64_t n) {
  std::string s;
  char buf[32];
  for (uint64_t i = 0; i < n; i++) {
    int k = std::snprintf(buf, sizeof(buf), "%" PRIu64 "\n", i);
    s.append(buf, static_cast<size_t>(k));
  }
  return s;
}

// What every stream must receive: N zero bytes, or a text held in memory,
// or (a given job of unknown content) only a length.
struct Expected {
  bool zeros = false, known = false;
  std::string text;
  uint64_t bytes = 0;

  // Whether data belongs at offset off of the output.
  bool Matches(uint64_t off, const std::string &data) const {
    if (off + data.size() > bytes)
      return false;
    if (!known)
      return true;
    if (!zeros)
      return std::memcmp(text.data() + off, data.data(), data.size()) == 0;
    static const char zero[4096] = {0};
    for (size_t i = 0; i < data.size(); i += sizeof(zero)) {
      size_t n = std::min(sizeof(zero), data.size() - i);
      if (std::memcmp(data.data() + i, zero, n) != 0)
        return false;
    }
    return true;
  }
};

// One GetOutput stream; its one operation in flight says what the next
// completion is.
struct Sub {
  enum Op { kStart, kRead, kFinish } op = kStart;
  grpc::ClientContext ctx;
  JobOutput msg;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncReader<JobOutput>> rpc;
  uint64_t bytes = 0;
  bool bad = false;
};

bool StatusOf(JobWorker::Stub *stub, const std::string &id, JobStatus *st) {
  StatusRequest req;
  req.set_id(id);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(kCallDeadlineS));
  grpc::Status s = stub->Status(&ctx, req, st);
  if (!s.ok())
    std::fprintf(stderr, "grpc-load: Status: %s\n", s.error_message().c_str());
  return s.ok();
}

// Polls Status every 20 ms until the job is no longer running.
bool WaitFinal(JobWorker::Stub *stub, const std::string &id, uint64_t t_give_up,
               JobStatus *st) {
  for (;;) {
    if (!StatusOf(stub, id, st))
      return false;
    if (st->state() != jobworker::v1::JOB_STATE_RUNNING)
      return true;
    if (NowNs() > t_give_up) {
      std::fprintf(stderr, "grpc-load: timed out waiting for job %s\n",
                   id.c_str());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
  }
}

int RunStream(const Options &o,
              std::vector<std::unique_ptr<JobWorker::Stub>> &stubs) {
  const uint64_t t_give_up = NowNs() + static_cast<uint64_t>(o.timeout_s * 1e9);
  Expected want;
  if (o.lines > 0) {
    want.text = LinesOutput(o.lines);
    want.bytes = want.text.size();
    want.known = true;
  } else if (o.bytes > 0) {
    want.bytes = o.bytes;
    want.zeros = want.known = true;
  }
  std::string id;
  JobStatus st;
  if (o.job != nullptr) {
    id = o.job;
    if (!WaitFinal(stubs[0].get(), id, t_give_up, &st))
      return 1;
    if (!want.known)
      want.bytes = st.output_bytes();
  } else {
    JobRequest jr;
    if (o.lines > 0) {
      jr.set_command("awk");
      jr.add_args("BEGIN{for(i=0;i<" + std::to_string(o.lines) +
                  ";i++){print i; fflush()}}");
    } else {
      jr.set_command("head");
      jr.add_args("-c");
      jr.add_args(std::to_string(o.bytes));
      jr.add_args("/dev/zero");
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(kCallDeadlineS));
    grpc::Status s = stubs[0]->Start(&ctx, jr, &st);
    if (!s.ok()) {
      std::fprintf(stderr, "grpc-load: Start: %s\n", s.error_message().c_str());
      return 1;
    }
    id = st.id();
    if (o.replay && !WaitFinal(stubs[0].get(), id, t_give_up, &st))
      return 1;
  }

  // The RSS peak: a thread samples while the streams run.
  std::atomic<bool> sampling{true};
  std::atomic<long> rss_peak{ReadRssKib(o.server_pid)};
  const long rss_base = rss_peak.load();
  std::thread sampler([&] {
    while (sampling.load()) {
      long kb = ReadRssKib(o.server_pid);
      if (kb > rss_peak.load())
        rss_peak.store(kb);
      std::this_thread::sleep_for(std::chrono::milliseconds(kSampleMs));
    }
  });

  GetOutputRequest req;
  req.set_id(id);
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Sub>> subs;
  subs.reserve(static_cast<size_t>(o.subs));
  CpuMark m0 = Mark(o.server_pid);
  for (int i = 0; i < o.subs; i++) {
    subs.push_back(std::make_unique<Sub>());
    Sub *s = subs.back().get();
    s->ctx.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
    s->rpc = stubs[static_cast<size_t>(i % o.conns)]->PrepareAsyncGetOutput(
        &s->ctx, req, &cq);
    s->rpc->StartCall(s);
  }
  int left = o.subs, failed = 0;
  uint64_t total = 0;
  std::string first_error;
  while (left > 0) {
    void *tag = nullptr;
    bool got = false;
    auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(1);
    grpc::CompletionQueue::NextStatus ns = cq.AsyncNext(&tag, &got, deadline);
    if (NowNs() > t_give_up) {
      // The streams' deadlines end them; the queue drains below.
      if (first_error.empty())
        first_error = "timed out";
      for (auto &s : subs)
        s->ctx.TryCancel();
    }
    if (ns == grpc::CompletionQueue::TIMEOUT)
      continue;
    if (ns == grpc::CompletionQueue::SHUTDOWN)
      break;
    Sub *s = static_cast<Sub *>(tag);
    switch (s->op) {
    case Sub::kStart:
    case Sub::kRead:
      if (s->op == Sub::kRead && got) {
        if (!s->bad && !want.Matches(s->bytes, s->msg.data()))
          s->bad = true;
        s->bytes += s->msg.data().size();
        total += s->msg.data().size();
      }
      if (got && !s->bad) {
        s->op = Sub::kRead;
        s->rpc->Read(&s->msg, s);
      } else {
        if (s->bad)
          s->ctx.TryCancel();
        s->op = Sub::kFinish;
        s->rpc->Finish(&s->status, s);
      }
      break;
    case Sub::kFinish:
      left--;
      if (!s->status.ok() || s->bad || s->bytes != want.bytes) {
        if (failed++ == 0) {
          char buf[256];
          std::snprintf(
              buf, sizeof(buf), "%s after %" PRIu64 " of %" PRIu64 " bytes%s",
              s->status.ok() ? "OK" : s->status.error_message().c_str(),
              s->bytes, want.bytes,
              s->bad ? " (bytes differ from the job's output)" : "");
          if (first_error.empty())
            first_error = buf;
          else
            first_error += std::string(": ") + buf;
        }
      }
      break;
    }
  }
  const uint64_t t_end = NowNs();
  CpuMark m1 = Mark(o.server_pid);
  sampling.store(false);
  sampler.join();
  long kb = ReadRssKib(o.server_pid);
  if (kb > rss_peak.load())
    rss_peak.store(kb);
  cq.Shutdown();
  void *tag;
  bool got;
  while (cq.Next(&tag, &got)) {
  }
  if (failed > 0 || left > 0) {
    std::fprintf(stderr, "grpc-load: %d of %d streams failed; the first: %s\n",
                 failed + left, o.subs, first_error.c_str());
    return 1;
  }
  uint64_t min = UINT64_MAX;
  for (auto &s : subs)
    min = std::min(min, s->bytes);
  double t = static_cast<double>(t_end - m0.wall_ns) / 1e9;
  double window = static_cast<double>(m1.wall_ns - m0.wall_ns) / 1e9;
  std::printf(
      "{\"mode\":\"stream\",\"client\":\"grpc++\",\"replay\":%s,\"subs\":%d,"
      "\"conns\":%d,\"job\":\"%s\",\"bytes_per_sub\":%" PRIu64
      ",\"total_bytes\":%" PRIu64 ",\"seconds\":%.3f,\"mib_s\":%.1f,"
      "\"server_cpu\":%.3f,\"client_cpu\":%.3f,\"server_runq\":%.3f,"
      "\"client_runq\":%.3f,\"rss_base_kib\":%ld,\"rss_peak_kib\":%ld}\n",
      o.replay || o.job != nullptr ? "true" : "false", o.subs, o.conns,
      id.c_str(), min, total, t, static_cast<double>(total) / 1048576.0 / t,
      (m1.server_s - m0.server_s) / window,
      (m1.client_s - m0.client_s) / window,
      (m1.server_wait_s - m0.server_wait_s) / window,
      (m1.client_wait_s - m0.client_wait_s) / window, rss_base,
      rss_peak.load());
  std::fflush(stdout);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = Parse(argc, argv);

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(o.cacert);
  ssl.pem_private_key = ReadFile(o.key);
  ssl.pem_cert_chain = ReadFile(o.cert);
  auto creds = grpc::SslCredentials(ssl);

  std::vector<std::unique_ptr<JobWorker::Stub>> stubs;
  for (int i = 0; i < o.conns; i++) {
    grpc::ChannelArguments args;
    // Without it channels of the same target and arguments share one
    // connection; the figure asks for --conns of them.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // The test server certificate names localhost (and 127.0.0.1).
    args.SetSslTargetNameOverride("localhost");
    auto ch = grpc::CreateCustomChannel(o.addr, creds, args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() +
                              std::chrono::seconds(10))) {
      std::fprintf(stderr, "grpc-load: cannot connect to %s\n", o.addr);
      return 1;
    }
    stubs.push_back(JobWorker::NewStub(ch));
  }
  if (o.mode == "stream")
    return RunStream(o, stubs);

  // The job Status asks about: a `sleep 600`, stopped at the end.
  std::string job;
  JobRequest start_req;
  StatusRequest status_req;
  if (o.mode == "unary") {
    JobRequest jr;
    jr.set_command("sleep");
    jr.add_args("600");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(kCallDeadlineS));
    JobStatus st;
    grpc::Status s = stubs[0]->Start(&ctx, jr, &st);
    if (!s.ok()) {
      std::fprintf(stderr, "grpc-load: Start: %s\n", s.error_message().c_str());
      return 1;
    }
    job = st.id();
    status_req.set_id(job);
  } else {
    start_req.set_command("/bin/true");
  }

  grpc::CompletionQueue cq;
  std::vector<uint64_t> lat;
  lat.reserve(std::min<size_t>(kMaxLatencies, 1u << 20));
  uint64_t ok = 0, errors = 0;
  std::string first_error;
  const uint64_t t_begin = NowNs();
  const uint64_t t_measure = t_begin + static_cast<uint64_t>(o.warmup_s * 1e9);
  const uint64_t t_stop = t_measure + static_cast<uint64_t>(o.duration_s * 1e9);
  const uint64_t t_give_up = t_begin + static_cast<uint64_t>(o.timeout_s * 1e9);
  CpuMark m0, m1;

  auto issue = [&](int slot) {
    Call *c = new Call;
    c->slot = slot;
    c->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(kCallDeadlineS));
    JobWorker::Stub *stub = stubs[static_cast<size_t>(slot % o.conns)].get();
    c->t0 = NowNs();
    if (o.mode == "unary")
      c->rpc = stub->PrepareAsyncStatus(&c->ctx, status_req, &cq);
    else
      c->rpc = stub->PrepareAsyncStart(&c->ctx, start_req, &cq);
    c->rpc->StartCall();
    c->rpc->Finish(&c->reply, &c->status, c);
  };

  for (int i = 0; i < o.inflight; i++)
    issue(i);
  int outstanding = o.inflight;
  bool failed = false;
  while (outstanding > 0) {
    void *tag = nullptr;
    bool got = false;
    auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(1);
    grpc::CompletionQueue::NextStatus ns = cq.AsyncNext(&tag, &got, deadline);
    uint64_t now = NowNs();
    if (now > t_give_up) {
      std::fprintf(stderr, "grpc-load: timed out with %d calls in flight\n",
                   outstanding);
      return 1;
    }
    if (ns == grpc::CompletionQueue::TIMEOUT)
      continue;
    if (ns == grpc::CompletionQueue::SHUTDOWN)
      break;
    Call *c = static_cast<Call *>(tag);
    // The window's marks are taken as calls complete, on the window's clock.
    if (m0.wall_ns == 0 && now >= t_measure)
      m0 = Mark(o.server_pid);
    if (m1.wall_ns == 0 && now >= t_stop)
      m1 = Mark(o.server_pid);
    if (!got || !c->status.ok()) {
      if (errors++ == 0)
        first_error = c->status.error_message();
    } else if (now >= t_measure && now <= t_stop) {
      ok++;
      if (lat.size() < kMaxLatencies)
        lat.push_back(now - c->t0);
    }
    int slot = c->slot;
    delete c;
    if (errors > 100 && errors > ok) {
      failed = true;
      std::fprintf(stderr, "grpc-load: too many failed calls; the first: %s\n",
                   first_error.c_str());
      break;
    }
    if (now < t_stop)
      issue(slot);
    else
      outstanding--;
  }
  if (failed) {
    // The calls still in flight end with the queue.
    cq.Shutdown();
    void *tag;
    bool got;
    while (cq.Next(&tag, &got))
      delete static_cast<Call *>(tag);
    return 1;
  }
  if (m1.wall_ns == 0)
    m1 = Mark(o.server_pid);
  if (ok == 0) {
    std::fprintf(stderr, "grpc-load: every call failed; the first: %s\n",
                 first_error.c_str());
    return 1;
  }

  if (!job.empty()) {
    StopRequest sr;
    sr.set_id(job);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(kCallDeadlineS));
    JobStatus st;
    stubs[0]->Stop(&ctx, sr, &st);
  }

  std::sort(lat.begin(), lat.end());
  double window = (t_stop - t_measure) / 1e9;
  double cpu_window = (m1.wall_ns - m0.wall_ns) / 1e9;
  if (cpu_window <= 0)
    cpu_window = window;
  std::printf(
      "{\"mode\":\"%s\",\"client\":\"grpc++\",\"conns\":%d,\"inflight\":%d,"
      "\"seconds\":%.3f,\"calls\":%" PRIu64 ",\"errors\":%" PRIu64
      ",\"qps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
      "\"server_cpu\":%.3f,\"client_cpu\":%.3f,\"server_runq\":%.3f,"
      "\"client_runq\":%.3f,\"server_cpu_us_per_call\":%.1f}\n",
      o.mode.c_str(), o.conns, o.inflight, window, ok, errors, ok / window,
      Pct(lat, 0.5), Pct(lat, 0.9), Pct(lat, 0.99),
      (m1.server_s - m0.server_s) / cpu_window,
      (m1.client_s - m0.client_s) / cpu_window,
      (m1.server_wait_s - m0.server_wait_s) / cpu_window,
      (m1.client_wait_s - m0.client_wait_s) / cpu_window,
      (m1.server_s - m0.server_s) * 1e6 / static_cast<double>(ok));
  std::fflush(stdout);
  cq.Shutdown();
  void *tag;
  bool got;
  while (cq.Next(&tag, &got))
    delete static_cast<Call *>(tag);
  return 0;
}
