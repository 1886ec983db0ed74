// The links' throughput and the agents' drop episodes (client/stream/link_monitor.h), on a clock
// the test moves: what the live status and the summary will say, and when.

#include "client/stream/link_monitor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace capd::client {
namespace {

using Clock = LinkMonitor::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

LinkMonitor::Counters At(uint64_t bytes, uint64_t drops, milliseconds waited = milliseconds(0)) {
  return {bytes, drops, waited};
}

TEST(LinkMonitorTest, RateIsBytesPerSecondOverEachIntervalOfASecond) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  // Rounds within the first second keep the totals but measure nothing.
  EXPECT_TRUE(links.Update(t0 + milliseconds(300), {At(100'000, 0)}).empty());
  EXPECT_FALSE(links.rate_updated());
  EXPECT_EQ(links.received_bytes(), 100'000u);
  EXPECT_EQ(links.bytes_per_second(), 0);
  links.Update(t0 + milliseconds(1000), {At(2'500'000, 0)});
  EXPECT_TRUE(links.rate_updated());
  EXPECT_DOUBLE_EQ(links.bytes_per_second(), 2'500'000);
  // The next second: 0.5 MB by 1.5 s (no measurement yet), 1 MB by 2 s.
  links.Update(t0 + milliseconds(1500), {At(3'000'000, 0)});
  EXPECT_FALSE(links.rate_updated());
  EXPECT_DOUBLE_EQ(links.bytes_per_second(), 2'500'000);
  links.Update(t0 + milliseconds(2000), {At(3'500'000, 0)});
  EXPECT_DOUBLE_EQ(links.bytes_per_second(), 1'000'000);
  EXPECT_DOUBLE_EQ(links.seconds(), 2.0);
  EXPECT_EQ(links.dropping(), Bottleneck::kNone);
  EXPECT_EQ(links.worst(0), Bottleneck::kNone);
}

TEST(LinkMonitorTest, SeveralAgentsAddUp) {
  const Clock::time_point t0{};
  LinkMonitor links(2, t0);
  links.Update(t0 + seconds(1), {At(1'000'000, 0), At(250'000, 0)});
  EXPECT_DOUBLE_EQ(links.bytes_per_second(0), 1'000'000);
  EXPECT_DOUBLE_EQ(links.bytes_per_second(1), 250'000);
  EXPECT_DOUBLE_EQ(links.bytes_per_second(), 1'250'000);
  EXPECT_EQ(links.received_bytes(), 1'250'000u);
}

// Drops while the reader never waited: the link. One report per episode, however many seconds it
// lasts; a quiet kEpisodeQuiet ends it and the next drops begin another.
TEST(LinkMonitorTest, DropsWithoutWaitingAreTheLinksOncePerEpisode) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  links.Update(t0 + seconds(1), {At(250'000, 0)});
  auto began = links.Update(t0 + seconds(2), {At(500'000, 40)});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].feed, 0u);
  EXPECT_EQ(began[0].cause, Bottleneck::kLink);
  EXPECT_EQ(began[0].dropped, 40u);
  EXPECT_DOUBLE_EQ(began[0].received_bytes_per_second, 250'000);
  EXPECT_EQ(began[0].output_wait_share, 0);
  EXPECT_EQ(links.dropping(), Bottleneck::kLink);
  // Drops every second for 20 s: still the same episode.
  uint64_t drops = 40, bytes = 500'000;
  for (int s = 3; s <= 22; ++s) {
    drops += 40;
    bytes += 250'000;
    EXPECT_TRUE(links.Update(t0 + seconds(s), {At(bytes, drops)}).empty()) << s;
  }
  // Quiet, but not yet for kEpisodeQuiet.
  for (int s = 23; s < 22 + LinkMonitor::kEpisodeQuiet.count(); ++s) {
    EXPECT_TRUE(links.Update(t0 + seconds(s), {At(bytes, drops)}).empty()) << s;
    EXPECT_EQ(links.dropping(), Bottleneck::kLink) << s;
  }
  links.Update(t0 + seconds(22) + LinkMonitor::kEpisodeQuiet, {At(bytes, drops)});
  EXPECT_EQ(links.dropping(), Bottleneck::kNone);
  // A new episode.
  began = links.Update(t0 + seconds(40), {At(bytes, drops + 1)});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].dropped, drops + 1);
  EXPECT_EQ(links.worst(0), Bottleneck::kLink);
}

// Drops while the reader waited for the output (in this interval or the one before: the agent's
// count arrives about a second late): capctl's output, not the link.
TEST(LinkMonitorTest, DropsWhileTheReaderWaitedAreTheOutputs) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  links.Update(t0 + seconds(1), {At(5'000'000, 0, milliseconds(600))});
  auto began = links.Update(t0 + seconds(2), {At(6'000'000, 500, milliseconds(600))});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].cause, Bottleneck::kOutput);
  EXPECT_DOUBLE_EQ(began[0].output_wait_share, 0.6);
  EXPECT_EQ(links.dropping(), Bottleneck::kOutput);
  EXPECT_EQ(links.worst(0), Bottleneck::kOutput);
}

// The agent's count is queued behind the batches: after a stalled output it is merged once the
// output has caught up. Drops seen within kOutputMemory of the wait are the output's; later ones
// (a new episode) the link's.
TEST(LinkMonitorTest, DropsSeenSoonAfterTheOutputStalledAreStillTheOutputs) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  // A 3 s stall measured as one interval (the merger was blocked in its write).
  links.Update(t0 + seconds(3), {At(64'000'000, 0, milliseconds(2900))});
  auto began = links.Update(t0 + seconds(4), {At(70'000'000, 9000, milliseconds(2900))});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].cause, Bottleneck::kOutput);
  EXPECT_NEAR(began[0].output_wait_share, 2.9 / 3, 1e-9);
  // Quiet until the episode ends, then drops long after the wait: the link.
  links.Update(t0 + seconds(15), {At(71'000'000, 9000, milliseconds(2900))});
  EXPECT_EQ(links.dropping(), Bottleneck::kNone);
  began = links.Update(t0 + seconds(16), {At(72'000'000, 9100, milliseconds(2900))});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].cause, Bottleneck::kLink);
  EXPECT_EQ(links.worst(0), Bottleneck::kOutput);
}

// Waits shorter than kOutputWait are the merger's normal pace, not a bottleneck.
TEST(LinkMonitorTest, ShortWaitsStillBlameTheLink) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  links.Update(t0 + seconds(1), {At(1'000'000, 0, milliseconds(20))});
  auto began = links.Update(t0 + seconds(2), {At(2'000'000, 7, milliseconds(60))});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].cause, Bottleneck::kLink);
}

// A long stall is measured as one long interval (the merger measures nothing while it waits for
// the output): the wait counts in full, however small its share of that interval.
TEST(LinkMonitorTest, AWaitWithinALongIntervalStillBlamesTheOutput) {
  const Clock::time_point t0{};
  LinkMonitor links(1, t0);
  auto began = links.Update(t0 + seconds(8), {At(70'000'000, 30'000, milliseconds(400))});
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].cause, Bottleneck::kOutput);
  EXPECT_DOUBLE_EQ(began[0].output_wait_share, 0.05);
}

// The end of the session measures whatever time has passed, so drops counted in the agent's last
// statistics are not missed; an episode's cause turns to the output if the output held it later.
TEST(LinkMonitorTest, FinalUpdateMeasuresTheLastPartOfASecond) {
  const Clock::time_point t0{};
  LinkMonitor links(2, t0);
  links.Update(t0 + seconds(1), {At(100, 3), At(100, 0)});
  EXPECT_EQ(links.worst(0), Bottleneck::kLink);
  links.Update(t0 + seconds(2), {At(200, 9, milliseconds(900)), At(200, 0)});
  EXPECT_EQ(links.worst(0), Bottleneck::kOutput);
  auto began = links.Update(t0 + milliseconds(2200), {At(300, 9), At(300, 2)}, true);
  ASSERT_EQ(began.size(), 1u);
  EXPECT_EQ(began[0].feed, 1u);
  EXPECT_EQ(links.worst(1), Bottleneck::kLink);
  EXPECT_DOUBLE_EQ(links.bytes_per_second(1), 500);
  EXPECT_EQ(links.received_bytes(), 600u);
}

}  // namespace
}  // namespace capd::client
