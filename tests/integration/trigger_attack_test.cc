// Triggers attacked by a hostile client, on capd as deployed (--user nobody) and as root.
//
// A trigger filter is compiled for the capture its stream joins. A client that sends a start-on
// filter costing the whole compile budget (1.5 s) must not stall the other streams on that
// capture: they keep receiving while it compiles, and it is refused naming the budget.

#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/costly_filter_fixture.h"
#include "tests/support/agent_client.h"

namespace capd::test {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7011;
constexpr auto kCallTimeout = std::chrono::seconds(30);

class TriggerAttackTest : public CostlyFilterTest {};

// Stream A runs on `udp port 7011`; client B joins the same capture (same filter) with a start-on
// filter that takes the whole compile budget. While B's compile child runs, a packet sent to A
// reaches A's file: the capture thread is not waiting for B (before, A saw nothing for up to
// 1.5 s, until B was refused). B is refused naming the budget; A keeps every packet.
TEST_P(TriggerAttackTest, CostlyTriggerFilterDoesNotStallTheCaptureItJoins) {
  ASSERT_NO_FATAL_FAILURE(StartAgentAsDeployed());
  const pid_t helper = FiltersHelper();
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd peer = PeerSocket();
  const std::string filter = "udp port " + std::to_string(kPort);
  std::unique_ptr<Subprocess> ordinary;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "ordinary", {"-i", kIface, "-f", filter, "-w", File("a.pcapng").string()}, &ordinary));
  std::vector<std::string> payloads = MakePayloads(5, "before");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_TRUE(WaitForPackets(File("a.pcapng"), payloads.size()));

  std::atomic<bool> answered{false};
  auto costly = std::async(std::launch::async, [this, &answered, &filter] {
    v1::StreamRequest request;
    request.set_interface(kIface);
    request.set_filter(filter);
    request.set_start_on(OptimizerHeavyFilter());
    StreamResult r = RunStream(channel_, request, StreamUntil::kEnd, kCallTimeout);
    answered = true;
    return r;
  });
  // B's compile is under way once capd-filters has a child for it (hang guard: 10 s).
  const auto guard = Clock::now() + std::chrono::seconds(10);
  while (ChildrenOf(helper).empty() && !answered && Clock::now() < guard) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_FALSE(answered) << "B was answered before its compile was seen";
  ASSERT_FALSE(ChildrenOf(helper).empty()) << "no compile child seen within 10 s";
  auto during = MakePayloads(3, "during");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, during));
  payloads.insert(payloads.end(), during.begin(), during.end());
  EXPECT_TRUE(WaitForPackets(File("a.pcapng"), payloads.size()));
  const bool compile_still_running = !answered;
  const StreamResult result = costly.get();
  EXPECT_TRUE(compile_still_running)
      << "A got the packets only after B's costly trigger was refused: the capture waited for it";
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << Describe(result.status);
  EXPECT_NE(result.status.error_message().find("start-on filter too costly to compile"),
            std::string::npos)
      << Describe(result.status);

  auto after = MakePayloads(5, "after");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, after));
  payloads.insert(payloads.end(), after.begin(), after.end());
  EXPECT_TRUE(WaitForPackets(File("a.pcapng"), payloads.size()));
  ASSERT_TRUE(ordinary->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*ordinary, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadOrFail(File("a.pcapng")), payloads, kPort));
  ExpectCapinfos(File("a.pcapng"), payloads.size());
  ExpectAgentAlive();
}

INSTANTIATE_TEST_SUITE_P(AsDeployedAndAsRoot, TriggerAttackTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "UserNobody" : "Root";
                         });

}  // namespace
}  // namespace capd::test
