// What a server-streaming write costs capd's side with each of gRPC's three server APIs, apart
// from capture, protobuf and pcapng: the question is how many thread wake-ups gRPC adds per
// message, and what they cost (docs/performance.md, "Session 13: capd's stream writes").
//
// A producer thread (capd's capture thread) makes MESSAGES messages of BYTES bytes at RATE
// messages a second and hands each to the stream's writer, which keeps one write in flight and
// a queue behind it (bounded at kQueueLimit, tail drop, as capd does). A client process (forked
// before gRPC starts) reads and discards them over loopback TCP. The write path (MODE):
//   callback: grpc::CallbackGenericService, as capd's StreamReactor: the producer starts a write
//             itself when the writer is idle, OnWriteDone (gRPC's callback threads) starts the
//             next.
//   async:    grpc::AsyncGenericService and one thread of the stream's own that both writes and
//             drives the completion queue; the producer wakes it with a grpc::Alarm only when
//             it is idle.
//   sync:     a synchronous server-streaming method; its handler thread waits for messages on a
//             condition variable and ServerWriter::Write blocks on the call's own queue.
// Each side prints its CPU seconds and voluntary context switches for the whole stream
// (getrusage of the process), per message; the server also prints its producer thread's own,
// which every mode pays alike (one timed sleep per message).
//
//   owned:    as async, but the writer thread waits on a condition variable while idle and
//             drives the completion queue only while its write is in flight (no Alarm).
// A "-cb" suffix (async-cb, owned-cb, sync-cb) also registers a callback method nobody calls,
// as capd's other methods are: gRPC's callback threads then poll beside the writer.
// A "-acc" suffix (owned-acc) instead registers an async method nobody calls and a thread
// waiting in a completion queue for its calls, as a server with no callback method needs.
//
// Usage: capd_writer_floor callback|async|owned|sync[-cb|-acc] MESSAGES BYTES RATE

#include <dirent.h>
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/method_handler.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr char kMethod[] = "/capd.bench.WriterFloor/Stream";
constexpr size_t kQueueLimit = 16;
std::atomic<bool> g_server_started{false};  // set by each Run* once its server has started

struct Usage {
  double cpu = 0;
  long switches = 0;  // voluntary
  long involuntary = 0;
};

Usage Now(int who) {
  rusage usage{};
  getrusage(who, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return {seconds(usage.ru_utime) + seconds(usage.ru_stime), usage.ru_nvcsw, usage.ru_nivcsw};
}

void Print(const char* who, const Usage& start, const Usage& end, long messages) {
  const double cpu = end.cpu - start.cpu;
  const long switches = end.switches - start.switches;
  std::fprintf(stderr, "%-9s cpu %.3f s  %.1f us/msg  wake-ups %ld  %.2f/msg  (involuntary %ld)\n",
               who, cpu, cpu * 1e6 / static_cast<double>(messages), switches,
               static_cast<double>(switches) / static_cast<double>(messages),
               end.involuntary - start.involuntary);
}

// Per thread of this process (/proc/self/task): name, CPU ns (schedstat), voluntary switches.
struct ThreadUsage {
  std::string name;
  long long cpu_ns = 0;
  long switches = 0;
};
std::map<int, ThreadUsage> Threads() {
  std::map<int, ThreadUsage> threads;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return threads;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + entry->d_name;
    ThreadUsage usage;
    std::ifstream(task + "/comm") >> usage.name;
    std::ifstream(task + "/schedstat") >> usage.cpu_ns;
    std::ifstream status(task + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        usage.switches = std::atol(line.c_str() + std::strlen("voluntary_ctxt_switches:"));
      }
    }
    threads[std::atoi(entry->d_name)] = usage;
  }
  closedir(dir);
  return threads;
}
void PrintThreads(const std::map<int, ThreadUsage>& start, const std::map<int, ThreadUsage>& end,
                  long messages) {
  for (const auto& [tid, usage] : end) {
    const auto before = start.find(tid);
    const ThreadUsage base = before == start.end() ? ThreadUsage{} : before->second;
    const long switches = usage.switches - base.switches;
    const double cpu_us = static_cast<double>(usage.cpu_ns - base.cpu_ns) / 1e3;
    if (switches == 0 && cpu_us < 1000) continue;
    std::fprintf(stderr, "  thread %-16s %7.1f us/msg  %5.2f wake-ups/msg\n", usage.name.c_str(),
                 cpu_us / static_cast<double>(messages),
                 static_cast<double>(switches) / static_cast<double>(messages));
  }
}

// The messages: slices over one static buffer, so that no copy is measured.
grpc::ByteBuffer MakeMessage(const std::vector<char>& bytes) {
  grpc::Slice slice(bytes.data(), bytes.size(), grpc::Slice::STATIC_SLICE);
  return grpc::ByteBuffer(&slice, 1);
}

// The producer's clock: message i leaves at start + i / rate.
class Pacer {
 public:
  explicit Pacer(long rate) : period_ns_(1000000000L / rate) {
    clock_gettime(CLOCK_MONOTONIC, &next_);
  }
  void Wait() {
    next_.tv_nsec += period_ns_;
    while (next_.tv_nsec >= 1000000000L) {
      next_.tv_nsec -= 1000000000L;
      ++next_.tv_sec;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next_, nullptr);
  }

 private:
  const long period_ns_;
  timespec next_{};
};

// What every mode shares: the queue between producer and writer, and the end.
struct Stream {
  std::mutex mu;
  std::condition_variable changed;
  std::deque<grpc::ByteBuffer> queue;
  bool in_flight = false;
  bool produced_all = false;
  bool finished = false;
  long dropped = 0;
  Usage producer;                  // the producer thread's own, over the stream
  Usage server_start, server_end;  // the process's, from the first message to the call's end
  std::map<int, ThreadUsage> threads_start, threads_end;
};

// Brackets the stream's messages: what the server pays for them, set-up and shutdown left out.
void MarkStart(Stream& stream, Usage& producer_start) {
  stream.threads_start = Threads();
  stream.server_start = Now(RUSAGE_SELF);
  producer_start = Now(RUSAGE_THREAD);
}
void MarkProduced(Stream& stream, const Usage& producer_start) {
  const Usage end = Now(RUSAGE_THREAD);
  stream.producer = {end.cpu - producer_start.cpu, end.switches - producer_start.switches, 0};
}
void WaitForEnd(Stream& stream) {
  std::unique_lock lock(stream.mu);
  stream.changed.wait(lock, [&] { return stream.finished; });
  stream.server_end = Now(RUSAGE_SELF);
  stream.threads_end = Threads();
}

// The producer of the modes with a queue of their own (async, owned): `messages` at `rate` a
// second, a message dropped when kQueueLimit wait (capd's tail drop); `queued` runs after each
// message is queued, with the queue's lock held, to wake the writer as the mode does.
template <typename Queued>
void ProduceIntoQueue(Stream& stream, long messages, const std::vector<char>& bytes, long rate,
                      Queued queued) {
  Pacer pacer(rate);
  for (long i = 0; i < messages; ++i) {
    pacer.Wait();
    std::lock_guard lock(stream.mu);
    if (stream.queue.size() >= kQueueLimit) {
      ++stream.dropped;
      continue;
    }
    stream.queue.push_back(MakeMessage(bytes));
    queued();
  }
}

// ---- callback: capd's StreamReactor, reduced to its writes ----
class CallbackWriter : public grpc::ServerGenericBidiReactor {
 public:
  explicit CallbackWriter(Stream& stream) : stream_(stream) {}
  // Producer thread.
  void Send(grpc::ByteBuffer message) {
    std::lock_guard lock(stream_.mu);
    if (stream_.in_flight) {
      if (stream_.queue.size() >= kQueueLimit) {
        ++stream_.dropped;
        return;
      }
      stream_.queue.push_back(std::move(message));
      return;
    }
    current_ = std::move(message);
    stream_.in_flight = true;
    StartWrite(&current_);
  }
  void End() {
    std::lock_guard lock(stream_.mu);
    stream_.produced_all = true;
    MaybeFinishLocked();
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(stream_.mu);
    stream_.in_flight = false;
    if (!ok) return;
    if (!stream_.queue.empty()) {
      current_ = std::move(stream_.queue.front());
      stream_.queue.pop_front();
      stream_.in_flight = true;
      StartWrite(&current_);
      return;
    }
    MaybeFinishLocked();
  }
  void OnDone() override {
    std::lock_guard lock(stream_.mu);
    stream_.finished = true;
    stream_.changed.notify_all();
  }

 private:
  void MaybeFinishLocked() {
    if (stream_.produced_all && !stream_.in_flight && stream_.queue.empty() && !finish_called_) {
      finish_called_ = true;
      Finish(grpc::Status::OK);
    }
  }
  Stream& stream_;
  grpc::ByteBuffer current_;
  bool finish_called_ = false;
};

class CallbackService : public grpc::CallbackGenericService {
 public:
  explicit CallbackService(Stream& stream) : stream_(stream) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    std::lock_guard lock(stream_.mu);
    writer_ = new CallbackWriter(stream_);
    stream_.changed.notify_all();
    return writer_;
  }
  CallbackWriter* WaitForWriter() {
    std::unique_lock lock(stream_.mu);
    stream_.changed.wait(lock, [this] { return writer_ != nullptr; });
    return writer_;
  }

 private:
  Stream& stream_;
  CallbackWriter* writer_ = nullptr;
};

void RunCallback(grpc::ServerBuilder& builder, Stream& stream, long messages,
                 const std::vector<char>& bytes, long rate) {
  CallbackService service(stream);
  builder.RegisterCallbackGenericService(&service);
  auto server = builder.BuildAndStart();
  g_server_started = true;
  CallbackWriter* writer = service.WaitForWriter();
  Usage start;
  MarkStart(stream, start);
  Pacer pacer(rate);
  for (long i = 0; i < messages; ++i) {
    pacer.Wait();
    writer->Send(MakeMessage(bytes));
  }
  writer->End();
  MarkProduced(stream, start);
  WaitForEnd(stream);
  server->Shutdown();
}

// ---- async: one thread of the stream's own writes and drives the completion queue ----
enum Tag : intptr_t { kNewCall = 1, kWake, kWritten, kFinished };
void* AsTag(Tag tag) { return reinterpret_cast<void*>(tag); }

void RunAsync(grpc::ServerBuilder& builder, Stream& stream, long messages,
              const std::vector<char>& bytes, long rate) {
  grpc::AsyncGenericService service;
  builder.RegisterAsyncGenericService(&service);
  auto cq = builder.AddCompletionQueue();
  auto server = builder.BuildAndStart();
  g_server_started = true;

  grpc::GenericServerContext context;
  grpc::GenericServerAsyncReaderWriter call(&context);
  std::unique_ptr<grpc::Alarm> wake;  // guarded by stream.mu; set while a wake is pending
  bool call_started = false;          // guarded by stream.mu

  std::thread writer([&] {
    service.RequestCall(&context, &call, cq.get(), cq.get(), AsTag(kNewCall));
    grpc::ByteBuffer current;
    bool finish_called = false;
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
      std::unique_lock lock(stream.mu);
      switch (static_cast<Tag>(reinterpret_cast<intptr_t>(tag))) {
        case kNewCall:
          call_started = true;
          stream.changed.notify_all();
          break;
        case kWake:
          wake.reset();
          break;
        case kWritten:
          stream.in_flight = false;
          break;
        case kFinished:
          stream.finished = true;
          stream.changed.notify_all();
          continue;  // drains the queue until it shuts down
      }
      if (!stream.in_flight && !stream.queue.empty()) {
        current = std::move(stream.queue.front());
        stream.queue.pop_front();
        stream.in_flight = true;
        lock.unlock();  // the producer may queue while this write goes out
        call.Write(current, AsTag(kWritten));
      } else if (!stream.in_flight && stream.produced_all && !finish_called) {
        finish_called = true;
        lock.unlock();
        call.Finish(grpc::Status::OK, AsTag(kFinished));
      }
    }
  });
  {
    std::unique_lock lock(stream.mu);
    stream.changed.wait(lock, [&] { return call_started; });
  }
  // Wakes the writer unless a write in flight or a pending wake will look at the queue anyway.
  auto wake_if_idle = [&] {
    if (!stream.in_flight && wake == nullptr) {
      wake = std::make_unique<grpc::Alarm>();
      wake->Set(cq.get(), gpr_now(GPR_CLOCK_MONOTONIC), AsTag(kWake));
    }
  };
  Usage start;
  MarkStart(stream, start);
  ProduceIntoQueue(stream, messages, bytes, rate, wake_if_idle);
  {
    std::lock_guard lock(stream.mu);
    stream.produced_all = true;
    wake_if_idle();
  }
  MarkProduced(stream, start);
  WaitForEnd(stream);
  server->Shutdown();
  cq->Shutdown();
  writer.join();  // the writer drains the queue until it is shut down
}

// ---- owned: like async, but the writer thread waits on a condition variable while it is idle
// and drives the completion queue only while a write is in flight (no grpc::Alarm) ----
void RunOwned(grpc::ServerBuilder& builder, Stream& stream, long messages,
              const std::vector<char>& bytes, long rate) {
  grpc::AsyncGenericService service;
  builder.RegisterAsyncGenericService(&service);
  auto cq = builder.AddCompletionQueue();
  auto server = builder.BuildAndStart();
  g_server_started = true;

  grpc::GenericServerContext context;
  grpc::GenericServerAsyncReaderWriter call(&context);
  bool writer_waiting = false;  // guarded by stream.mu
  std::thread writer([&] {
    void* tag = nullptr;
    bool ok = false;
    service.RequestCall(&context, &call, cq.get(), cq.get(), AsTag(kNewCall));
    if (!cq->Next(&tag, &ok) || !ok) return;
    grpc::ByteBuffer current;
    std::unique_lock lock(stream.mu);
    stream.in_flight = false;
    stream.changed.notify_all();  // the call has started
    while (true) {
      writer_waiting = true;
      stream.changed.wait(lock, [&] { return !stream.queue.empty() || stream.produced_all; });
      writer_waiting = false;
      if (stream.queue.empty()) break;
      current = std::move(stream.queue.front());
      stream.queue.pop_front();
      stream.in_flight = true;
      lock.unlock();
      call.Write(current, AsTag(kWritten));
      const bool next = cq->Next(&tag, &ok);
      lock.lock();
      stream.in_flight = false;
      if (!next || !ok) break;
    }
    lock.unlock();
    call.Finish(grpc::Status::OK, AsTag(kFinished));
    cq->Next(&tag, &ok);
    lock.lock();
    stream.finished = true;
    stream.changed.notify_all();
    lock.unlock();
    while (cq->Next(&tag, &ok)) {
    }
  });
  {
    std::unique_lock lock(stream.mu);
    stream.in_flight = true;  // until the call starts
    stream.changed.wait(lock, [&] { return !stream.in_flight; });
  }
  Usage start;
  MarkStart(stream, start);
  ProduceIntoQueue(stream, messages, bytes, rate, [&] {
    if (writer_waiting) stream.changed.notify_all();
  });
  {
    std::lock_guard lock(stream.mu);
    stream.produced_all = true;
    stream.changed.notify_all();
  }
  MarkProduced(stream, start);
  WaitForEnd(stream);
  server->Shutdown();
  cq->Shutdown();
  writer.join();
}

// A callback method nobody calls: capd serves its other methods with the callback API, so its
// server has gRPC's callback threads polling whatever the stream's writer does ("-cb" modes).
class UnusedCallbackService : public grpc::Service {
 public:
  UnusedCallbackService() {
    AddMethod(new grpc::internal::RpcServiceMethod("/capd.bench.WriterFloor/Unused",
                                                   grpc::internal::RpcMethod::NORMAL_RPC, nullptr));
    MarkMethodCallback(
        0,
        new grpc::internal::CallbackUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
            [](grpc::CallbackServerContext* context, const grpc::ByteBuffer*, grpc::ByteBuffer*) {
              auto* reactor = context->DefaultReactor();
              reactor->Finish(grpc::Status::OK);
              return reactor;
            }));
  }
};

// An async method nobody calls, with a thread waiting for its calls ("-acc" modes): a server
// whose methods are all async still needs one thread in a completion queue for new calls, and
// with epoll1 that thread polls the same descriptors as the stream's writer.
class UnusedAsyncService : public grpc::Service {
 public:
  UnusedAsyncService() {
    AddMethod(new grpc::internal::RpcServiceMethod("/capd.bench.WriterFloor/UnusedAsync",
                                                   grpc::internal::RpcMethod::NORMAL_RPC, nullptr));
    MarkMethodRaw(0);
  }
  // Until the server shuts down.
  void Serve(grpc::ServerCompletionQueue& cq) {
    while (!g_server_started) usleep(1000);
    grpc::ServerContext context;
    grpc::ByteBuffer request;
    grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> responder(&context);
    RequestAsyncUnary(0, &context, &request, &responder, &cq, &cq, AsTag(kNewCall));
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
    }
  }
};

// ---- sync: the handler thread writes, blocking on the call's own queue ----
class SyncService : public grpc::Service {
 public:
  explicit SyncService(Stream& stream) : stream_(stream) {
    AddMethod(new grpc::internal::RpcServiceMethod(
        kMethod, grpc::internal::RpcMethod::SERVER_STREAMING,
        new grpc::internal::ServerStreamingHandler<SyncService, grpc::ByteBuffer, grpc::ByteBuffer>(
            [](SyncService* service, grpc::ServerContext*, const grpc::ByteBuffer*,
               grpc::ServerWriter<grpc::ByteBuffer>* writer) { return service->WriteAll(*writer); },
            this)));
  }
  void WaitForCall() {
    std::unique_lock lock(stream_.mu);
    stream_.changed.wait(lock, [this] { return call_started_; });
  }
  // Producer thread.
  void Send(grpc::ByteBuffer message) {
    std::lock_guard lock(stream_.mu);
    if (stream_.queue.size() >= kQueueLimit) {
      ++stream_.dropped;
      return;
    }
    stream_.queue.push_back(std::move(message));
    if (waiting_) stream_.changed.notify_all();
  }
  void End() {
    std::lock_guard lock(stream_.mu);
    stream_.produced_all = true;
    stream_.changed.notify_all();
  }

 private:
  grpc::Status WriteAll(grpc::ServerWriter<grpc::ByteBuffer>& writer) {
    std::unique_lock lock(stream_.mu);
    call_started_ = true;
    stream_.changed.notify_all();
    while (true) {
      waiting_ = true;
      stream_.changed.wait(lock, [this] { return !stream_.queue.empty() || stream_.produced_all; });
      waiting_ = false;
      if (stream_.queue.empty()) break;
      grpc::ByteBuffer current = std::move(stream_.queue.front());
      stream_.queue.pop_front();
      lock.unlock();
      const bool ok = writer.Write(current);
      lock.lock();
      if (!ok) break;
    }
    stream_.finished = true;
    stream_.changed.notify_all();
    return grpc::Status::OK;
  }
  Stream& stream_;
  bool call_started_ = false;
  bool waiting_ = false;
};

void RunSync(grpc::ServerBuilder& builder, Stream& stream, long messages,
             const std::vector<char>& bytes, long rate) {
  SyncService service(stream);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  g_server_started = true;
  service.WaitForCall();
  Usage start;
  MarkStart(stream, start);
  Pacer pacer(rate);
  for (long i = 0; i < messages; ++i) {
    pacer.Wait();
    service.Send(MakeMessage(bytes));
  }
  service.End();
  MarkProduced(stream, start);
  WaitForEnd(stream);
  server->Shutdown();
}

// ---- the client: one thread reads and discards (generic stub, its own completion queue) ----
int RunClient(int port, long messages) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  // CLIENT_WINDOW (bytes): the HTTP/2 window the client asks for (stream lookahead), without
  // BDP probing unless CLIENT_BDP=1; unset, gRPC's default (BDP probing sizes it).
  if (const char* window = std::getenv("CLIENT_WINDOW")) {
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, std::atoi(window));
    const char* bdp = std::getenv("CLIENT_BDP");
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, bdp != nullptr && std::string(bdp) == "1" ? 1 : 0);
  }
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  void* tag = nullptr;
  bool ok = false;
  auto call = stub.PrepareCall(&context, kMethod, &cq);
  call->StartCall(AsTag(kNewCall));
  if (!cq.Next(&tag, &ok) || !ok) return 1;
  const char request_byte = 0;
  grpc::Slice request_slice(&request_byte, 1);
  grpc::ByteBuffer request(&request_slice, 1);
  call->WriteLast(request, grpc::WriteOptions(), AsTag(kWritten));
  if (!cq.Next(&tag, &ok) || !ok) return 1;
  const Usage start = Now(RUSAGE_SELF);
  long received = 0;
  grpc::ByteBuffer message;
  while (true) {
    call->Read(&message, AsTag(kWake));
    if (!cq.Next(&tag, &ok) || !ok) break;
    ++received;
    message.Clear();
  }
  const Usage end = Now(RUSAGE_SELF);
  grpc::Status status;
  call->Finish(&status, AsTag(kFinished));
  cq.Next(&tag, &ok);
  Print("client", start, end, received);
  std::fprintf(stderr, "client    received %ld of %ld messages, status %d\n", received, messages,
               static_cast<int>(status.error_code()));
  return status.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(
        stderr,
        "usage: capd_writer_floor callback|async|owned|sync[-cb|-acc] MESSAGES BYTES RATE\n");
    return 2;
  }
  std::string mode = argv[1];
  auto suffix = [&mode](const char* tail) {
    const size_t length = std::strlen(tail);
    if (mode.size() <= length || mode.compare(mode.size() - length, length, tail) != 0)
      return false;
    mode.resize(mode.size() - length);
    return true;
  };
  const bool with_callbacks = suffix("-cb");
  const bool with_acceptor = suffix("-acc");
  const long messages = std::atol(argv[2]);
  const long size = std::atol(argv[3]);
  const long rate = std::atol(argv[4]);
  if (messages <= 0 || size <= 0 || rate <= 0 ||
      (mode != "callback" && mode != "async" && mode != "owned" && mode != "sync")) {
    return 2;
  }
  // The client is forked before gRPC starts in this process; it learns the port through a pipe.
  int port_pipe[2];
  if (pipe(port_pipe) != 0) return 1;
  const pid_t client = fork();
  if (client < 0) return 1;
  if (client == 0) {
    close(port_pipe[1]);
    int port = 0;
    if (read(port_pipe[0], &port, sizeof port) != sizeof port) _exit(1);
    _exit(RunClient(port, messages));
  }
  close(port_pipe[0]);

  const std::vector<char> bytes(static_cast<size_t>(size), 0x5a);
  Stream stream;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  // The port is known once the server starts: each Run* builds it; tell the client from a thread
  // that waits for it.
  UnusedCallbackService unused;
  if (with_callbacks) builder.RegisterService(&unused);
  UnusedAsyncService unused_async;
  std::unique_ptr<grpc::ServerCompletionQueue> accept_cq;
  std::thread acceptor;
  if (with_acceptor) {
    builder.RegisterService(&unused_async);
    accept_cq = builder.AddCompletionQueue();
    acceptor = std::thread([&] { unused_async.Serve(*accept_cq); });
  }
  std::thread tell([&] {
    while (__atomic_load_n(&port, __ATOMIC_ACQUIRE) == 0) usleep(1000);
    const int known = __atomic_load_n(&port, __ATOMIC_ACQUIRE);
    if (write(port_pipe[1], &known, sizeof known) != sizeof known) std::perror("write");
  });
  if (mode == "callback") RunCallback(builder, stream, messages, bytes, rate);
  if (mode == "async") RunAsync(builder, stream, messages, bytes, rate);
  if (mode == "owned") RunOwned(builder, stream, messages, bytes, rate);
  if (mode == "sync") RunSync(builder, stream, messages, bytes, rate);
  tell.join();
  if (with_acceptor) {
    accept_cq->Shutdown();
    acceptor.join();
  }
  int status = 0;
  waitpid(client, &status, 0);
  std::fprintf(stderr, "mode %s%s, %ld messages of %ld bytes at %ld/s, %ld dropped\n", mode.c_str(),
               with_callbacks  ? " (with a callback service)"
               : with_acceptor ? " (with an accepting thread)"
                               : "",
               messages, size, rate, stream.dropped);
  Print("server", stream.server_start, stream.server_end, messages);
  PrintThreads(stream.threads_start, stream.threads_end, messages);
  const Usage producer_end{stream.producer.cpu, stream.producer.switches, 0};
  Print("producer", Usage{}, producer_end, messages);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
