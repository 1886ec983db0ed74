#include "client/stream/batch_decompression.h"

#include "compress/batch_codec.h"

namespace capd::client {

BatchDecompression::BatchDecompression(std::string agent) : agent_(std::move(agent)) {}
BatchDecompression::~BatchDecompression() = default;

Status BatchDecompression::Decode(v1::PacketBatch& batch) {
  if (batch.compression() == v1::COMPRESSION_NONE) return Status::Ok();
  const std::string where = "agent " + agent_ + " sent a compressed batch (#" +
                            std::to_string(batches_ + 1) + ") that does not decode: ";
  if (batch.compression() != v1::COMPRESSION_ZSTD) {
    return InvalidArgument(where + "unknown compression " + std::to_string(batch.compression()));
  }
  if (batch.uncompressed_length() > kMaxUncompressedLength) {
    return InvalidArgument(where + "uncompressed_length " +
                           std::to_string(batch.uncompressed_length()) + " is over capctl's " +
                           std::to_string(kMaxUncompressedLength));
  }
  if (!decompressor_) {
    auto made = compress::BatchDecompressor::Create();
    if (!made.ok()) return made.status();
    decompressor_ = std::move(*made);
  }
  Status decoded =
      decompressor_->Decompress(batch.compressed(), batch.uncompressed_length(), plain_);
  if (!decoded.ok()) return InvalidArgument(where + decoded.message());
  // What the agent compressed is a PacketBatch with only its plain fields (1-7).
  if (!batch.ParseFromString(plain_) || batch.compression() != v1::COMPRESSION_NONE ||
      !batch.compressed().empty()) {
    return InvalidArgument(where + "its content is not a plain PacketBatch");
  }
  ++batches_;
  return Status::Ok();
}

}  // namespace capd::client
