#pragma once
// The per-packet path of a capture: source -> (decapsulation) -> batch. Lives on the capture
// thread; allocates nothing per packet beyond the batch's growth, takes no locks.
//
// How data flows: CaptureSource::Dispatch calls OnPacket for each packet; its timestamp is made
// nanoseconds; in mirror-target mode the MirrorStage decapsulates it (a new inner interface is
// announced first, after the batch so far has been flushed, so that a description always reaches
// the client before the first packet filed under it); the packet is appended to the batch, and a
// full batch goes to `flush` with its packet count.

#include <pcap/pcap.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "agent/stream/batch_builder.h"
#include "agent/stream/hold_policy.h"
#include "pipeline/mirror_stage.h"
#include "proto/capture.pb.h"

namespace capd::agent {

class PacketPath {
 public:
  using Clock = std::chrono::steady_clock;
  using AnnounceFn = std::function<void(const pipeline::InnerInterface&)>;
  using NewMessageFn = std::function<std::unique_ptr<v1::StreamResponse>()>;
  using FlushFn = std::function<void(std::unique_ptr<v1::StreamResponse>, size_t)>;

  // `mirror`: null, or the decapsulation stage (outlives this path).
  PacketPath(pipeline::MirrorStage* mirror, uint32_t nanoseconds_per_tick, AnnounceFn announce,
             NewMessageFn new_message, FlushFn flush)
      : mirror_(mirror),
        nanoseconds_per_tick_(nanoseconds_per_tick),
        announce_(std::move(announce)),
        new_message_(std::move(new_message)),
        flush_(std::move(flush)) {}

  // A CaptureSource::PacketCallback; `user` is the PacketPath.
  static void OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data);

  // Sends the batch so far, if it has packets.
  void FlushBatch();

  uint64_t captured() const { return captured_; }  // packets read from the source

  // What had been read from the source at a moment; the capture loop takes one each time it
  // sleeps, and what the next drain brought (HoldPolicy's input) is measured from the latest.
  struct ReadMark {
    Clock::time_point at;
    uint64_t packets = 0;
    uint64_t bytes = 0;  // their captured lengths
  };
  // Also starts watching the span of the packets read from now on (Drain::span).
  ReadMark Mark(Clock::time_point now) {
    span_from_packet_ = captured_;
    return {now, captured_, captured_bytes_};
  }
  // `mark`: the latest Mark.
  Drain DrainSince(const ReadMark& mark, Clock::time_point now) const;
  size_t batch_packets() const { return batch_.started() ? batch_.packet_count() : 0; }
  // When the batch's age started: its first packet's arrival here, or the time given to
  // AgeNextBatchFrom before it.
  Clock::time_point batch_started() const { return batch_started_; }
  // The next batch to start counts its age from `since` (a held batch carried on: its packets
  // may have waited in the ring since the previous batch left); nullopt: from its first packet.
  void AgeNextBatchFrom(std::optional<Clock::time_point> since) { next_batch_since_ = since; }

 private:
  void Handle(const pcap_pkthdr& header, const uint8_t* data);
  void Append(uint32_t interface_index, uint64_t ts, uint32_t original_length, const uint8_t* data,
              uint32_t captured_length, std::string_view comment);

  pipeline::MirrorStage* mirror_;
  const uint32_t nanoseconds_per_tick_;
  AnnounceFn announce_;
  NewMessageFn new_message_;
  FlushFn flush_;
  BatchBuilder batch_;
  Clock::time_point batch_started_;
  // Kernel timestamps (ns) of the first packet read since the latest Mark (packet number
  // span_from_packet_) and of the latest packet.
  uint64_t span_from_packet_ = 0;
  uint64_t span_first_ts_ = 0;
  uint64_t last_ts_ = 0;
  std::optional<Clock::time_point> next_batch_since_;
  uint64_t captured_ = 0;
  uint64_t captured_bytes_ = 0;
};

}  // namespace capd::agent
