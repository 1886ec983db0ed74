#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "capfile/capture_writer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::capfile {
namespace {

using testing::ReadFileBytes;
using testing::TempDir;
using testing::UniqueFd;

constexpr int kWantedPipeBytes = 1 << 20;

class FdSinkTest : public ::testing::Test {
 protected:
  // capd ignores SIGPIPE process-wide; the tests do the same so EPIPE arrives as an errno.
  static void SetUpTestSuite() { ::signal(SIGPIPE, SIG_IGN); }
};

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

Pipe MakePipe() {
  Pipe pipe;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return pipe;
  pipe.read_end = UniqueFd(fds[0]);
  pipe.write_end = UniqueFd(fds[1]);
  return pipe;
}

// Reads until EOF into *out (runs on its own thread while the sink writes).
void DrainInto(int fd, std::string* out) {
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      out->append(chunk, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      return;
    }
  }
}

int PipeMaxSize() {
  std::ifstream in("/proc/sys/fs/pipe-max-size");
  int value = 0;
  in >> value;
  return value;
}

TEST_F(FdSinkTest, OpenFileWritesAndTruncates) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("out.bin");
  { std::ofstream(path) << "old contents that must disappear"; }

  auto sink = FdSink::OpenFile(path);
  ASSERT_TRUE(sink.ok()) << sink.status().message();
  ASSERT_TRUE((*sink)->Write("hello ").ok());
  ASSERT_TRUE((*sink)->Write("").ok());
  ASSERT_TRUE((*sink)->Write("world").ok());
  sink.value().reset();

  EXPECT_EQ(ReadFileBytes(path), "hello world");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0644 & ~mask);
}

TEST_F(FdSinkTest, OpenFileOnFirstWriteTouchesNothingUntilThen) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string existing = dir.File("earlier.pcapng");
  const std::string fresh = dir.File("new.pcapng");
  { std::ofstream(existing) << "an earlier capture"; }

  auto kept = FdSink::OpenFileOnFirstWrite(existing);
  auto created = FdSink::OpenFileOnFirstWrite(fresh);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  ASSERT_TRUE(created.ok()) << created.status().message();
  EXPECT_EQ(ReadFileBytes(existing), "an earlier capture");
  EXPECT_FALSE(std::filesystem::exists(fresh));

  ASSERT_TRUE((*kept)->Write("new").ok());
  ASSERT_TRUE((*created)->Write("first").ok());
  ASSERT_TRUE((*created)->Write(" second").ok());
  kept.value().reset();
  created.value().reset();
  EXPECT_EQ(ReadFileBytes(existing), "new");
  EXPECT_EQ(ReadFileBytes(fresh), "first second");

  // Bad paths still fail at once, with the path and the reason.
  auto missing_dir = FdSink::OpenFileOnFirstWrite("/nonexistent-capd-dir/out.pcapng");
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_EQ(missing_dir.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing_dir.status().message().find("/nonexistent-capd-dir/out.pcapng"),
            std::string::npos);
}

TEST_F(FdSinkTest, OpenFileErrorNamesPathAndReason) {
  const std::string path = "/nonexistent-capd-dir/out.pcapng";
  auto sink = FdSink::OpenFile(path);
  ASSERT_FALSE(sink.ok());
  EXPECT_EQ(sink.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(sink.status().message().find(path), std::string::npos) << sink.status().message();
  EXPECT_NE(sink.status().message().find(std::strerror(ENOENT)), std::string::npos)
      << sink.status().message();
}

TEST_F(FdSinkTest, ClosedReaderIsUnavailable) {
  Pipe pipe = MakePipe();
  ASSERT_GE(pipe.write_end.get(), 0);
  pipe.read_end.Reset();
  auto sink = FdSink::Adopt(pipe.write_end.Release(), "test-fifo");

  const Status status = sink->Write("nobody reads this");
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "reader of test-fifo went away");
}

TEST_F(FdSinkTest, OtherWriteErrorsAreInternalAndNameTheSink) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("read-only");
  { std::ofstream(path) << "x"; }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_GE(fd.get(), 0);
  auto sink = FdSink::Adopt(fd.Release(), "read-only-file");

  const Status status = sink->Write("data");  // EBADF: not open for writing
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_NE(status.message().find("read-only-file"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(std::strerror(EBADF)), std::string::npos) << status.message();
}

TEST_F(FdSinkTest, RaisesPipeBufferToOneMebibyte) {
  Pipe pipe = MakePipe();
  ASSERT_GE(pipe.write_end.get(), 0);
  const int write_fd = pipe.write_end.Release();
  auto sink = FdSink::Adopt(write_fd, "pipe");

  // Without privilege the kernel caps the size at pipe-max-size; the sink then keeps going.
  const int expected =
      geteuid() == 0 ? kWantedPipeBytes : std::min(kWantedPipeBytes, PipeMaxSize());
  EXPECT_GE(::fcntl(write_fd, F_GETPIPE_SZ), expected);
}

// Writes far more than the pipe holds, so write() returns partial counts (and, for a
// non-blocking fd, EAGAIN) that the sink must continue after.
void ExpectLargeWriteArrivesWhole(bool non_blocking, bool gather = false) {
  Pipe pipe = MakePipe();
  ASSERT_GE(pipe.write_end.get(), 0);
  if (non_blocking) {
    const int flags = ::fcntl(pipe.write_end.get(), F_GETFL);
    ASSERT_EQ(::fcntl(pipe.write_end.get(), F_SETFL, flags | O_NONBLOCK), 0);
  }
  std::string sent(8 << 20, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 131 + (i >> 16));

  std::string received;
  std::thread reader(DrainInto, pipe.read_end.get(), &received);
  {
    auto sink = FdSink::Adopt(pipe.write_end.Release(), "pipe");
    Status status;
    if (gather) {
      // More pieces than writev takes at once (IOV_MAX), of uneven sizes, some empty, so that
      // partial writes end inside pieces and between them.
      std::vector<std::string_view> pieces;
      for (size_t at = 0, k = 0; at < sent.size(); ++k) {
        const size_t size = std::min(sent.size() - at, k % 5 == 0 ? size_t{0} : k * 37 % 4099);
        pieces.emplace_back(sent.data() + at, size);
        at += size;
      }
      EXPECT_GT(pieces.size(), 2048u);
      status = sink->WriteGather(pieces);
    } else {
      status = sink->Write(sent);
    }
    EXPECT_TRUE(status.ok()) << status.message();
  }  // closes the write end: the reader sees EOF
  reader.join();
  EXPECT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent);
}

TEST_F(FdSinkTest, LargeWriteThroughPipeArrivesWhole) { ExpectLargeWriteArrivesWhole(false); }

TEST_F(FdSinkTest, LargeWriteThroughNonBlockingPipeArrivesWhole) {
  ExpectLargeWriteArrivesWhole(true);
}

TEST_F(FdSinkTest, LargeGatherWriteThroughPipeArrivesWhole) {
  ExpectLargeWriteArrivesWhole(false, /*gather=*/true);
}

TEST_F(FdSinkTest, LargeGatherWriteThroughNonBlockingPipeArrivesWhole) {
  ExpectLargeWriteArrivesWhole(true, /*gather=*/true);
}

TEST_F(FdSinkTest, GatherWriteToAClosedReaderIsUnavailable) {
  Pipe pipe = MakePipe();
  ASSERT_GE(pipe.write_end.get(), 0);
  pipe.read_end.Reset();
  auto sink = FdSink::Adopt(pipe.write_end.Release(), "test-fifo");
  const std::string_view pieces[] = {"nobody ", "reads ", "this"};
  const Status status = sink->WriteGather(pieces);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "reader of test-fifo went away");
}

TEST_F(FdSinkTest, AdoptClosesTheFd) {
  Pipe pipe = MakePipe();
  ASSERT_GE(pipe.write_end.get(), 0);
  const int fd = pipe.write_end.Release();
  FdSink::Adopt(fd, "pipe").reset();
  // Nothing else in this test opens fds between the two lines, so fd cannot have been reused.
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

// A link planted where -w points: a link to a regular file (or to nothing) is refused and the
// target keeps its bytes; a link to a FIFO or a device (/dev/stdout, /dev/null) is followed.
TEST_F(FdSinkTest, SymlinkIsFollowedOnlyToFifosAndDevices) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string target = dir.File("precious");
  { std::ofstream(target) << "keep me"; }
  const std::string to_file = dir.File("to-file.pcapng");
  const std::string dangling = dir.File("dangling.pcapng");
  ASSERT_EQ(::symlink(target.c_str(), to_file.c_str()), 0);
  ASSERT_EQ(::symlink(dir.File("nowhere").c_str(), dangling.c_str()), 0);
  for (const std::string& link : {to_file, dangling}) {
    auto now = FdSink::OpenFile(link);
    ASSERT_FALSE(now.ok()) << link;
    EXPECT_EQ(now.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(now.status().message().find("refusing to write through symbolic link " + link),
              std::string::npos)
        << now.status().message();
    auto later = FdSink::OpenFileOnFirstWrite(link);
    EXPECT_FALSE(later.ok()) << link;
  }
  EXPECT_EQ(ReadFileBytes(target), "keep me");
  EXPECT_FALSE(std::filesystem::exists(dir.File("nowhere")));

  const std::string to_null = dir.File("to-null.pcapng");
  ASSERT_EQ(::symlink("/dev/null", to_null.c_str()), 0);
  auto null_sink = FdSink::OpenFile(to_null);
  ASSERT_TRUE(null_sink.ok()) << null_sink.status().message();
  EXPECT_TRUE(null_sink.value()->Write("bytes").ok());
  const std::string fifo = dir.File("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string to_fifo = dir.File("to-fifo.pcapng");
  ASSERT_EQ(::symlink(fifo.c_str(), to_fifo.c_str()), 0);
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0);
  auto fifo_sink = FdSink::OpenFileOnFirstWrite(to_fifo);
  ASSERT_TRUE(fifo_sink.ok()) << fifo_sink.status().message();
  EXPECT_TRUE(fifo_sink.value()->Write("abc").ok());
  char got[3] = {};
  EXPECT_EQ(::read(reader.get(), got, sizeof got), 3);
  // /dev/stdout redirected to a file: a link to one of the process's own descriptors.
  const std::string own_file = dir.File("redirected");
  UniqueFd own(::open(own_file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_GE(own.get(), 0);
  const std::string to_own = dir.File("to-own.pcapng");
  ASSERT_EQ(::symlink(("/proc/self/fd/" + std::to_string(own.get())).c_str(), to_own.c_str()), 0);
  auto own_sink = FdSink::OpenFile(to_own);
  ASSERT_TRUE(own_sink.ok()) << own_sink.status().message();
  EXPECT_TRUE(own_sink.value()->Write("own").ok());
  own_sink.value().reset();
  EXPECT_EQ(ReadFileBytes(own_file), "own");
}

TEST_F(FdSinkTest, StdoutIsBorrowedNotClosed) {
  FdSink::Stdout().reset();
  EXPECT_NE(::fcntl(STDOUT_FILENO, F_GETFD), -1);
}

}  // namespace
}  // namespace capd::capfile
