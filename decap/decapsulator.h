#pragma once
// Tunnel decapsulation for mirror targets: VXLAN (AWS Traffic Mirroring), Geneve (Gateway Load
// Balancer) and VXLAN nested in Geneve (mirroring through a GWLB endpoint). Shared by the agent's
// pipeline and capctl's offline `decap` command.
//
// How data flows: the capture source lends a frame (outer link type, captured bytes, original
// length). Decapsulate() walks link layer -> optional VLAN tags -> IPv4/IPv6 (+ extension headers)
// -> UDP -> tunnel header(s) and returns, without copying, where the inner frame starts in the
// same buffer, its link type, the VNI and the outer source address. The caller turns
// (encapsulation, VNI) into an output interface, runs the inner filter on
// data[inner_offset, inner_offset + inner_length) and counts every other outcome by name.
//
// Contract: Decapsulate() is a pure function. It does not allocate, throw, log or keep state; it
// is safe to call from any number of threads at once; it reads only data[0, captured_length) and
// checks bounds before every read, so a malformed or cut packet returns an Outcome, never crashes.
// Checksums are not verified (a capture host's own packets often carry offloaded, unfilled ones).
//
// Outer link types: Ethernet with up to 3 VLAN tags (0x8100, 0x88a8, 0x9100), Linux cooked v1 and
// v2 (also with re-inserted VLAN tags), raw IP (LINKTYPE_RAW 101 or DLT_RAW 12). Outer IPv4 with
// options, IPv6 with hop-by-hop/routing/destination-options headers; fragments are not
// reassembled. A tunnel is UDP to Config's ports (the destination port only).

#include <cstddef>
#include <cstdint>
#include <string>

namespace capd::decap {

// LINKTYPE_* values (the pcap/pcapng file and interface-description numbering).
inline constexpr uint16_t kLinkTypeEthernet = 1;
inline constexpr uint16_t kLinkTypeRaw = 101;
inline constexpr uint16_t kLinkTypeLinuxSll = 113;
inline constexpr uint16_t kLinkTypeLinuxSll2 = 276;
// DLT_RAW as libpcap reports it on Linux (pcap_datalink() of a LINKTYPE_RAW savefile is 12, not
// 101). Decapsulate() accepts both.
inline constexpr uint16_t kDltRaw = 12;

// libpcap 1.10.3: pcap_compile() on pcap_open_dead(101, ...) fails with "unknown data link type
// 101"; it only knows DLT_RAW (12). Use this to open the handle that compiles an inner filter;
// keep LINKTYPE_RAW (101) for what goes into files.
constexpr int DltForLinkType(uint16_t link_type) {
  return link_type == kLinkTypeRaw ? kDltRaw : link_type;
}

// Which outer tunnels count. The mode selects the outermost tunnel only: a VXLAN header nested
// inside Geneve is part of a GWLB delivery and is stripped whenever Geneve is accepted.
enum class Mode { kVxlan, kGeneve, kAuto };

struct Config {
  Mode mode = Mode::kAuto;
  // UDP destination ports. 0 disables that tunnel. If both are equal, VXLAN wins.
  uint16_t vxlan_port = 4789;  // Linux's old default (and some systems' current one) is 8472
  uint16_t geneve_port = 6081;
};

enum class Encapsulation : uint8_t { kVxlan, kGeneve, kGeneveVxlan };

enum class Outcome : uint8_t {
  kDecapsulated,
  kNotTunnel,   // not IP/UDP to an accepted tunnel port: not part of the output, not an error
  kTruncated,   // the capture ends inside a header needed to find the inner frame
  kMalformed,   // a length field or flag is invalid (VXLAN I flag clear, Geneve version
                // != 0, option length overrun, UDP length < 8 or beyond the IP packet, ...)
  kFragmented,  // an outer IP fragment of a UDP packet: the tunnel payload is not whole
  kUnsupportedPayload,   // the tunnel carries something other than Ethernet or IP: a Geneve
                         // protocol type not 0x6558/0x0800/0x86DD, or VXLAN-GPE with the P bit set
                         // and a next protocol other than Ethernet (e.g. NSH)
  kUnsupportedLinkType,  // outer link type is not Ethernet, Linux SLL/SLL2 or raw IP
  kCount,
};

// Stable snake_case names for counters: "decapsulated", "not_tunnel", "truncated", "malformed",
// "fragmented", "unsupported_payload", "unsupported_link_type" ("unknown" for out-of-range values).
const char* OutcomeName(Outcome outcome);
// "vxlan", "geneve", "geneve_vxlan".
const char* EncapsulationName(Encapsulation encapsulation);

// Gateway Load Balancer Geneve options (option class 0x0108). Each is extracted only when present
// with its documented data length (8, 8 and 4 bytes); the critical bit of the type is ignored.
inline constexpr uint16_t kAwsGeneveOptionClass = 0x0108;
struct AwsGeneveOptions {
  bool has_eni_id = false;         // type 1: the GWLB endpoint's ENI id
  bool has_attachment_id = false;  // type 2: the attachment id
  bool has_flow_cookie = false;    // type 3: the flow cookie
  uint64_t eni_id = 0;
  uint64_t attachment_id = 0;
  uint32_t flow_cookie = 0;
};

// Every field other than `outcome` is meaningful only when outcome == kDecapsulated.
struct Result {
  Outcome outcome = Outcome::kNotTunnel;
  Encapsulation encapsulation = Encapsulation::kVxlan;
  uint8_t outer_source_family = 0;  // AF_INET or AF_INET6
  uint16_t inner_link_type = 0;     // kLinkTypeEthernet, or kLinkTypeRaw for Geneve 0x0800/0x86DD
  // The VNI that selects the output: the VXLAN VNI for kVxlan and kGeneveVxlan (the mirror
  // session's VNI), the Geneve VNI for kGeneve. outer_vni is the outermost tunnel's VNI (equal to
  // vni except for kGeneveVxlan, where it is the Geneve VNI). 24 bits each.
  uint32_t vni = 0;
  uint32_t outer_vni = 0;
  // The inner frame is data[inner_offset, inner_offset + inner_length). inner_offset <=
  // captured_length always. inner_length is the captured part of the tunnel payload: it stops at
  // the end of the UDP datagram (per the IP and UDP length fields), so outer Ethernet padding, an
  // FCS or trailer is not part of it; usually inner_offset + inner_length == captured_length.
  // It may be 0 or shorter than a link header when the capture ends just after the tunnel header.
  uint32_t inner_offset = 0;
  uint32_t inner_length = 0;
  // The inner frame's length on the wire before any truncation: the larger of the tunnel payload's
  // wire length (from the outer IP/UDP length fields, else the outer original length) and the
  // length the inner IP header claims (link header incl. VLAN tags + IPv4 total length or
  // IPv6 40 + payload length; not used when 0, i.e. BIG TCP / jumbograms). This recovers the
  // length of a frame cut by an AWS mirror session's packet length. Never < inner_length.
  uint32_t inner_original_length = 0;
  // Source address of the IP header that carried `vni`: the mirrored ENI for VXLAN (and for
  // kGeneveVxlan the nested VXLAN packet's source, not the load balancer's), the GWLB for Geneve.
  // 4 bytes used for AF_INET.
  uint8_t outer_source[16] = {};
  AwsGeneveOptions aws;  // from the Geneve header (kGeneve and kGeneveVxlan)
};

// Decapsulates one frame. `outer_link_type` is a LINKTYPE_ value (DLT_RAW 12 is also accepted).
// `original_length` below `captured_length` is treated as captured_length.
Result Decapsulate(const Config& config, uint16_t outer_link_type, const uint8_t* data,
                   uint32_t captured_length, uint32_t original_length);

// Text helpers. The buffer versions do not allocate: they write a NUL-terminated string and
// return its length, or 0 (and an empty string when out_size > 0) if there is nothing to write or
// it does not fit.
inline constexpr size_t kOuterSourceTextSize = 46;  // INET6_ADDRSTRLEN
// "192.0.2.1" / "2001:db8::1"; empty when the family is neither AF_INET nor AF_INET6.
size_t FormatOuterSource(const Result& result, char* out, size_t out_size);
std::string OuterSourceText(const Result& result);

// "aws.eni_id=0x0123456789abcdef, aws.attachment_id=0x..., aws.flow_cookie=0x01234567", listing
// only the options present (empty when none), e.g. for a pcapng comment.
inline constexpr size_t kAwsOptionsTextSize = 112;
size_t FormatAwsOptions(const AwsGeneveOptions& aws, char* out, size_t out_size);
std::string AwsOptionsComment(const AwsGeneveOptions& aws);

}  // namespace capd::decap
