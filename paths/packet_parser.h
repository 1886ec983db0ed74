#pragma once
// One captured frame to the fields a path report needs: the link layer (Ethernet with up to two
// VLAN tags, Linux cooked v1/v2, raw IP), IPv4 or IPv6 (extension headers skipped), and TCP, UDP,
// ICMP or ICMPv6. An ICMP error also yields the flow of the packet it quotes.
//
// Contract: ParsePacket reads only within `data` (every header read is bounds-checked), never
// throws, allocates nothing, and says why it gave up (ParseResult) rather than guessing.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace capd::paths {

// LINKTYPE_* values as pcap and pcapng files carry them (and DLT_RAW 12, which libpcap writes
// on some platforms for raw IP).
inline constexpr int kLinkEthernet = 1;
inline constexpr int kLinkRawDlt = 12;
inline constexpr int kLinkRaw = 101;
inline constexpr int kLinkLinuxSll = 113;
inline constexpr int kLinkIpv4 = 228;
inline constexpr int kLinkIpv6 = 229;
inline constexpr int kLinkLinuxSll2 = 276;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIcmpv6 = 58;

// An IP address, IPv4 as its 4 bytes followed by zeros (`version` tells them apart).
struct Address {
  uint8_t version = 0;  // 4 or 6
  std::array<uint8_t, 16> bytes{};
  friend bool operator==(const Address&, const Address&) = default;
  friend auto operator<=>(const Address&, const Address&) = default;
};

// One direction of a flow: who sent, to whom. For ICMP echo the identifier is both ports.
struct Endpoints {
  Address src, dst;
  uint8_t protocol = 0;
  uint16_t src_port = 0, dst_port = 0;
  friend bool operator==(const Endpoints&, const Endpoints&) = default;
};

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

// What an ICMP or ICMPv6 error says about the packet it quotes.
struct IcmpError {
  enum class Kind : uint8_t {
    kNone,
    kUnreachable,   // ICMP 3 (other than code 4), ICMPv6 1
    kFragNeeded,    // ICMP 3 code 4 (with next-hop MTU), ICMPv6 2 packet too big
    kTimeExceeded,  // ICMP 11, ICMPv6 3
  };
  Kind kind = Kind::kNone;
  uint8_t type = 0, code = 0;
  uint32_t mtu = 0;  // kFragNeeded: the MTU the router announced (0 when it announced none)
  Endpoints quoted;  // the flow of the quoted packet, in the direction it was sent
};

enum class ParseResult : uint8_t {
  kOk,
  kUnsupportedLink,  // a link type this parser does not read
  kNotIp,            // ARP, LLDP, ...: not part of any flow
  kTruncated,        // a header ends beyond the captured bytes
  kMalformed,        // a length or version field that cannot be right
  kFragment,         // a non-first IP fragment: no transport header to key it by
  kOtherProtocol,    // IP, but not TCP/UDP/ICMP (GRE, ESP, SCTP, ...)
};

struct ParsedPacket {
  Endpoints flow;
  uint16_t ip_length = 0;      // IPv4 total length, IPv6 payload length + 40: the size on the link
  uint16_t ip_id = 0;          // IPv4 identification (0 for IPv6)
  bool dont_fragment = false;  // IPv4 DF; always true for IPv6 (routers never fragment it)
  uint8_t tcp_flags = 0;
  uint32_t tcp_seq = 0;
  uint32_t payload_length = 0;   // transport payload bytes per the headers (not the captured ones)
  bool icmp_echo = false;        // ICMP/ICMPv6 echo request or reply: keyed by its identifier
  bool icmp_echo_reply = false;  // an echo reply (its sender is the flow's server)
  IcmpError icmp_error;          // kind != kNone: this packet is an ICMP error about `quoted`
  // A hash of what routers do not change (addresses, IP id, transport header without its checksum,
  // the first payload bytes): the same packet seen at two capture points hashes alike.
  uint64_t signature = 0;
};

ParseResult ParsePacket(int link_type, std::span<const uint8_t> data, ParsedPacket& out);

// A short lowercase reason for counters ("truncated", "not ip", ...).
const char* ParseResultName(ParseResult result);

}  // namespace capd::paths
