// `capctl stream --upload s3://BUCKET/PREFIX` end to end: a real capd on a real veth, the real
// AWS CLI (Debian's awscli, found first in PATH) and a real S3-compatible server, s3rver (npm),
// started by the test on loopback in the agent's namespace with dummy credentials. The bucket is
// read back with the same CLI: every packet sent is in it exactly once across the objects
// (libpcap, capinfos), keys and metadata are as upload/s3_upload.h documents, a server
// stopped mid-run makes the uploads fail, be retried and succeed once it is back, and the ring
// deletes no file before its upload succeeded.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/integration/s3_fixture.h"
#include "tests/support/programs.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7400;
constexpr char kFilter[] = "udp port 7400";

class UploadTest : public S3Test {
 protected:
  std::filesystem::path Ring() const { return File("ring"); }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(S3Test::SetUp());
    if (IsSkipped()) return;
    std::filesystem::create_directories(Ring());
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    sink_ = AgentSocket(kDst, kPort);
  }

  // Downloads every object, checks each against its key's form and its metadata, and returns
  // the packets of all of them in key order.
  std::vector<CapturedPacket> DownloadAndCheck(const std::vector<std::string>& keys,
                                               const std::string& extension) {
    const std::regex form(
        "fleet/capd-it/veth0/(\\d{4})/(\\d{2})/(\\d{2})/(\\d{8})T\\d{6}\\.\\d{9}Z_"
        "\\d{8}T\\d{6}\\.\\d{9}Z_(\\d{5})\\" +
        extension);
    // One download of the whole bucket: the CLI starts slowly.
    const CommandResult down = Aws({"s3", "cp", "--recursive", "--only-show-errors",
                                    std::string("s3://") + kBucket + "/", File("down").string()});
    EXPECT_TRUE(down.status.Exited(0)) << down.output;
    std::vector<CapturedPacket> all;
    for (size_t i = 0; i < keys.size(); ++i) {
      std::smatch m;
      EXPECT_TRUE(std::regex_match(keys[i], m, form)) << keys[i];
      if (m.size() == 6) {
        EXPECT_EQ(m[1].str() + m[2].str() + m[3].str(), m[4].str()) << keys[i];
        EXPECT_EQ(std::stoi(m[5].str()), static_cast<int>(i + 1)) << keys[i];
      }
      const auto local = File("down") / keys[i];
      const auto packets = ReadOrFail(local);
      EXPECT_NO_FATAL_FAILURE(ExpectCapinfos(local, packets.size()));
      auto meta = Metadata(keys[i]);
      EXPECT_EQ(meta["packets"], std::to_string(packets.size())) << keys[i];
      EXPECT_EQ(meta["agent"], "capd-it");
      EXPECT_EQ(meta["interfaces"], "veth0");
      EXPECT_EQ(meta["link-types"], "1");
      if (!packets.empty()) {
        EXPECT_EQ(meta["first-ns"], std::to_string(packets.front().ts_ns)) << keys[i];
        EXPECT_EQ(meta["last-ns"], std::to_string(packets.back().ts_ns)) << keys[i];
      }
      all.insert(all.end(), packets.begin(), packets.end());
    }
    return all;
  }

  std::vector<std::filesystem::path> RingFiles() const {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(Ring())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
  }

  void StartCapctl(std::vector<std::string> args, std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> all = {"-i",
                                    kIface,
                                    "-f",
                                    kFilter,
                                    "--upload",
                                    std::string("s3://") + kBucket + "/fleet/",
                                    "--upload-endpoint-url",
                                    Endpoint()};
    all.insert(all.end(), args.begin(), args.end());
    ASSERT_NO_FATAL_FAILURE(StartStream("capctl", all, out));
  }

  UniqueFd sink_;
};

// A ring of 20 kB files with --rotate-files 2, uploaded: every packet is in the bucket exactly
// once, in order across the objects, which are complete captures named and described as
// documented; the ring is back to its two newest files.
TEST_F(UploadTest, EveryPacketReachesTheBucketOnce) {
  constexpr int kCount = 300;
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartCapctl({"-w", (Ring() / "cap.pcapng").string(), "-c", std::to_string(kCount),
                   "--rotate-size", "20k", "--rotate-files", "2"},
                  &capctl));
  const auto payloads = MakePayloads(kCount, "s3");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(90)));
  const std::string err = capctl->Stderr();
  EXPECT_NE(SummaryLine(err).find("300 packets written"), std::string::npos) << err;
  const auto keys = Keys();
  ASSERT_GE(keys.size(), 8u) << err;
  EXPECT_NE(err.find("capctl: " + std::to_string(keys.size()) +
                     " files handed off to the upload to s3://caps/fleet\n"),
            std::string::npos)
      << err;
  const auto all = DownloadAndCheck(keys, ".pcapng");
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  EXPECT_EQ(RingFiles().size(), 2u);
}

// The server goes away before any file is finished: the uploads fail and are retried, the ring
// keeps every file (none deleted before its upload succeeded, --rotate-files 2 or not), and once
// the server is back the retries succeed: every packet in the bucket once, capctl exits 0.
TEST_F(UploadTest, AServerThatIsAwayIsRetriedAndNothingIsDeletedMeanwhile) {
  constexpr int kCount = 200;
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartCapctl({"-w", (Ring() / "cap.pcapng").string(), "-c", std::to_string(kCount),
                   "--rotate-size", "20k", "--rotate-files", "2", "--handoff-attempts", "8"},
                  &capctl));
  const uint16_t port = s3_port();
  ASSERT_NO_FATAL_FAILURE(StopS3());
  const auto payloads = MakePayloads(kCount, "away");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_TRUE(capctl->WaitForStderr("(attempt 2 of 8); retrying in 2 s", std::chrono::seconds(60)))
      << capctl->Describe();
  // One line per failure, ending with the CLI's reason.
  EXPECT_NE(capctl->Stderr().find("failed: exit status 1: Could not connect to the endpoint URL"),
            std::string::npos)
      << capctl->Stderr();
  // Nothing was uploaded, so nothing was deleted: the ring's files are numbered 1..N, N > 2.
  const auto held = RingFiles();
  ASSERT_GT(held.size(), 2u);
  for (size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(std::stoi(held[i].filename().string().substr(4, 5)), static_cast<int>(i + 1))
        << held[i];
  }
  EXPECT_TRUE(capctl->Running()) << "capctl did not wait for the uploads: " << capctl->Describe();
  ASSERT_NO_FATAL_FAILURE(StartS3(port));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(90)));
  const std::string err = capctl->Stderr();
  const auto keys = Keys();
  ASSERT_GE(keys.size(), held.size());
  EXPECT_NE(err.find("capctl: " + std::to_string(keys.size()) +
                     " files handed off to the upload to s3://caps/fleet\n"),
            std::string::npos)
      << err;
  const auto all = DownloadAndCheck(keys, ".pcapng");
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  EXPECT_EQ(RingFiles().size(), 2u);
}

// Without rotation: the -w file is uploaded once, complete, at the end, and stays where it is.
TEST_F(UploadTest, WithoutRotationTheFileIsUploadedAtTheEnd) {
  constexpr int kCount = 50;
  const auto path = File("one.pcapng");
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartCapctl({"-w", path.string(), "-c", std::to_string(kCount)}, &capctl));
  const auto payloads = MakePayloads(kCount, "one");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(60)));
  const auto keys = Keys();
  ASSERT_EQ(keys.size(), 1u) << capctl->Stderr();
  const auto all = DownloadAndCheck(keys, ".pcapng");
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadOrFail(path), payloads, kPort));
}

}  // namespace
}  // namespace capd::test
