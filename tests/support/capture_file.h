#pragma once
// Reading capture files back for assertions: libpcap at nanosecond precision (an independent
// reader of what capctl and tcpdump wrote), BPF matching on read packets, and the few header
// fields libpcap does not expose (pcap magic, pcapng if_tsresol).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace capd::test {

struct CapturedPacket {
  uint64_t ts_ns = 0;  // seconds * 1e9 + nanoseconds, as libpcap returns at NANO precision
  uint32_t caplen = 0;
  uint32_t len = 0;  // original length on the wire
  std::string bytes;
  int linktype = 0;  // DLT_* of the file (libpcap 1.10 reports the first interface's for pcapng)
};

// Every packet of a pcap or pcapng file. Fails with libpcap's message when the file cannot be
// opened or a record is damaged (a truncated last record is an error, not silently skipped).
StatusOr<std::vector<CapturedPacket>> ReadCapture(const std::filesystem::path& path);

// Whether `packet` matches the BPF expression `filter` (compiled for the packet's link type).
// Fails when the filter does not compile.
StatusOr<bool> MatchesFilter(const CapturedPacket& packet, const std::string& filter);

// The first four bytes of the file, in file order as a little-endian number, e.g. 0xa1b23c4d for
// a little-endian nanosecond pcap file and 0x0a0d0d0a for pcapng.
std::optional<uint32_t> FileMagic(const std::filesystem::path& path);

// The if_tsresol option (code 9) of every Interface Description Block of a pcapng file;
// 6 (microseconds) for an IDB without it, as the pcapng specification defines.
StatusOr<std::vector<uint8_t>> PcapngTsresols(const std::filesystem::path& path);

// For packets sent by TestNetwork's UDP helpers over Ethernet (veth) or lo: the UDP payload of an
// untagged Ethernet + IPv4 + UDP frame, or nullopt if the packet is not one (or is truncated
// inside the headers). `dst_port` is set when given.
std::optional<std::string_view> UdpPayload(const CapturedPacket& packet,
                                           uint16_t* dst_port = nullptr);

}  // namespace capd::test
