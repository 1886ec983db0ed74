#pragma once
// The links from the agents as capctl sees them: each agent's throughput (wire bytes received per
// second) and its drop episodes with their cause, for the live status, the extcap's status bar
// and the summary (SessionObserver's Progress, AgentDropping and SessionSummary).
//
// How it decides: an agent drops whole batches when its queue for this client is full, that is
// when capctl takes the stream more slowly than the agent captures. Either the link is slower
// than the capture, or capctl's output is: then the merger falls behind, the feed's queue fills,
// and the feed's reader waits for room instead of reading the link (Feed::output_wait), which it
// never does while the output keeps up. So an increase of the agent's drop count seen within
// kOutputMemory of an interval in which the reader waited kOutputWait or more in all is blamed on
// the output, otherwise on the link. An absolute wait, not a share: while the output is stalled
// the merger measures nothing, so the interval that holds the stall can be long. The memory is
// there because the count comes in the agent's statistics, queued behind the batches: after a
// stalled output it is merged only once the output has caught up again. capctl's own CPU (a
// reader too slow to decode, or starved of CPU) would also look like the link; it is not measured.
//
// An episode begins with the first increase of an agent's drop count and ends once the count has
// not moved for kEpisodeQuiet; each beginning is reported once.
//
// Pure: the caller supplies the clock and the feeds' counters. Not thread-safe (the session's
// thread).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "client/stream/session_observer.h"

namespace capd::client {

class LinkMonitor {
 public:
  using Clock = std::chrono::steady_clock;
  // The rate is measured over at least this long.
  static constexpr std::chrono::milliseconds kInterval{1000};
  // No new agent drops for this long ends an episode.
  static constexpr std::chrono::seconds kEpisodeQuiet{10};
  // The reader waited for the output at least this long in an interval: the output limits.
  static constexpr std::chrono::milliseconds kOutputWait{100};
  // ... and drops seen this long after such an interval still are the output's.
  static constexpr std::chrono::seconds kOutputMemory{5};

  // One feed's counters, as they are now (totals since the feed started).
  struct Counters {
    uint64_t received_bytes = 0;
    uint64_t agent_drops = 0;
    Clock::duration output_wait{0};
  };

  // What an Update found for one feed: an episode that began.
  struct Began {
    size_t feed = 0;
    Bottleneck cause = Bottleneck::kLink;
    uint64_t dropped = 0;
    double received_bytes_per_second = 0;
    double output_wait_share = 0;
  };

  LinkMonitor(size_t feeds, Clock::time_point start);

  // Looks at the counters (one per feed, in order). Measures once kInterval has passed since the
  // last measurement, or always with `final` (the end of the session); otherwise only keeps the
  // totals. Returns the episodes that began.
  std::vector<Began> Update(Clock::time_point now, const std::vector<Counters>& feeds,
                            bool final = false);

  uint64_t received_bytes() const;
  // Over the last interval, all feeds or one; 0 until an interval has passed.
  double bytes_per_second() const;
  double bytes_per_second(size_t feed) const { return feeds_[feed].rate; }
  // The last Update measured a new rate.
  bool rate_updated() const { return rate_updated_; }
  // While any feed is in an episode: kOutput if any of them is blamed on the output, else kLink.
  Bottleneck dropping() const;
  // Over the whole session, for the summary: kOutput if any episode of the feed was blamed on
  // the output, kLink if only on the link, kNone if it had none.
  Bottleneck worst(size_t feed) const { return feeds_[feed].worst; }
  // Seconds since `start`, at the last Update.
  double seconds() const;

 private:
  struct Feed {
    Counters last;    // at the last measurement
    Counters now;     // at the last Update
    double rate = 0;  // bytes per second over the last interval
    // The end of the last interval in which the reader waited kOutputWait or more, and the
    // share of that interval it waited.
    std::optional<Clock::time_point> waited_at;
    double waited_share = 0;
    bool in_episode = false;
    Bottleneck cause = Bottleneck::kNone;  // of the current episode
    Bottleneck worst = Bottleneck::kNone;
    Clock::time_point last_drop{};
  };
  std::vector<Feed> feeds_;
  const Clock::time_point start_;
  Clock::time_point measured_;
  Clock::time_point updated_;
  bool rate_updated_ = false;
};

}  // namespace capd::client
