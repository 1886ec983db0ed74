#pragma once
// A pcapng reader for assertions about what libpcap does not expose: every interface of the
// file with its own link type, name and description, the interface each packet belongs to, packet
// comments, and Interface Statistics Blocks with their comments.
//
// Why not libpcap: libpcap 1.10 reports only the first interface's link type and refuses a file
// whose interfaces have different link types ("an interface has a type 101 different from the type
// of the first interface"), which is exactly what mirror-target mode writes (an Ethernet capture
// interface, then LINKTYPE_RAW interfaces for Geneve bare IP). This reader is written from the
// pcapng specification (draft-ietf-opsawg-pcapng), independently of capctl's writer.
//
// One section only (a second Section Header Block is an error); either byte order.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/support/capture_file.h"

namespace capd::test {

struct PcapngInterface {
  uint16_t link_type = 0;  // LINKTYPE_* as written (101 for raw IP, not DLT_RAW 12)
  uint32_t snaplen = 0;
  std::string name;         // if_name, "" when absent
  std::string description;  // if_description
  std::string filter;       // if_filter without its leading type byte
  uint8_t tsresol = 6;      // if_tsresol; 6 when absent
};

struct PcapngPacket {
  uint32_t interface_id = 0;
  uint64_t ts_ns = 0;  // converted with the interface's if_tsresol
  uint32_t caplen = 0;
  uint32_t len = 0;
  std::string bytes;
  std::vector<std::string> comments;  // opt_comment options, in order
};

struct PcapngStatistics {
  uint32_t interface_id = 0;
  std::vector<std::string> comments;
  std::map<uint16_t, uint64_t> counters;  // isb_* options 4..8 (ifrecv, ifdrop, ...) by code
};

struct PcapngFile {
  std::vector<PcapngInterface> interfaces;
  std::vector<PcapngPacket> packets;  // Enhanced Packet Blocks, in file order
  std::vector<PcapngStatistics> statistics;
};

// Reads the whole file. Fails on anything malformed (bad block length, an option overrunning its
// block, a packet for an undeclared interface, a truncated last block).
StatusOr<PcapngFile> ReadPcapng(const std::filesystem::path& path);

// The packet as capture_file.h's helpers (UdpPayload, MatchesFilter) take it: DLT_* link type of
// its interface (DLT_RAW 12 for LINKTYPE_RAW 101, as libpcap maps it).
CapturedPacket ToCapturedPacket(const PcapngFile& file, const PcapngPacket& packet);

}  // namespace capd::test
