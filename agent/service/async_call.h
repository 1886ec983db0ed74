#pragma once
// The gRPC side of capd's calls on the async API (CaptureService).
//
// Why not the callback API: any callback method makes gRPC start its own callback threads, and
// with gRPC 1.51's epoll1 poller every thread waiting in gRPC wakes for the stream's traffic
// (docs/performance.md, sessions 13 and 14). With every method async, the threads in gRPC are
// capd's own: one accepting thread (CaptureService) and one per running stream or fetch, which
// waits only in its own call's completion queue.
//
// ServerStreamCall: one server-streaming call (Stream, FetchRecording) with a completion queue
// of its own, requested by the accepting thread and then driven by one thread (the accepting
// thread for a refusal, else the call's writer). Its queue only ever holds three tags: the
// write in flight, the finish, and the end of the call (AsyncNotifyWhenDone), which comes at
// once when the client cancels.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <optional>

namespace capd::agent {

template <class Request, class Response>
class ServerStreamCall {
 public:
  using Clock = std::chrono::system_clock;  // gRPC's deadlines are system_clock time points

  ServerStreamCall() { context_.AsyncNotifyWhenDone(kDoneTag); }
  ~ServerStreamCall() {
    // Nothing in flight here (FinishAndDrain, or a call gRPC never started): the queue must be
    // shut down and empty before it goes.
    queue_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
    }
  }
  ServerStreamCall(const ServerStreamCall&) = delete;
  ServerStreamCall& operator=(const ServerStreamCall&) = delete;

  grpc::ServerContext& context() { return context_; }
  grpc::ServerAsyncWriter<Response>& writer() { return writer_; }
  grpc::CompletionQueue& queue() { return queue_; }
  Request& request() { return request_; }
  // The accepting thread's word that gRPC started the call (its request completed with ok).
  void MarkStarted() { started_ = true; }

  // Writes `message` (valid until this returns) and waits for the write until `deadline`:
  // true when written, false when the call is over (cancelled, the client gone), nullopt when
  // the deadline passed first (the write is then still in flight: cancel the call, then
  // WaitForWrite()).
  std::optional<bool> Write(const Response& message, Clock::time_point deadline) {
    writer_.Write(message, kWriteTag);
    return WaitFor(kWriteTag, deadline);
  }
  // After Write returned nullopt and the call was cancelled: the write's result.
  bool WaitForWrite() { return WaitFor(kWriteTag, Clock::time_point::max()).value_or(false); }

  // For a writer that starts its operations from several threads (StreamReactor): the next
  // event of the call, or kDeadline when none came by `deadline`. `ok` is the operation's.
  enum class Event { kWritten, kFinished, kDone, kDeadline, kShutdown };
  void StartWrite(const Response& message) { writer_.Write(message, kWriteTag); }
  void StartFinish(const grpc::Status& status) { writer_.Finish(status, kFinishTag); }
  Event Next(Clock::time_point deadline, bool& ok) {
    void* got = nullptr;
    const auto status = queue_.AsyncNext(&got, &ok, deadline);
    if (status == grpc::CompletionQueue::TIMEOUT) return Event::kDeadline;
    if (status == grpc::CompletionQueue::SHUTDOWN) return Event::kShutdown;
    if (got == kDoneTag) {
      done_ = true;
      return Event::kDone;
    }
    return got == kWriteTag ? Event::kWritten : Event::kFinished;
  }

  // Finishes the call with `status` and waits until gRPC is done with it. A client that takes
  // more than `limit` to take the status (it reads nothing) is cancelled.
  void FinishAndWait(const grpc::Status& status, std::chrono::milliseconds limit) {
    writer_.Finish(status, kFinishTag);
    if (!WaitFor(kFinishTag, Clock::now() + limit)) {
      context_.TryCancel();
      WaitFor(kFinishTag, Clock::time_point::max());
    }
    // The done tag comes once the call has started; one that never started has none.
    while (started_ && !done_) {
      if (!WaitFor(nullptr, Clock::time_point::max()).value_or(false)) break;  // shut down
    }
  }

 private:
  static inline void* const kWriteTag = reinterpret_cast<void*>(1);
  static inline void* const kFinishTag = reinterpret_cast<void*>(2);
  static inline void* const kDoneTag = reinterpret_cast<void*>(3);

  // Waits for `tag` until `deadline`: its ok, or nullopt when the deadline passed (or, for
  // tag nullptr, once the done tag came or the deadline passed). The done tag, whenever it
  // comes, sets done_.
  std::optional<bool> WaitFor(void* tag, Clock::time_point deadline) {
    while (true) {
      void* got = nullptr;
      bool ok = false;
      const auto status = queue_.AsyncNext(&got, &ok, deadline);
      if (status == grpc::CompletionQueue::TIMEOUT) return std::nullopt;
      if (status == grpc::CompletionQueue::SHUTDOWN) return false;
      if (got == kDoneTag) {
        done_ = true;
        if (tag == nullptr) return true;
        continue;
      }
      if (got == tag) return ok;
    }
  }

  grpc::ServerContext context_;
  grpc::ServerAsyncWriter<Response> writer_{&context_};
  grpc::CompletionQueue queue_;
  Request request_;
  bool started_ = false;
  bool done_ = false;
};

}  // namespace capd::agent
