// Wireshark's FIFO held by the extcap (client/extcap/fifo_hold.h): a real FIFO in a temporary
// folder, read as dumpcap reads it.

#include "client/extcap/fifo_hold.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace capd::client {
namespace {

class FifoHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fifo_hold_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    fifo_ = (dir_ / "fifo").string();
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string fifo_;
};

TEST_F(FifoHoldTest, ReaderSeesTheEndOnlyWhenReleased) {
  // dumpcap's side: open for reading (non-blocking here, so the test needs no thread).
  const int reader = open(fifo_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  auto hold = FifoHold::Open(fifo_, std::chrono::seconds(5));
  ASSERT_TRUE(hold.ok()) << hold.status().message();
  EXPECT_TRUE(hold->held());

  // The capture's own writer comes and goes: the FIFO still has a writer, no end for the reader.
  const int writer = open(fifo_.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  ASSERT_EQ(write(writer, "x", 1), 1);
  close(writer);
  char byte;
  EXPECT_EQ(read(reader, &byte, 1), 1);
  EXPECT_EQ(read(reader, &byte, 1), -1) << "end of file while the FIFO is still held";
  EXPECT_EQ(errno, EAGAIN);

  hold->Release();
  EXPECT_FALSE(hold->held());
  EXPECT_EQ(read(reader, &byte, 1), 0) << "no end of file after Release";
  close(reader);
}

TEST_F(FifoHoldTest, NoReaderIsUnavailableInsteadOfBlocking) {
  auto hold = FifoHold::Open(fifo_, std::chrono::milliseconds(0));
  ASSERT_FALSE(hold.ok());
  EXPECT_EQ(hold.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(hold.status().message().find("no reader"), std::string::npos)
      << hold.status().message();
}

TEST_F(FifoHoldTest, PathThatIsNotAFifoOrIsGone) {
  const std::string file = (dir_ / "file").string();
  std::ofstream(file) << "x";
  auto not_fifo = FifoHold::Open(file, std::chrono::milliseconds(0));
  ASSERT_FALSE(not_fifo.ok());
  EXPECT_EQ(not_fifo.status().code(), StatusCode::kInvalidArgument);

  auto gone = FifoHold::Open((dir_ / "gone").string(), std::chrono::milliseconds(0));
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), StatusCode::kUnavailable);
}

TEST_F(FifoHoldTest, MovedHoldIsReleasedOnce) {
  const int reader = open(fifo_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  auto opened = FifoHold::Open(fifo_, std::chrono::seconds(5));
  ASSERT_TRUE(opened.ok());
  FifoHold hold = std::move(opened.value());
  EXPECT_FALSE(opened->held());
  {
    FifoHold other = std::move(hold);
    EXPECT_TRUE(other.held());
  }
  char byte;
  EXPECT_EQ(read(reader, &byte, 1), 0) << "the moved-to hold closed the FIFO at its end";
  close(reader);
}

}  // namespace
}  // namespace capd::client
