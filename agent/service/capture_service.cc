#include "agent/service/capture_service.h"

#include <netinet/tcp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <thread>
#include <vector>

#include "agent/capture/interfaces.h"
#include "agent/keylog/keylog_follower.h"
#include "agent/peers/socket_table.h"
#include "agent/rewind/rewind.h"
#include "agent/service/status_mapping.h"
#include "agent/trigger/stream_trigger.h"
#include "common/log_throttle.h"
#include "common/utf8.h"
#include "filters/bpf_filter.h"

namespace capd::agent {
namespace {

// A reactor that only finishes with an error, for calls refused before any capture starts.
class RefusedStream : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// A write reactor that only finishes with an error.
class RefusedFetch : public grpc::ServerWriteReactor<v1::RecordingChunk> {
 public:
  explicit RefusedFetch(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// Sends a recording's files in chunks, one write in flight; each chunk is read from disk in
// OnWriteDone (256 KiB from the page cache or a local disk, well under a millisecond). Memory per
// fetch: one chunk plus what gRPC buffers for the client, never a whole file. A client that
// reads nothing for the stall timeout is cancelled by CaptureService's watchdog.
class FetchReactor : public grpc::ServerWriteReactor<v1::RecordingChunk> {
 public:
  using OnDoneFn = std::function<void(FetchReactor*)>;
  FetchReactor(std::string name, std::vector<std::string> paths,
               grpc::CallbackServerContext* context, OnDoneFn on_done)
      : name_(std::move(name)),
        paths_(std::move(paths)),
        context_(context),
        peer_(context->peer()),
        on_done_(std::move(on_done)) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    writing_since_ns_.store(0, std::memory_order_relaxed);
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }
  void OnDone() override {
    on_done_(this);  // unregisters: the watchdog no longer sees it
    delete this;
  }

  // The watchdog's check (under CaptureService::fetch_mu_, so before OnDone's unregistering).
  void CancelIfStalled(std::chrono::steady_clock::time_point now,
                       std::chrono::milliseconds timeout) {
    const int64_t since = writing_since_ns_.load(std::memory_order_relaxed);
    if (since == 0 || cancelled_) return;
    if (now.time_since_epoch() - std::chrono::nanoseconds(since) <= timeout) return;
    cancelled_ = true;
    spdlog::warn("fetch of recording {} to {}: the client has read nothing for {} s; ending it",
                 name_, peer_, timeout.count() / 1000.0);
    context_->TryCancel();  // OnWriteDone(false) follows and finishes the call
  }

 private:
  static constexpr size_t kChunkBytes = 256 * 1024;

  void Next() {
    while (true) {
      if (!file_.is_open()) {
        if (index_ >= paths_.size()) {
          Finish(grpc::Status::OK);
          return;
        }
        file_.open(paths_[index_], std::ios::binary);
        offset_ = 0;
        if (!file_) {  // deleted by the ring since it was listed: skip it
          file_ = std::ifstream();
          ++index_;
          continue;
        }
      }
      chunk_.Clear();
      std::string* data = chunk_.mutable_data();
      data->resize(kChunkBytes);
      file_.read(data->data(), static_cast<std::streamsize>(kChunkBytes));
      data->resize(static_cast<size_t>(file_.gcount()));
      const std::string& path = paths_[index_];
      chunk_.set_file_name(path.substr(path.rfind('/') + 1));
      chunk_.set_offset(offset_);
      offset_ += data->size();
      if (file_.eof() || !file_) {
        chunk_.set_last(true);
        file_ = std::ifstream();
        ++index_;
      }
      writing_since_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                              std::memory_order_relaxed);
      StartWrite(&chunk_);
      return;
    }
  }

  const std::string name_;
  std::vector<std::string> paths_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  const std::string peer_;
  OnDoneFn on_done_;
  size_t index_ = 0;
  std::ifstream file_;
  uint64_t offset_ = 0;
  v1::RecordingChunk chunk_;
  // steady_clock ns when the write in flight started; 0: none in flight.
  std::atomic<int64_t> writing_since_ns_{0};
  bool cancelled_ = false;  // watchdog only
};

StatusOr<std::unique_ptr<rewind::Rewind>> CaptureService::PrepareRewind(
    const v1::StreamRequest& request) {
  RecordingManager* recordings = recordings_.load();
  if (recordings == nullptr) {
    return Status(StatusCode::kFailedPrecondition,
                  "--since reads a recording, and recordings are not enabled on this agent "
                  "(start capd with --record-dir DIR, then capctl record start)");
  }
  if (request.has_decap() && request.decap().mode() != v1::Decapsulation::NONE) {
    return InvalidArgument("--since does not combine with decapsulation");
  }
  // The recorded part is read from files, past the capture's trigger gate: its packets would
  // reach the client whatever --start-on and --stop-on say.
  if (trigger::HasTriggers(request)) {
    return InvalidArgument("--since does not combine with --start-on or --stop-on");
  }
  const uint64_t now =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  if (request.since_ns() > now) return InvalidArgument("--since names a time in the future");
  // An empty name is the default-route interface, for the stream as for a recording.
  std::string fallback;
  if (auto found = DefaultRouteInterface(); found.ok()) fallback = *found;
  const auto name_of = [&](const std::string& requested) {
    return requested.empty() ? fallback : requested;
  };
  const std::string interface = name_of(request.interface());
  std::vector<rewind::RecordingSource> candidates;
  std::vector<std::pair<std::string, std::string>> running;
  for (RecordingManager::RunningRecording& r : recordings->Running()) {
    running.emplace_back(r.name, name_of(r.interface));
    if (r.decapsulates || name_of(r.interface) != interface) continue;
    candidates.push_back({r.name, r.filter, std::move(r.files), std::move(r.written_through_ns)});
  }
  if (candidates.empty()) {
    return Status(StatusCode::kFailedPrecondition, rewind::NoRecordingMessage(interface, running));
  }
  return std::make_unique<rewind::Rewind>(std::move(candidates), request, interface,
                                          options_.identity.filter_sandbox);
}

RecordingManager* CaptureService::Recordings(const grpc::CallbackServerContext& context,
                                             grpc::Status* refused) {
  if (grpc::Status allowed = Authorize(context); !allowed.ok()) {
    *refused = allowed;
    return nullptr;
  }
  RecordingManager* recordings = recordings_.load();
  if (recordings == nullptr) {
    *refused = {grpc::StatusCode::FAILED_PRECONDITION,
                "recordings are not enabled on this agent (start capd with --record-dir DIR)"};
  }
  return recordings;
}

grpc::ServerUnaryReactor* CaptureService::RecordingCall(
    grpc::CallbackServerContext* context, std::function<grpc::Status(RecordingManager&)> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status refused;
  RecordingManager* recordings = Recordings(*context, &refused);
  if (recordings == nullptr) {
    reactor->Finish(refused);
    return reactor;
  }
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      reactor->Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
      return reactor;
    }
  }
  // Starting or stopping a recording opens or joins its capture: off gRPC's threads, on one the
  // service joins at shutdown.
  const bool started = recording_calls_.Start(
      "capd-record-rpc",
      [recordings, reactor, work = std::move(work)] { reactor->Finish(work(*recordings)); });
  if (!started) reactor->Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
  return reactor;
}

grpc::ServerUnaryReactor* CaptureService::StartRecording(grpc::CallbackServerContext* context,
                                                         const v1::StartRecordingRequest* request,
                                                         v1::RecordingInfo* response) {
  // Tells the client its triggers apply (an older capd ignores them and records everything).
  if (!request->start_on().empty() || !request->stop_on().empty()) {
    context->AddInitialMetadata("capd-trigger", "armed");
  }
  return RecordingCall(context, [request, response](RecordingManager& recordings) {
    auto started = recordings.Start(*request);
    if (!started.ok()) return ToGrpcStatus(started.status());
    *response = std::move(started).value();
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaptureService::StopRecording(grpc::CallbackServerContext* context,
                                                        const v1::StopRecordingRequest* request,
                                                        v1::RecordingInfo* response) {
  return RecordingCall(context, [request, response](RecordingManager& recordings) {
    auto stopped = recordings.Stop(request->name());
    if (!stopped.ok()) return ToGrpcStatus(stopped.status());
    *response = std::move(stopped).value();
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaptureService::DeleteRecording(grpc::CallbackServerContext* context,
                                                          const v1::DeleteRecordingRequest* request,
                                                          v1::RecordingInfo* response) {
  // Removing a ring of up to 100,000 files takes a while: off gRPC's threads too.
  return RecordingCall(context, [request, response](RecordingManager& recordings) {
    auto deleted = recordings.Delete(request->name());
    if (!deleted.ok()) return ToGrpcStatus(deleted.status());
    *response = std::move(deleted).value();
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaptureService::ListRecordings(grpc::CallbackServerContext* context,
                                                         const v1::ListRecordingsRequest*,
                                                         v1::ListRecordingsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status refused;
  RecordingManager* recordings = Recordings(*context, &refused);
  if (recordings == nullptr) {
    reactor->Finish(refused);
    return reactor;
  }
  for (v1::RecordingInfo& info : recordings->List()) *response->add_recordings() = std::move(info);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::RecordingChunk>* CaptureService::FetchRecording(
    grpc::CallbackServerContext* context, const v1::FetchRecordingRequest* request) {
  grpc::Status refused;
  RecordingManager* recordings = Recordings(*context, &refused);
  if (recordings == nullptr) return new RefusedFetch(refused);
  auto files = recordings->FetchableFiles(request->name());
  if (!files.ok()) return new RefusedFetch(ToGrpcStatus(files.status()));
  std::lock_guard lock(fetch_mu_);
  if (fetches_.size() >= options_.max_fetches) {
    return new RefusedFetch({grpc::StatusCode::RESOURCE_EXHAUSTED,
                             "capd already serves " + std::to_string(fetches_.size()) +
                                 " fetches, its limit (--max-fetches)"});
  }
  // gRPC runs no reaction before this returns, so OnDone cannot unregister before this registers.
  auto* reactor =
      new FetchReactor(request->name(), std::move(files).value(), context, [this](FetchReactor* f) {
        std::lock_guard done_lock(fetch_mu_);
        fetches_.erase(f);
      });
  fetches_.insert(reactor);
  return reactor;
}

CaptureService::CaptureService(ServiceOptions options)
    : options_(std::move(options)), watchdog_([this] { FetchWatchdog(); }) {}

CaptureService::~CaptureService() {
  {
    std::lock_guard lock(fetch_mu_);
    stop_watchdog_ = true;
  }
  fetch_cv_.notify_all();
  watchdog_.join();
}

void CaptureService::FetchWatchdog() {
  // Checked four times per timeout (at most once a second): a stalled fetch ends within
  // 1.25 timeouts.
  const auto period =
      std::min<std::chrono::milliseconds>(std::chrono::seconds(1), options_.stall_timeout / 4);
  std::unique_lock lock(fetch_mu_);
  while (!fetch_cv_.wait_for(lock, period, [this] { return stop_watchdog_; })) {
    const auto now = std::chrono::steady_clock::now();
    for (FetchReactor* fetch : fetches_) fetch->CancelIfStalled(now, options_.stall_timeout);
  }
}

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

grpc::ServerWriteReactor<grpc::ByteBuffer>* CaptureService::Stream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  // What the generated handler does for a typed method (Deserialize consumes its buffer).
  grpc::ByteBuffer bytes(*request);
  v1::StreamRequest parsed;
  if (grpc::Status status =
          grpc::SerializationTraits<v1::StreamRequest>::Deserialize(&bytes, &parsed);
      !status.ok()) {
    return new RefusedStream(status);
  }
  return OpenStream(context, &parsed);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* CaptureService::OpenStream(
    grpc::CallbackServerContext* context, const v1::StreamRequest* request) {
  std::string principal;
  if (grpc::Status allowed = Authorize(*context, &principal); !allowed.ok()) {
    if (auto held_back = RefusalLogThrottle().Admit()) {
      spdlog::warn("refused a stream from {}: {}{}", context->peer(), allowed.error_message(),
                   HeldBackNote(*held_back));
    }
    return new RefusedStream(allowed);
  }
  if (Status valid = ValidateStreamRequest(*request); !valid.ok()) {
    return new RefusedStream(ToGrpcStatus(valid));
  }
  // The key log is opened before the capture: a refused path costs no capture.
  std::unique_ptr<keylog::KeyLogFollower> keylog;
  if (!request->tls_keylog().empty()) {
    auto opened = OpenKeyLog(request->tls_keylog());
    if (!opened.ok()) {
      if (auto held_back = RefusalLogThrottle().Admit()) {
        spdlog::info("stream from {} refused: {}{}", context->peer(), opened.status().message(),
                     HeldBackNote(*held_back));
      }
      return new RefusedStream(ToGrpcStatus(opened.status()));
    }
    keylog = std::move(opened).value();
  }
  // The recording is found before the capture: a stream that cannot rewind costs no capture.
  std::unique_ptr<rewind::Rewind> rewind;
  if (request->since_ns() != 0) {
    auto prepared = PrepareRewind(*request);
    if (!prepared.ok()) return new RefusedStream(ToGrpcStatus(prepared.status()));
    rewind = std::move(prepared).value();
  }
  // Checked before and after asking who relays the stream: a refused stream costs no query.
  auto refusal = [this]() -> std::optional<grpc::Status> {
    if (shutting_down_ || !ready_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          shutting_down_ ? "capd is shutting down" : "capd is starting");
    }
    if (streams_.size() >= options_.max_streams) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "capd already serves " + std::to_string(streams_.size()) +
                              " streams, its limit (--max-streams)");
    }
    return std::nullopt;
  };
  {
    std::lock_guard lock(mu_);
    if (auto refused = refusal()) return new RefusedStream(*refused);
  }
  StreamRelay relay = IdentifyRelay(context->peer());
  std::lock_guard lock(mu_);
  if (auto refused = refusal()) return new RefusedStream(*refused);
  spdlog::info("stream from {}: interface '{}', filter {}, count {}, duration {} ms",
               context->peer(), request->interface(), filters::QuoteFilter(request->filter()),
               request->max_packets(), request->duration_ms());
  // The handle goes out with the call's first message (initial metadata), to this client only.
  auto handle = NewStreamHandle();
  if (handle.ok()) context->AddInitialMetadata(StreamHandles::kMetadataKey, handle.value());
  // Tells the client its key log is followed (an older capd ignores the field and says nothing).
  if (keylog) context->AddInitialMetadata("capd-tls-keylog", "following");
  // Tells the client its triggers apply (an older capd ignores them and streams everything).
  if (trigger::HasTriggers(*request)) context->AddInitialMetadata("capd-trigger", "armed");
  auto* reactor = new StreamReactor(
      *hub_, *request, options_.identity, std::move(relay), options_.max_queue_bytes,
      options_.stall_timeout, context, [this](StreamReactor* gone) { Forget(gone); },
      std::move(rewind));
  streams_.insert(reactor);
  if (handle.ok()) handles_.Add(handle.value(), principal, reactor->subscription(), reactor);
  if (keylog) {
    spdlog::info("stream from {}: following TLS key log {}", context->peer(), keylog->path());
    reactor->FollowKeyLog(std::move(keylog));
  }
  return reactor;
}

StatusOr<std::unique_ptr<keylog::KeyLogFollower>> CaptureService::OpenKeyLog(
    const std::string& requested) const {
  if (!options_.keylog_folders) {
    return Status(StatusCode::kFailedPrecondition,
                  "TLS key logs are not enabled on this agent (start capd with "
                  "--tls-keylog-dir DIR)");
  }
  if (!IsValidUtf8(requested)) return InvalidArgument("tls_keylog is not UTF-8");
  return keylog::KeyLogFollower::Open(options_.keylog_folders, requested);
}

grpc::ServerUnaryReactor* CaptureService::ChangeStream(grpc::CallbackServerContext* context,
                                                       const v1::ChangeStreamRequest* request,
                                                       v1::ChangeStreamResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::string principal;
  if (grpc::Status allowed = Authorize(*context, &principal); !allowed.ok()) {
    reactor->Finish(allowed);
    return reactor;
  }
  const std::string handle = request->stream_handle();
  auto begun = handles_.BeginChange(handle, principal);
  if (!begun.ok()) {
    if (auto held_back = RefusalLogThrottle().Admit()) {
      spdlog::info("filter change from {} refused: {}{}", context->peer(), begun.status().message(),
                   HeldBackNote(*held_back));
    }
    reactor->Finish(ToGrpcStatus(begun.status()));
    return reactor;
  }
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      handles_.EndChange(handle);
      reactor->Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
      return reactor;
    }
  }
  // The compile (capd-filters, up to its budget) and the move wait for a capture thread: not
  // on gRPC's threads.
  const uint64_t subscription = begun.value();
  const std::string peer = context->peer();
  const bool started = change_calls_.Start(
      "capd-change", [this, reactor, request, response, handle, subscription, peer] {
        auto changed = hub_->Change(subscription, *request);
        handles_.EndChange(handle);
        if (!changed.ok()) {
          spdlog::info("filter change from {} refused: {}", peer, changed.status().message());
          reactor->Finish(ToGrpcStatus(changed.status()));
          return;
        }
        *response = std::move(changed).value();
        spdlog::info("stream from {}: filter changed; kernel filter now {}", peer,
                     filters::QuoteFilter(response->filter()));
        reactor->Finish(grpc::Status::OK);
      });
  if (!started) {
    handles_.EndChange(handle);
    reactor->Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
  }
  return reactor;
}

namespace {

// FindLocalPeer on the socket table as it is now; kUnknown when the table cannot be read.
LocalPeer LocatePeer(const TcpEndpoint& peer, uint16_t port) {
  auto sockets = DumpTcpSockets(1u << TCP_ESTABLISHED);
  if (!sockets.ok()) {
    spdlog::warn("cannot read the socket table to identify a local client: {}",
                 sockets.status().message());
    return {LocalPeer::Place::kUnknown, 0};
  }
  return FindLocalPeer(*sockets, peer, port);
}

}  // namespace

grpc::Status CaptureService::Authorize(const grpc::CallbackServerContext& context,
                                       std::string* principal) const {
  std::string ignored;
  std::string& who = principal != nullptr ? *principal : ignored;
  who = "anyone";
  const auto& metadata = context.client_metadata();
  if (auto sent = metadata.find("authorization"); options_.token && sent != metadata.end()) {
    who = "token:" + std::string(sent->second.data(), sent->second.size());
    return options_.token->Check(context);  // a token sent is a token checked, from anywhere
  }
  if (options_.client_certificates && context.auth_context() &&
      context.auth_context()->IsPeerAuthenticated()) {
    const auto certificate = context.auth_context()->FindPropertyValues("x509_pem_cert");
    who = "cert:" + (certificate.empty()
                         ? std::string()
                         : std::string(certificate.front().data(), certificate.front().size()));
    return grpc::Status::OK;
  }
  const std::string peer_text = context.peer();
  const std::optional<TcpEndpoint> peer = ParseGrpcPeer(peer_text);
  if (options_.local_access) {
    const LocalPeer located =
        peer ? LocatePeer(*peer, listening_port()) : LocalPeer{LocalPeer::Place::kUnknown, 0};
    if (located.place == LocalPeer::Place::kLocal) {
      who = "uid:" + std::to_string(located.uid);
      const auto refusal = options_.local_access->Refusal(located.uid);
      if (!refusal) return grpc::Status::OK;
      if (options_.token) {
        return {grpc::StatusCode::UNAUTHENTICATED,
                "capd requires a token (capctl --token-file FILE): " + *refusal};
      }
      return {grpc::StatusCode::PERMISSION_DENIED, *refusal};
    }
    if (located.place == LocalPeer::Place::kUnknown || peer->IsLoopback()) {
      return {grpc::StatusCode::PERMISSION_DENIED,
              "capd could not tell which local user connected from " + peer_text +
                  ", so it refuses the call"};
    }
  }
  return options_.token ? options_.token->Check(context) : grpc::Status::OK;
}

StreamRelay CaptureService::IdentifyRelay(const std::string& peer_text) {
  StreamRelay relay;
  if (!options_.identity.carriers) return relay;
  const std::optional<TcpEndpoint> peer = ParseGrpcPeer(peer_text);
  if (!peer) return relay;  // not TCP: nothing crosses a network interface
  StatusOr<RelayAnswer> answer =
      options_.peer_helper
          ? options_.peer_helper->Ask({*peer, listening_port()})
          : StatusOr<RelayAnswer>(
                Unavailable("capd's peer helper is not running: " + options_.peer_helper_problem));
  if (!answer.ok() && !options_.peer_helper) {
    // Without the helper capd cannot tell a relay from a client on another host; a client on
    // another host needs no warning.
    if (LocatePeer(*peer, listening_port()).place == LocalPeer::Place::kRemote) return relay;
  }
  RelayVerdict verdict = JudgeRelay(answer);
  if (!verdict.log.empty()) {
    if (verdict.warning.empty()) {
      spdlog::info("stream from {}: {}", peer_text, verdict.log);
    } else {
      spdlog::warn("stream from {}: {}", peer_text, verdict.log);
    }
  }
  relay.carriers = options_.identity.carriers->Add(std::move(verdict.exclude));
  relay.warning = std::move(verdict.warning);
  return relay;
}

void CaptureService::Forget(StreamReactor* reactor) {
  handles_.RemoveOwner(reactor);
  std::lock_guard lock(mu_);
  streams_.erase(reactor);
  if (streams_.empty()) all_gone_.notify_all();
}

void CaptureService::SetListeningPort(uint16_t port) {
  listening_port_.store(port, std::memory_order_release);
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

void CaptureService::JoinWork() {
  hub_->Shutdown();  // every capture has ended: each change waiting for one has its answer
  change_calls_.JoinAll();
  recording_calls_.JoinAll();
}

void CaptureService::WaitForStreams() {
  std::unique_lock lock(mu_);
  all_gone_.wait(lock, [this] { return streams_.empty(); });
}

}  // namespace capd::agent
