#include "client/stream/merger.h"

#include <algorithm>

#include "client/stream/agent_channel.h"
#include "common/printable.h"

namespace capd::client {
namespace {

FeedOutcome FromStreamEnd(const v1::StreamEnd& end) {
  FeedOutcome outcome;
  outcome.detail = end.message();
  outcome.exit_code = 1;
  switch (end.reason()) {
    case v1::StreamEnd::COUNT_REACHED:
      outcome = {FeedEnd::kCountReached, "packet count reached", end.message(), 0};
      break;
    case v1::StreamEnd::DURATION_REACHED:
      outcome = {FeedEnd::kDurationReached, "duration reached", end.message(), 0};
      break;
    case v1::StreamEnd::AGENT_SHUTDOWN:
      outcome.kind = FeedEnd::kAgentShutdown, outcome.text = "the agent is shutting down";
      break;
    case v1::StreamEnd::CAPTURE_ERROR:
      outcome.kind = FeedEnd::kCaptureError, outcome.text = "capture error";
      break;
    case v1::StreamEnd::CLIENT_CANCELLED:
      outcome.kind = FeedEnd::kCancelled, outcome.text = "cancelled";
      break;
    default:
      outcome.kind = FeedEnd::kUnknownReason, outcome.text = "unknown reason";
      break;
  }
  return outcome;
}

}  // namespace

FeedOutcome OutcomeOf(const Feed& feed, bool stopped_by_capctl) {
  // The agent's own word comes first: it ended the stream before capctl stopped anything.
  if (feed.end) return FromStreamEnd(*feed.end);
  if (stopped_by_capctl) return {FeedEnd::kStopped, "stopped", "", 0};
  if (!feed.status.ok()) {
    if (feed.started) {
      return {FeedEnd::kWentAway, "agent went away: " + feed.status.error_message(), "", 1};
    }
    return {FeedEnd::kRefused, "refused: " + DescribeRefusal(feed.status), "",
            ExitCodeFor(FromGrpcStatus(feed.status).code())};
  }
  return {FeedEnd::kNoReason, "the agent ended the stream without a reason", "", 1};
}

bool Merger::AnyFeedStarted() const {
  return std::any_of(feeds_.begin(), feeds_.end(), [](const Feed* feed) { return feed->started; });
}

void Merger::OnStatistics(Feed& feed, const v1::Statistics& statistics) {
  // Say what the agent leaves out of the capture because it carries this very stream.
  std::string carriers;
  for (const std::string& c : statistics.excluded_carriers()) {
    carriers += (carriers.empty() ? "" : "; ") + PrintableText(c);
  }
  if (carriers != excluded_carriers_[feed.index()]) {
    excluded_carriers_[feed.index()] = carriers;
    observer_.OnCarriersExcluded(RefOf(feed), carriers);
  }
  // The agent could not identify (or would not trust) the relay of this stream: its traffic is
  // in the capture, and the user should know before reading the capture.
  const std::string warning = PrintableText(statistics.relay_warning());
  if (warning != relay_warnings_[feed.index()]) {
    relay_warnings_[feed.index()] = warning;
    if (!warning.empty()) observer_.OnWarning(RefOf(feed), warning);
  }
  // The agent limited the capture (too many decapsulated sessions): said once per agent.
  const std::string capture_warning = PrintableText(statistics.capture_warning());
  if (capture_warning != capture_warnings_[feed.index()]) {
    capture_warnings_[feed.index()] = capture_warning;
    if (!capture_warning.empty()) observer_.OnWarning(RefOf(feed), capture_warning);
  }
  translator_.UpdateStatistics(feed.index(), statistics);
}

Status Merger::DrainControl(Feed& feed, bool& progressed) {
  while (!feed.queue.empty()) {
    Arrival& head = feed.queue.front();
    const v1::StreamResponse& m = *head.message;
    if (m.has_packets()) {
      const v1::PacketBatch& b = m.packets();
      CAPD_RETURN_IF_ERROR(StreamTranslator::ValidateBatch(b));
      if (head.next_packet < b.timestamp_ns_size()) return Status::Ok();  // waits to be merged
      feed.queued_bytes -= b.data().size();
    } else if (m.has_interface()) {
      const v1::InterfaceDescription& d = m.interface();
      if (feed.agent_name.empty()) feed.agent_name = d.agent_name();
      feed.started = true;
      // With several agents every interface says where it was seen: NAME:IFACE.
      const std::string name =
          feeds_.size() < 2
              ? d.name()
              : (feed.agent_name.empty() ? feed.address() : feed.agent_name) + ":" + d.name();
      auto seen = translator_.AddInterface(feed.index(), name, d);
      if (!seen.ok()) return seen.status();
      seen->agent = {feed.address(), d.agent_name()};
      observer_.OnInterface(*seen);
    } else if (m.has_statistics()) {
      OnStatistics(feed, m.statistics());
    } else if (m.has_end()) {
      feed.end = m.end();
    }
    feed.queue.pop_front();
    progressed = true;
  }
  return Status::Ok();
}

StatusOr<Merger::Round> Merger::RunRound(Clock::time_point now) {
  Round round;
  bool progressed = true;
  while (progressed && translator_.unflushed_bytes() < kRoundBytes) {
    progressed = false;
    Feed* best = nullptr;
    uint64_t best_ts = 0;
    uint64_t runner_up_ts = UINT64_MAX;  // the earliest head among the other feeds
    for (Feed* feed : feeds_) {
      CAPD_RETURN_IF_ERROR(DrainControl(*feed, progressed));
      if (feed->queue.empty()) continue;
      const Arrival& head = feed->queue.front();
      const uint64_t ts = head.message->packets().timestamp_ns(head.next_packet);
      if (best == nullptr || ts < best_ts) {
        if (best != nullptr) runner_up_ts = best_ts;
        best = feed, best_ts = ts;
      } else {
        runner_up_ts = std::min(runner_up_ts, ts);
      }
    }
    if (best == nullptr || count_reached_) break;
    bool others_ready = true;
    for (Feed* feed : feeds_) {
      if (feed == best || (feed->done && feed->queue.empty())) continue;
      if (feed->queue.empty()) others_ready = false;
    }
    // With one agent (or every other one ready) the whole run up to the next feed's head is in
    // order: it is written in one go. Otherwise one packet, once it has waited long enough.
    uint64_t until_ns = runner_up_ts;
    if (!others_ready) {
      round.reorder_deadline = best->queue.front().arrived + kReorderWindow;
      if (now < round.reorder_deadline) break;
      round.reorder_deadline = Clock::time_point::max();
      until_ns = 0;
    }
    const uint64_t budget = count_ != 0 ? count_ - counted_ : UINT64_MAX;
    auto written =
        translator_.WriteRun(best->index(), best->queue.front(), until_ns, budget, kRoundBytes);
    if (!written.ok()) return written.status();
    counted_ += *written;
    progressed = true;
    if (count_ != 0 && counted_ >= count_) {
      count_reached_ = true;
      // The rest is not wanted: drop it, so no reader stays blocked waiting for queue space.
      for (Feed* feed : feeds_) {
        feed->Cancel();
        feed->queue.clear();
        feed->queued_bytes = 0;
      }
      progressed = false;
    }
  }
  round.full = translator_.unflushed_bytes() >= kRoundBytes;
  return round;
}

// An agent's stream is over: its interfaces end here, with a statistics block that says why.
void Merger::EndFeed(Feed& feed, bool stopped_by_capctl) {
  if (feed.ended_written) return;
  feed.ended_written = true;
  const FeedOutcome outcome = OutcomeOf(feed, stopped_by_capctl || count_reached_);
  // With one agent the summary says how it ended; capctl's own stop is no news either.
  const bool tell = feeds_.size() > 1 && outcome.kind != FeedEnd::kStopped;
  if (tell) observer_.OnAgentEnded(RefOf(feed), outcome);
  translator_.WriteStatisticsBlocks(feed.index(), tell ? "ended: " + outcome.Full() : "");
}

}  // namespace capd::client
