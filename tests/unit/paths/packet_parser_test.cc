// packet_parser.h on frames built with libtins: every link type, IPv4 and IPv6 with extension
// headers, the quoted flow of ICMP errors, and every prefix of a frame (bounds).

#include "paths/packet_parser.h"

#include <gtest/gtest.h>

#include "tests/unit/paths/packets.h"

namespace capd::paths {
namespace {

using test::Bytes;
using test::Tcp;

Address V4(const std::string& text) {
  Address a;
  a.version = 4;
  const Tins::IPv4Address ip(text);
  const uint32_t v = ip;  // network order in memory
  std::memcpy(a.bytes.data(), &v, 4);
  return a;
}

TEST(PacketParserTest, EthernetIpv4TcpSyn) {
  const Bytes frame =
      test::TcpFrame({"10.0.1.5", "10.0.2.9", 40000, 5432, Tins::TCP::SYN, 77, 0, 9});
  ParsedPacket p;
  ASSERT_EQ(ParsePacket(kLinkEthernet, frame, p), ParseResult::kOk);
  EXPECT_EQ(p.flow.src, V4("10.0.1.5"));
  EXPECT_EQ(p.flow.dst, V4("10.0.2.9"));
  EXPECT_EQ(p.flow.protocol, kProtoTcp);
  EXPECT_EQ(p.flow.src_port, 40000);
  EXPECT_EQ(p.flow.dst_port, 5432);
  EXPECT_EQ(p.tcp_flags, kTcpSyn);
  EXPECT_EQ(p.tcp_seq, 77u);
  EXPECT_EQ(p.ip_id, 9);
  EXPECT_TRUE(p.dont_fragment);
  EXPECT_EQ(p.payload_length, 0u);
  EXPECT_EQ(p.ip_length, 40);
}

TEST(PacketParserTest, VlanCookedAndRawLinkTypes) {
  const Bytes ip = test::TcpIp({"10.0.1.5", "10.0.2.9", 1, 2, Tins::TCP::ACK, 0, 100});
  ParsedPacket p;
  ASSERT_EQ(ParsePacket(kLinkRaw, ip, p), ParseResult::kOk);
  EXPECT_EQ(p.payload_length, 100u);
  ASSERT_EQ(ParsePacket(kLinkRawDlt, ip, p), ParseResult::kOk);
  ASSERT_EQ(ParsePacket(kLinkIpv4, ip, p), ParseResult::kOk);

  Tins::EthernetII tagged =
      Tins::EthernetII() / Tins::Dot1Q(10) / Tins::Dot1Q(20) / Tins::RawPDU(ip);
  tagged.rfind_pdu<Tins::Dot1Q>().payload_type(0x8100);
  Bytes bytes = tagged.serialize();
  // The inner tag's type field says IPv4.
  bytes[14 + 4 + 2] = 0x08;
  bytes[14 + 4 + 3] = 0x00;
  ASSERT_EQ(ParsePacket(kLinkEthernet, bytes, p), ParseResult::kOk);
  EXPECT_EQ(p.flow.dst_port, 2);

  Bytes sll(16, 0);  // cooked v1: the protocol in its last two bytes
  sll[14] = 0x08;
  sll.insert(sll.end(), ip.begin(), ip.end());
  ASSERT_EQ(ParsePacket(kLinkLinuxSll, sll, p), ParseResult::kOk);
  EXPECT_EQ(p.flow.src_port, 1);

  Bytes sll2(20, 0);
  sll2[0] = 0x08;
  sll2.insert(sll2.end(), ip.begin(), ip.end());
  ASSERT_EQ(ParsePacket(kLinkLinuxSll2, sll2, p), ParseResult::kOk);
  EXPECT_EQ(p.flow.src_port, 1);

  EXPECT_EQ(ParsePacket(105, ip, p), ParseResult::kUnsupportedLink);
  const Bytes arp =
      Tins::EthernetII(Tins::ARP::make_arp_request("10.0.0.1", "10.0.0.2")).serialize();
  EXPECT_EQ(ParsePacket(kLinkEthernet, arp, p), ParseResult::kNotIp);
}

TEST(PacketParserTest, Ipv6ExtensionHeadersAreSkipped) {
  // Hop-by-hop options, then destination options (each 8 bytes of PadN), then UDP 3333 -> 53
  // with 10 bytes of payload.
  Bytes rest = {60, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0, 0x0D, 0x05, 0, 53, 0, 18, 0, 0};
  rest.resize(rest.size() + 10, 'x');
  Tins::IPv6 ip = Tins::IPv6("fd00::2", "fd00::1") / Tins::RawPDU(rest);
  ip.next_header(0);
  const Bytes frame = test::Ethernet(ip.serialize());
  ParsedPacket p;
  ASSERT_EQ(ParsePacket(kLinkEthernet, frame, p), ParseResult::kOk);
  EXPECT_EQ(p.flow.src.version, 6);
  EXPECT_EQ(p.flow.protocol, kProtoUdp);
  EXPECT_EQ(p.flow.src_port, 3333);
  EXPECT_EQ(p.flow.dst_port, 53);
  EXPECT_EQ(p.payload_length, 10u);
}

TEST(PacketParserTest, LaterFragmentsHaveNoPorts) {
  Tins::IP ip = Tins::IP("10.0.0.2", "10.0.0.1") / Tins::RawPDU(test::Payload(40));
  ip.protocol(kProtoUdp);
  ip.fragment_offset(100);
  ParsedPacket p;
  EXPECT_EQ(ParsePacket(kLinkRaw, ip.serialize(), p), ParseResult::kFragment);
}

TEST(PacketParserTest, IcmpFragNeededNamesTheQuotedFlow) {
  const Bytes quoted = test::TcpIp({"10.0.1.5", "10.0.2.9", 40000, 5432, Tins::TCP::ACK, 1, 1448});
  ParsedPacket p;
  ASSERT_EQ(
      ParsePacket(kLinkEthernet, test::IcmpFragNeeded("10.0.3.1", "10.0.1.5", quoted, 1400), p),
      ParseResult::kOk);
  EXPECT_EQ(p.icmp_error.kind, IcmpError::Kind::kFragNeeded);
  EXPECT_EQ(p.icmp_error.mtu, 1400u);
  EXPECT_EQ(p.icmp_error.quoted.src, V4("10.0.1.5"));
  EXPECT_EQ(p.icmp_error.quoted.dst_port, 5432);
  EXPECT_EQ(p.flow.src, V4("10.0.3.1"));
}

TEST(PacketParserTest, Icmpv6PacketTooBigNamesTheQuotedFlow) {
  const Bytes quoted = test::TcpIp({"fd00:1::5", "fd00:2::9", 40000, 443, Tins::TCP::ACK, 1, 1400});
  ParsedPacket p;
  ASSERT_EQ(
      ParsePacket(kLinkEthernet, test::Icmpv6TooBig("fd00:3::1", "fd00:1::5", quoted, 1280), p),
      ParseResult::kOk);
  EXPECT_EQ(p.icmp_error.kind, IcmpError::Kind::kFragNeeded);
  EXPECT_EQ(p.icmp_error.mtu, 1280u);
  EXPECT_EQ(p.icmp_error.quoted.protocol, kProtoTcp);
  EXPECT_EQ(p.icmp_error.quoted.src_port, 40000);
  EXPECT_EQ(p.icmp_error.quoted.dst_port, 443);
}

// Every prefix of a frame parses or fails with a reason, within the captured bytes (run under
// AddressSanitizer in the sanitizer build: each prefix is its own allocation).
TEST(PacketParserTest, EveryPrefixIsSafe) {
  const std::vector<Bytes> frames = {
      test::TcpFrame({"10.0.1.5", "10.0.2.9", 1, 2, Tins::TCP::SYN, 0, 20}),
      test::UdpFrame("fd00::1", 1, "fd00::2", 2, 20),
      test::IcmpFragNeeded("10.0.3.1", "10.0.1.5",
                           test::TcpIp({"10.0.1.5", "10.0.2.9", 1, 2, Tins::TCP::ACK, 0, 50}),
                           1400),
      test::Icmpv6TooBig("fd00::9", "fd00::1", test::TcpIp({"fd00::1", "fd00::2", 1, 2, 0, 0, 50}),
                         1280)};
  for (const Bytes& frame : frames) {
    for (size_t n = 0; n <= frame.size(); ++n) {
      const Bytes prefix(frame.begin(), frame.begin() + n);
      for (int link : {kLinkEthernet, kLinkRaw, kLinkLinuxSll, kLinkLinuxSll2}) {
        ParsedPacket p;
        (void)ParsePacket(link, prefix, p);
      }
    }
  }
}

TEST(PacketParserTest, SignatureIgnoresChecksumButNotIpId) {
  Bytes a = test::TcpIp({"10.0.1.5", "10.0.2.9", 1, 2, Tins::TCP::ACK, 5, 10, 100});
  Bytes b = a;
  b[20 + 16] ^= 0xFF;  // TCP checksum, as a sender's capture may show it before offload
  b[8] = 1;            // TTL, as a router changes it
  Bytes c = test::TcpIp({"10.0.1.5", "10.0.2.9", 1, 2, Tins::TCP::ACK, 5, 10, 101});
  ParsedPacket pa, pb, pc;
  ASSERT_EQ(ParsePacket(kLinkRaw, a, pa), ParseResult::kOk);
  ASSERT_EQ(ParsePacket(kLinkRaw, b, pb), ParseResult::kOk);
  ASSERT_EQ(ParsePacket(kLinkRaw, c, pc), ParseResult::kOk);
  EXPECT_EQ(pa.signature, pb.signature);
  EXPECT_NE(pa.signature, pc.signature);
}

}  // namespace
}  // namespace capd::paths
