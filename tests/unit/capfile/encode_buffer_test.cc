#include "capfile/encode_buffer.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace capd::capfile::internal {
namespace {

TEST(EncodeBufferTest, AppendsLikeAString) {
  EncodeBuffer buffer;
  EXPECT_TRUE(buffer.empty());
  buffer.append("abc", 3);
  buffer.append(std::string_view("de"));
  buffer.append(2, 'x');
  EXPECT_EQ(std::string_view(buffer), "abcdexx");
  buffer.resize(9);
  EXPECT_EQ(std::string_view(buffer), std::string_view("abcdexx\0\0", 9));
  buffer.resize(3);
  EXPECT_EQ(std::string_view(buffer), "abc");
}

// Growing past the capacity moves the bytes written so far; what GrowUninitialized returns
// is the new tail, after them.
TEST(EncodeBufferTest, GrowingKeepsTheBytesWrittenSoFar) {
  EncodeBuffer buffer;
  std::string expected;
  for (int k = 0; k < 1000; ++k) {
    const std::string piece(static_cast<size_t>(k % 37 + 1), static_cast<char>('a' + k % 26));
    char* tail = buffer.GrowUninitialized(piece.size());
    EXPECT_EQ(tail, buffer.data() + expected.size());
    piece.copy(tail, piece.size());
    expected += piece;
  }
  EXPECT_EQ(std::string_view(buffer), expected);
  EXPECT_GE(buffer.capacity(), expected.size());
}

// A writer clears its buffer at every Flush: the next round reuses the same memory, no new
// allocation (so no fresh pages to fault in) while it fits.
TEST(EncodeBufferTest, ClearKeepsTheMemoryForTheNextRound) {
  EncodeBuffer buffer;
  buffer.reserve(1 << 16);
  const char* memory = buffer.data();
  for (int round = 0; round < 10; ++round) {
    buffer.clear();
    EXPECT_TRUE(buffer.empty());
    EXPECT_EQ(buffer.GrowUninitialized(1 << 16), memory);
    EXPECT_EQ(buffer.capacity(), size_t{1} << 16);
  }
}

}  // namespace
}  // namespace capd::capfile::internal
