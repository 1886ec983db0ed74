#include "client/stream/agent_channel.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "proto/capture.grpc.pb.h"

namespace capd::client {
namespace {

StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(flag + " " + path + ": cannot read it");
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// gRPC reports a bad PEM file only later, as an unhelpful connection failure: check up front.
StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  auto content = ReadFile(flag, path);
  if (content.ok() && content.value().find("-----BEGIN ") == std::string::npos) {
    return InvalidArgument(flag + " " + path + ": not a PEM file");
  }
  return content;
}

StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(const ConnectionOptions& o) {
  if (!o.tls()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!o.tls_ca_file.empty()) {
    auto ca = ReadPem("--tls-ca", o.tls_ca_file);
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = ca.value();
  }
  if (!o.tls_cert_file.empty()) {
    auto cert = ReadPem("--tls-cert", o.tls_cert_file);
    if (!cert.ok()) return cert.status();
    auto key = ReadPem("--tls-key", o.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = cert.value();
    ssl.pem_private_key = key.value();
  }
  return grpc::SslCredentials(ssl);
}

// gRPC's channel states carry no reason; one quick call does, e.g. "Ssl handshake failed".
std::string WhyUnreachable(const std::shared_ptr<grpc::Channel>& channel, bool tls) {
  auto stub = v1::Capture::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::ListInterfacesResponse response;
  const grpc::Status status = stub->ListInterfaces(&context, {}, &response);
  std::string why = status.ok() ? "connection failed" : status.error_message();
  const bool handshake = why.find("andshake") != std::string::npos ||
                         why.find("SSL") != std::string::npos ||
                         why.find("TLS") != std::string::npos;
  // With TLS 1.3 a refused client certificate shows only as a closed socket: any failure of a
  // TLS connection gets the hint.
  if (tls) {
    why += std::string(" (TLS") + (handshake ? " handshake" : "") +
           ": is the agent's certificate signed by --tls-ca, does it name this address "
           "(--tls-server-name), and does the agent require a client certificate "
           "(--tls-cert/--tls-key)?)";
  } else if (!tls) {
    why += " (is capd running and listening there? if it serves TLS, add --tls-ca)";
  }
  return why;
}

}  // namespace

StatusOr<AgentConnection> AgentConnection::Connect(const AgentAddress& agent,
                                                   const ConnectionOptions& options) {
  auto credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status();
  std::string token;
  if (!options.token_file.empty()) {
    auto content = ReadFile("--token-file", options.token_file);
    if (!content.ok()) return content.status();
    token = content.value();
    const auto first = token.find_first_not_of(" \t\r\n");
    const auto last = token.find_last_not_of(" \t\r\n");
    if (first == std::string::npos) {
      return InvalidArgument("--token-file " + options.token_file + ": no token in it");
    }
    token = token.substr(first, last - first + 1);
  }

  grpc::ChannelArguments args;
  // Batches are at most ~2 MiB (agent/stream/batch_builder.h); leave ample headroom.
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Fail fast when the agent is down instead of gRPC's default reconnect backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC's BDP probe (a PING after received data) stays on for every address, loopback too: it is
  // what grows HTTP/2's window past 64 KiB, and a loopback address may be a hand-made ssh -L or
  // SSM forward to an agent across a distant link, which that window would cap (a fixed window
  // through GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES does not grow the connection's; gRPC 1.51;
  // docs/performance.md, session 14, hand-made tunnels and BDP probing).
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  std::unique_ptr<Tunnel> tunnel;
  std::string target = agent.target;
  if (agent.transport != AgentAddress::Transport::kDirect) {
    // Long enough for a person to answer ssh's password or host-key prompt.
    auto opened = Tunnel::Open(agent, options.remote_port, std::chrono::seconds(60));
    if (!opened.ok()) return opened.status();
    tunnel = std::move(opened.value());
    target = tunnel->local_target();
  }
  auto channel = grpc::CreateCustomChannel(target, credentials.value(), args);

  // Wait for READY, but give up at the first failed attempt (connection refused, no route, name
  // not resolved, TLS handshake): retrying for the whole timeout only delays the message.
  const auto deadline = std::chrono::system_clock::now() + kConnectTimeout;
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      if (tunnel != nullptr && !options.tls()) {
        // The local end of the forward accepted, the instance's end did not: gRPC's reason would
        // name the tunnel's local port, which the user never chose.
        return Unavailable("cannot reach agent at " + agent.text + ": the " +
                           (agent.transport == AgentAddress::Transport::kSsh ? "ssh" : "SSM") +
                           " tunnel is up, but nothing answered on the instance's 127.0.0.1:" +
                           std::to_string(options.remote_port) +
                           " (is capd running there and listening on that port? --remote-port "
                           "names it; default 50051)");
      }
      return Unavailable("cannot reach agent at " + agent.text + ": " +
                         WhyUnreachable(channel, options.tls()));
    }
    if (!channel->WaitForStateChange(state, deadline)) {
      return Unavailable("cannot reach agent at " + agent.text + " within " +
                         std::to_string(kConnectTimeout.count()) + " s (no answer)");
    }
    state = channel->GetState(/*try_to_connect=*/true);
  }
  return AgentConnection(std::move(channel), std::move(token), std::move(tunnel));
}

std::vector<StatusOr<AgentConnection>> ConnectAll(const std::vector<AgentAddress>& agents,
                                                  const ConnectionOptions& options) {
  std::vector<std::optional<StatusOr<AgentConnection>>> slots(agents.size());
  // ssh may ask on the terminal (a password, a new host key): those run one after the other on
  // this thread, so that two prompts never interleave; the others on the workers meanwhile.
  std::vector<size_t> prompting, others;
  for (size_t i = 0; i < agents.size(); ++i) {
    (agents[i].transport == AgentAddress::Transport::kSsh ? prompting : others).push_back(i);
  }
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t k = next++; k < others.size(); k = next++) {
      slots[others[k]].emplace(AgentConnection::Connect(agents[others[k]], options));
    }
  };
  const size_t workers =
      others.size() <= 1 && prompting.empty() ? 0 : std::min(others.size(), kConnectConcurrency);
  std::vector<std::thread> threads;
  for (size_t w = 0; w < workers; ++w) threads.emplace_back(work);
  if (workers == 0) work();
  for (const size_t i : prompting) slots[i].emplace(AgentConnection::Connect(agents[i], options));
  for (std::thread& t : threads) t.join();
  std::vector<StatusOr<AgentConnection>> results;
  results.reserve(agents.size());
  for (auto& slot : slots) results.push_back(std::move(*slot));
  return results;
}

void AgentConnection::Prepare(grpc::ClientContext& context) const {
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
}

Status FromGrpcStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Status::Ok();
    // The agent's "not possible now" (an interface that is down) refuses the request as such.
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return {StatusCode::kInvalidArgument, DescribeRefusal(status)};
    case grpc::StatusCode::NOT_FOUND:
      return {StatusCode::kNotFound, DescribeRefusal(status)};
    case grpc::StatusCode::ALREADY_EXISTS:
      return {StatusCode::kAlreadyExists, DescribeRefusal(status)};
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return {StatusCode::kResourceExhausted, DescribeRefusal(status)};
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return {StatusCode::kPermissionDenied, DescribeRefusal(status)};
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
      return {StatusCode::kUnavailable, DescribeRefusal(status)};
    default:
      return {StatusCode::kInternal, DescribeRefusal(status)};
  }
}

std::string DescribeRefusal(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return "not authenticated: " + status.error_message();
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied: " + status.error_message();
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "too busy: " + status.error_message();
    default:
      return status.error_message();
  }
}

}  // namespace capd::client
