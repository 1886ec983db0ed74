#include "agent/stream/batch_builder.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace capd::agent {
namespace {

struct Record {
  uint32_t interface_index;
  uint64_t timestamp_ns;
  uint32_t original_length;
  std::string bytes;
};

// Decodes a batch by the contract in proto/capture.proto, from its serialized form.
std::vector<Record> DecodeWire(const std::string& wire) {
  v1::StreamResponse response;
  EXPECT_TRUE(response.ParseFromString(wire));
  EXPECT_TRUE(response.has_packets());
  const v1::PacketBatch& batch = response.packets();
  std::vector<Record> out;
  size_t offset = 0;
  for (int i = 0; i < batch.captured_length_size(); ++i) {
    out.push_back({batch.interface_index(i), batch.timestamp_ns(i), batch.original_length(i),
                   batch.data().substr(offset, batch.captured_length(i))});
    offset += batch.captured_length(i);
  }
  EXPECT_EQ(offset, batch.data().size());
  return out;
}

TEST(BatchBuilderTest, RoundTripsRecordsThroughTheWire) {
  const std::vector<Record> in = {{0, 1700000000123456789ULL, 60, std::string("\x01\x02\x03", 3)},
                                  {0, 1700000000123456790ULL, 1514, std::string(96, 'x')},
                                  {1, 18446744073709551615ULL, 1, std::string("\0", 1)},
                                  {0, 5, 0, ""}};
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  for (const Record& r : in) {
    builder.Append(r.interface_index, r.timestamp_ns, r.original_length,
                   reinterpret_cast<const uint8_t*>(r.bytes.data()),
                   static_cast<uint32_t>(r.bytes.size()));
  }
  EXPECT_EQ(builder.packet_count(), in.size());
  const std::string wire = builder.Finish()->SerializeAsString();
  const std::vector<Record> out = DecodeWire(wire);
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].interface_index, in[i].interface_index) << i;
    EXPECT_EQ(out[i].timestamp_ns, in[i].timestamp_ns) << i;
    EXPECT_EQ(out[i].original_length, in[i].original_length) << i;
    EXPECT_EQ(out[i].bytes, in[i].bytes) << i;
  }
  EXPECT_FALSE(builder.started());
}

// A client whose -c ends inside a shared batch gets its first packets: their bytes, metadata and
// comments, nothing of the rest; what it keeps still decodes by the wire contract.
TEST(BatchBuilderTest, TruncateKeepsTheFirstPacketsAndTheirComments) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  const std::vector<std::string> frames = {"aaaa", "bbbbbb", "c", "dddddddd"};
  for (size_t i = 0; i < frames.size(); ++i) {
    builder.Append(static_cast<uint32_t>(i % 2), 100 + i, static_cast<uint32_t>(60 + i),
                   reinterpret_cast<const uint8_t*>(frames[i].data()),
                   static_cast<uint32_t>(frames[i].size()));
    if (i == 1) builder.CommentLast("second");
    if (i == 3) builder.CommentLast("fourth");
  }
  auto message = builder.Finish();
  TruncateBatch(*message->mutable_packets(), 2);
  std::string wire;
  ASSERT_TRUE(message->SerializeToString(&wire));
  const std::vector<Record> kept = DecodeWire(wire);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].bytes, "aaaa");
  EXPECT_EQ(kept[1].bytes, "bbbbbb");
  EXPECT_EQ(kept[1].interface_index, 1u);
  EXPECT_EQ(kept[1].timestamp_ns, 101u);
  EXPECT_EQ(kept[1].original_length, 61u);
  const v1::PacketBatch& batch = message->packets();
  ASSERT_EQ(batch.comment_size(), 1);
  EXPECT_EQ(batch.comment_packet(0), 1u);
  EXPECT_EQ(batch.comment(0), "second");

  TruncateBatch(*message->mutable_packets(), 0);
  EXPECT_EQ(message->packets().captured_length_size(), 0);
  EXPECT_TRUE(message->packets().data().empty());
  EXPECT_EQ(message->packets().comment_size(), 0);
}

TEST(BatchBuilderTest, FullAtPacketOrByteLimit) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  const std::vector<uint8_t> small(64, 0xab);
  for (size_t i = 0; i + 1 < BatchBuilder::kMaxPackets; ++i) {
    builder.Append(0, i, 64, small.data(), 64);
    ASSERT_FALSE(builder.full()) << i;
  }
  builder.Append(0, 0, 64, small.data(), 64);
  EXPECT_TRUE(builder.full());

  builder.Start(builder.Finish());
  const std::vector<uint8_t> jumbo(BatchBuilder::kMaxBytes, 0xcd);
  builder.Append(0, 0, jumbo.size(), jumbo.data(), static_cast<uint32_t>(jumbo.size()));
  EXPECT_TRUE(builder.full());
}

TEST(BatchBuilderTest, RecycledMessageStartsEmptyAndKeepsCapacity) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  const std::vector<uint8_t> bytes(1000, 1);
  for (int i = 0; i < 100; ++i) builder.Append(0, i, 1000, bytes.data(), 1000);
  std::unique_ptr<v1::StreamResponse> used = builder.Finish();
  const size_t capacity = used->packets().data().capacity();

  builder.Start(std::move(used));
  builder.Append(0, 42, 3, bytes.data(), 3);
  std::unique_ptr<v1::StreamResponse> again = builder.Finish();
  EXPECT_EQ(again->packets().timestamp_ns_size(), 1);
  EXPECT_EQ(again->packets().data().size(), 3u);
  EXPECT_GE(again->packets().data().capacity(), capacity);

  // A message that last carried something else becomes a packet batch.
  auto control = std::make_unique<v1::StreamResponse>();
  control->mutable_end()->set_reason(v1::StreamEnd::COUNT_REACHED);
  builder.Start(std::move(control));
  builder.Append(0, 1, 3, bytes.data(), 3);
  EXPECT_TRUE(builder.Finish()->has_packets());
}

// A recycled message's blob and arrays are the same memory again (no allocation per batch), and
// the bytes of the new batch are its own.
TEST(BatchBuilderTest, RecycledMessageReusesItsBlobAndArrays) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  const std::vector<uint8_t> old_bytes(1000, 1);
  for (int i = 0; i < 300; ++i) builder.Append(0, i, 1000, old_bytes.data(), 1000);
  std::unique_ptr<v1::StreamResponse> used = builder.Finish();
  const char* blob = used->packets().data().data();
  const uint64_t* timestamps = used->packets().timestamp_ns().data();
  const uint32_t* lengths = used->packets().captured_length().data();

  builder.Start(std::move(used));
  const std::string frame = "new frame";
  for (int i = 0; i < 200; ++i) {
    builder.Append(1, 5000 + i, 60, reinterpret_cast<const uint8_t*>(frame.data()),
                   static_cast<uint32_t>(frame.size()));
  }
  std::unique_ptr<v1::StreamResponse> again = builder.Finish();
  const v1::PacketBatch& batch = again->packets();
  EXPECT_EQ(batch.data().data(), blob);
  EXPECT_EQ(batch.timestamp_ns().data(), timestamps);
  EXPECT_EQ(batch.captured_length().data(), lengths);
  ASSERT_EQ(batch.timestamp_ns_size(), 200);
  ASSERT_EQ(batch.data().size(), 200 * frame.size());
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(batch.data().substr(i * frame.size(), frame.size()), frame) << i;
    EXPECT_EQ(batch.timestamp_ns(i), 5000u + i) << i;
    EXPECT_EQ(batch.interface_index(i), 1u) << i;
    EXPECT_EQ(batch.original_length(i), 60u) << i;
    EXPECT_EQ(batch.captured_length(i), frame.size()) << i;
  }
}

// A message new to the stream (the sink had none free) is sized like the last batch at once: its
// blob and arrays are not grown step by step, each step fresh memory and a copy.
TEST(BatchBuilderTest, FreshMessageIsSizedLikeTheLastBatch) {
  BatchBuilder builder;
  builder.Start(std::make_unique<v1::StreamResponse>());
  const std::vector<uint8_t> bytes(1000, 1);
  for (int i = 0; i < 1000; ++i) builder.Append(0, i, 1000, bytes.data(), 1000);
  builder.Finish();

  builder.Start(std::make_unique<v1::StreamResponse>());
  builder.Append(0, 1, 1000, bytes.data(), 1000);
  std::unique_ptr<v1::StreamResponse> fresh = builder.Finish();
  const v1::PacketBatch& batch = fresh->packets();
  EXPECT_GE(batch.data().capacity(), 1000u * 1000u);
  EXPECT_GE(batch.timestamp_ns().Capacity(), 1000);
  EXPECT_GE(batch.captured_length().Capacity(), 1000);
  EXPECT_EQ(batch.data().size(), 1000u);
  EXPECT_EQ(batch.timestamp_ns_size(), 1);
}

// The arrays are sized ahead in steps and cut at Finish: the message on the wire is the one the
// packets make, whatever the step, and a recycled message with longer arrays is cut too.
TEST(BatchBuilderTest, TheWireHoldsExactlyThePacketsAcrossGrowthSteps) {
  const std::vector<uint8_t> bytes(70, 7);
  auto expected = [&](int packets) {
    v1::StreamResponse message;
    v1::PacketBatch* b = message.mutable_packets();
    for (int i = 0; i < packets; ++i) {
      b->mutable_data()->append(reinterpret_cast<const char*>(bytes.data()), 60 + i % 10);
      b->add_interface_index(static_cast<uint32_t>(i % 3));
      b->add_timestamp_ns(1000 + static_cast<uint64_t>(i));
      b->add_original_length(static_cast<uint32_t>(100 + i));
      b->add_captured_length(static_cast<uint32_t>(60 + i % 10));
    }
    return message.SerializeAsString();
  };
  BatchBuilder builder;
  std::unique_ptr<v1::StreamResponse> message = std::make_unique<v1::StreamResponse>();
  for (int packets : {1, 255, 256, 257, 1000, 3}) {  // the last two recycle longer arrays
    builder.Start(std::move(message));
    for (int i = 0; i < packets; ++i) {
      builder.Append(static_cast<uint32_t>(i % 3), 1000 + static_cast<uint64_t>(i),
                     static_cast<uint32_t>(100 + i), bytes.data(),
                     static_cast<uint32_t>(60 + i % 10));
    }
    message = builder.Finish();
    EXPECT_EQ(message->SerializeAsString(), expected(packets)) << packets << " packets";
  }
}

}  // namespace
}  // namespace capd::agent
