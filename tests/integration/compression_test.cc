// Compressed batches (capctl --compress, capd.v1 COMPRESSION_ZSTD) end to end on a real veth:
// with capd as root and as deployed (--user nobody), the file capctl writes from a compressed
// stream holds exactly what it writes from a plain one and what tcpdump writes, and the
// summary says how much compression saved. A client that stops reading makes capd drop whole
// batches; they are dropped before compression, so every batch that does arrive decodes.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7100;

class CompressionTest : public HardenedAgentTest, public ::testing::WithParamInterface<bool> {};

void ExpectSamePackets(const std::vector<CapturedPacket>& out,
                       const std::vector<CapturedPacket>& ref) {
  ASSERT_EQ(out.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(out[i].len, ref[i].len);
    EXPECT_EQ(out[i].caplen, ref[i].caplen);
    EXPECT_TRUE(out[i].bytes == ref[i].bytes) << "bytes differ";
    EXPECT_EQ(out[i].ts_ns, ref[i].ts_ns);
    if (::testing::Test::HasFailure()) break;
  }
}

TEST_P(CompressionTest, CompressedStreamWritesWhatAPlainOneAndTcpdumpWrite) {
  const bool as_nobody = GetParam();
  constexpr int kCount = 600;
  std::vector<std::string> flags = {"--no-metadata"};
  if (as_nobody) flags.insert(flags.end(), {"--user", "nobody"});
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> tcpdump, compressed, plain;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, File("ref.pcap"),
                                       {"-c", std::to_string(kCount), "udp"}, &tcpdump));
  const std::vector<std::string> common = {"-i", kIface, "-f", "udp", "-c", std::to_string(kCount)};
  std::vector<std::string> args = common;
  args.insert(args.end(), {"--compress", "-w", File("compressed.pcapng").string()});
  ASSERT_NO_FATAL_FAILURE(StartStream("compressed", args, &compressed));
  args = common;
  args.insert(args.end(), {"--no-compress", "-w", File("plain.pcapng").string()});
  ASSERT_NO_FATAL_FAILURE(StartStream("plain", args, &plain));

  const auto payloads = MakePayloads(kCount, "zstd");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*compressed, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*plain, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));

  const auto ref = ReadOrFail(File("ref.pcap"));
  const auto out = ReadOrFail(File("compressed.pcapng"));
  ASSERT_EQ(ref.size(), static_cast<size_t>(kCount));
  {
    SCOPED_TRACE("compressed against tcpdump");
    ExpectSamePackets(out, ref);
  }
  {
    SCOPED_TRACE("compressed against plain");
    ExpectSamePackets(out, ReadOrFail(File("plain.pcapng")));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(out, payloads, kPort));
  ExpectCapinfos(File("compressed.pcapng"), kCount);

  // What a user reads: the ratio on the compressed stream's summary, none on the plain one's.
  const std::string summary = SummaryLine(compressed->Stderr());
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("; compressed "), std::string::npos) << summary;
  EXPECT_NE(summary.find(":1 ("), std::string::npos) << summary;
  EXPECT_EQ(SummaryLine(plain->Stderr()).find("compressed"), std::string::npos);
}

// "flood-<i>-" then bytes that do not compress (a seed per packet), kFloodPayload bytes in all:
// gRPC's flow-control window then holds as few packets as it does for a plain stream.
constexpr size_t kFloodPayload = 1000;
std::string FloodPayload(int index) {
  std::string payload = "flood-" + std::to_string(index) + "-";
  std::mt19937 random(static_cast<unsigned>(index));
  while (payload.size() < kFloodPayload) payload += static_cast<char>(random() & 0xff);
  return payload;
}

class CompressionDropTest : public HardenedAgentTest {};

TEST_F(CompressionDropTest, BatchesDroppedForAStalledClientLeaveTheRestDecodable) {
  // 200,000 x 1 KB: far more than capctl's 64 MiB queue, gRPC's window and capd's 1 MB queue.
  constexpr int kFlood = 200'000;
  constexpr uint16_t kFloodPort = 7101;
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--no-metadata", "--max-queue-bytes", "1M"}));
  const UniqueFd sink = AgentSocket(kDst, kFloodPort);
  // capctl writes into a pipe the test does not read yet; the stream ends by itself once the
  // agent has captured kFlood packets (dropped ones included).
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  std::unique_ptr<Subprocess> stalled;
  ASSERT_NO_FATAL_FAILURE(StartStream("stalled",
                                      {"-i", kIface, "-f", "udp port " + std::to_string(kFloodPort),
                                       "-c", std::to_string(kFlood), "--compress", "-w", "-"},
                                      &stalled, write_end.get()));
  write_end.Reset();
  const UniqueFd peer = PeerSocket();
  for (int i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kFloodPort, FloodPayload(i)).ok());
  }
  ASSERT_TRUE(stalled->Running()) << stalled->Describe();

  // Read again, into a file; top-ups reach the count if the ring overflowed (kernel drops).
  std::jthread drain([fd = read_end.get(), path = File("stalled.pcapng")](std::stop_token stop) {
    std::ofstream out(path, std::ios::binary);
    std::vector<char> buffer(1 << 16);
    while (!stop.stop_requested()) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0) continue;
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n <= 0) break;
      out.write(buffer.data(), n);
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int topup = 0; stalled->Running() && std::chrono::steady_clock::now() < deadline;) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kFloodPort, "topup-" + std::to_string(topup++)).ok());
    stalled->WaitFor(std::chrono::milliseconds(5));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*stalled, 0, std::chrono::seconds(1)));
  drain.join();

  // The summary: drops by the agent, and compression.
  const std::string summary = SummaryLine(stalled->Stderr());
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(summary, m, std::regex(R"((\d+) packets written to .* (\d+) by agent)")))
      << summary;
  const uint64_t written = std::stoull(m[1]);
  const uint64_t agent_drops = std::stoull(m[2]);
  std::printf("%s\n", summary.c_str());
  EXPECT_GT(agent_drops, 0u) << summary;
  EXPECT_NE(summary.find("; compressed "), std::string::npos) << summary;

  // Every packet that arrived is intact, in order, and they are as many as the summary says.
  const auto packets = ReadOrFail(File("stalled.pcapng"));
  EXPECT_EQ(packets.size(), written);
  constexpr size_t kHeaders = 14 + 20 + 8;
  int last = -1;
  size_t flood_packets = 0;
  for (size_t i = 0; i < packets.size(); ++i) {
    const std::string& bytes = packets[i].bytes;
    ASSERT_GE(bytes.size(), kHeaders) << i;
    const std::string payload = bytes.substr(kHeaders);
    if (payload.rfind("topup-", 0) == 0) continue;
    ASSERT_EQ(payload.rfind("flood-", 0), 0u) << "packet " << i;
    const int index = std::stoi(payload.substr(6));
    ASSERT_GT(index, last) << "packet " << i;
    ASSERT_TRUE(payload == FloodPayload(index)) << "packet " << i << " (flood " << index << ")";
    last = index;
    ++flood_packets;
  }
  EXPECT_LT(flood_packets, static_cast<size_t>(kFlood)) << "nothing was dropped";
  ExpectCapinfos(File("stalled.pcapng"), packets.size());
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsDeployed, CompressionTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "UserNobody" : "Root"; });

}  // namespace
}  // namespace capd::test
