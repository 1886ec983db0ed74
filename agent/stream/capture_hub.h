#pragma once
// Live captures, one per distinct request, shared by every client that asks for the same packets.
//
// How data flows: LiveCapture (kernel ring, kernel filter) -> per-packet callback appends to a
// BatchBuilder -> a full batch, or the ring drained, goes to every subscriber's StreamSink (the
// last one gets the batch itself, the others a copy). About once a second, and at each
// subscriber's end, a Statistics message.
//
// Sharing: requests that select the same packets (interface, snaplen, promiscuous mode, filter,
// decapsulation) share one capture: one kernel ring, one filter, one pass over each packet, so N
// clients of the same traffic cost one capture plus N copies of each batch. Each subscriber keeps
// its own count, duration, stop, queue and counters; its statistics count from the moment it
// joined, and a subscriber that joins a running capture first receives the interface descriptions
// sent so far. A capture ends when its last subscriber leaves.
//
// Threading: each capture has its own thread. It takes no locks per packet, does no disk I/O and
// logs nothing per packet; the cross-thread calls are StreamSink::Send once per batch and
// subscriber, and one mutex per loop pass to admit new subscribers.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/capture/filter_sandbox.h"
#include "agent/capture/live_capture.h"
#include "agent/metadata/instance_metadata.h"
#include "agent/peers/carrier_registry.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_request.h"  // ValidateStreamRequest
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

// An AWS mirror target serves a few sessions (each needs a mirror session set up by hand);
// 256 leaves room for many without a flood of invented VNIs costing more than ~100 KiB of
// descriptions and ~8 KiB per statistics message.
inline constexpr size_t kDefaultMaxDecapInterfaces = 256;
inline constexpr size_t kMaxDecapInterfaces = 4096;  // as many as --vni may select

// Who the agent is, for interface descriptions and for own-traffic exclusion, and how it
// captures.
struct AgentIdentity {
  std::string name;
  std::string os;
  filters::OwnTraffic own_traffic;  // the listening port; carriers are added from `carriers`
  std::shared_ptr<CarrierRegistry> carriers;         // null: carrier exclusion turned off
  std::shared_ptr<const InstanceMetadata> metadata;  // null: not on EC2 (or not known yet)
  RingSettings ring;
  // Decapsulated interfaces per capture (capd --max-decap-interfaces): each is described to
  // every client, counted in every statistics message and kept for late joiners, and anyone
  // who can reach the tunnel port can invent them. Sessions beyond it are dropped and counted
  // ("interface_limit"), with a warning in the statistics.
  size_t max_decap_interfaces = kDefaultMaxDecapInterfaces;
  // Compiles every filter within a budget (capd-filters); null compiles in-process, unbounded
  // (tests of the hub alone).
  std::shared_ptr<FilterSandbox> filter_sandbox;
};

class SharedCapture;

// Make it with std::make_shared: its captures keep it alive while their threads run.
class CaptureHub : public std::enable_shared_from_this<CaptureHub> {
 public:
  // How a subscription ended: the StreamEnd (the caller sends it), or a set-up failure (unknown
  // interface, filter that does not compile, no permission) after which nothing was sent.
  using DoneFn = std::function<void(StatusOr<v1::StreamEnd>)>;

  CaptureHub() = default;
  CaptureHub(const CaptureHub&) = delete;
  CaptureHub& operator=(const CaptureHub&) = delete;

  // Starts a capture for `request`, or joins a running one that selects the same packets.
  // `sink` receives the interface descriptions, packet batches and statistics; a request on
  // `stop` ends this subscription (with stop's reason). `done` is called exactly once, after the
  // last message to `sink`: from Subscribe itself for a request that fails validation, otherwise
  // on the capture's thread. `sink` and `stop` must stay valid until then. Never blocks on the
  // capture (opening it happens on its thread).
  void Subscribe(const v1::StreamRequest& request, const AgentIdentity& identity, StreamSink& sink,
                 StopSignal& stop, DoneFn done);

  // Captures open now (each shared by one or more subscribers).
  size_t open_captures() const;

 private:
  friend class SharedCapture;
  void Forget(const std::string& key, const SharedCapture* capture);

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<SharedCapture>> captures_;  // by SharingKey
};

// Subscribes and waits for the end (recordings, which have a thread of their own to block).
StatusOr<v1::StreamEnd> RunCapture(CaptureHub& hub, const v1::StreamRequest& request,
                                   const AgentIdentity& identity, StreamSink& sink,
                                   StopSignal& stop);

}  // namespace capd::agent
