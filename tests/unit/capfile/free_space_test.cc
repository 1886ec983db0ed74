// The free-space floor's policy (capfile/free_space.h): what a ring below its floor deletes and
// when it stops, and the --record-keep-free grammar. Pure functions, no disk.

#include "capfile/free_space.h"

#include <gtest/gtest.h>

#include <vector>

namespace capd::capfile {
namespace {

constexpr uint64_t kMiB = 1 << 20;

TEST(FreeSpaceFloorTest, ParsesSizesPercentagesAndOff) {
  EXPECT_EQ(ParseFreeSpaceFloor("2GiB")->bytes, 2ULL << 30);
  EXPECT_EQ(ParseFreeSpaceFloor("2GiB")->percent, 0u);
  EXPECT_EQ(ParseFreeSpaceFloor("500M")->bytes, 500'000'000u);
  EXPECT_EQ(ParseFreeSpaceFloor("10%")->percent, 10u);
  EXPECT_EQ(ParseFreeSpaceFloor("10%")->bytes, 0u);
  EXPECT_TRUE(ParseFreeSpaceFloor("0")->off());
  EXPECT_TRUE(ParseFreeSpaceFloor("0%")->off());
  for (const char* bad : {"", "%", "101%", "-1", "1.5%", "5 %", "x", "10%%", "1Q"}) {
    EXPECT_FALSE(ParseFreeSpaceFloor(bad).has_value()) << bad;
  }
}

TEST(FreeSpaceFloorTest, TheLargerOfSizeAndShareIsTheFloor) {
  const uint64_t disk = 100ULL << 30;  // 100 GiB: 5 % is 5 GiB
  EXPECT_EQ(FloorBytes(kDefaultRecordKeepFree, disk), 5ULL << 30);
  EXPECT_EQ(FloorBytes(kDefaultRecordKeepFree, 8 * kMiB), 1ULL << 30);  // small disk: 1 GiB
  EXPECT_EQ(FloorBytes({3 * kMiB, 0}, 8 * kMiB), 3 * kMiB);
  EXPECT_EQ(FloorBytes({0, 50}, 8 * kMiB), 4 * kMiB);
  EXPECT_EQ(FloorBytes({}, disk), 0u);
  EXPECT_EQ(FloorBytes({0, 100}, UINT64_MAX), UINT64_MAX);  // no overflow
  EXPECT_EQ(DescribeFloor(kDefaultRecordKeepFree), "1073741824 bytes or 5%");
  EXPECT_EQ(DescribeFloor({}), "off");
}

TEST(FreeSpaceFloorTest, AboveTheFloorNothingHappens) {
  const std::vector<FloorFile> files = {{kMiB, false}, {kMiB, false}, {kMiB, false}};
  const FloorDecision d = DecideFloor(10 * kMiB, 4 * kMiB, files, 1);
  EXPECT_TRUE(d.remove.empty());
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.free_after, 10 * kMiB);
}

TEST(FreeSpaceFloorTest, NoFloorNeverDeletesNorStops) {
  const std::vector<FloorFile> files = {{kMiB, false}, {kMiB, false}};
  const FloorDecision d = DecideFloor(0, 0, files, 0);
  EXPECT_TRUE(d.remove.empty());
  EXPECT_FALSE(d.stop);
}

// Files kept past the ring's size for their upload go, oldest first, only as many as the floor
// needs.
TEST(FreeSpaceFloorTest, BelowTheFloorTheOldestFilesPastTheRingGoUntilItIsBack) {
  const std::vector<FloorFile> files = {
      {kMiB, false}, {kMiB, false}, {kMiB, false}, {kMiB, false}, {kMiB, false}};
  // 2.5 MiB free, floor 4 MiB: two files bring it to 4.5 MiB.
  const FloorDecision d = DecideFloor(5 * kMiB / 2, 4 * kMiB, files, 2);
  EXPECT_EQ(d.remove, (std::vector<size_t>{0, 1}));
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.free_after, 9 * kMiB / 2);
}

// Never below the ring's normal size: when that is not enough, the ring stops.
TEST(FreeSpaceFloorTest, DownToTheRingsSizeAndStillBelowStops) {
  const std::vector<FloorFile> files = {{kMiB, false}, {kMiB, false}, {kMiB, true}, {kMiB, true}};
  const FloorDecision d = DecideFloor(0, 10 * kMiB, files, 2);
  EXPECT_EQ(d.remove, (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.free_after, 2 * kMiB);
}

// A ring within its size (no upload, or everything uploaded) with the disk filled by someone
// else: nothing of the ring is deleted, it stops.
TEST(FreeSpaceFloorTest, ARingWithinItsSizeStopsAtOnce) {
  const std::vector<FloorFile> files = {{kMiB, true}, {kMiB, true}};
  const FloorDecision d = DecideFloor(kMiB, 2 * kMiB, files, 2);
  EXPECT_TRUE(d.remove.empty());
  EXPECT_TRUE(d.stop);
}

// capctl --min-free: files already handed off go, oldest first and even within the ring's size;
// a file whose hand-off has not succeeded is passed over, never deleted.
TEST(FreeSpaceFloorTest, MinFreeDeletesHandedOffFilesWithinTheRingAndPassesOverHeldOnes) {
  const std::vector<FloorFile> files = {{kMiB, false}, {kMiB, true}, {kMiB, false}, {kMiB, true}};
  const FloorDecision d = DecideFloor(kMiB, 3 * kMiB, files, 3, kMinFreeFloorPolicy);
  EXPECT_EQ(d.remove, (std::vector<size_t>{1, 3}));
  EXPECT_FALSE(d.stop);
  EXPECT_EQ(d.free_after, 3 * kMiB);
}

TEST(FreeSpaceFloorTest, MinFreeWithOnlyHeldFilesLeftStops) {
  const std::vector<FloorFile> files = {{kMiB, false}, {kMiB, true}};
  const FloorDecision d = DecideFloor(0, 4 * kMiB, files, 0, kMinFreeFloorPolicy);
  EXPECT_EQ(d.remove, (std::vector<size_t>{1}));
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.free_after, kMiB);
}

TEST(FreeSpaceFloorTest, ARingFitsWhenItsFullSizeStaysAboveTheFloor) {
  EXPECT_TRUE(RingFits(10 * kMiB, 14 * kMiB, 0, 4 * kMiB));
  EXPECT_FALSE(RingFits(10 * kMiB, 13 * kMiB, 0, 4 * kMiB));
  EXPECT_TRUE(RingFits(10 * kMiB, 10 * kMiB, 4 * kMiB, 4 * kMiB));  // its files count as room
  EXPECT_FALSE(RingFits(1, 3 * kMiB, 0, 4 * kMiB));
  EXPECT_TRUE(RingFits(100 * kMiB, 100 * kMiB, 0, 0));
}

}  // namespace
}  // namespace capd::capfile
