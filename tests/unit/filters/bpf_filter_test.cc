#include "filters/bpf_filter.h"

#include <gtest/gtest.h>
#include <tins/tins.h>

#include <vector>

namespace capd::filters {
namespace {

constexpr uint16_t kAgentPort = 50051;

std::vector<uint8_t> TcpFrame(uint16_t sport, uint16_t dport) {
  Tins::EthernetII frame = Tins::EthernetII("02:00:00:00:00:02", "02:00:00:00:00:01") /
                           Tins::IP("10.0.0.2", "10.0.0.1") / Tins::TCP(dport, sport);
  return frame.serialize();
}

std::vector<uint8_t> UdpFrame(uint16_t dport) {
  Tins::EthernetII frame = Tins::EthernetII() / Tins::IP("10.0.0.2", "10.0.0.1") /
                           Tins::UDP(dport, 40000) / Tins::RawPDU("payload");
  return frame.serialize();
}

std::vector<uint8_t> Tcp6Frame(uint16_t dport) {
  Tins::EthernetII frame = Tins::EthernetII() / Tins::IPv6("::1", "::1") / Tins::TCP(dport, 40000);
  return frame.serialize();
}

bool Passes(const ComposedFilter& composed, const std::vector<uint8_t>& frame) {
  auto compiled = Compile(composed.expression, DLT_EN10MB, 262144);
  EXPECT_TRUE(compiled.ok()) << compiled.status().message();
  const auto size = static_cast<uint32_t>(frame.size());
  return compiled->Matches(frame.data(), size, size);
}

TEST(CompileTest, RefusesBadFilterWithLibpcapMessageNamingTheFilter) {
  auto compiled = Compile("tcp port", DLT_EN10MB, 262144);
  ASSERT_FALSE(compiled.ok());
  EXPECT_EQ(compiled.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(compiled.status().message().find("'tcp port'"), std::string::npos);
  EXPECT_NE(compiled.status().message().find("syntax error"), std::string::npos)
      << compiled.status().message();
}

TEST(CompileTest, AcceptsValidFilterAndMatchesPackets) {
  auto compiled = Compile("udp port 53", DLT_EN10MB, 262144);
  ASSERT_TRUE(compiled.ok());
  EXPECT_GT(compiled->instruction_count(), 0u);
  auto dns = UdpFrame(53);
  auto other = UdpFrame(54);
  EXPECT_TRUE(compiled->Matches(dns.data(), dns.size(), dns.size()));
  EXPECT_FALSE(compiled->Matches(other.data(), other.size(), other.size()));
}

TEST(ComposeTest, ExcludesAgentTrafficInBothDirectionsAndIPv6) {
  auto composed = ComposeCaptureFilter("", OwnTraffic{{kAgentPort}}, DLT_EN10MB, 262144);
  ASSERT_TRUE(composed.ok()) << composed.status().message();
  EXPECT_TRUE(composed->excludes_own_traffic);
  EXPECT_FALSE(Passes(*composed, TcpFrame(40000, kAgentPort)));
  EXPECT_FALSE(Passes(*composed, TcpFrame(kAgentPort, 40000)));
  EXPECT_FALSE(Passes(*composed, Tcp6Frame(kAgentPort)));
  EXPECT_TRUE(Passes(*composed, TcpFrame(40000, 443)));
  EXPECT_TRUE(Passes(*composed, UdpFrame(kAgentPort)));  // only TCP is the agent's
}

TEST(ComposeTest, KeepsUserFilterSemantics) {
  auto composed = ComposeCaptureFilter("tcp", OwnTraffic{{kAgentPort}}, DLT_EN10MB, 262144);
  ASSERT_TRUE(composed.ok());
  EXPECT_TRUE(Passes(*composed, TcpFrame(40000, 22)));
  EXPECT_FALSE(Passes(*composed, UdpFrame(22)));
  EXPECT_FALSE(Passes(*composed, TcpFrame(40000, kAgentPort)));
}

TEST(ComposeTest, UserFilterCannotEscapeItsParentheses) {
  // Alone this does not compile, so it can never turn "and (...)" into "... or (tcp".
  auto composed =
      ComposeCaptureFilter("udp) or (tcp", OwnTraffic{{kAgentPort}}, DLT_EN10MB, 262144);
  ASSERT_FALSE(composed.ok());
  EXPECT_EQ(composed.status().code(), StatusCode::kInvalidArgument);
}

TEST(ComposeTest, UserOrCannotLetAgentTrafficThrough) {
  // "tcp or udp" matches the agent's TCP packets; the exclusion must still win.
  auto composed = ComposeCaptureFilter("tcp or udp", OwnTraffic{{kAgentPort}}, DLT_EN10MB, 262144);
  ASSERT_TRUE(composed.ok());
  EXPECT_FALSE(Passes(*composed, TcpFrame(40000, kAgentPort)));
  EXPECT_TRUE(Passes(*composed, TcpFrame(40000, 80)));
}

TEST(ComposeTest, VlanKeywordDoesNotShiftTheExclusion) {
  // libpcap's "vlan" shifts the offsets of every later test; the exclusion comes first.
  auto composed = ComposeCaptureFilter("tcp or vlan", OwnTraffic{{kAgentPort}}, DLT_EN10MB, 262144);
  ASSERT_TRUE(composed.ok()) << composed.status().message();
  EXPECT_FALSE(Passes(*composed, TcpFrame(40000, kAgentPort)));
  EXPECT_TRUE(Passes(*composed, TcpFrame(40000, 80)));
}

TEST(ComposeTest, LinkTypeWithoutIpHasNothingToExclude) {
  auto composed = ComposeCaptureFilter("", OwnTraffic{{kAgentPort}}, DLT_USB_LINUX, 262144);
  ASSERT_TRUE(composed.ok()) << composed.status().message();
  EXPECT_FALSE(composed->excludes_own_traffic);
  EXPECT_EQ(composed->expression, "");
}

TEST(ComposeTest, FilterIsValidatedAgainstTheCaptureLinkType) {
  // 802.11 keywords do not compile on Ethernet: refused for that link type only.
  EXPECT_FALSE(ComposeCaptureFilter("wlan type data", {}, DLT_EN10MB, 262144).ok());
  EXPECT_TRUE(ComposeCaptureFilter("wlan type data", {}, DLT_IEEE802_11_RADIO, 262144).ok());
}

TEST(PrecheckTest, NeverStricterThanTheAgent) {
  EXPECT_TRUE(PrecheckFilter("").ok());
  EXPECT_TRUE(PrecheckFilter("wlan type data").ok());
  EXPECT_TRUE(PrecheckFilter("host 10.0.0.1 and not port 22").ok());
  const Status bad = PrecheckFilter("not a filter");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'not a filter'"), std::string::npos);
}

// capctl's own check of a long filter: 1,200 `port N or` terms took it 7.5 minutes of a core
// (libpcap's cost grows faster than the text). Past kPrecheckedFilterBytes the agent, which
// compiles within a budget, judges; below, a bad filter is still refused here.
TEST(PrecheckTest, LongFiltersAreLeftToTheAgent) {
  std::string costly = "port 1";
  for (int port = 2; port <= 1200; ++port) costly += " or port " + std::to_string(port);
  ASSERT_GT(costly.size(), kPrecheckedFilterBytes);
  EXPECT_TRUE(PrecheckFilter(costly).ok());
  std::string bad(kPrecheckedFilterBytes - 20, ' ');
  bad += "not a filter";
  EXPECT_EQ(PrecheckFilter(bad).code(), StatusCode::kInvalidArgument);
}

TEST(OwnTrafficTest, ExpressionListsEveryPort) {
  EXPECT_EQ(OwnTrafficExpression({}), "");
  EXPECT_EQ(OwnTrafficExpression({{50051, 50052}}), "tcp port 50051 or tcp port 50052");
}

}  // namespace
}  // namespace capd::filters
