#include "agent/service/stream_serializer.h"

#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <utility>

namespace capd::agent {
namespace {

// The wire tags (field number << 3 | 2, length-delimited) of StreamResponse.packets and
// PacketBatch.data.
constexpr uint8_t kPacketsTag = (v1::StreamResponse::kPacketsFieldNumber << 3) | 2;
constexpr uint8_t kDataTag = (v1::PacketBatch::kDataFieldNumber << 3) | 2;
static_assert(v1::PacketBatch::kDataFieldNumber == 1,
              "the blob must come first in protobuf's field order for the bytes to be identical");

// Owns a blob while gRPC holds its slice.
struct HeldBlob {
  std::shared_ptr<BlobPool> pool;
  std::string blob;
};

void ReleaseBlob(void* user_data) {
  auto* held = static_cast<HeldBlob*>(user_data);
  held->pool->Give(std::move(held->blob));
  delete held;
}

uint8_t* WriteVarint(uint64_t value, uint8_t* out) {
  return google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(value, out);
}

void SerializeWhole(const v1::StreamResponse& message, grpc::ByteBuffer& out) {
  bool own_buffer = false;
  // gRPC's own serializer for protobuf messages: what the call would have done.
  (void)grpc::SerializationTraits<v1::StreamResponse>::Serialize(message, &out, &own_buffer);
}

}  // namespace

void BlobPool::Take(std::string& data) {
  std::lock_guard lock(mu_);
  if (!blobs_.empty()) {
    data.swap(blobs_.back());
    blobs_.pop_back();
  } else {
    data.reserve(largest_);
  }
}

void BlobPool::Give(std::string blob) {
  std::lock_guard lock(mu_);
  if (blob.capacity() > largest_) largest_ = blob.capacity();
  if (blobs_.size() < kMaxBlobs) {
    blob.clear();
    blobs_.push_back(std::move(blob));
  }
}

size_t BlobPool::kept() const {
  std::lock_guard lock(mu_);
  return blobs_.size();
}

void SerializeForWrite(v1::StreamResponse& message, const std::shared_ptr<BlobPool>& pool,
                       grpc::ByteBuffer& out) {
  if (!message.has_packets() || message.packets().data().size() < kMinBlobSliceBytes) {
    SerializeWhole(message, out);
    return;
  }
  v1::PacketBatch& batch = *message.mutable_packets();
  auto* held = new HeldBlob{pool, {}};
  held->blob.swap(*batch.mutable_data());
  const size_t blob_size = held->blob.size();

  // The batch without its blob: the fields after `data`, in protobuf's order and encoding.
  const size_t rest_size = batch.ByteSizeLong();
  const size_t blob_header = 1 + google::protobuf::io::CodedOutputStream::VarintSize64(blob_size);
  const size_t batch_size = blob_header + blob_size + rest_size;

  uint8_t header[1 + 10 + 1 + 10];
  uint8_t* end = header;
  *end++ = kPacketsTag;
  end = WriteVarint(batch_size, end);
  *end++ = kDataTag;
  end = WriteVarint(blob_size, end);

  grpc::Slice slices[3] = {
      grpc::Slice(header, static_cast<size_t>(end - header)),
      grpc::Slice(held->blob.data(), blob_size, &ReleaseBlob, held),
      grpc::Slice(rest_size),
  };
  // Sizes were cached by ByteSizeLong above.
  batch.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(slices[2].begin()));
  out = grpc::ByteBuffer(slices, rest_size > 0 ? 3 : 2);
}

}  // namespace capd::agent
