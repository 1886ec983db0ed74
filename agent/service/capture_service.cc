#include "agent/service/capture_service.h"

#include <spdlog/spdlog.h>

#include "agent/capture/interfaces.h"
#include "agent/service/status_mapping.h"

namespace capd::agent {
namespace {

// A reactor that only finishes with an error, for calls refused before any capture starts.
class RefusedStream : public grpc::ServerWriteReactor<v1::StreamResponse> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

CaptureService::CaptureService(ServiceOptions options) : options_(std::move(options)) {}

grpc::ServerUnaryReactor* CaptureService::ListInterfaces(grpc::CallbackServerContext* context,
                                                         const v1::ListInterfacesRequest*,
                                                         v1::ListInterfacesResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status allowed = Authorize(*context); !allowed.ok()) {
    reactor->Finish(allowed);
    return reactor;
  }
  auto interfaces = ListCaptureInterfaces();
  if (!interfaces.ok()) {
    reactor->Finish(ToGrpcStatus(interfaces.status()));
    return reactor;
  }
  {
    std::lock_guard lock(mu_);
    response->set_agent_name(options_.identity.name);
  }
  response->set_agent_version(options_.version);
  if (auto default_interface = DefaultRouteInterface(); default_interface.ok()) {
    response->set_default_interface(default_interface.value());
  }
  for (const InterfaceSummary& summary : interfaces.value()) {
    v1::NetworkInterface* out = response->add_interfaces();
    out->set_name(summary.name);
    out->set_description(summary.description);
    for (const std::string& address : summary.addresses) out->add_addresses(address);
    out->set_up(summary.up);
    out->set_running(summary.running);
    out->set_loopback(summary.loopback);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::StreamResponse>* CaptureService::Stream(
    grpc::CallbackServerContext* context, const v1::StreamRequest* request) {
  if (grpc::Status allowed = Authorize(*context); !allowed.ok()) {
    spdlog::warn("refused a stream from {}: {}", context->peer(), allowed.error_message());
    return new RefusedStream(allowed);
  }
  if (Status valid = ValidateStreamRequest(*request); !valid.ok()) {
    return new RefusedStream(ToGrpcStatus(valid));
  }
  std::lock_guard lock(mu_);
  if (shutting_down_ || !ready_) {
    return new RefusedStream({grpc::StatusCode::UNAVAILABLE,
                              shutting_down_ ? "capd is shutting down" : "capd is starting"});
  }
  if (streams_.size() >= options_.max_streams) {
    return new RefusedStream({grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "capd already serves " + std::to_string(streams_.size()) +
                                  " streams, its limit (--max-streams)"});
  }
  spdlog::info("stream from {}: interface '{}', filter '{}', count {}, duration {} ms",
               context->peer(), request->interface(), request->filter(), request->max_packets(),
               request->duration_ms());
  auto* reactor = new StreamReactor(*request, options_.identity, options_.max_queue_bytes, context,
                                    [this](StreamReactor* gone) { Forget(gone); });
  streams_.insert(reactor);
  return reactor;
}

grpc::Status CaptureService::Authorize(const grpc::CallbackServerContext& context) const {
  return options_.token ? options_.token->Check(context) : grpc::Status::OK;
}

void CaptureService::Forget(StreamReactor* reactor) {
  std::lock_guard lock(mu_);
  streams_.erase(reactor);
  if (streams_.empty()) all_gone_.notify_all();
}

void CaptureService::SetListeningPort(uint16_t port) {
  std::lock_guard lock(mu_);
  options_.identity.own_traffic.tcp_ports = {port};
  ready_ = true;
}

void CaptureService::SetInstanceMetadata(std::shared_ptr<const InstanceMetadata> metadata,
                                         bool use_as_name) {
  std::lock_guard lock(mu_);
  if (use_as_name) options_.identity.name = metadata->instance_id;
  options_.identity.metadata = std::move(metadata);
}

void CaptureService::BeginShutdown() {
  std::lock_guard lock(mu_);
  shutting_down_ = true;
  for (StreamReactor* stream : streams_) stream->RequestStop(v1::StreamEnd::AGENT_SHUTDOWN);
}

bool CaptureService::WaitForStreams(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return all_gone_.wait_for(lock, timeout, [this] { return streams_.empty(); });
}

}  // namespace capd::agent
