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
#include "tests/support/programs.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7400;
constexpr char kFilter[] = "udp port 7400";
constexpr char kBucket[] = "caps";

class UploadTest : public AgentTest {
 protected:
  std::filesystem::path Ring() const { return File("ring"); }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AgentTest::SetUp());
    if (IsSkipped()) return;
    if (!HaveProgram("s3rver")) GTEST_SKIP() << "needs s3rver (npm install -g s3rver@3)";
    if (!HaveProgram("aws")) GTEST_SKIP() << "needs the AWS CLI (apt-get install awscli)";
    // Debian's awscli (/usr/bin/aws) before any other on PATH; dummy credentials s3rver takes;
    // no instance metadata look-up.
    const char* path = getenv("PATH");
    setenv("PATH", ("/usr/bin:" + std::string(path ? path : "/bin")).c_str(), 1);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_DEFAULT_REGION", "us-east-1", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ENDPOINT_URL");
    std::filesystem::create_directories(Ring());
    std::filesystem::create_directories(File("s3"));
    ASSERT_NO_FATAL_FAILURE(StartS3(0));
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    sink_ = AgentSocket(kDst, kPort);
  }

  void TearDown() override {
    if (s3_) {
      s3_->Signal(SIGKILL);
      (void)s3_->WaitFor(kExitTimeout);
    }
    AgentTest::TearDown();
  }

  // s3rver on 127.0.0.1:port (0: any free port, then remembered) over the folder s3/, with the
  // bucket.
  void StartS3(uint16_t port) {
    const std::string name = "s3rver" + std::to_string(s3_starts_++);
    ASSERT_NO_FATAL_FAILURE(Spawn(name,
                                  {"s3rver", "-d", File("s3").string(), "-a", "127.0.0.1", "-p",
                                   std::to_string(port), "--configure-bucket", kBucket},
                                  &s3_));
    ASSERT_TRUE(WaitForFileContains(File(name + ".out"), "listening on 127.0.0.1:", kStartTimeout))
        << s3_->Describe() << ReadFileToString(File(name + ".out"));
    std::smatch m;
    const std::string out = ReadFileToString(File(name + ".out"));
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(listening on 127\.0\.0\.1:(\d+))"))) << out;
    s3_port_ = static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  void StopS3() {
    s3_->Signal(SIGKILL);
    ASSERT_TRUE(s3_->WaitFor(kExitTimeout).has_value());
  }
  std::string Endpoint() const { return "http://127.0.0.1:" + std::to_string(s3_port_); }

  // `aws ARGS... --endpoint-url ENDPOINT` in the agent's namespace.
  CommandResult Aws(std::vector<std::string> args) {
    args.insert(args.begin(), "aws");
    args.push_back("--endpoint-url");
    args.push_back(Endpoint());
    return RunCommand(args, network().agent_ns());
  }

  // The bucket's keys, sorted.
  std::vector<std::string> Keys() {
    const CommandResult r = Aws({"s3api", "list-objects-v2", "--bucket", kBucket, "--query",
                                 "Contents[].Key", "--output", "text"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::vector<std::string> keys;
    std::istringstream in(r.output);
    for (std::string key; in >> key;) {
      if (key != "None") keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  std::map<std::string, std::string> Metadata(const std::string& key) {
    const CommandResult r = Aws({"s3api", "head-object", "--bucket", kBucket, "--key", key,
                                 "--query", "Metadata", "--output", "json"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::map<std::string, std::string> meta;
    const std::regex pair(R"re("([a-z-]+)":\s*"([^"]*)")re");
    for (auto it = std::sregex_iterator(r.output.begin(), r.output.end(), pair);
         it != std::sregex_iterator(); ++it) {
      meta[(*it)[1].str()] = (*it)[2].str();
    }
    EXPECT_EQ(meta.size(), 6u) << r.output;
    return meta;
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

  std::unique_ptr<Subprocess> s3_;
  uint16_t s3_port_ = 0;
  int s3_starts_ = 0;
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
  const uint16_t port = s3_port_;
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
