#pragma once
// Follows one stream's TLS key log (keylog_file.h) on a thread the caller provides (Run), and
// hands each run of new lines to the stream (StreamReactor::SendKeyLog), which queues them
// before the packet batches that come after: a key reaches the client before the packets it
// decrypts as long as it is read before the capture ring hands those packets over (its block
// timeout, 3 ms).
//
// How it wakes: inotify on the folder holding the file (a modification of any file there, a file
// created or moved in), so a line is read within microseconds of its write; and every
// kPollInterval anyway, which covers a folder inotify cannot watch (capd's user may not read
// it) and checks for a rotated file. Stop() wakes it through an eventfd.
//
// Memory per stream: the tailer's bounds, plus lines the stream could not queue (its queue full:
// a client that does not read), kept up to kMaxPendingBytes and retried; beyond, the oldest are
// dropped and counted (a client that reads nothing is ended by the stall timeout anyway).
//
// Thread-safety: Run on one thread, which it names kThreadName; Stop from any thread, any time
// (also before Run), and Run returns within one read of kMaxReadBytes.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/keylog/keylog_file.h"
#include "common/status.h"

namespace capd::agent::keylog {

class KeyLogFollower {
 public:
  static constexpr std::chrono::milliseconds kPollInterval{250};
  static constexpr size_t kMaxPendingBytes = 1 << 20;
  static constexpr char kThreadName[] = "capd-keylog";

  // Opens `requested` in `folders` (KeyLogFolders::OpenFile's refusals) and positions at its end.
  static StatusOr<std::unique_ptr<KeyLogFollower>> Open(
      std::shared_ptr<const KeyLogFolders> folders, std::string_view requested);
  ~KeyLogFollower();
  KeyLogFollower(const KeyLogFollower&) = delete;
  KeyLogFollower& operator=(const KeyLogFollower&) = delete;

  // Takes lines (complete, each ending in '\n'); false when it could not take them now.
  using Deliver = std::function<bool(std::string lines)>;
  // Reads and delivers until Stop(). Never throws; a read error ends it (logged once).
  void Run(const Deliver& deliver);
  void Stop();

  // The file's path inside its folder, for logs.
  const std::string& path() const { return path_; }
  // Lines left out (not of the format) and lines dropped undelivered, so far.
  uint64_t dropped_lines() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  KeyLogFollower(std::string path, std::string parent, KeyLogTailer tailer, Fd wake);

  const std::string path_;
  const std::string parent_;
  KeyLogTailer tailer_;
  Fd wake_;  // eventfd
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace capd::agent::keylog
