// agent/keylog under a hostile writer: a key log extended at once by a terabyte of no line ends
// (a sparse `truncate -s 1T`, which is also what a writer at GB/s looks like to a reader that
// falls behind). The tailer's work per wake and its memory stay bounded, and Stop ends the
// follower at once, so a stream that ends takes its thread with it (the thread is detached and
// holds the stream: were it left reading, streams ended under --max-streams would pile up
// threads). Also the followed name swapped for a link or a FIFO, and huge or binary names.
// Root-free: temp folders and sparse files.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
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

// The name swapped after the stream started (rename over it) for a symbolic link to a file
// outside the folder, a FIFO, a hard link to the outside file: the rotation check refuses each
// (it opens the name as safely as the start did) and keeps the old file; nothing written to the
// outside file is ever read.
TEST_F(KeyLogAttackTest, ANameSwappedForALinkOrAFifoIsNeverFollowed) {
  const fs::path outside = root_.parent_path() / (root_.filename().string() + "-outside.log");
  std::ofstream(outside) << "";
  auto folders = folders_;
  auto opened = folders_->OpenFile("sslkeys.log");
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  KeyLogTailer tailer(std::move(opened->file), [folders]() -> StatusOr<Fd> {
    auto again = folders->OpenFile("sslkeys.log");
    if (!again.ok()) return again.status();
    return std::move(again->file);
  });
  const fs::path swap = root_ / "swap";
  const auto swap_in = [&](const std::function<void()>& make) {
    std::error_code ignored;
    fs::remove(swap, ignored);
    make();
    fs::rename(swap, file_);  // atomically over the followed name
    std::ofstream(outside, std::ios::app) << Line();
    EXPECT_FALSE(tailer.CheckReplaced());
    auto read = tailer.ReadNew();
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read->lines, "");
  };
  swap_in([&] { fs::create_symlink(outside, swap); });
  swap_in([&] { ASSERT_EQ(::mkfifo(swap.c_str(), 0600), 0) << std::strerror(errno); });
  swap_in([&] { fs::create_hard_link(outside, swap); });
  std::error_code ignored;
  fs::remove(outside, ignored);
}

// A client's tls_keylog of a megabyte, or of control bytes: refused before any file is opened,
// with a message of bounded size that does not repeat the value.
TEST_F(KeyLogAttackTest, HugeAndBinaryNamesAreRefusedWithShortMessages) {
  const std::string huge(1 << 20, 'a');
  const std::string binary("sslkeys.log\0\x01\x1b[2J", 16);
  for (const std::string& name : {huge, binary, std::string("sslkeys.log\n")}) {
    auto opened = folders_->OpenFile(name);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument);
    EXPECT_LT(opened.status().message().size(), 200u) << opened.status().message();
  }
}

}  // namespace
}  // namespace capd::agent::keylog
