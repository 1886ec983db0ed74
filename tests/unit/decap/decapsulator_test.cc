// Decapsulation on byte-array fixtures: every supported outer link layer, VXLAN, Geneve (with and
// without AWS options, Ethernet and bare IP), Geneve carrying VXLAN, and each failure reason.

#include "decap/decapsulator.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/decap/tunnel_packets.h"

namespace capd::decap {
namespace {

using fixtures::AwsOptions;
using fixtures::Bytes;
using fixtures::Cat;
using fixtures::EthernetHeader;
using fixtures::EthernetIpv4Udp;
using fixtures::EthernetIpv6Udp;
using fixtures::GeneveHeader;
using fixtures::GeneveOption;
using fixtures::HandEthernetIpv4Udp;
using fixtures::InnerEthernetIpv4;
using fixtures::InnerEthernetIpv6;
using fixtures::InnerIpv4;
using fixtures::InnerIpv6;
using fixtures::Ipv4Header;
using fixtures::Ipv4Udp;
using fixtures::Ipv6Header;
using fixtures::Ipv6Udp;
using fixtures::Put16;
using fixtures::Sll2Header;
using fixtures::TaggedEthernet;
using fixtures::UdpHeader;
using fixtures::VxlanHeader;

constexpr uint16_t kVxlanPort = 4789;
constexpr uint16_t kGenevePort = 6081;

Result Decap(const Bytes& packet, uint16_t link_type = kLinkTypeEthernet, Config config = {}) {
  const auto length = static_cast<uint32_t>(packet.size());
  return Decapsulate(config, link_type, packet.data(), length, length);
}

Bytes InnerBytes(const Bytes& packet, const Result& result) {
  return Bytes(packet.begin() + result.inner_offset,
               packet.begin() + result.inner_offset + result.inner_length);
}

// The inner frame must be exactly `inner`, all of it captured, at the end of the packet.
void ExpectInner(const Bytes& packet, const Result& result, const Bytes& inner) {
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated) << OutcomeName(result.outcome);
  EXPECT_EQ(result.inner_offset, packet.size() - inner.size());
  EXPECT_EQ(InnerBytes(packet, result), inner);
  EXPECT_EQ(result.inner_original_length, inner.size());
}

TEST(OutcomeNameTest, StableNames) {
  EXPECT_STREQ(OutcomeName(Outcome::kDecapsulated), "decapsulated");
  EXPECT_STREQ(OutcomeName(Outcome::kNotTunnel), "not_tunnel");
  EXPECT_STREQ(OutcomeName(Outcome::kTruncated), "truncated");
  EXPECT_STREQ(OutcomeName(Outcome::kMalformed), "malformed");
  EXPECT_STREQ(OutcomeName(Outcome::kFragmented), "fragmented");
  EXPECT_STREQ(OutcomeName(Outcome::kUnsupportedPayload), "unsupported_payload");
  EXPECT_STREQ(OutcomeName(Outcome::kUnsupportedLinkType), "unsupported_link_type");
  EXPECT_STREQ(OutcomeName(Outcome::kCount), "unknown");
  EXPECT_STREQ(OutcomeName(static_cast<Outcome>(200)), "unknown");
  EXPECT_STREQ(EncapsulationName(Encapsulation::kVxlan), "vxlan");
  EXPECT_STREQ(EncapsulationName(Encapsulation::kGeneve), "geneve");
  EXPECT_STREQ(EncapsulationName(Encapsulation::kGeneveVxlan), "geneve_vxlan");
}

// --- VXLAN -------------------------------------------------------------------------------------

TEST(VxlanTest, OverIpv4) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(100), inner}), "172.31.5.9");
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 14u + 20 + 8 + 8);
  EXPECT_EQ(result.encapsulation, Encapsulation::kVxlan);
  EXPECT_EQ(result.vni, 100u);
  EXPECT_EQ(result.outer_vni, 100u);
  EXPECT_EQ(result.inner_link_type, kLinkTypeEthernet);
  EXPECT_EQ(result.outer_source_family, AF_INET);
  EXPECT_EQ(OuterSourceText(result), "172.31.5.9");
  EXPECT_FALSE(result.aws.has_eni_id || result.aws.has_attachment_id || result.aws.has_flow_cookie);
}

TEST(VxlanTest, OverIpv6) {
  const Bytes inner = InnerEthernetIpv6();
  const Bytes packet =
      EthernetIpv6Udp(kVxlanPort, Cat({VxlanHeader(0xabcdef), inner}), "2001:db8:5::9");
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 14u + 40 + 8 + 8);
  EXPECT_EQ(result.vni, 0xabcdefu);
  EXPECT_EQ(result.outer_source_family, AF_INET6);
  EXPECT_EQ(OuterSourceText(result), "2001:db8:5::9");
}

TEST(VxlanTest, Ipv6ExtensionHeadersAreSkipped) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes tunnel = Cat({VxlanHeader(7), inner});
  const auto udp_length = static_cast<uint16_t>(8 + tunnel.size());
  // Hop-by-hop (8 bytes, PadN), routing (24 bytes), destination options (16), an atomic
  // fragment header (offset 0, M clear: a whole packet, RFC 6946), then UDP.
  const Bytes hop_by_hop = {43, 0, 1, 4, 0, 0, 0, 0};
  Bytes routing(24, 0);
  routing[0] = 60;
  routing[1] = 2;
  Bytes destination(16, 0);
  destination[0] = 44;
  destination[1] = 1;
  const Bytes fragment = {17, 0, 0, 0, 0, 0, 0, 1};
  const auto payload_length = static_cast<uint16_t>(8 + 24 + 16 + 8 + udp_length);
  const Bytes packet =
      Cat({EthernetHeader(0x86dd), Ipv6Header(0, payload_length), hop_by_hop, routing, destination,
           fragment, UdpHeader(kVxlanPort, udp_length), tunnel});
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.vni, 7u);
}

TEST(VxlanTest, TooManyIpv6ExtensionHeadersIsNotTunnel) {
  Bytes packet = Cat({EthernetHeader(0x86dd), Ipv6Header(60, 8 * 9 + 8 + 8)});
  for (int i = 0; i < 9; ++i) packet = Cat({packet, Bytes{60, 0, 1, 4, 0, 0, 0, 0}});
  packet[packet.size() - 8] = 17;
  packet = Cat({packet, UdpHeader(kVxlanPort, 16), VxlanHeader(1)});
  EXPECT_EQ(Decap(packet).outcome, Outcome::kNotTunnel);
}

TEST(VxlanTest, IPv4OptionsAreSkipped) {
  const Bytes inner = InnerEthernetIpv4();
  const auto udp_length = static_cast<uint16_t>(8 + 8 + inner.size());
  const Bytes packet =
      Cat({EthernetHeader(0x0800),
           Ipv4Header(17, static_cast<uint16_t>(28 + udp_length), 0, {0x94, 4, 0, 0, 1, 1, 1, 0}),
           UdpHeader(kVxlanPort, udp_length), VxlanHeader(9), inner});
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 14u + 28 + 8 + 8);
}

TEST(VxlanTest, VlanTaggedOuter) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes ip = Ipv4Udp(kVxlanPort, Cat({VxlanHeader(5), inner}));
  for (const std::vector<uint16_t>& tags : std::vector<std::vector<uint16_t>>{
           {0x8100}, {0x88a8, 0x8100}, {0x9100, 0x8100}, {0x88a8, 0x8100, 0x8100}}) {
    const Bytes packet = TaggedEthernet(tags, ip);
    const Result result = Decap(packet);
    ExpectInner(packet, result, inner);
    EXPECT_EQ(result.inner_offset, 14u + 4 * tags.size() + 20 + 8 + 8);
    EXPECT_EQ(result.vni, 5u);
  }
  // A fourth tag is more than we parse.
  EXPECT_EQ(Decap(TaggedEthernet({0x88a8, 0x8100, 0x8100, 0x8100}, ip)).outcome,
            Outcome::kNotTunnel);
}

TEST(VxlanTest, VlanTaggedOuterBuiltByLibtins) {
  const Bytes inner = InnerEthernetIpv6();
  Tins::EthernetII frame = Tins::EthernetII() / Tins::Dot1Q(10) / Tins::Dot1Q(20) /
                           Tins::IP("10.0.0.2", "10.0.0.1") / Tins::UDP(kVxlanPort, 1234) /
                           Tins::RawPDU(Cat({VxlanHeader(77), inner}));
  Bytes packet = frame.serialize();
  ASSERT_EQ(packet[12], 0x81);
  const Result q_in_q = Decap(packet);
  ExpectInner(packet, q_in_q, inner);
  Put16(packet, 12, 0x88a8);  // 802.1ad service tag outside
  ExpectInner(packet, Decap(packet), inner);
}

TEST(VxlanTest, LinuxCookedOuter) {
  const Bytes inner = InnerEthernetIpv4();
  Tins::SLL sll = Tins::SLL() / Tins::IP("10.0.0.2", "10.0.0.1") / Tins::UDP(kVxlanPort, 1) /
                  Tins::RawPDU(Cat({VxlanHeader(3), inner}));
  const Bytes packet = sll.serialize();
  const Result result = Decap(packet, kLinkTypeLinuxSll);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 16u + 20 + 8 + 8);

  // libpcap re-inserts an offloaded VLAN tag after the cooked header.
  Bytes tagged(packet.begin(), packet.begin() + 16);
  Put16(tagged, 14, 0x8100);
  tagged = Cat({tagged, fixtures::VlanTag(42, 0x0800), Bytes(packet.begin() + 16, packet.end())});
  ExpectInner(tagged, Decap(tagged, kLinkTypeLinuxSll), inner);
}

TEST(VxlanTest, LinuxCookedV2Outer) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes packet = Cat({Sll2Header(0x86dd), Ipv6Udp(kVxlanPort, Cat({VxlanHeader(4), inner}))});
  const Result result = Decap(packet, kLinkTypeLinuxSll2);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 20u + 40 + 8 + 8);
}

TEST(VxlanTest, RawIpOuterBothNumberings) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes v4 = Ipv4Udp(kVxlanPort, Cat({VxlanHeader(6), inner}));
  const Bytes v6 = Ipv6Udp(kVxlanPort, Cat({VxlanHeader(6), inner}));
  for (uint16_t link_type : {kLinkTypeRaw, kDltRaw}) {
    ExpectInner(v4, Decap(v4, link_type), inner);
    ExpectInner(v6, Decap(v6, link_type), inner);
  }
  Bytes not_ip = v4;
  not_ip[0] = 0x55;
  EXPECT_EQ(Decap(not_ip, kLinkTypeRaw).outcome, Outcome::kNotTunnel);
}

TEST(VxlanTest, ConfiguredPort) {
  const Bytes packet = EthernetIpv4Udp(8472, Cat({VxlanHeader(100), InnerEthernetIpv4()}));
  EXPECT_EQ(Decap(packet).outcome, Outcome::kNotTunnel);
  EXPECT_EQ(Decap(packet, kLinkTypeEthernet, {.vxlan_port = 8472}).outcome, Outcome::kDecapsulated);
}

TEST(VxlanTest, MissingIFlagIsMalformed) {
  EXPECT_EQ(
      Decap(EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1, 0x00), InnerEthernetIpv4()}))).outcome,
      Outcome::kMalformed);
}

TEST(VxlanTest, ReservedBitsAreIgnoredAsRfc7348Says) {
  // VXLAN-GBP (G bit 0x80, a group policy id in bytes 2-3) still carries Ethernet.
  Bytes gbp = VxlanHeader(1, 0x88);
  gbp[2] = 0x12;
  gbp[3] = 0x34;
  const Bytes inner = InnerEthernetIpv4();
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({gbp, inner}));
  ExpectInner(packet, Decap(packet), inner);
}

TEST(VxlanTest, GpeWithNextProtocolOtherThanEthernetIsNotDecoded) {
  // VXLAN-GPE flags I|P (0x0c), next protocol 4 = NSH: not Ethernet.
  const Bytes nsh = {0x0f, 0xc6, 0x01, 0x03, 0xff, 0xff, 0xff, 0xff};
  const Bytes packet =
      EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1, 0x0c, 4), nsh, InnerIpv4()}));
  EXPECT_EQ(Decap(packet).outcome, Outcome::kUnsupportedPayload);
  for (uint8_t next : {1, 2, 5}) {  // IPv4, IPv6, MPLS
    EXPECT_EQ(
        Decap(EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1, 0x0c, next), InnerIpv4()}))).outcome,
        Outcome::kUnsupportedPayload);
  }
  // GPE with next protocol 3 (Ethernet) is the same as VXLAN.
  const Bytes inner = InnerEthernetIpv4();
  const Bytes ethernet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1, 0x0c, 3), inner}));
  ExpectInner(ethernet, Decap(ethernet), inner);
}

TEST(VxlanTest, ModeSelectsTunnels) {
  const Bytes vxlan = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), InnerEthernetIpv4()}));
  const Bytes geneve =
      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 2), InnerEthernetIpv4()}));
  const Config vxlan_only{.mode = Mode::kVxlan};
  const Config geneve_only{.mode = Mode::kGeneve};
  EXPECT_EQ(Decap(vxlan, kLinkTypeEthernet, vxlan_only).outcome, Outcome::kDecapsulated);
  EXPECT_EQ(Decap(geneve, kLinkTypeEthernet, vxlan_only).outcome, Outcome::kNotTunnel);
  EXPECT_EQ(Decap(vxlan, kLinkTypeEthernet, geneve_only).outcome, Outcome::kNotTunnel);
  EXPECT_EQ(Decap(geneve, kLinkTypeEthernet, geneve_only).outcome, Outcome::kDecapsulated);
  // Port 0 disables a tunnel.
  EXPECT_EQ(Decap(vxlan, kLinkTypeEthernet, {.vxlan_port = 0}).outcome, Outcome::kNotTunnel);
  EXPECT_EQ(Decap(geneve, kLinkTypeEthernet, {.geneve_port = 0}).outcome, Outcome::kNotTunnel);
}

// --- Geneve ------------------------------------------------------------------------------------

TEST(GeneveTest, EthernetWithOptionsAndAwsOptions) {
  const Bytes inner = InnerEthernetIpv4();
  // A critical standard-class option first (as in tcpdump's geneve.pcap), then the AWS ones.
  const Bytes options = Cat({GeneveOption(0x0000, 0x80, {0, 0, 0, 0x0c}), AwsOptions()});
  const Bytes packet =
      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 0x123456, options), inner}));
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_offset, 14u + 20 + 8 + 8 + options.size());
  EXPECT_EQ(result.encapsulation, Encapsulation::kGeneve);
  EXPECT_EQ(result.vni, 0x123456u);
  EXPECT_EQ(result.outer_vni, 0x123456u);
  EXPECT_EQ(result.inner_link_type, kLinkTypeEthernet);
  ASSERT_TRUE(result.aws.has_eni_id);
  ASSERT_TRUE(result.aws.has_attachment_id);
  ASSERT_TRUE(result.aws.has_flow_cookie);
  EXPECT_EQ(result.aws.eni_id, 0x0123456789abcdefu);
  EXPECT_EQ(result.aws.attachment_id, 0xfedcba98u);
  EXPECT_EQ(result.aws.flow_cookie, 0xdeadbeefu);
  EXPECT_EQ(AwsOptionsComment(result.aws),
            "aws.eni_id=0x0123456789abcdef, aws.attachment_id=0x00000000fedcba98, "
            "aws.flow_cookie=0xdeadbeef");
}

TEST(GeneveTest, AwsOptionsWithOtherLengthsAreIgnoredCriticalBitIsNot) {
  const Bytes options = Cat({GeneveOption(0x0108, 1, {1, 2, 3, 4}),     // ENI id must be 8 bytes
                             GeneveOption(0x0108, 0x83, {0, 0, 0, 9}),  // critical flow cookie
                             GeneveOption(0x0109, 2, {1, 2, 3, 4, 5, 6, 7, 8})});  // not AWS
  const Bytes packet =
      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 1, options), InnerEthernetIpv4()}));
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_FALSE(result.aws.has_eni_id);
  EXPECT_FALSE(result.aws.has_attachment_id);
  ASSERT_TRUE(result.aws.has_flow_cookie);
  EXPECT_EQ(result.aws.flow_cookie, 9u);
  EXPECT_EQ(AwsOptionsComment(result.aws), "aws.flow_cookie=0x00000009");
}

TEST(GeneveTest, BareIpv4IsRawLinkType) {
  const Bytes inner = InnerIpv4();
  const Bytes packet =
      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x0800, 42, AwsOptions()), inner}));
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_link_type, kLinkTypeRaw);
  EXPECT_EQ(result.vni, 42u);
  EXPECT_TRUE(result.aws.has_eni_id);
}

TEST(GeneveTest, BareIpv6IsRawLinkType) {
  const Bytes inner = InnerIpv6();
  const Bytes packet = EthernetIpv6Udp(kGenevePort, Cat({GeneveHeader(0x86dd, 43), inner}));
  const Result result = Decap(packet);
  ExpectInner(packet, result, inner);
  EXPECT_EQ(result.inner_link_type, kLinkTypeRaw);
  EXPECT_EQ(result.outer_source_family, AF_INET6);
}

TEST(GeneveTest, CarryingVxlanStripsBoth) {
  // GWLB endpoint mirroring: Geneve (VNI 0x10, AWS options) / Ethernet / IPv4 / UDP 4789 / VXLAN
  // (mirror session VNI 123) / the mirrored frame.
  const Bytes mirrored = InnerEthernetIpv6();
  const Bytes vxlan_frame =
      EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(123), mirrored}), "172.31.9.9");
  const Bytes packet = EthernetIpv4Udp(
      kGenevePort, Cat({GeneveHeader(0x6558, 0x10, AwsOptions()), vxlan_frame}), "10.9.9.9");
  for (Mode mode : {Mode::kAuto, Mode::kGeneve}) {
    const Result result = Decap(packet, kLinkTypeEthernet, {.mode = mode});
    ExpectInner(packet, result, mirrored);
    EXPECT_EQ(result.encapsulation, Encapsulation::kGeneveVxlan);
    EXPECT_EQ(result.vni, 123u);
    EXPECT_EQ(result.outer_vni, 0x10u);
    EXPECT_EQ(result.inner_link_type, kLinkTypeEthernet);
    EXPECT_EQ(OuterSourceText(result), "172.31.9.9");  // the mirrored ENI, not the GWLB
    EXPECT_TRUE(result.aws.has_flow_cookie);
  }
  EXPECT_EQ(Decap(packet, kLinkTypeEthernet, {.mode = Mode::kVxlan}).outcome, Outcome::kNotTunnel);
}

TEST(GeneveTest, CarryingVxlanOverIpv6WithVlan) {
  const Bytes mirrored = InnerEthernetIpv4();
  const Bytes vxlan_frame =
      TaggedEthernet({0x8100}, Ipv6Udp(kVxlanPort, Cat({VxlanHeader(321), mirrored})));
  const Bytes packet = EthernetIpv6Udp(kGenevePort, Cat({GeneveHeader(0x6558, 0x11), vxlan_frame}));
  const Result result = Decap(packet);
  ExpectInner(packet, result, mirrored);
  EXPECT_EQ(result.encapsulation, Encapsulation::kGeneveVxlan);
  EXPECT_EQ(result.vni, 321u);
}

TEST(GeneveTest, EthernetPayloadThatIsNotValidVxlanStaysGeneve) {
  const Bytes mirrored = InnerEthernetIpv4();
  for (const Bytes& payload : {EthernetIpv4Udp(53, Bytes(40, 1)),  // other UDP
                               EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1, 0), mirrored})),
                               EthernetIpv4Udp(kVxlanPort, Bytes(5, 0x08))}) {  // cut VXLAN
    const Bytes packet = EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 1), payload}));
    const Result result = Decap(packet);
    ExpectInner(packet, result, payload);
    EXPECT_EQ(result.encapsulation, Encapsulation::kGeneve);
    EXPECT_EQ(result.vni, 1u);
  }
}

TEST(GeneveTest, WrongProtocolIsUnsupported) {
  for (uint16_t protocol : {0x8847, 0x0806, 0x894f}) {  // MPLS, ARP, NSH
    EXPECT_EQ(
        Decap(EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(protocol, 1), InnerIpv4()}))).outcome,
        Outcome::kUnsupportedPayload)
        << protocol;
  }
}

TEST(GeneveTest, BadVersionIsMalformed) {
  EXPECT_EQ(Decap(EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 1, {}, 1), InnerIpv4()})))
                .outcome,
            Outcome::kMalformed);
}

TEST(GeneveTest, OptionOverrunIsMalformed) {
  // The option claims 8 bytes of data but the options area (opt len) holds only 4.
  Bytes options = GeneveOption(0x0108, 3, {1, 2, 3, 4});
  options[3] = 2;
  EXPECT_EQ(
      Decap(EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 1, options), InnerIpv4()})))
          .outcome,
      Outcome::kMalformed);
  // Options longer than the UDP datagram.
  Bytes header = GeneveHeader(0x6558, 1);
  header[0] = 0x3f;  // 252 bytes of options
  EXPECT_EQ(Decap(EthernetIpv4Udp(kGenevePort, Cat({header, Bytes(20, 0)}))).outcome,
            Outcome::kMalformed);
}

TEST(GeneveTest, OptionsCutByTheCaptureAreTruncated) {
  const Bytes packet =
      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x0800, 1, AwsOptions()), InnerIpv4()}));
  const uint32_t cut = 14 + 20 + 8 + 8 + 10;  // inside the options
  EXPECT_EQ(
      Decapsulate({}, kLinkTypeEthernet, packet.data(), cut, static_cast<uint32_t>(packet.size()))
          .outcome,
      Outcome::kTruncated);
}

// --- Not tunnels, fragments, broken lengths ------------------------------------------------------

TEST(NotTunnelTest, OtherTraffic) {
  EXPECT_EQ(Decap(EthernetIpv4Udp(53, Bytes(30, 0))).outcome, Outcome::kNotTunnel);
  Tins::EthernetII tcp = Tins::EthernetII() / Tins::IP("10.0.0.2", "10.0.0.1") /
                         Tins::TCP(kVxlanPort, 1) / Tins::RawPDU(VxlanHeader(1));
  EXPECT_EQ(Decap(tcp.serialize()).outcome, Outcome::kNotTunnel);
  Tins::EthernetII arp = Tins::ARP::make_arp_request("10.0.0.1", "10.0.0.2");
  EXPECT_EQ(Decap(arp.serialize()).outcome, Outcome::kNotTunnel);
  // The source port does not matter, only the destination.
  Tins::EthernetII reply = Tins::EthernetII() / Tins::IP("10.0.0.2", "10.0.0.1") /
                           Tins::UDP(40000, kVxlanPort) / Tins::RawPDU(VxlanHeader(1));
  EXPECT_EQ(Decap(reply.serialize()).outcome, Outcome::kNotTunnel);
  // A non-UDP packet with broken lengths is still just not a tunnel.
  Bytes broken = Cat({EthernetHeader(0x0800), Ipv4Header(6, 3)});
  EXPECT_EQ(Decap(broken).outcome, Outcome::kNotTunnel);
}

TEST(NotTunnelTest, UnsupportedLinkType) {
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), InnerEthernetIpv4()}));
  for (uint16_t link_type : {0, 105, 127, 228, 0xffff}) {
    EXPECT_EQ(Decap(packet, link_type).outcome, Outcome::kUnsupportedLinkType) << link_type;
  }
}

TEST(FragmentTest, OuterIpv4Fragments) {
  const Bytes payload = Cat({VxlanHeader(1), InnerEthernetIpv4()});
  // First fragment (MF) to the VXLAN port; later fragment (offset != 0) of any UDP packet.
  EXPECT_EQ(Decap(HandEthernetIpv4Udp(kVxlanPort, payload, 0x2000)).outcome, Outcome::kFragmented);
  EXPECT_EQ(Decap(HandEthernetIpv4Udp(kVxlanPort, payload, 0x0010)).outcome, Outcome::kFragmented);
  EXPECT_EQ(Decap(HandEthernetIpv4Udp(kVxlanPort, payload, 0x2010)).outcome, Outcome::kFragmented);
  // DF is not a fragment; a first fragment to another port is not a tunnel.
  EXPECT_EQ(Decap(HandEthernetIpv4Udp(kVxlanPort, payload, 0x4000)).outcome,
            Outcome::kDecapsulated);
  EXPECT_EQ(Decap(HandEthernetIpv4Udp(53, payload, 0x2000)).outcome, Outcome::kNotTunnel);

  // The same with libtins setting the flags.
  Tins::EthernetII frame = Tins::EthernetII() / Tins::IP("10.0.0.2", "10.0.0.1") /
                           Tins::UDP(kVxlanPort, 1) / Tins::RawPDU(payload);
  frame.rfind_pdu<Tins::IP>().flags(Tins::IP::MORE_FRAGMENTS);
  EXPECT_EQ(Decap(frame.serialize()).outcome, Outcome::kFragmented);
}

TEST(FragmentTest, OuterIpv6Fragments) {
  const Bytes payload = Cat({VxlanHeader(1), InnerEthernetIpv4()});
  const auto udp_length = static_cast<uint16_t>(8 + payload.size());
  auto with_fragment_header = [&](uint16_t offset_and_m) {
    Bytes fragment = {17, 0, 0, 0, 0, 0, 0, 1};
    Put16(fragment, 2, offset_and_m);
    return Cat({EthernetHeader(0x86dd), Ipv6Header(44, static_cast<uint16_t>(8 + udp_length)),
                fragment, UdpHeader(kVxlanPort, udp_length), payload});
  };
  EXPECT_EQ(Decap(with_fragment_header(0x0001)).outcome, Outcome::kFragmented);    // first
  EXPECT_EQ(Decap(with_fragment_header(0x0100)).outcome, Outcome::kFragmented);    // last
  EXPECT_EQ(Decap(with_fragment_header(0x0101)).outcome, Outcome::kFragmented);    // middle
  EXPECT_EQ(Decap(with_fragment_header(0x0000)).outcome, Outcome::kDecapsulated);  // atomic
}

TEST(LengthTest, BrokenIpAndUdpLengthsAreMalformed) {
  const Bytes payload = Cat({VxlanHeader(1), InnerEthernetIpv4()});
  const auto udp_length = static_cast<uint16_t>(8 + payload.size());
  const Bytes udp = Cat({UdpHeader(kVxlanPort, udp_length), payload});
  auto ipv4 = [&](uint16_t total_length, const Bytes& rest) {
    return Cat({EthernetHeader(0x0800), Ipv4Header(17, total_length), rest});
  };
  // UDP length beyond the IP packet, UDP length below 8.
  EXPECT_EQ(Decap(ipv4(static_cast<uint16_t>(20 + udp_length - 1), udp)).outcome,
            Outcome::kMalformed);
  EXPECT_EQ(
      Decap(ipv4(static_cast<uint16_t>(20 + udp_length), Cat({UdpHeader(kVxlanPort, 7), payload})))
          .outcome,
      Outcome::kMalformed);
  // A UDP datagram too short for the VXLAN header.
  EXPECT_EQ(Decap(ipv4(20 + 8 + 4, Cat({UdpHeader(kVxlanPort, 12), payload}))).outcome,
            Outcome::kMalformed);
  // IP total length below its header length, too short for UDP, IHL below 5.
  EXPECT_EQ(Decap(ipv4(19, udp)).outcome, Outcome::kMalformed);
  EXPECT_EQ(Decap(ipv4(24, udp)).outcome, Outcome::kMalformed);
  Bytes bad_ihl = ipv4(static_cast<uint16_t>(20 + udp_length), udp);
  bad_ihl[14] = 0x44;
  EXPECT_EQ(Decap(bad_ihl).outcome, Outcome::kMalformed);
  // Ethernet says IPv4, the version nibble says otherwise.
  Bytes bad_version = ipv4(static_cast<uint16_t>(20 + udp_length), udp);
  bad_version[14] = 0x65;
  EXPECT_EQ(Decap(bad_version).outcome, Outcome::kMalformed);
  // IPv6: the payload length ends before the UDP header.
  EXPECT_EQ(Decap(Cat({EthernetHeader(0x86dd), Ipv6Header(17, 4), udp})).outcome,
            Outcome::kMalformed);
}

TEST(LengthTest, OuterTrailerIsNotPartOfTheInnerFrame) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes tunnel = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), inner}));
  const Bytes packet = Cat({tunnel, Bytes{0xde, 0xad, 0xbe, 0xef}});  // an FCS
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(InnerBytes(packet, result), inner);
  EXPECT_EQ(result.inner_original_length, inner.size());
}

TEST(LengthTest, UdpLengthEndsTheInnerFrame) {
  // The IP packet is 4 bytes longer than the UDP datagram: those bytes are not inner bytes.
  const Bytes inner = InnerEthernetIpv4();
  const auto udp_length = static_cast<uint16_t>(8 + 8 + inner.size());
  const Bytes packet =
      Cat({EthernetHeader(0x0800), Ipv4Header(17, static_cast<uint16_t>(20 + udp_length + 4)),
           UdpHeader(kVxlanPort, udp_length), VxlanHeader(1), inner, Bytes{1, 2, 3, 4}});
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(InnerBytes(packet, result), inner);
  EXPECT_EQ(result.inner_original_length, inner.size());
}

TEST(LengthTest, BigTcpZeroLengthsUseTheFrame) {
  // Linux BIG TCP: IPv4 total length 0 and UDP length 0; IPv6 payload length 0, no jumbo option.
  const Bytes inner = InnerEthernetIpv4(2000);
  const Bytes v4 = Cat({EthernetHeader(0x0800), Ipv4Header(17, 0), UdpHeader(kVxlanPort, 0),
                        VxlanHeader(5001), inner});
  ExpectInner(v4, Decap(v4), inner);
  const Bytes v6 = Cat({EthernetHeader(0x86dd), Ipv6Header(17, 0), UdpHeader(kVxlanPort, 0),
                        VxlanHeader(5001), inner});
  ExpectInner(v6, Decap(v6), inner);
}

TEST(LengthTest, OriginalLengthBelowCapturedIsTreatedAsCaptured) {
  const Bytes inner = InnerEthernetIpv4();
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), inner}));
  const Result result =
      Decapsulate({}, kLinkTypeEthernet, packet.data(), static_cast<uint32_t>(packet.size()), 3);
  ExpectInner(packet, result, inner);
}

TEST(LengthTest, NullDataIsTruncated) {
  EXPECT_EQ(Decapsulate({}, kLinkTypeEthernet, nullptr, 0, 100).outcome, Outcome::kTruncated);
  EXPECT_EQ(Decapsulate({}, kLinkTypeRaw, nullptr, 0, 0).outcome, Outcome::kTruncated);
  EXPECT_EQ(Decapsulate({}, kLinkTypeEthernet, nullptr, 50, 50).outcome, Outcome::kTruncated);
}

// --- Truncation at every offset ------------------------------------------------------------------

struct Fixture {
  std::string name;
  uint16_t link_type;
  Bytes packet;
  uint32_t header_end;  // the first byte of the inner frame
  Encapsulation encapsulation;
  uint32_t outer_header_end = 0;  // for Geneve+VXLAN: where the Geneve payload starts
};

std::vector<Fixture> Fixtures() {
  const Bytes inner4 = InnerEthernetIpv4();
  const Bytes inner6 = InnerEthernetIpv6();
  const Bytes vxlan4 = Cat({VxlanHeader(100), inner4});
  const Bytes vxlan6 = Cat({VxlanHeader(100), inner6});
  std::vector<Fixture> fixtures;
  fixtures.push_back({"vxlan_ipv4", kLinkTypeEthernet, EthernetIpv4Udp(kVxlanPort, vxlan4), 50,
                      Encapsulation::kVxlan});
  fixtures.push_back({"vxlan_ipv6", kLinkTypeEthernet, EthernetIpv6Udp(kVxlanPort, vxlan6), 70,
                      Encapsulation::kVxlan});
  fixtures.push_back({"vxlan_qinq", kLinkTypeEthernet,
                      TaggedEthernet({0x88a8, 0x8100}, Ipv4Udp(kVxlanPort, vxlan4)), 58,
                      Encapsulation::kVxlan});
  Tins::SLL sll = Tins::SLL() / Tins::IP("10.0.0.2", "10.0.0.1") / Tins::UDP(kVxlanPort, 1) /
                  Tins::RawPDU(vxlan4);
  fixtures.push_back({"vxlan_sll", kLinkTypeLinuxSll, sll.serialize(), 52, Encapsulation::kVxlan});
  fixtures.push_back({"vxlan_sll2", kLinkTypeLinuxSll2,
                      Cat({Sll2Header(0x86dd), Ipv6Udp(kVxlanPort, vxlan4)}), 76,
                      Encapsulation::kVxlan});
  fixtures.push_back(
      {"vxlan_raw", kLinkTypeRaw, Ipv4Udp(kVxlanPort, vxlan6), 36, Encapsulation::kVxlan});
  const Bytes options = Cat({GeneveOption(0, 0x80, {0, 0, 0, 1}), AwsOptions()});
  fixtures.push_back({"geneve_ethernet", kLinkTypeEthernet,
                      EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 7, options), inner4})),
                      static_cast<uint32_t>(50 + options.size()), Encapsulation::kGeneve});
  fixtures.push_back({"geneve_ipv6", kLinkTypeEthernet,
                      EthernetIpv6Udp(kGenevePort, Cat({GeneveHeader(0x86dd, 7), InnerIpv6()})), 70,
                      Encapsulation::kGeneve});
  const Bytes nested = EthernetIpv4Udp(kVxlanPort, vxlan6);
  const auto geneve_end = static_cast<uint32_t>(50 + AwsOptions().size());
  fixtures.push_back(
      {"geneve_vxlan", kLinkTypeEthernet,
       EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x6558, 8, AwsOptions()), nested})),
       geneve_end + 50, Encapsulation::kGeneveVxlan, geneve_end});
  return fixtures;
}

TEST(TruncationTest, EveryCutIsTruncatedOrDecapsulated) {
  for (const Fixture& fixture : Fixtures()) {
    SCOPED_TRACE(fixture.name);
    const auto full = static_cast<uint32_t>(fixture.packet.size());
    const Result whole = Decap(fixture.packet, fixture.link_type);
    ASSERT_EQ(whole.outcome, Outcome::kDecapsulated);
    ASSERT_EQ(whole.inner_offset, fixture.header_end);
    ASSERT_EQ(whole.encapsulation, fixture.encapsulation);
    for (uint32_t cut = 0; cut <= full; ++cut) {
      SCOPED_TRACE(cut);
      // Copy the cut bytes so that AddressSanitizer sees any read past them.
      const Bytes captured(fixture.packet.begin(), fixture.packet.begin() + cut);
      const Result result = Decapsulate({}, fixture.link_type, captured.data(), cut, full);
      const uint32_t decapsulated_from =
          fixture.outer_header_end != 0 ? fixture.outer_header_end : fixture.header_end;
      if (cut < decapsulated_from) {
        EXPECT_EQ(result.outcome, Outcome::kTruncated);
        continue;
      }
      ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
      EXPECT_EQ(result.inner_offset + result.inner_length, cut);
      EXPECT_GE(result.inner_original_length, result.inner_length);
      if (cut >= fixture.header_end) {
        EXPECT_EQ(result.encapsulation, fixture.encapsulation);
        EXPECT_EQ(result.inner_offset, fixture.header_end);
        // The outer lengths (and the inner IP header) still give the whole inner length.
        EXPECT_EQ(result.inner_original_length, full - fixture.header_end);
        EXPECT_EQ(result.vni, whole.vni);
      } else {
        // Geneve+VXLAN cut inside the nested headers: the Geneve payload is the inner frame.
        EXPECT_EQ(result.encapsulation, Encapsulation::kGeneve);
        EXPECT_EQ(result.inner_offset, fixture.outer_header_end);
      }
      // The same bytes claiming to be whole never crash either.
      (void)Decapsulate({}, fixture.link_type, captured.data(), cut, cut);
    }
  }
}

// --- Inner original length -----------------------------------------------------------------------

// An AWS mirror session with a packet length keeps only the first bytes of the mirrored frame;
// the outer headers describe the cut packet, the inner IP header the original.
TEST(InnerOriginalLengthTest, MirrorTruncatedInnerIpv4) {
  const Bytes inner = InnerEthernetIpv4(1000);
  const Bytes cut_inner(inner.begin(), inner.begin() + 100);
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), cut_inner}));
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_length, 100u);
  EXPECT_EQ(result.inner_original_length, inner.size());
  EXPECT_EQ(result.inner_original_length, 14u + 20 + 20 + 1000);
}

TEST(InnerOriginalLengthTest, MirrorTruncatedInnerIpv6WithVlanTag) {
  const Bytes ip = Ipv6Udp(9999, Bytes(1400, 7));
  const Bytes inner = TaggedEthernet({0x8100}, ip);
  const Bytes cut_inner(inner.begin(), inner.begin() + 64);
  const Bytes packet = EthernetIpv6Udp(kVxlanPort, Cat({VxlanHeader(1), cut_inner}));
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_length, 64u);
  EXPECT_EQ(result.inner_original_length, 18u + 40 + 8 + 1400);
}

TEST(InnerOriginalLengthTest, MirrorTruncatedBareIpInGeneve) {
  const Bytes inner = InnerIpv4(500);
  const Bytes cut_inner(inner.begin(), inner.begin() + 30);
  const Bytes packet = EthernetIpv4Udp(kGenevePort, Cat({GeneveHeader(0x0800, 1), cut_inner}));
  const Result result = Decap(packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_original_length, inner.size());
}

TEST(InnerOriginalLengthTest, UnknownInnerLengthsFallBackToTheBytesPresent) {
  // Inner BIG TCP (total length 0), IPv6 jumbo (payload length 0), ARP, a cut IP header.
  Bytes big_tcp = InnerEthernetIpv4(200);
  Put16(big_tcp, 14 + 2, 0);
  Bytes jumbo = InnerEthernetIpv6(200);
  Put16(jumbo, 14 + 4, 0);
  Tins::EthernetII arp_frame = Tins::ARP::make_arp_request("10.0.0.1", "10.0.0.2");
  const Bytes arp = arp_frame.serialize();
  const Bytes whole = InnerEthernetIpv4();
  const Bytes cut_header(whole.begin(), whole.begin() + 16);
  for (const Bytes& inner : {big_tcp, jumbo, arp, cut_header}) {
    const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), inner}));
    ExpectInner(packet, Decap(packet), inner);
  }
}

TEST(InnerOriginalLengthTest, InnerPaddingCountsAsInnerBytes) {
  // A 60-byte minimum inner frame whose IP header claims less (Ethernet padding on the inner).
  Bytes inner = InnerEthernetIpv4(0);
  inner.resize(60, 0);
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), inner}));
  ExpectInner(packet, Decap(packet), inner);
}

TEST(InnerOriginalLengthTest, OuterCutBySnaplen) {
  const Bytes inner = InnerEthernetIpv4(1000);
  const Bytes packet = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), inner}));
  const auto full = static_cast<uint32_t>(packet.size());
  // The snaplen keeps the inner IP header.
  Result result = Decapsulate({}, kLinkTypeEthernet, packet.data(), 128, full);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_length, 128u - 50);
  EXPECT_EQ(result.inner_original_length, inner.size());
  // The snaplen cuts the inner Ethernet header: the outer lengths still know.
  result = Decapsulate({}, kLinkTypeEthernet, packet.data(), 56, full);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_original_length, inner.size());

  // Both: a mirror-truncated inner frame, then cut again by the snaplen.
  const Bytes cut_inner(inner.begin(), inner.begin() + 200);
  const Bytes mirrored = EthernetIpv4Udp(kVxlanPort, Cat({VxlanHeader(1), cut_inner}));
  result = Decapsulate({}, kLinkTypeEthernet, mirrored.data(), 100,
                       static_cast<uint32_t>(mirrored.size()));
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_length, 50u);
  EXPECT_EQ(result.inner_original_length, inner.size());

  // BIG TCP outer (no usable lengths) cut by the snaplen: original_length - inner_offset.
  const Bytes big = Cat({EthernetHeader(0x0800), Ipv4Header(17, 0), UdpHeader(kVxlanPort, 0),
                         VxlanHeader(1), InnerEthernetIpv4(100)});
  Bytes big_tcp_inner = big;
  Put16(big_tcp_inner, 50 + 14 + 2, 0);
  result = Decapsulate({}, kLinkTypeEthernet, big_tcp_inner.data(), 60, 90000);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.inner_original_length, 90000u - 50);
}

// --- Helpers -------------------------------------------------------------------------------------

TEST(FormatTest, OuterSource) {
  Result result;
  EXPECT_EQ(OuterSourceText(result), "");
  result.outer_source_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "192.0.2.33", result.outer_source), 1);
  EXPECT_EQ(OuterSourceText(result), "192.0.2.33");
  char small[8];
  EXPECT_EQ(FormatOuterSource(result, small, sizeof(small)), 0u);
  EXPECT_STREQ(small, "");
  result.outer_source_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::ff:1", result.outer_source), 1);
  char text[kOuterSourceTextSize];
  EXPECT_EQ(FormatOuterSource(result, text, sizeof(text)), 14u);
  EXPECT_STREQ(text, "2001:db8::ff:1");
}

TEST(FormatTest, AwsOptions) {
  AwsGeneveOptions aws;
  EXPECT_EQ(AwsOptionsComment(aws), "");
  aws.has_eni_id = aws.has_attachment_id = aws.has_flow_cookie = true;
  aws.eni_id = aws.attachment_id = UINT64_MAX;
  aws.flow_cookie = UINT32_MAX;
  char text[kAwsOptionsTextSize];
  const size_t length = FormatAwsOptions(aws, text, sizeof(text));
  EXPECT_EQ(std::string(text), AwsOptionsComment(aws));
  EXPECT_EQ(length, std::string(text).size());
  EXPECT_EQ(std::string(text),
            "aws.eni_id=0xffffffffffffffff, aws.attachment_id=0xffffffffffffffff, "
            "aws.flow_cookie=0xffffffff");
  char small[20];
  EXPECT_EQ(FormatAwsOptions(aws, small, sizeof(small)), 0u);
  EXPECT_STREQ(small, "");
}

// --- Fuzzer findings ----------------------------------------------------------------------------

// decap_fuzzer, crash-3a931abfc0f6edf4813611fda26d7b70885affe1 (selector 0x00 0x01: Ethernet, auto,
// VXLAN port 8472): vxlan_port_8472.pcap packet 2, an ARP request in VXLAN. Decapsulation was
// right; FormatAwsOptions() left the caller's buffer unterminated when no AWS option was present.
TEST(FuzzRegressionTest, NoAwsOptionsFormatsAnEmptyString) {
  const Bytes packet = {
      0x36, 0xdc, 0x85, 0x1e, 0xb3, 0x40, 0x00, 0x16, 0x3e, 0x08, 0x71, 0xcf, 0x08, 0x00,
      0x45, 0x00, 0x00, 0x4e, 0xb8, 0x02, 0x40, 0x00, 0x3e, 0x11, 0x6e, 0x48, 0xc0, 0xa8,
      0xca, 0x01, 0xc0, 0xa8, 0xcb, 0x01, 0xa6, 0xd6, 0x21, 0x18, 0x00, 0x3a, 0x00, 0x00,
      0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0x00, 0x30, 0x88, 0x01, 0x00, 0x02, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
      0x00, 0x01, 0x00, 0x30, 0x88, 0x01, 0x00, 0x02, 0xc0, 0xa8, 0xcb, 0x05, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0xcb, 0x03,
  };
  const Result result = Decap(packet, kLinkTypeEthernet, {.vxlan_port = 8472});
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.vni, 100u);
  EXPECT_EQ(result.inner_offset, 50u);
  EXPECT_EQ(result.inner_length, 42u);
  char comment[kAwsOptionsTextSize];
  std::memset(comment, 0x7f, sizeof(comment));
  EXPECT_EQ(FormatAwsOptions(result.aws, comment, sizeof(comment)), 0u);
  EXPECT_EQ(std::strlen(comment), 0u);
}

// libpcap 1.10.3 compiles filters for DLT_RAW (12) but not for LINKTYPE_RAW (101).
TEST(DltTest, InnerFiltersCompileForRawIp) {
  EXPECT_EQ(DltForLinkType(kLinkTypeRaw), 12);
  EXPECT_EQ(DltForLinkType(kLinkTypeEthernet), 1);
  for (uint16_t link_type : {kLinkTypeEthernet, kLinkTypeRaw}) {
    pcap_t* handle = pcap_open_dead(DltForLinkType(link_type), 65535);
    ASSERT_NE(handle, nullptr);
    bpf_program program{};
    EXPECT_EQ(pcap_compile(handle, &program, "tcp port 443", 1, PCAP_NETMASK_UNKNOWN), 0)
        << pcap_geterr(handle);
    pcap_freecode(&program);
    pcap_close(handle);
  }
}

}  // namespace
}  // namespace capd::decap
