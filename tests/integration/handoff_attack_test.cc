// The hand-off of finished files (upload/file_handoff.h) attacked from the command side
// and the file-name side, end to end on a real veth with capd as deployed (--user nobody):
// - a post-rotate command that never exits, and one that leaves a daemon holding capctl's stdout
//   and stderr: capctl's exit wait is bounded by --handoff-wait, a daemon does not hold it, and
//   the command gets no descriptor of capctl's but 0, 1 and 2 (no capture file, no socket);
// - a -w name with spaces, quotes and $(...): the command receives the file's name as one
//   argument, never as shell text;
// - a thousand one-packet files: never more commands at once than --handoff-jobs, every file
//   handed off once, capctl's descriptors bounded.
// The S3 upload runs the aws CLI from an argument vector (posix_spawnp, no shell): its URL and
// --upload-endpoint-url reach it as single arguments (tests/integration/upload_test.cc).

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/proc_status.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7310;
constexpr char kFilter[] = "udp port 7310";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class HandoffAttackTest : public HardenedAgentTest {
 protected:
  void SetUp() override {
    HardenedAgentTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    fs::create_directories(File("ring"));
    ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody"}));
    sink_ = AgentSocket(kDst, kPort);
  }

  void StartRing(const std::string& stem, const std::vector<std::string>& args,
                 std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> all = {"-i",    kIface, "-f",
                                    kFilter, "-w",   (File("ring") / stem).string()};
    all.insert(all.end(), args.begin(), args.end());
    ASSERT_NO_FATAL_FAILURE(StartStream("capctl", all, out));
  }

  std::vector<fs::path> RingFiles() const {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(File("ring"))) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
  }

  UniqueFd sink_;
};

// A command that never exits (and leaves a daemon of its own holding capctl's stdout and
// stderr), with --handoff-wait 2: after Ctrl-C capctl waits 2 s, names the file and the command
// it left running, and exits 1; the command holds no descriptor of capctl's but 0, 1 and 2.
TEST_F(HandoffAttackTest, ACommandThatNeverExitsHoldsCapctlOnlyForTheWait) {
  const std::string fds = File("fds.list").string();
  const std::string group = File("group").string();
  const std::string command = "sh -c 'ls -l /proc/$$/fd > " + fds +
                              "; cut -d\" \" -f5 /proc/$$/stat >> " + group +
                              "; sleep 600 & exec sleep 600'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing(
      "cap.pcapng", {"--rotate-size", "20k", "--handoff-wait", "2", "--post-rotate", command},
      &capctl));
  const auto payloads = MakePayloads(40, "never");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_TRUE(WaitForPackets(RingFiles().back(), payloads.size())) << capctl->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_TRUE(capctl->WaitForStderr("waiting up to 2 s (--handoff-wait)", kStartTimeout))
      << capctl->Describe();
  // The bound is --handoff-wait; kExitTimeout is only a hang guard.
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1));
  const std::string err = capctl->Stderr();
  EXPECT_NE(err.find("stopped waiting for the post-rotate command after 2 s; still running: "),
            std::string::npos)
      << err;
  // The commands' process groups (each its own): nothing of theirs outlives the test.
  const auto groups = Lines(ReadFileToString(group));
  ASSERT_FALSE(groups.empty());
  for (const auto& pgid : groups) ::kill(-std::stoi(pgid), SIGKILL);
  // What the command holds: its standard three (dash keeps a saved copy of one at 10), nothing
  // of capctl's: no capture file, no socket, no pipe, no eventfd or memfd.
  const std::string listing = ReadFileToString(fds);
  const auto lines = Lines(listing);
  size_t held = 0;
  for (const auto& line : lines) {
    const size_t arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    ++held;
    const std::string target = line.substr(arrow + 4);
    for (const char* leak : {"socket:", "pipe:", "anon_inode:", "memfd:", ".pcapng"}) {
      EXPECT_EQ(target.find(leak), std::string::npos) << listing;
    }
  }
  EXPECT_GE(held, 3u) << listing;
}

// A -w name made of shell syntax: the command gets each file's name as its one argument, exact,
// and nothing in the name runs.
TEST_F(HandoffAttackTest, AFileNameWithShellSyntaxIsOneArgumentNeverCode) {
  const std::string calls = File("calls.list").string();
  const std::string stem = "a b'c\"d$(id>&2)`id>&2`;id.pcapng";
  const std::string command = "sh -c 'printf \"%s\\n\" \"$0\" >> " + calls + "'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartRing(stem, {"-c", "60", "--rotate-size", "20k", "--post-rotate", command}, &capctl));
  const auto payloads = MakePayloads(60, "name");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0, std::chrono::seconds(60)));
  const std::string err = capctl->Stderr();
  EXPECT_EQ(err.find("uid="), std::string::npos) << err;
  const auto files = RingFiles();
  ASSERT_GE(files.size(), 2u);
  auto called = Lines(ReadFileToString(calls));
  std::sort(called.begin(), called.end());
  std::vector<std::string> expected;
  for (const auto& f : files) {
    EXPECT_NE(f.filename().string().find("a b'c\"d$(id>&2)`id>&2`;id_"), std::string::npos) << f;
    expected.push_back(f.string());
  }
  EXPECT_EQ(called, expected);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), payloads, kPort));
}

// A thousand one-packet files through a command that takes a moment: no more than
// --handoff-jobs 2 commands at once (each counts the others running), every file handed off
// exactly once, and capctl's open descriptors stay under 64 throughout.
TEST_F(HandoffAttackTest, AThousandSmallFilesKeepTheJobsBound) {
  constexpr int kCount = 1000;
  const std::string running = File("running").string();
  fs::create_directories(running);
  const std::string seen = File("concurrency.list").string();
  const std::string calls = File("calls.list").string();
  const std::string command = "sh -c 'mkdir " + running + "/$$; ls " + running + " | wc -l >> " +
                              seen + "; echo \"$0\" >> " + calls + "; rmdir " + running + "/$$'";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartRing("cap.pcapng",
                {"-c", std::to_string(kCount), "--rotate-size", "1", "--rotate-files", "2",
                 "--handoff-jobs", "2", "--post-rotate", command},
                &capctl));
  const auto payloads = MakePayloads(kCount, "many");
  const UniqueFd peer = PeerSocket();
  size_t max_fds = 0;
  std::thread sampler([&] {
    while (capctl->Running()) {
      if (auto n = OpenFdCount(capctl->pid()); n.ok()) max_fds = std::max(max_fds, *n);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  SendAll(peer.get(), kDst, kPort, payloads);
  // A hang guard: a thousand short commands, two at a time, on a loaded 2-core machine.
  const auto status = capctl->WaitFor(std::chrono::seconds(100));
  sampler.join();
  ASSERT_TRUE(status.has_value()) << capctl->Describe();
  EXPECT_TRUE(status->Exited(0)) << capctl->Describe();
  const std::string err = capctl->Stderr();
  std::map<std::string, int> by_file;
  for (const auto& line : Lines(ReadFileToString(calls))) ++by_file[line];
  for (const auto& [file, n] : by_file) EXPECT_EQ(n, 1) << file;
  EXPECT_GE(by_file.size(), static_cast<size_t>(kCount) / 2);
  EXPECT_NE(err.find("capctl: " + std::to_string(by_file.size()) +
                     " files handed off to the post-rotate command\n"),
            std::string::npos)
      << err;
  int most = 0;
  for (const auto& line : Lines(ReadFileToString(seen))) most = std::max(most, std::stoi(line));
  std::printf("%zu files; at most %d commands at once; capctl at most %zu descriptors\n",
              by_file.size(), most, max_fds);
  EXPECT_LE(most, 2);
  EXPECT_GE(most, 1);
  EXPECT_LT(max_fds, 64u);
  EXPECT_EQ(RingFiles().size(), 2u);
}

}  // namespace
}  // namespace capd::test
