#include "capfile/stream_to_file.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

namespace capd::capfile {

StatusOr<BatchView> BatchView::Check(const v1::PacketBatch& batch) {
  const int n = batch.timestamp_ns_size();
  if (batch.interface_index_size() != n || batch.original_length_size() != n ||
      batch.captured_length_size() != n || batch.comment_packet_size() != batch.comment_size()) {
    return Internal("agent sent a malformed batch (array lengths differ)");
  }
  uint32_t previous = 0;
  for (const uint32_t position : batch.comment_packet()) {
    if (position < previous || position >= static_cast<uint32_t>(n)) {
      return Internal("agent sent a malformed batch (comment positions out of order)");
    }
    previous = position;
  }
  uint64_t total = 0;  // n < 2^31 lengths of < 2^32 each: no overflow in 64 bits
  for (int i = 0; i < n; ++i) {
    const uint32_t captured = batch.captured_length(i);
    if (captured > batch.original_length(i)) {
      return Internal("agent sent a malformed batch (captured length over original length)");
    }
    total += captured;
  }
  if (total > batch.data().size()) {
    return Internal("agent sent a malformed batch (data too short)");
  }
  return BatchView(batch);
}

BatchPacket BatchView::Next(BatchCursor& cursor) const {
  const v1::PacketBatch& b = *batch_;
  const int i = cursor.next_packet;
  BatchPacket packet;
  packet.interface_index = b.interface_index(i);
  packet.timestamp_ns = b.timestamp_ns(i);
  packet.original_length = b.original_length(i);
  const uint32_t captured = b.captured_length(i);
  packet.data = std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(b.data().data()) + cursor.data_offset, captured);
  if (cursor.next_comment < b.comment_packet_size() &&
      b.comment_packet(cursor.next_comment) == static_cast<uint32_t>(i)) {
    packet.comment = b.comment(cursor.next_comment++);
    // A writer takes one comment per packet: further ones for the same packet are passed over
    // (capd attaches at most one), so the packets after it keep theirs.
    while (cursor.next_comment < b.comment_packet_size() &&
           b.comment_packet(cursor.next_comment) == static_cast<uint32_t>(i)) {
      ++cursor.next_comment;
    }
  }
  cursor.data_offset += captured;
  ++cursor.next_packet;
  return packet;
}

std::string DecapOutcomesText(const v1::InterfaceStatistics& statistics) {
  // A protobuf map has no order: sorted by reason, so the text is the same every time.
  const std::map<std::string, uint64_t> outcomes(statistics.decap_outcomes().begin(),
                                                 statistics.decap_outcomes().end());
  std::string text;
  for (const auto& [reason, count] : outcomes) {
    text += (text.empty() ? "tunnel packets: " : ", ") + std::to_string(count) + " " + reason;
  }
  return text;
}

InterfaceCounters CountersOf(const StreamInterface& interface, std::string_view extra_comment) {
  InterfaceCounters counters;
  counters.start_ns = interface.start_ns;
  counters.end_ns =
      interface.last_statistics_ns != 0 ? interface.last_statistics_ns : interface.start_ns;
  counters.received = interface.latest.packets_received();
  counters.interface_drops = interface.latest.interface_drops();
  counters.kernel_drops = interface.latest.kernel_drops();
  counters.agent_drops = interface.latest.agent_drops();
  counters.delivered = interface.delivered;
  counters.comment = DecapOutcomesText(interface.latest);
  if (!extra_comment.empty()) {
    if (!counters.comment.empty()) counters.comment += "; ";
    counters.comment += extra_comment;
  }
  return counters;
}

StatusOr<uint32_t> StreamToFile::AddInterface(FeedId feed,
                                              const v1::InterfaceDescription& description,
                                              std::string file_name) {
  InterfaceInfo info;
  info.name = file_name;
  info.description = description.description();
  info.filter = description.filter();
  info.os = description.os();
  info.link_type = static_cast<uint16_t>(description.link_type());
  info.snaplen = description.snaplen();
  info.agent = description.agent_name();
  CAPD_RETURN_IF_ERROR(writer_.AddInterface(info));
  StreamInterface interface;
  interface.file_index = next_file_index_++;
  interface.name = std::move(file_name);
  interface.start_ns = description.capture_start_ns();
  interfaces_[{feed, description.index()}] = std::move(interface);
  last_ = nullptr;
  return interfaces_[{feed, description.index()}].file_index;
}

void StreamToFile::LeaveOut(FeedId feed, const v1::InterfaceDescription& description,
                            std::string name) {
  StreamInterface interface;
  interface.in_file = false;
  interface.name = std::move(name);
  interface.start_ns = description.capture_start_ns();
  interfaces_[{feed, description.index()}] = std::move(interface);
  last_ = nullptr;
}

StatusOr<BatchView> StreamToFile::View(FeedId feed, const v1::PacketBatch& batch) const {
  auto view = BatchView::Check(batch);
  if (!view.ok()) return view.status();
  bool have = false;
  uint32_t checked = 0;
  for (const uint32_t index : batch.interface_index()) {
    if (have && index == checked) continue;
    const StreamInterface* interface = Find(feed, index);
    if (interface == nullptr || !interface->in_file) {
      return Internal("agent sent a packet for an undeclared interface");
    }
    have = true;
    checked = index;
  }
  return view;
}

StreamInterface* StreamToFile::Lookup(FeedId feed, uint32_t index) {
  const std::pair<FeedId, uint32_t> key{feed, index};
  if (last_ != nullptr && last_key_ == key) return last_;
  auto it = interfaces_.find(key);
  if (it == interfaces_.end()) return nullptr;
  last_key_ = key;
  last_ = &it->second;
  return last_;
}

Status StreamToFile::WritePacket(FeedId feed, const BatchPacket& packet) {
  StreamInterface* interface = Lookup(feed, packet.interface_index);
  if (interface == nullptr || !interface->in_file) {
    return Internal("agent sent a packet for an undeclared interface");
  }
  CAPD_RETURN_IF_ERROR(writer_.WritePacket(interface->file_index, packet.timestamp_ns,
                                           packet.original_length, packet.data, packet.comment));
  ++interface->delivered;
  return Status::Ok();
}

Status StreamToFile::WriteUntil(FeedId feed, const BatchView& view, BatchCursor& cursor,
                                const RunLimits& limits, uint64_t* packets, size_t* bytes) {
  // The extent first (the arrays only), then the writer gets it in pieces: packets of one
  // interface without a comment in one WritePackets call, a packet with a comment on its own.
  const v1::PacketBatch& batch = view.batch();
  const int first = cursor.next_packet;
  const int size = view.size();
  int end = first;
  size_t extent_bytes = 0;
  while (end < size && static_cast<uint64_t>(end - first) < limits.max_packets &&
         (end == first ||
          (extent_bytes < limits.max_bytes && batch.timestamp_ns(end) <= limits.until_ns))) {
    extent_bytes += batch.captured_length(end);
    ++end;
  }
  const auto* blob = reinterpret_cast<const uint8_t*>(batch.data().data());
  uint64_t written = 0;
  size_t written_bytes = 0;
  Status status;
  while (cursor.next_packet < end) {
    const int i = cursor.next_packet;
    const bool commented = cursor.next_comment < batch.comment_packet_size() &&
                           batch.comment_packet(cursor.next_comment) == static_cast<uint32_t>(i);
    if (commented) {
      const BatchPacket packet = view.Next(cursor);
      status = WritePacket(feed, packet);
      if (!status.ok()) break;
      ++written;
      written_bytes += packet.data.size();
      continue;
    }
    const uint32_t index = batch.interface_index(i);
    int piece_end = end;
    if (cursor.next_comment < batch.comment_packet_size()) {
      piece_end =
          std::min<int>(piece_end, static_cast<int>(batch.comment_packet(cursor.next_comment)));
    }
    int k = i + 1;
    size_t piece_bytes = batch.captured_length(i);
    while (k < piece_end && batch.interface_index(k) == index)
      piece_bytes += batch.captured_length(k++);
    StreamInterface* interface = Lookup(feed, index);
    if (interface == nullptr || !interface->in_file) {
      status = Internal("agent sent a packet for an undeclared interface");
      break;
    }
    PacketRun run;
    run.timestamp_ns = batch.timestamp_ns().data() + i;
    run.original_length = batch.original_length().data() + i;
    run.captured_length = batch.captured_length().data() + i;
    run.data = blob + cursor.data_offset;
    run.count = static_cast<size_t>(k - i);
    run.data_owner = limits.data_owner;
    status = writer_.WritePackets(interface->file_index, run);
    if (!status.ok()) break;
    interface->delivered += run.count;
    cursor.next_packet = k;
    cursor.data_offset += piece_bytes;
    written += run.count;
    written_bytes += piece_bytes;
  }
  if (packets != nullptr) *packets += written;
  if (bytes != nullptr) *bytes += written_bytes;
  return status;
}

Status StreamToFile::WriteBatch(FeedId feed, const v1::PacketBatch& batch) {
  auto view = View(feed, batch);
  if (!view.ok()) return view.status();
  BatchCursor cursor;
  while (!view->AtEnd(cursor)) CAPD_RETURN_IF_ERROR(WritePacket(feed, view->Next(cursor)));
  return Status::Ok();
}

void StreamToFile::KeepStatistics(FeedId feed, const v1::Statistics& statistics) {
  for (const v1::InterfaceStatistics& s : statistics.interfaces()) {
    auto it = interfaces_.find({feed, s.interface_index()});
    if (it == interfaces_.end()) continue;
    it->second.latest = s;
    it->second.last_statistics_ns = statistics.timestamp_ns();
  }
}

Status StreamToFile::WriteStatistics(FeedId feed, const v1::Statistics& statistics) {
  KeepStatistics(feed, statistics);
  for (const v1::InterfaceStatistics& s : statistics.interfaces()) {
    const StreamInterface* interface = Find(feed, s.interface_index());
    if (interface == nullptr || !interface->in_file) continue;
    CAPD_RETURN_IF_ERROR(
        writer_.WriteStatistics(interface->file_index, CountersOf(*interface, {})));
  }
  return Status::Ok();
}

Status StreamToFile::WriteFinalStatistics(FeedId feed, std::string_view extra_comment) {
  for (auto it = interfaces_.lower_bound({feed, 0});
       it != interfaces_.end() && it->first.first == feed; ++it) {
    if (!it->second.in_file) continue;
    CAPD_RETURN_IF_ERROR(
        writer_.WriteStatistics(it->second.file_index, CountersOf(it->second, extra_comment)));
  }
  return Status::Ok();
}

const StreamInterface* StreamToFile::Find(FeedId feed, uint32_t index) const {
  auto it = interfaces_.find({feed, index});
  return it == interfaces_.end() ? nullptr : &it->second;
}

}  // namespace capd::capfile
