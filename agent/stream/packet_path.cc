#include "agent/stream/packet_path.h"

namespace capd::agent {

void PacketPath::OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data) {
  reinterpret_cast<PacketPath*>(user)->Handle(*header, data);
}

void PacketPath::FlushBatch() {
  if (!batch_.started() || batch_.empty()) return;
  const size_t n = batch_.packet_count();
  flush_(batch_.Finish(), n);
}

Drain PacketPath::DrainSince(const ReadMark& mark, Clock::time_point now) const {
  Drain d{captured_ - mark.packets, captured_bytes_ - mark.bytes,
          std::chrono::duration_cast<std::chrono::microseconds>(now - mark.at)};
  if (d.packets >= 2 && mark.packets == span_from_packet_ && last_ts_ > span_first_ts_) {
    d.span = std::chrono::microseconds((last_ts_ - span_first_ts_) / 1000);
  }
  return d;
}

void PacketPath::Handle(const pcap_pkthdr& header, const uint8_t* data) {
  // tv_usec carries nanoseconds (PCAP_TSTAMP_PRECISION_NANO) or, on a few devices, microseconds.
  const uint64_t ts = static_cast<uint64_t>(header.ts.tv_sec) * 1'000'000'000ULL +
                      static_cast<uint64_t>(header.ts.tv_usec) * nanoseconds_per_tick_;
  if (captured_ == span_from_packet_) span_first_ts_ = ts;
  last_ts_ = ts;
  ++captured_;
  captured_bytes_ += header.caplen;
  if (mirror_ == nullptr) {
    Append(0, ts, header.len, data, header.caplen, {});
    return;
  }
  pipeline::InnerPacket inner;
  if (mirror_->Process(data, header.caplen, header.len, inner) != pipeline::Verdict::kContinue) {
    return;
  }
  if (inner.new_interface) {
    // The description must reach the client before the first packet filed under it.
    FlushBatch();
    announce_(*inner.interface);
  }
  // The inner frame keeps the outer packet's kernel timestamp.
  Append(inner.interface->index, ts, inner.original_length, inner.data, inner.captured_length,
         inner.comment);
}

void PacketPath::Append(uint32_t interface_index, uint64_t ts, uint32_t original_length,
                        const uint8_t* data, uint32_t captured_length, std::string_view comment) {
  if (!batch_.started()) {
    batch_.Start(new_message_());
    batch_started_ = next_batch_since_.value_or(Clock::now());  // once per batch
    next_batch_since_.reset();
  }
  batch_.Append(interface_index, ts, original_length, data, captured_length);
  batch_.CommentLast(comment);
  if (batch_.full()) FlushBatch();
}

}  // namespace capd::agent
