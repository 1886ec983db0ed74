#pragma once
// The merger: several agents' feeds into one capture file, in timestamp order.
//
// Merge rule: the packet with the smallest timestamp among the feeds' queue heads is written
// once every other live feed has a packet queued too (so nothing earlier can still come from
// it), or once it has waited kReorderWindow. Agents send within ~10 ms of capture, so the window
// only matters when a feed is quiet or slow; a packet that still arrives later than its turn is
// written at once (never dropped) and counted as out of order.
//
// Non-packet messages at a feed's head are handled as they come: interface descriptions go to
// the translator (and the observer), statistics update the counters (and carriers and warnings go
// to the observer), a StreamEnd is kept for OutcomeOf.
//
// Thread-safety: every call with the feeds' FeedHub mutex held, from one thread (the session's).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "client/stream/feed.h"
#include "client/stream/session_observer.h"
#include "client/stream/stream_translator.h"
#include "common/status.h"

namespace capd::client {

// Why a feed ended: the one place that decides it. `stopped_by_capctl`: capctl ended the feed
// itself (an interrupt, its own -c over several agents, a local error or the reader going away),
// so an error status from the cancelled call is not the agent's doing.
FeedOutcome OutcomeOf(const Feed& feed, bool stopped_by_capctl);

class Merger {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kReorderWindow{500};
  // A round writes at most about this much before flushing: the bytes are still in the CPU's
  // cache when write() copies them into the page cache. Writing several queued 512 KiB messages
  // in one go made that copy cold and slow enough (1500 B at full rate) that capctl fell further
  // behind, so the next round was larger still.
  static constexpr size_t kRoundBytes = 256 * 1024;

  // count: capctl's own packet limit over all feeds (0: none; with one agent the agent counts).
  Merger(std::vector<Feed*> feeds, StreamTranslator& translator, SessionObserver& observer,
         uint64_t count)
      : feeds_(std::move(feeds)), translator_(translator), observer_(observer), count_(count) {}

  struct Round {
    bool full = false;  // stopped at kRoundBytes: more is queued, write on at once
    // When the head packet waits for the other agents' (kReorderWindow), the time to look again.
    Clock::time_point reorder_deadline = Clock::time_point::max();
  };
  // Takes what is queued: control messages, then packets in merge order, until nothing can be
  // written before `now` or the round holds kRoundBytes. Writes into the translator's writer
  // without flushing. Once the count is reached, cancels every feed and drops what they queued.
  StatusOr<Round> RunRound(Clock::time_point now);

  // The feed is over: reports its outcome (with several feeds) and writes its interfaces'
  // statistics blocks, once per feed.
  void EndFeed(Feed& feed, bool stopped_by_capctl);

  bool count_reached() const { return count_reached_; }
  // An agent has sent its first interface description: it accepted the stream.
  bool AnyFeedStarted() const;

 private:
  Status DrainControl(Feed& feed, bool& progressed);
  void OnStatistics(Feed& feed, const v1::Statistics& statistics);
  AgentRef RefOf(const Feed& feed) const { return {feed.address(), feed.agent_name}; }

  std::vector<Feed*> feeds_;
  StreamTranslator& translator_;
  SessionObserver& observer_;
  const uint64_t count_;
  uint64_t counted_ = 0;  // packets written towards count_
  bool count_reached_ = false;
  std::map<size_t, std::string> excluded_carriers_;
  std::map<size_t, std::string> relay_warnings_;
  std::map<size_t, std::string> capture_warnings_;
};

}  // namespace capd::client
