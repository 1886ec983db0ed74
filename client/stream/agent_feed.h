#pragma once
// One agent's Stream call, read on a thread of its own into a queue that the merger drains.
//
// How data flows: gRPC reader thread -> Arrival queue (guarded by the shared FeedHub mutex, bounded
// in bytes: a full queue makes the reader wait, so gRPC's flow control pushes back to the agent,
// whose own bounded queue then drops and counts) -> the merger on the main thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "client/stream/agent_channel.h"
#include "proto/capture.grpc.pb.h"

namespace capd::client {

// The lock and wake-up shared by every feed and the merger.
struct FeedHub {
  std::mutex mu;
  std::condition_variable changed;
  // Guarded by mu: bumped by a reader for every message it queues and when its call ends, so
  // the merger can tell that something arrived while it was not waiting (a notification then
  // reaches nobody) and must not wait at all.
  uint64_t arrivals = 0;
};

struct Arrival {
  std::unique_ptr<v1::StreamResponse> message;
  std::chrono::steady_clock::time_point arrived;
  int next_packet = 0;     // merger's cursor into a PacketBatch
  size_t data_offset = 0;  // byte offset of that packet in the batch's blob
  int next_comment = 0;    // cursor into the batch's sparse comments (sorted by packet)
};

class AgentFeed {
 public:
  AgentFeed(size_t index, std::string address, AgentConnection connection,
            v1::StreamRequest request, FeedHub& hub);
  ~AgentFeed();  // cancels and joins
  AgentFeed(const AgentFeed&) = delete;
  AgentFeed& operator=(const AgentFeed&) = delete;

  void Start();
  void Cancel() { context_.TryCancel(); }

  size_t index() const { return index_; }
  const std::string& address() const { return address_; }

  // Guarded by hub.mu:
  std::deque<Arrival> queue;
  size_t queued_bytes = 0;
  bool done = false;  // the call has finished; `status` is set
  grpc::Status status;
  std::optional<v1::StreamEnd> end;  // the agent's StreamEnd, once the merger saw it
  std::string agent_name;            // from its first interface description
  bool started = false;              // an interface description arrived: the capture ran
  bool ended_written = false;        // its statistics blocks are written

 private:
  void ReadLoop();

  // Enough for a second of a fast capture; beyond it the reader waits for the merger.
  static constexpr size_t kMaxQueuedBytes = 64 * 1024 * 1024;

  const size_t index_;
  const std::string address_;
  AgentConnection connection_;
  v1::StreamRequest request_;
  FeedHub& hub_;
  grpc::ClientContext context_;
  std::thread thread_;
};

}  // namespace capd::client
