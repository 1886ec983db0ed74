#pragma once
// Parses the Stream call's messages as they came over the wire (grpc::ByteBuffer) so that a
// packet batch reuses the memory of one already written instead of a fresh allocation.
//
// Why: a message carries up to ~2 MiB of packets. Parsed into a fresh StreamResponse (what the
// generated reader does), every message allocates its blob and its per-packet arrays, and the
// arrays grow by doubling as gRPC's slices arrive (each growth a copy). A spare batch keeps the
// capacity of both: parsing into it allocates nothing and copies each byte once.
//
// Contract: Parse() gives the message protobuf's parser would give for the same bytes (a batch
// is parsed into a cleared spare, then any later fields merge as protobuf merges them). The
// message's deleter gives its batch back, cleared, to this recycler's spares (at most
// `max_spares`; the rest are freed), from whatever thread drops the last reference, also after
// the recycler is gone. Parse() is for one thread at a time; the deleters may run on any.

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <memory>

#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::client {

class BatchRecycler {
 public:
  explicit BatchRecycler(size_t max_spares);
  ~BatchRecycler();
  BatchRecycler(const BatchRecycler&) = delete;
  BatchRecycler& operator=(const BatchRecycler&) = delete;

  // kInvalidArgument for bytes that are not a StreamResponse. Leaves `wire` as it was.
  StatusOr<std::shared_ptr<v1::StreamResponse>> Parse(grpc::ByteBuffer& wire);

  // Batches waiting to be reused (for tests).
  size_t spares() const;

 private:
  struct Spares;
  std::shared_ptr<Spares> spares_;
};

}  // namespace capd::client
