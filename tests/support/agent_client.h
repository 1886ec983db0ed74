#pragma once
// A gRPC client of capd inside the test process, for requests capctl refuses to send (snaplen 0,
// a 40-character interface name, a filter that breaks out of its parentheses) and for many
// calls in quick succession (a thousand streams without a thousand processes).
//
// capd runs in a test's network namespace and the test process does not: the connection is a
// TCP socket made inside the namespace (OpenSocketIn) and handed to gRPC
// (CreateInsecureChannelFromFd). Such a channel never reconnects: one channel, one connection,
// any number of calls on it.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "proto/capture.grpc.pb.h"

namespace capd::test {

// A plaintext channel to address:port as seen from inside network namespace `netns`, with
// `arguments` (e.g. a client that buffers little for calls it does not read). Fails when the TCP
// connection cannot be made.
StatusOr<std::shared_ptr<grpc::Channel>> ConnectInsecureIn(
    const std::string& netns, const std::string& address, uint16_t port,
    const grpc::ChannelArguments& arguments = {});

// What one Stream call returned.
struct StreamResult {
  grpc::Status status;    // how the call finished
  size_t interfaces = 0;  // InterfaceDescription messages read
  uint64_t packets = 0;   // packets in the PacketBatch messages read
  std::optional<capd::v1::Statistics> last_statistics;
  size_t max_statistics_bytes = 0;  // the largest Statistics message's encoded size
  std::optional<capd::v1::StreamEnd> end;
};

enum class StreamUntil {
  kEnd,             // read every message until the agent finishes the call
  kFirstInterface,  // cancel as soon as the first InterfaceDescription arrives (capture open)
};

// Calls Stream(request) and reads as `until` says, then reads the call to its end. The call's
// deadline is now + `timeout` (so a hang shows up as DEADLINE_EXCEEDED, not a stuck test).
// `on_interface`, if set, sees each InterfaceDescription as it arrives (on the calling thread):
// the first one means the capture is open.
StreamResult RunStream(
    const std::shared_ptr<grpc::Channel>& channel, const capd::v1::StreamRequest& request,
    StreamUntil until, std::chrono::milliseconds timeout,
    const std::function<void(const capd::v1::InterfaceDescription&)>& on_interface = {});

// "INVALID_ARGUMENT: snaplen 0 is out of range: 1..262144", for assertion messages.
std::string Describe(const grpc::Status& status);

}  // namespace capd::test
