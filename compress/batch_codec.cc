#include "compress/batch_codec.h"

#include <zstd.h>

#include <algorithm>

namespace capd::compress {
namespace {

std::string ZstdError(size_t code) { return ZSTD_getErrorName(code); }

}  // namespace

StatusOr<std::unique_ptr<BatchCompressor>> BatchCompressor::Create(int level) {
  // Levels 1-19 use windows of at most 2^23 bytes (zstd 1.5's clevels.h, unknown source size),
  // which every decoder accepts (kMaxWindowLog); the "ultra" levels above would not decode.
  if (level < 1 || level > 19) {
    return InvalidArgument("zstd level " + std::to_string(level) + " is not in 1..19");
  }
  ZSTD_CCtx* context = ZSTD_createCCtx();
  if (context == nullptr) return Internal("ZSTD_createCCtx failed");
  std::unique_ptr<BatchCompressor> compressor(new BatchCompressor(context));
  const size_t r = ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level);
  if (ZSTD_isError(r)) return Internal("zstd level " + std::to_string(level) + ": " + ZstdError(r));
  return compressor;
}

BatchCompressor::~BatchCompressor() { ZSTD_freeCCtx(context_); }

Status BatchCompressor::Compress(std::string_view input, std::string& out) {
  // A flush emits at most the bound of its input plus a block header per 128 KiB.
  out.resize(ZSTD_compressBound(input.size()) + 64);
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  while (true) {
    const size_t left = ZSTD_compressStream2(context_, &o, &in, ZSTD_e_flush);
    if (ZSTD_isError(left)) return Internal("ZSTD_compressStream2: " + ZstdError(left));
    if (left == 0 && in.pos == in.size) break;
    // Not flushed yet: more room (never needed within the bound, but never loop without it).
    out.resize(out.size() * 2);
    o.dst = out.data();
    o.size = out.size();
  }
  out.resize(o.pos);
  bytes_in_ += input.size();
  bytes_out_ += o.pos;
  return Status::Ok();
}

StatusOr<std::unique_ptr<BatchDecompressor>> BatchDecompressor::Create() {
  ZSTD_DCtx* context = ZSTD_createDCtx();
  if (context == nullptr) return Internal("ZSTD_createDCtx failed");
  std::unique_ptr<BatchDecompressor> decompressor(new BatchDecompressor(context));
  const size_t r = ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, kMaxWindowLog);
  if (ZSTD_isError(r)) return Internal("zstd windowLogMax: " + ZstdError(r));
  return decompressor;
}

BatchDecompressor::~BatchDecompressor() { ZSTD_freeDCtx(context_); }

Status BatchDecompressor::Decompress(std::string_view input, size_t expected_length,
                                     std::string& out) {
  if (broken_) return InvalidArgument("an earlier compressed batch did not decode");
  // One spare byte: a part that decodes to more than expected fills it, and is refused.
  out.resize(expected_length + 1);
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  // zstd decodes what a flushed part holds once it has all of the input and room for the output;
  // the loop ends when the input is consumed and a call produced nothing more.
  while (true) {
    const size_t before = o.pos;
    const size_t r = ZSTD_decompressStream(context_, &o, &in);
    if (ZSTD_isError(r)) {
      broken_ = true;
      return InvalidArgument(std::string("zstd: ") + ZstdError(r));
    }
    if (o.pos == o.size) break;  // over the expected length
    if (in.pos == in.size && o.pos == before) break;
  }
  if (o.pos != expected_length) {
    broken_ = true;
    return InvalidArgument(
        o.pos > expected_length
            ? "decodes to more than its uncompressed_length " + std::to_string(expected_length)
            : "decodes to " + std::to_string(o.pos) + " bytes, not its uncompressed_length " +
                  std::to_string(expected_length));
  }
  out.resize(o.pos);
  return Status::Ok();
}

}  // namespace capd::compress
