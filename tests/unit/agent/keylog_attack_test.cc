// agent/keylog under a hostile writer: a key log extended at once by a terabyte of no line ends
// (a sparse `truncate -s 1T`, which is also what a writer at GB/s looks like to a reader that
// falls behind). The tailer's work per wake and its memory stay bounded, and Stop ends the
// follower at once, so a stream that ends takes its thread with it (the thread is detached and
// holds the stream: were it left reading, streams ended under --max-streams would pile up
// threads). Root-free: temp folders and sparse files.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "agent/keylog/keylog_file.h"
#include "agent/keylog/keylog_follower.h"

namespace capd::agent::keylog {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kTerabyte = uint64_t{1} << 40;

std::string Line() {
  return "CLIENT_RANDOM " + std::string(64, 'a') + " " + std::string(96, 'f') + "\n";
}

class KeyLogAttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "capd-keylog-attack-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    file_ = root_ / "sslkeys.log";
    std::ofstream(file_) << Line();
    auto folders = KeyLogFolders::Open({root_.string()});
    ASSERT_TRUE(folders.ok()) << folders.status().message();
    folders_ = std::move(folders).value();
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  // Extends the file to `size` without writing a byte (a hole reads as zeros: no line end).
  void Extend(uint64_t size) const {
    ASSERT_EQ(::truncate(file_.c_str(), static_cast<off_t>(size)), 0) << std::strerror(errno);
  }

  fs::path root_;
  fs::path file_;
  std::shared_ptr<const KeyLogFolders> folders_;
};

TEST_F(KeyLogAttackTest, TailerSkipsATerabyteBacklogToItsNewestBytes) {
  auto opened = folders_->OpenFile("sslkeys.log");
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  KeyLogTailer tailer(std::move(opened->file), {});
  const uint64_t start = tailer.offset();
  Extend(kTerabyte);
  size_t reads = 0;
  uint64_t skipped = 0;
  StatusOr<KeyLogTailer::Read> read = Internal("not read");
  do {
    read = tailer.ReadNew();
    ASSERT_TRUE(read.ok()) << read.status().message();
    skipped += read->skipped_bytes;
    EXPECT_TRUE(read->lines.empty());
    ++reads;
  } while (read->more && reads < 1000);
  // The bound: the newest kMaxBacklogBytes, kMaxReadBytes at a time (65 reads, not 16 million).
  EXPECT_EQ(skipped, kTerabyte - KeyLogTailer::kMaxBacklogBytes - start);
  EXPECT_LE(reads, KeyLogTailer::kMaxBacklogBytes / KeyLogTailer::kMaxReadBytes + 1);
  EXPECT_EQ(tailer.offset(), kTerabyte);
  // The zeros are one over-long line; the key after its end comes through.
  {
    std::ofstream out(file_, std::ios::app);
    out << "\n" << Line();
  }
  read = tailer.ReadNew();
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->lines, Line());
  EXPECT_EQ(read->dropped, 1u);
}

TEST_F(KeyLogAttackTest, FollowerStopsAtOnceWhileAFileGrowsWithoutLineEnds) {
  auto follower = KeyLogFollower::Open(folders_, "sslkeys.log");
  ASSERT_TRUE(follower.ok()) << follower.status().message();
  std::mutex mu;
  std::condition_variable changed;
  std::string delivered;
  auto done = std::async(std::launch::async, [&] {
    (*follower)->Run([&](std::string lines) {
      std::lock_guard lock(mu);
      delivered += lines;
      changed.notify_all();
      return true;
    });
  });
  // Grows by a terabyte again and again while followed, then a key: the key comes through.
  for (uint64_t size = kTerabyte; size <= 4 * kTerabyte; size += kTerabyte) Extend(size);
  {
    std::ofstream out(file_, std::ios::app);
    out << "\n" << Line();
  }
  {
    std::unique_lock lock(mu);
    // Hang guards, not timing assertions.
    EXPECT_TRUE(
        changed.wait_for(lock, std::chrono::seconds(20), [&] { return !delivered.empty(); }));
    EXPECT_EQ(delivered, Line());
  }
  Extend(6 * kTerabyte);
  (*follower)->Stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "Run did not return after Stop";
}

}  // namespace
}  // namespace capd::agent::keylog
