// client/stream/batch_decompression.h: capctl's receive path turns every batch of a call back
// into the plain batch the agent built, and passes plain batches through (an agent that ignores
// the request's compression field).

#include "client/stream/batch_decompression.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "compress/batch_codec.h"
#include "tests/unit/compress/real_batches.h"

namespace capd::client {
namespace {

using google::protobuf::util::MessageDifferencer;

// What capd's stream reactor sends for `plain` (agent/service/stream_reactor.cc).
v1::PacketBatch Compressed(compress::BatchCompressor& compressor, const v1::PacketBatch& plain) {
  const std::string serialized = plain.SerializeAsString();
  v1::PacketBatch batch;
  EXPECT_TRUE(compressor.Compress(serialized, *batch.mutable_compressed()).ok());
  batch.set_compression(v1::COMPRESSION_ZSTD);
  batch.set_uncompressed_length(static_cast<uint32_t>(serialized.size()));
  return batch;
}

TEST(BatchDecompressionTest, CompressedBatchesBecomeTheAgentsBatches) {
  const auto batches = test::RealBatches(3);
  ASSERT_GE(batches.size(), 3u);
  auto compressor = compress::BatchCompressor::Create().value();
  BatchDecompression decompression("ssh://capture-host");
  for (const auto& plain : batches) {
    v1::PacketBatch batch = Compressed(*compressor, plain);
    ASSERT_TRUE(decompression.Decode(batch).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(batch, plain));
  }
}

// A new capctl asks; an agent without compression (older, or one that could not make a
// compressor) sends plain batches, which arrive as they are.
TEST(BatchDecompressionTest, PlainBatchesPassThroughUntouched) {
  BatchDecompression decompression("10.0.0.5:50051");
  for (const auto& plain : test::RealBatches(5)) {
    v1::PacketBatch batch = plain;
    ASSERT_TRUE(decompression.Decode(batch).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(batch, plain));
  }
  v1::PacketBatch empty;
  EXPECT_TRUE(decompression.Decode(empty).ok());
}

TEST(BatchDecompressionTest, AnUndecodableBatchIsAnErrorNamingTheAgent) {
  const auto batches = test::RealBatches(3);
  auto compressor = compress::BatchCompressor::Create().value();
  BatchDecompression decompression("ssh://capture-host");
  v1::PacketBatch batch = Compressed(*compressor, batches[0]);
  std::string& bytes = *batch.mutable_compressed();
  for (size_t i = 4; i < bytes.size(); i += 5) bytes[i] ^= 0x33;
  const Status decoded = decompression.Decode(batch);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.message().find("agent ssh://capture-host sent a compressed batch (#1)"),
            std::string::npos)
      << decoded.message();
  // Later batches of the call cannot be trusted either.
  v1::PacketBatch next = Compressed(*compressor, batches[1]);
  EXPECT_FALSE(decompression.Decode(next).ok());
}

TEST(BatchDecompressionTest, ImplausibleBatchesAreRefusedBeforeDecoding) {
  BatchDecompression decompression("agent");
  v1::PacketBatch huge;
  huge.set_compression(v1::COMPRESSION_ZSTD);
  huge.set_uncompressed_length(BatchDecompression::kMaxUncompressedLength + 1);
  huge.set_compressed("x");
  Status decoded = decompression.Decode(huge);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.message().find("over capctl's"), std::string::npos) << decoded.message();

  v1::PacketBatch unknown;
  unknown.set_compression(static_cast<v1::Compression>(7));
  unknown.set_compressed("x");
  decoded = BatchDecompression("agent").Decode(unknown);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.message().find("unknown compression 7"), std::string::npos);

  // Content that decodes but is not a plain batch (a compressed one inside).
  auto compressor = compress::BatchCompressor::Create().value();
  v1::PacketBatch inner;
  inner.set_compression(v1::COMPRESSION_ZSTD);
  inner.set_compressed("nested");
  v1::PacketBatch nested = Compressed(*compressor, inner);
  decoded = BatchDecompression("agent").Decode(nested);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.message().find("not a plain PacketBatch"), std::string::npos);
}

}  // namespace
}  // namespace capd::client
