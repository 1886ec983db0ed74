// How streams end other than by count: the agent shuts down (SIGTERM), or the reader of capctl's
// stdout or FIFO goes away. Each time capctl ends promptly with the right code and a summary,
// and what was written is a valid capture file.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

uint32_t Le32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + at);
  return p[0] | p[1] << 8 | p[2] << 16 | static_cast<uint32_t>(p[3]) << 24;
}

// Reads the pcapng Section Header Block from `fd` (poll, so a silent writer fails the test
// instead of hanging it). Returns the block's bytes, or "" after `timeout`.
std::string ReadSectionHeader(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string data;
  size_t want = 8;  // block type and total length first
  while (data.size() < want) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) return "";
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[1];  // byte by byte: leave everything after the header unread in the pipe
    const ssize_t n = ::read(fd, buf, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return "";  // EOF: the writer went away
    data.push_back(buf[0]);
    if (data.size() == 8) want = std::clamp<size_t>(Le32(data, 4), 8, 1 << 20);
  }
  return data;
}

class LifecycleTest : public AgentTest {
 protected:
  // With the reader of capctl's output gone, sends a datagram every 20 ms (capctl notices when
  // it next writes) until capctl exits; expects exit code 0, promptly, saying the reader went
  // away. Then checks the agent still serves a new stream.
  void ExpectEndsWhenReaderGoes(Subprocess& capctl) {
    const UniqueFd peer = PeerSocket();
    const auto start = std::chrono::steady_clock::now();
    while (capctl.Running() &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(10)) {
      ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, "after the reader left").ok());
      capctl.WaitFor(std::chrono::milliseconds(20));
    }
    ASSERT_NO_FATAL_FAILURE(ExpectExit(capctl, 0, std::chrono::seconds(1)));
    EXPECT_NE(SummaryLine(capctl.Stderr()).find("went away"), std::string::npos)
        << capctl.Describe();

    // The agent dropped that stream and serves the next one.
    ASSERT_TRUE(agent().Running()) << agent().Describe();
    std::unique_ptr<Subprocess> next;
    ASSERT_NO_FATAL_FAILURE(StartStream(
        "next", {"-i", kIface, "-f", "udp", "-c", "3", "-w", File("next.pcapng").string()}, &next));
    const auto payloads = MakePayloads(3, "next");
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*next, 0));
    ExpectUdpPayloads(ReadOrFail(File("next.pcapng")), payloads, kPort);
  }
};

// SIGTERM or SIGINT to capd mid-stream: every stream ends with AGENT_SHUTDOWN, capctl exits 1
// (the capture did not end as asked) with its summary naming the shutdown, the file is complete
// and valid, and capd exits 0.
class AgentShutdownTest : public LifecycleTest, public ::testing::WithParamInterface<int> {};

TEST_P(AgentShutdownTest, EndsTheStreamCleanly) {
  constexpr int kCount = 20;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-i", kIface, "-f", "udp", "-w", File("out.pcapng").string()}, &capctl));
  const auto payloads = MakePayloads(kCount, "shutdown");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(WaitForPacketsInFile(File("out.pcapng"), kCount, *capctl));

  ASSERT_TRUE(agent().Signal(GetParam()));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1, std::chrono::seconds(10)));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(agent(), 0, std::chrono::seconds(10)));
  const std::string summary = SummaryLine(capctl->Stderr());
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << capctl->Describe();
  EXPECT_NE(Lower(summary).find("shut"), std::string::npos)
      << "the summary does not say the agent shut down: " << capctl->Describe();

  ExpectUdpPayloads(ReadOrFail(File("out.pcapng")), payloads, kPort);
  ExpectCapinfos(File("out.pcapng"), kCount);
}

INSTANTIATE_TEST_SUITE_P(Signals, AgentShutdownTest, ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) {
                           return std::string(info.param == SIGTERM ? "SIGTERM" : "SIGINT");
                         });

// SIGINT to capctl (^C): exit 0, summary "interrupted", a complete file; the agent keeps going.
TEST_F(LifecycleTest, SigintToCapctlEndsTheStreamCleanly) {
  constexpr int kCount = 10;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-i", kIface, "-f", "udp", "-w", File("out.pcapng").string()}, &capctl));
  const auto payloads = MakePayloads(kCount, "sigint");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(WaitForPacketsInFile(File("out.pcapng"), kCount, *capctl));

  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(10)));
  const std::string summary = SummaryLine(capctl->Stderr());
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << capctl->Describe();
  EXPECT_NE(summary.find("interrupted"), std::string::npos) << capctl->Describe();
  ExpectUdpPayloads(ReadOrFail(File("out.pcapng")), payloads, kPort);
  ExpectCapinfos(File("out.pcapng"), kCount);
}

// `capctl stream -w - | reader` where the reader exits after the file header.
TEST_F(LifecycleTest, StdoutReaderGoingAwayEndsTheStream) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("capctl", {"-i", kIface, "-f", "udp", "-w", "-"}, &capctl, write_end.get()));
  write_end.Reset();  // capctl holds the only write end

  const std::string header = ReadSectionHeader(read_end.get(), kStartTimeout);
  ASSERT_GE(header.size(), 28u) << capctl->Describe();
  EXPECT_EQ(Le32(header, 0), 0x0a0d0d0au) << "not a pcapng Section Header Block";
  read_end.Reset();  // the reader goes away
  ExpectEndsWhenReaderGoes(*capctl);
}

// `capctl stream --fifo PATH` (what Wireshark's `-k -i PATH` uses) where the reader closes.
TEST_F(LifecycleTest, FifoReaderGoingAwayEndsTheStream) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const std::string fifo = File("capture.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl", {"-i", kIface, "-f", "udp", "--fifo", fifo},
                                      &capctl, -1, /*wait_ready=*/false));
  // Non-blocking open: succeeds at once; capctl's open for writing then completes.
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid()) << std::strerror(errno);
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();

  const std::string header = ReadSectionHeader(reader.get(), kStartTimeout);
  ASSERT_GE(header.size(), 28u) << capctl->Describe();
  EXPECT_EQ(Le32(header, 0), 0x0a0d0d0au) << "not a pcapng Section Header Block";
  reader.Reset();
  ExpectEndsWhenReaderGoes(*capctl);
}

}  // namespace
}  // namespace capd::test
