#pragma once
// One capture from one or more agents into one CaptureWriter, with what happens told to a
// SessionObserver: the one object behind `capctl stream`, the Wireshark extcap and `capctl serve`.
//
// How data flows: each Feed's reader queues the agent's messages -> the Merger (on the thread
// that calls Run) takes them in timestamp order through capfile::StreamToFile into the writer ->
// one Flush per round, outside the feeds' lock, so the readers keep queueing meanwhile. Events
// (interfaces, carriers, warnings, an agent's end, progress, the summary) go to the observer.
//
// Nothing reaches the writer's output before an agent has accepted the stream (its first
// interface): a refused stream must not create or truncate -w FILE.
//
// Thread-safety: AddFeed and Run from one thread; Interrupt from any (a signal thread).

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "client/cli/options.h"
#include "client/output/capture_files.h"
#include "client/stream/feed.h"
#include "client/stream/session_observer.h"

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
  const StreamOptions& options_;
  CaptureWriter& writer_;
  SessionObserver& observer_;
  SessionOutput output_;
  FeedHub hub_;
  std::vector<std::unique_ptr<Feed>> feeds_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace capd::client
