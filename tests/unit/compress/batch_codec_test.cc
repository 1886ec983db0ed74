// compress/batch_codec.h: one zstd stream per call, one flushed part per batch.

#include "compress/batch_codec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/compress/real_batches.h"

namespace capd::compress {
namespace {

std::unique_ptr<BatchCompressor> NewCompressor() {
  auto made = BatchCompressor::Create();
  EXPECT_TRUE(made.ok()) << made.status().message();
  return made.ok() ? std::move(*made) : nullptr;
}

std::unique_ptr<BatchDecompressor> NewDecompressor() {
  auto made = BatchDecompressor::Create();
  EXPECT_TRUE(made.ok()) << made.status().message();
  return made.ok() ? std::move(*made) : nullptr;
}

std::vector<std::string> SerializedRealBatches(size_t per_batch) {
  std::vector<std::string> out;
  for (const auto& batch : test::RealBatches(per_batch)) out.push_back(batch.SerializeAsString());
  return out;
}

TEST(BatchCodecTest, RealBatchesComeBackByteForByteInOrder) {
  for (size_t per_batch : {1, 4, 1000}) {
    SCOPED_TRACE(std::to_string(per_batch) + " packets per batch");
    const auto batches = SerializedRealBatches(per_batch);
    ASSERT_GE(batches.size(), 1u);
    auto compressor = NewCompressor();
    auto decompressor = NewDecompressor();
    size_t in = 0, out = 0;
    for (const std::string& batch : batches) {
      std::string part, plain;
      ASSERT_TRUE(compressor->Compress(batch, part).ok());
      ASSERT_TRUE(decompressor->Decompress(part, batch.size(), plain).ok());
      EXPECT_TRUE(plain == batch);
      in += batch.size();
      out += part.size();
    }
    EXPECT_EQ(compressor->bytes_in(), in);
    EXPECT_EQ(compressor->bytes_out(), out);
    EXPECT_LT(out, in) << "real captures compress";
  }
}

TEST(BatchCodecTest, AnEmptyBatchIsAValidPart) {
  auto compressor = NewCompressor();
  auto decompressor = NewDecompressor();
  std::string part, plain = "stale";
  ASSERT_TRUE(compressor->Compress("", part).ok());
  ASSERT_TRUE(decompressor->Decompress(part, 0, plain).ok());
  EXPECT_TRUE(plain.empty());
  // The stream goes on after it.
  ASSERT_TRUE(compressor->Compress("after", part).ok());
  ASSERT_TRUE(decompressor->Decompress(part, 5, plain).ok());
  EXPECT_EQ(plain, "after");
}

// The agent drops batches (a full queue) before it compresses them: what it sends is still one
// unbroken stream.
TEST(BatchCodecTest, ABatchDroppedBeforeCompressionLeavesTheStreamDecodable) {
  const auto batches = SerializedRealBatches(2);
  ASSERT_GE(batches.size(), 6u);
  auto compressor = NewCompressor();
  auto decompressor = NewDecompressor();
  for (size_t i = 0; i < batches.size(); ++i) {
    if (i % 3 == 1) continue;  // dropped: never compressed, never sent
    std::string part, plain;
    ASSERT_TRUE(compressor->Compress(batches[i], part).ok());
    ASSERT_TRUE(decompressor->Decompress(part, batches[i].size(), plain).ok()) << i;
    EXPECT_TRUE(plain == batches[i]) << i;
  }
}

// Why drops must happen before compression: a part refers back to earlier parts, so one lost
// after compression breaks what follows.
TEST(BatchCodecTest, APartLostAfterCompressionBreaksTheNextOne) {
  const std::string batch = SerializedRealBatches(1000).front();
  auto compressor = NewCompressor();
  auto decompressor = NewDecompressor();
  std::string first, second, plain;
  ASSERT_TRUE(compressor->Compress(batch, first).ok());
  ASSERT_TRUE(compressor->Compress(batch, second).ok());  // the same bytes: refers to the first
  EXPECT_LT(second.size(), first.size() / 4);
  const Status decoded = decompressor->Decompress(second, batch.size(), plain);
  EXPECT_TRUE(!decoded.ok() || plain != batch);
}

TEST(BatchCodecTest, CorruptPartsAreRefusedAndTheStreamStaysBroken) {
  const auto batches = SerializedRealBatches(4);
  ASSERT_GE(batches.size(), 2u);
  auto compressor = NewCompressor();
  std::string part;
  ASSERT_TRUE(compressor->Compress(batches[0], part).ok());

  {  // bytes flipped in the middle of the part
    auto decompressor = NewDecompressor();
    std::string flipped = part, plain;
    for (size_t i = flipped.size() / 3; i < flipped.size(); i += 7) flipped[i] ^= 0x5a;
    const Status decoded = decompressor->Decompress(flipped, batches[0].size(), plain);
    EXPECT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.code(), StatusCode::kInvalidArgument);
    EXPECT_LE(plain.size(), batches[0].size() + 1);
  }
  {  // truncated: decodes to fewer bytes than announced
    auto decompressor = NewDecompressor();
    std::string plain;
    const Status decoded =
        decompressor->Decompress(part.substr(0, part.size() / 2), batches[0].size(), plain);
    EXPECT_FALSE(decoded.ok());
    // ... and every later part is refused, even a good one.
    EXPECT_FALSE(decompressor->Decompress(part, batches[0].size(), plain).ok());
  }
  {  // a length that does not match, either way
    auto decompressor = NewDecompressor();
    std::string plain;
    EXPECT_FALSE(decompressor->Decompress(part, batches[0].size() - 1, plain).ok());
    auto other = NewDecompressor();
    EXPECT_FALSE(other->Decompress(part, batches[0].size() + 1, plain).ok());
  }
  {  // not zstd at all, and nothing
    auto decompressor = NewDecompressor();
    std::string plain;
    EXPECT_FALSE(decompressor->Decompress("not a zstd frame", 16, plain).ok());
    auto other = NewDecompressor();
    EXPECT_FALSE(other->Decompress("", 16, plain).ok());
  }
}

TEST(BatchCodecTest, LevelsOutsideTheRangeAreRefused) {
  EXPECT_FALSE(BatchCompressor::Create(0).ok());
  EXPECT_FALSE(BatchCompressor::Create(22).ok());
  EXPECT_TRUE(BatchCompressor::Create(3).ok());
}

}  // namespace
}  // namespace capd::compress
