#pragma once
// The seam between a recording's packets (the past) and a live stream's (the present), for
// `capctl stream --since` (rewind.h).
//
// Why a rule is needed: a recording runs on a capture of its own (RecordingManager keeps its
// captures apart from the streams'), so the live stream and the recording read two kernel rings
// of the same interface. Every packet the interface passes reaches both rings in the same order,
// but neither a shared sequence number nor (on every kernel path) the same timestamp marks it.
//
// The rule: let L0 be the first live packet the stream holds and t0 its timestamp. The past is
// every recorded packet (at or after `since`, passing the stream's filter) before the recorded
// copy of L0: the recorded packet with L0's original length and the same captured bytes (over
// the shorter of the two captured lengths) whose time is nearest t0, within kMatchWindowNs. Both
// rings hold the same packets in the same order, so everything before that copy is older than
// anything live, and everything from it on is live: no gap, no duplicate. When the recording has
// no copy of L0 (its own filter left it out, or the window holds none), the past is every
// recorded packet with a time before t0; this fallback can lose or repeat only a packet whose
// two timestamps straddle t0, i.e. one received within microseconds of L0. With no live packet
// at all yet (a quiet link), t0 is the live capture's activation time.
//
// Identical packets (same length and bytes) within the window are told apart by time: the copy
// nearest t0 is taken.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace capd::agent::rewind {

inline constexpr uint64_t kMatchWindowNs = 1'000'000'000;  // far beyond two rings' clock skew

struct PacketKey {
  uint64_t timestamp_ns = 0;
  uint32_t original_length = 0;
  std::string_view bytes;  // the captured bytes
};

// True when `recorded` may be the recording's copy of `live`: the same original length, the
// same bytes over the shorter capture, times within kMatchWindowNs.
bool SamePacket(const PacketKey& recorded, const PacketKey& live);

// `candidates`: the recorded packets (in file order) whose time is at least t0 - kMatchWindowNs,
// up to the first whose time is beyond t0 + kMatchWindowNs (or the recording's end). Returns how
// many of them belong to the past. `live` is null when no live packet came yet; then `t0` is the
// live capture's start.
size_t PastCount(const std::vector<PacketKey>& candidates, const PacketKey* live, uint64_t t0);

}  // namespace capd::agent::rewind
