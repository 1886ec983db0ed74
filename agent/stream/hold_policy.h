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
  // From the first packet's kernel timestamp to the last's; 0 when unknown (fewer than two
  // packets, or a clock step backwards). After a quiet spell `elapsed` counts the quiet time as
  // well, `span` only the burst's.
  std::chrono::microseconds span{0};
};

// The capture's kernel ring as the hold must know it: how much it holds, and how often the
// kernel hands a part-filled block to capd (capd --buffer-size, --block-timeout-ms).
struct RingGeometry {
  uint64_t bytes = 0;
  std::chrono::milliseconds block_timeout{1};
};

struct HoldPolicy {
  // A drain with this many packets or bytes means a busy link; below both it counts as quiet.
  // At 64 B and ~300k packets/s a ring block holds ~900 packets.
  static constexpr uint64_t kMinPackets = 256;
  static constexpr uint64_t kMinBytes = 32 * 1024;
  // No hold when the drain's byte rate would fill a batch this fast anyway (~1 GB/s with 2 MiB
  // batches: jumbo frames on a fast link; 1500 B at full rate here, ~400 MB/s, is held).
  static constexpr std::chrono::microseconds kFillsFast{2000};
  // A held batch leaves when it is full or this old. Wireshark redraws its packet list every
  // 100 ms, so nobody watching sees the wait (1M x 64 B, 10 -> 40 ms with 512 KiB batches:
  // 1.8x -> 1.4x tcpdump's CPU). At 64 B and 50k-100k packets/s a batch fills by count or
  // bytes only after 80-160 ms, so this is what sets the message rate there (docs/performance.md,
  // session 12).
  static constexpr std::chrono::milliseconds kMaxHold{100};
  // While a batch is held the ring goes unread for at most this long, whatever the rates say: a
  // drain's rate does not bound the next one's (trafgen catching up after a stall sends 1500 B
  // at 200k/s and more, which fills the 32 MiB ring in well under 100 ms). 40 ms is the wait
  // that never lost a packet in the quiet grids (sessions 11-12, when it was kMaxHold); a held
  // batch still leaves only at kMaxHold, so the messages saved stay saved.
  static constexpr std::chrono::milliseconds kMaxRingWait{40};
  // While a batch is held the ring is read again when, at the drain's rate, a batch could have
  // filled (reading later would bring several batches at once, out of the CPU's cache and
  // queued together: capd's VmHWM went past 64 MiB at 512 B), and before the ring could have
  // filled kRingFillSafety times over (RingFillTime).
  static constexpr uint64_t kRingFillSafety = 2;
  // TPACKET_V3 (libpcap 1.10, Linux 6.x) packs packets into blocks of 256 KiB: libpcap makes a
  // block the smallest power of two that holds one MAXIMUM_SNAPLEN (262,144 B) frame, whatever
  // the snaplen. Each packet takes its captured bytes plus a 48 B tpacket3_hdr, a 20 B
  // sockaddr_ll and the padding that aligns the network header (82 B before the MAC header),
  // its end aligned to 8 B: at most 89 B, 96 with the tail a full block leaves unused.
  static constexpr uint64_t kRingBlockBytes = 256 * 1024;
  static constexpr uint64_t kRingBytesPerPacket = 96;

  // Should the batch wait to fill? `holding`: it was already waiting before this drain, so any
  // new packet keeps it waiting (the burst goes on) and none ends the wait.
  static bool WorthHolding(const Drain& d, bool holding) {
    const bool busy =
        d.packets >= kMinPackets || d.bytes >= kMinBytes || (holding && d.packets > 0);
    const bool fills_fast = d.bytes * static_cast<uint64_t>(kFillsFast.count()) >=
                            BatchBuilder::kMaxBytes * static_cast<uint64_t>(d.elapsed.count());
    return busy && !fills_fast;
  }

  // What the loop does after a drain. `hold`: the batch waits to fill (the ring unwatched until
  // the next check). `carry`: the batch leaves because of its age while the link is still busy
  // (this drain alone was), and the next one is held from now on, without first watching the
  // ring for a busy drain again: that would cost the capture thread a wake-up per ring block, and
  // a message per block when blocks are small (a 3 ms block at 50k packets/s holds fewer than
  // kMinPackets). A trickle after a burst is not busy, so it ends the carrying: a lone packet
  // waits at most one ring check. `held_for`: the batch's age (PacketPath::batch_started).
  struct Decision {
    bool hold = false;
    bool carry = false;
  };
  static Decision Decide(const Drain& d, bool holding, bool batch_has_packets,
                         std::chrono::microseconds held_for) {
    if (!batch_has_packets || !WorthHolding(d, holding)) return {};
    if (held_for < kMaxHold) return {true, false};
    return {false, WorthHolding(d, /*holding=*/false)};
  }

  // The shortest time the ring can take to fill at the drain's rate. The rate is taken over
  // the shorter of the loop's sleep and the packets' own span, so that a burst after a quiet
  // spell is not mistaken for a trickle. Blocks are used up by bytes (each packet's captured
  // length plus kRingBytesPerPacket) and also by the block timeout: the kernel retires a
  // part-filled block each time it expires, so up to one block per timeout goes out part-empty
  // (measured, 1500 B at 50k packets/s: the 32 MiB ring held ~18,000 packets, 1,870 B each).
  // Hence blocks per second <= byte rate / block + 1 / timeout.
  static std::chrono::microseconds RingFillTime(const Drain& d, const RingGeometry& ring) {
    const uint64_t blocks = std::max<uint64_t>(1, ring.bytes / kRingBlockBytes);
    const int64_t window =
        d.span.count() > 0 ? std::min(d.elapsed.count(), d.span.count()) : d.elapsed.count();
    const double seconds = static_cast<double>(std::max<int64_t>(1, window)) / 1e6;
    const double footprint = static_cast<double>(d.bytes + d.packets * kRingBytesPerPacket);
    const double timeout_s =
        static_cast<double>(std::max<int64_t>(1, ring.block_timeout.count())) / 1e3;
    const double blocks_per_second =
        footprint / seconds / static_cast<double>(kRingBlockBytes) + 1.0 / timeout_s;
    return std::chrono::microseconds(
        static_cast<int64_t>(static_cast<double>(blocks) / blocks_per_second * 1e6));
  }

  // How long the ring may go unread while a batch is held: 1 ms .. kMaxRingWait, and never
  // more than RingFillTime / kRingFillSafety.
  static std::chrono::milliseconds RingCheckAfter(const Drain& d, const RingGeometry& ring) {
    const uint64_t us = std::max<int64_t>(1, d.elapsed.count());
    const uint64_t batch_us = BatchBuilder::kMaxBytes * us / std::max<uint64_t>(1, d.bytes);
    const uint64_t ring_us = static_cast<uint64_t>(RingFillTime(d, ring).count()) / kRingFillSafety;
    const uint64_t ms = std::min(ring_us, batch_us) / 1000;
    return std::chrono::milliseconds(
        std::clamp<uint64_t>(ms, 1, static_cast<uint64_t>(kMaxRingWait.count())));
  }

  // The next check while a busy spell goes on: RingCheckAfter, but at most twice the previous
  // check's wait. A drain that brought little (a sender's pause: trafgen sends in chunks 10-20 ms
  // apart) says nothing about the chunk that follows; without this a pause's trickle set a
  // 100 ms wait and the next chunk at 200k/s overflowed the ring (1500 B at 100k/s, 2,436
  // kernel drops). `previous`: kMaxRingWait at the start of a spell.
  static std::chrono::milliseconds NextRingCheck(const Drain& d, const RingGeometry& ring,
                                                 std::chrono::milliseconds previous) {
    return std::min(RingCheckAfter(d, ring), std::max(std::chrono::milliseconds(1), 2 * previous));
  }
};

}  // namespace capd::agent
