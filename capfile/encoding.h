#pragma once
// Helpers shared by the pcapng and pcap encoders (internal to this folder, not part of the
// capture_writer.h contract). Both formats are written in host byte order: readers detect the
// order from the magic number, and no byte swapping keeps the per-packet path to a few appends.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>

#include "common/status.h"

namespace capd::capfile::internal {

// Encoders reserve this much once and reuse it after every Flush, so a warmed-up writer does
// not allocate per packet. A batch from the agent is 64-256 KiB; 1 MiB also matches the pipe
// buffer FdSink asks for, so one flush usually fits a FIFO without blocking.
inline constexpr size_t kInitialBufferBytes = 1 << 20;

// `Out`: std::string or EncodeBuffer (encode_buffer.h).
template <typename T, typename Out>
requires std::is_integral_v<T>
void AppendHost(Out& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Overwrites a value appended earlier (a block length only known once the block is complete).
template <typename T, typename Out>
requires std::is_integral_v<T>
void PutHost(Out& out, size_t offset, T value) {
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

template <typename Out>
void AppendBytes(Out& out, std::span<const uint8_t> data) {
  out.append(reinterpret_cast<const char*>(data.data()), data.size());
}

inline size_t PaddingTo4(size_t length) { return (4 - length % 4) % 4; }

// The contract of CaptureWriter::WritePacket: the captured bytes fit a 32-bit length field and
// are never more than the original packet.
// The error half of CheckPacketLengths, out of line so the check itself inlines into the
// writers' per-packet path.
[[gnu::cold, gnu::noinline]] Status PacketLengthError(uint32_t original_length,
                                                      size_t captured_length);

inline Status CheckPacketLengths(uint32_t original_length, size_t captured_length) {
  if (captured_length <= original_length) [[likely]] {
    return Status::Ok();  // (and so it fits the 32-bit record field, as original_length does)
  }
  return PacketLengthError(original_length, captured_length);
}

// Both formats require captured length <= snaplen (0 means no limit). A packet longer than the
// snaplen it is filed under (pcap: a second interface with a larger snaplen) keeps its first
// snaplen bytes and its original length, as a capture with that snaplen would have.
inline uint32_t CapturedLength(size_t data_size, uint32_t snaplen) {
  const auto size = static_cast<uint32_t>(data_size);
  return snaplen != 0 && size > snaplen ? snaplen : size;
}

}  // namespace capd::capfile::internal
