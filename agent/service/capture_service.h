#pragma once
// The capd.v1.Capture gRPC service (callback API).
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

class FetchReactor;

class CaptureService final
    : public v1::Capture::WithRawCallbackMethod_Stream<v1::Capture::CallbackService> {
 public:
  explicit CaptureService(ServiceOptions options);
  ~CaptureService() override;  // stops the fetch watchdog

  grpc::ServerUnaryReactor* ListInterfaces(grpc::CallbackServerContext* context,
                                           const v1::ListInterfacesRequest* request,
                                           v1::ListInterfacesResponse* response) override;
  // A raw method: the reactor serializes its own responses (stream_serializer.h: a batch's packet
  // bytes are not copied into gRPC's buffer); the request is parsed here, then OpenStream.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Stream(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request) override;
  // A running stream's new filter (CaptureHub::Change), from the principal that opened it
  // (StreamHandles). The compile and the move run on a thread the service owns.
  grpc::ServerUnaryReactor* ChangeStream(grpc::CallbackServerContext* context,
                                         const v1::ChangeStreamRequest* request,
                                         v1::ChangeStreamResponse* response) override;

  // Recordings (capd --record-dir). Start and Stop run on a thread of their own, owned by the
  // service (a capture takes a moment to open and to drain); the reactor finishes from there.
  grpc::ServerUnaryReactor* StartRecording(grpc::CallbackServerContext* context,
                                           const v1::StartRecordingRequest* request,
                                           v1::RecordingInfo* response) override;
  grpc::ServerUnaryReactor* StopRecording(grpc::CallbackServerContext* context,
                                          const v1::StopRecordingRequest* request,
                                          v1::RecordingInfo* response) override;
  grpc::ServerUnaryReactor* DeleteRecording(grpc::CallbackServerContext* context,
                                            const v1::DeleteRecordingRequest* request,
                                            v1::RecordingInfo* response) override;
  grpc::ServerUnaryReactor* ListRecordings(grpc::CallbackServerContext* context,
                                           const v1::ListRecordingsRequest* request,
                                           v1::ListRecordingsResponse* response) override;
  grpc::ServerWriteReactor<v1::RecordingChunk>* FetchRecording(
      grpc::CallbackServerContext* context, const v1::FetchRecordingRequest* request) override;
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
  // recording call to return; not to be called from a gRPC reaction.
  void JoinWork();
  // Blocks until every stream's reactor is gone: gRPC is done with each (after Server::Shutdown
  // every call is) and its capture has ended (JoinWork).
  void WaitForStreams();

 private:
  grpc::ServerWriteReactor<grpc::ByteBuffer>* OpenStream(grpc::CallbackServerContext* context,
                                                         const v1::StreamRequest* request);
  void Forget(StreamReactor* reactor);
  // Ends fetches whose client has read nothing for stall_timeout (streams check on each send;
  // a fetch has no other thread to notice).
  void FetchWatchdog();
  // Token, client certificate, or a local peer's uid (LocalAccessPolicy); see the README.
  // `principal`, if given, names who was let in: "token:<token>", "cert:<PEM>", "uid:<uid>",
  // or "anyone" when the service checks no one (unit tests).
  grpc::Status Authorize(const grpc::CallbackServerContext& context,
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
  RecordingManager* Recordings(const grpc::CallbackServerContext& context, grpc::Status* refused);
  // A recording call that may block: refused at once when recordings are off, otherwise `work`
  // runs on a thread of its own and its status finishes the call.
  grpc::ServerUnaryReactor* RecordingCall(grpc::CallbackServerContext* context,
                                          std::function<grpc::Status(RecordingManager&)> work);

  std::atomic<RecordingManager*> recordings_{nullptr};
  const std::shared_ptr<CaptureHub> hub_ = std::make_shared<CaptureHub>();
  ServiceOptions options_;  // identity.own_traffic guarded by mu_ until ready_
  std::atomic<uint16_t> listening_port_{0};
  std::mutex mu_;
  std::condition_variable all_gone_;
  std::set<StreamReactor*> streams_;
  StreamHandles handles_;
  bool ready_ = false;
  bool shutting_down_ = false;

  std::mutex fetch_mu_;
  std::condition_variable fetch_cv_;
  std::set<FetchReactor*> fetches_;  // registered until their OnDone
  bool stop_watchdog_ = false;
  std::thread watchdog_;          // started once everything it uses exists
  OwnedThreads change_calls_;     // ChangeStream's compiles and moves
  OwnedThreads recording_calls_;  // last: joined (destructor) before anything they use goes
};

}  // namespace capd::agent
