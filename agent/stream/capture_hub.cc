#include "agent/stream/capture_hub.h"

#include <future>
#include <utility>

#include "agent/capture/interfaces.h"
#include "agent/stream/shared_capture.h"
#include "agent/stream/subscriber.h"

namespace capd::agent {
namespace {

// What makes two requests share a capture: everything that selects or shapes the packets. The
// count, duration and stop are each subscriber's own.
std::string SharingKey(const v1::StreamRequest& request, const std::string& interface) {
  v1::StreamRequest shape;
  shape.set_interface(interface);
  shape.set_snaplen(request.has_snaplen() ? request.snaplen() : kDefaultSnaplen);
  shape.set_no_promiscuous(request.no_promiscuous());
  shape.set_filter(request.filter());
  *shape.mutable_decap() = request.decap();
  std::string key;
  shape.SerializeToString(&key);  // deterministic: no map fields
  return key;
}

}  // namespace

void CaptureHub::Subscribe(const v1::StreamRequest& request, const AgentIdentity& identity,
                           StreamSink& sink, StopSignal& stop, DoneFn done) {
  Status valid = ValidateStreamRequest(request);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  std::string interface = request.interface();
  if (interface.empty()) {
    auto default_interface = DefaultRouteInterface();
    if (!default_interface.ok()) {
      done(default_interface.status());
      return;
    }
    interface = default_interface.value();
  }
  auto subscriber = std::make_unique<Subscriber>();
  subscriber->sink = &sink;
  subscriber->stop = &stop;
  subscriber->done = std::move(done);
  subscriber->max_packets = request.max_packets();
  subscriber->duration_ms = request.duration_ms();

  std::string key = SharingKey(request, interface);
  std::unique_lock lock(mu_);
  // Checked under mu_, which Shutdown takes to request it: no thread starts after the join began.
  if (shutdown_.requested()) {
    lock.unlock();
    subscriber->done(Unavailable("capd is shutting down"));
    return;
  }
  auto found = captures_.find(key);
  if (found != captures_.end()) {
    if (found->second->TryJoin(subscriber)) return;
  }
  auto capture =
      std::make_shared<SharedCapture>(*this, shutdown_, key, request, interface, identity);
  capture->TryJoin(subscriber);
  captures_[key] = capture;
  // The thread holds the capture until its work returns; the hub joins it (Shutdown). Start
  // cannot be refused here: JoinAll begins only after shutdown_ was requested under mu_.
  threads_.Start("capd-capture", [capture] { capture->Main(); });
}

void CaptureHub::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_.Request(v1::StreamEnd::AGENT_SHUTDOWN);
  }
  // Not under mu_: a capture ending leaves the hub (Forget) before its thread returns.
  threads_.JoinAll();
}

size_t CaptureHub::open_captures() const {
  std::lock_guard lock(mu_);
  return captures_.size();
}

void CaptureHub::Forget(const std::string& key, const SharedCapture* capture) {
  std::lock_guard lock(mu_);
  auto found = captures_.find(key);
  if (found != captures_.end() && found->second.get() == capture) captures_.erase(found);
}

StatusOr<v1::StreamEnd> RunCapture(CaptureHub& hub, const v1::StreamRequest& request,
                                   const AgentIdentity& identity, StreamSink& sink,
                                   StopSignal& stop) {
  std::promise<StatusOr<v1::StreamEnd>> ended;
  auto future = ended.get_future();
  hub.Subscribe(request, identity, sink, stop,
                [&ended](StatusOr<v1::StreamEnd> end) { ended.set_value(std::move(end)); });
  return future.get();
}

}  // namespace capd::agent