#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "client/stream/agent_channel.h"
#include "client/stream/stream_command.h"
#include "proto/capture.grpc.pb.h"

namespace capd::client {

int RunInterfacesCommand(const InterfacesOptions& options) {
  auto connection = AgentConnection::Connect(options.agent, options.connection);
  if (!connection.ok()) {
    std::fprintf(stderr, "capctl: %s\n", connection.status().message().c_str());
    return ExitCodeFor(connection.status().code());
  }
  auto stub = v1::Capture::NewStub(connection->channel());
  grpc::ClientContext context;
  connection->Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListInterfacesResponse response;
  const grpc::Status status = stub->ListInterfaces(&context, {}, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "capctl: agent %s refused: %s\n", options.agent.target.c_str(),
                 DescribeRefusal(status).c_str());
    return ExitCodeFor(FromGrpcStatus(status).code());
  }
  std::printf("agent %s (capd %s) at %s\n", response.agent_name().c_str(),
              response.agent_version().c_str(), options.agent.target.c_str());
  // Columns as wide as the longest name (Linux allows 15 bytes, altnames and mirror targets'
  // made-up names run longer), so that states and addresses line up whatever the names.
  int name_width = 0;
  for (const v1::NetworkInterface& i : response.interfaces()) {
    name_width = std::max(name_width, static_cast<int>(i.name().size()));
  }
  for (const v1::NetworkInterface& i : response.interfaces()) {
    std::string details;  // addresses, then the description in parentheses
    for (const std::string& a : i.addresses()) details += (details.empty() ? "" : ", ") + a;
    if (!i.description().empty()) {
      details += (details.empty() ? "(" : " (") + i.description() + ")";
    }
    const char* state = i.up() ? (i.running() ? "up" : "no-link") : "down";
    std::string line =
        std::string(i.name() == response.default_interface() ? "* " : "  ") + i.name() +
        std::string(static_cast<size_t>(name_width) - i.name().size() + 2, ' ') + state;
    if (!details.empty()) line += std::string(9 - std::strlen(state), ' ') + details;
    std::printf("%s\n", line.c_str());
  }
  if (!response.default_interface().empty()) {
    std::printf("* default-route interface, used when -i is not given\n");
  }
  return 0;
}

}  // namespace capd::client
