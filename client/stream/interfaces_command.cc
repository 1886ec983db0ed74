#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "client/stream/agent_channel.h"
#include "client/stream/stream_command.h"
#include "client/transport/fleet_selection.h"
#include "proto/capture.grpc.pb.h"

namespace capd::client {

namespace {

// One agent's list on stdout; its refusal as one line on stderr. Returns the exit code.
int ListInterfaces(const AgentAddress& agent, const AgentConnection& connection) {
  auto stub = v1::Capture::NewStub(connection.channel());
  grpc::ClientContext context;
  connection.Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListInterfacesResponse response;
  const grpc::Status status = stub->ListInterfaces(&context, {}, &response);
  // An instance of a selection is named as capctl found it: "i-0abc (web-1)".
  const std::string& where = agent.label.empty() ? agent.target : agent.label;
  if (!status.ok()) {
    std::fprintf(stderr, "capctl: agent %s refused: %s\n", where.c_str(),
                 DescribeRefusal(status).c_str());
    return ExitCodeFor(FromGrpcStatus(status).code());
  }
  std::printf("agent %s (capd %s) at %s\n", response.agent_name().c_str(),
              response.agent_version().c_str(), where.c_str());
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

}  // namespace

int RunInterfacesCommand(const InterfacesOptions& options) {
  if (!IsFleetSelector(options.agent)) {
    auto connection = AgentConnection::Connect(options.agent, options.connection);
    if (!connection.ok()) {
      std::fprintf(stderr, "capctl: %s\n", connection.status().message().c_str());
      return ExitCodeFor(connection.status().code());
    }
    return ListInterfaces(options.agent, *connection);
  }
  // A selection: every instance's list, one after the other, in the order EC2 gave them; an
  // instance that cannot be reached is one line on stderr and the others are still listed.
  auto expanded = ExpandFleetAgents({options.agent}, options.max_agents, RunAwsCli);
  if (!expanded.ok()) {
    std::fprintf(stderr, "capctl: %s\n", expanded.status().message().c_str());
    return ExitCodeFor(expanded.status().code());
  }
  int code = expanded->left_out.empty() ? 0 : 1;
  for (const std::string& line : expanded->left_out) {
    std::fprintf(stderr, "capctl: %s; the others go on\n", line.c_str());
  }
  auto connections = ConnectAll(expanded->agents, options.connection);
  bool listed = false;
  for (size_t i = 0; i < connections.size(); ++i) {
    const AgentAddress& agent = expanded->agents[i];
    if (!connections[i].ok()) {
      std::fprintf(stderr, "capctl: %s: %s; the others go on\n", agent.label.c_str(),
                   connections[i].status().message().c_str());
      code = std::max(code, 1);
      continue;
    }
    if (listed) std::printf("\n");
    listed = true;
    code = std::max(code, ListInterfaces(agent, *connections[i]));
  }
  return listed ? code : std::max(code, 1);
}

}  // namespace capd::client
