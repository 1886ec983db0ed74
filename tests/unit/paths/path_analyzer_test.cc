// path_analyzer.h: every verdict on packets built with libtins and fed as two capture points
// ("client:veth0" near the client, "server:veth0" near the server) would see them, IPv4 and
// IPv6; the clock estimate; the grace window at the end of a capture; the flow cap.

#include "paths/path_analyzer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "paths/report_format.h"
#include "tests/unit/paths/packets.h"

namespace capd::paths {
namespace {

using test::Bytes;
using test::Tcp;

constexpr uint64_t kT0 = 1'700'000'000ULL * 1'000'000'000ULL;
constexpr uint64_t kMs = 1'000'000;
constexpr char kClient[] = "10.0.1.5";
constexpr char kServer[] = "10.0.2.9";
constexpr uint16_t kCport = 40000, kSport = 5432;
constexpr uint16_t kSyn = Tins::TCP::SYN, kAck = Tins::TCP::ACK, kRst = Tins::TCP::RST,
                   kPsh = Tins::TCP::PSH;

class PathAnalyzerTest : public ::testing::Test {
 protected:
  PathAnalyzerTest() {
    Make(Options{.max_flows = 100000,
                 .max_signatures = 100000,
                 .max_segments = 100000,
                 .grace_ns = 100 * kMs});
  }

  void Make(Options options) {
    analyzer_ = std::make_unique<PathAnalyzer>(options);
    c_ = analyzer_->DeclarePoint("client:veth0");
    s_ = analyzer_->DeclarePoint("server:veth0");
  }

  void Feed(uint32_t point, uint64_t ms, const Bytes& frame) {
    analyzer_->Add(point, kLinkEthernet, kT0 + ms * kMs, frame);
  }
  // The packet seen at `first` at `ms`, then at `second` 1 ms later.
  void Both(uint32_t first, uint32_t second, uint64_t ms, const Bytes& frame) {
    Feed(first, ms, frame);
    Feed(second, ms + 1, frame);
  }
  Bytes ToServer(uint16_t flags, uint32_t seq = 0, size_t payload = 0, uint16_t id = 0,
                 const std::string& client = kClient, const std::string& server = kServer) {
    return test::TcpFrame({client, server, kCport, kSport, flags, seq, payload, id});
  }
  Bytes ToClient(uint16_t flags, uint32_t seq = 0, size_t payload = 0, uint16_t id = 0,
                 const std::string& client = kClient, const std::string& server = kServer) {
    return test::TcpFrame({server, client, kSport, kCport, flags, seq, payload, id});
  }
  void Handshake(uint64_t ms = 0) {
    Both(c_, s_, ms, ToServer(kSyn, 100, 0, 1));
    Both(s_, c_, ms + 2, ToClient(kSyn | kAck, 500, 0, 2));
    Both(c_, s_, ms + 4, ToServer(kAck, 101, 0, 3));
  }
  // Traffic of another flow at both points at `ms`, so that the capture ends there.
  void EndAt(uint64_t ms) { Both(c_, s_, ms, test::UdpFrame("10.9.9.1", 1, "10.9.9.2", 2, 10)); }

  Report Finish() { return analyzer_->Finish(); }
  // The one flow with the server's port 5432 (or `port`).
  FlowReport Flow(const Report& r, uint16_t port = kSport) {
    for (const FlowReport& f : r.flows) {
      if (f.client_to_server.dst_port == port) return f;
    }
    ADD_FAILURE() << "no flow to port " << port << "\n" << FormatText(r);
    return {};
  }
  static std::vector<std::string> Kinds(const FlowReport& f) {
    std::vector<std::string> kinds;
    for (const Verdict& v : f.verdicts) kinds.push_back(v.kind);
    return kinds;
  }
  static std::string Text(const FlowReport& f, const std::string& kind) {
    for (const Verdict& v : f.verdicts) {
      if (v.kind == kind) return v.text;
    }
    return "";
  }

  std::unique_ptr<PathAnalyzer> analyzer_;
  uint32_t c_ = 0, s_ = 0;
};

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(PathAnalyzerTest, HandshakeCompleteSeenAtBoth) {
  Handshake();
  Both(c_, s_, 10, ToServer(kAck | kPsh, 101, 100, 4));
  Both(s_, c_, 12, ToClient(kAck | kPsh, 501, 200, 5));
  EndAt(5000);
  const Report r = Finish();
  const FlowReport f = Flow(r);
  EXPECT_FALSE(f.problem) << FormatText(r);
  EXPECT_THAT(Kinds(f), Contains("handshake_complete"));
  EXPECT_EQ(FormatAddress(f.client_to_server.src), kClient);
  EXPECT_EQ(f.client_to_server.src_port, kCport);
  ASSERT_EQ(f.points.size(), 2u);
  EXPECT_EQ(f.points[0].point, "client:veth0");  // first seen there
  EXPECT_EQ(f.points[0].dir[kToServer].syn, 1u);
  EXPECT_EQ(f.points[0].dir[kToClient].synack, 1u);
  EXPECT_EQ(f.points[1].dir[kToServer].data, 1u);
  EXPECT_EQ(f.points[1].dir[kToClient].data, 1u);
  EXPECT_EQ(f.points[1].dir[kToServer].packets, 3u);
}

TEST_F(PathAnalyzerTest, SynSeenAtClientNeverAtServer) {
  for (uint64_t ms : {0, 1000, 3000}) Feed(c_, ms, ToServer(kSyn, 100, 0, 1));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_TRUE(f.problem);
  EXPECT_EQ(Text(f, "syn_not_arrived"),
            "SYN seen at client:veth0, never at server:veth0 (no SYN-ACK anywhere)");
  EXPECT_FALSE(f.points[1].Seen());
}

TEST_F(PathAnalyzerTest, SynWithinTheGraceWindowIsNotCalledLost) {
  EndAt(10000);
  Feed(c_, 9950, ToServer(kSyn, 100, 0, 1));  // 50 ms before the end; grace 100 ms
  const FlowReport f = Flow(Finish());
  EXPECT_FALSE(f.problem);
  EXPECT_THAT(Kinds(f), Contains("in_flight"));
  EXPECT_THAT(Kinds(f), Not(Contains("syn_not_arrived")));
}

TEST_F(PathAnalyzerTest, SynReachedServerNoSynAck) {
  for (uint64_t ms : {0, 1000}) Both(c_, s_, ms, ToServer(kSyn, 100, 0, 1));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "no_synack"),
            "SYN reached client:veth0 and server:veth0, no SYN-ACK came back from the server "
            "10.0.2.9:5432");
}

TEST_F(PathAnalyzerTest, SynAckSeenAtServerNeverAtClient) {
  for (uint64_t ms : {0, 1000}) {
    Both(c_, s_, ms, ToServer(kSyn, 100, 0, 1));
    Feed(s_, ms + 2, ToClient(kSyn | kAck, 500, 0, 2));
  }
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "synack_not_returned"),
            "SYN-ACK seen at server:veth0, never at client:veth0 (lost on the way back to the "
            "client)");
}

TEST_F(PathAnalyzerTest, ConnectionRefusedByTheServer) {
  Both(c_, s_, 0, ToServer(kSyn, 100, 0, 1));
  Both(s_, c_, 2, ToClient(kRst | kAck, 0, 0, 0));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_TRUE(f.problem);
  EXPECT_EQ(Text(f, "reset_by_server"),
            "connection refused: the SYN was answered by RST from the server 10.0.2.9:5432, seen "
            "at client:veth0 and server:veth0");
}

TEST_F(PathAnalyzerTest, ResetByTheClient) {
  Handshake();
  Both(c_, s_, 10, ToServer(kRst | kAck, 101, 0, 4));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_THAT(Kinds(f), Contains("handshake_complete"));
  EXPECT_EQ(Text(f, "reset_by_client"),
            "reset by the client 10.0.1.5:40000, RST seen at client:veth0 and server:veth0");
}

TEST_F(PathAnalyzerTest, RequestWithoutReply) {
  Handshake();
  Both(c_, s_, 10, ToServer(kAck | kPsh, 101, 100, 4));
  Both(s_, c_, 12, ToClient(kAck, 501, 0, 5));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "request_without_reply"),
            "request without reply: client→server data seen at client:veth0 and server:veth0, no "
            "data came back from the server 10.0.2.9:5432");
}

TEST_F(PathAnalyzerTest, TcpReplySeenAtServerNeverAtClient) {
  Handshake();
  Both(c_, s_, 10, ToServer(kAck | kPsh, 101, 100, 4));
  for (uint64_t ms : {12, 300, 900}) Feed(s_, ms, ToClient(kAck | kPsh, 501, 200, 5));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "reply_lost"),
            "reply (server→client data) seen at server:veth0, never at client:veth0");
  EXPECT_THAT(Kinds(f), Not(Contains("request_without_reply")));
}

TEST_F(PathAnalyzerTest, UdpOneWay) {
  for (uint64_t ms : {0, 100}) Both(c_, s_, ms, test::UdpFrame(kClient, 3000, kServer, 53, 40, ms));
  EndAt(10000);
  const FlowReport f = Flow(Finish(), 53);
  EXPECT_EQ(Text(f, "one_way_udp"),
            "one-way UDP: client→server seen at client:veth0 and server:veth0, nothing came back "
            "from 10.0.2.9:53");
}

TEST_F(PathAnalyzerTest, UdpReplySeenAtServerNeverAtClient) {
  Both(c_, s_, 0, test::UdpFrame(kClient, 3000, kServer, 53, 40, 1));
  Feed(s_, 3, test::UdpFrame(kServer, 53, kClient, 3000, 80, 2));
  EndAt(10000);
  const FlowReport f = Flow(Finish(), 53);
  EXPECT_EQ(Text(f, "reply_lost"),
            "reply (server→client) seen at server:veth0, never at client:veth0");
  EXPECT_THAT(Kinds(f), Not(Contains("one_way_udp")));
}

TEST_F(PathAnalyzerTest, UdpBothWaysIsFine) {
  Both(c_, s_, 0, test::UdpFrame(kClient, 3000, kServer, 53, 40, 1));
  Both(s_, c_, 3, test::UdpFrame(kServer, 53, kClient, 3000, 80, 2));
  EndAt(10000);
  const FlowReport f = Flow(Finish(), 53);
  EXPECT_FALSE(f.problem);
  EXPECT_EQ(Text(f, "both_ways"), "both directions seen at client:veth0 and server:veth0");
}

TEST_F(PathAnalyzerTest, IcmpFragmentationNeededNamesTheMtuAndTheRouter) {
  Handshake();
  const Bytes big = test::TcpIp({kClient, kServer, kCport, kSport, kAck | kPsh, 101, 1448, 4});
  Feed(c_, 10, test::Ethernet(big));
  Feed(c_, 11, test::IcmpFragNeeded("10.0.3.1", kClient, big, 1400));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_TRUE(f.problem);
  EXPECT_EQ(Text(f, "icmp_frag_needed"),
            "ICMP fragmentation needed (MTU 1400) from 10.0.3.1 about client→server packets, seen "
            "at client:veth0");
  ASSERT_EQ(f.icmp.size(), 1u);
  EXPECT_EQ(f.icmp[0].mtu, 1400u);
}

TEST_F(PathAnalyzerTest, LargeSegmentsMissingAtTheServerHintAnMtuBlackHole) {
  Handshake();
  Both(c_, s_, 10, ToServer(kAck | kPsh, 101, 60, 4));
  // The same 1448-byte segment sent again and again: it never reaches the server.
  for (uint16_t i = 0; i < 4; ++i) Feed(c_, 20 + 200 * i, ToServer(kAck | kPsh, 161, 1448, 5 + i));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "mtu_black_hole"),
            "large segments client→server (1488 bytes, sent 4 times) seen at client:veth0, none "
            "larger than 100 bytes at server:veth0: an MTU black hole? (look for ICMP "
            "fragmentation needed being dropped)");
}

// With no room to remember segments, retransmissions go unnoticed: no black-hole verdict, never
// a wrong one.
TEST_F(PathAnalyzerTest, SegmentMemoryIsBounded) {
  Make(Options{.max_flows = 10, .max_signatures = 5, .max_segments = 0, .grace_ns = 100 * kMs});
  Handshake();
  Both(c_, s_, 10, ToServer(kAck | kPsh, 101, 60, 4));
  for (uint16_t i = 0; i < 4; ++i) Feed(c_, 20 + 200 * i, ToServer(kAck | kPsh, 161, 1448, 5 + i));
  EndAt(10000);
  const Report r = Finish();
  EXPECT_THAT(Kinds(Flow(r)), Not(Contains("mtu_black_hole")));
  EXPECT_GT(r.signatures_dropped, 0u);
  EXPECT_THAT(FormatSummary(r), HasSubstr("packets beyond the signature cap were not matched"));
}

TEST_F(PathAnalyzerTest, Ipv6SynSeenAtClientNeverAtServer) {
  for (uint64_t ms : {0, 1000}) Feed(c_, ms, ToServer(kSyn, 100, 0, 0, "fd00:1::5", "fd00:2::9"));
  EndAt(10000);
  const Report r = Finish();
  const FlowReport f = Flow(r);
  EXPECT_EQ(Text(f, "syn_not_arrived"),
            "SYN seen at client:veth0, never at server:veth0 (no SYN-ACK anywhere)");
  EXPECT_EQ(FormatEndpoint(f.client_to_server.src, kProtoTcp, f.client_to_server.src_port),
            "[fd00:1::5]:40000");
  EXPECT_THAT(FormatJsonLine(f), HasSubstr("\"client\":\"fd00:1::5\""));
}

TEST_F(PathAnalyzerTest, Ipv6PacketTooBig) {
  Handshake();
  const Bytes big = test::TcpIp({"fd00:1::5", "fd00:2::9", kCport, kSport, kAck | kPsh, 1, 1400});
  Feed(c_, 10, test::Ethernet(big));
  Feed(c_, 11, test::Icmpv6TooBig("fd00:3::1", "fd00:1::5", big, 1280));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(FormatAddress(f.client_to_server.src), "fd00:1::5");
  EXPECT_EQ(Text(f, "icmp_frag_needed"),
            "ICMPv6 packet too big (MTU 1280) from fd00:3::1 about client→server packets, seen at "
            "client:veth0");
}

TEST_F(PathAnalyzerTest, IcmpUnreachableNamesTheFlow) {
  const Bytes datagram = test::TcpIp({kClient, kServer, kCport, kSport, kSyn, 100, 0, 1});
  Feed(c_, 0, test::Ethernet(datagram));
  Feed(c_, 1, test::IcmpUnreachable("10.0.3.1", kClient, datagram, 1));
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(Text(f, "icmp_unreachable"),
            "ICMP destination unreachable (code 1) from 10.0.3.1 about client→server packets, seen "
            "at client:veth0");
}

// The server's clock is 5 ms ahead of the client's and packets take 1 ms between the points:
// client→server packets bound the offset from above (5 + 1), server→client ones from below
// (5 - 1).
TEST_F(PathAnalyzerTest, ClockOffsetBoundedFromBothDirections) {
  constexpr int64_t kOffset = 5, kTransit = 1;
  for (uint16_t i = 0; i < 5; ++i) {
    const uint64_t t = 100 + 10 * i;
    Feed(c_, t, ToServer(kAck | kPsh, 1000 + i, 10, 10 + i));
    Feed(s_, t + kTransit + kOffset, ToServer(kAck | kPsh, 1000 + i, 10, 10 + i));
    Feed(s_, t + kOffset + 3, ToClient(kAck, 2000 + i, 0, 20 + i));
    Feed(c_, t + 3 + kTransit, ToClient(kAck, 2000 + i, 0, 20 + i));
  }
  const Report r = Finish();
  ASSERT_EQ(r.clocks.size(), 1u);
  const ClockEstimate& c = r.clocks[0];
  EXPECT_EQ(c.a, "client:veth0");
  EXPECT_EQ(c.b, "server:veth0");
  EXPECT_EQ(c.matched, 10u);
  ASSERT_TRUE(c.lower_ns && c.upper_ns);
  EXPECT_EQ(*c.lower_ns, static_cast<int64_t>((kOffset - kTransit) * kMs));
  EXPECT_EQ(*c.upper_ns, static_cast<int64_t>((kOffset + kTransit) * kMs));
  EXPECT_EQ(
      DescribeClock(c),
      "clocks of client:veth0 and server:veth0 agree within 6.000 ms as far as packets show "
      "(server:veth0 minus client:veth0 between 4.000 and 6.000 ms, 10 packets seen at both)");
  // The grace window grows by the clock uncertainty.
  EXPECT_EQ(r.grace_ns, 100 * kMs + 6 * kMs);
}

TEST_F(PathAnalyzerTest, ClientIsTheSynSenderEvenWhenTheSynAckComesFirst) {
  Feed(s_, 0, ToClient(kSyn | kAck, 500, 0, 2));  // the server's capture started a little earlier
  Feed(c_, 5, ToServer(kSyn, 100, 0, 1));
  const FlowReport f = Flow(Finish());
  EXPECT_EQ(FormatAddress(f.client_to_server.src), kClient);
}

TEST_F(PathAnalyzerTest, FlowsBeyondTheCapAreCounted) {
  Make(Options{.max_flows = 2, .max_signatures = 100, .max_segments = 100, .grace_ns = 0});
  for (uint16_t i = 0; i < 5; ++i) Feed(c_, i, test::UdpFrame(kClient, 1000 + i, kServer, 53, 10));
  const Report r = Finish();
  EXPECT_EQ(r.flows.size(), 2u);
  EXPECT_EQ(r.packets_beyond_flow_cap, 3u);
  EXPECT_THAT(FormatText(r), HasSubstr("3 packets of flows beyond the flow cap were not analysed"));
}

TEST_F(PathAnalyzerTest, ProblemsComeFirst) {
  Handshake(0);                                                                   // fine
  Feed(c_, 1, test::TcpFrame({kClient, kServer, 40001, kSport, kSyn, 1, 0, 9}));  // lost SYN
  EndAt(10000);
  const Report r = Finish();
  ASSERT_GE(r.flows.size(), 2u);
  EXPECT_TRUE(r.flows[0].problem);
  EXPECT_EQ(r.flows[0].client_to_server.src_port, 40001);
}

// A capture point declared after a flow's packets (an agent whose interface block comes later in
// the file) saw nothing of the flow; found by the paths fuzzer (a read past the flow's arrays).
TEST_F(PathAnalyzerTest, PointDeclaredAfterTheFlowSawNothingOfIt) {
  Handshake();
  for (uint16_t i = 0; i < 3; ++i) Feed(c_, 20 + 200 * i, ToServer(kAck | kPsh, 161, 1448, 5 + i));
  analyzer_->DeclarePoint("late:eth1");
  EndAt(10000);
  const FlowReport f = Flow(Finish());
  ASSERT_EQ(f.points.size(), 3u);
  EXPECT_EQ(f.points[2].point, "late:eth1");
  EXPECT_FALSE(f.points[2].Seen());
}

TEST_F(PathAnalyzerTest, GarbageIsCountedNeverFatal) {
  std::mt19937 random(7);
  for (int i = 0; i < 20000; ++i) {
    Bytes frame(random() % 120);
    for (uint8_t& b : frame) b = static_cast<uint8_t>(random());
    if (frame.size() > 14 && i % 2 == 0) {  // make most of them look like IP
      frame[12] = 0x08;
      frame[13] = 0x00;
      frame[14] = 0x45;
    }
    const int links[] = {kLinkEthernet, kLinkRaw, kLinkLinuxSll, kLinkLinuxSll2, 0};
    analyzer_->Add(i % 2 ? c_ : s_, links[i % 5], kT0 + static_cast<uint64_t>(i), frame);
  }
  const Report r = Finish();
  EXPECT_EQ(r.packets, 20000u);
  (void)FormatText(r);
  for (const FlowReport& f : r.flows) (void)FormatJsonLine(f);
}

}  // namespace
}  // namespace capd::paths
