#pragma once
// Turns SIGINT and SIGTERM into a callback on a thread of its own, so the reader thread can be
// interrupted through gRPC's TryCancel instead of a handler that may do almost nothing.
//
// BlockTerminationSignals() must run in main() before any thread starts (gRPC starts some), so
// that every thread inherits the blocked mask and only the watcher receives the signals.

#include <atomic>
#include <functional>
#include <thread>

namespace capd::client {

void BlockTerminationSignals();

class SignalWatcher {
 public:
  // on_signal runs on the watcher thread, once per signal received.
  explicit SignalWatcher(std::function<void(int)> on_signal);
  ~SignalWatcher();  // stops and joins the thread
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace capd::client
