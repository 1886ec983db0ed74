// Regression inputs for tests/fuzz/filter_fuzzer.cc, as byte arrays, with the fuzzer's property:
// whenever ComposeCaptureFilter accepts a user filter, the composed filter rejects the agent's
// own TCP traffic (port 50051, both directions, IPv4 and IPv6). A crash input of the fuzzer
// goes here.
//
// The first 10-minute run (libpcap 1.10.3) found no input breaking the property. The inputs
// below are the edges it kept exploring: NUL bytes (the text reaches libpcap as a C string, so
// a NUL cuts it; the cut composition must not compile into something that lets traffic
// through), bytes that are not UTF-8, parentheses, and the keywords that move libpcap's offsets
// for the tests after them (vlan, mpls, pppoes, geneve).

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "filters/bpf_filter.h"

namespace capd::filters {
namespace {

constexpr uint16_t kAgentPort = 50051;
constexpr int kSnaplen = 262144;

// Ethernet / IPv4 10.0.0.1 -> 10.0.0.2 / TCP 40000 -> 50051, ACK|PSH, 8 bytes of payload.
constexpr uint8_t kTcp4ToAgent[] = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x30, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x9c, 0x40, 0xc3, 0x83, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x18,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
constexpr size_t kTcp4PortsOffset = 34;

// Ethernet / IPv6 fd00::1 -> fd00::2 / TCP 40000 -> 50051, ACK|PSH, 8 bytes of payload.
constexpr uint8_t kTcp6ToAgent[] = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
    0x60, 0x00, 0x00, 0x00, 0x00, 0x1c, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x9c, 0x40,
    0xc3, 0x83, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x50, 0x18, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
constexpr size_t kTcp6PortsOffset = 54;

// The same segment the other way: the agent's port as the source.
std::vector<uint8_t> Reversed(std::vector<uint8_t> frame, size_t ports_offset) {
  for (size_t i = 0; i < 2; ++i) std::swap(frame[ports_offset + i], frame[ports_offset + 2 + i]);
  return frame;
}

std::vector<std::vector<uint8_t>> AgentFrames() {
  const std::vector<uint8_t> v4(std::begin(kTcp4ToAgent), std::end(kTcp4ToAgent));
  const std::vector<uint8_t> v6(std::begin(kTcp6ToAgent), std::end(kTcp6ToAgent));
  return {v4, Reversed(v4, kTcp4PortsOffset), v6, Reversed(v6, kTcp6PortsOffset)};
}

// The fuzzer's property for one input; returns whether composition accepted it.
bool AcceptedAndSafe(std::string_view user_filter) {
  auto composed = ComposeCaptureFilter(
      user_filter, OwnTraffic{.tcp_ports = {kAgentPort}, .carriers = {}}, DLT_EN10MB, kSnaplen);
  if (!composed.ok()) {
    EXPECT_EQ(composed.status().code(), StatusCode::kInvalidArgument);
    return false;
  }
  EXPECT_TRUE(composed->excludes_own_traffic);
  auto compiled = Compile(composed->expression, DLT_EN10MB, kSnaplen);
  EXPECT_TRUE(compiled.ok()) << compiled.status().message();
  if (!compiled.ok()) return true;
  for (const std::vector<uint8_t>& frame : AgentFrames()) {
    const auto size = static_cast<uint32_t>(frame.size());
    EXPECT_FALSE(compiled->Matches(frame.data(), size, size))
        << "own traffic passes '" << composed->expression << "'";
  }
  return true;
}

std::string_view Text(const auto& bytes) {
  return {reinterpret_cast<const char*>(bytes), sizeof(bytes)};
}

TEST(FilterFuzzRegressionTest, FramesAreTheAgentsTraffic) {
  // Guards the fixtures themselves: without the exclusion, a plain "tcp port" filter sees them.
  auto compiled = Compile("tcp port 50051", DLT_EN10MB, kSnaplen);
  ASSERT_TRUE(compiled.ok());
  for (const std::vector<uint8_t>& frame : AgentFrames()) {
    const auto size = static_cast<uint32_t>(frame.size());
    EXPECT_TRUE(compiled->Matches(frame.data(), size, size));
  }
}

TEST(FilterFuzzRegressionTest, NulBytesCannotCutTheCompositionOpen) {
  // "tcp\0) or (tcp port 50051": libpcap sees "tcp" alone, but the composition is cut too.
  constexpr uint8_t kCloseAfterNul[] = {'t', 'c', 'p', 0,   ')', ' ', 'o', 'r', ' ', '(', 't', 'c',
                                        'p', ' ', 'p', 'o', 'r', 't', ' ', '5', '0', '0', '5', '1'};
  constexpr uint8_t kOnlyNul[] = {0};
  constexpr uint8_t kTrailingNul[] = {'u', 'd', 'p', 0};
  constexpr uint8_t kOrNul[] = {'t', 'c', 'p', ' ', 'o', 'r', ' ', 0};
  EXPECT_FALSE(AcceptedAndSafe(Text(kCloseAfterNul)));
  EXPECT_FALSE(AcceptedAndSafe(Text(kOnlyNul)));
  EXPECT_FALSE(AcceptedAndSafe(Text(kTrailingNul)));
  EXPECT_FALSE(AcceptedAndSafe(Text(kOrNul)));
}

TEST(FilterFuzzRegressionTest, BytesThatAreNotUtf8AreRefused) {
  constexpr uint8_t kHighBytes[] = {'t', 'c', 'p', ' ', 0xff, 0xfe, 0x80};
  EXPECT_FALSE(AcceptedAndSafe(Text(kHighBytes)));
}

TEST(FilterFuzzRegressionTest, OffsetShiftingKeywordsKeepTheAgentOut) {
  for (std::string_view filter :
       {"pppoes", "pppoes 0 and tcp", "mpls and tcp port 0051", "vlan and tcp port 560",
        "vlan and  port 5", "geneve and tcp port 80", "pppoes 4 and geneve 051",
        "ip6[0]== 4 and geneve  4 and geneve 0", "vlan and vlan and tcp port 50051",
        "tcp port 50051 or vlan"}) {
    SCOPED_TRACE(filter);
    EXPECT_TRUE(AcceptedAndSafe(filter));
  }
}

TEST(FilterFuzzRegressionTest, FilterForOnlyTheAgentsTrafficIsRefused) {
  // Composed with the exclusion, these select nothing: libpcap's optimiser reduces the program
  // to "reject" and pcap_compile fails with "expression rejects all packets".
  for (std::string_view filter : {"tcp port 50051", "not (not tcp port 50051)",
                                  "((((tcp port 50051))))", "tcp src port 50051"}) {
    SCOPED_TRACE(filter);
    EXPECT_FALSE(AcceptedAndSafe(filter));
  }
}

}  // namespace
}  // namespace capd::filters
