#include "tests/support/agent_client.h"

#include <arpa/inet.h>
#include <grpcpp/create_channel_posix.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tests/support/test_network.h"

namespace capd::test {
namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    default:
      return "code";
  }
}

}  // namespace

std::string Describe(const grpc::Status& status) {
  std::string text = CodeName(status.error_code());
  if (status.error_code() != grpc::StatusCode::OK) {
    text += " (" + std::to_string(static_cast<int>(status.error_code())) + ")";
  }
  if (!status.error_message().empty()) text += ": " + status.error_message();
  return text;
}

StatusOr<std::shared_ptr<grpc::Channel>> ConnectInsecureIn(
    const std::string& netns, const std::string& address, uint16_t port,
    const grpc::ChannelArguments& arguments) {
  auto socket = OpenSocketIn(netns, AF_INET, SOCK_STREAM);
  if (!socket.ok()) return socket.status();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("not an IPv4 address: " + address);
  }
  if (::connect(socket->get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Internal("connect(" + address + ":" + std::to_string(port) + ") in netns " + netns +
                    ": " + std::strerror(errno));
  }
  // gRPC owns the descriptor from here on.
  const int fd = socket->Release();
  return grpc::CreateCustomInsecureChannelFromFd(address + ":" + std::to_string(port), fd,
                                                 arguments);
}

StreamResult RunStream(
    const std::shared_ptr<grpc::Channel>& channel, const capd::v1::StreamRequest& request,
    StreamUntil until, std::chrono::milliseconds timeout,
    const std::function<void(const capd::v1::InterfaceDescription&)>& on_interface) {
  auto stub = capd::v1::Capture::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub->Stream(&context, request);
  StreamResult result;
  capd::v1::StreamResponse response;
  bool cancelled = false;
  while (reader->Read(&response)) {
    switch (response.payload_case()) {
      case capd::v1::StreamResponse::kInterface:
        ++result.interfaces;
        if (on_interface) on_interface(response.interface());
        if (until == StreamUntil::kFirstInterface && !cancelled) {
          context.TryCancel();
          cancelled = true;
        }
        break;
      case capd::v1::StreamResponse::kPackets:
        result.packets += static_cast<uint64_t>(response.packets().timestamp_ns_size());
        break;
      case capd::v1::StreamResponse::kStatistics:
        result.last_statistics = response.statistics();
        result.max_statistics_bytes =
            std::max(result.max_statistics_bytes, response.ByteSizeLong());
        break;
      case capd::v1::StreamResponse::kEnd:
        result.end = response.end();
        break;
      default:
        break;
    }
  }
  result.status = reader->Finish();
  return result;
}

}  // namespace capd::test
