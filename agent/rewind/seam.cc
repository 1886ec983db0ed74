#include "agent/rewind/seam.h"

#include <algorithm>
#include <cstring>

namespace capd::agent::rewind {

bool SamePacket(const PacketKey& recorded, const PacketKey& live) {
  if (recorded.original_length != live.original_length) return false;
  const uint64_t apart = recorded.timestamp_ns > live.timestamp_ns
                             ? recorded.timestamp_ns - live.timestamp_ns
                             : live.timestamp_ns - recorded.timestamp_ns;
  if (apart > kMatchWindowNs) return false;
  const size_t n = std::min(recorded.bytes.size(), live.bytes.size());
  return std::memcmp(recorded.bytes.data(), live.bytes.data(), n) == 0;
}

size_t PastCount(const std::vector<PacketKey>& candidates, const PacketKey* live, uint64_t t0) {
  if (live != nullptr) {
    size_t best = candidates.size();
    uint64_t best_apart = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!SamePacket(candidates[i], *live)) continue;
      const uint64_t ts = candidates[i].timestamp_ns;
      const uint64_t apart =
          ts > live->timestamp_ns ? ts - live->timestamp_ns : live->timestamp_ns - ts;
      if (best == candidates.size() || apart < best_apart) {
        best = i;
        best_apart = apart;
      }
    }
    if (best != candidates.size()) return best;
  }
  // No copy of the first live packet: by time. The candidates are in file (arrival) order,
  // so the past ends at the first one at or after t0.
  size_t count = 0;
  while (count < candidates.size() && candidates[count].timestamp_ns < t0) ++count;
  return count;
}

}  // namespace capd::agent::rewind
