// IsValidUtf8 against the byte sequences RFC 3629 and Unicode's table 3-7 rule out: overlong
// forms, UTF-16 surrogates, code points above U+10FFFF, stray continuation bytes and sequences
// cut short, each next to its nearest valid neighbour.

#include "common/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace capd {
namespace {

TEST(Utf8Test, AsciiAndEmptyAreValid) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("udp port 53"));
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));  // NUL is a code point
  EXPECT_TRUE(IsValidUtf8("\x7f"));
}

TEST(Utf8Test, EachLengthAtItsBoundsIsValid) {
  EXPECT_TRUE(IsValidUtf8("\xc2\x80"));                // U+0080
  EXPECT_TRUE(IsValidUtf8("\xdf\xbf"));                // U+07FF
  EXPECT_TRUE(IsValidUtf8("\xe0\xa0\x80"));            // U+0800
  EXPECT_TRUE(IsValidUtf8("\xed\x9f\xbf"));            // U+D7FF, below the surrogates
  EXPECT_TRUE(IsValidUtf8("\xee\x80\x80"));            // U+E000, above them
  EXPECT_TRUE(IsValidUtf8("\xef\xbf\xbf"));            // U+FFFF
  EXPECT_TRUE(IsValidUtf8("\xf0\x90\x80\x80"));        // U+10000
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));        // U+10FFFF
  EXPECT_TRUE(IsValidUtf8("eth0 \xc3\xa9t\xc3\xa9"));  // "été"
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x93\xa6 box"));    // U+1F4E6
}

TEST(Utf8Test, OverlongFormsAreRefused) {
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));                  // NUL in two bytes
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));                  // '/' in two bytes
  EXPECT_FALSE(IsValidUtf8("\xc1\xbf"));                  // U+007F in two bytes
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));              // '/' in three bytes
  EXPECT_FALSE(IsValidUtf8("\xe0\x9f\xbf"));              // U+07FF in three bytes
  EXPECT_FALSE(IsValidUtf8("\xf0\x80\x80\xaf"));          // '/' in four bytes
  EXPECT_FALSE(IsValidUtf8("\xf0\x8f\xbf\xbf"));          // U+FFFF in four bytes
  EXPECT_FALSE(IsValidUtf8("\xf8\x80\x80\x80\xaf"));      // five-byte form
  EXPECT_FALSE(IsValidUtf8("\xfc\x80\x80\x80\x80\xaf"));  // six-byte form
}

TEST(Utf8Test, SurrogatesAreRefused) {
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));              // U+D800
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));              // U+DFFF
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\xbd\xed\xb2\xa9"));  // a CESU-8 pair
}

TEST(Utf8Test, CodePointsAboveU10FFFFAreRefused) {
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf7\xbf\xbf\xbf"));  // U+1FFFFF
  EXPECT_FALSE(IsValidUtf8("\xfe"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

TEST(Utf8Test, TruncatedSequencesAreRefused) {
  EXPECT_FALSE(IsValidUtf8("\xc3"));
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x9f\x93"));
  EXPECT_FALSE(IsValidUtf8("abc\xf0\x9f"));
  // Cut short by the next character rather than the end.
  EXPECT_FALSE(IsValidUtf8("\xc3 a"));
  EXPECT_FALSE(IsValidUtf8("\xe2\x82z"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x9f\x93\xc3\xa9"));
}

TEST(Utf8Test, StrayContinuationBytesAreRefused) {
  EXPECT_FALSE(IsValidUtf8("\x80"));
  EXPECT_FALSE(IsValidUtf8("\xbf"));
  EXPECT_FALSE(IsValidUtf8("a\x80z"));
  EXPECT_FALSE(IsValidUtf8("\xc3\xa9\xa9"));  // one continuation too many
  EXPECT_FALSE(IsValidUtf8("eth0\xff"));
}

}  // namespace
}  // namespace capd
