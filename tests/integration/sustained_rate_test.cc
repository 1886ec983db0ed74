// Busy links of large packets for several seconds, with capd as root and as deployed
// (--user nobody): the kernel ring never overflows and every packet sent reaches the file.
//
// Why these tests: a busy link's batch waits to fill (agent/stream/hold_policy.h), and while it
// waits the ring is not watched, only read at the next check. A check that comes later than the
// ring takes to fill loses packets in the kernel ("dropped by kernel" in capctl's summary), the
// one loss a hold must never cause. The dangerous moment is a burst after a quiet spell: the
// loop's sleep then includes the quiet time, and a rate measured over it looks far lower than the
// burst's. 1500 B packets fill the 32 MiB ring fastest (~18,000 of them).
//
// The senders only ever wait, never hurry, so on a loaded machine they may be slower; the
// assertions are on counts: nothing dropped, every packet in the file once, in order, read back
// with libpcap and capinfos.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7300;
// A 1500 B IP packet: 20 B IPv4 and 8 B UDP headers, then this payload.
constexpr size_t kPayloadBytes = 1500 - 20 - 8;

// "rate-<i>-" then filler up to kPayloadBytes.
std::string RatePayload(int index) {
  std::string payload = "rate-" + std::to_string(index) + "-";
  payload.resize(kPayloadBytes, static_cast<char>('a' + index % 26));
  return payload;
}

class SustainedRateTest : public HardenedAgentTest, public ::testing::WithParamInterface<bool> {
 protected:
  // Starts capd (with `agent_flags`, as nobody when the parameter says so) and `capctl stream -c
  // packets`, calls `send(peer_fd)`, which must send RatePayload(0 .. packets - 1) in order to
  // kDst:kPort, then expects no kernel drop and every packet in the file.
  void CaptureAll(int packets, const std::function<void(int)>& send,
                  const std::vector<std::string>& agent_flags = {}) {
    std::vector<std::string> flags = agent_flags;
    flags.push_back("--no-metadata");
    if (GetParam()) flags.insert(flags.end(), {"--user", "nobody"});
    ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
    const UniqueFd sink = AgentSocket(kDst, kPort);
    std::unique_ptr<Subprocess> stream;
    ASSERT_NO_FATAL_FAILURE(
        StartStream("stream",
                    {"-i", kIface, "-f", "udp port " + std::to_string(kPort), "-c",
                     std::to_string(packets), "-w", File("rate.pcapng").string()},
                    &stream));
    const UniqueFd peer = PeerSocket();
    const auto start = std::chrono::steady_clock::now();
    ASSERT_NO_FATAL_FAILURE(send(peer.get()));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("sent %d packets of 1500 B in %.2f s\n", packets, seconds);

    // capctl ends at `packets`. Packets the ring lost never arrive: top-ups (200 at a time)
    // then make up the count, so that the test ends and reports the loss instead of waiting.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (int topup = 0; stream->Running() && std::chrono::steady_clock::now() < deadline;) {
      for (int i = 0; i < 200; ++i) {
        ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, "topup-" + std::to_string(topup++)).ok());
      }
      stream->WaitFor(std::chrono::milliseconds(5));
    }
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*stream, 0, std::chrono::seconds(1)));

    const std::string summary = SummaryLine(stream->Stderr());
    std::printf("%s\n", summary.c_str());
    std::smatch m;
    ASSERT_TRUE(std::regex_search(summary, m, std::regex(R"(dropped: (\d+) by kernel)")))
        << summary;
    EXPECT_EQ(std::stoull(m[1]), 0u) << summary;

    // Every packet, once and in order, complete.
    const auto captured = ReadOrFail(File("rate.pcapng"));
    constexpr size_t kHeaders = 14 + 20 + 8;
    int expected = 0;
    for (size_t i = 0; i < captured.size(); ++i) {
      const std::string& bytes = captured[i].bytes;
      ASSERT_GE(bytes.size(), kHeaders) << i;
      if (bytes.compare(kHeaders, 6, "topup-") == 0) continue;
      ASSERT_EQ(captured[i].caplen, captured[i].len) << "packet " << i;
      ASSERT_TRUE(bytes.compare(kHeaders, std::string::npos, RatePayload(expected)) == 0)
          << "packet " << i << " is not rate-" << expected << " (the ones before it were lost)";
      ++expected;
    }
    EXPECT_EQ(expected, packets);
    ExpectCapinfos(File("rate.pcapng"), captured.size());
  }
};

TEST_P(SustainedRateTest, FiftyThousandLargePacketsASecondAreAllCaptured) {
  // 250,000 in 5 s: the ring (32 MiB) fills ~12 times over. Packet i leaves no earlier than
  // i / kPerSecond after the first (checked every kPacing packets: the sender sleeps ~1 ms at a
  // time).
  constexpr int kPackets = 250'000;
  constexpr int kPerSecond = 50'000;
  constexpr int kPacing = kPerSecond / 1000;
  CaptureAll(kPackets, [](int peer) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kPackets; ++i) {
      if (i % kPacing == 0) {
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(int64_t{i} * 1'000'000 / kPerSecond));
      }
      ASSERT_TRUE(SendUdp(peer, kDst, kPort, RatePayload(i)).ok()) << "packet " << i;
    }
  });
}

TEST_P(SustainedRateTest, BurstsOfLargePacketsAfterAQuietLinkAreAllCaptured) {
  // Eight times: the link quiet for 300 ms, then 25,000 packets (37.5 MB, more than the ring
  // holds) as fast as the sender goes. The first drain of each burst comes after the quiet
  // spell; the ring must be read again before the burst fills it (a check kMaxHold = 100 ms
  // after the first drain loses packets from ~180k packets/s on).
  constexpr int kBursts = 8;
  constexpr int kBurst = 25'000;
  auto bursts = [](int peer) {
    for (int b = 0; b < kBursts; ++b) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      const auto start = std::chrono::steady_clock::now();
      for (int i = b * kBurst; i < (b + 1) * kBurst; ++i) {
        ASSERT_TRUE(SendUdp(peer, kDst, kPort, RatePayload(i)).ok()) << "packet " << i;
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      std::printf("burst %d: %d packets in %.0f ms (%.0f/s)\n", b, kBurst, ms, kBurst * 1e3 / ms);
    }
  };
  CaptureAll(kBursts * kBurst, bursts);
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsDeployed, SustainedRateTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "UserNobody" : "Root"; });

}  // namespace
}  // namespace capd::test
