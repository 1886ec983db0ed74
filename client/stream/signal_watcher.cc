#include "client/stream/signal_watcher.h"

#include <csignal>
#include <ctime>

namespace capd::client {
namespace {
sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  const sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A reader that goes away must surface as EPIPE on write, handled as the end of the capture.
  std::signal(SIGPIPE, SIG_IGN);
}

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : thread_([this, on_signal = std::move(on_signal)] {
        const sigset_t set = TerminationSignals();
        const timespec poll_interval{0, 100'000'000};
        while (!done_.load()) {
          const int signal_number = sigtimedwait(&set, nullptr, &poll_interval);
          if (signal_number > 0) on_signal(signal_number);
        }
      }) {}

SignalWatcher::~SignalWatcher() {
  done_.store(true);
  thread_.join();
}

}  // namespace capd::client
