#pragma once
// The interface descriptions a capture sends its clients: the capture interface first (index 0:
// the client writes its file header from it), then, when decapsulating, one per inner interface
// as its first packet arrives. Pure functions of what they are given.

#include <cstdint>
#include <string>

#include "agent/capture/capture_source.h"
#include "agent/stream/agent_identity.h"
#include "pipeline/mirror_stage.h"
#include "proto/capture.pb.h"

namespace capd::agent {

// The capture interface, index 0. `filter`: the kernel filter as composed; `mirror_mode`: its
// packets are tunnels and no packet is filed under it.
v1::StreamResponse CaptureInterfaceDescription(const CaptureSource& capture,
                                               const AgentIdentity& identity,
                                               const std::string& filter, bool mirror_mode,
                                               uint64_t capture_start_ns);

// A decapsulated session's interface. `inner_filter`: the request's, applied to inner frames.
v1::StreamResponse InnerInterfaceDescription(const pipeline::InnerInterface& inner,
                                             const AgentIdentity& identity, int snaplen,
                                             const std::string& inner_filter,
                                             uint64_t capture_start_ns);

}  // namespace capd::agent
