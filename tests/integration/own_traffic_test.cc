// The agent never captures its own control traffic: a capture on lo, while the stream itself
// runs over lo, holds no packet of TCP port 50051 (and the test checks that such packets did
// cross lo meanwhile, so the assertion is not vacuous).

#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

// Parameter: the user filter. Besides none, one that would match the agent's packets and ends in
// "vlan", which shifts libpcap's offsets for every test after it: the exclusion must not come
// after the user's filter.
class OwnTrafficTest : public AgentTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(OwnTrafficTest, CaptureOnLoopbackExcludesTheAgentsPort) {
  constexpr int kCount = 30;
  constexpr uint16_t kPort = 7000;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket("127.0.0.1", kPort);
  const UniqueFd sender = AgentSocket();

  // Witness: the stream's gRPC traffic really crosses lo while capctl captures there.
  std::unique_ptr<Subprocess> witness;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("witness", "lo", File("witness.pcap"),
                                       {"tcp port " + std::to_string(kAgentPort)}, &witness));
  std::vector<std::string> args = {"-i", "lo", "--duration",
                                   "2",  "-w", File("out.pcapng").string()};
  if (!GetParam().empty()) args.insert(args.end(), {"-f", GetParam()});
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl", args, &capctl));
  const auto payloads = MakePayloads(kCount, "lo");
  ASSERT_NO_FATAL_FAILURE(SendAll(sender.get(), "127.0.0.1", kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  witness->Signal(SIGINT);
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*witness, 0));

  const auto packets = ReadOrFail(File("out.pcapng"));
  std::vector<std::string> seen;
  size_t own = 0;
  for (const auto& packet : packets) {
    auto is_own = MatchesFilter(packet, "tcp port " + std::to_string(kAgentPort));
    ASSERT_TRUE(is_own.ok()) << is_own.status().message();
    if (*is_own) ++own;
    uint16_t port = 0;
    const auto payload = UdpPayload(packet, &port);
    if (payload && port == kPort) seen.emplace_back(*payload);
  }
  EXPECT_EQ(own, 0u) << "the capture holds the agent's own TCP port " << kAgentPort;
  EXPECT_EQ(seen, payloads) << "the UDP datagrams sent over lo are missing or out of order";

  // Independently, with Wireshark's dissectors.
  const CommandResult tshark = RunCommand({"tshark", "-n", "-r", File("out.pcapng").string(), "-Y",
                                           "tcp.port == " + std::to_string(kAgentPort)});
  EXPECT_TRUE(tshark.status.Exited(0)) << tshark.output;
  EXPECT_EQ(tshark.output.find("TCP"), std::string::npos) << tshark.output;

  const auto witnessed = ReadOrFail(File("witness.pcap"));
  EXPECT_FALSE(witnessed.empty()) << "no gRPC traffic crossed lo: the test proves nothing";
}

INSTANTIATE_TEST_SUITE_P(Filters, OwnTrafficTest, ::testing::Values("", "tcp or udp or vlan"),
                         [](const auto& info) {
                           return std::string(info.param.empty() ? "NoFilter" : "TcpOrUdpOrVlan");
                         });

}  // namespace
}  // namespace capd::test
