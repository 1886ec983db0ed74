#pragma once
// A one-shot stop request another thread can make and a capture loop can poll() for.

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "proto/capture.pb.h"

namespace capd::agent {

class StopSignal {
 public:
  StopSignal() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~StopSignal() {
    if (fd_ >= 0) close(fd_);
  }
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // Thread-safe; the first reason wins.
  void Request(v1::StreamEnd::Reason reason) {
    int expected = v1::StreamEnd::REASON_UNSPECIFIED;
    reason_.compare_exchange_strong(expected, reason);
    const uint64_t one = 1;
    if (fd_ >= 0) [[maybe_unused]]
      auto n = write(fd_, &one, sizeof one);
  }
  bool requested() const { return reason_.load() != v1::StreamEnd::REASON_UNSPECIFIED; }
  v1::StreamEnd::Reason reason() const {
    return static_cast<v1::StreamEnd::Reason>(reason_.load());
  }
  // Readable once Request() was called.
  int fd() const { return fd_; }

 private:
  int fd_;
  std::atomic<int> reason_{v1::StreamEnd::REASON_UNSPECIFIED};
};

}  // namespace capd::agent
