#pragma once
// One agent's Stream call, read on a thread of its own into a queue that the merger drains.
//
// How data flows: gRPC reader thread -> Arrival queue (guarded by the shared FeedHub mutex, bounded
// in bytes: a full queue makes the reader wait, so gRPC's flow control pushes back to the agent,
// whose own bounded queue then drops and counts) -> the merger on the main thread.

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "client/stream/agent_channel.h"
#include "client/stream/feed.h"
#include "proto/capture.grpc.pb.h"

namespace capd::client {

// The gRPC side of a Feed: Start() opens the Stream call and reads it on a thread of its own.
class AgentFeed final : public Feed {
 public:
  AgentFeed(size_t index, std::string address, AgentConnection connection,
            v1::StreamRequest request, FeedHub& hub);
  ~AgentFeed() override;  // cancels and joins

  void Start() override;
  void Cancel() override { context_.TryCancel(); }

  // Changes what the agent captures for this stream (capd.v1 ChangeStream) and waits for its
  // answer (at most kChangeTimeout): the kernel filter it now applies, or why not (its refusal
  // via FromGrpcStatus; kUnavailable before the stream started; kFailedPrecondition from an
  // agent that cannot change a running stream). Thread-safe; any thread but the merger's.
  StatusOr<v1::ChangeStreamResponse> Change(v1::ChangeStreamRequest change);
  // Longer than capd-filters' compile budget (1.5 s) plus a capture loop's pass.
  static constexpr std::chrono::seconds kChangeTimeout{10};

 private:
  void ReadLoop();
  // The handle the agent gave with the stream's first message, once it came.
  void NoteHandle();

  // Enough for a second of a fast capture; beyond it the reader waits for the merger.
  static constexpr size_t kMaxQueuedBytes = 64 * 1024 * 1024;
  // Batches kept for reuse once written (BatchRecycler): up to ~2.5 MiB each.
  static constexpr size_t kSpareBatches = 4;

  AgentConnection connection_;
  v1::StreamRequest request_;
  FeedHub& hub_;
  grpc::ClientContext context_;
  std::thread thread_;
  std::mutex handle_mu_;
  // The request has triggers: whether the agent's answer was checked for "capd-trigger", and
  // whether it lacked it (reader thread only).
  bool trigger_checked_ = false;
  bool trigger_ignored_ = false;
  std::optional<std::string> handle_;  // guarded: set (maybe empty: an older agent) once started
};

}  // namespace capd::client
