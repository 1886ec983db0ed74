#include "client/stream/merger.h"

#include <algorithm>
#include <utility>

#include "client/stream/agent_channel.h"
#include "client/stream/trigger_text.h"
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
    case v1::StreamEnd::STOP_ON_MATCHED:
      outcome = {FeedEnd::kStopOnMatched, end.message(), "", 0};
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

bool IsTransportFailure(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

FeedOutcome OutcomeOf(const Feed& feed, bool stopped_by_capctl) {
  // The agent's own word comes first: it ended the stream before capctl stopped anything.
  if (feed.end) return FromStreamEnd(*feed.end);
  if (stopped_by_capctl) return {FeedEnd::kStopped, "stopped", "", 0};
  if (!feed.status.ok()) {
    // Before the first message too: capd killed after it opened the capture (its log says so)
    // closes the socket before its interface description reaches capctl.
    if (feed.started || IsTransportFailure(feed.status)) {
      return {FeedEnd::kWentAway, "agent went away: " + feed.status.error_message(), "", 1};
    }
    return {FeedEnd::kRefused, "refused: " + DescribeRefusal(feed.status), "",
            ExitCodeFor(FromGrpcStatus(feed.status).code())};
  }
  return {FeedEnd::kNoReason, "the agent ended the stream without a reason", "", 1};
}

Merger::Merger(std::vector<Feed*> feeds, capfile::StreamToFile& file, CaptureWriter& writer,
               SessionObserver& observer, Settings settings)
    : feeds_(std::move(feeds)),
      file_(file),
      writer_(writer),
      observer_(observer),
      settings_(settings),
      written_(feeds_.size()),
      unflushed_(feeds_.size()) {}

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
  if (statistics.has_trigger()) OnTrigger(feed, statistics.trigger());
  if (statistics.compressed_bytes() > 0) {
    compression_[feed.index()] = {statistics.uncompressed_bytes(), statistics.compressed_bytes()};
  }
  if (settings_.statistics_in_every_file) {
    (void)file_.WriteStatistics(feed.index(), statistics);
  } else {
    file_.KeepStatistics(feed.index(), statistics);
  }
}

void Merger::OnTrigger(Feed& feed, const v1::TriggerStatus& now) {
  auto [it, first] = triggers_.try_emplace(feed.index(), now);
  const v1::TriggerStatus before = first ? v1::TriggerStatus() : it->second;
  it->second = now;
  if (now.waiting() && first)
    observer_.OnMessage("agent " + feed.address() + ": waiting for --start-on");
  if (now.start_matched_ns() != 0 && before.start_matched_ns() == 0) {
    observer_.OnMessage("agent " + feed.address() + ": " + TriggerMatchedText(now));
  }
}

std::string Merger::trigger_progress() const {
  std::string text;
  for (const auto& [index, status] : triggers_) {
    if (!status.waiting()) continue;
    if (!text.empty()) text += "; ";
    text += TriggerWaitingText(status);
  }
  return text;
}

std::string Merger::trigger_summary() const {
  std::string text;
  for (const auto& [index, status] : triggers_) {
    const std::string one = TriggerSummaryText(status, settings_.start_on);
    if (one.empty()) continue;
    if (!text.empty()) text += "; ";
    text += feeds_.size() > 1 ? "agent " + feeds_[index]->address() + ": " + one : one;
  }
  if (text.empty() && settings_.start_on) text = "start-on never matched";
  return text;
}

Status Merger::OnInterface(Feed& feed, const v1::InterfaceDescription& d) {
  if (feed.agent_name.empty()) feed.agent_name = d.agent_name();
  if (!feed.started && feed.keylog_ignored) {
    observer_.OnWarning({feed.address(), feed.agent_name},
                        "it ignored --tls-keylog (a capd that predates it): the capture has no "
                        "TLS keys");
  }
  feed.started = true;
  InterfaceSeen seen;
  // With several agents every interface says where it was seen: NAME:IFACE; an instance of a
  // selection always does, named as capctl found it ("i-0abc (web-1):ens5").
  seen.name = !feed.label.empty() ? feed.label + ":" + d.name()
              : feeds_.size() < 2
                  ? d.name()
                  : (feed.agent_name.empty() ? feed.address() : feed.agent_name) + ":" + d.name();
  seen.agent = {feed.address(), d.agent_name()};
  seen.description = d.description();
  seen.link_type = d.link_type();
  seen.snaplen = d.snaplen();
  seen.decapsulated = !d.encapsulation().empty();
  // In mirror-target mode the capture interface carries no packets of its own.
  if (settings_.leave_out_capture_interfaces && !seen.decapsulated) {
    file_.LeaveOut(feed.index(), d, seen.name);
    seen.left_out = true;
  } else {
    auto added = file_.AddInterface(feed.index(), d, seen.name);
    if (!added.ok()) return added.status();
    // The header reaches the reader before any packet: Wireshark shows the interface at once.
    CAPD_RETURN_IF_ERROR(writer_.Flush());
  }
  observer_.OnInterface(seen);
  return Status::Ok();
}

Status Merger::DrainControl(Feed& feed, bool& progressed) {
  while (!feed.queue.empty()) {
    Arrival& head = feed.queue.front();
    const v1::StreamResponse& m = *head.message;
    if (m.has_packets()) {
      // Checked once, when it reaches the head: the interfaces it names are described by now.
      if (!head.view) {
        auto view = file_.View(feed.index(), m.packets());
        if (!view.ok()) return view.status();
        head.view = *view;
      }
      if (!head.view->AtEnd(head.cursor)) return Status::Ok();  // a packet waits to be merged
      feed.queued_bytes -= m.packets().data().size();
    } else if (m.has_interface()) {
      CAPD_RETURN_IF_ERROR(OnInterface(feed, m.interface()));
    } else if (m.has_statistics()) {
      OnStatistics(feed, m.statistics());
    } else if (m.has_end()) {
      feed.end = m.end();
    } else if (m.has_rewind()) {
      for (const std::string& warning : m.rewind().warnings()) {
        observer_.OnWarning(RefOf(feed), PrintableText(warning));
      }
    } else if (m.has_tls_keys()) {
      // Before the packets of the batches behind it: the keys reach the file (and a live
      // reader) before the traffic they decrypt.
      CAPD_RETURN_IF_ERROR(
          writer_.WriteDecryptionSecrets(capfile::kTlsKeyLogSecrets, m.tls_keys().lines()));
      ++tls_key_messages_;
    }
    feed.queue.pop_front();
    progressed = true;
  }
  return Status::Ok();
}

Status Merger::WriteQueuedKeys(Feed& feed) {
  for (Arrival& arrival : feed.queue) {
    if (!arrival.message->has_tls_keys()) continue;
    CAPD_RETURN_IF_ERROR(writer_.WriteDecryptionSecrets(capfile::kTlsKeyLogSecrets,
                                                        arrival.message->tls_keys().lines()));
    ++tls_key_messages_;
    arrival.message->clear_tls_keys();
  }
  return Status::Ok();
}

Status Merger::WriteRun(Feed& feed, Arrival& arrival, uint64_t until_ns, uint64_t budget) {
  // The per-packet path of capctl: no clock, no lock taken, no check the batch's view did not
  // already make; the run goes to the writer in one piece per interface (StreamToFile::WriteUntil)
  // and the writer's buffer grows and is flushed per round.
  const capfile::BatchView& view = *arrival.view;
  capfile::StreamToFile::RunLimits limits;
  limits.until_ns = until_ns;
  limits.max_packets = budget;
  limits.max_bytes = unflushed_bytes_ < kRoundBytes ? kRoundBytes - unflushed_bytes_ : 0;
  limits.data_owner = arrival.message;
  const int first = arrival.cursor.next_packet;
  uint64_t written = 0;
  size_t bytes = 0;
  const Status status =
      file_.WriteUntil(feed.index(), view, arrival.cursor, limits, &written, &bytes);
  const v1::PacketBatch& batch = view.batch();
  for (int i = first; i < arrival.cursor.next_packet; ++i) {
    const uint64_t ts = batch.timestamp_ns(i);
    if (ts < last_timestamp_ns_) ++out_of_order_;
    last_timestamp_ns_ = std::max(last_timestamp_ns_, ts);
  }
  unflushed_[feed.index()] += written;
  unflushed_bytes_ += bytes;
  counted_ += written;
  return status;
}

StatusOr<Merger::Round> Merger::RunRound(Clock::time_point now) {
  Round round;
  bool progressed = true;
  while (progressed && unflushed_bytes_ < kRoundBytes) {
    progressed = false;
    Feed* best = nullptr;
    uint64_t best_ts = 0;
    uint64_t runner_up_ts = UINT64_MAX;  // the earliest head among the other feeds
    for (Feed* feed : feeds_) {
      CAPD_RETURN_IF_ERROR(DrainControl(*feed, progressed));
      if (feed->queue.empty()) continue;
      const Arrival& head = feed->queue.front();
      const uint64_t ts = head.view->PeekTimestamp(head.cursor);
      if (best == nullptr || ts < best_ts) {
        if (best != nullptr) runner_up_ts = best_ts;
        best = feed, best_ts = ts;
      } else {
        runner_up_ts = std::min(runner_up_ts, ts);
      }
    }
    if (best == nullptr || count_reached_) break;
    if (settings_.hold_for_keys) {
      CAPD_RETURN_IF_ERROR(WriteQueuedKeys(*best));
      const Clock::time_point held_until = best->queue.front().arrived + kReorderWindow;
      if (now < held_until && !best->done) {
        round.reorder_deadline = std::min(round.reorder_deadline, held_until);
        break;
      }
    }
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
    const uint64_t budget = settings_.count != 0 ? settings_.count - counted_ : UINT64_MAX;
    CAPD_RETURN_IF_ERROR(WriteRun(*best, best->queue.front(), until_ns, budget));
    progressed = true;
    if (settings_.count != 0 && counted_ >= settings_.count) {
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
  round.full = unflushed_bytes_ >= kRoundBytes;
  return round;
}

void Merger::CommitFlushed() {
  for (size_t i = 0; i < written_.size(); ++i) written_[i] += std::exchange(unflushed_[i], 0);
  unflushed_bytes_ = 0;
}

void Merger::DiscardUnflushed() {
  std::fill(unflushed_.begin(), unflushed_.end(), 0);
  unflushed_bytes_ = 0;
}

// An agent's stream is over: its interfaces end here, with a statistics block that says why.
void Merger::EndFeed(Feed& feed, bool stopped_by_capctl) {
  if (feed.ended_written) return;
  feed.ended_written = true;
  const FeedOutcome outcome = OutcomeOf(feed, stopped_by_capctl || count_reached_);
  // With one agent the summary says how it ended; capctl's own stop is no news either.
  const bool tell = feeds_.size() > 1 && outcome.kind != FeedEnd::kStopped;
  if (tell) observer_.OnAgentEnded(RefOf(feed), outcome);
  (void)file_.WriteFinalStatistics(feed.index(), tell ? "ended: " + outcome.Full() : "");
}

uint64_t Merger::written(size_t feed) const {
  if (feed != kAllFeeds) return written_[feed];
  uint64_t total = 0;
  for (uint64_t n : written_) total += n;
  return total;
}

DropCounts Merger::drops(size_t feed) const {
  DropCounts drops;
  for (const auto& [key, interface] : file_.interfaces()) {
    if (feed != kAllFeeds && key.first != feed) continue;
    drops.kernel += interface.latest.kernel_drops();
    drops.interface += interface.latest.interface_drops();
    drops.agent += interface.latest.agent_drops();
  }
  return drops;
}

CompressionBytes Merger::compression(size_t feed) const {
  CompressionBytes total;
  for (const auto& [index, bytes] : compression_) {
    if (feed != kAllFeeds && index != feed) continue;
    total.uncompressed += bytes.uncompressed;
    total.compressed += bytes.compressed;
  }
  return total;
}

std::string Merger::decap_outcomes(size_t feed) const {
  std::string text;
  for (const auto& [key, interface] : file_.interfaces()) {
    if (feed != kAllFeeds && key.first != feed) continue;
    const std::string outcomes = capfile::DecapOutcomesText(interface.latest);
    if (!outcomes.empty()) text += "; " + outcomes;
  }
  return text;
}

}  // namespace capd::client
