#pragma once
// Opening and tailing the TLS key log a client asks capd to follow (StreamRequest.tls_keylog).
//
// KeyLogFolders: the folders capd may read key logs from (capd --tls-keylog-dir, repeatable),
// opened once at start-up (before privileges drop: a folder given is a folder that exists). A
// client names a file by a name relative to one of them, or by an absolute path that starts with
// one; capd never opens a path a client names as such: it walks the name component by component
// from the folder's descriptor (openat, O_NOFOLLOW), so "..", ".", symbolic links (anywhere in
// the name), and anything but a regular file with one link are refused, and a folder that is
// renamed or replaced later cannot redirect it. The file is opened as capd's user (--user): it
// must be readable by that user (group or world), as must the folders on the way.
//
// KeyLogTailer: reads what was appended to the open file since the last call, complete lines
// only (a partial last line waits for its end), keeps the lines of the NSS format
// (keylog_lines.h), and bounds its memory: a line longer than kMaxLineBytes is skipped to its
// end, at most kMaxReadBytes are read per call, and a backlog beyond kMaxBacklogBytes (a file
// grown faster than it is read, or extended at once: `truncate -s 1T`) is skipped to its newest
// kMaxBacklogBytes, so the work per byte written is bounded and never outruns Stop. A file that
// shrank (truncated) is read again from its start; a file replaced under its name (rotated: renamed
// away, a new one created) is read to its end, then the new one from its start (CheckReplaced).
// Thread-safety: none; one thread owns a tailer.

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace capd::agent::keylog {

// An owned file descriptor (closed by the destructor).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// A key log found inside an allowed folder.
struct OpenedKeyLog {
  Fd file;             // O_RDONLY, a regular file
  std::string path;    // folder path + "/" + the name, for messages and inotify
  std::string parent;  // the folder holding the file (path without its last component)
};

class KeyLogFolders {
 public:
  // Opens each folder (realpath, then O_PATH | O_DIRECTORY). kInvalidArgument naming the folder
  // when one is missing or not a folder; an empty list is kInvalidArgument too (no folders is
  // "no KeyLogFolders at all").
  static StatusOr<std::shared_ptr<const KeyLogFolders>> Open(const std::vector<std::string>& dirs);

  // The file `requested` names (see the header comment). kInvalidArgument for a name that is
  // empty, too long, not printable, has "." or ".." components, leaves every folder (an absolute
  // path outside them), goes through a symbolic link, names something other than a regular
  // file, a file with other hard links, or that capd's user may not read; kNotFound when it does
  // not exist. Messages name the request and say why.
  StatusOr<OpenedKeyLog> OpenFile(std::string_view requested) const;

  // "/run/keys, /var/log/app" for messages.
  std::string Describe() const;

 private:
  struct Folder {
    std::string path;  // canonical, no trailing "/" (except "/" itself)
    Fd fd;             // O_PATH | O_DIRECTORY
  };
  explicit KeyLogFolders(std::vector<Folder> folders) : folders_(std::move(folders)) {}
  StatusOr<OpenedKeyLog> OpenIn(const Folder& folder, std::string_view relative,
                                std::string_view requested) const;

  std::vector<Folder> folders_;
};

class KeyLogTailer {
 public:
  // Reads at most this much per ReadNew call (the caller calls again while `more`).
  static constexpr size_t kMaxReadBytes = 64 * 1024;
  // The most of a file's unread end read at all: older bytes beyond it are skipped (the newest
  // keys are the ones coming packets need; the follower keeps at most 1 MiB of them anyway).
  static constexpr uint64_t kMaxBacklogBytes = 4 << 20;

  // Follows `file` from its current end (lines written before the stream started belong to
  // connections whose handshakes it cannot have captured). `reopen` opens the same name again
  // (KeyLogFolders::OpenFile), for CheckReplaced; may be empty (no rotation check).
  KeyLogTailer(Fd file, std::function<StatusOr<Fd>()> reopen);
  // From `offset` instead of the end (unit tests).
  KeyLogTailer(Fd file, std::function<StatusOr<Fd>()> reopen, uint64_t offset);

  struct Read {
    std::string lines;           // accepted complete lines, each ending in '\n'
    size_t dropped = 0;          // lines that are not of the format (or too long)
    bool more = false;           // kMaxReadBytes were read: call again
    bool truncated = false;      // the file had shrunk: reading started again at 0
    uint64_t skipped_bytes = 0;  // unread bytes beyond kMaxBacklogBytes, not read at all
  };
  // What was appended since the last call. kInternal for a read error.
  StatusOr<Read> ReadNew();

  // Whether the name now leads to another file (rotation). If so, and the old file has been
  // read to its end (call ReadNew until !more first), switches to the new one, from its start,
  // and returns true. A name that is gone for now keeps the old file.
  bool CheckReplaced();

  uint64_t offset() const { return offset_; }

 private:
  Fd file_;
  std::function<StatusOr<Fd>()> reopen_;
  uint64_t offset_ = 0;
  std::string partial_;    // the start of a line whose end has not been written yet
  bool skipping_ = false;  // inside an over-long line: drop up to its end
  std::string chunk_;      // read buffer, kept between calls
};

}  // namespace capd::agent::keylog
