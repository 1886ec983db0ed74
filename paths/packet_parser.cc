#include "paths/packet_parser.h"

#include <algorithm>
#include <cstring>

namespace capd::paths {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86DD;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88A8;
// How much of the transport payload goes into a packet's signature: enough to tell apart two
// segments with equal headers, little enough to stay cheap.
constexpr size_t kSignaturePayload = 32;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// FNV-1a, 64 bits.
struct Hasher {
  uint64_t h = 1469598103934665603ULL;
  void Add(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  void Add16(uint16_t v) {
    const uint8_t b[2] = {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    Add(b, 2);
  }
};

// The network layer of one IP packet: where the transport header starts and which it is.
struct IpLayer {
  Endpoints flow;  // addresses and protocol; ports left 0
  size_t transport_offset = 0;
  size_t transport_length = 0;  // per the IP header (may exceed what was captured)
  uint16_t ip_length = 0;
  uint16_t ip_id = 0;
  bool dont_fragment = false;
  bool later_fragment = false;
};

bool IsIpv6ExtensionHeader(uint8_t next) {
  return next == 0 || next == 43 || next == 44 || next == 60 || next == 51 || next == 135 ||
         next == 139 || next == 140;
}

// Parses an IPv4 or IPv6 header at data[0..]. `quoted`: inside an ICMP error, where only the
// header and 8 transport bytes are guaranteed, so lengths are not checked against the capture.
ParseResult ParseIp(std::span<const uint8_t> data, IpLayer& out) {
  if (data.empty()) return ParseResult::kTruncated;
  const uint8_t version = data[0] >> 4;
  if (version == 4) {
    if (data.size() < 20) return ParseResult::kTruncated;
    const size_t ihl = static_cast<size_t>(data[0] & 0x0F) * 4;
    if (ihl < 20) return ParseResult::kMalformed;
    if (data.size() < ihl) return ParseResult::kTruncated;
    uint32_t total = Be16(&data[2]);
    // BIG TCP (Linux 6.3+) sends IPv4 packets over 64 KiB with a total length of 0: what was
    // captured is then the length.
    if (total == 0) total = static_cast<uint32_t>(std::min<size_t>(data.size(), 0xFFFF));
    if (total < ihl) return ParseResult::kMalformed;
    out.flow.src = {};
    out.flow.dst = {};
    out.flow.src.version = out.flow.dst.version = 4;
    std::memcpy(out.flow.src.bytes.data(), &data[12], 4);
    std::memcpy(out.flow.dst.bytes.data(), &data[16], 4);
    out.flow.protocol = data[9];
    out.ip_length = static_cast<uint16_t>(total);
    out.ip_id = Be16(&data[4]);
    const uint16_t frag = Be16(&data[6]);
    out.dont_fragment = (frag & 0x4000) != 0;
    out.later_fragment = (frag & 0x1FFF) != 0;
    out.transport_offset = ihl;
    out.transport_length = total - ihl;
    return ParseResult::kOk;
  }
  if (version == 6) {
    if (data.size() < 40) return ParseResult::kTruncated;
    out.flow.src = {};
    out.flow.dst = {};
    out.flow.src.version = out.flow.dst.version = 6;
    std::memcpy(out.flow.src.bytes.data(), &data[8], 16);
    std::memcpy(out.flow.dst.bytes.data(), &data[24], 16);
    uint32_t payload = Be16(&data[4]);
    // A jumbogram (RFC 2675, and BIG TCP) has a payload length of 0: take what was captured.
    if (payload == 0) payload = static_cast<uint32_t>(std::min<size_t>(data.size() - 40, 0xFFFF));
    out.ip_length = static_cast<uint16_t>(std::min<uint32_t>(payload + 40u, 0xFFFF));
    out.ip_id = 0;
    out.dont_fragment = true;
    out.later_fragment = false;
    uint8_t next = data[6];
    size_t offset = 40;
    // At most 8 extension headers: a chain longer than that is not a real packet.
    for (int i = 0; i < 8 && IsIpv6ExtensionHeader(next); ++i) {
      if (data.size() < offset + 8) return ParseResult::kTruncated;
      size_t length;
      if (next == 44) {  // fragment header: fixed 8 bytes
        if ((Be16(&data[offset + 2]) & 0xFFF8) != 0) out.later_fragment = true;
        length = 8;
      } else if (next == 51) {  // AH counts in 4-byte units, less 2
        length = (static_cast<size_t>(data[offset + 1]) + 2) * 4;
      } else {
        length = (static_cast<size_t>(data[offset + 1]) + 1) * 8;
      }
      next = data[offset];
      offset += length;
    }
    if (IsIpv6ExtensionHeader(next)) return ParseResult::kMalformed;
    if (offset > 40u + payload) return ParseResult::kMalformed;
    out.flow.protocol = next;
    out.transport_offset = offset;
    out.transport_length = 40u + payload - offset;
    return ParseResult::kOk;
  }
  return ParseResult::kMalformed;
}

// The ports (or echo identifier) of a transport header with at least 8 bytes at `t`.
void ReadPorts(const uint8_t* t, size_t available, Endpoints& flow, bool* echo, bool* reply) {
  if (echo) *echo = false;
  if (flow.protocol == kProtoTcp || flow.protocol == kProtoUdp) {
    if (available >= 4) {
      flow.src_port = Be16(t);
      flow.dst_port = Be16(t + 2);
    }
  } else if (flow.protocol == kProtoIcmp || flow.protocol == kProtoIcmpv6) {
    const bool is_echo =
        flow.protocol == kProtoIcmp ? (t[0] == 8 || t[0] == 0) : (t[0] == 128 || t[0] == 129);
    if (is_echo && available >= 6) {
      flow.src_port = flow.dst_port = Be16(t + 4);
      if (echo) *echo = true;
      if (reply) *reply = t[0] == 0 || t[0] == 129;
    }
  }
}

// The packet quoted by an ICMP error, starting at `q` (its IP header).
bool ParseQuoted(std::span<const uint8_t> q, Endpoints& out) {
  IpLayer inner;
  if (ParseIp(q, inner) != ParseResult::kOk) return false;
  if (inner.later_fragment) return false;
  if (q.size() < inner.transport_offset + 8) return false;
  out = inner.flow;
  ReadPorts(&q[inner.transport_offset], q.size() - inner.transport_offset, out, nullptr, nullptr);
  return true;
}

}  // namespace

ParseResult ParsePacket(int link_type, std::span<const uint8_t> data, ParsedPacket& out) {
  out = ParsedPacket{};
  size_t offset = 0;
  uint16_t ethertype = 0;
  switch (link_type) {
    case kLinkEthernet: {
      if (data.size() < 14) return ParseResult::kTruncated;
      ethertype = Be16(&data[12]);
      offset = 14;
      for (int tags = 0; tags < 2 && (ethertype == kEtherVlan || ethertype == kEtherQinQ); ++tags) {
        if (data.size() < offset + 4) return ParseResult::kTruncated;
        ethertype = Be16(&data[offset + 2]);
        offset += 4;
      }
      break;
    }
    case kLinkLinuxSll:
      if (data.size() < 16) return ParseResult::kTruncated;
      ethertype = Be16(&data[14]);
      offset = 16;
      break;
    case kLinkLinuxSll2:
      if (data.size() < 20) return ParseResult::kTruncated;
      ethertype = Be16(&data[0]);
      offset = 20;
      break;
    case kLinkRaw:
    case kLinkRawDlt:
      if (data.empty()) return ParseResult::kTruncated;
      ethertype = (data[0] >> 4) == 6 ? kEtherIpv6 : kEtherIpv4;
      break;
    case kLinkIpv4:
      ethertype = kEtherIpv4;
      break;
    case kLinkIpv6:
      ethertype = kEtherIpv6;
      break;
    default:
      return ParseResult::kUnsupportedLink;
  }
  if (ethertype != kEtherIpv4 && ethertype != kEtherIpv6) return ParseResult::kNotIp;
  const std::span<const uint8_t> ip = data.subspan(offset);
  IpLayer layer;
  if (const ParseResult r = ParseIp(ip, layer); r != ParseResult::kOk) return r;
  if ((ethertype == kEtherIpv4) != (layer.flow.src.version == 4)) return ParseResult::kMalformed;
  if (layer.later_fragment) return ParseResult::kFragment;
  out.flow = layer.flow;
  out.ip_length = layer.ip_length;
  out.ip_id = layer.ip_id;
  out.dont_fragment = layer.dont_fragment;
  const uint8_t proto = layer.flow.protocol;
  if (proto != kProtoTcp && proto != kProtoUdp && proto != kProtoIcmp && proto != kProtoIcmpv6) {
    return ParseResult::kOtherProtocol;
  }
  if ((proto == kProtoIcmp) != (layer.flow.src.version == 4) && proto != kProtoTcp &&
      proto != kProtoUdp) {
    return ParseResult::kMalformed;  // ICMPv4 in IPv6 or ICMPv6 in IPv4
  }
  const size_t header_min = proto == kProtoTcp ? 20 : 8;
  if (ip.size() < layer.transport_offset + header_min) return ParseResult::kTruncated;
  if (layer.transport_length < header_min) return ParseResult::kMalformed;
  const uint8_t* t = &ip[layer.transport_offset];
  const size_t captured = ip.size() - layer.transport_offset;
  ReadPorts(t, captured, out.flow, &out.icmp_echo, &out.icmp_echo_reply);

  size_t header = header_min;
  size_t checksum_at = 6;
  if (proto == kProtoTcp) {
    header = static_cast<size_t>(t[12] >> 4) * 4;
    if (header < 20 || header > layer.transport_length) return ParseResult::kMalformed;
    out.tcp_flags = t[13];
    out.tcp_seq = Be32(t + 4);
    checksum_at = 16;
  } else if (proto == kProtoIcmp || proto == kProtoIcmpv6) {
    checksum_at = 2;
    const uint8_t type = t[0], code = t[1];
    IcmpError& e = out.icmp_error;
    if (proto == kProtoIcmp) {
      if (type == 3)
        e.kind = code == 4 ? IcmpError::Kind::kFragNeeded : IcmpError::Kind::kUnreachable;
      if (type == 11) e.kind = IcmpError::Kind::kTimeExceeded;
      if (e.kind == IcmpError::Kind::kFragNeeded) e.mtu = Be16(t + 6);
    } else {
      if (type == 1) e.kind = IcmpError::Kind::kUnreachable;
      if (type == 2) e.kind = IcmpError::Kind::kFragNeeded;
      if (type == 3) e.kind = IcmpError::Kind::kTimeExceeded;
      if (e.kind == IcmpError::Kind::kFragNeeded) e.mtu = Be32(t + 4);
    }
    if (e.kind != IcmpError::Kind::kNone) {
      e.type = type;
      e.code = code;
      // An error quoting nothing we can read names no flow: not an error about a flow then.
      if (!ParseQuoted(std::span<const uint8_t>(t + 8, captured - 8), e.quoted)) {
        e = IcmpError{};
      }
    }
  }
  out.payload_length = static_cast<uint32_t>(layer.transport_length - header);

  Hasher h;
  h.Add(out.flow.src.bytes.data(), 16);
  h.Add(out.flow.dst.bytes.data(), 16);
  h.Add(&proto, 1);
  h.Add16(out.ip_id);
  h.Add16(out.ip_length);
  // The transport header without its checksum: a sender's capture may show the checksum before
  // the NIC filled it in (checksum offload), the receiver's the final one.
  const size_t hashed = std::min(captured, header + kSignaturePayload);
  h.Add(t, std::min(checksum_at, hashed));
  if (hashed > checksum_at + 2) h.Add(t + checksum_at + 2, hashed - checksum_at - 2);
  out.signature = h.h;
  return ParseResult::kOk;
}

const char* ParseResultName(ParseResult result) {
  switch (result) {
    case ParseResult::kOk:
      return "ok";
    case ParseResult::kUnsupportedLink:
      return "unsupported link type";
    case ParseResult::kNotIp:
      return "not ip";
    case ParseResult::kTruncated:
      return "truncated";
    case ParseResult::kMalformed:
      return "malformed";
    case ParseResult::kFragment:
      return "ip fragment";
    case ParseResult::kOtherProtocol:
      return "other ip protocol";
  }
  return "?";
}

}  // namespace capd::paths
