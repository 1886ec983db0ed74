// Streams that ask for the same packets share one capture in capd (agent/stream/capture_hub.h):
// one kernel ring however many clients watch the same traffic, while each client still gets a
// complete file of its own, its own count, and statistics that start when it joined.

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/pcapng_file.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;
constexpr uint64_t kDefaultRingBytes = 32u << 20;
constexpr uint16_t kIsbIfRecv = 4;

class SharedCaptureTest : public AgentTest {
 protected:
  // Waits until capd has `count` rings mapped (a capture closes asynchronously after its last
  // client leaves).
  bool WaitForRings(size_t count) {
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (AgentCaptureRings().count != count) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  void Stop(Subprocess& capctl) {
    ASSERT_TRUE(capctl.Signal(SIGINT));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(capctl, 0));
  }

  // isb_ifrecv of the file's last statistics block for the capture interface.
  static std::optional<uint64_t> ReceivedByFilter(const std::filesystem::path& path) {
    auto file = ReadPcapng(path);
    EXPECT_TRUE(file.ok()) << path << ": " << file.status().message();
    if (!file.ok()) return std::nullopt;
    for (auto it = file->statistics.rbegin(); it != file->statistics.rend(); ++it) {
      if (it->interface_id != 0) continue;
      auto found = it->counters.find(kIsbIfRecv);
      if (found != it->counters.end()) return found->second;
    }
    return std::nullopt;
  }
};

// Two clients with the same interface and filter: capd opens one ring for both (a third client
// with another filter gets its own), both files hold every packet with the same bytes and the
// same kernel timestamps, and the ring is gone once the last client has left.
TEST_F(SharedCaptureTest, SameRequestsShareOneRing) {
  constexpr int kCount = 40;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> a;
  std::unique_ptr<Subprocess> b;
  std::unique_ptr<Subprocess> other;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("a", {"-i", kIface, "-f", "udp", "-w", File("a.pcapng").string()}, &a));
  CaptureRings rings = AgentCaptureRings();
  EXPECT_EQ(rings.count, 1u);
  EXPECT_EQ(rings.bytes, kDefaultRingBytes);
  ASSERT_NO_FATAL_FAILURE(
      StartStream("b", {"-i", kIface, "-f", "udp", "-w", File("b.pcapng").string()}, &b));
  rings = AgentCaptureRings();
  EXPECT_EQ(rings.count, 1u) << "the second client of the same packets opened its own ring";
  EXPECT_EQ(rings.bytes, kDefaultRingBytes);
  EXPECT_TRUE(agent().WaitForStderr("2 stream(s) on this capture", kStartTimeout))
      << agent().Describe();
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "other", {"-i", kIface, "-f", "udp port 7001", "-w", File("other.pcapng").string()}, &other));
  EXPECT_EQ(AgentCaptureRings().count, 2u) << "another filter is another capture";

  const auto payloads = MakePayloads(kCount, "shared");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  EXPECT_TRUE(WaitForPackets(File("a.pcapng"), kCount));
  EXPECT_TRUE(WaitForPackets(File("b.pcapng"), kCount));
  ASSERT_NO_FATAL_FAILURE(Stop(*a));
  ASSERT_NO_FATAL_FAILURE(Stop(*b));
  ASSERT_NO_FATAL_FAILURE(Stop(*other));
  EXPECT_TRUE(WaitForRings(0)) << "capd still maps " << AgentCaptureRings().count
                               << " ring(s) after every client left";

  const auto in_a = ReadOrFail(File("a.pcapng"));
  const auto in_b = ReadOrFail(File("b.pcapng"));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(in_a, payloads, kPort));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(in_b, payloads, kPort));
  for (size_t i = 0; i < in_a.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(in_a[i].ts_ns, in_b[i].ts_ns);
    EXPECT_TRUE(in_a[i].bytes == in_b[i].bytes);
  }
  EXPECT_TRUE(ReadOrFail(File("other.pcapng")).empty());
  ExpectCapinfos(File("b.pcapng"), kCount);
}

// A client that joins a running capture gets a valid file of its own (its own header and
// interface) with the packets from its join on, stops at its own -c while the first client goes
// on, and its statistics count from its join: the kernel's count of packets that passed the
// filter before it joined is not in its isb_ifrecv.
TEST_F(SharedCaptureTest, LateJoinerCountsFromItsJoin) {
  constexpr int kEarly = 20;
  constexpr int kLate = 30;
  constexpr int kLateCount = 15;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd peer = PeerSocket();
  std::unique_ptr<Subprocess> first;
  std::unique_ptr<Subprocess> late;
  // Both end by their count, so both files get the agent's final statistics (a client stopped
  // by SIGINT keeps the last periodic ones).
  ASSERT_NO_FATAL_FAILURE(
      StartStream("first",
                  {"-i", kIface, "-f", "udp", "-c", std::to_string(kEarly + kLate), "-w",
                   File("first.pcapng").string()},
                  &first));
  const auto early = MakePayloads(kEarly, "early");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, early));
  ASSERT_TRUE(WaitForPackets(File("first.pcapng"), kEarly)) << first->Describe();

  ASSERT_NO_FATAL_FAILURE(StartStream("late",
                                      {"-i", kIface, "-f", "udp", "-c", std::to_string(kLateCount),
                                       "-w", File("late.pcapng").string()},
                                      &late));
  EXPECT_EQ(AgentCaptureRings().count, 1u);
  const auto later = MakePayloads(kLate, "late");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, later));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*late, 0));
  EXPECT_NE(SummaryLine(late->Stderr()).find(std::to_string(kLateCount) + " packets written"),
            std::string::npos)
      << late->Describe();
  const std::vector<std::string> first_of_late(later.begin(), later.begin() + kLateCount);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadOrFail(File("late.pcapng")), first_of_late, kPort));
  ExpectCapinfos(File("late.pcapng"), kLateCount);
  const auto late_received = ReceivedByFilter(File("late.pcapng"));
  ASSERT_TRUE(late_received.has_value()) << "no isb_ifrecv in late.pcapng";
  EXPECT_GE(*late_received, static_cast<uint64_t>(kLateCount));
  EXPECT_LE(*late_received, static_cast<uint64_t>(kLate)) << "counts packets from before its join";

  // The first client was not ended by the other's count; it ends by its own.
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*first, 0));
  std::vector<std::string> all = early;
  all.insert(all.end(), later.begin(), later.end());
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadOrFail(File("first.pcapng")), all, kPort));
  EXPECT_EQ(ReceivedByFilter(File("first.pcapng")), static_cast<uint64_t>(kEarly + kLate));
}

}  // namespace
}  // namespace capd::test
