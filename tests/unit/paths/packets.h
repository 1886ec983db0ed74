#pragma once
// Frames for the path analysis tests, built with libtins: Ethernet + IPv4/IPv6 + TCP/UDP/ICMP.

#include <tins/tins.h>

#include <cstdint>
#include <string>
#include <vector>

namespace capd::paths::test {

using Bytes = std::vector<uint8_t>;

struct Tcp {
  std::string src, dst;
  uint16_t sport = 0, dport = 0;
  uint16_t flags = 0;  // Tins::TCP::SYN | ...
  uint32_t seq = 0;
  size_t payload = 0;
  uint16_t ip_id = 0;
};

inline bool IsV6(const std::string& address) { return address.find(':') != std::string::npos; }

inline Bytes Payload(size_t n, uint8_t fill = 'x') { return Bytes(n, fill); }

// The IP packet (no link layer) of a TCP segment.
inline Bytes TcpIp(const Tcp& t) {
  Tins::TCP tcp(t.dport, t.sport);
  tcp.flags(t.flags);
  tcp.seq(t.seq);
  if (IsV6(t.src)) {
    Tins::IPv6 ip = Tins::IPv6(t.dst, t.src) / tcp;
    if (t.payload) ip /= Tins::RawPDU(Payload(t.payload));
    return ip.serialize();
  }
  Tins::IP ip = Tins::IP(t.dst, t.src) / tcp;
  ip.id(t.ip_id);
  ip.flags(Tins::IP::DONT_FRAGMENT);
  if (t.payload) ip /= Tins::RawPDU(Payload(t.payload));
  return ip.serialize();
}

inline Bytes Ethernet(const Bytes& ip) {
  Tins::EthernetII eth =
      Tins::EthernetII("02:00:00:00:00:02", "02:00:00:00:00:01") / Tins::RawPDU(ip);
  eth.payload_type((ip[0] >> 4) == 6 ? 0x86DD : 0x0800);
  return eth.serialize();
}

inline Bytes TcpFrame(const Tcp& t) { return Ethernet(TcpIp(t)); }

inline Bytes UdpFrame(const std::string& src, uint16_t sport, const std::string& dst,
                      uint16_t dport, size_t payload, uint16_t ip_id = 0) {
  if (IsV6(src)) {
    Tins::IPv6 ip = Tins::IPv6(dst, src) / Tins::UDP(dport, sport) / Tins::RawPDU(Payload(payload));
    return Ethernet(ip.serialize());
  }
  Tins::IP ip = Tins::IP(dst, src) / Tins::UDP(dport, sport) / Tins::RawPDU(Payload(payload));
  ip.id(ip_id);
  return Ethernet(ip.serialize());
}

// An ICMP error from `router` to `to` quoting the first 28 (IPv4) or 48 (IPv6) bytes of `quoted`.
inline Bytes IcmpFragNeeded(const std::string& router, const std::string& to, const Bytes& quoted,
                            uint16_t mtu) {
  Tins::ICMP icmp(Tins::ICMP::DEST_UNREACHABLE);
  icmp.code(4);
  icmp.mtu(mtu);
  Bytes q(quoted.begin(), quoted.begin() + std::min<size_t>(quoted.size(), 28));
  Tins::IP ip = Tins::IP(to, router) / icmp / Tins::RawPDU(q);
  return Ethernet(ip.serialize());
}

// libtins 4.4 has no setter for the MTU of a packet-too-big message: its 8 bytes by hand (the
// checksum left 0; the parser under test does not check it).
inline Bytes Icmpv6TooBig(const std::string& router, const std::string& to, const Bytes& quoted,
                          uint32_t mtu) {
  Bytes icmp = {2,
                0,
                0,
                0,
                static_cast<uint8_t>(mtu >> 24),
                static_cast<uint8_t>(mtu >> 16),
                static_cast<uint8_t>(mtu >> 8),
                static_cast<uint8_t>(mtu)};
  icmp.insert(icmp.end(), quoted.begin(), quoted.begin() + std::min<size_t>(quoted.size(), 48));
  Tins::IPv6 ip = Tins::IPv6(to, router) / Tins::RawPDU(icmp);
  ip.next_header(58);
  return Ethernet(ip.serialize());
}

inline Bytes IcmpUnreachable(const std::string& router, const std::string& to, const Bytes& quoted,
                             uint8_t code) {
  Tins::ICMP icmp(Tins::ICMP::DEST_UNREACHABLE);
  icmp.code(code);
  Bytes q(quoted.begin(), quoted.begin() + std::min<size_t>(quoted.size(), 28));
  Tins::IP ip = Tins::IP(to, router) / icmp / Tins::RawPDU(q);
  return Ethernet(ip.serialize());
}

}  // namespace capd::paths::test
