#include "client/extcap/fifo_hold.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace capd::client {
namespace {

// How often to try again while the FIFO has no reader: dumpcap opens it within milliseconds of
// starting the extcap, so this adds at most one interval to the start of a capture.
constexpr std::chrono::milliseconds kRetryInterval{10};

}  // namespace

StatusOr<FifoHold> FifoHold::Open(const std::string& path, std::chrono::milliseconds wait) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Unavailable("--fifo " + path + ": " + std::strerror(errno));
  }
  if (!S_ISFIFO(st.st_mode)) return InvalidArgument("--fifo " + path + ": not a FIFO");
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    // O_NONBLOCK: a FIFO without a reader fails with ENXIO instead of blocking for ever.
    const int fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) return FifoHold(fd);
    if (errno == EINTR) continue;
    if (errno == ENOENT) return Unavailable("--fifo " + path + ": the reader removed it");
    if (errno != ENXIO) return Internal("open(" + path + "): " + std::strerror(errno));
    if (std::chrono::steady_clock::now() >= deadline) {
      return Unavailable("--fifo " + path + ": no reader opened it");
    }
    std::this_thread::sleep_for(kRetryInterval);
  }
}

FifoHold& FifoHold::operator=(FifoHold&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void FifoHold::Release() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace capd::client
