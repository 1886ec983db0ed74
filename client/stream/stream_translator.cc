#include "client/stream/stream_translator.h"

#include <algorithm>
#include <span>
#include <string_view>

namespace capd::client {
namespace {

// "tunnel packets: 120 decapsulated, 2 malformed, 5 vni_not_selected"; empty when none.
std::string DecapOutcomesText(const std::map<std::string, uint64_t>& outcomes) {
  std::string text;
  for (const auto& [reason, count] : outcomes) {
    text += (text.empty() ? "tunnel packets: " : ", ") + std::to_string(count) + " " + reason;
  }
  return text;
}

}  // namespace

InterfaceCounters StreamTranslator::CountersFor(const InterfaceState& state,
                                                const std::string& comment) {
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

StatusOr<InterfaceSeen> StreamTranslator::AddInterface(size_t feed, const std::string& name,
                                                       const v1::InterfaceDescription& d) {
  InterfaceSeen seen;
  seen.name = name;
  seen.description = d.description();
  seen.link_type = d.link_type();
  seen.snaplen = d.snaplen();
  seen.decapsulated = !d.encapsulation().empty();
  InterfaceState state;
  state.name = name;
  state.start_ns = d.capture_start_ns();
  // In mirror-target mode the capture interface carries no packets of its own.
  if (leave_out_capture_interfaces_ && d.encapsulation().empty()) {
    state.in_file = false;
    interfaces_[{feed, d.index()}] = state;
    seen.left_out = true;
    return seen;
  }
  InterfaceInfo info;
  info.name = name;
  info.description = d.description();
  info.filter = d.filter();
  info.os = d.os();
  info.link_type = static_cast<uint16_t>(d.link_type());
  info.snaplen = d.snaplen();
  CAPD_RETURN_IF_ERROR(writer_.AddInterface(info));
  state.file_index = next_file_index_++;
  interfaces_[{feed, d.index()}] = state;
  // The header reaches the reader before any packet: Wireshark shows the interface at once.
  CAPD_RETURN_IF_ERROR(writer_.Flush());
  return seen;
}

void StreamTranslator::UpdateStatistics(size_t feed, const v1::Statistics& statistics) {
  for (const v1::InterfaceStatistics& s : statistics.interfaces()) {
    auto it = interfaces_.find({feed, s.interface_index()});
    if (it == interfaces_.end()) continue;
    it->second.latest = s;
    it->second.last_statistics_ns = statistics.timestamp_ns();
    it->second.decap_outcomes.clear();
    for (const auto& [reason, count] : s.decap_outcomes()) {
      it->second.decap_outcomes[reason] = count;
    }
    if (statistics_in_every_file_ && it->second.in_file) {
      (void)writer_.WriteStatistics(it->second.file_index, CountersFor(it->second, ""));
    }
  }
}

Status StreamTranslator::ValidateBatch(const v1::PacketBatch& b) {
  const int n = b.timestamp_ns_size();
  if (b.interface_index_size() != n || b.original_length_size() != n ||
      b.captured_length_size() != n || b.comment_packet_size() != b.comment_size()) {
    return Internal("agent sent a malformed batch (array lengths differ)");
  }
  return Status::Ok();
}

StatusOr<uint64_t> StreamTranslator::WriteRun(size_t feed, Arrival& arrival, uint64_t until_ns,
                                              uint64_t budget, size_t round_bytes_limit) {
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
         (written == 0 || unflushed_bytes_ < round_bytes_limit)) {
    const int i = arrival.next_packet;
    const uint64_t ts = batch.timestamp_ns(i);
    if (written > 0 && ts > until_ns) break;
    const uint32_t caplen = batch.captured_length(i);
    if (caplen > data_size - arrival.data_offset) {
      return Internal("agent sent a malformed batch (data too short)");
    }
    const uint32_t interface_index = batch.interface_index(i);
    if (state == nullptr || interface_index != state_index) {
      auto it = interfaces_.find({feed, interface_index});
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
    CAPD_RETURN_IF_ERROR(
        writer_.WritePacket(state->file_index, ts, batch.original_length(i),
                            std::span<const uint8_t>(data + arrival.data_offset, caplen), comment));
    arrival.data_offset += caplen;
    ++arrival.next_packet;
    ++state->unflushed;
    ++unflushed_;
    unflushed_bytes_ += caplen;
    ++written;
  }
  return written;
}

void StreamTranslator::CommitFlushed() {
  for (auto& [key, state] : interfaces_) state.written += std::exchange(state.unflushed, 0);
  unflushed_ = 0;
  unflushed_bytes_ = 0;
}

void StreamTranslator::DiscardUnflushed() {
  for (auto& [key, state] : interfaces_) state.unflushed = 0;
  unflushed_ = 0;
  unflushed_bytes_ = 0;
}

void StreamTranslator::WriteStatisticsBlocks(size_t feed, const std::string& comment) {
  for (const auto& [key, state] : interfaces_) {
    if (key.first != feed || !state.in_file) continue;
    if (!writer_.WriteStatistics(state.file_index, CountersFor(state, comment)).ok()) return;
  }
}

uint64_t StreamTranslator::written(size_t feed) const {
  uint64_t total = 0;
  for (const auto& [key, state] : interfaces_) {
    if (feed == kAllFeeds || key.first == feed) total += state.written;
  }
  return total;
}

DropCounts StreamTranslator::drops(size_t feed) const {
  DropCounts drops;
  for (const auto& [key, state] : interfaces_) {
    if (feed != kAllFeeds && key.first != feed) continue;
    drops.kernel += state.latest.kernel_drops();
    drops.interface += state.latest.interface_drops();
    drops.agent += state.latest.agent_drops();
  }
  return drops;
}

std::string StreamTranslator::decap_outcomes(size_t feed) const {
  std::string text;
  for (const auto& [key, state] : interfaces_) {
    if (feed != kAllFeeds && key.first != feed) continue;
    if (!state.decap_outcomes.empty()) text += "; " + DecapOutcomesText(state.decap_outcomes);
  }
  return text;
}

}  // namespace capd::client
