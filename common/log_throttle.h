#pragma once
// At most a few log lines per interval for an event a client can repeat at will (refused
// connections, refused streams), so that a client cannot fill the disk or the journal through
// capd's log. The lines that were held back are counted, and the next line that passes says how
// many.
//
// Thread-safety: Admit() may be called from any thread.

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>

namespace capd {

class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;

  LogThrottle(size_t lines_per_interval, Clock::duration interval)
      : lines_per_interval_(lines_per_interval), interval_(interval) {}

  // nullopt: do not log this one. Otherwise log it, and mention the returned count of lines held
  // back since the last one logged (0: none).
  std::optional<size_t> Admit(Clock::time_point now = Clock::now()) {
    std::lock_guard lock(mutex_);
    if (now - interval_start_ >= interval_) {
      interval_start_ = now;
      logged_in_interval_ = 0;
    }
    if (logged_in_interval_ >= lines_per_interval_) {
      ++held_back_;
      return std::nullopt;
    }
    ++logged_in_interval_;
    const size_t held_back = held_back_;
    held_back_ = 0;
    return held_back;
  }

 private:
  const size_t lines_per_interval_;
  const Clock::duration interval_;
  std::mutex mutex_;
  Clock::time_point interval_start_{};
  size_t logged_in_interval_ = 0;
  size_t held_back_ = 0;
};

// " (N such lines held back)" to append to a line that Admit() let through, or "" for none.
inline std::string HeldBackNote(size_t held_back) {
  return held_back == 0 ? "" : " (" + std::to_string(held_back) + " such lines held back)";
}

// The throttle of lines about refused requests (a refused stream, fetch or recording), which a
// client may repeat as fast as it likes: 10 lines a minute.
inline LogThrottle& RefusalLogThrottle() {
  static LogThrottle throttle(10, std::chrono::minutes(1));
  return throttle;
}

}  // namespace capd
