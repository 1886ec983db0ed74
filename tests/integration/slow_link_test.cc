// Back-pressure a user sees: capd (as deployed, --user nobody) in the agent namespace behind a
// veth shaped with tc to a low rate, capctl in the peer namespace reading the stream through it,
// and UDP traffic on the captured interface well above the link. The agent must drop (its queue
// for the client fills), and capctl must say so honestly: the summary names the agent's drops,
// says the link was the bottleneck and what would help, the live episode line comes once, and
// the counts add up against the agent's own statistics (the Interface Statistics Block). And the
// other cause, told apart: a fast link but a capctl whose output nobody reads for a while.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/pcapng_file.h"
#include "tests/support/test_pki.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr char kVethTarget[] = "10.200.0.1:50051";
constexpr uint16_t kPort = 7100;
// The link from the agent: 8 Mbit/s (1 MB/s) out of veth0, so that what is in flight when the
// flood stops (the agent's 1 MiB queue, gRPC's window, TCP's buffers: a few MB) drains in
// seconds.
constexpr char kLinkRate[] = "8mbit";
constexpr double kLinkBytesPerSecond = 1e6;
// The flood: 40,000 datagrams of 1000 bytes (1042-byte frames, ~42 MB), sent as fast as a socket
// goes: tens of times the link.
constexpr int kFloodPackets = 40'000;
constexpr size_t kPayloadBytes = 1000;

struct Summary {
  uint64_t written = 0, kernel = 0, interface = 0, agent = 0;
};
bool ParseSummary(const std::string& line, Summary& out) {
  std::smatch m;
  if (!std::regex_search(line, m,
                         std::regex(R"((\d+) packets written to .*; dropped: (\d+) by kernel, )"
                                    R"((\d+) by interface, (\d+) by agent)"))) {
    return false;
  }
  out = {std::stoull(m[1]), std::stoull(m[2]), std::stoull(m[3]), std::stoull(m[4])};
  return true;
}

size_t CountLines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

class SlowLinkTest : public HardenedAgentTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(HardenedAgentTest::SetUp());
    if (IsSkipped()) return;
    const auto dir = File("pki");
    std::filesystem::create_directory(dir);
    auto pki = MakeTestPki(dir);
    if (!pki.ok() && pki.status().code() == StatusCode::kFailedPrecondition) {
      GTEST_SKIP() << pki.status().message();
    }
    ASSERT_TRUE(pki.ok()) << pki.status().message();
    pki_ = std::move(pki).value();
  }
  TestPki pki_;
};

TEST_F(SlowLinkTest, AgentDropsOnASlowLinkAreNamedWithTheLinkAndAddUp) {
  // The agent's side of the link, shaped: the stream to capctl leaves through veth0's egress.
  // The flood arrives on veth0 (the peer's egress), unshaped.
  ASSERT_TRUE(RunChecked({"tc", "qdisc", "add", "dev", kIface, "root", "tbf", "rate", kLinkRate,
                          "burst", "32kb", "latency", "100ms"},
                         network().agent_ns())
                  .ok());
  {
    std::ofstream token(File("token"));
    token << "capd-slow-link-token-5c1d\n";
  }
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--tls-cert", pki_.server_cert.string(),
                      "--tls-key", pki_.server_key.string(), "--auth-token-file",
                      File("token").string(), "--max-queue-bytes", "1M"},
                     kVethTarget));
  const UniqueFd sink = AgentSocket(kDst, kPort);

  // -c: the agent stops at exactly the flood's count of packets taken from its ring (sent or
  // dropped), so the stream ends by itself with final statistics.
  const auto file = File("slow-link.pcapng");
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("capctl",
            {kCapctlPath, "stream", "--agent", kVethTarget, "--tls-ca", pki_.ca_cert.string(),
             "--tls-server-name", "localhost", "--token-file", File("token").string(), "-i", kIface,
             "-f", "udp port " + std::to_string(kPort), "-c", std::to_string(kFloodPackets), "-w",
             file.string()},
            &capctl, network().peer_ns()));
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();

  const UniqueFd peer = PeerSocket();
  std::string payload(kPayloadBytes, 'x');
  for (int i = 0; i < kFloodPackets; ++i) {
    const std::string label = "flood-" + std::to_string(i) + "-";
    payload.replace(0, label.size(), label);
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payload).ok());
  }
  // Packets the ring lost (kernel drops) leave the agent short of its count: top up until it
  // says the count is reached (normally at once, with no top-up).
  int topups = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!agent().WaitForStderr("ended (COUNT_REACHED)", std::chrono::milliseconds(200))) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << agent().Describe();
    const std::string label = "topup-" + std::to_string(topups) + "-";
    payload.replace(0, label.size(), label);
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payload).ok());
    ++topups;
  }
  // Then the link carries what the agent still holds for capctl: a few MB, seconds.
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(60)));
  const std::string err = capctl->Stderr();

  Summary summary;
  ASSERT_TRUE(ParseSummary(SummaryLine(err), summary)) << capctl->Describe();
  EXPECT_GT(summary.agent, 0u) << "the agent dropped nothing on an 8 Mbit/s link: " << err;
  EXPECT_NE(SummaryLine(err).find("(packet count reached"), std::string::npos) << err;
  // The summary says why and what would help; the live line came once (one episode).
  const std::string why = "capctl: agent " + std::string(kVethTarget) + " dropped " +
                          std::to_string(summary.agent) +
                          " packets: the link to it was the bottleneck; a narrower filter, -s "
                          "SNAPLEN or --compress would help";
  EXPECT_EQ(CountLines(err, why), 1u) << err;
  EXPECT_EQ(CountLines(err, "capctl: agent " + std::string(kVethTarget) +
                                " is dropping packets: the link to it is the bottleneck ("),
            1u)
      << err;

  // What crossed the link: at least the packets written, no faster than the link goes.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      err, m, std::regex(R"(capctl: received ([0-9.]+) (MB|kB) from the agent in ([0-9.]+) s)")))
      << err;
  const double received = std::stod(m[1]) * (m[2] == "MB" ? 1e6 : 1e3);
  const double seconds = std::stod(m[3]);
  EXPECT_GE(received, 0.99 * summary.written * (kPayloadBytes + 42)) << err;
  EXPECT_LE(received / seconds, 1.1 * kLinkBytesPerSecond) << err;

  // The file: exactly the packets written, read by an independent reader too.
  auto pcapng = ReadPcapng(file);
  ASSERT_TRUE(pcapng.ok()) << pcapng.status().message();
  EXPECT_EQ(pcapng->packets.size(), summary.written);
  ExpectCapinfos(file, summary.written);

  // Honest counts against the agent's statistics: every packet the agent took from its ring was
  // written or dropped from its queue, and the filter's count (libpcap's ps_recv, which includes
  // the ring's drops) is that plus the kernel's drops.
  ASSERT_FALSE(pcapng->statistics.empty()) << "no Interface Statistics Block";
  const PcapngStatistics& isb = pcapng->statistics.back();
  constexpr uint16_t kIsbIfRecv = 4, kIsbOsDrop = 7;
  ASSERT_TRUE(isb.counters.contains(kIsbIfRecv)) << "no isb_ifrecv";
  EXPECT_EQ(isb.counters.at(kIsbOsDrop), summary.kernel);
  const uint64_t seen = isb.counters.at(kIsbIfRecv);
  std::printf(
      "slow link %s: %llu written, %llu dropped by agent, %llu by kernel, %llu seen by the "
      "agent's filter, %d top-ups; %.2f MB received in %.1f s\n",
      kLinkRate, static_cast<unsigned long long>(summary.written),
      static_cast<unsigned long long>(summary.agent),
      static_cast<unsigned long long>(summary.kernel), static_cast<unsigned long long>(seen),
      topups, received / 1e6, seconds);
  EXPECT_EQ(summary.written + summary.agent, static_cast<uint64_t>(kFloodPackets));
  EXPECT_GE(seen, summary.written + summary.agent + summary.kernel);
  // A top-up may reach the ring after the agent had its count, before the final statistics.
  EXPECT_LE(seen, summary.written + summary.agent + summary.kernel + topups);
  ExpectAgentAlive();
}

// Bytes queued in the TCP connections to or from capd's port in the agent namespace (capd's send
// queues and the receiving end's unread data), from /proc/PID/net/tcp of a process there.
uint64_t QueuedOnAgentPort(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/net/tcp");
  uint64_t queued = 0;
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    // "  N: LOCAL:PORT REMOTE:PORT ST TX:RX ..." in hex.
    char local[64], remote[64];
    unsigned state = 0;
    unsigned long tx = 0, rx = 0;
    if (std::sscanf(line.c_str(), " %*d: %63s %63s %x %lx:%lx", local, remote, &state, &tx, &rx) !=
        5) {
      continue;
    }
    const std::string port = ":C383";  // 50051
    const auto ends_with = [&](const char* text) {
      const std::string t(text);
      return t.size() >= port.size() && t.compare(t.size() - port.size(), port.size(), port) == 0;
    };
    if (state == 1 && (ends_with(local) || ends_with(remote))) queued += tx + rx;
  }
  return queued;
}

// The same flood over loopback into `capctl stream -w -` whose pipe the test leaves unread until
// the agent has its count: capctl's queue fills, its reader stops reading, and the agent drops.
// capctl must blame its output, not the link. The flood is paced (each 200 packets, until the
// connection has carried what was sent) until capctl's queue is nearly full, so that the agent
// drops only once capctl's reader waits for its output, not because a reader starved of CPU on a
// busy machine fell behind a full-speed flood (which capctl would not tell from a slow link).
TEST_F(SlowLinkTest, AgentDropsBehindAStalledOutputAreNamedWithTheOutput) {
  // More than capctl's 64 MiB queue, gRPC's window and the agent's 1 MiB queue together.
  constexpr int kPackets = 100'000;
  // ~59 MB of frames: below capctl's 64 MiB queue (the pipe holds another 1 MiB).
  constexpr int kPaced = 57'000;
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--max-queue-bytes", "1M"}));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("stalled",
                                      {"-i", kIface, "-f", "udp port " + std::to_string(kPort),
                                       "-c", std::to_string(kPackets), "-w", "-"},
                                      &capctl, write_end.get()));
  write_end.Reset();

  const UniqueFd peer = PeerSocket();
  std::string payload(kPayloadBytes, 'x');
  const pid_t capd = AgentPid();
  for (int i = 0; i < kPackets; ++i) {
    const std::string label = "flood-" + std::to_string(i) + "-";
    payload.replace(0, label.size(), label);
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payload).ok());
    if (i >= kPaced || (i + 1) % 200 != 0) continue;
    // Carried: nothing queued, twice 2 ms apart (a batch may wait in the ring for its block).
    const auto paced_deadline = std::chrono::steady_clock::now() + kStartTimeout;
    for (int empty = 0; empty < 2;) {
      ASSERT_LT(std::chrono::steady_clock::now(), paced_deadline) << "packet " << i;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      empty = QueuedOnAgentPort(capd) == 0 ? empty + 1 : 0;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int topups = 0;
       !agent().WaitForStderr("ended (COUNT_REACHED)", std::chrono::milliseconds(200));) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << agent().Describe();
    const std::string label = "topup-" + std::to_string(topups++) + "-";
    payload.replace(0, label.size(), label);
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payload).ok());
  }
  // Now read (and discard) the stream.
  std::atomic<uint64_t> read_bytes{0};
  std::thread drain([&] {
    char buffer[1 << 16];
    for (ssize_t n; (n = ::read(read_end.get(), buffer, sizeof buffer)) > 0;) read_bytes += n;
  });
  ExpectExit(*capctl, 0, std::chrono::seconds(60));
  drain.join();
  const std::string err = capctl->Stderr();
  Summary summary;
  ASSERT_TRUE(ParseSummary(SummaryLine(err), summary)) << capctl->Describe();
  EXPECT_GT(summary.agent, 0u) << err;
  EXPECT_EQ(summary.written + summary.agent, static_cast<uint64_t>(kPackets)) << err;
  EXPECT_EQ(CountLines(err, "capctl: agent " + std::string(kAgentTarget) + " dropped " +
                                std::to_string(summary.agent) +
                                " packets: capctl's output (stdout) was the bottleneck, not the "
                                "link; a narrower filter or -s SNAPLEN would help"),
            1u)
      << err;
  EXPECT_EQ(CountLines(err, "capctl: agent " + std::string(kAgentTarget) +
                                " is dropping packets: capctl's output (stdout) is the "
                                "bottleneck, not the link (capctl waited for it "),
            1u)
      << err;
  EXPECT_EQ(CountLines(err, "the link to it"), 0u) << err;
  // The summary stays the last line: the extcap gives it to Wireshark as the reason.
  EXPECT_EQ(err.substr(err.rfind('\n', err.size() - 2) + 1), SummaryLine(err) + "\n") << err;
  std::printf("stalled output: %llu written, %llu dropped by agent; %llu bytes read\n",
              static_cast<unsigned long long>(summary.written),
              static_cast<unsigned long long>(summary.agent),
              static_cast<unsigned long long>(read_bytes.load()));
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
