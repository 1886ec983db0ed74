#pragma once
// Packet builders for the decapsulation tests. Ordinary stacks (Ethernet, 802.1Q, SLL, IPv4, IPv6,
// UDP, TCP) come from libtins, which computes lengths and checksums independently of our parser;
// tunnel headers and anything libtins 4.0 cannot express (SLL2, 802.1ad/0x9100 tag types, IPv6
// extension headers, deliberately wrong fields) are written byte by byte.

#include <tins/tins.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace capd::decap::fixtures {

using Bytes = std::vector<uint8_t>;

// Headers are joined to what follows them here rather than by insert() onto the header itself:
// GCC 12 at -O3 warns (-Warray-bounds, a false positive in memcpy) about inserting onto a vector
// whose size it knows from its initializer.
inline Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

inline void Put16(Bytes& bytes, size_t at, uint16_t value) {
  bytes[at] = static_cast<uint8_t>(value >> 8);
  bytes[at + 1] = static_cast<uint8_t>(value);
}

inline Bytes Serialize(Tins::PDU& pdu) { return pdu.serialize(); }

// An inner Ethernet frame: IPv4 TCP with `payload_size` bytes of payload.
inline Bytes InnerEthernetIpv4(size_t payload_size = 64) {
  Tins::EthernetII frame = Tins::EthernetII("02:00:00:00:00:02", "02:00:00:00:00:01") /
                           Tins::IP("192.168.1.2", "192.168.1.1") / Tins::TCP(443, 40000) /
                           Tins::RawPDU(Bytes(payload_size, 0xab));
  return Serialize(frame);
}

inline Bytes InnerEthernetIpv6(size_t payload_size = 64) {
  Tins::EthernetII frame = Tins::EthernetII("02:00:00:00:00:02", "02:00:00:00:00:01") /
                           Tins::IPv6("fd00::2", "fd00::1") / Tins::TCP(443, 40000) /
                           Tins::RawPDU(Bytes(payload_size, 0xcd));
  return Serialize(frame);
}

inline Bytes InnerIpv4(size_t payload_size = 64) {
  Tins::IP packet = Tins::IP("192.168.1.2", "192.168.1.1") / Tins::TCP(443, 40000) /
                    Tins::RawPDU(Bytes(payload_size, 0xab));
  return Serialize(packet);
}

inline Bytes InnerIpv6(size_t payload_size = 64) {
  Tins::IPv6 packet = Tins::IPv6("fd00::2", "fd00::1") / Tins::UDP(53, 40000) /
                      Tins::RawPDU(Bytes(payload_size, 0xcd));
  return Serialize(packet);
}

// VXLAN header (RFC 7348): flags, 3 reserved bytes, VNI, 1 reserved byte.
inline Bytes VxlanHeader(uint32_t vni, uint8_t flags = 0x08, uint8_t next_protocol = 0) {
  return {flags,
          0,
          0,
          next_protocol,
          static_cast<uint8_t>(vni >> 16),
          static_cast<uint8_t>(vni >> 8),
          static_cast<uint8_t>(vni),
          0};
}

// One Geneve option TLV (RFC 8926 §3.5); `data` must be a multiple of 4 bytes.
inline Bytes GeneveOption(uint16_t option_class, uint8_t type, const Bytes& data) {
  const Bytes header = {static_cast<uint8_t>(option_class >> 8),
                        static_cast<uint8_t>(option_class), type,
                        static_cast<uint8_t>(data.size() / 4)};
  return Cat({header, data});
}

// Geneve header with `options` (a multiple of 4 bytes) after it.
inline Bytes GeneveHeader(uint16_t protocol, uint32_t vni, const Bytes& options = {},
                          uint8_t version = 0) {
  const Bytes header = {static_cast<uint8_t>(version << 6 | (options.size() / 4 & 0x3f)),
                        0,
                        static_cast<uint8_t>(protocol >> 8),
                        static_cast<uint8_t>(protocol),
                        static_cast<uint8_t>(vni >> 16),
                        static_cast<uint8_t>(vni >> 8),
                        static_cast<uint8_t>(vni),
                        0};
  return Cat({header, options});
}

inline Bytes AwsOptions() {
  return Cat({GeneveOption(0x0108, 1, {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}),
              GeneveOption(0x0108, 2, {0x00, 0x00, 0x00, 0x00, 0xfe, 0xdc, 0xba, 0x98}),
              GeneveOption(0x0108, 3, {0xde, 0xad, 0xbe, 0xef})});
}

// Ethernet / IPv4 / UDP(dport) / payload, from libtins.
inline Bytes EthernetIpv4Udp(uint16_t dport, const Bytes& payload,
                             const char* source = "10.0.0.1") {
  Tins::EthernetII frame = Tins::EthernetII("02:00:00:00:00:0b", "02:00:00:00:00:0a") /
                           Tins::IP("10.0.0.2", source) / Tins::UDP(dport, 50000) /
                           Tins::RawPDU(payload);
  return Serialize(frame);
}

inline Bytes EthernetIpv6Udp(uint16_t dport, const Bytes& payload,
                             const char* source = "2001:db8::1") {
  Tins::EthernetII frame = Tins::EthernetII("02:00:00:00:00:0b", "02:00:00:00:00:0a") /
                           Tins::IPv6("2001:db8::2", source) / Tins::UDP(dport, 50000) /
                           Tins::RawPDU(payload);
  return Serialize(frame);
}

inline Bytes Ipv4Udp(uint16_t dport, const Bytes& payload, const char* source = "10.0.0.1") {
  Tins::IP packet = Tins::IP("10.0.0.2", source) / Tins::UDP(dport, 50000) / Tins::RawPDU(payload);
  return Serialize(packet);
}

inline Bytes Ipv6Udp(uint16_t dport, const Bytes& payload, const char* source = "2001:db8::1") {
  Tins::IPv6 packet =
      Tins::IPv6("2001:db8::2", source) / Tins::UDP(dport, 50000) / Tins::RawPDU(payload);
  return Serialize(packet);
}

// An Ethernet header (no tags) with the given type.
inline Bytes EthernetHeader(uint16_t ether_type) {
  Bytes out = {0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0, 0};
  Put16(out, 12, ether_type);
  return out;
}

// A VLAN tag: TCI then the type of what follows.
inline Bytes VlanTag(uint16_t vid, uint16_t next_type) {
  Bytes out(4);
  Put16(out, 0, vid);
  Put16(out, 2, next_type);
  return out;
}

// Ethernet with `tag_types` (outermost first), each tag's TCI = 100 + index, then an IP packet.
inline Bytes TaggedEthernet(const std::vector<uint16_t>& tag_types, const Bytes& ip_packet) {
  const uint16_t ip_type = (ip_packet[0] >> 4) == 6 ? 0x86dd : 0x0800;
  Bytes out = EthernetHeader(tag_types.empty() ? ip_type : tag_types[0]);
  for (size_t i = 0; i < tag_types.size(); ++i) {
    const uint16_t next = i + 1 < tag_types.size() ? tag_types[i + 1] : ip_type;
    out = Cat({out, VlanTag(static_cast<uint16_t>(100 + i), next)});
  }
  return Cat({out, ip_packet});
}

// Linux cooked v2 (LINKTYPE_LINUX_SLL2) header: protocol, reserved, ifindex, ARPHRD_ETHER,
// packet type (outgoing), address length 6, address (8 bytes).
inline Bytes Sll2Header(uint16_t protocol) {
  Bytes out = {0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 0x02, 0, 0, 0, 0, 0x0a, 0, 0};
  Put16(out, 0, protocol);
  return out;
}

// A hand-made IPv4 header (no checksum: nothing here checks it), optionally with options.
inline Bytes Ipv4Header(uint8_t protocol, uint16_t total_length, uint16_t flags_fragment = 0,
                        const Bytes& options = {}) {
  Bytes out = {static_cast<uint8_t>(0x40 | ((20 + options.size()) / 4)),
               0,
               0,
               0,
               0x12,
               0x34,
               0,
               0,
               64,
               protocol,
               0,
               0,
               10,
               0,
               0,
               1,
               10,
               0,
               0,
               2};
  Put16(out, 2, total_length);
  Put16(out, 6, flags_fragment);
  return Cat({out, options});
}

inline Bytes Ipv6Header(uint8_t next_header, uint16_t payload_length) {
  Bytes out(40, 0);
  out[0] = 0x60;
  Put16(out, 4, payload_length);
  out[6] = next_header;
  out[7] = 64;
  out[8] = 0x20;
  out[9] = 0x01;
  out[10] = 0x0d;
  out[11] = 0xb8;
  out[23] = 1;
  out[24] = 0x20;
  out[25] = 0x01;
  out[26] = 0x0d;
  out[27] = 0xb8;
  out[39] = 2;
  return out;
}

// A UDP header with an explicit length field (checksum 0).
inline Bytes UdpHeader(uint16_t dport, uint16_t length) {
  Bytes out = {0xc3, 0x50, 0, 0, 0, 0, 0, 0};
  Put16(out, 2, dport);
  Put16(out, 4, length);
  return out;
}

// Hand-made Ethernet / IPv4 / UDP / payload with consistent lengths.
inline Bytes HandEthernetIpv4Udp(uint16_t dport, const Bytes& payload,
                                 uint16_t flags_fragment = 0) {
  const auto udp_length = static_cast<uint16_t>(8 + payload.size());
  return Cat({EthernetHeader(0x0800),
              Ipv4Header(17, static_cast<uint16_t>(20 + udp_length), flags_fragment),
              UdpHeader(dport, udp_length), payload});
}

}  // namespace capd::decap::fixtures
