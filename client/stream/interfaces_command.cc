#include <cstdio>

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
  for (const v1::NetworkInterface& i : response.interfaces()) {
    std::string addresses;
    for (const std::string& a : i.addresses()) addresses += (addresses.empty() ? "" : ", ") + a;
    std::printf("%c %-16s %-8s %s%s\n", i.name() == response.default_interface() ? '*' : ' ',
                i.name().c_str(), i.up() ? (i.running() ? "up" : "no-link") : "down",
                addresses.c_str(),
                i.description().empty() ? "" : (" (" + i.description() + ")").c_str());
  }
  if (!response.default_interface().empty()) {
    std::printf("* default-route interface, used when -i is not given\n");
  }
  return 0;
}

}  // namespace capd::client
