#pragma once
// Connecting to an agent: one gRPC channel, with a bounded wait so an unreachable agent is a
// clear message within seconds rather than a hang.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>

#include "client/cli/agent_address.h"
#include "common/status.h"

namespace capd::client {

constexpr std::chrono::seconds kConnectTimeout{5};

// kUnavailable "cannot reach agent at A within 5 s (...)" when the channel does not connect.
StatusOr<std::shared_ptr<grpc::Channel>> ConnectToAgent(const AgentAddress& agent);

}  // namespace capd::client
