#pragma once
// Compressed packet batches (capd.v1 COMPRESSION_ZSTD): one zstd stream per Stream call, one
// flushed part of it per batch. A pure library: no I/O, no threads, no protobuf.
//
// How data flows: the agent's stream (agent/service/StreamReactor) serializes a batch, a
// BatchCompressor turns it into the stream's next part; the client's feed (client/stream) gives
// each part, in the order received, to its BatchDecompressor, which returns the serialized batch.
// Because the parts form one stream, a later part may refer to the bytes of earlier ones: the
// sender must compress every batch it sends, and only those, in sending order (drop batches
// BEFORE compressing them), and the receiver must decode every part in order.
//
// Why a stream and not one frame per batch: a lone packet's batch is a few hundred bytes, where a
// frame's header and a fresh dictionary-less start cost most of the gain; kept across batches, the
// window holds the protocol headers seen before (docs/performance.md, "Compressed batches").
//
// Thread-safety: an object is used by one thread at a time. Memory: a compressor at level 1 holds
// 1.3 MiB (its 512 KiB window and tables), a decompressor at most its window (<= 8 MiB, refused
// above) plus the output.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace capd::compress {

// zstd's fastest levels measured best for capture batches (docs/performance.md): level 1.
constexpr int kDefaultLevel = 1;
// The largest window either side uses or accepts (2^23 = 8 MiB): bounds a decoder's memory
// against a hostile sender.
constexpr int kMaxWindowLog = 23;

class BatchCompressor {
 public:
  // kInvalidArgument for a level outside 1..19; kInternal when zstd cannot make a context.
  static StatusOr<std::unique_ptr<BatchCompressor>> Create(int level = kDefaultLevel);
  ~BatchCompressor();
  BatchCompressor(const BatchCompressor&) = delete;
  BatchCompressor& operator=(const BatchCompressor&) = delete;

  // Replaces `out` with the stream's next part: `input` compressed and flushed, so the receiver
  // can decode all of it now. `out` keeps its capacity across calls. An empty input gives a
  // valid part (at the start of a stream, an empty one). kInternal only if zstd fails (then the
  // stream is unusable: end it).
  Status Compress(std::string_view input, std::string& out);

  // Input and output bytes over every Compress call.
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }

 private:
  explicit BatchCompressor(ZSTD_CCtx_s* context) : context_(context) {}
  ZSTD_CCtx_s* context_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

class BatchDecompressor {
 public:
  // kInternal when zstd cannot make a context.
  static StatusOr<std::unique_ptr<BatchDecompressor>> Create();
  ~BatchDecompressor();
  BatchDecompressor(const BatchDecompressor&) = delete;
  BatchDecompressor& operator=(const BatchDecompressor&) = delete;

  // Replaces `out` with the decoding of the stream's next part, which must come to exactly
  // `expected_length` bytes (the sender's uncompressed_length). kInvalidArgument, with zstd's
  // reason, for a part that does not decode, decodes to another length, asks for a window over
  // kMaxWindowLog, or comes after a failed one (the stream is broken from there on). Never
  // writes more than expected_length bytes.
  Status Decompress(std::string_view input, size_t expected_length, std::string& out);

 private:
  explicit BatchDecompressor(ZSTD_DCtx_s* context) : context_(context) {}
  ZSTD_DCtx_s* context_;
  bool broken_ = false;
};

}  // namespace capd::compress
