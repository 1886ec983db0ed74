#pragma once
// One client's live capture, from the request to the end of the stream.
//
// How data flows: LiveCapture (kernel ring, kernel filter) -> per-packet callback appends to a
// BatchBuilder -> a full batch, or the ring drained, sends the batch to the StreamSink. About once
// a second, and at the end, a Statistics message. Run() blocks its thread until the stream ends:
// a packet count or duration reached, a stop request, or a capture error.
//
// Threading: Run() is the capture thread. It takes no locks per packet, does no disk I/O and logs
// nothing per packet; the only cross-thread call is StreamSink::Send once per batch.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/capture/live_capture.h"
#include "agent/carrier/carrier_tracker.h"
#include "agent/metadata/instance_metadata.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_sink.h"
#include "common/status.h"
#include "filters/bpf_filter.h"
#include "proto/capture.pb.h"

namespace capd::agent {

// The kernel ring of every capture capd opens (capd --buffer-size, --block-timeout-ms).
// The defaults, and why, are LiveCaptureConfig's.
struct RingSettings {
  int buffer_bytes = LiveCaptureConfig{}.buffer_bytes;
  int block_timeout_ms = LiveCaptureConfig{}.block_timeout_ms;
};

// Who the agent is, for interface descriptions and for own-traffic exclusion, and how it
// captures.
struct AgentIdentity {
  std::string name;
  std::string os;
  filters::OwnTraffic own_traffic;  // the listening port; carriers are added from `carriers`
  std::shared_ptr<CarrierTracker> carriers;          // null: carrier exclusion turned off
  std::shared_ptr<const InstanceMetadata> metadata;  // null: not on EC2 (or not known yet)
  RingSettings ring;
};

struct CaptureLimits {
  uint64_t max_packets = 0;               // 0: none
  std::chrono::milliseconds duration{0};  // 0: none
  std::chrono::milliseconds statistics_period{1000};
};

class CaptureLoop {
 public:
  CaptureLoop(const v1::StreamRequest& request, const AgentIdentity& identity, StreamSink& sink,
              StopSignal& stop);

  // Set-up failures (unknown interface, filter that does not compile, no permission) return a
  // status and send nothing. Otherwise the stream ran: returns how it ended, after sending the
  // last batch and the final statistics (the StreamEnd message itself is the caller's to send).
  StatusOr<v1::StreamEnd> Run();

 private:
  v1::StreamRequest request_;
  const AgentIdentity& identity_;
  StreamSink& sink_;
  StopSignal& stop_;
};

// Validates a request before any capture opens. kInvalidArgument names the bad field.
Status ValidateStreamRequest(const v1::StreamRequest& request);

}  // namespace capd::agent
