#pragma once
// Hand-built Ethernet frames for tests that need packets no socket would send: tunnel packets
// with invalid flags, cut length fields, IP fragments, Geneve options (AWS Gateway Load Balancer),
// or a source address the sender does not own. Sent with a raw AF_PACKET socket, so the bytes on
// the veth are exactly the bytes built here (no checksum or length fixing by the kernel).
//
// Builders return the bytes as std::string (one char per byte) and compose by concatenation:
//   EthernetHeader(dst, src, 0x0800) +
//       Ipv4Packet({.src = "10.200.0.2", .dst = "10.200.0.1"},
//                  UdpDatagram(40000, 4789, VxlanHeader(42) + inner_frame))

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "tests/support/subprocess.h"

namespace capd::test {

// Six bytes. ParseMac("02:00:00:00:00:01").
using MacAddress = std::string;
StatusOr<MacAddress> ParseMac(std::string_view text);

std::string EthernetHeader(const MacAddress& dst, const MacAddress& src, uint16_t ether_type);

struct Ipv4Fields {
  std::string src;  // dotted quad
  std::string dst;
  uint8_t protocol = 17;  // UDP
  uint16_t id = 0;
  // Flags and fragment offset as on the wire: 0x4000 DF, 0x2000 MF, low 13 bits the offset in
  // 8-byte units.
  uint16_t flags_fragment = 0;
  uint8_t ttl = 64;
  // >= 0: written as the total length instead of 20 + payload size (a lying header).
  int total_length = -1;
};
// A 20-byte IPv4 header (correct checksum) followed by `payload`.
std::string Ipv4Packet(const Ipv4Fields& fields, std::string_view payload);

// An 8-byte UDP header (checksum 0, "none", which IPv4 allows) followed by `payload`. `length` >=
// 0 is written as the UDP length instead of 8 + payload size.
std::string UdpDatagram(uint16_t src_port, uint16_t dst_port, std::string_view payload,
                        int length = -1);

// RFC 7348: flags (0x08 = I), 3 reserved bytes, VNI, 1 reserved byte. VXLAN-GPE puts its next
// protocol in the fourth byte (`next_protocol`).
std::string VxlanHeader(uint32_t vni, uint8_t flags = 0x08, uint8_t next_protocol = 0);

struct GeneveOption {
  uint16_t option_class = 0;
  uint8_t type = 0;
  std::string data;  // a multiple of 4 bytes, at most 124
};
// RFC 8926: version 0 unless given, option length from `options`, protocol type, VNI.
std::string GeneveHeader(uint32_t vni, uint16_t protocol_type,
                         const std::vector<GeneveOption>& options = {}, uint8_t version = 0);

// Big-endian bytes of a number, e.g. BigEndian(0x0123456789abcdef, 8) for an AWS ENI id option.
std::string BigEndian(uint64_t value, int bytes);

// A raw AF_PACKET socket inside `netns`, bound to `interface` for sending (protocol 0: it receives
// nothing).
StatusOr<UniqueFd> OpenPacketSocketIn(const std::string& netns, const std::string& interface);
// Sends one whole frame on a socket from OpenPacketSocketIn.
Status SendFrame(int fd, std::string_view frame);

// The MAC address of `interface` in `netns` (six bytes).
StatusOr<MacAddress> InterfaceMac(const std::string& netns, const std::string& interface);

}  // namespace capd::test
