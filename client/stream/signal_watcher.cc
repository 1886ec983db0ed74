#include "client/stream/signal_watcher.h"

#include <pthread.h>

#include <csignal>

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
        pthread_sigmask(SIG_BLOCK, &set, nullptr);  // so the destructor's signal waits for us
        // No timeout: a watcher that polled woke the process ten times a second for nothing.
        // The destructor wakes it with a signal of the set sent to this thread alone.
        while (true) {
          const int signal_number = sigwaitinfo(&set, nullptr);
          if (done_.load()) return;
          if (signal_number > 0) on_signal(signal_number);
        }
      }) {}

SignalWatcher::~SignalWatcher() {
  done_.store(true);
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

}  // namespace capd::client
