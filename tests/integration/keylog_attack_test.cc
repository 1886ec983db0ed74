// TLS key logs (capd --tls-keylog-dir) attacked by a hostile local user, on the deployed setup
// (capd --user nobody): a followed key log extended by terabytes without a line end (a sparse
// `truncate -s`, which is also what a writer faster than capd looks like) must leave capd's
// memory bounded and its follower thread must end with the stream; many streams each following
// a key log get one follower thread each, never more than --max-streams.
//
// Attacks tried and found bounded, so not repeated here: a key log swapped for a symbolic link,
// a FIFO, a hard link or a folder after the stream started (the rotation check opens the name
// the same safe way as at the start and keeps the old file: tests/unit/agent/keylog_test.cc),
// and huge or binary tls_keylog values (refused before any open: the path's length and control
// characters, keylog_file.cc).

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/proc_status.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kFollowerName[] = "capd-keylog";
constexpr uint64_t kTerabyte = uint64_t{1} << 40;

std::string KeyLine() {
  return "CLIENT_RANDOM " + std::string(64, 'a') + " " + std::string(96, 'f') + "\n";
}

class KeyLogAttackTest : public HardenedAgentTest {
 protected:
  void SetUp() override {
    HardenedAgentTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // capd's user must pass through the test folder to reach the allowed one.
    fs::permissions(dir_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    keys_ = File("keys");
    fs::create_directories(keys_);
    fs::permissions(keys_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  }

  // A key log readable by capd's user (0644, root's).
  fs::path MakeKeyLog(const std::string& name) {
    const fs::path path = keys_ / name;
    std::ofstream(path) << KeyLine();
    EXPECT_EQ(::chmod(path.c_str(), 0644), 0) << std::strerror(errno);
    return path;
  }

  // capd's threads following a key log now.
  size_t Followers() {
    auto tids = ThreadIds(agent().pid());
    EXPECT_TRUE(tids.ok()) << tids.status().message();
    size_t followers = 0;
    if (tids.ok()) {
      for (const pid_t tid : *tids) followers += ThreadName(agent().pid(), tid) == kFollowerName;
    }
    return followers;
  }

  // Waits (a hang guard) until capd follows exactly `count` key logs.
  bool WaitForFollowers(size_t count, std::chrono::seconds guard = std::chrono::seconds(20)) {
    const auto until = std::chrono::steady_clock::now() + guard;
    while (std::chrono::steady_clock::now() < until) {
      if (Followers() == count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Followers() == count;
  }

  uint64_t PeakResident() {
    auto status = ReadProcStatus(agent().pid());
    EXPECT_TRUE(status.ok()) << status.status().message();
    if (!status.ok()) return 0;
    return std::stoull((*status)["VmHWM"]) * 1024;  // "1234 kB"
  }

  fs::path keys_;
};

// A key log grown by 4 TiB of zeros (no line end) while a stream follows it, then a key, then
// grown again: capd's peak RSS grows by less than 16 MiB (the follower reads the newest 4 MiB of
// a backlog, 64 KiB at a time), and when the stream ends, the follower thread ends with it at
// once; before, it went on reading the terabytes, minutes of a core, after its stream was gone.
TEST_F(KeyLogAttackTest, AKeyLogGrownByTerabytesLeavesCapdBoundedAndEndsWithItsStream) {
  const fs::path key_log = MakeKeyLog("grown.keys");
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--tls-keylog-dir", keys_.string(), "--user", "nobody"}));
  const fs::path out = File("grown.pcapng");
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl",
      {"-i", TestNetwork::kAgentInterface, "-w", out.string(), "--tls-keylog", "grown.keys"},
      &capctl));
  ASSERT_TRUE(WaitForFollowers(1)) << agent().Stderr();
  // With the stream (its capture ring, its queue) running: what the key log adds is the rest.
  const uint64_t peak_before = PeakResident();
  for (uint64_t size = kTerabyte; size <= 4 * kTerabyte; size += kTerabyte) {
    ASSERT_EQ(::truncate(key_log.c_str(), static_cast<off_t>(size)), 0) << std::strerror(errno);
  }
  std::ofstream(key_log, std::ios::app) << "\n" << KeyLine();
  ASSERT_TRUE(agent().WaitForStderr("grew faster than it is read", kStartTimeout))
      << agent().Stderr();
  ASSERT_EQ(::truncate(key_log.c_str(), static_cast<off_t>(6 * kTerabyte)), 0)
      << std::strerror(errno);
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ExpectExit(*capctl, 0);
  EXPECT_TRUE(WaitForFollowers(0)) << "the follower outlived its stream";
  const uint64_t peak_after = PeakResident();
  std::printf("capd VmHWM: %llu kB with the stream, %llu kB after 10 TiB of key log\n",
              static_cast<unsigned long long>(peak_before / 1024),
              static_cast<unsigned long long>(peak_after / 1024));
  if (kRssBoundsMeaningful) {
    EXPECT_LT(peak_after, peak_before + (16u << 20));
  }
  ExpectAgentAlive();
}

// A client that asks for a key log and then reads nothing (capctl stopped with SIGSTOP) while
// 64 MiB of valid key lines are appended: capd's peak RSS grows by less than the stream's queue
// (--max-queue-bytes 4MiB) plus 16 MiB (the follower's 1 MiB of pending lines, its 64 KiB reads,
// gRPC's few MiB in flight); once the client reads again, it ends cleanly.
TEST_F(KeyLogAttackTest, AClientThatReadsNothingLeavesCapdBounded) {
  const fs::path key_log = MakeKeyLog("flood.keys");
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(
      {"--tls-keylog-dir", keys_.string(), "--user", "nobody", "--max-queue-bytes", "4MiB"}));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl",
                                      {"-i", TestNetwork::kAgentInterface, "-w",
                                       File("flood.pcapng").string(), "--tls-keylog", "flood.keys"},
                                      &capctl));
  ASSERT_TRUE(WaitForFollowers(1)) << agent().Stderr();
  const uint64_t peak_before = PeakResident();
  ASSERT_TRUE(capctl->Signal(SIGSTOP));
  std::string block;
  while (block.size() < (1u << 20)) block += KeyLine();
  {
    std::ofstream out(key_log, std::ios::app | std::ios::binary);
    for (int i = 0; i < 64; ++i)
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  // The window measured, not a synchronisation: the bound holds at every instant (VmHWM is the
  // peak so far), so a follower slower than this only makes the test see less of the flood.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const uint64_t peak_after = PeakResident();
  std::printf("capd VmHWM: %llu kB with the stream, %llu kB after 64 MiB of keys unread\n",
              static_cast<unsigned long long>(peak_before / 1024),
              static_cast<unsigned long long>(peak_after / 1024));
  if (kRssBoundsMeaningful) {
    EXPECT_LT(peak_after, peak_before + (4u << 20) + (16u << 20));
  }
  ASSERT_TRUE(capctl->Signal(SIGCONT));
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ExpectExit(*capctl, 0);
  EXPECT_TRUE(WaitForFollowers(0));
  ExpectAgentAlive();
}

// Six clients each ask to follow a key log from an agent with --max-streams 4: four streams
// follow (one thread each), the other two are refused and start no thread; when the four end,
// no follower is left.
TEST_F(KeyLogAttackTest, FollowerThreadsAreBoundedByMaxStreams) {
  constexpr int kAllowed = 4;
  constexpr int kClients = 6;
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--tls-keylog-dir", keys_.string(), "--user", "nobody",
                                          "--max-streams", std::to_string(kAllowed)}));
  std::vector<std::unique_ptr<Subprocess>> clients(kClients);
  for (int i = 0; i < kClients; ++i) {
    std::string name = "many";
    name += std::to_string(i);
    MakeKeyLog(name + ".keys");
    ASSERT_NO_FATAL_FAILURE(
        StartStream(name,
                    {"-i", TestNetwork::kAgentInterface, "-w", File(name + ".pcapng").string(),
                     "--tls-keylog", name + ".keys"},
                    &clients[i], -1, /*wait_ready=*/i < kAllowed));
    if (i < kAllowed) {
      EXPECT_TRUE(WaitForFollowers(static_cast<size_t>(i + 1)));
    }
  }
  for (int i = kAllowed; i < kClients; ++i) {
    EXPECT_TRUE(clients[i]->WaitFor(kExitTimeout).has_value()) << clients[i]->Describe();
    EXPECT_FALSE(clients[i]->Running());
  }
  EXPECT_EQ(Followers(), static_cast<size_t>(kAllowed));
  for (int i = 0; i < kAllowed; ++i) {
    ASSERT_TRUE(clients[i]->Signal(SIGINT));
    ExpectExit(*clients[i], 0);
  }
  EXPECT_TRUE(WaitForFollowers(0));
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
