#include "agent/service/stream_serializer.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"

namespace capd::agent {
namespace {

// The bytes gRPC would send for `buffer`, in order.
std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const auto& slice : slices)
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

// A batch as the capture thread builds it: `packets` packets of `size` bytes, two interfaces,
// a comment.
std::unique_ptr<v1::StreamResponse> Batch(int packets, uint32_t size) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  std::string bytes(size, '\0');
  for (int i = 0; i < packets; ++i) {
    for (uint32_t b = 0; b < size; ++b) bytes[b] = static_cast<char>(i * 31 + b);
    builder.Append(i % 2, 1'700'000'000'000'000'000ull + i, size + 4,
                   reinterpret_cast<const uint8_t*>(bytes.data()), size);
    if (i == 3) builder.CommentLast("decapsulated from VNI 7");
  }
  return builder.Finish();
}

class StreamSerializerTest : public ::testing::Test {
 protected:
  // The library's state for slices and buffers (what a channel or server would set up).
  grpc::internal::GrpcLibrary library_;
  std::shared_ptr<BlobPool> pool_ = std::make_shared<BlobPool>();
};

TEST_F(StreamSerializerTest, LargeBatchIsProtobufsBytesWithTheBlobAsItsOwnSlice) {
  auto message = Batch(1000, 1500);
  const std::string expected = message->SerializeAsString();
  const v1::PacketBatch before = message->packets();
  grpc::ByteBuffer buffer;
  SerializeForWrite(*message, pool_, buffer);
  EXPECT_EQ(Flatten(buffer), expected);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(buffer.Dump(&slices).ok());
  EXPECT_EQ(slices.size(), 3u);
  EXPECT_EQ(slices[1].size(), before.data().size());
  // The message keeps everything but its blob.
  EXPECT_TRUE(message->packets().data().empty());
  v1::PacketBatch without_blob = before;
  without_blob.clear_data();
  EXPECT_EQ(message->packets().SerializeAsString(), without_blob.SerializeAsString());
}

TEST_F(StreamSerializerTest, ParsesBackToTheSameBatch) {
  auto message = Batch(300, 64);
  const v1::StreamResponse copy = *message;
  grpc::ByteBuffer buffer;
  SerializeForWrite(*message, pool_, buffer);
  v1::StreamResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(buffer)));
  EXPECT_EQ(parsed.SerializeAsString(), copy.SerializeAsString());
  EXPECT_EQ(parsed.packets().data(), copy.packets().data());
  EXPECT_EQ(parsed.packets().comment(0), "decapsulated from VNI 7");
}

TEST_F(StreamSerializerTest, SmallBatchesAndOtherMessagesAreSerializedWhole) {
  auto small = Batch(2, 100);  // 200 bytes of blob: copied
  const std::string small_expected = small->SerializeAsString();
  v1::StreamResponse statistics;
  statistics.mutable_statistics()->add_interfaces()->set_packets_captured(42);
  v1::StreamResponse compressed;
  compressed.mutable_packets()->set_compression(v1::COMPRESSION_ZSTD);
  compressed.mutable_packets()->set_compressed(std::string(100000, 'z'));
  compressed.mutable_packets()->set_uncompressed_length(123456);
  for (v1::StreamResponse* message : {small.get(), &statistics, &compressed}) {
    const std::string expected = message->SerializeAsString();
    grpc::ByteBuffer buffer;
    SerializeForWrite(*message, pool_, buffer);
    EXPECT_EQ(Flatten(buffer), expected);
    EXPECT_EQ(message->SerializeAsString(), expected);  // untouched
  }
  EXPECT_EQ(small->packets().data().size(), 200u);
  EXPECT_EQ(pool_->kept(), 0u);
}

TEST_F(StreamSerializerTest, BlobComesBackToThePoolOnceGrpcLetsGo) {
  auto message = Batch(100, 1500);
  const size_t capacity = message->packets().data().capacity();
  {
    grpc::ByteBuffer buffer;
    SerializeForWrite(*message, pool_, buffer);
    grpc::ByteBuffer held_by_transport(buffer);  // gRPC's own reference, as while sending
    buffer.Clear();
    EXPECT_EQ(pool_->kept(), 0u);
  }
  EXPECT_EQ(pool_->kept(), 1u);
  std::string data;
  pool_->Take(data);
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(data.capacity(), capacity);
  EXPECT_EQ(pool_->kept(), 0u);
  // With the pool empty, a new blob is reserved to the largest one seen.
  std::string fresh;
  pool_->Take(fresh);
  EXPECT_GE(fresh.capacity(), capacity);
}

TEST_F(StreamSerializerTest, PoolKeepsABoundedNumberOfBlobs) {
  for (size_t i = 0; i < BlobPool::kMaxBlobs + 3; ++i) pool_->Give(std::string(8192, 'x'));
  EXPECT_EQ(pool_->kept(), BlobPool::kMaxBlobs);
}

}  // namespace
}  // namespace capd::agent
