#pragma once
// One client's view of a shared capture: its limits, its stop, and its counts, which start when it
// joins. Owned by the capture thread once admitted; nothing here locks.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/capture/capture_source.h"
#include "agent/peers/carrier_registry.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_sink.h"
#include "agent/trigger/stream_trigger.h"
#include "common/status.h"
#include "pipeline/mirror_stage.h"
#include "proto/capture.pb.h"

namespace capd::agent {

struct Subscriber {
  using Clock = std::chrono::steady_clock;
  // CaptureHub::DoneFn
  using DoneFn = std::function<void(StatusOr<v1::StreamEnd>)>;

  StreamSink* sink;
  StopSignal* stop;
  DoneFn done;
  uint64_t id = 0;  // the hub's name for this subscription (CaptureHub::Change)
  // Added to every interface index the capture sends it: 0 on its first capture; after a
  // change (CaptureHub::Change), the first index its earlier captures did not use, so indices
  // stay unique within the stream.
  uint32_t index_base = 0;
  bool changed = false;  // it came from another capture: its start and deadline stay
  // Set while it moves (CaptureHub::Change): called once, when the new capture admits it (ok:
  // from then on its packets are the new capture's) or cannot (why).
  std::function<void(Status)> on_admitted;
  uint64_t max_packets = 0;  // 0: none
  uint64_t duration_ms = 0;  // 0: none
  Clock::time_point deadline = Clock::time_point::max();
  uint64_t started_ns = 0;
  // Counted for this subscriber since it joined.
  uint64_t delivered = 0;    // packets put into its batches (what -c counts)
  uint64_t sent = 0;         // in batches its sink accepted
  uint64_t agent_drops = 0;  // in batches its sink refused (its queue was full)
  // The capture's cumulative counters when it joined: its statistics are the difference.
  CaptureCounters kernel_at_join;
  uint64_t captured_at_join = 0;
  std::map<std::string, uint64_t> outcomes_at_join;
  std::map<uint32_t, uint64_t> inner_packets_at_join;
  std::optional<v1::StreamEnd> end;  // set when it is to leave
  // A request with triggers (start_on/stop_on): kept until the capture admits it and compiles
  // them into `trigger`, which then decides what of each batch it gets.
  std::optional<v1::StreamRequest> trigger_request;
  std::unique_ptr<trigger::StreamTrigger> trigger;
  // After a stop match with after_ms: when the stream ends even if no packet comes to close the
  // window (a quiet link); the loop checks it at least once a second.
  Clock::time_point trigger_quiet_end = Clock::time_point::max();

  // Takes the capture's counters now as this subscriber's zero. `counters`: the source's, if it
  // could give them; `mirror`: null unless decapsulating.
  void MarkJoined(const StatusOr<CaptureCounters>& counters, uint64_t captured,
                  const pipeline::MirrorStage* mirror);

  // Fills `out` with what this subscriber saw since it joined: the capture interface's counters
  // (index 0: the source's received and drops, packets read, sent, agent drops, decapsulation
  // outcomes) and, when decapsulating, each inner interface's packets. `carriers`: the relays left
  // out of the capture, if any.
  void FillStatistics(const StatusOr<CaptureCounters>& counters, uint64_t captured,
                      const pipeline::MirrorStage* mirror, const CarrierSnapshot* carriers,
                      uint64_t timestamp_ns, v1::Statistics& out) const;
};

}  // namespace capd::agent
