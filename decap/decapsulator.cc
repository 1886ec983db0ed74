#include "decap/decapsulator.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace capd::decap {
namespace {

// All offsets are absolute positions in `data` and 64-bit, so that adding a header length to a
// position near UINT32_MAX cannot wrap.
using Pos = uint64_t;

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeTeb = 0x6558;  // Geneve: Ethernet payload
constexpr uint8_t kIpProtoUdp = 17;
constexpr uint8_t kIpv6HopByHop = 0;
constexpr uint8_t kIpv6Routing = 43;
constexpr uint8_t kIpv6Fragment = 44;
constexpr uint8_t kIpv6DestinationOptions = 60;
constexpr int kMaxVlanTags = 3;
constexpr int kMaxIpv6ExtensionHeaders = 8;

constexpr uint32_t kEthernetHeader = 14;
constexpr uint32_t kSllHeader = 16;
constexpr uint32_t kSll2Header = 20;
constexpr uint32_t kVlanTag = 4;
constexpr uint32_t kIpv4MinHeader = 20;
constexpr uint32_t kIpv6Header = 40;
constexpr uint32_t kUdpHeader = 8;
constexpr uint32_t kVxlanHeader = 8;
constexpr uint32_t kGeneveHeader = 8;
constexpr uint32_t kGeneveOptionHeader = 4;

// VXLAN flags (first byte). RFC 7348 §5: I (0x08) must be set for a valid VNI; the other bits are
// reserved, "set to zero on transmission and ignored on receipt" -- so VXLAN-GBP's G bit (0x80)
// is ignored and GBP still carries Ethernet. VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe) gives 0x04 the
// meaning P: "Next Protocol" (the fourth byte) is present; with P clear the payload is Ethernet,
// as in VXLAN. A GPE packet with P set and a next protocol other than Ethernet (NSH, IPv4, IPv6,
// MPLS) must not be read as Ethernet, so it is kUnsupportedPayload. Ignoring the reserved bits as
// RFC 7348 asks would decode such a packet (e.g. NSH) as garbage Ethernet.
constexpr uint8_t kVxlanFlagI = 0x08;
constexpr uint8_t kVxlanGpeFlagP = 0x04;
constexpr uint8_t kVxlanGpeNextProtocolEthernet = 0x03;

constexpr uint8_t kAwsOptionEniId = 1;
constexpr uint8_t kAwsOptionAttachmentId = 2;
constexpr uint8_t kAwsOptionFlowCookie = 3;

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Load24(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2];
}
inline uint32_t Load32(const uint8_t* p) { return Load24(p) << 8 | p[3]; }
inline uint64_t Load64(const uint8_t* p) {
  return static_cast<uint64_t>(Load32(p)) << 32 | Load32(p + 4);
}

inline bool IsVlanEtherType(uint16_t type) {
  return type == 0x8100 || type == 0x88a8 || type == 0x9100;
}

// A header of `size` bytes at `pos` inside a packet that ends at `end` on the wire (per the length
// fields seen so far) of which the bytes before `cap_end` (<= end) were captured. Beyond `end` the
// packet itself is too short (malformed); beyond `cap_end` only the capture is.
inline Outcome Need(Pos pos, Pos size, Pos cap_end, Pos end) {
  if (pos + size > end) return Outcome::kMalformed;
  if (pos + size > cap_end) return Outcome::kTruncated;
  return Outcome::kDecapsulated;
}

// Skips up to kMaxVlanTags 802.1Q/802.1ad/QinQ tags starting at *pos, where *ether_type is the
// type field just read. kTruncated when a tag is cut, kNotTunnel when there are more tags than we
// parse.
inline Outcome SkipVlanTags(const uint8_t* data, Pos cap_end, Pos* pos, uint16_t* ether_type) {
  for (int i = 0; i < kMaxVlanTags && IsVlanEtherType(*ether_type); ++i) {
    if (*pos + kVlanTag > cap_end) return Outcome::kTruncated;
    *ether_type = Load16(data + *pos + 2);
    *pos += kVlanTag;
  }
  return IsVlanEtherType(*ether_type) ? Outcome::kNotTunnel : Outcome::kDecapsulated;
}

// The IP and UDP headers of a (possibly nested) tunnel packet.
struct UdpPacket {
  Pos udp = 0;     // position of the UDP header (fully captured)
  Pos ip_end = 0;  // end of the IP packet on the wire: min(wire end, IP length) when known
  uint16_t dst_port = 0;
  uint16_t udp_length = 0;
  bool first_fragment = false;  // offset 0 with more fragments: ports readable, payload not whole
  uint8_t family = 0;
  const uint8_t* source = nullptr;  // 4 or 16 bytes inside data
};

// Parses IPv4/IPv6 (ether_type says which) at `pos` up to and including the UDP header.
// kDecapsulated means "a UDP header was found"; the caller decides whether it is a tunnel.
Outcome ParseIpUdp(const uint8_t* data, Pos pos, Pos cap_end, Pos wire_end, uint16_t ether_type,
                   UdpPacket* out) {
  Pos end = wire_end;
  if (ether_type == kEtherTypeIpv4) {
    if (Outcome o = Need(pos, kIpv4MinHeader, cap_end, wire_end); o != Outcome::kDecapsulated) {
      return o;
    }
    const uint8_t* ip = data + pos;
    if (ip[0] >> 4 != 4) return Outcome::kMalformed;
    if (ip[9] != kIpProtoUdp) return Outcome::kNotTunnel;
    const uint32_t header_length = (ip[0] & 0x0fu) * 4;
    if (header_length < kIpv4MinHeader) return Outcome::kMalformed;
    const uint16_t fragment = Load16(ip + 6);
    if ((fragment & 0x1fff) != 0) return Outcome::kFragmented;  // ports are in the first fragment
    out->first_fragment = (fragment & 0x2000) != 0;
    // Total length 0: Linux BIG TCP (6.3+) sends IPv4 GSO packets over 64 KiB with total length 0;
    // their length is the frame's. Otherwise the IP length bounds the packet (Ethernet padding).
    const uint16_t total_length = Load16(ip + 2);
    if (total_length != 0) {
      if (total_length < header_length) return Outcome::kMalformed;
      end = std::min(end, pos + total_length);
    }
    if (Outcome o = Need(pos, header_length, cap_end, end); o != Outcome::kDecapsulated) return o;
    out->family = AF_INET;
    out->source = ip + 12;
    pos += header_length;
  } else if (ether_type == kEtherTypeIpv6) {
    if (Outcome o = Need(pos, kIpv6Header, cap_end, wire_end); o != Outcome::kDecapsulated) {
      return o;
    }
    const uint8_t* ip = data + pos;
    if (ip[0] >> 4 != 6) return Outcome::kMalformed;
    // Payload length 0: a jumbogram (RFC 2675), or Linux BIG TCP for IPv6, whose hop-by-hop jumbo
    // option the kernel removes before taps see the packet (6.x; see bigtcp-ipv6-*.pcap): the
    // length is the frame's.
    const uint16_t payload_length = Load16(ip + 4);
    if (payload_length != 0) end = std::min(end, pos + kIpv6Header + payload_length);
    out->family = AF_INET6;
    out->source = ip + 8;
    uint8_t next = ip[6];
    pos += kIpv6Header;
    int headers = 0;
    while (next != kIpProtoUdp) {
      if (++headers > kMaxIpv6ExtensionHeaders) return Outcome::kNotTunnel;
      if (next == kIpv6HopByHop || next == kIpv6Routing || next == kIpv6DestinationOptions) {
        if (Outcome o = Need(pos, 2, cap_end, end); o != Outcome::kDecapsulated) return o;
        const Pos length = (static_cast<Pos>(data[pos + 1]) + 1) * 8;
        next = data[pos];
        pos += length;
      } else if (next == kIpv6Fragment) {
        if (Outcome o = Need(pos, 8, cap_end, end); o != Outcome::kDecapsulated) return o;
        const uint16_t fragment = Load16(data + pos + 2);
        next = data[pos];
        pos += 8;
        if ((fragment & 0xfff8) != 0) {
          return next == kIpProtoUdp ? Outcome::kFragmented : Outcome::kNotTunnel;
        }
        // Offset 0 without M is an atomic fragment (RFC 6946): a whole packet, go on.
        if ((fragment & 0x0001) != 0) out->first_fragment = true;
      } else {
        return Outcome::kNotTunnel;
      }
    }
  } else {
    return Outcome::kNotTunnel;
  }
  if (Outcome o = Need(pos, kUdpHeader, cap_end, end); o != Outcome::kDecapsulated) return o;
  out->udp = pos;
  out->ip_end = end;
  out->dst_port = Load16(data + pos + 2);
  out->udp_length = Load16(data + pos + 4);
  return Outcome::kDecapsulated;
}

// The end of the UDP payload on the wire, or kMalformed. UDP length 0 is accepted as "unknown"
// (BIG TCP, RFC 2675 jumbograms): the IP packet's end is used.
inline Outcome UdpPayloadEnd(const UdpPacket& udp, Pos* payload_end) {
  if (udp.udp_length == 0) {
    *payload_end = udp.ip_end;
    return Outcome::kDecapsulated;
  }
  if (udp.udp_length < kUdpHeader || udp.udp + udp.udp_length > udp.ip_end) {
    return Outcome::kMalformed;
  }
  *payload_end = udp.udp + udp.udp_length;
  return Outcome::kDecapsulated;
}

// Checks a VXLAN header at `pos` (whose packet ends at `end`, captured up to `cap_end`).
inline Outcome ParseVxlan(const uint8_t* data, Pos pos, Pos cap_end, Pos end, uint32_t* vni) {
  if (Outcome o = Need(pos, kVxlanHeader, cap_end, end); o != Outcome::kDecapsulated) return o;
  const uint8_t flags = data[pos];
  if ((flags & kVxlanFlagI) == 0) return Outcome::kMalformed;
  if ((flags & kVxlanGpeFlagP) != 0 && data[pos + 3] != kVxlanGpeNextProtocolEthernet) {
    return Outcome::kUnsupportedPayload;
  }
  *vni = Load24(data + pos + 4);
  return Outcome::kDecapsulated;
}

// Walks Geneve options in [pos, end) (all captured), extracting the AWS ones.
inline Outcome ParseGeneveOptions(const uint8_t* data, Pos pos, Pos end, AwsGeneveOptions* aws) {
  while (pos < end) {
    if (pos + kGeneveOptionHeader > end) return Outcome::kMalformed;
    const uint16_t option_class = Load16(data + pos);
    const uint8_t type = data[pos + 2] & 0x7f;  // the high bit is the critical flag
    const Pos length = (data[pos + 3] & 0x1fu) * 4;
    const Pos value = pos + kGeneveOptionHeader;
    if (value + length > end) return Outcome::kMalformed;
    if (option_class == kAwsGeneveOptionClass) {
      if (type == kAwsOptionEniId && length == 8) {
        aws->has_eni_id = true;
        aws->eni_id = Load64(data + value);
      } else if (type == kAwsOptionAttachmentId && length == 8) {
        aws->has_attachment_id = true;
        aws->attachment_id = Load64(data + value);
      } else if (type == kAwsOptionFlowCookie && length == 4) {
        aws->has_flow_cookie = true;
        aws->flow_cookie = Load32(data + value);
      }
    }
    pos = value + length;
  }
  return Outcome::kDecapsulated;
}

// The inner frame's length as its IP header states it (link header included), 0 when unknown:
// not IP, header not captured, or a length field of 0 (BIG TCP, jumbogram).
uint64_t ClaimedInnerLength(const uint8_t* frame, uint64_t length, uint16_t link_type) {
  Pos pos = 0;
  int version = 0;
  if (link_type == kLinkTypeEthernet) {
    if (length < kEthernetHeader) return 0;
    uint16_t ether_type = Load16(frame + 12);
    pos = kEthernetHeader;
    if (SkipVlanTags(frame, length, &pos, &ether_type) != Outcome::kDecapsulated) return 0;
    if (ether_type == kEtherTypeIpv4) {
      version = 4;
    } else if (ether_type == kEtherTypeIpv6) {
      version = 6;
    } else {
      return 0;
    }
  } else {
    if (length < 1) return 0;
    version = frame[0] >> 4;
  }
  if (version == 4) {
    if (pos + 4 > length || frame[pos] >> 4 != 4) return 0;
    const uint16_t total_length = Load16(frame + pos + 2);
    return total_length == 0 ? 0 : pos + total_length;
  }
  if (version == 6) {
    if (pos + 6 > length || frame[pos] >> 4 != 6) return 0;
    const uint16_t payload_length = Load16(frame + pos + 4);
    return payload_length == 0 ? 0 : pos + kIpv6Header + payload_length;
  }
  return 0;
}

// Inside a Geneve payload at `pos`, a VXLAN packet (GWLB endpoint mirroring). The payload is an
// Ethernet frame (protocol 0x6558: ip_ether_type 0) or, as a GWLB delivers it, a bare IP packet
// (ip_ether_type 0x0800/0x86DD). On success sets *inner, *payload_end, *vni and *source. Anything
// short of a whole, valid VXLAN header means "not nested": the Geneve payload is then the inner
// frame.
bool FindNestedVxlan(const Config& config, const uint8_t* data, Pos pos, Pos cap_end, Pos end,
                     uint16_t ip_ether_type, Pos* inner, Pos* payload_end, uint32_t* vni,
                     UdpPacket* udp) {
  if (config.vxlan_port == 0) return false;
  uint16_t ether_type = ip_ether_type;
  if (ether_type == 0) {
    if (pos + kEthernetHeader > cap_end) return false;
    ether_type = Load16(data + pos + 12);
    pos += kEthernetHeader;
    if (SkipVlanTags(data, cap_end, &pos, &ether_type) != Outcome::kDecapsulated) return false;
  }
  if (ParseIpUdp(data, pos, cap_end, end, ether_type, udp) != Outcome::kDecapsulated) return false;
  if (udp->dst_port != config.vxlan_port || udp->first_fragment) return false;
  Pos nested_end = 0;
  if (UdpPayloadEnd(*udp, &nested_end) != Outcome::kDecapsulated) return false;
  const Pos header = udp->udp + kUdpHeader;
  if (ParseVxlan(data, header, std::min(cap_end, nested_end), nested_end, vni) !=
      Outcome::kDecapsulated) {
    return false;
  }
  *inner = header + kVxlanHeader;
  *payload_end = nested_end;
  return true;
}

inline Result Fail(Outcome outcome) {
  Result result;
  result.outcome = outcome;
  return result;
}

}  // namespace

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kDecapsulated:
      return "decapsulated";
    case Outcome::kNotTunnel:
      return "not_tunnel";
    case Outcome::kTruncated:
      return "truncated";
    case Outcome::kMalformed:
      return "malformed";
    case Outcome::kFragmented:
      return "fragmented";
    case Outcome::kUnsupportedPayload:
      return "unsupported_payload";
    case Outcome::kUnsupportedLinkType:
      return "unsupported_link_type";
    case Outcome::kCount:
      break;
  }
  return "unknown";
}

const char* EncapsulationName(Encapsulation encapsulation) {
  switch (encapsulation) {
    case Encapsulation::kVxlan:
      return "vxlan";
    case Encapsulation::kGeneve:
      return "geneve";
    case Encapsulation::kGeneveVxlan:
      return "geneve_vxlan";
  }
  return "unknown";
}

Result Decapsulate(const Config& config, uint16_t outer_link_type, const uint8_t* data,
                   uint32_t captured_length, uint32_t original_length) {
  const Pos cap_end = captured_length;
  const Pos wire_end = std::max(original_length, captured_length);
  if (data == nullptr && captured_length != 0) return Fail(Outcome::kTruncated);

  // Link layer -> the IP header's position and type.
  Pos pos = 0;
  uint16_t ether_type = 0;
  switch (outer_link_type) {
    case kLinkTypeEthernet:
      if (cap_end < kEthernetHeader) return Fail(Outcome::kTruncated);
      ether_type = Load16(data + 12);
      pos = kEthernetHeader;
      break;
    case kLinkTypeLinuxSll:
      // libpcap re-inserts offloaded VLAN tags after the cooked header's protocol field, so tags
      // are skipped below just as for Ethernet.
      if (cap_end < kSllHeader) return Fail(Outcome::kTruncated);
      ether_type = Load16(data + 14);
      pos = kSllHeader;
      break;
    case kLinkTypeLinuxSll2:
      if (cap_end < kSll2Header) return Fail(Outcome::kTruncated);
      ether_type = Load16(data);
      pos = kSll2Header;
      break;
    case kLinkTypeRaw:
    case kDltRaw:
      if (cap_end < 1) return Fail(Outcome::kTruncated);
      if (data[0] >> 4 == 4) {
        ether_type = kEtherTypeIpv4;
      } else if (data[0] >> 4 == 6) {
        ether_type = kEtherTypeIpv6;
      } else {
        return Fail(Outcome::kNotTunnel);
      }
      break;
    default:
      return Fail(Outcome::kUnsupportedLinkType);
  }
  if (Outcome o = SkipVlanTags(data, cap_end, &pos, &ether_type); o != Outcome::kDecapsulated) {
    return Fail(o);
  }

  UdpPacket udp;
  if (Outcome o = ParseIpUdp(data, pos, cap_end, wire_end, ether_type, &udp);
      o != Outcome::kDecapsulated) {
    return Fail(o);
  }
  const bool vxlan =
      config.mode != Mode::kGeneve && config.vxlan_port != 0 && udp.dst_port == config.vxlan_port;
  const bool geneve = !vxlan && config.mode != Mode::kVxlan && config.geneve_port != 0 &&
                      udp.dst_port == config.geneve_port;
  if (!vxlan && !geneve) return Fail(Outcome::kNotTunnel);
  if (udp.first_fragment) return Fail(Outcome::kFragmented);
  Pos payload_end = 0;
  if (Outcome o = UdpPayloadEnd(udp, &payload_end); o != Outcome::kDecapsulated) return Fail(o);
  const Pos header = udp.udp + kUdpHeader;
  const Pos payload_cap_end = std::min(cap_end, payload_end);

  Result result;
  Pos inner = 0;
  if (vxlan) {
    if (Outcome o = ParseVxlan(data, header, payload_cap_end, payload_end, &result.vni);
        o != Outcome::kDecapsulated) {
      return Fail(o);
    }
    result.encapsulation = Encapsulation::kVxlan;
    result.outer_vni = result.vni;
    result.inner_link_type = kLinkTypeEthernet;
    inner = header + kVxlanHeader;
  } else {
    if (Outcome o = Need(header, kGeneveHeader, payload_cap_end, payload_end);
        o != Outcome::kDecapsulated) {
      return Fail(o);
    }
    const uint8_t* geneve_header = data + header;
    // RFC 8926: version 0 only. The O (control packet) and C (critical options present) bits
    // do not stop us: a tunnel endpoint would act on them, a passive observer shows the packet.
    if (geneve_header[0] >> 6 != 0) return Fail(Outcome::kMalformed);
    const Pos options = header + kGeneveHeader;
    const Pos options_end = options + (geneve_header[0] & 0x3fu) * 4;
    if (Outcome o = Need(options, options_end - options, payload_cap_end, payload_end);
        o != Outcome::kDecapsulated) {
      return Fail(o);
    }
    if (Outcome o = ParseGeneveOptions(data, options, options_end, &result.aws);
        o != Outcome::kDecapsulated) {
      return Fail(o);
    }
    const uint16_t protocol = Load16(geneve_header + 2);
    if (protocol == kEtherTypeTeb) {
      result.inner_link_type = kLinkTypeEthernet;
    } else if (protocol == kEtherTypeIpv4 || protocol == kEtherTypeIpv6) {
      result.inner_link_type = kLinkTypeRaw;
    } else {
      return Fail(Outcome::kUnsupportedPayload);
    }
    result.encapsulation = Encapsulation::kGeneve;
    result.vni = result.outer_vni = Load24(geneve_header + 4);
    inner = options_end;
    UdpPacket nested;
    Pos nested_inner = 0;
    Pos nested_end = 0;
    uint32_t nested_vni = 0;
    if (FindNestedVxlan(config, data, inner, payload_cap_end, payload_end,
                        protocol == kEtherTypeTeb ? 0 : protocol, &nested_inner, &nested_end,
                        &nested_vni, &nested)) {
      result.encapsulation = Encapsulation::kGeneveVxlan;
      result.inner_link_type = kLinkTypeEthernet;  // VXLAN always carries Ethernet
      result.vni = nested_vni;
      inner = nested_inner;
      payload_end = nested_end;
      udp = nested;
    }
  }

  // The inner frame: captured bytes up to the end of the UDP payload; its wire length is the
  // larger of what the outer lengths leave for it and what its own IP header claims (a mirror
  // session's packet length cuts the inner frame but the outer headers describe the cut packet).
  const Pos inner_cap_end = std::min(cap_end, payload_end);
  const Pos inner_length = inner_cap_end - inner;  // inner <= inner_cap_end: checked by Need()
  const Pos claimed = ClaimedInnerLength(data + inner, inner_length, result.inner_link_type);
  const Pos inner_original = std::max(payload_end - inner, claimed);
  result.outcome = Outcome::kDecapsulated;
  result.inner_offset = static_cast<uint32_t>(inner);
  result.inner_length = static_cast<uint32_t>(inner_length);
  result.inner_original_length = static_cast<uint32_t>(std::min<Pos>(inner_original, UINT32_MAX));
  result.outer_source_family = udp.family;
  std::memcpy(result.outer_source, udp.source, udp.family == AF_INET ? 4 : 16);
  return result;
}

}  // namespace capd::decap
