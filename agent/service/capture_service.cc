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

// A tag in the server's completion queue: a call requested from gRPC, then (unary) its finish.
class AcceptedCall {
 public:
  virtual ~AcceptedCall() = default;
  // The tag's completion (accepting thread); may delete the object.
  virtual void Proceed(bool ok) = 0;
};

namespace {

// How long a refused call's client may take to take its status before it is cancelled.
constexpr std::chrono::milliseconds kRefusalLimit{5000};
// Refused calls waiting for the refusing thread; beyond, a refusal is a cancel (the client sees
// CANCELLED instead of the reason), which never waits for the client.
constexpr size_t kMaxWaitingRefusals = 64;

// A Stream or FetchRecording call requested from gRPC: handed to `accepted` when it comes.
template <class Call>
class StreamingSlot final : public AcceptedCall {
 public:
  explicit StreamingSlot(std::function<void(std::unique_ptr<Call>)> accepted)
      : accepted_(std::move(accepted)) {}
  Call& call() { return *call_; }
  void Proceed(bool ok) override {
    std::unique_ptr<StreamingSlot> self(this);
    if (!ok) return;  // the server is shutting down: the call never started
    call_->MarkStarted();
    accepted_(std::move(call_));
  }

 private:
  std::unique_ptr<Call> call_ = std::make_unique<Call>();
  std::function<void(std::unique_ptr<Call>)> accepted_;
};

}  // namespace

// One unary call, from its request to its finish. The handler runs on the accepting thread and
// finishes the call, at once or later from another thread (Finish is called exactly once).
template <class Request, class Response>
class UnaryCall final : public AcceptedCall {
 public:
  UnaryCall(std::function<void()> request_next, std::function<void(UnaryCall&)> handle)
      : request_next_(std::move(request_next)), handle_(std::move(handle)) {}

  grpc::ServerContext context;
  Request request;
  Response response;
  grpc::ServerAsyncResponseWriter<Response>& responder() { return responder_; }

  // Sends `response` if `status` is OK, else only the status. Once; from any thread.
  void Finish(const grpc::Status& status) {
    if (status.ok()) {
      responder_.Finish(response, status, this);
    } else {
      responder_.FinishWithError(status, this);
    }
  }

  void Proceed(bool ok) override {
    if (!ok || finishing_) {  // the server is shutting down, or the call is finished
      delete this;
      return;
    }
    finishing_ = true;
    request_next_();
    handle_(*this);
  }

 private:
  grpc::ServerAsyncResponseWriter<Response> responder_{&context};
  std::function<void()> request_next_;
  std::function<void(UnaryCall&)> handle_;
  bool finishing_ = false;
};

// Sends a recording's files in chunks, one write in flight, on a thread of its own; each chunk
// is read from disk between writes (256 KiB from the page cache or a local disk, well under a
// millisecond). Memory per fetch: one chunk plus what gRPC buffers for the client, never a
// whole file. A write the client has not taken within the stall timeout cancels the call.
class FetchWriter {
 public:
  using FetchCall = ServerStreamCall<v1::FetchRecordingRequest, v1::RecordingChunk>;
  FetchWriter(std::vector<std::string> paths, std::unique_ptr<FetchCall> call,
              std::chrono::milliseconds stall_timeout)
      : name_(call->request().name()),
        paths_(std::move(paths)),
        call_(std::move(call)),
        peer_(call_->context().peer()),
        stall_timeout_(stall_timeout) {}

  // Writes every file, then finishes the call. Writer thread.
  void Run() {
    grpc::Status status = grpc::Status::OK;
    while (Next()) {
      std::optional<bool> written =
          call_->Write(chunk_, std::chrono::system_clock::now() + stall_timeout_);
      if (!written) {
        spdlog::warn("fetch of recording {} to {}: the client has read nothing for {} s; ending it",
                     name_, peer_, stall_timeout_.count() / 1000.0);
        call_->context().TryCancel();
        written = call_->WaitForWrite();
      }
      if (!*written) {
        status = grpc::Status::CANCELLED;
        break;
      }
    }
    call_->FinishAndWait(status, stall_timeout_);
  }
  // When no writer thread could start (capd is shutting down).
  void FinishUnavailable() {
    call_->FinishAndWait({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"}, stall_timeout_);
  }

 private:
  static constexpr size_t kChunkBytes = 256 * 1024;

  // Reads the next chunk into chunk_; false when every file has been sent.
  bool Next() {
    while (true) {
      if (!file_.is_open()) {
        if (index_ >= paths_.size()) return false;
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
      return true;
    }
  }

  const std::string name_;
  std::vector<std::string> paths_;
  const std::unique_ptr<FetchCall> call_;
  const std::string peer_;
  const std::chrono::milliseconds stall_timeout_;
  size_t index_ = 0;
  std::ifstream file_;
  uint64_t offset_ = 0;
  v1::RecordingChunk chunk_;
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

RecordingManager* CaptureService::Recordings(const grpc::ServerContextBase& context,
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

template <class Call>
void CaptureService::RecordingCall(Call& call,
                                   std::function<grpc::Status(RecordingManager&)> work) {
  grpc::Status refused;
  RecordingManager* recordings = Recordings(call.context, &refused);
  if (recordings == nullptr) {
    call.Finish(refused);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      call.Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
      return;
    }
  }
  // Starting or stopping a recording opens or joins its capture: off the accepting thread, on
  // one the service joins at shutdown.
  const bool started = recording_calls_.Start(
      "capd-record-rpc",
      [recordings, &call, work = std::move(work)] { call.Finish(work(*recordings)); });
  if (!started) call.Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
}

void CaptureService::StartRecording(StartRecordingCall& call) {
  // Tells the client its triggers apply (an older capd ignores them and records everything).
  if (!call.request.start_on().empty() || !call.request.stop_on().empty()) {
    call.context.AddInitialMetadata("capd-trigger", "armed");
  }
  RecordingCall(call, [&call](RecordingManager& recordings) {
    auto started = recordings.Start(call.request);
    if (!started.ok()) return ToGrpcStatus(started.status());
    call.response = std::move(started).value();
    return grpc::Status::OK;
  });
}

void CaptureService::StopRecording(StopRecordingCall& call) {
  RecordingCall(call, [&call](RecordingManager& recordings) {
    auto stopped = recordings.Stop(call.request.name());
    if (!stopped.ok()) return ToGrpcStatus(stopped.status());
    call.response = std::move(stopped).value();
    return grpc::Status::OK;
  });
}

void CaptureService::DeleteRecording(DeleteRecordingCall& call) {
  // Removing a ring of up to 100,000 files takes a while: off the accepting thread too.
  RecordingCall(call, [&call](RecordingManager& recordings) {
    auto deleted = recordings.Delete(call.request.name());
    if (!deleted.ok()) return ToGrpcStatus(deleted.status());
    call.response = std::move(deleted).value();
    return grpc::Status::OK;
  });
}

void CaptureService::ListRecordings(ListRecordingsCall& call) {
  grpc::Status refused;
  RecordingManager* recordings = Recordings(call.context, &refused);
  if (recordings == nullptr) {
    call.Finish(refused);
    return;
  }
  for (v1::RecordingInfo& info : recordings->List()) {
    *call.response.add_recordings() = std::move(info);
  }
  call.Finish(grpc::Status::OK);
}

template <class Call>
void CaptureService::Refuse(std::unique_ptr<Call> call, const grpc::Status& status) {
  std::shared_ptr<Call> refused = std::move(call);
  {
    std::lock_guard lock(refusals_mu_);
    if (!refusals_closed_ && refusals_.size() < kMaxWaitingRefusals) {
      refusals_.push_back([refused, status] { refused->FinishAndWait(status, kRefusalLimit); });
      refusals_wake_.notify_one();
      return;
    }
  }
  refused->context().TryCancel();
  refused->FinishAndWait(status, kRefusalLimit);
}

void CaptureService::RefuseLoop() {
  pthread_setname_np(pthread_self(), "capd-refuse");
  std::unique_lock lock(refusals_mu_);
  while (true) {
    refusals_wake_.wait(lock, [this] { return refusals_closed_ || !refusals_.empty(); });
    if (refusals_.empty()) return;  // closed, and every refusal finished
    std::function<void()> finish = std::move(refusals_.front());
    refusals_.pop_front();
    lock.unlock();
    finish();
    lock.lock();
  }
}

void CaptureService::FetchRecording(std::unique_ptr<FetchCall> call) {
  grpc::Status refused;
  RecordingManager* recordings = Recordings(call->context(), &refused);
  if (recordings == nullptr) return Refuse(std::move(call), refused);
  auto files = recordings->FetchableFiles(call->request().name());
  if (!files.ok()) return Refuse(std::move(call), ToGrpcStatus(files.status()));
  FetchWriter* fetch = nullptr;
  {
    std::lock_guard lock(mu_);
    if (fetches_.size() >= options_.max_fetches) {
      refused = {grpc::StatusCode::RESOURCE_EXHAUSTED, "capd already serves " +
                                                           std::to_string(fetches_.size()) +
                                                           " fetches, its limit (--max-fetches)"};
    } else {
      fetch = new FetchWriter(std::move(files).value(), std::move(call), options_.stall_timeout);
      fetches_.insert(fetch);
    }
  }
  if (fetch == nullptr) return Refuse(std::move(call), refused);
  const bool started = writers_.Start("capd-fetch", [this, fetch] {
    fetch->Run();
    ForgetFetch(fetch);
  });
  if (!started) {
    fetch->FinishUnavailable();
    ForgetFetch(fetch);
  }
}

void CaptureService::ForgetFetch(FetchWriter* fetch) {
  delete fetch;
  std::lock_guard lock(mu_);
  fetches_.erase(fetch);
  if (streams_.empty() && fetches_.empty()) all_gone_.notify_all();
}

CaptureService::CaptureService(ServiceOptions options) : options_(std::move(options)) {}

CaptureService::~CaptureService() { StopServing(); }

void CaptureService::Serve(std::unique_ptr<grpc::ServerCompletionQueue> queue) {
  queue_ = std::move(queue);
  RequestUnary(&AsyncCaptureService::RequestListInterfaces, &CaptureService::ListInterfaces);
  RequestStream();
  RequestUnary(&AsyncCaptureService::RequestChangeStream, &CaptureService::ChangeStream);
  RequestUnary(&AsyncCaptureService::RequestStartRecording, &CaptureService::StartRecording);
  RequestUnary(&AsyncCaptureService::RequestStopRecording, &CaptureService::StopRecording);
  RequestUnary(&AsyncCaptureService::RequestDeleteRecording, &CaptureService::DeleteRecording);
  RequestUnary(&AsyncCaptureService::RequestListRecordings, &CaptureService::ListRecordings);
  RequestFetch();
  refuser_ = std::thread([this] { RefuseLoop(); });
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

void CaptureService::AcceptLoop() {
  pthread_setname_np(pthread_self(), "capd-accept");
  void* tag = nullptr;
  bool ok = false;
  while (queue_->Next(&tag, &ok)) static_cast<AcceptedCall*>(tag)->Proceed(ok);
}

void CaptureService::StopServing() {
  {
    std::lock_guard lock(accept_mu_);
    if (stop_requesting_) return;
    stop_requesting_ = true;
  }
  if (queue_) queue_->Shutdown();
  if (acceptor_.joinable()) acceptor_.join();
  {
    // After Server::Shutdown every refused call is cancelled: the rest finish at once.
    std::lock_guard lock(refusals_mu_);
    refusals_closed_ = true;
  }
  refusals_wake_.notify_all();
  if (refuser_.joinable()) refuser_.join();
  writers_.JoinAll();
}

template <class Call, class RequestFn>
bool CaptureService::RequestUnary(RequestFn request, void (CaptureService::*handle)(Call&)) {
  std::lock_guard lock(accept_mu_);
  if (stop_requesting_) return false;
  auto* call = new Call([this, request, handle] { RequestUnary(request, handle); },
                        [this, handle](Call& accepted) { (this->*handle)(accepted); });
  (async_service_.*request)(&call->context, &call->request, &call->responder(), queue_.get(),
                            queue_.get(), call);
  return true;
}

bool CaptureService::RequestStream() {
  std::lock_guard lock(accept_mu_);
  if (stop_requesting_) return false;
  auto* slot = new StreamingSlot<AsyncStreamCall>([this](std::unique_ptr<AsyncStreamCall> call) {
    RequestStream();
    Stream(std::move(call));
  });
  AsyncStreamCall& call = slot->call();
  async_service_.RequestStream(&call.context(), &call.request(), &call.writer(), &call.queue(),
                               queue_.get(), slot);
  return true;
}

bool CaptureService::RequestFetch() {
  std::lock_guard lock(accept_mu_);
  if (stop_requesting_) return false;
  auto* slot = new StreamingSlot<FetchCall>([this](std::unique_ptr<FetchCall> call) {
    RequestFetch();
    FetchRecording(std::move(call));
  });
  FetchCall& call = slot->call();
  async_service_.RequestFetchRecording(&call.context(), &call.request(), &call.writer(),
                                       &call.queue(), queue_.get(), slot);
  return true;
}

void CaptureService::ListInterfaces(ListInterfacesCall& call) {
  if (grpc::Status allowed = Authorize(call.context); !allowed.ok()) {
    call.Finish(allowed);
    return;
  }
  auto interfaces = ListCaptureInterfaces();
  if (!interfaces.ok()) {
    call.Finish(ToGrpcStatus(interfaces.status()));
    return;
  }
  v1::ListInterfacesResponse* response = &call.response;
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
  call.Finish(grpc::Status::OK);
}

void CaptureService::Stream(std::unique_ptr<AsyncStreamCall> call) {
  // What the generated handler does for a typed method (Deserialize consumes its buffer).
  v1::StreamRequest parsed;
  if (grpc::Status status =
          grpc::SerializationTraits<v1::StreamRequest>::Deserialize(&call->request(), &parsed);
      !status.ok()) {
    return Refuse(std::move(call), status);
  }
  OpenStream(std::move(call), parsed);
}

void CaptureService::OpenStream(std::unique_ptr<AsyncStreamCall> call,
                                const v1::StreamRequest& request) {
  grpc::ServerContext& context = call->context();
  std::string principal;
  if (grpc::Status allowed = Authorize(context, &principal); !allowed.ok()) {
    if (auto held_back = RefusalLogThrottle().Admit()) {
      spdlog::warn("refused a stream from {}: {}{}", context.peer(), allowed.error_message(),
                   HeldBackNote(*held_back));
    }
    return Refuse(std::move(call), allowed);
  }
  if (Status valid = ValidateStreamRequest(request); !valid.ok()) {
    return Refuse(std::move(call), ToGrpcStatus(valid));
  }
  // The key log is opened before the capture: a refused path costs no capture.
  std::unique_ptr<keylog::KeyLogFollower> keylog;
  if (!request.tls_keylog().empty()) {
    auto opened = OpenKeyLog(request.tls_keylog());
    if (!opened.ok()) {
      if (auto held_back = RefusalLogThrottle().Admit()) {
        spdlog::info("stream from {} refused: {}{}", context.peer(), opened.status().message(),
                     HeldBackNote(*held_back));
      }
      return Refuse(std::move(call), ToGrpcStatus(opened.status()));
    }
    keylog = std::move(opened).value();
  }
  // The recording is found before the capture: a stream that cannot rewind costs no capture.
  std::unique_ptr<rewind::Rewind> rewind;
  if (request.since_ns() != 0) {
    auto prepared = PrepareRewind(request);
    if (!prepared.ok()) return Refuse(std::move(call), ToGrpcStatus(prepared.status()));
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
  std::optional<grpc::Status> refused;
  {
    std::lock_guard lock(mu_);
    refused = refusal();
  }
  if (refused) return Refuse(std::move(call), *refused);
  StreamRelay relay = IdentifyRelay(context.peer());
  StreamReactor* reactor = nullptr;
  {
    std::lock_guard lock(mu_);
    refused = refusal();
    if (!refused) {
      spdlog::info("stream from {}: interface '{}', filter {}, count {}, duration {} ms",
                   context.peer(), request.interface(), filters::QuoteFilter(request.filter()),
                   request.max_packets(), request.duration_ms());
      // The handle goes out with the call's first message (initial metadata), to this client
      // only.
      auto handle = NewStreamHandle();
      if (handle.ok()) context.AddInitialMetadata(StreamHandles::kMetadataKey, handle.value());
      // Tells the client its key log is followed (an older capd ignores the field).
      if (keylog) context.AddInitialMetadata("capd-tls-keylog", "following");
      // Tells the client its triggers apply (an older capd ignores them and streams everything).
      if (trigger::HasTriggers(request)) context.AddInitialMetadata("capd-trigger", "armed");
      const std::string peer = context.peer();
      reactor = new StreamReactor(
          *hub_, request, options_.identity, std::move(relay), options_.max_queue_bytes,
          options_.stall_timeout, std::move(call), [this](StreamReactor* gone) { Forget(gone); },
          std::move(rewind));
      streams_.insert(reactor);
      if (handle.ok()) handles_.Add(handle.value(), principal, reactor->subscription(), reactor);
      if (keylog) {
        spdlog::info("stream from {}: following TLS key log {}", peer, keylog->path());
        reactor->FollowKeyLog(std::move(keylog));
      }
    }
  }
  if (refused) return Refuse(std::move(call), *refused);
  // Outside mu_: a writer that cannot start finishes here, and the reactor may go at once.
  reactor->Start([this](std::function<void()> work) {
    return writers_.Start("capd-stream", std::move(work));
  });
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

void CaptureService::ChangeStream(ChangeStreamCall& call) {
  std::string principal;
  if (grpc::Status allowed = Authorize(call.context, &principal); !allowed.ok()) {
    call.Finish(allowed);
    return;
  }
  const std::string handle = call.request.stream_handle();
  auto begun = handles_.BeginChange(handle, principal);
  if (!begun.ok()) {
    if (auto held_back = RefusalLogThrottle().Admit()) {
      spdlog::info("filter change from {} refused: {}{}", call.context.peer(),
                   begun.status().message(), HeldBackNote(*held_back));
    }
    call.Finish(ToGrpcStatus(begun.status()));
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      handles_.EndChange(handle);
      call.Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
      return;
    }
  }
  // The compile (capd-filters, up to its budget) and the move wait for a capture thread: not
  // on the accepting thread.
  const uint64_t subscription = begun.value();
  const std::string peer = call.context.peer();
  const bool started =
      change_calls_.Start("capd-change", [this, &call, handle, subscription, peer] {
        auto changed = hub_->Change(subscription, call.request);
        handles_.EndChange(handle);
        if (!changed.ok()) {
          spdlog::info("filter change from {} refused: {}", peer, changed.status().message());
          call.Finish(ToGrpcStatus(changed.status()));
          return;
        }
        call.response = std::move(changed).value();
        spdlog::info("stream from {}: filter changed; kernel filter now {}", peer,
                     filters::QuoteFilter(call.response.filter()));
        call.Finish(grpc::Status::OK);
      });
  if (!started) {
    handles_.EndChange(handle);
    call.Finish({grpc::StatusCode::UNAVAILABLE, "capd is shutting down"});
  }
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

grpc::Status CaptureService::Authorize(const grpc::ServerContextBase& context,
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
  if (streams_.empty() && fetches_.empty()) all_gone_.notify_all();
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
  all_gone_.wait(lock, [this] { return streams_.empty() && fetches_.empty(); });
}

}  // namespace capd::agent
