// capctl stream --since: the time grammar.
#include <gtest/gtest.h>

#include "client/cli/options.h"

namespace capd::client {
namespace {

constexpr uint64_t kNow = 1'796'637'600'000'000'000ULL;  // 2026-12-07T10:00:00Z

TEST(Since, TimesBack) {
  EXPECT_EQ(ParseSince("5m", kNow).value(), kNow - 300'000'000'000ULL);
  EXPECT_EQ(ParseSince("90s", kNow).value(), kNow - 90'000'000'000ULL);
  EXPECT_EQ(ParseSince("1.5h", kNow).value(), kNow - 5'400'000'000'000ULL);
  EXPECT_EQ(ParseSince("2d", kNow).value(), kNow - 172'800'000'000'000ULL);
  EXPECT_EQ(ParseSince("0.25s", kNow).value(), kNow - 250'000'000ULL);
}

TEST(Since, Rfc3339) {
  EXPECT_EQ(ParseSince("2026-12-07T10:00:00Z", kNow).value(), kNow);
  EXPECT_EQ(ParseSince("2026-12-07T10:00:00.25Z", kNow).value(), kNow + 250'000'000ULL);
  EXPECT_EQ(ParseSince("2026-12-07T11:00:00+01:00", kNow).value(), kNow);
  EXPECT_EQ(ParseSince("2026-12-07T09:30:00-00:30", kNow).value(), kNow);
}

TEST(Since, NanosecondsSinceTheEpoch) {
  EXPECT_EQ(ParseSince("1796637600000000000", kNow).value(), kNow);
}

TEST(Since, RefusesWhatItCannotReadExactly) {
  for (const char* text :
       {"", "5", "300", "5x", "m", "-5m", "0s", "2026-12-07T10:00:00", "2026-12-07",
        "2026-13-07T10:00:00Z", "2026-12-07T10:00:00+1", "99999999999999999999999", "abc"}) {
    EXPECT_FALSE(ParseSince(text, kNow).ok()) << text;
  }
}

}  // namespace
}  // namespace capd::client
