#include "client/stream/agent_channel.h"

namespace capd::client {

StatusOr<std::shared_ptr<grpc::Channel>> ConnectToAgent(const AgentAddress& agent) {
  grpc::ChannelArguments args;
  // Batches are at most ~512 KiB (agent/stream/batch_builder.h); leave ample headroom.
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Fail fast when the agent is down instead of gRPC's default reconnect backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  auto channel = grpc::CreateCustomChannel(agent.target, grpc::InsecureChannelCredentials(), args);
  // Wait for READY, but give up at the first failed attempt (connection refused, no route, name
  // not resolved): retrying a refused connection for the whole timeout only delays the message.
  const auto deadline = std::chrono::system_clock::now() + kConnectTimeout;
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return Unavailable("cannot reach agent at " + agent.target +
                         ": connection failed (is capd running and listening there?)");
    }
    if (!channel->WaitForStateChange(state, deadline)) {
      return Unavailable("cannot reach agent at " + agent.target + " within " +
                         std::to_string(kConnectTimeout.count()) + " s (no answer)");
    }
    state = channel->GetState(/*try_to_connect=*/true);
  }
  return channel;
}

}  // namespace capd::client
