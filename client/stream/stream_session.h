#pragma once
// One capture from one or more agents into one CaptureWriter, with what happens told to a
// SessionObserver: the one object behind `capctl stream`, the Wireshark extcap and `capctl serve`.
//
// How data flows: each Feed's reader queues the agent's messages -> the Merger (on the thread
// that calls Run) takes them in timestamp order through capfile::StreamToFile into the writer ->
// one Flush per round, outside the feeds' lock, so the readers keep queueing meanwhile. Events
// (interfaces, carriers, warnings, an agent's end, progress, the summary) go to the observer.
//
// Writing on the reader's thread: with one agent, no --tls-keylog hold and a regular file, the
// reader that has just queued a packet batch into an otherwise empty queue runs the round itself
// while no round runs (FeedHub::write_on_reader): the bytes go to the file while still in its
// CPU's cache, and the merger is not woken per message. Everything else (control messages, a
// backlog, the end, errors, progress, timeouts) stays with the merger's thread. A stream output
// (a FIFO, stdout, clients) keeps the merger's path: a reader that stops reading must not stall
// the gRPC read loop before the feed's queue is full. A file whose write stalls the reader once
// (kSlowReaderWrite) gets the merger's path from then on, for the same reason.
//
// Nothing reaches the writer's output before an agent has accepted the stream (its first
// interface): a refused stream must not create or truncate -w FILE.
//
// Thread-safety: AddFeed and Run from one thread; Interrupt from any (a signal thread).

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "client/cli/options.h"
#include "client/output/capture_files.h"
#include "client/stream/feed.h"
#include "client/stream/merger.h"
#include "client/stream/session_observer.h"
#include "common/status.h"

namespace capd::client {

// Where the session's writer writes, as far as the session cares.
struct SessionOutput {
  std::string name;        // for the summary: the path, "stdout", "FIFO <path>", ...
  bool is_stream = false;  // stdout, a FIFO, clients: a reader going away is a normal end
  int watch_fd = -1;       // polled for POLLERR/POLLHUP (the reader left a quiet pipe); -1: none
};

class StreamSession {
 public:
  // `options` (the format, decapsulation, rotation and -c are read) and `writer` and `observer`
  // must outlive the session.
  StreamSession(const StreamOptions& options, CaptureWriter& writer, SessionObserver& observer,
                SessionOutput output);
  ~StreamSession();  // the feeds are cancelled and joined
  StreamSession(const StreamSession&) = delete;
  StreamSession& operator=(const StreamSession&) = delete;

  // The lock and wake-up the feeds must share (AgentFeed takes it at construction).
  FeedHub& hub() { return hub_; }
  // Feeds are numbered in the order added; feed->index() must be that number.
  void AddFeed(std::unique_ptr<Feed> feed) { feeds_.push_back(std::move(feed)); }

  // Starts the feeds, merges until every feed has ended (or the count is reached, the reader
  // left, or a local error), closes the writer if an agent accepted the stream, and tells the
  // observer the summary. Returns the exit code: 0 done, 1 failure, 2 refused as asked.
  int Run();
  // Stops the feeds; Run then completes the output and returns 0. Thread-safe.
  void Interrupt();

 private:
  // One round: what is queued into the writer, then one flush outside the lock (held through
  // `lock` on entry and on return). Takes the round (round_running_); records a local error or
  // the reader leaving in local_error_ / reader_gone_. `end_done_feeds`: the merger's thread's
  // rounds also end the feeds that are over.
  Merger::Round WriteRound(std::unique_lock<std::mutex>& lock, bool end_done_feeds);
  // FeedHub::write_on_reader: rounds on the reader's thread for the batch it just queued.
  bool WriteOnReader(Feed& feed, std::unique_lock<std::mutex>& lock);

  const StreamOptions& options_;
  CaptureWriter& writer_;
  SessionObserver& observer_;
  SessionOutput output_;
  FeedHub hub_;
  // Guarded by hub_.mu (set up by Run before the feeds start). Declared before feeds_: a reader
  // still running while the feeds are destroyed may look at reader_may_write_.
  Merger* merger_ = nullptr;             // Run's, while it runs
  bool reader_may_write_ = false;        // FeedHub::write_on_reader may write (see above)
  bool round_running_ = false;           // a thread is in WriteRound (maybe with the lock released)
  bool merger_waits_for_round_ = false;  // the merger's thread waits for that round to end
  Status local_error_;
  bool reader_gone_ = false;
  std::vector<std::unique_ptr<Feed>> feeds_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace capd::client
