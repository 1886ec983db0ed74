// `capctl stream -w PATH --rotate-* --post-rotate CMD` end to end on a real veth: the hand-off of
// finished files (upload/file_handoff.h) against a fast ring and slow or failing commands.
// Every finished file reaches the command's destination exactly once and the copies together hold
// every packet sent (libpcap and capinfos); the ring keeps a file until its command succeeded,
// then shrinks to --rotate-files; failures are retried and reported; capctl's exit waits for the
// commands, and a second Ctrl-C ends that wait.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7300;
constexpr char kFilter[] = "udp port 7300";

class HandoffTest : public AgentTest {
 protected:
  std::filesystem::path Ring() const { return File("ring"); }
  std::filesystem::path Dest() const { return File("dest"); }
  std::filesystem::path Calls() const { return File("calls.list"); }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AgentTest::SetUp());
    if (IsSkipped()) return;
    std::filesystem::create_directories(Ring());
    std::filesystem::create_directories(Dest());
    std::filesystem::create_directories(File("tries"));
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    sink_ = AgentSocket(kDst, kPort);
  }

  void StartRing(const std::vector<std::string>& args, std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> all = {"-i",    kIface, "-f",
                                    kFilter, "-w",   (Ring() / "cap.pcapng").string()};
    all.insert(all.end(), args.begin(), args.end());
    ASSERT_NO_FATAL_FAILURE(StartStream("capctl", all, out));
  }

  // The ring files in `dir`, by name (their numbers sort them).
  static std::vector<std::filesystem::path> RingFiles(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> files;
    const std::regex pattern(R"(cap_\d{5}_\d{14}\.pcapng)");
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      if (std::regex_match(e.path().filename().string(), pattern)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  static int Number(const std::filesystem::path& file) {
    return std::stoi(file.filename().string().substr(4, 5));
  }

  // How many times the command was called with each file (the lines of calls.list).
  std::map<std::string, int> CallsByFile() const {
    std::map<std::string, int> calls;
    std::istringstream in(ReadFileToString(Calls()));
    for (std::string line; std::getline(in, line);) ++calls[line];
    return calls;
  }

  // The copies in dest/: numbered 1..N without a gap, each complete for capinfos, together
  // exactly `payloads` in order; N returned.
  void ExpectCopiesHoldEveryPacket(const std::vector<std::string>& payloads, size_t* copies) {
    const auto files = RingFiles(Dest());
    ASSERT_FALSE(files.empty());
    std::vector<CapturedPacket> all;
    for (size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(Number(files[i]), static_cast<int>(i + 1)) << files[i];
      const auto packets = ReadOrFail(files[i]);
      ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(files[i], packets.size()));
      all.insert(all.end(), packets.begin(), packets.end());
    }
    ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
    *copies = files.size();
  }

  UniqueFd sink_;
};

// The issue's race: --rotate-size 20k --rotate-files 2 and a command that sleeps a second before
// it copies. Every file is copied exactly once, the copies hold all 400 packets capctl reports,
// capctl exits 0 only once every command has ended (calls.list is complete at exit), and the
// ring is back to its two newest files.
TEST_F(HandoffTest, SlowCommandAndFastRingLoseNoFile) {
  constexpr int kCount = 400;
  const std::string command = "sh -c 'sleep 1; echo \"$0\" >> " + Calls().string() +
                              "; cp \"$0\" " + Dest().string() + "/'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"-c", std::to_string(kCount), "--rotate-size", "20k",
                                     "--rotate-files", "2", "--post-rotate", command},
                                    &capctl));
  const auto payloads = MakePayloads(kCount, "race");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(60)));
  const std::string err = capctl->Stderr();
  EXPECT_NE(SummaryLine(err).find("400 packets written"), std::string::npos) << err;

  size_t copies = 0;
  ASSERT_NO_FATAL_FAILURE(ExpectCopiesHoldEveryPacket(payloads, &copies));
  ASSERT_GE(copies, 8u);  // ~280 kB of frames in files of 20 kB
  const auto calls = CallsByFile();
  EXPECT_EQ(calls.size(), copies);
  for (const auto& [file, n] : calls)
    EXPECT_EQ(n, 1) << file << " was handed off " << n << " times";
  const auto left = RingFiles(Ring());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(Number(left.back()), static_cast<int>(copies));
  EXPECT_NE(err.find("more than --rotate-files 2: the oldest are not handed off yet"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("capctl: " + std::to_string(copies) +
                     " files handed off to the post-rotate command\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("failed"), std::string::npos) << err;
}

// A command that fails the first time it sees each file: every file is tried twice, each failure
// is one stderr line naming the file, the retry succeeds, and the copies are complete.
TEST_F(HandoffTest, AFailingCommandIsRetriedAndReported) {
  constexpr int kCount = 120;
  const std::string tries = File("tries").string();
  const std::string command = "sh -c 't=" + tries + "/$(basename \"$0\"); echo \"$0\" >> " +
                              Calls().string() + "; if [ -e \"$t\" ]; then cp \"$0\" " +
                              Dest().string() + "/; else touch \"$t\"; exit 7; fi'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"-c", std::to_string(kCount), "--rotate-size", "20k",
                                     "--rotate-files", "2", "--post-rotate", command},
                                    &capctl));
  const auto payloads = MakePayloads(kCount, "retry");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(60)));
  const std::string err = capctl->Stderr();

  size_t copies = 0;
  ASSERT_NO_FATAL_FAILURE(ExpectCopiesHoldEveryPacket(payloads, &copies));
  ASSERT_GE(copies, 3u);
  const auto calls = CallsByFile();
  EXPECT_EQ(calls.size(), copies);
  for (const auto& [file, n] : calls) {
    EXPECT_EQ(n, 2) << file;
    EXPECT_NE(err.find("capctl: post-rotate command for " + file +
                       " failed: exit status 7 (attempt 1 of 5); retrying in 1 s\n"),
              std::string::npos)
        << err;
  }
  EXPECT_NE(err.find("capctl: " + std::to_string(copies) +
                     " files handed off to the post-rotate command\n"),
            std::string::npos)
      << err;
  EXPECT_EQ(RingFiles(Ring()).size(), 2u);
}

// A command that always fails, with --handoff-attempts 2: each file is tried twice, then given
// up on and kept (the ring deletes none of them despite --rotate-files 2), the summary names
// them, and capctl exits 1.
TEST_F(HandoffTest, FilesThatCannotBeHandedOffAreKeptAndNamed) {
  constexpr int kCount = 150;
  const std::string command = "sh -c 'echo \"$0\" >> " + Calls().string() + "; exit 1'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartRing({"-c", std::to_string(kCount), "--rotate-size", "20k", "--rotate-files", "2",
                 "--handoff-attempts", "2", "--post-rotate", command},
                &capctl));
  const auto payloads = MakePayloads(kCount, "fail");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1, std::chrono::seconds(60)));
  const std::string err = capctl->Stderr();
  const auto kept = RingFiles(Ring());
  ASSERT_GE(kept.size(), 3u);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(kept), payloads, kPort));
  std::string names;
  for (const auto& f : kept) names += (names.empty() ? "" : ", ") + f.string();
  EXPECT_NE(err.find("capctl: 0 files handed off to the post-rotate command; " +
                     std::to_string(kept.size()) + " files failed after 2 attempts: " + names),
            std::string::npos)
      << err;
  for (const auto& [file, n] : CallsByFile()) EXPECT_EQ(n, 2) << file;
  EXPECT_NE(
      err.find("(attempt 2 of 2); giving up: " + kept.front().string() + " stays where it is"),
      std::string::npos)
      << err;
}

// Ctrl-C ends the stream and capctl waits for a command that takes a minute; a second Ctrl-C
// ends the wait: capctl names the file and the command it left running, and exits 1.
TEST_F(HandoffTest, ASecondCtrlCEndsTheWait) {
  const std::string command = "sleep 60; true";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"--rotate-size", "20k", "--post-rotate", command}, &capctl));
  const auto payloads = MakePayloads(20, "wait");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_TRUE(WaitForPackets(RingFiles(Ring()).back(), payloads.size())) << capctl->Describe();
  capctl->Signal(SIGINT);
  ASSERT_TRUE(
      capctl->WaitForStderr("waiting up to 300 s (--handoff-wait) for the post-rotate "
                            "command: 1 running",
                            kStartTimeout))
      << capctl->Describe();
  EXPECT_TRUE(capctl->Running());
  capctl->Signal(SIGINT);
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1));
  const std::string err = capctl->Stderr();
  const auto files = RingFiles(Ring());
  ASSERT_EQ(files.size(), 1u);
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(err, m,
                        std::regex("stopped waiting for the post-rotate command \\(Ctrl-C\\); "
                                   "still running: " +
                                   files[0].string() + R"( \(left running, process (\d+)\))")))
      << err;
  ::kill(-std::stoi(m[1].str()), SIGKILL);  // the command's process group
  EXPECT_NE(err.find("1 file not settled when capctl stopped waiting: " + files[0].string()),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace capd::test
