#pragma once
// The bytes of a StreamResponse as gRPC sends them, without copying a packet batch's blob.
//
// gRPC's own serialization of a StreamResponse copies every packet byte from the batch's `data`
// blob into its buffer (docs/performance.md: the larger of capd's two copies of each byte). Here
// the blob itself becomes one slice of the gRPC buffer: SerializeForWrite moves the string out of
// the message into a slice that gRPC owns until its bytes are sent, and the slice hands the
// string back to a BlobPool then, so that a warm stream allocates no blob per batch.
//
// Contract: the bytes are exactly those of message.SerializeAsString() (capd.v1 unchanged:
// `data` is PacketBatch's field 1, so its place in protobuf's field order is first). After the
// call the message's batch, if any, has an empty `data` (no capacity); every other field stays.
//
// Thread-safety: a BlobPool may be used from any thread (a slice is released on whichever thread
// gRPC finishes with it, possibly after the stream is gone; the slice keeps the pool alive).

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto/capture.pb.h"

namespace capd::agent {

class BlobPool {
 public:
  // Blobs kept: the free messages plus the one in flight of a stream (StreamReactor).
  static constexpr size_t kMaxBlobs = 3;

  // Puts a blob into `data` (an empty string): a returned one with its capacity, or else a new
  // one reserved to the largest blob seen, so the batch does not grow it by doubling.
  void Take(std::string& data);
  // Keeps `blob` for a later Take, or frees it when kMaxBlobs are kept.
  void Give(std::string blob);
  size_t kept() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> blobs_;
  size_t largest_ = 0;
};

// Blobs shorter than this are copied like the rest of the message: a slice of its own costs an
// allocation and a reference count, more than copying a few KiB.
inline constexpr size_t kMinBlobSliceBytes = 4096;

// Serializes `message` into `out` (see the contract above). `pool` receives the blob back once
// gRPC has sent it.
void SerializeForWrite(v1::StreamResponse& message, const std::shared_ptr<BlobPool>& pool,
                       grpc::ByteBuffer& out);

}  // namespace capd::agent
