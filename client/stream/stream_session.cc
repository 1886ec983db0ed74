#include "client/stream/stream_session.h"

#include <poll.h>

#include <chrono>
#include <mutex>

#include "capfile/stream_to_file.h"
#include "client/stream/agent_channel.h"
#include "client/stream/link_monitor.h"
#include "client/stream/merger.h"

namespace capd::client {
namespace {

using Clock = std::chrono::steady_clock;

// How long the merger waits for a reader before it looks at the output and the clock itself.
constexpr std::chrono::milliseconds kQuietLook{1000};
// A reader's own write that takes this long hands writing back to the merger's thread for the
// rest of the session: a 256 KiB round into the page cache takes well under a millisecond, so
// this is a stalled disk (or a host so loaded that the merger's thread is the better bet).
constexpr std::chrono::milliseconds kSlowReaderWrite{50};

uint64_t WallClockNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

StreamSession::StreamSession(const StreamOptions& options, CaptureWriter& writer,
                             SessionObserver& observer, SessionOutput output)
    : options_(options), writer_(writer), observer_(observer), output_(std::move(output)) {}

StreamSession::~StreamSession() {
  for (auto& feed : feeds_) feed->Cancel();
}

void StreamSession::Interrupt() {
  interrupted_.store(true);
  for (auto& feed : feeds_) feed->Cancel();
}

Merger::Round StreamSession::WriteRound(std::unique_lock<std::mutex>& lock, bool end_done_feeds) {
  round_running_ = true;
  Merger::Round round;
  if (auto ran = merger_->RunRound(Clock::now()); ran.ok()) {
    round = *ran;
  } else {
    local_error_ = ran.status();
  }
  if (end_done_feeds) {
    for (auto& feed : feeds_) {
      if (feed->done && feed->queue.empty()) merger_->EndFeed(*feed, interrupted_.load());
    }
  }
  // One write per round, outside the lock: the readers keep filling their queues meanwhile.
  // local_error_ and the writer are this round's alone until round_running_ is cleared.
  Status status = local_error_;
  const bool any_started = merger_->AnyFeedStarted();
  lock.unlock();
  // A ring of files also turns over on wall-clock boundaries when the link is quiet.
  if (status.ok()) status = writer_.Tick(WallClockNs());
  Status flushed = status.ok() && any_started ? writer_.Flush() : Status::Ok();
  lock.lock();
  local_error_ = status;
  if (flushed.ok()) {
    merger_->CommitFlushed();
  } else if (flushed.code() == StatusCode::kUnavailable && output_.is_stream) {
    reader_gone_ = true;  // Wireshark closed, `head` had enough: a normal way to stop
    merger_->DiscardUnflushed();
  } else {
    local_error_ = flushed;
    merger_->DiscardUnflushed();
  }
  round_running_ = false;
  return round;
}

bool StreamSession::WriteOnReader(Feed& feed, std::unique_lock<std::mutex>& lock) {
  // Only a packet batch into an empty queue while no round runs: a backlog, control messages
  // (which the observer hears of) and anything after an error stay with the merger's thread.
  if (!reader_may_write_ || round_running_ || feed.queue.size() != 1 ||
      !feed.queue.front().message->has_packets()) {
    return false;
  }
  const Clock::time_point began = Clock::now();
  bool more = true;
  while (more) {
    more = WriteRound(lock, false).full && local_error_.ok() && !reader_gone_;
  }
  if (const Clock::duration took = Clock::now() - began; took >= kSlowReaderWrite) {
    // The file is slow (the disk, the page cache's writeback): the merger's thread writes from
    // now on, and the reader queues up to its limit meanwhile, as it did before it wrote. The
    // time it was held counts as waiting for the output (the link monitor blames the output).
    feed.output_wait += took;
    reader_may_write_ = false;
  }
  if (!local_error_.ok() || reader_gone_) {
    reader_may_write_ = false;
    return false;  // announced: the merger's thread stops the session
  }
  if (merger_waits_for_round_) {
    lock.unlock();
    hub_.changed.notify_all();
    lock.lock();
  }
  return true;
}

int StreamSession::Run() {
  std::vector<Feed*> feeds;
  for (auto& feed : feeds_) feeds.push_back(feed.get());
  capfile::StreamToFile file(writer_);
  Merger::Settings settings;
  // With one agent the agent counts -c itself; with several capctl counts over all of them.
  settings.count = feeds_.size() > 1 ? options_.count : 0;
  settings.leave_out_capture_interfaces =
      options_.format == FileFormat::kPcap && options_.decap.mode != DecapOptions::Mode::kNone;
  settings.statistics_in_every_file = options_.rotation.has_value();
  settings.hold_for_keys = !options_.tls_keylog.empty();
  settings.start_on = !options_.start_on.empty();
  Merger merger(feeds, file, writer_, observer_, settings);
  {
    std::lock_guard lock(hub_.mu);
    merger_ = &merger;
    reader_may_write_ = feeds.size() == 1 && !settings.hold_for_keys && !output_.is_stream;
  }
  hub_.write_on_reader = [this](Feed& feed, std::unique_lock<std::mutex>& lock) {
    return WriteOnReader(feed, lock);
  };
  for (Feed* feed : feeds) feed->Start();
  const auto stop_all = [&] {
    for (Feed* feed : feeds) feed->Cancel();
  };

  // The links' throughput and the agents' drop episodes (see link_monitor.h).
  LinkMonitor links(feeds.size(), Clock::now());
  std::vector<LinkMonitor::Counters> counters(feeds.size());
  // With the hub's lock held: the feeds' counters into the monitor.
  const auto measure_links = [&](bool final) {
    for (Feed* feed : feeds) {
      counters[feed->index()] = {feed->received_bytes, merger.drops(feed->index()).agent,
                                 feed->output_wait};
    }
    return links.Update(Clock::now(), counters, final);
  };
  const auto dropping_of = [&](const LinkMonitor::Began& began) {
    const Feed& feed = *feeds[began.feed];
    return AgentDropping{{feed.address(), feed.agent_name},
                         began.cause,
                         began.dropped,
                         began.received_bytes_per_second,
                         began.output_wait_share,
                         output_.name,
                         merger.compression(began.feed).compressed > 0};
  };

  std::unique_lock lock(hub_.mu);
  while (true) {
    // A reader may be in a round of its own: the merger's waits for it.
    merger_waits_for_round_ = true;
    hub_.changed.wait(lock, [&] { return !round_running_; });
    merger_waits_for_round_ = false;
    if (!local_error_.ok() || reader_gone_) {  // a reader's round failed
      stop_all();
      break;
    }
    // What the readers had queued when this round began: the round takes all of it.
    const uint64_t arrivals_seen = hub_.arrivals;
    const Merger::Round round = WriteRound(lock, true);
    hub_.changed.notify_all();  // readers waiting for queue space
    if (!local_error_.ok() || reader_gone_) {
      stop_all();
      break;
    }
    std::vector<AgentDropping> began;
    for (const auto& b : measure_links(false)) began.push_back(dropping_of(b));
    Progress progress{merger.written(), merger.drops()};
    progress.received_bytes = links.received_bytes();
    progress.received_bytes_per_second = links.bytes_per_second();
    progress.rate_updated = links.rate_updated();
    progress.dropping = links.dropping();
    progress.trigger = merger.trigger_progress();
    lock.unlock();
    for (const AgentDropping& d : began) observer_.OnAgentDropping(d);
    observer_.OnProgress(progress);
    lock.lock();
    // Once the count is reached the packets still queued are not wanted: done means the calls
    // have finished.
    bool all_done = true;
    for (Feed* feed : feeds) {
      all_done = all_done && feed->done && (feed->queue.empty() || merger.count_reached());
    }
    if (all_done) break;
    // On a quiet link nothing is written, so EPIPE never comes: Linux raises POLLERR on a
    // pipe's write end once the last reader has closed it (tshark -c N done, Wireshark closed).
    if (output_.watch_fd >= 0) {
      pollfd watch{output_.watch_fd, 0, 0};
      if (poll(&watch, 1, 0) == 1 && (watch.revents & (POLLERR | POLLHUP)) != 0) {
        reader_gone_ = true;
        stop_all();
        break;
      }
    }
    if (round.full) continue;  // more is queued: write on at once
    // Readers notify on every message they leave to the merger (the agent's statistics come
    // once a second) and at their end; what they queued while the lock was released for the
    // write is not waited for. The merger looks on its own only for what no reader announces:
    // the output's reader leaving, a ring's time boundary, the end of a reorder wait, and the
    // progress of the batches a reader wrote itself.
    hub_.changed.wait_until(lock, std::min(round.reorder_deadline, Clock::now() + kQuietLook),
                            [&] { return hub_.arrivals != arrivals_seen; });
  }
  // From here on only this thread writes: a reader's round that began meanwhile ends first.
  reader_may_write_ = false;
  merger_waits_for_round_ = true;
  hub_.changed.wait(lock, [&] { return !round_running_; });
  merger_waits_for_round_ = false;
  merger_ = nullptr;
  const Status local_error = local_error_;
  const bool reader_gone = reader_gone_;
  // Wait for the readers to finish (cancelled ones finish promptly).
  hub_.changed.wait_for(lock, std::chrono::seconds(5), [&] {
    for (Feed* feed : feeds) {
      if (!feed->done) return false;
    }
    return true;
  });

  const bool interrupted = interrupted_.load();
  const bool stopped_by_capctl =
      interrupted || merger.count_reached() || reader_gone || !local_error.ok();
  SessionSummary summary;
  summary.output_name = output_.name;
  const auto finish = [&](std::string ending, int code) {
    summary.written = merger.written();
    summary.drops = merger.drops();
    summary.decap_outcomes = merger.decap_outcomes();
    summary.compression = merger.compression();
    summary.trigger = merger.trigger_summary();
    summary.ending = std::move(ending);
    summary.exit_code = code;
    // The last drop counts may have come after the last measurement.
    std::vector<AgentDropping> began;
    for (const auto& b : measure_links(true)) began.push_back(dropping_of(b));
    summary.received_bytes = links.received_bytes();
    summary.seconds = links.seconds();
    for (Feed* feed : feeds) {
      const uint64_t dropped = merger.drops(feed->index()).agent;
      if (dropped == 0) continue;
      AgentDropping d;
      d.agent = {feed->address(), feed->agent_name};
      d.cause = links.worst(feed->index());  // kNone: no measurement saw the count grow
      d.dropped = dropped;
      d.received_bytes_per_second = links.bytes_per_second(feed->index());
      d.output_name = output_.name;
      d.compressed = merger.compression(feed->index()).compressed > 0;
      summary.agent_drops.push_back(std::move(d));
    }
    if (feeds.size() > 1) {
      for (Feed* feed : feeds) {
        summary.agents.push_back({{feed->address(), feed->agent_name},
                                  merger.written(feed->index()),
                                  merger.drops(feed->index()),
                                  merger.decap_outcomes(feed->index()),
                                  OutcomeOf(*feed, stopped_by_capctl)});
      }
      summary.out_of_order = merger.out_of_order();
    }
    lock.unlock();
    for (const AgentDropping& d : began) observer_.OnAgentDropping(d);
    observer_.OnSummary(summary);
    return code;
  };

  if (!local_error.ok()) {
    for (Feed* feed : feeds) merger.EndFeed(*feed, true);
    (void)writer_.Close();
    return finish("stopped: " + local_error.message(), 1);
  }
  if (reader_gone) return finish("the reader of " + output_.name + " went away", 0);
  // A single agent that refused the stream before it started: its status is the whole story.
  if (feeds.size() == 1 && !interrupted) {
    const FeedOutcome outcome = OutcomeOf(*feeds[0], false);
    if (outcome.kind == FeedEnd::kRefused) {
      summary.kind = SessionSummary::Kind::kRefused;
      summary.refused_agent = {feeds[0]->address(), feeds[0]->agent_name};
      summary.refusal = DescribeRefusal(feeds[0]->status);
      summary.exit_code = outcome.exit_code;
      lock.unlock();
      observer_.OnSummary(summary);
      return outcome.exit_code;
    }
  }
  for (Feed* feed : feeds) merger.EndFeed(*feed, interrupted);
  // No agent accepted the stream: leave -w FILE as it was (see the flush in the loop). The
  // reader may be gone already; the summary says what was written.
  if (Status closed = merger.AnyFeedStarted() ? writer_.Close() : Status::Ok();
      !closed.ok() && !output_.is_stream) {
    lock.unlock();
    observer_.OnMessage(closed.message());
    lock.lock();
  }
  if (interrupted) return finish("interrupted", 0);
  if (merger.count_reached()) return finish("packet count reached", 0);
  int code = 0;
  std::string ending;
  for (Feed* feed : feeds) {
    const FeedOutcome outcome = OutcomeOf(*feed, false);
    code = std::max(code, outcome.exit_code);
    const std::string why = outcome.Full();
    if (ending.find(why) == std::string::npos) ending += (ending.empty() ? "" : "; ") + why;
  }
  return finish(ending, code);
}

}  // namespace capd::client
