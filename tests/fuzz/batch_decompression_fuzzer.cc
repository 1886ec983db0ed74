// capctl's decoding of compressed batches (client/stream/batch_decompression.h): what an agent,
// or anything on the path to it, sends capctl as compressed batches. Input: a sequence of
// batches, each a 4-byte little-endian length L then L bytes of a PacketBatch's wire encoding
// (parsed as gRPC parses it); they go, in order, to one BatchDecompression, as one call's
// batches do. Invariants: no crash, no read or write out of bounds, no allocation beyond
// kMaxUncompressedLength per batch; a failure is kInvalidArgument naming the agent, and after a
// failure every later compressed batch fails too. A crash input becomes a case in
// tests/unit/compress/batch_decompression_test.cc.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "client/stream/batch_decompression.h"
#include "proto/capture.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  capd::client::BatchDecompression decompression("fuzz-agent");
  bool failed = false;
  while (size >= 4) {
    uint32_t length = 0;
    std::memcpy(&length, data, 4);
    data += 4;
    size -= 4;
    length = static_cast<uint32_t>(std::min<size_t>(length, size));
    capd::v1::PacketBatch batch;
    const bool parsed = batch.ParseFromArray(data, static_cast<int>(length));
    data += length;
    size -= length;
    if (!parsed) continue;
    const bool compressed = batch.compression() != capd::v1::COMPRESSION_NONE;
    const capd::Status decoded = decompression.Decode(batch);
    if (!decoded.ok()) {
      if (decoded.code() != capd::StatusCode::kInvalidArgument ||
          decoded.message().find("fuzz-agent") == std::string::npos) {
        std::fprintf(stderr, "unexpected failure: %s\n", decoded.message().c_str());
        std::abort();
      }
      failed = true;
    } else if (failed && compressed) {
      std::fprintf(stderr, "a compressed batch decoded after a failure\n");
      std::abort();
    } else if (batch.compression() != capd::v1::COMPRESSION_NONE) {
      std::fprintf(stderr, "a decoded batch is still compressed\n");
      std::abort();
    }
  }
  return 0;
}
