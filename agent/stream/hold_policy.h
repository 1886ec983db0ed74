#pragma once
// When a batch waits to fill instead of leaving at once (SharedCapture::Loop), and how long the
// capture ring may go unread meanwhile. Pure functions of one drain of the ring, unit-tested.
//
// Why hold at all: every message costs capd and the client several thread wake-ups
// (bench/RESULTS.md), so on a busy link fewer, larger messages are most of what a stream costs
// less. Why not always: a lone packet must leave at once (its latency is the ring's block
// timeout), and large packets fill a batch fast anyway, where holding only makes every copy cold
// (1500 B at full rate, held, before capctl's 256 KiB rounds: capd and capctl CPU doubled and
// ~10 % was dropped).

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "agent/stream/batch_builder.h"

namespace capd::agent {

// What one drain of the ring brought, since the capture loop last slept.
struct Drain {
  uint64_t packets = 0;
  uint64_t bytes = 0;  // their captured lengths
  std::chrono::microseconds elapsed{0};
};

struct HoldPolicy {
  // A drain with this many packets or bytes means a busy link; below both it counts as quiet.
  // At 64 B and ~300k packets/s a ring block holds ~900 packets.
  static constexpr uint64_t kMinPackets = 256;
  static constexpr uint64_t kMinBytes = 32 * 1024;
  // No hold when the drain's byte rate would fill a batch this fast anyway (~260 MB/s: 1500 B at
  // full rate here; 512 B at full rate is held).
  static constexpr std::chrono::microseconds kFillsFast{2000};
  // A held batch leaves when it is full or this old. Wireshark redraws its packet list every
  // 100 ms, so nobody watching sees the wait (1M x 64 B, 10 -> 40 ms with 512 KiB batches:
  // 1.8x -> 1.4x tcpdump's CPU).
  static constexpr std::chrono::milliseconds kMaxHold{40};
  // While a batch is held the ring is read again when, at the drain's rate, a batch could have
  // filled or this share of the ring could have. Each packet takes its captured bytes plus about
  // kRingBytesPerPacket of TPACKET_V3 header and alignment in the ring. Reading later than a
  // batch's worth would bring several batches at once, out of the CPU's cache and queued
  // together (capd's VmHWM went past 64 MiB at 512 B when only the ring share counted).
  static constexpr uint64_t kRingShareBeforeCheck = 4;
  static constexpr uint64_t kRingBytesPerPacket = 80;

  // Should the batch wait to fill? `holding`: it was already waiting before this drain, so any
  // new packet keeps it waiting (the burst goes on) and none ends the wait.
  static bool WorthHolding(const Drain& d, bool holding) {
    const bool busy =
        d.packets >= kMinPackets || d.bytes >= kMinBytes || (holding && d.packets > 0);
    const bool fills_fast = d.bytes * static_cast<uint64_t>(kFillsFast.count()) >=
                            BatchBuilder::kMaxBytes * static_cast<uint64_t>(d.elapsed.count());
    return busy && !fills_fast;
  }

  // How long the ring may go unread while a batch is held: 1 ms .. kMaxHold.
  static std::chrono::milliseconds RingCheckAfter(const Drain& d, uint64_t ring_bytes) {
    const uint64_t us = std::max<int64_t>(1, d.elapsed.count());
    const uint64_t ring_used = d.bytes + d.packets * kRingBytesPerPacket;
    const uint64_t ring_share_us =
        ring_bytes / kRingShareBeforeCheck * us / std::max<uint64_t>(1, ring_used);
    const uint64_t batch_us = BatchBuilder::kMaxBytes * us / std::max<uint64_t>(1, d.bytes);
    const uint64_t ms = std::min(ring_share_us, batch_us) / 1000;
    return std::chrono::milliseconds(
        std::clamp<uint64_t>(ms, 1, static_cast<uint64_t>(kMaxHold.count())));
  }
};

}  // namespace capd::agent
