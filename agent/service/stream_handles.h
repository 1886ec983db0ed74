#pragma once
// The handles by which a stream's own client changes it (ChangeStream), and who may use each.
//
// A handle is 128 random bits (getrandom), given to the client that opened the stream (the
// Stream call's "capd-stream-handle" initial metadata) and to no one else. A change is honoured
// only from the principal that opened the stream (the same token, client certificate or local
// uid; CaptureService::Authorize names it): any other caller gets kNotFound, the same answer as
// for a handle that never existed, so a handle cannot be probed.
//
// Each stream's changes are bounded (ChangeBudget), so that no client can make capd recompile
// filters in a loop: a burst, then one per period; and one at a time.
//
// Thread-safety: every method is thread-safe (one mutex, held for a map lookup).

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "common/status.h"

namespace capd::agent {

struct ChangeBudget {
  int burst = 5;                           // changes allowed at once
  std::chrono::milliseconds period{2000};  // then one more per period
};

class StreamHandles {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr const char* kMetadataKey = "capd-stream-handle";
  static constexpr size_t kHandleBytes = 16;

  explicit StreamHandles(ChangeBudget budget = {}) : budget_(budget) {}

  // Registers `handle` (NewStreamHandle) for subscription `subscription` of `owner` (the
  // stream, for RemoveOwner), opened by `principal`.
  void Add(const std::string& handle, const std::string& principal, uint64_t subscription,
           const void* owner);
  // Forgets the handles of `owner` (its stream is gone).
  void RemoveOwner(const void* owner);

  // Starts a change of the stream behind `handle` for `principal`: its subscription, or
  // kNotFound (unknown handle, another principal), or kResourceExhausted (over the budget, or a
  // change of it still runs). Every success must be followed by EndChange.
  StatusOr<uint64_t> BeginChange(const std::string& handle, const std::string& principal,
                                 Clock::time_point now = Clock::now());
  void EndChange(const std::string& handle);

  size_t size() const;

 private:
  struct Entry {
    std::string principal;
    uint64_t subscription = 0;
    const void* owner = nullptr;
    double tokens = 0;  // changes it may make now (a token bucket of budget_.burst)
    Clock::time_point refilled;
    bool changing = false;
  };
  const ChangeBudget budget_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;  // by handle
};

// 16 bytes from getrandom(2) as hex; kInternal if the kernel cannot give them.
StatusOr<std::string> NewStreamHandle();

}  // namespace capd::agent
