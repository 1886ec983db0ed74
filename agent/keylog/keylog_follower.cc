#include "agent/keylog/keylog_follower.h"

#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace capd::agent::keylog {

StatusOr<std::unique_ptr<KeyLogFollower>> KeyLogFollower::Open(
    std::shared_ptr<const KeyLogFolders> folders, std::string_view requested) {
  auto opened = folders->OpenFile(requested);
  if (!opened.ok()) return opened.status();
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return Internal(std::string("eventfd: ") + std::strerror(errno));
  // The name is opened again the same safe way to see whether it was rotated.
  auto reopen = [folders, name = std::string(requested)]() -> StatusOr<Fd> {
    auto again = folders->OpenFile(name);
    if (!again.ok()) return again.status();
    return std::move(again->file);
  };
  KeyLogTailer tailer(std::move(opened->file), std::move(reopen));
  return std::unique_ptr<KeyLogFollower>(new KeyLogFollower(
      std::move(opened->path), std::move(opened->parent), std::move(tailer), Fd(wake)));
}

KeyLogFollower::KeyLogFollower(std::string path, std::string parent, KeyLogTailer tailer, Fd wake)
    : path_(std::move(path)),
      parent_(std::move(parent)),
      tailer_(std::move(tailer)),
      wake_(std::move(wake)) {}

KeyLogFollower::~KeyLogFollower() = default;

void KeyLogFollower::Stop() {
  stop_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

void KeyLogFollower::Run(const Deliver& deliver) {
  // Named so that an operator (top -H, ps -L) and the tests can count the followers.
  ::pthread_setname_np(::pthread_self(), kThreadName);
  // The watch only wakes the loop; what is read comes from the descriptor opened safely, so a
  // folder swapped under this path name cannot change what is sent.
  Fd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (inotify.get() >= 0 &&
      ::inotify_add_watch(inotify.get(), parent_.c_str(),
                          IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW) < 0) {
    spdlog::debug("key log {}: no inotify watch on {} ({}); polling every {} ms", path_, parent_,
                  std::strerror(errno), kPollInterval.count());
    inotify = Fd();
  }
  std::string pending;
  bool said_truncated = false;
  bool said_replaced = false;
  bool said_skipped = false;
  auto last_check = std::chrono::steady_clock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    bool more = true;
    while (more && pending.size() < kMaxPendingBytes && !stop_.load(std::memory_order_acquire)) {
      auto read = tailer_.ReadNew();
      if (!read.ok()) {
        spdlog::warn("key log {}: {}; no more keys for this stream", path_,
                     read.status().message());
        return;
      }
      if (read->truncated) {
        // Whoever writes the file decides how often: said once at info, then at debug.
        spdlog::log(
            std::exchange(said_truncated, true) ? spdlog::level::debug : spdlog::level::info,
            "key log {} was truncated: reading from its start", path_);
      }
      if (read->skipped_bytes > 0) {
        spdlog::log(std::exchange(said_skipped, true) ? spdlog::level::debug : spdlog::level::info,
                    "key log {} grew faster than it is read: skipped {} bytes to its newest {}",
                    path_, read->skipped_bytes, KeyLogTailer::kMaxBacklogBytes);
      }
      dropped_.fetch_add(read->dropped, std::memory_order_relaxed);
      pending += read->lines;
      more = read->more;
    }
    if (pending.size() > kMaxPendingBytes) {
      // Whole lines off the front: the newest keys are the ones the coming packets need.
      const size_t cut = pending.find('\n', pending.size() - kMaxPendingBytes);
      size_t lines = 0;
      for (size_t i = 0; i <= cut && i < pending.size(); ++i) lines += pending[i] == '\n';
      dropped_.fetch_add(lines, std::memory_order_relaxed);
      pending.erase(0, cut + 1);
    }
    if (!pending.empty() && deliver(pending)) pending.clear();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_check >= kPollInterval && !more) {
      last_check = now;
      if (tailer_.CheckReplaced()) {
        spdlog::log(std::exchange(said_replaced, true) ? spdlog::level::debug : spdlog::level::info,
                    "key log {} was replaced: following the new file", path_);
        continue;
      }
    }
    if (more && pending.empty()) continue;  // more to read, and room for it
    // Undelivered lines are retried sooner than the poll: the queue drains in milliseconds.
    const int timeout_ms = pending.empty() ? static_cast<int>(kPollInterval.count()) : 20;
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {inotify.get(), POLLIN, 0}};
    const int ready = ::poll(fds, inotify.get() >= 0 ? 2 : 1, timeout_ms);
    if (ready > 0 && (fds[1].revents & POLLIN) != 0) {
      char events[4096];
      while (::read(inotify.get(), events, sizeof(events)) > 0) {
      }
    }
  }
}

}  // namespace capd::agent::keylog
