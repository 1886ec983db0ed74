#pragma once
// The client's half of compressed batches (capd.v1 COMPRESSION_ZSTD): turns each compressed
// PacketBatch of one Stream call back into the plain batch the agent built, in the feed's
// receive path, so that everything above it (merger, writers, serve, extcap) sees plain batches.
//
// Contract: one BatchDecompression per call, given every message's batch in the order received
// (a compressed batch may refer to earlier ones). Plain batches pass through untouched, so a
// request that asked for compression works against an agent that ignores the field. A batch that
// does not decode gives kInvalidArgument naming the agent, and so does every later compressed
// batch: the caller ends the call. The decoder (and its up to 8 MiB window) is made on the first
// compressed batch.

#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::compress {
class BatchDecompressor;
}  // namespace capd::compress

namespace capd::client {

class BatchDecompression {
 public:
  // The agent's batches are at most ~2 MiB (BatchBuilder); anything above this is refused
  // before decoding, so a hostile agent cannot make capctl allocate without bound.
  static constexpr size_t kMaxUncompressedLength = 64 * 1024 * 1024;

  explicit BatchDecompression(std::string agent);
  ~BatchDecompression();

  // Replaces a compressed batch's fields with the batch it holds; a plain batch is left as it is.
  Status Decode(v1::PacketBatch& batch);

 private:
  const std::string agent_;
  std::unique_ptr<compress::BatchDecompressor> decompressor_;
  std::string plain_;     // the decoded bytes, reused
  uint64_t batches_ = 0;  // compressed batches decoded, for messages
};

}  // namespace capd::client
