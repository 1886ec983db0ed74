#pragma once
// One agent's stream as the merger sees it: a queue of the agent's messages, filled by a reader
// (AgentFeed: a gRPC call on a thread of its own; a unit test: messages pushed by hand) and
// drained by the merger.
//
// How data flows: reader -> Feed::queue (guarded by the shared FeedHub mutex; the reader bumps
// FeedHub::arrivals and notifies `changed` for every message and when its call ends) -> Merger.
// Or, when the session allows it (FeedHub::write_on_reader), the reader writes the batch it just
// queued itself, on its own thread, while its bytes are still in this CPU's cache; the merger is
// then not woken for it.

#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "capfile/stream_to_file.h"
#include "proto/capture.pb.h"

namespace capd::client {

class Feed;

// The lock and wake-up shared by every feed and the merger.
struct FeedHub {
  std::mutex mu;
  std::condition_variable changed;
  // Guarded by mu: bumped by a reader for every message it queues and when its call ends, so
  // the merger can tell that something arrived while it was not waiting (a notification then
  // reaches nobody) and must not wait at all.
  uint64_t arrivals = 0;
  // Set before the feeds start, then only read; may be empty. Called by a reader right after it
  // queued a message, with `mu` held through `lock` (it may release and retake it): writes what
  // the feed has queued on the reader's thread and returns true, or returns false having done
  // nothing, and the reader announces the message as usual (arrivals, `changed`).
  std::function<bool(Feed&, std::unique_lock<std::mutex>& lock)> write_on_reader;
};

struct Arrival {
  // Shared: the merger lends it to the writer, which may write a batch's large packets from it
  // at its next Flush, after the merger has moved on (capfile::PacketRun::data_owner).
  std::shared_ptr<v1::StreamResponse> message;
  std::chrono::steady_clock::time_point arrived;
  // A PacketBatch, once the merger has checked it (at the head of the queue), and how far the
  // merger has written it.
  std::optional<capfile::BatchView> view;
  capfile::BatchCursor cursor;
};

class Feed {
 public:
  Feed(size_t index, std::string address) : index_(index), address_(std::move(address)) {}
  virtual ~Feed() = default;
  Feed(const Feed&) = delete;
  Feed& operator=(const Feed&) = delete;

  // Starts reading (called once, by the session, before it merges). Must not block.
  virtual void Start() = 0;
  // Asks the reader to stop; it then sets `done` (promptly) and notifies the hub. Thread-safe.
  virtual void Cancel() = 0;

  // The feed's position among the session's feeds, from 0.
  size_t index() const { return index_; }
  // The agent as the user named it (--agent), for messages.
  const std::string& address() const { return address_; }

  // Set before Start, then only read: an instance of a selection ("i-0abc (web-1)", see
  // AgentAddress::label), the name its interfaces get instead of the agent's own.
  std::string label;

  // Guarded by the hub's mutex:
  std::deque<Arrival> queue;
  size_t queued_bytes = 0;
  bool done = false;  // the call has finished; `status` is set
  grpc::Status status;
  std::optional<v1::StreamEnd> end;  // the agent's StreamEnd, once the merger saw it
  std::string agent_name;            // from its first interface description
  bool started = false;              // an interface description arrived: the capture ran
  bool ended_written = false;        // its end is reported and its statistics blocks written
  // The request named a TLS key log and the agent did not say it follows it (an older capd).
  bool keylog_ignored = false;
  // Wire bytes of the messages read (each message's size as it arrived, before anything the
  // reader does to it), for the link's throughput (client/stream/link_monitor.h).
  uint64_t received_bytes = 0;
  // How long the reader waited for queue space (the merger, so the output, being behind).
  std::chrono::steady_clock::duration output_wait{0};

  // For a reader: queues `message` (waiting while `max_queued_bytes` of packet data are queued,
  // unless the feed is done), then lets the hub's write_on_reader write it or announces it to
  // the merger. `wire_bytes`: its size as it arrived. Takes the hub's lock itself.
  void QueueFromReader(FeedHub& hub, std::shared_ptr<v1::StreamResponse> message, size_t wire_bytes,
                       size_t max_queued_bytes);

 private:
  const size_t index_;
  const std::string address_;
};

inline void Feed::QueueFromReader(FeedHub& hub, std::shared_ptr<v1::StreamResponse> message,
                                  size_t wire_bytes, size_t max_queued_bytes) {
  const size_t bytes = message->has_packets() ? message->packets().data().size() : 0;
  std::unique_lock lock(hub.mu);
  received_bytes += wire_bytes;
  const auto room = [&] { return queued_bytes < max_queued_bytes || done; };
  if (!room()) {
    const auto waited_from = std::chrono::steady_clock::now();
    hub.changed.wait(lock, room);
    output_wait += std::chrono::steady_clock::now() - waited_from;
  }
  queued_bytes += bytes;
  queue.push_back({std::move(message), std::chrono::steady_clock::now(), std::nullopt, {}});
  if (hub.write_on_reader && hub.write_on_reader(*this, lock)) return;
  ++hub.arrivals;
  lock.unlock();
  hub.changed.notify_all();
}

}  // namespace capd::client
