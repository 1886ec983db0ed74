#pragma once
// Connecting to an agent: one gRPC channel (plain or TLS), the token every call carries, and a
// bounded wait so an unreachable agent is a clear message within seconds rather than a hang.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client/cli/options.h"
#include "client/transport/agent_address.h"
#include "client/transport/tunnel.h"
#include "common/status.h"

namespace capd::client {

constexpr std::chrono::seconds kConnectTimeout{5};

class AgentConnection {
 public:
  // Reads the TLS and token files, opens the ssh/SSM forward for ssh:// and ssm:// agents,
  // connects, and waits until the channel is ready. kInvalidArgument for an unreadable file;
  // kUnavailable "cannot reach agent at A: <why>" (or the forward's own failure).
  static StatusOr<AgentConnection> Connect(const AgentAddress& agent,
                                           const ConnectionOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Adds what every call must carry (the bearer token). Call on each ClientContext.
  void Prepare(grpc::ClientContext& context) const;

 private:
  AgentConnection(std::shared_ptr<grpc::Channel> channel, std::string token,
                  std::unique_ptr<Tunnel> tunnel)
      : tunnel_(std::move(tunnel)), channel_(std::move(channel)), token_(std::move(token)) {}
  std::unique_ptr<Tunnel> tunnel_;  // declared first: torn down after the channel
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
};

// How many agents ConnectAll connects at once. An SSM port forward is an `aws` process (a Python
// program) and a session-manager-plugin on this machine, each costing CPU and memory to start,
// and a StartSession call that SSM rate-limits per account: 8 keeps a selection of 20 instances
// to three rounds of one session's start-up without starting 20 of them at once on a laptop.
constexpr size_t kConnectConcurrency = 8;

// AgentConnection::Connect for each agent, at most kConnectConcurrency at once; ssh:// agents
// one after the other on the calling thread (ssh may prompt on the terminal). The results in
// the agents' order.
std::vector<StatusOr<AgentConnection>> ConnectAll(const std::vector<AgentAddress>& agents,
                                                  const ConnectionOptions& options);

// "refused the stream: not authenticated: <agent's message>" and the like, for a gRPC status.
std::string DescribeRefusal(const grpc::Status& status);

// The one mapping of an agent's gRPC status to capctl's: the code (so that ExitCodeFor decides
// the exit code the same way for every command) and DescribeRefusal's text.
Status FromGrpcStatus(const grpc::Status& status);

}  // namespace capd::client
