#pragma once
// The capd.v1.Capture gRPC service (async API, async_call.h says why).
//
// How calls flow: one accepting thread (Serve) keeps one request outstanding for each method in
// the server's completion queue, and runs the short unary methods (ListInterfaces,
// ListRecordings, refusals) itself; the longer ones (ChangeStream, Start/Stop/DeleteRecording)
// run on threads the service owns and finish from there. A Stream or FetchRecording call gets a
// thread of its own (bounded by --max-streams and --max-fetches) that waits in the call's own
// completion queue. A call costs no thread until gRPC has it whole (a connect flood costs none).
//
// Every Stream call becomes a StreamReactor subscribed to a capture of the service's CaptureHub
// (streams of the same packets share one); the service keeps a registry of the reactors so that
// shutdown can end each with a reason and wait until all are gone. The capture threads (the hub's)
// and the threads of recording calls are owned: shutdown ends their work and joins them.
//
// ChangeStream: each stream gets a handle (StreamHandles) that only its own client learns and
// only its own principal may use; a change is compiled and applied (CaptureHub::Change) on a
// thread the service owns, joined at shutdown like the recording calls.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "agent/keylog/keylog_file.h"
#include "agent/peers/local_access.h"
#include "agent/peers/peer_helper.h"
#include "agent/recording/recording_manager.h"
#include "agent/security/access.h"
#include "agent/service/async_call.h"
#include "agent/service/stream_handles.h"
#include "agent/service/stream_reactor.h"
#include "agent/stream/capture_hub.h"
#include "agent/stream/owned_threads.h"
#include "proto/capture.grpc.pb.h"

namespace capd::agent {

namespace keylog {
class KeyLogFollower;
}  // namespace keylog

struct ServiceOptions {
  AgentIdentity identity;
  std::string version;
  // Per-stream bound on messages waiting for a slow client (ARCHITECTURE.md: tens of MiB).
  size_t max_queue_bytes = 32 * 1024 * 1024;
  // A stream of packets no other stream asks for holds a capture ring (32 MiB) and a thread:
  // bound how many run at once (streams of the same packets share one capture, but count here).
  size_t max_streams = 16;
  // A client that reads nothing for this long is ended, stream or fetch (capd --stall-timeout).
  // Long enough for a reader paused by a person (a Wireshark dialog), short enough that a dead
  // reader does not hold a capture ring, a file or gRPC's buffers for long.
  std::chrono::milliseconds stall_timeout{60'000};
  // FetchRecording calls served at once (capd --max-fetches): each holds an open file, a chunk
  // and what gRPC buffers for a client that does not read (~1-3 MiB).
  size_t max_fetches = 8;
  std::optional<TokenCheck> token;   // set: a client that is not allowed locally must send it
  bool client_certificates = false;  // mutual TLS: a verified client certificate is enough
  // Who may call from this host (the peer's socket is in capd's network namespace); unset: any
  // local process (unit tests only; capd always sets it).
  std::optional<LocalAccessPolicy> local_access;
  // Finds the relays of streams (identity.carriers set); null with carrier exclusion on means
  // the helper could not start, and `peer_helper_problem` says why.
  std::shared_ptr<PeerHelper> peer_helper;
  std::string peer_helper_problem;
  // The folders a stream may follow a TLS key log in (capd --tls-keylog-dir); null: a request
  // naming one is refused (FAILED_PRECONDITION).
  std::shared_ptr<const keylog::KeyLogFolders> keylog_folders;
};

class FetchWriter;
template <class Request, class Response>
class UnaryCall;

// Every method async; Stream raw (StreamReactor serializes its own messages).
using AsyncCaptureService =
    v1::Capture::WithAsyncMethod_ListInterfaces<v1::Capture::WithRawMethod_Stream<
        v1::Capture::WithAsyncMethod_ChangeStream<v1::Capture::WithAsyncMethod_StartRecording<
            v1::Capture::WithAsyncMethod_StopRecording<v1::Capture::WithAsyncMethod_DeleteRecording<
                v1::Capture::WithAsyncMethod_ListRecordings<
                    v1::Capture::WithAsyncMethod_FetchRecording<v1::Capture::Service>>>>>>>>;

class CaptureService final {
 public:
  explicit CaptureService(ServiceOptions options);
  ~CaptureService();  // after StopServing

  // To register with the server builder.
  grpc::Service* grpc_service() { return &async_service_; }
  // Starts the accepting thread on `queue` (the builder's, after BuildAndStart).
  void Serve(std::unique_ptr<grpc::ServerCompletionQueue> queue);
  // After Server::Shutdown: stops the accepting thread, joins it and the writer threads.
  void StopServing();

  // Enables the recording RPCs (null: FAILED_PRECONDITION). The manager outlives the server.
  void SetRecordings(RecordingManager* recordings) { recordings_ = recordings; }

  // The agent's listening port is known only once the server is bound: streams are refused as
  // UNAVAILABLE until this is called, so no capture ever runs without its own-traffic exclusion.
  void SetListeningPort(uint16_t port);
  // EC2 metadata found after start-up: described in new streams' interfaces; the instance id
  // becomes the agent's name unless --name was given.
  void SetInstanceMetadata(std::shared_ptr<const InstanceMetadata> metadata, bool use_as_name);

  // Refuses new streams and recording calls and asks every running stream to end with
  // AGENT_SHUTDOWN. Never blocks.
  void BeginShutdown();
  // After BeginShutdown: ends every capture of the service's hub and joins their threads (each
  // stream has then been handed its last statistics and its end), and joins the recording calls
  // in progress (each finishes its call). Blocks for as long as a capture takes to open or a
  // recording call to return.
  void JoinWork();
  // Blocks until every stream and fetch is gone: its writer has finished the call (after
  // Server::Shutdown every call is over) and its capture has ended (JoinWork).
  void WaitForStreams();

 private:
  using ListInterfacesCall = UnaryCall<v1::ListInterfacesRequest, v1::ListInterfacesResponse>;
  using ChangeStreamCall = UnaryCall<v1::ChangeStreamRequest, v1::ChangeStreamResponse>;
  using StartRecordingCall = UnaryCall<v1::StartRecordingRequest, v1::RecordingInfo>;
  using StopRecordingCall = UnaryCall<v1::StopRecordingRequest, v1::RecordingInfo>;
  using DeleteRecordingCall = UnaryCall<v1::DeleteRecordingRequest, v1::RecordingInfo>;
  using ListRecordingsCall = UnaryCall<v1::ListRecordingsRequest, v1::ListRecordingsResponse>;
  using FetchCall = ServerStreamCall<v1::FetchRecordingRequest, v1::RecordingChunk>;

  // The accepting thread.
  void AcceptLoop();
  // Requests the next call of each kind (accepting thread, or Serve before it starts); false
  // once StopServing has begun.
  bool RequestStream();
  bool RequestFetch();
  template <class Call, class RequestFn>
  bool RequestUnary(RequestFn request, void (CaptureService::*handle)(Call&));
  // What each call does once gRPC has it (accepting thread). A unary handler finishes its call,
  // at once or from a thread of its own.
  void ListInterfaces(ListInterfacesCall& call);
  void ChangeStream(ChangeStreamCall& call);
  void StartRecording(StartRecordingCall& call);
  void StopRecording(StopRecordingCall& call);
  void DeleteRecording(DeleteRecordingCall& call);
  void ListRecordings(ListRecordingsCall& call);
  void Stream(std::unique_ptr<AsyncStreamCall> call);
  void FetchRecording(std::unique_ptr<FetchCall> call);
  // Finishes a refused Stream or FetchRecording call (accepting thread): hands it to the
  // refusing thread, or cancels it at once when kMaxWaitingRefusals already wait there.
  template <class Call>
  void Refuse(std::unique_ptr<Call> call, const grpc::Status& status);
  // The refusing thread: finishes the refused calls in turn. A refused client may take up to
  // kRefusalLimit to take its status (one that reads nothing fills its socket, and the finish
  // waits for room), so this never runs on the accepting thread, which serves everyone.
  void RefuseLoop();

  void OpenStream(std::unique_ptr<AsyncStreamCall> call, const v1::StreamRequest& request);
  void Forget(StreamReactor* reactor);
  void ForgetFetch(FetchWriter* fetch);
  // Token, client certificate, or a local peer's uid (LocalAccessPolicy); see the README.
  // `principal`, if given, names who was let in: "token:<token>", "cert:<PEM>", "uid:<uid>",
  // or "anyone" when the service checks no one (unit tests).
  grpc::Status Authorize(const grpc::ServerContextBase& context,
                         std::string* principal = nullptr) const;
  // Asks the peer helper who relays the stream from `peer` and registers the relay's
  // connections for exclusion; may block for the helper's answer (a few ms, at most 2 s).
  StreamRelay IdentifyRelay(const std::string& peer);
  // StreamRequest.tls_keylog, opened (keylog::KeyLogFolders::OpenFile's refusals), or
  // kFailedPrecondition when capd follows no key logs.
  StatusOr<std::unique_ptr<keylog::KeyLogFollower>> OpenKeyLog(const std::string& requested) const;
  // StreamRequest.since_ns: the rewind over the recordings running on the stream's interface;
  // FAILED_PRECONDITION when there is none (naming those that run), INVALID_ARGUMENT for a
  // request a rewind cannot serve.
  StatusOr<std::unique_ptr<rewind::Rewind>> PrepareRewind(const v1::StreamRequest& request);
  uint16_t listening_port() const { return listening_port_.load(std::memory_order_acquire); }

  // The recording manager, or FAILED_PRECONDITION with the reason for `context`.
  RecordingManager* Recordings(const grpc::ServerContextBase& context, grpc::Status* refused);
  // A recording call that may block: refused at once when recordings are off, otherwise `work`
  // runs on a thread of its own and its status finishes the call.
  template <class Call>
  void RecordingCall(Call& call, std::function<grpc::Status(RecordingManager&)> work);

  AsyncCaptureService async_service_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::mutex accept_mu_;          // requests against the queue's shutdown
  bool stop_requesting_ = false;  // guarded by accept_mu_
  std::thread acceptor_;

  std::mutex refusals_mu_;
  std::condition_variable refusals_wake_;
  std::deque<std::function<void()>> refusals_;  // guarded by refusals_mu_
  bool refusals_closed_ = false;                // guarded by refusals_mu_
  std::thread refuser_;

  std::atomic<RecordingManager*> recordings_{nullptr};
  const std::shared_ptr<CaptureHub> hub_ = std::make_shared<CaptureHub>();
  ServiceOptions options_;  // identity.own_traffic guarded by mu_ until ready_
  std::atomic<uint16_t> listening_port_{0};
  std::mutex mu_;
  std::condition_variable all_gone_;
  std::set<StreamReactor*> streams_;
  std::set<FetchWriter*> fetches_;  // guarded by mu_; registered until their call is over
  StreamHandles handles_;
  bool ready_ = false;
  bool shutting_down_ = false;

  OwnedThreads writers_;          // the streams' and fetches' writers
  OwnedThreads change_calls_;     // ChangeStream's compiles and moves
  OwnedThreads recording_calls_;  // last: joined (destructor) before anything they use goes
};

}  // namespace capd::agent
