#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "capfile/capture_writer.h"

namespace capd::capfile {
namespace {

// A FIFO reader (Wireshark, tshark) drains in bursts; the default 64 KiB pipe buffer makes a
// writer block on every batch. 1 MiB is the default /proc/sys/fs/pipe-max-size, so an
// unprivileged process can usually get it.
constexpr int kPipeBufferBytes = 1 << 20;

void RaisePipeBuffer(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  // Never shrink a buffer someone already made larger. Failure (EPERM above pipe-max-size,
  // EBUSY when the pipe holds more than the new size) only costs throughput: ignored.
  const int current = ::fcntl(fd, F_GETPIPE_SZ);
  if (current >= kPipeBufferBytes) return;
  (void)::fcntl(fd, F_SETPIPE_SZ, kPipeBufferBytes);
}

// open() failures caused by the path the user gave, as opposed to the system failing.
bool IsPathError(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case EACCES:
    case EPERM:
    case EROFS:
    case ELOOP:
    case ENAMETOOLONG:
    case ETXTBSY:
      return true;
    default:
      return false;
  }
}

// The Status for an open() of `what` that failed with `err`: the user's path, or the system.
Status OpenError(const std::string& what, int err) {
  std::string message = "open(" + what + "): " + std::strerror(err);
  return IsPathError(err) ? InvalidArgument(std::move(message)) : Internal(std::move(message));
}

// Whether `path` names, through links, one of this process's own descriptors (/dev/stdout ->
// /proc/self/fd/1, /dev/fd/3): what it leads to is what capctl was handed, the user's choice.
bool NamesOwnDescriptor(std::string path) {
  const std::string own = "/proc/" + std::to_string(::getpid()) + "/fd";
  for (int hop = 0; hop < 8; ++hop) {
    const std::filesystem::path p(path);
    const std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
    if (char* dir = ::realpath(parent.c_str(), nullptr)) {
      const bool mine = own == dir;
      std::free(dir);
      if (mine) return true;
    }
    char target[4096];
    const ssize_t n = ::readlink(path.c_str(), target, sizeof target);
    if (n <= 0 || static_cast<size_t>(n) == sizeof target) return false;
    const std::string text(target, static_cast<size_t>(n));
    path = text.front() == '/' ? text : (std::filesystem::path(parent) / text).string();
  }
  return false;
}

// Opens `path` for writing with `create_flags` (O_CREAT | O_TRUNC, or 0), following a symbolic
// link in the last component only as capture_writer.h says. Returns the fd or the refusal;
// *missing tells a path that does not exist (and is no link) from other failures.
StatusOr<int> OpenForWriting(const std::string& path, int create_flags, bool* missing) {
  *missing = false;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | create_flags, 0644);
  if (fd >= 0) return fd;
  if (errno != ELOOP) {
    *missing = errno == ENOENT;
    return OpenError(path, errno);
  }
  // ELOOP under O_NOFOLLOW: the last component is a link (or the path loops).
  struct stat link {};
  if (::lstat(path.c_str(), &link) != 0 || !S_ISLNK(link.st_mode)) return OpenError(path, ELOOP);
  if (NamesOwnDescriptor(path)) {
    const int own = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | create_flags, 0644);
    if (own < 0) return OpenError(path, errno);
    return own;
  }
  const std::string refused = "refusing to write through symbolic link " + path + ": it leads to ";
  // Neither created nor truncated through the link: the target is checked once it is open.
  const int target = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (target < 0) {
    if (errno == ENOENT) return InvalidArgument(refused + "nothing (name the file itself)");
    if (errno == EISDIR) return InvalidArgument(refused + "a folder");
    return OpenError(path, errno);
  }
  struct stat st {};
  if (::fstat(target, &st) != 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ||
      S_ISBLK(st.st_mode)) {
    ::close(target);
    return InvalidArgument(refused +
                           "a file (only links to FIFOs and devices are followed; name the "
                           "file itself)");
  }
  return target;
}

// Waits until a non-blocking fd (a FIFO or stdout inherited with O_NONBLOCK) accepts bytes.
// Returns errno on failure, 0 when writable (or when the next write() will report the error).
int WaitWritable(int fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLOUT, .revents = 0};
  while (::poll(&pfd, 1, -1) < 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

// A write(v) that returned -1 with `err`, in a loop whose contract is "writes everything or
// fails": nullopt to try again (EINTR; EAGAIN once the fd is writable), else the failure.
std::optional<Status> RetryOrFail(int fd, int err, const std::string& name, const char* call) {
  if (err == EINTR) return std::nullopt;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    if (const int poll_err = WaitWritable(fd); poll_err != 0) {
      return Internal("poll(" + name + "): " + std::strerror(poll_err));
    }
    return std::nullopt;
  }
  // SIGPIPE is ignored by the process, so a reader that closed its end shows up as EPIPE.
  if (err == EPIPE) return Unavailable("reader of " + name + " went away");
  return Internal(std::string(call) + "(" + name + "): " + std::strerror(err));
}

}  // namespace

FdSink::FdSink(int fd, bool owned, std::string name)
    : fd_(fd), owned_(owned), name_(std::move(name)) {}

FdSink::~FdSink() {
  // close() errors cannot be reported from here; on Linux the fd is released even on EINTR, so
  // it must not be retried.
  if (owned_ && fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<FdSink>> FdSink::OpenFile(const std::string& path) {
  bool missing = false;
  auto fd = OpenForWriting(path, O_CREAT | O_TRUNC, &missing);
  if (!fd.ok()) return fd.status();
  // Owned from here: a path naming an existing FIFO is opened like a file, then tuned as a pipe.
  std::unique_ptr<FdSink> sink(new FdSink(fd.value(), /*owned=*/true, path));
  RaisePipeBuffer(fd.value());
  return sink;
}

StatusOr<std::unique_ptr<FdSink>> FdSink::OpenFileOnFirstWrite(const std::string& path) {
  // Without O_CREAT/O_TRUNC: permission errors show now, the contents stay until the first write.
  bool missing = false;
  auto opened = OpenForWriting(path, 0, &missing);
  const int fd = opened.ok() ? opened.value() : -1;
  if (!opened.ok()) {
    if (!missing) return opened.status();  // a refused link, or the path cannot be opened
    // A new file: its folder must let us create it.
    const size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    if (::access(dir.c_str(), W_OK | X_OK) != 0) return OpenError(path, errno);
  }
  std::unique_ptr<FdSink> sink(new FdSink(fd, /*owned=*/true, path));
  sink->deferred_ = true;
  if (fd >= 0) RaisePipeBuffer(fd);
  return sink;
}

Status FdSink::OpenDeferred() {
  deferred_ = false;
  if (fd_ < 0) {
    auto opened = OpenFile(name_);
    if (!opened.ok()) return opened.status();
    std::swap(fd_, opened.value()->fd_);  // the temporary now owns -1
    return Status::Ok();
  }
  struct stat st {};
  // A FIFO or a device has nothing to truncate.
  if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && ::ftruncate(fd_, 0) != 0) {
    return Internal("truncate(" + name_ + "): " + std::strerror(errno));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<FdSink>> FdSink::CreateUnnamedIn(int dir_fd, const std::string& display,
                                                          mode_t mode, bool exact_mode) {
  const int fd = ::openat(dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    // EISDIR: a kernel without O_TMPFILE; EOPNOTSUPP: a file system without it.
    if (err == EOPNOTSUPP || err == EISDIR) {
      return Status(StatusCode::kFailedPrecondition,
                    "open(" + display + ", O_TMPFILE): " + std::strerror(err));
    }
    return OpenError(display + ", O_TMPFILE", err);
  }
  std::unique_ptr<FdSink> sink(new FdSink(fd, /*owned=*/true, display + " (unnamed)"));
  if (exact_mode && ::fchmod(fd, mode) != 0) {
    return Internal("chmod(" + display + " (unnamed)): " + std::strerror(errno));
  }
  return sink;
}

StatusOr<std::unique_ptr<FdSink>> FdSink::CreateIn(int dir_fd, const std::string& name,
                                                   const std::string& display, mode_t mode,
                                                   bool exact_mode) {
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return OpenError(display, errno);
  }
  const int fd =
      ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return OpenError(display, errno);
  std::unique_ptr<FdSink> sink(new FdSink(fd, /*owned=*/true, display));
  if (exact_mode && ::fchmod(fd, mode) != 0) {
    return Internal("chmod(" + display + "): " + std::strerror(errno));
  }
  return sink;
}

Status FdSink::PublishIn(int dir_fd, const std::string& name, const std::string& display) {
  // linkat through /proc/self/fd needs no privilege (AT_EMPTY_PATH would need
  // CAP_DAC_READ_SEARCH). An entry left under the same name (an earlier run's file, a planted
  // link) is removed first: linkat never follows the new name.
  const std::string self = "/proc/self/fd/" + std::to_string(fd_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (::linkat(AT_FDCWD, self.c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
      name_ = display;
      return Status::Ok();
    }
    if (errno != EEXIST || ::unlinkat(dir_fd, name.c_str(), 0) != 0) break;
  }
  return Internal("link(" + display + "): " + std::strerror(errno));
}

Status FdSink::Truncate(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return Internal("truncate(" + name_ + "): " + std::strerror(errno));
  }
  if (::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0) {
    return Internal("lseek(" + name_ + "): " + std::strerror(errno));
  }
  return Status::Ok();
}

std::unique_ptr<FdSink> FdSink::Stdout() {
  RaisePipeBuffer(STDOUT_FILENO);
  return std::unique_ptr<FdSink>(new FdSink(STDOUT_FILENO, /*owned=*/false, "stdout"));
}

std::unique_ptr<FdSink> FdSink::Adopt(int fd, std::string name) {
  std::unique_ptr<FdSink> sink(new FdSink(fd, /*owned=*/true, std::move(name)));
  RaisePipeBuffer(fd);
  return sink;
}

Status FdSink::Write(std::string_view bytes) {
  if (deferred_) CAPD_RETURN_IF_ERROR(OpenDeferred());
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      // write() of a non-zero count returning 0 would make this loop spin forever.
      return Internal("write(" + name_ + "): wrote nothing");
    }
    if (auto failed = RetryOrFail(fd_, errno, name_, "write")) return *std::move(failed);
  }
  return Status::Ok();
}

Status FdSink::WriteGather(std::span<const std::string_view> pieces) {
  if (pieces.size() == 1) return Write(pieces.front());
  if (deferred_) CAPD_RETURN_IF_ERROR(OpenDeferred());
  std::vector<iovec> iov;
  iov.reserve(pieces.size());
  for (const std::string_view piece : pieces) {
    if (!piece.empty()) iov.push_back({const_cast<char*>(piece.data()), piece.size()});
  }
  size_t next = 0;  // the first iovec not yet written in full
  while (next < iov.size()) {
    // The kernel takes at most IOV_MAX (1024 on Linux) at once.
    const int count = static_cast<int>(std::min<size_t>(iov.size() - next, IOV_MAX));
    const ssize_t n = ::writev(fd_, iov.data() + next, count);
    if (n > 0) {
      // A partial write: skip what was taken, and go on from inside the first iovec it cut.
      auto left = static_cast<size_t>(n);
      while (next < iov.size() && left >= iov[next].iov_len) left -= iov[next++].iov_len;
      if (left > 0) {
        iov[next].iov_base = static_cast<char*>(iov[next].iov_base) + left;
        iov[next].iov_len -= left;
      }
      continue;
    }
    if (n == 0) return Internal("writev(" + name_ + "): wrote nothing");
    if (auto failed = RetryOrFail(fd_, errno, name_, "writev")) return *std::move(failed);
  }
  return Status::Ok();
}

}  // namespace capd::capfile
