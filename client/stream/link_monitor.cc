#include "client/stream/link_monitor.h"

#include <algorithm>

namespace capd::client {

LinkMonitor::LinkMonitor(size_t feeds, Clock::time_point start)
    : feeds_(feeds), start_(start), measured_(start), updated_(start) {}

std::vector<LinkMonitor::Began> LinkMonitor::Update(Clock::time_point now,
                                                    const std::vector<Counters>& feeds,
                                                    bool final) {
  std::vector<Began> began;
  updated_ = now;
  rate_updated_ = false;
  for (size_t i = 0; i < feeds_.size() && i < feeds.size(); ++i) feeds_[i].now = feeds[i];
  const Clock::duration elapsed = now - measured_;
  if (elapsed < kInterval && !(final && elapsed.count() > 0)) return began;
  const double seconds = std::chrono::duration<double>(elapsed).count();
  for (size_t i = 0; i < feeds_.size(); ++i) {
    Feed& f = feeds_[i];
    const Counters& c = f.now;
    f.rate = c.received_bytes >= f.last.received_bytes
                 ? (c.received_bytes - f.last.received_bytes) / seconds
                 : 0;
    const double wait_share = std::clamp(
        std::chrono::duration<double>(c.output_wait - f.last.output_wait).count() / seconds, 0.0,
        1.0);
    if (c.output_wait - f.last.output_wait >= kOutputWait) {
      f.waited_at = now;
      f.waited_share = wait_share;
    }
    const bool output_held = f.waited_at.has_value() && now - *f.waited_at <= kOutputMemory;
    const double share = output_held ? f.waited_share : wait_share;
    if (c.agent_drops > f.last.agent_drops) {
      const Bottleneck cause = output_held ? Bottleneck::kOutput : Bottleneck::kLink;
      if (!f.in_episode) {
        f.in_episode = true;
        f.cause = cause;
        began.push_back({i, cause, c.agent_drops, f.rate, share});
      } else if (cause == Bottleneck::kOutput) {
        f.cause = cause;
      }
      if (f.cause == Bottleneck::kOutput || f.worst == Bottleneck::kNone) f.worst = f.cause;
      f.last_drop = now;
    } else if (f.in_episode && now - f.last_drop >= kEpisodeQuiet) {
      f.in_episode = false;
      f.cause = Bottleneck::kNone;
    }
    f.last = c;
  }
  measured_ = now;
  rate_updated_ = true;
  return began;
}

uint64_t LinkMonitor::received_bytes() const {
  uint64_t total = 0;
  for (const Feed& f : feeds_) total += f.now.received_bytes;
  return total;
}

double LinkMonitor::bytes_per_second() const {
  double total = 0;
  for (const Feed& f : feeds_) total += f.rate;
  return total;
}

Bottleneck LinkMonitor::dropping() const {
  Bottleneck cause = Bottleneck::kNone;
  for (const Feed& f : feeds_) {
    if (!f.in_episode) continue;
    if (f.cause == Bottleneck::kOutput) return Bottleneck::kOutput;
    cause = Bottleneck::kLink;
  }
  return cause;
}

double LinkMonitor::seconds() const {
  return std::chrono::duration<double>(updated_ - start_).count();
}

}  // namespace capd::client
