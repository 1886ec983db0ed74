// SignalWatcher (client/stream/signal_watcher.h): SIGINT and SIGTERM sent to the process reach
// the callback on the watcher's thread, and a watcher destroyed without any signal stops. It
// waits without a timeout and its destructor wakes it with a signal of its own, so a hang here
// would be a capctl that never exits (ctest's timeout catches it).
#include "client/stream/signal_watcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace capd::client {
namespace {

constexpr std::chrono::seconds kDeliveryTimeout{10};

// As capctl's main() does before any thread starts: the signals wait for the watcher.
class SignalWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { BlockTerminationSignals(); }
};

TEST_F(SignalWatcherTest, DeliversInterruptAndTerminateToTheCallback) {
  std::mutex mu;
  std::condition_variable arrived;
  std::vector<int> seen;
  auto wait_for = [&](size_t count) {
    std::unique_lock lock(mu);
    return arrived.wait_for(lock, kDeliveryTimeout, [&] { return seen.size() >= count; });
  };
  {
    SignalWatcher watcher([&](int signal_number) {
      std::lock_guard lock(mu);
      seen.push_back(signal_number);
      arrived.notify_all();
    });
    ASSERT_EQ(::kill(::getpid(), SIGINT), 0);
    ASSERT_TRUE(wait_for(1)) << "SIGINT never reached the callback";
    ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
    ASSERT_TRUE(wait_for(2)) << "SIGTERM never reached the callback";
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<int>{SIGINT, SIGTERM}));
}

TEST_F(SignalWatcherTest, StopsWhenDestroyedWithoutASignal) {
  std::atomic<int> calls{0};
  {
    SignalWatcher watcher([&](int) { ++calls; });
  }
  EXPECT_EQ(calls.load(), 0) << "the destructor's own wake-up reached the callback";
  // A second watcher works like the first: nothing of the first one's wake-up is left pending.
  std::atomic<int> later{0};
  {
    SignalWatcher watcher([&](int) { ++later; });
    ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
    const auto deadline = std::chrono::steady_clock::now() + kDeliveryTimeout;
    while (later.load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_EQ(later.load(), 1);
}

}  // namespace
}  // namespace capd::client
