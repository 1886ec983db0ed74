#include "agent/keylog/keylog_file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/keylog/keylog_lines.h"

namespace capd::agent::keylog {
namespace {

// Longer than any path a person would give; keeps messages and the walk bounded.
constexpr size_t kMaxRequestBytes = 1024;

std::string Quoted(std::string_view text) {
  std::string quoted;
  quoted.reserve(text.size() + 2);
  quoted.push_back('\'');
  quoted.append(text);
  quoted.push_back('\'');
  return quoted;
}

std::string Errno(int err) { return std::strerror(err); }

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::shared_ptr<const KeyLogFolders>> KeyLogFolders::Open(
    const std::vector<std::string>& dirs) {
  if (dirs.empty()) return InvalidArgument("no key-log folders given");
  std::vector<Folder> folders;
  for (const std::string& dir : dirs) {
    char resolved[PATH_MAX];
    if (::realpath(dir.c_str(), resolved) == nullptr) {
      return InvalidArgument("--tls-keylog-dir " + dir + ": " + Errno(errno));
    }
    const int fd = ::open(resolved, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return InvalidArgument("--tls-keylog-dir " + dir + ": " + Errno(errno));
    folders.push_back({resolved, Fd(fd)});
  }
  return std::shared_ptr<const KeyLogFolders>(new KeyLogFolders(std::move(folders)));
}

std::string KeyLogFolders::Describe() const {
  std::string text;
  for (const Folder& folder : folders_) {
    if (!text.empty()) text += ", ";
    text += folder.path;
  }
  return text;
}

StatusOr<OpenedKeyLog> KeyLogFolders::OpenFile(std::string_view requested) const {
  if (requested.empty()) return InvalidArgument("the TLS key-log path is empty");
  if (requested.size() > kMaxRequestBytes) {
    return InvalidArgument("the TLS key-log path is longer than " +
                           std::to_string(kMaxRequestBytes) + " bytes");
  }
  for (const char c : requested) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return InvalidArgument("the TLS key-log path has a control character");
    }
  }
  if (requested.front() == '/') {
    for (const Folder& folder : folders_) {
      const std::string_view path = folder.path;
      const bool root = path == "/";
      if (!requested.starts_with(path)) continue;
      std::string_view rest = requested.substr(root ? 1 : path.size());
      if (!root && !rest.empty() && rest.front() != '/') continue;  // /keys2 is not in /keys
      while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
      return OpenIn(folder, rest, requested);
    }
    return InvalidArgument("TLS key log " + Quoted(requested) +
                           " is outside the folders capd may read key logs from (" + Describe() +
                           ")");
  }
  // A relative name: the first folder that has it.
  for (const Folder& folder : folders_) {
    auto opened = OpenIn(folder, requested, requested);
    if (opened.ok() || opened.status().code() != StatusCode::kNotFound) return opened;
  }
  return NotFound("TLS key log " + Quoted(requested) + " not found in " + Describe());
}

StatusOr<OpenedKeyLog> KeyLogFolders::OpenIn(const Folder& folder, std::string_view relative,
                                             std::string_view requested) const {
  std::vector<std::string_view> parts;
  while (!relative.empty()) {
    const size_t slash = relative.find('/');
    const std::string_view part = relative.substr(0, slash);
    if (part == "." || part == "..") {
      return InvalidArgument("TLS key log " + Quoted(requested) +
                             ": '.' and '..' are not allowed in the path");
    }
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string_view::npos) break;
    relative.remove_prefix(slash + 1);
    if (relative.empty()) {
      return InvalidArgument("TLS key log " + Quoted(requested) + " names a folder, not a file");
    }
  }
  if (parts.empty()) {
    return InvalidArgument("TLS key log " + Quoted(requested) + " names a folder, not a file");
  }
  const std::string refused = "TLS key log " + Quoted(requested) + ": ";
  std::string path = folder.path == "/" ? "" : folder.path;
  Fd current;
  int at = folder.fd.get();
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string name(parts[i]);
    const int fd = ::openat(at, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT) return NotFound(refused + name + " does not exist");
      if (err == ENOTDIR || err == ELOOP) {
        return InvalidArgument(refused + name +
                               " is not a folder (symbolic links are not followed)");
      }
      if (err == EACCES) {
        return InvalidArgument(refused + "capd's user may not enter " + path + "/" + name);
      }
      return InvalidArgument(refused + "open " + name + ": " + Errno(err));
    }
    current = Fd(fd);
    at = current.get();
    path += "/" + name;
  }
  const std::string parent = path.empty() ? "/" : path;
  const std::string name(parts.back());
  path += "/" + name;
  const int fd =
      ::openat(at, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return NotFound(refused + "no such file");
    if (err == ELOOP) return InvalidArgument(refused + "is a symbolic link (not followed)");
    if (err == EACCES) {
      return InvalidArgument(refused +
                             "capd's user may not read it (make it readable by capd's user or "
                             "group)");
    }
    return InvalidArgument(refused + "open: " + Errno(err));
  }
  Fd file(fd);
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return Internal(refused + "fstat: " + Errno(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument(refused + "is not a regular file");
  // A hard link planted in the folder could name a file from anywhere on the same file system.
  if (st.st_nlink > 1) return InvalidArgument(refused + "has other hard links");
  return OpenedKeyLog{std::move(file), path, parent};
}

KeyLogTailer::KeyLogTailer(Fd file, std::function<StatusOr<Fd>()> reopen)
    : file_(std::move(file)), reopen_(std::move(reopen)) {
  struct stat st;
  if (::fstat(file_.get(), &st) == 0) offset_ = static_cast<uint64_t>(st.st_size);
}

KeyLogTailer::KeyLogTailer(Fd file, std::function<StatusOr<Fd>()> reopen, uint64_t offset)
    : file_(std::move(file)), reopen_(std::move(reopen)), offset_(offset) {}

StatusOr<KeyLogTailer::Read> KeyLogTailer::ReadNew() {
  Read read;
  struct stat st;
  if (::fstat(file_.get(), &st) != 0) return Internal(std::string("fstat: ") + Errno(errno));
  if (static_cast<uint64_t>(st.st_size) < offset_) {
    // Truncated (a writer that starts the file again): what is there now is new.
    offset_ = 0;
    partial_.clear();
    skipping_ = false;
    read.truncated = true;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size - offset_ > kMaxBacklogBytes) {
    // Landing inside a line: drop up to its end, as for an over-long one.
    read.skipped_bytes = size - kMaxBacklogBytes - offset_;
    offset_ = size - kMaxBacklogBytes;
    partial_.clear();
    skipping_ = true;
  }
  chunk_.resize(kMaxReadBytes);
  const ssize_t n = ::pread(file_.get(), chunk_.data(), chunk_.size(), static_cast<off_t>(offset_));
  if (n < 0) return Internal(std::string("read: ") + Errno(errno));
  offset_ += static_cast<uint64_t>(n);
  read.more = static_cast<size_t>(n) == chunk_.size();
  std::string_view data(chunk_.data(), static_cast<size_t>(n));
  while (!data.empty()) {
    const size_t end = data.find('\n');
    if (skipping_) {
      if (end == std::string_view::npos) break;
      skipping_ = false;
      ++read.dropped;
      data.remove_prefix(end + 1);
      continue;
    }
    if (end == std::string_view::npos) {
      if (partial_.size() + data.size() > kMaxLineBytes) {
        partial_.clear();
        skipping_ = true;
      } else {
        partial_.append(data);
      }
      break;
    }
    partial_.append(data.substr(0, end + 1));
    data.remove_prefix(end + 1);
    if (partial_.size() > kMaxLineBytes + 2) {
      ++read.dropped;
    } else {
      read.dropped += AppendKeyLogLines(partial_, read.lines);
    }
    partial_.clear();
  }
  return read;
}

bool KeyLogTailer::CheckReplaced() {
  if (!reopen_) return false;
  auto reopened = reopen_();
  if (!reopened.ok()) return false;
  struct stat now, was;
  if (::fstat(reopened->get(), &now) != 0 || ::fstat(file_.get(), &was) != 0) return false;
  if (now.st_dev == was.st_dev && now.st_ino == was.st_ino) return false;
  if (static_cast<uint64_t>(was.st_size) > offset_) return false;  // the old one first
  file_ = std::move(reopened).value();
  offset_ = 0;
  partial_.clear();
  skipping_ = false;
  return true;
}

}  // namespace capd::agent::keylog
