#include "common/utc_text.h"

#include <gtest/gtest.h>

namespace capd {
namespace {

TEST(UtcNanosText, TheEpoch) { EXPECT_EQ(UtcNanosText(0), "1970-01-01T00:00:00.000000000Z"); }

TEST(UtcNanosText, EveryDigitOfTheFractionIsKept) {
  // 2026-12-07T15:30:00Z is 1796657400 s after the epoch (date -u -d @1796657400).
  EXPECT_EQ(UtcNanosText(1796657400'123456789ull), "2026-12-07T15:30:00.123456789Z");
  EXPECT_EQ(UtcNanosText(1796657400'000000001ull), "2026-12-07T15:30:00.000000001Z");
}

TEST(UtcNanosText, LeapDayAndTheLastNanosecondOfAYear) {
  EXPECT_EQ(UtcNanosText(951782400'000000000ull), "2000-02-29T00:00:00.000000000Z");
  EXPECT_EQ(UtcNanosText(1798761599'999999999ull), "2026-12-31T23:59:59.999999999Z");
}

}  // namespace
}  // namespace capd
