#include "agent/stream/hold_policy.h"

#include <gtest/gtest.h>

#include <chrono>

namespace capd::agent {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr uint64_t kRing = 32 * 1024 * 1024;  // capd's default ring

// A drain of `packets` frames of `size` bytes that arrived at `rate` packets per second.
Drain DrainAt(uint64_t packets, uint64_t size, uint64_t rate) {
  return Drain{packets, packets * size, microseconds(packets * 1'000'000 / rate)};
}

TEST(HoldPolicyTest, LonePacketLeavesAtOnce) {
  // One packet after a 20 ms gap: the latency goal's case.
  EXPECT_FALSE(HoldPolicy::WorthHolding(Drain{1, 64, milliseconds(20)}, /*holding=*/false));
  EXPECT_FALSE(HoldPolicy::WorthHolding(Drain{1, 1514, milliseconds(20)}, false));
}

TEST(HoldPolicyTest, ModerateTrafficBelowBothThresholdsIsQuiet) {
  // 100 packets of 200 B in a 3 ms block (~33k packets/s, 20 KB): neither 256 packets nor 32 KiB.
  EXPECT_FALSE(HoldPolicy::WorthHolding(DrainAt(100, 200, 33'000), false));
}

TEST(HoldPolicyTest, SmallPacketsAtHighRateAreHeld) {
  // A 3 ms block at 300k packets/s of 64 B: 900 packets, ~58 KB.
  EXPECT_TRUE(HoldPolicy::WorthHolding(DrainAt(900, 64, 300'000), false));
  // 512 B at full rate (~290k/s) fills a 512 KiB batch in ~3.5 ms: still held.
  EXPECT_TRUE(HoldPolicy::WorthHolding(DrainAt(870, 512, 290'000), false));
}

TEST(HoldPolicyTest, LargePacketsAtFullRateAreNotHeld) {
  // 9000 B jumbo frames at 150k packets/s (~1.35 GB/s, a 25 Gbit/s link) fill a 2 MiB batch in
  // ~1.6 ms: no point waiting.
  EXPECT_FALSE(HoldPolicy::WorthHolding(DrainAt(450, 9000, 150'000), false));
  // 1500 B at 270k packets/s (~400 MB/s) needs ~5 ms: held, so its messages are full.
  EXPECT_TRUE(HoldPolicy::WorthHolding(DrainAt(800, 1500, 270'000), false));
}

TEST(HoldPolicyTest, AHoldGoesOnWhileTheBurstDoesAndEndsWithIt) {
  // During a hold any new packet keeps the batch waiting; a check that finds none ends it.
  EXPECT_TRUE(HoldPolicy::WorthHolding(DrainAt(10, 64, 1'000), /*holding=*/true));
  EXPECT_FALSE(HoldPolicy::WorthHolding(Drain{0, 0, milliseconds(20)}, /*holding=*/true));
}

TEST(HoldPolicyTest, RingIsReadByTheTimeABatchCouldHaveFilled) {
  // 512 B at 290k/s (~148 MB/s): a 2 MiB batch's worth in ~14 ms, long before a quarter of
  // the ring (~55 ms).
  const auto at_512 = HoldPolicy::RingCheckAfter(DrainAt(870, 512, 290'000), kRing);
  EXPECT_GE(at_512, milliseconds(13));
  EXPECT_LE(at_512, milliseconds(15));
  // 1500 B at 100k/s (150 MB/s): ~14 ms too.
  const auto at_1500 = HoldPolicy::RingCheckAfter(DrainAt(300, 1500, 100'000), kRing);
  EXPECT_GE(at_1500, milliseconds(13));
  EXPECT_LE(at_1500, milliseconds(15));
  // 64 B at 300k/s (19.2 MB/s) would take ~109 ms to fill 2 MiB: the hold's end comes first.
  EXPECT_EQ(HoldPolicy::RingCheckAfter(DrainAt(900, 64, 300'000), kRing), HoldPolicy::kMaxHold);
}

TEST(HoldPolicyTest, ASmallRingIsReadBeforeAQuarterOfItFills) {
  // --buffer-size 1M: a quarter (256 KiB) of ring at 64 B x 300k/s (144 B of ring each) lasts
  // ~6 ms, sooner than a batch fills.
  const auto check = HoldPolicy::RingCheckAfter(DrainAt(900, 64, 300'000), 1024 * 1024);
  EXPECT_GE(check, milliseconds(5));
  EXPECT_LE(check, milliseconds(7));
}

TEST(HoldPolicyTest, RingCheckStaysWithinOneMillisecondAndTheHold) {
  // A slow trickle would allow seconds: the hold's end comes first.
  EXPECT_EQ(HoldPolicy::RingCheckAfter(DrainAt(300, 64, 5'000), kRing), HoldPolicy::kMaxHold);
  // An empty drain (no rate known) waits for the hold's end too.
  EXPECT_EQ(HoldPolicy::RingCheckAfter(Drain{0, 0, milliseconds(10)}, kRing), HoldPolicy::kMaxHold);
  // A flood would allow microseconds: poll's resolution is 1 ms.
  EXPECT_EQ(HoldPolicy::RingCheckAfter(Drain{100000, 150'000'000, milliseconds(1)}, kRing),
            milliseconds(1));
}

}  // namespace
}  // namespace capd::agent
