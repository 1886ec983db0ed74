#include "client/stream/stream_command.h"

#include <malloc.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "client/output/rotation.h"
#include "client/stream/agent_channel.h"
#include "client/stream/agent_feed.h"
#include "client/stream/output_target.h"
#include "client/stream/signal_watcher.h"
#include "client/stream/wireshark_viewer.h"
#include "common/printable.h"
#include "filters/bpf_filter.h"
#include "proto/capture.grpc.pb.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace capd::client {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t WallClockNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

int Fail(const Status& status) {
  std::fprintf(stderr, "capctl: %s\n", status.message().c_str());
  return ExitCodeFor(status.code());
}

std::string ReasonText(v1::StreamEnd::Reason reason) {
  switch (reason) {
    case v1::StreamEnd::COUNT_REACHED:
      return "packet count reached";
    case v1::StreamEnd::DURATION_REACHED:
      return "duration reached";
    case v1::StreamEnd::AGENT_SHUTDOWN:
      return "the agent is shutting down";
    case v1::StreamEnd::CAPTURE_ERROR:
      return "capture error";
    case v1::StreamEnd::CLIENT_CANCELLED:
      return "cancelled";
    default:
      return "unknown reason";
  }
}

// "tunnel packets: 120 decapsulated, 2 malformed, 5 vni_not_selected"; empty when none.
std::string DecapOutcomesText(const std::map<std::string, uint64_t>& outcomes) {
  std::string text;
  for (const auto& [reason, count] : outcomes) {
    text += (text.empty() ? "tunnel packets: " : ", ") + std::to_string(count) + " " + reason;
  }
  return text;
}

// Per interface of the stream: what goes into its statistics block and the summary.
struct InterfaceState {
  uint32_t file_index = 0;
  std::string name;
  uint64_t start_ns = 0;
  v1::InterfaceStatistics latest;  // the agent's last statistics for it
  uint64_t last_statistics_ns = 0;
  bool in_file = true;  // false: a mirror capture interface left out of a pcap file
  std::map<std::string, uint64_t> decap_outcomes;
  uint64_t written = 0;    // packets the sink accepted
  uint64_t unflushed = 0;  // packets encoded but not yet flushed
};

// What goes into an interface's statistics block.
InterfaceCounters CountersFor(const InterfaceState& state, const std::string& comment) {
  InterfaceCounters counters;
  counters.start_ns = state.start_ns;
  counters.end_ns = state.last_statistics_ns != 0 ? state.last_statistics_ns : state.start_ns;
  counters.received = state.latest.packets_received();
  counters.interface_drops = state.latest.interface_drops();
  counters.kernel_drops = state.latest.kernel_drops();
  counters.agent_drops = state.latest.agent_drops();
  // Packets encoded but not yet flushed go out in the same write as this block.
  counters.delivered = state.written + state.unflushed;
  counters.comment = DecapOutcomesText(state.decap_outcomes);
  if (!comment.empty()) {
    counters.comment += (counters.comment.empty() ? "" : "; ") + comment;
  }
  return counters;
}

// dumpcap-like one-line progress on a terminal, rewritten in place at most twice a second.
class LiveStatusLine {
 public:
  explicit LiveStatusLine(bool enabled) : enabled_(enabled) {}
  void Update(uint64_t packets, uint64_t drops) {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(500)) return;
    const double seconds = std::chrono::duration<double>(now - last_).count();
    const double rate = last_packets_ <= packets ? (packets - last_packets_) / seconds : 0;
    std::fprintf(stderr, "\rPackets: %llu  dropped: %llu  rate: %.0f pkt/s   ",
                 static_cast<unsigned long long>(packets), static_cast<unsigned long long>(drops),
                 rate);
    last_ = now;
    last_packets_ = packets;
    shown_ = true;
  }
  void End() {
    if (shown_) std::fputc('\n', stderr);
  }

 private:
  bool enabled_;
  bool shown_ = false;
  Clock::time_point last_ = Clock::now();
  uint64_t last_packets_ = 0;
};

// Interfaces are keyed by (feed, the stream's interface index).
using InterfaceKey = std::pair<size_t, uint32_t>;

// Streams from one or more agents into one file, merged by timestamp.
//
// Merge rule: the packet with the smallest timestamp among the feeds' queue heads is written
// once every other live feed has a packet queued too (so nothing earlier can still come from
// it), or once it has waited kReorderWindow. Agents send within ~10 ms of capture, so the window
// only matters when a feed is quiet or slow; a packet that still arrives later than its turn is
// written at once (never dropped) and counted as out of order.
class MergedStream {
 public:
  // output.sink is already inside `writer` (or, for a rotating ring, not used).
  MergedStream(const StreamOptions& options, OutputTarget output,
               std::unique_ptr<CaptureWriter> writer)
      : options_(options), output_(std::move(output)), writer_(std::move(writer)) {}

  void AddFeed(std::unique_ptr<AgentFeed> feed) { feeds_.push_back(std::move(feed)); }
  FeedHub& hub() { return hub_; }
  int Run();
  void Interrupt() {
    interrupted_.store(true);
    for (auto& feed : feeds_) feed->Cancel();
  }

 private:
  static constexpr std::chrono::milliseconds kReorderWindow{500};
  // A round writes at most about this much before flushing: the bytes are still in the CPU's
  // cache when write() copies them into the page cache. Writing several queued 512 KiB messages
  // in one go made that copy cold and slow enough (1500 B at full rate) that capctl fell further
  // behind, so the next round was larger still.
  static constexpr size_t kRoundBytes = 256 * 1024;
  // How long the merger waits for a reader before it looks at the output and the clock itself.
  static constexpr std::chrono::milliseconds kQuietLook{1000};

  Status OnInterface(AgentFeed& feed, const v1::InterfaceDescription& description);
  void OnStatistics(AgentFeed& feed, const v1::Statistics& statistics);
  // Writes the head batch's packets from its cursor on, in order, while their timestamps are at
  // most `until_ns` (the first one always) and fewer than `budget` are written.
  Status WriteRun(AgentFeed& feed, Arrival& arrival, uint64_t until_ns, uint64_t budget);
  // Handles the non-packet messages at the head of a feed; false if the head is a packet.
  Status DrainControl(AgentFeed& feed, bool& progressed);
  void EndFeed(AgentFeed& feed);
  void WriteStatisticsBlocks(size_t feed_index, const std::string& comment);
  void PrintSummary(const std::string& ending);
  uint64_t TotalDrops() const;
  // An agent has sent its first interface description: it accepted the stream. `started` is set
  // by OnInterface on this (the merger's) thread, so no lock is needed to read it here.
  bool AnyFeedStarted() const {
    return std::any_of(feeds_.begin(), feeds_.end(),
                       [](const auto& feed) { return feed->started; });
  }
  std::string InterfaceName(const AgentFeed& feed, const std::string& name) const;

  const StreamOptions& options_;
  OutputTarget output_;
  std::unique_ptr<CaptureWriter> writer_;
  FeedHub hub_;
  std::vector<std::unique_ptr<AgentFeed>> feeds_;
  std::atomic<bool> interrupted_{false};
  std::map<InterfaceKey, InterfaceState> interfaces_;
  uint32_t next_file_index_ = 0;
  std::map<size_t, std::string> excluded_carriers_;
  std::map<size_t, std::string> relay_warnings_;
  std::map<size_t, std::string> capture_warnings_;
  uint64_t written_ = 0;
  uint64_t unflushed_ = 0;
  size_t unflushed_bytes_ = 0;  // packet bytes encoded this round (see kRoundBytes)
  uint64_t out_of_order_ = 0;
  uint64_t last_timestamp_ns_ = 0;
  bool count_reached_ = false;  // -c with several agents: capctl stopped them itself
};

std::string MergedStream::InterfaceName(const AgentFeed& feed, const std::string& name) const {
  // With several agents every interface says where it was seen: NAME:IFACE.
  if (feeds_.size() < 2) return name;
  return (feed.agent_name.empty() ? feed.address() : feed.agent_name) + ":" + name;
}

Status MergedStream::OnInterface(AgentFeed& feed, const v1::InterfaceDescription& d) {
  if (feed.agent_name.empty()) feed.agent_name = d.agent_name();
  feed.started = true;
  InterfaceState state;
  state.name = InterfaceName(feed, d.name());
  state.start_ns = d.capture_start_ns();
  // In mirror-target mode the capture interface carries no packets of its own; a pcap file
  // holds one link type, that of the inner frames, so it is left out there.
  if (options_.format == FileFormat::kPcap && options_.decap.mode != DecapOptions::Mode::kNone &&
      d.encapsulation().empty()) {
    state.in_file = false;
    interfaces_[{feed.index(), d.index()}] = state;
    std::fprintf(stderr, "capctl: capturing on %s (agent %s, decapsulating)\n", state.name.c_str(),
                 d.agent_name().c_str());
    return Status::Ok();
  }
  InterfaceInfo info;
  info.name = state.name;
  info.description = d.description();
  info.filter = d.filter();
  info.os = d.os();
  info.link_type = static_cast<uint16_t>(d.link_type());
  info.snaplen = d.snaplen();
  CAPD_RETURN_IF_ERROR(writer_->AddInterface(info));
  state.file_index = next_file_index_++;
  interfaces_[{feed.index(), d.index()}] = state;
  // The header reaches the reader before any packet: Wireshark shows the interface at once.
  CAPD_RETURN_IF_ERROR(writer_->Flush());
  if (d.encapsulation().empty()) {
    std::fprintf(stderr, "capctl: capturing on %s (agent %s, link type %u, snaplen %u)\n",
                 state.name.c_str(), d.agent_name().c_str(), d.link_type(), d.snaplen());
  } else {
    std::fprintf(stderr, "capctl: new interface %s: %s\n", state.name.c_str(),
                 d.description().c_str());
  }
  return Status::Ok();
}

void MergedStream::OnStatistics(AgentFeed& feed, const v1::Statistics& statistics) {
  // Say what the agent leaves out of the capture because it carries this very stream.
  std::string carriers;
  for (const std::string& c : statistics.excluded_carriers()) {
    carriers += (carriers.empty() ? "" : "; ") + PrintableText(c);
  }
  if (carriers != excluded_carriers_[feed.index()]) {
    excluded_carriers_[feed.index()] = carriers;
    if (!carriers.empty()) {
      std::fprintf(stderr, "capctl: agent %s excludes the connections carrying this stream: %s\n",
                   feed.address().c_str(), carriers.c_str());
    }
  }
  // The agent could not identify (or would not trust) the relay of this stream: its traffic is
  // in the capture, and the user should know before reading the capture.
  const std::string warning = PrintableText(statistics.relay_warning());
  if (warning != relay_warnings_[feed.index()]) {
    relay_warnings_[feed.index()] = warning;
    if (!warning.empty()) {
      std::fprintf(stderr, "capctl: warning: agent %s: %s\n", feed.address().c_str(),
                   warning.c_str());
    }
  }
  // The agent limited the capture (too many decapsulated sessions): said once per agent.
  const std::string capture_warning = PrintableText(statistics.capture_warning());
  if (capture_warning != capture_warnings_[feed.index()]) {
    capture_warnings_[feed.index()] = capture_warning;
    if (!capture_warning.empty()) {
      std::fprintf(stderr, "capctl: warning: agent %s: %s\n", feed.address().c_str(),
                   capture_warning.c_str());
    }
  }
  for (const v1::InterfaceStatistics& s : statistics.interfaces()) {
    auto it = interfaces_.find({feed.index(), s.interface_index()});
    if (it == interfaces_.end()) continue;
    it->second.latest = s;
    it->second.last_statistics_ns = statistics.timestamp_ns();
    it->second.decap_outcomes.clear();
    for (const auto& [reason, count] : s.decap_outcomes())
      it->second.decap_outcomes[reason] = count;
    // A ring of files ends each file with statistics blocks: it keeps the latest counters (a
    // single file gets its blocks once, at the end).
    if (options_.rotation && it->second.in_file) {
      (void)writer_->WriteStatistics(it->second.file_index, CountersFor(it->second, ""));
    }
  }
}

Status MergedStream::WriteRun(AgentFeed& feed, Arrival& arrival, uint64_t until_ns,
                              uint64_t budget) {
  // The per-packet path of capctl: no clock, no lock taken, one interface lookup per change of
  // interface (a batch usually has one), the writer's buffer grows and is flushed per round.
  const v1::PacketBatch& batch = arrival.message->packets();
  const int n = batch.timestamp_ns_size();
  const auto* data = reinterpret_cast<const uint8_t*>(batch.data().data());
  const size_t data_size = batch.data().size();
  InterfaceState* state = nullptr;
  uint32_t state_index = 0;
  uint64_t written = 0;
  while (arrival.next_packet < n && written < budget &&
         (written == 0 || unflushed_bytes_ < kRoundBytes)) {
    const int i = arrival.next_packet;
    const uint64_t ts = batch.timestamp_ns(i);
    if (written > 0 && ts > until_ns) break;
    const uint32_t caplen = batch.captured_length(i);
    if (caplen > data_size - arrival.data_offset) {
      return Internal("agent sent a malformed batch (data too short)");
    }
    const uint32_t interface_index = batch.interface_index(i);
    if (state == nullptr || interface_index != state_index) {
      auto it = interfaces_.find({feed.index(), interface_index});
      if (it == interfaces_.end() || !it->second.in_file) {
        return Internal("agent sent a packet for an undeclared interface");
      }
      state = &it->second;
      state_index = interface_index;
    }
    // Comments are sparse and sorted by packet position: one cursor walks them with the packets
    // (every packet of a GWLB stream has one, so a scan per packet would be quadratic).
    std::string_view comment;
    if (arrival.next_comment < batch.comment_packet_size() &&
        batch.comment_packet(arrival.next_comment) == static_cast<uint32_t>(i)) {
      comment = batch.comment(arrival.next_comment++);
    }
    if (ts < last_timestamp_ns_) ++out_of_order_;
    last_timestamp_ns_ = std::max(last_timestamp_ns_, ts);
    CAPD_RETURN_IF_ERROR(writer_->WritePacket(
        state->file_index, ts, batch.original_length(i),
        std::span<const uint8_t>(data + arrival.data_offset, caplen), comment));
    arrival.data_offset += caplen;
    ++arrival.next_packet;
    ++state->unflushed;
    ++unflushed_;
    unflushed_bytes_ += caplen;
    ++written;
  }
  return Status::Ok();
}

Status MergedStream::DrainControl(AgentFeed& feed, bool& progressed) {
  while (!feed.queue.empty()) {
    Arrival& head = feed.queue.front();
    const v1::StreamResponse& m = *head.message;
    if (m.has_packets()) {
      const v1::PacketBatch& b = m.packets();
      const int n = b.timestamp_ns_size();
      if (b.interface_index_size() != n || b.original_length_size() != n ||
          b.captured_length_size() != n || b.comment_packet_size() != b.comment_size()) {
        return Internal("agent sent a malformed batch (array lengths differ)");
      }
      if (head.next_packet < n) return Status::Ok();  // a packet waits to be merged
      feed.queued_bytes -= b.data().size();
    } else if (m.has_interface()) {
      CAPD_RETURN_IF_ERROR(OnInterface(feed, m.interface()));
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

uint64_t MergedStream::TotalDrops() const {
  uint64_t drops = 0;
  for (const auto& [key, state] : interfaces_) {
    drops +=
        state.latest.kernel_drops() + state.latest.interface_drops() + state.latest.agent_drops();
  }
  return drops;
}

void MergedStream::WriteStatisticsBlocks(size_t feed_index, const std::string& comment) {
  for (const auto& [key, state] : interfaces_) {
    if (key.first != feed_index || !state.in_file) continue;
    if (!writer_->WriteStatistics(state.file_index, CountersFor(state, comment)).ok()) return;
  }
}

// An agent's stream is over: its interfaces end here, with a statistics block that says why.
void MergedStream::EndFeed(AgentFeed& feed) {
  if (feed.ended_written) return;
  feed.ended_written = true;
  std::string why;
  if (feed.end) {
    why = ReasonText(feed.end->reason());
    if (!feed.end->message().empty()) why += ": " + feed.end->message();
  } else if (!feed.status.ok() && !interrupted_.load() && !count_reached_) {
    why = feed.started ? "agent went away: " + feed.status.error_message()
                       : "refused: " + DescribeRefusal(feed.status);
  }
  const bool several = feeds_.size() > 1;
  if (several && !why.empty()) {
    std::fprintf(stderr, "capctl: agent %s ended: %s\n", feed.address().c_str(), why.c_str());
  }
  WriteStatisticsBlocks(feed.index(), several && !why.empty() ? "ended: " + why : "");
}

void MergedStream::PrintSummary(const std::string& ending) {
  auto line = [](size_t feed_filter, const std::map<InterfaceKey, InterfaceState>& interfaces) {
    uint64_t kernel = 0, interface = 0, agent = 0, written = 0;
    std::string decap;
    for (const auto& [key, state] : interfaces) {
      if (feed_filter != SIZE_MAX && key.first != feed_filter) continue;
      kernel += state.latest.kernel_drops();
      interface += state.latest.interface_drops();
      agent += state.latest.agent_drops();
      written += state.written;
      if (!state.decap_outcomes.empty()) decap += "; " + DecapOutcomesText(state.decap_outcomes);
    }
    char text[256];
    std::snprintf(text, sizeof text, "dropped: %llu by kernel, %llu by interface, %llu by agent",
                  static_cast<unsigned long long>(kernel),
                  static_cast<unsigned long long>(interface),
                  static_cast<unsigned long long>(agent));
    return std::make_pair(written, std::string(text) + decap);
  };
  const auto [total, drops] = line(SIZE_MAX, interfaces_);
  std::fprintf(stderr, "capctl: %llu packets written to %s; %s (%s)\n",
               static_cast<unsigned long long>(written_), output_.name.c_str(), drops.c_str(),
               ending.c_str());
  if (feeds_.size() < 2) return;
  for (const auto& feed : feeds_) {
    const auto [written, feed_drops] = line(feed->index(), interfaces_);
    std::string end = feed->end ? ReasonText(feed->end->reason())
                      : feed->status.ok() || interrupted_.load() || count_reached_ ? "stopped"
                      : feed->started ? "agent went away: " + feed->status.error_message()
                                      : "refused: " + DescribeRefusal(feed->status);
    std::fprintf(stderr, "capctl:   agent %s (%s): %llu packets; %s (%s)\n",
                 feed->agent_name.empty() ? "?" : feed->agent_name.c_str(), feed->address().c_str(),
                 static_cast<unsigned long long>(written), feed_drops.c_str(), end.c_str());
  }
  if (out_of_order_ > 0) {
    std::fprintf(stderr,
                 "capctl:   %llu packets arrived after the merge window and are out of order\n",
                 static_cast<unsigned long long>(out_of_order_));
  }
}

int MergedStream::Run() {
  for (auto& feed : feeds_) feed->Start();
  LiveStatusLine status_line(!output_.is_stream && isatty(STDERR_FILENO));
  Status local_error;
  bool reader_gone = false;
  const bool client_count = options_.count != 0 && feeds_.size() > 1;

  std::unique_lock lock(hub_.mu);
  while (true) {
    // What the readers had queued when this round began: the round takes all of it.
    const uint64_t arrivals_seen = hub_.arrivals;
    // When the head packet waits for the other agents' (kReorderWindow), the round ends early
    // and the merger looks again by this time.
    Clock::time_point reorder_deadline = Clock::time_point::max();
    bool progressed = true;
    while (progressed && local_error.ok() && unflushed_bytes_ < kRoundBytes) {
      progressed = false;
      AgentFeed* best = nullptr;
      uint64_t best_ts = 0;
      uint64_t runner_up_ts = UINT64_MAX;  // the earliest head among the other feeds
      for (auto& feed : feeds_) {
        local_error = DrainControl(*feed, progressed);
        if (!local_error.ok()) break;
        if (feed->queue.empty()) continue;
        const Arrival& head = feed->queue.front();
        const uint64_t ts = head.message->packets().timestamp_ns(head.next_packet);
        if (best == nullptr || ts < best_ts) {
          if (best != nullptr) runner_up_ts = best_ts;
          best = feed.get(), best_ts = ts;
        } else {
          runner_up_ts = std::min(runner_up_ts, ts);
        }
      }
      if (!local_error.ok() || best == nullptr || count_reached_) break;
      bool others_ready = true;
      for (auto& feed : feeds_) {
        if (feed.get() == best || (feed->done && feed->queue.empty())) continue;
        if (feed->queue.empty()) others_ready = false;
      }
      // With one agent (or every other one ready) the whole run up to the next feed's head is in
      // order: it is written in one go. Otherwise one packet, once it has waited long enough.
      uint64_t until_ns = runner_up_ts;
      if (!others_ready) {
        reorder_deadline = best->queue.front().arrived + kReorderWindow;
        if (Clock::now() < reorder_deadline) break;
        reorder_deadline = Clock::time_point::max();
        until_ns = 0;
      }
      const uint64_t budget = client_count ? options_.count - (written_ + unflushed_) : UINT64_MAX;
      local_error = WriteRun(*best, best->queue.front(), until_ns, budget);
      progressed = true;
      if (client_count && written_ + unflushed_ >= options_.count) {
        count_reached_ = true;
        // The rest is not wanted: drop it, so no reader stays blocked waiting for queue space.
        for (auto& feed : feeds_) {
          feed->Cancel();
          feed->queue.clear();
          feed->queued_bytes = 0;
        }
        progressed = false;
      }
    }
    for (auto& feed : feeds_) {
      if (feed->done && feed->queue.empty()) EndFeed(*feed);
    }
    // One write per round, outside the lock: the readers keep filling their queues meanwhile.
    lock.unlock();
    // A ring of files also turns over on wall-clock boundaries when the link is quiet.
    if (local_error.ok()) local_error = writer_->Tick(WallClockNs());
    // Nothing reaches the output before an agent has accepted the stream (its first interface):
    // a refused stream must not create or truncate -w FILE.
    Status flushed = local_error.ok() && AnyFeedStarted() ? writer_->Flush() : Status::Ok();
    lock.lock();
    if (flushed.ok()) {
      written_ += unflushed_;
      for (auto& [key, state] : interfaces_) state.written += std::exchange(state.unflushed, 0);
    } else if (flushed.code() == StatusCode::kUnavailable && output_.is_stream) {
      reader_gone = true;  // Wireshark closed, `head` had enough: a normal way to stop
    } else {
      local_error = flushed;
    }
    unflushed_ = 0;
    const bool round_full = std::exchange(unflushed_bytes_, 0) >= kRoundBytes;
    hub_.changed.notify_all();  // readers waiting for queue space
    if (!local_error.ok() || reader_gone) {
      for (auto& feed : feeds_) feed->Cancel();
      break;
    }
    lock.unlock();
    status_line.Update(written_, TotalDrops());
    lock.lock();
    // Once the count is reached the packets still queued are not wanted: done means the calls
    // have finished.
    bool all_done = true;
    for (auto& feed : feeds_) {
      all_done = all_done && feed->done && (feed->queue.empty() || count_reached_);
    }
    if (all_done) break;
    // On a quiet link nothing is written, so EPIPE never comes: Linux raises POLLERR on a
    // pipe's write end once the last reader has closed it (tshark -c N done, Wireshark closed).
    if (output_.watch_fd >= 0) {
      pollfd watch{output_.watch_fd, 0, 0};
      if (poll(&watch, 1, 0) == 1 && (watch.revents & (POLLERR | POLLHUP)) != 0) {
        reader_gone = true;
        for (auto& feed : feeds_) feed->Cancel();
        break;
      }
    }
    if (round_full) continue;  // more is queued: write on at once
    // Readers notify on every message (the agent's statistics come once a second) and at their
    // end; what they queued while the lock was released for the write is not waited for. The
    // merger looks on its own only for what no reader announces: the output's reader leaving, a
    // ring's time boundary, the end of a reorder wait. (It used to look every 50 ms, which also
    // bounded the stall after a notification that came while it was writing; on this VM that
    // look alone cost ~1 ms of CPU per second on a quiet link.)
    hub_.changed.wait_until(lock, std::min(reorder_deadline, Clock::now() + kQuietLook),
                            [&] { return hub_.arrivals != arrivals_seen; });
  }
  // Wait for the readers to finish (cancelled ones finish promptly).
  hub_.changed.wait_for(lock, std::chrono::seconds(5), [&] {
    for (auto& feed : feeds_) {
      if (!feed->done) return false;
    }
    return true;
  });
  status_line.End();

  if (!local_error.ok()) {
    for (auto& feed : feeds_) EndFeed(*feed);
    (void)writer_->Close();
    PrintSummary("stopped: " + local_error.message());
    return 1;
  }
  if (reader_gone) {
    PrintSummary("the reader of " + output_.name + " went away");
    return 0;
  }
  // A single agent that refused the stream before it started: its status is the whole story.
  if (feeds_.size() == 1 && !feeds_[0]->status.ok() && !feeds_[0]->started &&
      !interrupted_.load()) {
    std::fprintf(stderr, "capctl: agent %s refused the stream: %s\n", feeds_[0]->address().c_str(),
                 DescribeRefusal(feeds_[0]->status).c_str());
    return ExitCodeFor(FromGrpcStatus(feeds_[0]->status).code());
  }
  for (auto& feed : feeds_) EndFeed(*feed);
  // The reader may be gone already; the summary says what was written.
  // No agent accepted the stream: leave -w FILE as it was (see the flush in the loop).
  if (Status closed = AnyFeedStarted() ? writer_->Close() : Status::Ok();
      !closed.ok() && !output_.is_stream) {
    std::fprintf(stderr, "capctl: %s\n", closed.message().c_str());
  }
  if (interrupted_.load()) {
    PrintSummary("interrupted");
    return 0;
  }
  if (count_reached_) {
    PrintSummary("packet count reached");
    return 0;
  }
  int code = 0;
  std::string ending;
  for (auto& feed : feeds_) {
    std::string why;
    int feed_code = 0;
    if (feed->end) {
      why = ReasonText(feed->end->reason());
      if (!feed->end->message().empty()) why += ": " + feed->end->message();
      const bool normal = feed->end->reason() == v1::StreamEnd::COUNT_REACHED ||
                          feed->end->reason() == v1::StreamEnd::DURATION_REACHED;
      feed_code = normal ? 0 : 1;
    } else if (!feed->status.ok()) {
      why = feed->started ? "agent went away: " + feed->status.error_message()
                          : "refused: " + DescribeRefusal(feed->status);
      feed_code = feed->started ? 1 : ExitCodeFor(FromGrpcStatus(feed->status).code());
    } else {
      why = "the agent ended the stream without a reason";
      feed_code = 1;
    }
    code = std::max(code, feed_code);
    if (ending.find(why) == std::string::npos) ending += (ending.empty() ? "" : "; ") + why;
  }
  PrintSummary(ending);
  return code;
}

}  // namespace

int RunStreamCommand(const StreamOptions& options) {
  // A busy stream brings messages of up to ~256 KiB several hundred times a second, each parsed
  // into a fresh buffer and freed once written. By default glibc gives such chunks back to the
  // kernel on free (mmap, or trimming the heap's top) and the next message faults the pages in
  // again: 7 % of capctl's CPU at 64 B full rate (perf). Keep them in the heap instead; capctl's
  // memory is bounded by its queue (AgentFeed::kMaxQueuedBytes) either way.
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
  // Fail before connecting on a filter that compiles for no usual link type; the agent checks
  // again against the capture's real one.
  if (Status filter = filters::PrecheckFilter(options.filter); !filter.ok()) return Fail(filter);

  std::mutex mu;
  MergedStream* active = nullptr;
  SignalWatcher watcher([&](int) {
    std::lock_guard lock(mu);
    if (active != nullptr) {
      active->Interrupt();
    } else {
      // Still connecting or waiting for a FIFO reader: nothing to complete.
      std::fputs("capctl: interrupted\n", stderr);
      std::_Exit(0);
    }
  });

  v1::StreamRequest request;
  request.set_filter(options.filter);
  // tcpdump's -s 0 means the largest snaplen; the agent takes only 1..262144.
  if (options.snaplen != 0) request.set_snaplen(options.snaplen);
  request.set_max_packets(options.count);
  request.set_duration_ms(options.duration_ms);
  request.set_no_promiscuous(!options.promiscuous);
  if (options.decap.mode != DecapOptions::Mode::kNone) {
    v1::Decapsulation* d = request.mutable_decap();
    d->set_mode(options.decap.mode == DecapOptions::Mode::kVxlan    ? v1::Decapsulation::VXLAN
                : options.decap.mode == DecapOptions::Mode::kGeneve ? v1::Decapsulation::GENEVE
                                                                    : v1::Decapsulation::AUTO);
    d->set_vxlan_port(options.decap.vxlan_port);
    d->set_geneve_port(options.decap.geneve_port);
    for (uint32_t vni : options.decap.vnis) d->add_vnis(vni);
    d->set_inner_filter(options.decap.inner_filter);
  }

  // Connect first: an unreachable agent should not leave an empty file behind. With several
  // agents, one that cannot be reached is reported and the others still stream.
  std::vector<std::pair<const AgentAddress*, AgentConnection>> connections;
  Status first_failure;
  for (const AgentAddress& agent : options.agents) {
    auto connection = AgentConnection::Connect(agent, options.connection);
    if (!connection.ok()) {
      if (options.agents.size() > 1) {
        std::fprintf(stderr, "capctl: %s\n", connection.status().message().c_str());
      }
      if (first_failure.ok()) first_failure = connection.status();
      continue;
    }
    connections.emplace_back(&agent, std::move(connection.value()));
  }
  if (connections.empty()) return Fail(first_failure);

  std::unique_ptr<WiresharkViewer> viewer;
  StreamOptions effective = options;
  if (options.wireshark) {
    auto started = WiresharkViewer::Start();
    if (!started.ok()) return Fail(started.status());
    viewer = std::move(started.value());
    effective.fifo_path = viewer->fifo_path();
  }
  OutputTarget output;
  std::unique_ptr<CaptureWriter> writer;
  if (options.rotation) {
    // A ring of files named after -w PATH; the first is opened now so a bad path fails early.
    auto ring = MakeRotatingWriter(*options.rotation, "capctl " CAPD_VERSION);
    if (!ring.ok()) return Fail(ring.status());
    writer = std::move(ring.value());
    output.name = "the ring of files " + options.rotation->path;
  } else {
    auto opened = OpenOutputTarget(effective, [&viewer] { return viewer && viewer->Exited(); });
    if (!opened.ok()) return Fail(opened.status());
    output = std::move(opened.value());
    writer = options.format == FileFormat::kPcap
                 ? MakePcapWriter(std::move(output.sink))
                 : MakePcapngWriter(std::move(output.sink), "capctl " CAPD_VERSION);
  }

  MergedStream run(options, std::move(output), std::move(writer));
  size_t feed_index = 0;
  for (auto& [agent, connection] : connections) {
    v1::StreamRequest agent_request = request;
    // -i wins; else the interface named in the agent address; else the agent's default.
    agent_request.set_interface(!options.interface.empty() ? options.interface : agent->interface);
    run.AddFeed(std::make_unique<AgentFeed>(feed_index++, agent->text, std::move(connection),
                                            agent_request, run.hub()));
  }
  {
    std::lock_guard lock(mu);
    active = &run;
  }
  int code = run.Run();
  if (code == 0 && !first_failure.ok()) code = 1;  // an agent could not be reached at all
  std::lock_guard lock(mu);
  active = nullptr;
  return code;
}

}  // namespace capd::client
