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

uint64_t CaptureHub::Subscribe(const v1::StreamRequest& request, const AgentIdentity& identity,
                               StreamSink& sink, StopSignal& stop, DoneFn done) {
  Status valid = ValidateStreamRequest(request);
  if (!valid.ok()) {
    done(valid);
    return 0;
  }
  std::string interface = request.interface();
  if (interface.empty()) {
    auto default_interface = DefaultRouteInterface();
    if (!default_interface.ok()) {
      done(default_interface.status());
      return 0;
    }
    interface = default_interface.value();
  }
  auto subscriber = std::make_unique<Subscriber>();
  subscriber->sink = &sink;
  subscriber->stop = &stop;
  subscriber->max_packets = request.max_packets();
  subscriber->duration_ms = request.duration_ms();
  if (trigger::HasTriggers(request)) subscriber->trigger_request = request;

  std::unique_lock lock(mu_);
  // Checked under mu_, which Shutdown takes to request it: no thread starts after the join began.
  if (shutdown_.requested()) {
    lock.unlock();
    done(Unavailable("capd is shutting down"));
    return 0;
  }
  const uint64_t id = next_id_++;
  subscriber->id = id;
  // The hub forgets the subscription before its owner hears it ended.
  subscriber->done = [this, id, done = std::move(done)](StatusOr<v1::StreamEnd> end) {
    {
      std::lock_guard forget(mu_);
      subscriptions_.erase(id);
    }
    done(std::move(end));
  };
  JoinLocked(std::move(subscriber), request, interface, identity);
  return id;
}

void CaptureHub::JoinLocked(std::unique_ptr<Subscriber> subscriber,
                            const v1::StreamRequest& request, const std::string& interface,
                            const AgentIdentity& identity) {
  const uint64_t id = subscriber->id;
  std::string key = SharingKey(request, interface);
  auto found = captures_.find(key);
  if (found != captures_.end()) {
    if (found->second->TryJoin(subscriber)) {
      subscriptions_[id] = found->second;
      return;
    }
  }
  auto capture =
      std::make_shared<SharedCapture>(*this, shutdown_, key, request, interface, identity);
  capture->TryJoin(subscriber);
  captures_[key] = capture;
  subscriptions_[id] = capture;
  // The thread holds the capture until its work returns; the hub joins it (Shutdown). Start
  // cannot be refused here: JoinAll begins only after shutdown_ was requested under mu_.
  threads_.Start("capd-capture", [capture] { capture->Main(); });
}

void CaptureHub::Rejoin(std::unique_ptr<Subscriber> subscriber, const v1::StreamRequest& request,
                        const std::string& interface, const AgentIdentity& identity) {
  std::unique_lock lock(mu_);
  if (shutdown_.requested()) {
    lock.unlock();
    if (subscriber->on_admitted) subscriber->on_admitted(Unavailable("capd is shutting down"));
    v1::StreamEnd end;
    end.set_reason(v1::StreamEnd::AGENT_SHUTDOWN);
    subscriber->done(end);
    return;
  }
  JoinLocked(std::move(subscriber), request, interface, identity);
}

StatusOr<v1::ChangeStreamResponse> CaptureHub::Change(uint64_t id,
                                                      const v1::ChangeStreamRequest& change) {
  // A subscriber being moved is briefly in no capture's hands: look again a few times.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::shared_ptr<SharedCapture> capture;
    {
      std::lock_guard lock(mu_);
      auto found = subscriptions_.find(id);
      if (found != subscriptions_.end()) capture = found->second.lock();
    }
    if (!capture) break;
    auto changed = ApplyChange(capture->request(), change);
    if (!changed.ok()) return changed.status();
    const v1::StreamRequest& request = changed.value();
    auto checked = capture->CheckFilters(request);
    if (!checked.ok()) return checked.status();
    std::promise<StatusOr<uint32_t>> moved;
    auto future = moved.get_future();
    if (!capture->RequestMove(id, request, [&moved](StatusOr<uint32_t> first_index) {
          moved.set_value(std::move(first_index));
        })) {
      continue;  // it is closing: the subscriber is on its way elsewhere, or gone
    }
    auto first_index = future.get();
    if (!first_index.ok()) {
      if (first_index.status().code() == StatusCode::kNotFound) continue;
      return first_index.status();
    }
    v1::ChangeStreamResponse response;
    response.set_filter(checked.value());
    response.set_first_interface_index(first_index.value());
    return response;
  }
  return NotFound("no such stream");
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