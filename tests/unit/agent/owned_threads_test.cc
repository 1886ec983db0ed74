#include "agent/stream/owned_threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace capd::agent {
namespace {

TEST(OwnedThreadsTest, JoinAllWaitsForEveryThreadAndRefusesNewWork) {
  std::atomic<int> finished{0};
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  OwnedThreads threads;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(threads.Start("test-work", [&finished, released] {
      released.wait();
      ++finished;
    }));
  }
  EXPECT_EQ(threads.size(), 3u);
  release.set_value();
  threads.JoinAll();
  EXPECT_EQ(finished.load(), 3);
  EXPECT_EQ(threads.size(), 0u);
  bool ran = false;
  EXPECT_FALSE(threads.Start("late", [&ran] { ran = true; }));
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace capd::agent
