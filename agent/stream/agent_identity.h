#pragma once
// Who the agent is and how it captures: what every capture of a CaptureHub is opened and
// described with.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/capture/capture_source.h"
#include "agent/capture/filter_sandbox.h"
#include "agent/metadata/instance_metadata.h"
#include "agent/peers/carrier_registry.h"
#include "filters/bpf_filter.h"

namespace capd::agent {

// The kernel ring of every capture capd opens (capd --buffer-size, --block-timeout-ms).
// The defaults, and why, are CaptureConfig's.
struct RingSettings {
  int buffer_bytes = CaptureConfig{}.buffer_bytes;
  int block_timeout_ms = CaptureConfig{}.block_timeout_ms;
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
  // Where captures come from; null: live libpcap captures (LiveCaptureFactory), capd's.
  std::shared_ptr<CaptureSourceFactory> sources;
  // The history a stream with a start trigger may hold (capd --max-trigger-history).
  uint64_t max_trigger_history_bytes = 32ULL << 20;
};

}  // namespace capd::agent
