// Compressed batches (capctl --compress, capd.v1 COMPRESSION_ZSTD) end to end on a real veth:
// with capd as root and as deployed (--user nobody), the file capctl writes from a compressed
// stream holds exactly what it writes from a plain one and what tcpdump writes, and the
// summary says how much compression saved.

#include <gtest/gtest.h>

#include <string>
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

INSTANTIATE_TEST_SUITE_P(AsRootAndAsDeployed, CompressionTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "UserNobody" : "Root"; });

}  // namespace
}  // namespace capd::test
