#include "client/stream/batch_recycler.h"

#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proto/capture.pb.h"

namespace capd::client {
namespace {

// A batch as the agent builds one: packets of the given lengths, each byte telling its packet
// and position apart, and a comment on the second.
v1::StreamResponse BatchMessage(const std::vector<uint32_t>& lengths, uint64_t first_ns) {
  v1::StreamResponse message;
  v1::PacketBatch& batch = *message.mutable_packets();
  for (size_t k = 0; k < lengths.size(); ++k) {
    for (uint32_t i = 0; i < lengths[k]; ++i) {
      batch.mutable_data()->push_back(static_cast<char>(k * 31 + i));
    }
    batch.add_interface_index(static_cast<uint32_t>(k % 3));
    batch.add_timestamp_ns(first_ns + k);
    batch.add_original_length(lengths[k] + 4);
    batch.add_captured_length(lengths[k]);
  }
  if (lengths.size() > 1) {
    batch.add_comment_packet(1);
    batch.add_comment("the second");
  }
  return message;
}

// The message's bytes as gRPC hands them over: cut into slices of the given sizes (cycled), so
// that fields, lengths and packets straddle slice boundaries.
grpc::ByteBuffer Wire(const std::string& bytes, const std::vector<size_t>& slice_sizes) {
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  for (size_t k = 0; from < bytes.size(); ++k) {
    const size_t size = std::min(slice_sizes[k % slice_sizes.size()], bytes.size() - from);
    slices.emplace_back(bytes.data() + from, size);
    from += size;
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

void ExpectSame(const v1::StreamResponse& parsed, const v1::StreamResponse& expected) {
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, expected))
      << "parsed: " << parsed.ShortDebugString().substr(0, 400)
      << "\nexpected: " << expected.ShortDebugString().substr(0, 400);
}

TEST(BatchRecyclerTest, ABatchCutAnywhereParsesAsProtobufParsesIt) {
  BatchRecycler recycler(4);
  const v1::StreamResponse sent = BatchMessage({60, 1, 0, 1500, 61, 9000, 3, 64}, 1700000000);
  const std::string bytes = sent.SerializeAsString();
  for (const std::vector<size_t>& cuts : std::vector<std::vector<size_t>>{
           {bytes.size()}, {1}, {2, 3, 5, 7}, {100, 1}, {16384}, {4093, 3}}) {
    grpc::ByteBuffer wire = Wire(bytes, cuts);
    auto parsed = recycler.Parse(wire);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    ExpectSame(*parsed.value(), sent);
    EXPECT_EQ(wire.Length(), bytes.size());  // left as it was
  }
}

TEST(BatchRecyclerTest, OtherPayloadsAndUnknownOnesParseAsProtobufParsesThem) {
  BatchRecycler recycler(4);
  v1::StreamResponse statistics;
  statistics.mutable_statistics()->add_interfaces()->set_packets_captured(7);
  v1::StreamResponse description;
  description.mutable_interface()->set_name("eth0");
  v1::StreamResponse empty_batch;
  empty_batch.mutable_packets();
  // Field 15, length 1: a payload no build knows. Not a batch, and no payload at all.
  const std::string unknown("\x7a\x01\x00", 3);
  // A batch and then statistics in one message (no agent sends that): the oneof's last field
  // wins, as in protobuf's own parse.
  const std::string batch_then_statistics =
      BatchMessage({10, 20}, 5).SerializeAsString() + statistics.SerializeAsString();
  for (const std::string& bytes :
       {statistics.SerializeAsString(), description.SerializeAsString(),
        empty_batch.SerializeAsString(), unknown, batch_then_statistics,
        BatchMessage({10}, 1).SerializeAsString() + BatchMessage({20}, 2).SerializeAsString()}) {
    v1::StreamResponse expected;
    ASSERT_TRUE(expected.ParseFromString(bytes));
    grpc::ByteBuffer wire = Wire(bytes, {3});
    auto parsed = recycler.Parse(wire);
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    ExpectSame(*parsed.value(), expected);
    EXPECT_EQ(parsed.value()->payload_case(), expected.payload_case());
  }
}

TEST(BatchRecyclerTest, BytesThatAreNotAMessageAreRefused) {
  BatchRecycler recycler(4);
  std::string truncated = BatchMessage({100, 200}, 1).SerializeAsString();
  truncated.resize(truncated.size() - 50);
  for (const std::string& bytes :
       {truncated, std::string("\x12\xff\xff\xff\xff\x0f", 6), std::string("\xff\xff\xff", 3)}) {
    grpc::ByteBuffer wire = Wire(bytes, {4});
    auto parsed = recycler.Parse(wire);
    EXPECT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  }
}

// The point of the recycler: once a message is dropped, the next batch is parsed into its
// memory. A fresh batch would hold a 10-byte blob in a string of about that capacity.
TEST(BatchRecyclerTest, ADroppedBatchsMemoryHoldsTheNextOne) {
  BatchRecycler recycler(4);
  const std::string large = BatchMessage(std::vector<uint32_t>(1000, 1000), 1).SerializeAsString();
  const std::string small = BatchMessage({10}, 2).SerializeAsString();
  grpc::ByteBuffer large_wire = Wire(large, {65536});
  auto first = recycler.Parse(large_wire);
  ASSERT_TRUE(first.ok());
  const char* memory = first.value()->packets().data().data();
  EXPECT_EQ(recycler.spares(), 0u);
  first.value().reset();
  EXPECT_EQ(recycler.spares(), 1u);

  grpc::ByteBuffer small_wire = Wire(small, {7});
  auto second = recycler.Parse(small_wire);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(recycler.spares(), 0u);
  const v1::PacketBatch& batch = second.value()->packets();
  EXPECT_EQ(batch.data().data(), memory);
  EXPECT_GE(batch.data().capacity(), 1000u * 1000u);
  EXPECT_GE(batch.captured_length().Capacity(), 1000);
  v1::StreamResponse expected;
  ASSERT_TRUE(expected.ParseFromString(small));
  ExpectSame(*second.value(), expected);  // nothing of the large batch is left in it
}

TEST(BatchRecyclerTest, KeepsAtMostItsSparesAndOutlivesNothing) {
  auto recycler = std::make_unique<BatchRecycler>(2);
  const std::string bytes = BatchMessage({100}, 1).SerializeAsString();
  std::vector<std::shared_ptr<v1::StreamResponse>> held;
  for (int k = 0; k < 5; ++k) {
    grpc::ByteBuffer wire = Wire(bytes, {50});
    auto parsed = recycler->Parse(wire);
    ASSERT_TRUE(parsed.ok());
    held.push_back(std::move(parsed).value());
  }
  held.pop_back();
  held.pop_back();
  held.pop_back();
  EXPECT_EQ(recycler->spares(), 2u);
  // A message dropped after its recycler (the writer may hold one past the feed's end).
  recycler.reset();
  held.clear();
}

}  // namespace
}  // namespace capd::client
