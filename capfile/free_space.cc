#include "capfile/free_space.h"

#include <algorithm>
#include <charconv>

#include "common/byte_size.h"

namespace capd::capfile {

std::optional<FreeSpaceFloor> ParseFreeSpaceFloor(std::string_view text) {
  if (!text.empty() && text.back() == '%') {
    text.remove_suffix(1);
    uint32_t percent = 0;
    const char* end = text.data() + text.size();
    auto [ptr, error] = std::from_chars(text.data(), end, percent);
    if (text.empty() || error != std::errc() || ptr != end || percent > 100) return std::nullopt;
    return FreeSpaceFloor{0, percent};
  }
  const auto bytes = ParseByteSize(text);
  if (!bytes) return std::nullopt;
  return FreeSpaceFloor{*bytes, 0};
}

std::string DescribeFloor(const FreeSpaceFloor& floor) {
  if (floor.off()) return "off";
  std::string text;
  if (floor.bytes != 0) text = std::to_string(floor.bytes) + " bytes";
  if (floor.percent != 0) {
    text += (text.empty() ? "" : " or ") + std::to_string(floor.percent) + "%";
  }
  return text;
}

uint64_t FloorBytes(const FreeSpaceFloor& floor, uint64_t filesystem_bytes) {
  // Percent of a size up to 2^64 / 100 without overflow.
  const uint64_t share =
      filesystem_bytes / 100 * floor.percent + filesystem_bytes % 100 * floor.percent / 100;
  return std::max(floor.bytes, share);
}

FloorDecision DecideFloor(uint64_t free_bytes, uint64_t floor_bytes,
                          std::span<const FloorFile> files, size_t keep, FloorPolicy policy) {
  FloorDecision decision;
  decision.free_after = free_bytes;
  if (floor_bytes == 0 || free_bytes >= floor_bytes) return decision;
  const size_t lowest = policy.below_ring_size ? 0 : keep;
  size_t left = files.size();
  for (size_t i = 0; i < files.size() && left > lowest && decision.free_after < floor_bytes; ++i) {
    if (!files[i].handed_off && !policy.held_files_may_go) continue;
    decision.remove.push_back(i);
    decision.free_after += files[i].bytes;
    --left;
  }
  decision.stop = decision.free_after < floor_bytes;
  return decision;
}

bool RingFits(uint64_t ring_bytes, uint64_t free_bytes, uint64_t existing_ring_bytes,
              uint64_t floor_bytes) {
  const uint64_t room = free_bytes + existing_ring_bytes;
  return room >= floor_bytes && room - floor_bytes >= ring_bytes;
}

}  // namespace capd::capfile
