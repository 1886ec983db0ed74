#pragma once
// The classic pcap format as capd writes it, for every writer of it (the file writer, capctl
// serve's fan-out to PCAP-over-IP clients): nanosecond timestamps (magic a1b23c4d, libpcap >= 1.5,
// Wireshark >= 1.8), version 2.4, UTC, host byte order (readers tell the order from the magic),
// one link type and snaplen per stream.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "capfile/encoding.h"
#include "common/status.h"

namespace capd::capfile::pcap {

inline constexpr uint32_t kNanosecondMagic = 0xa1b23c4d;
inline constexpr size_t kFileHeaderBytes = 24;
inline constexpr size_t kRecordHeaderBytes = 16;

inline void AppendFileHeader(std::string& out, uint16_t link_type, uint32_t snaplen) {
  internal::AppendHost<uint32_t>(out, kNanosecondMagic);
  internal::AppendHost<uint16_t>(out, 2);  // version 2.4
  internal::AppendHost<uint16_t>(out, 4);
  internal::AppendHost<int32_t>(out, 0);   // thiszone: timestamps are UTC
  internal::AppendHost<uint32_t>(out, 0);  // sigfigs
  internal::AppendHost<uint32_t>(out, snaplen);
  internal::AppendHost<uint32_t>(out, link_type);
}

// Classic pcap holds one link type per file or stream, the first interface's: kInvalidArgument
// for an interface with another one. `container` names what is written ("file", "stream").
inline Status CheckOneLinkType(std::string_view interface_name, uint32_t link_type,
                               uint32_t pcap_link_type, std::string_view container) {
  if (link_type == pcap_link_type) return Status::Ok();
  const std::string what(container);
  return InvalidArgument("interface " + std::string(interface_name) + " has link type " +
                         std::to_string(link_type) + " but this pcap " + what + " has " +
                         std::to_string(pcap_link_type) + ": a pcap " + what +
                         " holds one link type; use pcapng for several");
}

// One record: kInvalidArgument when `data` is longer than the original packet (nothing is
// appended then). A packet longer than the stream's snaplen keeps its first snaplen bytes and its
// original length, as a capture with that snaplen would have.
inline Status AppendRecord(std::string& out, uint64_t timestamp_ns, uint32_t original_length,
                           std::span<const uint8_t> data, uint32_t snaplen) {
  CAPD_RETURN_IF_ERROR(internal::CheckPacketLengths(original_length, data.size()));
  const uint32_t captured = internal::CapturedLength(data.size(), snaplen);
  constexpr uint64_t kNanosPerSecond = 1'000'000'000;
  // ts_sec is 32 bits unsigned: good until 2106.
  internal::AppendHost<uint32_t>(out, static_cast<uint32_t>(timestamp_ns / kNanosPerSecond));
  internal::AppendHost<uint32_t>(out, static_cast<uint32_t>(timestamp_ns % kNanosPerSecond));
  internal::AppendHost<uint32_t>(out, captured);
  internal::AppendHost<uint32_t>(out, original_length);
  internal::AppendBytes(out, data.first(captured));
  return Status::Ok();
}

}  // namespace capd::capfile::pcap
