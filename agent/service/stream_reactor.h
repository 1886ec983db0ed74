#pragma once
// One Stream call (gRPC's async API, async_call.h) fed by a capture (CaptureHub: its own, or one
// shared with other streams of the same packets).
//
// How data flows: the capture thread calls Send(); messages wait in a queue
// bounded in bytes; one write is in flight at a time, the next started from OnWriteDone or, when
// the writer is idle, from Send. A full queue drops the incoming packet batch whole (tail drop)
// and the loop counts it: a client that stops reading costs at most the bound in memory and
// never slows the capture. A thread of the stream's own (DriveCall) waits in the call's
// completion queue for what gRPC reports: a write done (OnWriteDone), the client's cancel
// (OnCancel, at once), the finish. Nobody has to wake it: it only ever waits for gRPC.
//
// Each message is serialized on the thread that starts its write (stream_serializer.h): a batch's
// blob becomes a slice of the gRPC buffer instead of being copied into it, and comes back
// through blobs_ for the stream's next batches. The bytes on the wire are protobuf's own.
//
// Compression, when the request asks for it (StreamRequest.compression): a thread of the
// stream's own takes each message off the queue, compresses a packet batch (compress/), and
// starts its write; without it the write starts on the thread that found the writer idle. So
// the capture thread never pays for compression, and the call's thread never waits for it. Batches
// are dropped on the way INTO the queue, before compression, so every compressed batch sent is
// part of the one zstd stream the client decodes in order. The queue's bound counts batches as
// captured (uncompressed).
//
// A client that is alive but reads nothing (keepalive does not notice it) would keep a capture
// running for nobody: a write in flight for longer than the stall timeout (capd --stall-timeout,
// default 60 s) cancels the call (CLIENT_STALLED).
//
// Lifetime: the object deletes itself once both gRPC is done with the call (DriveCall returns)
// and the capture has said the subscription ended. The registry in CaptureService sees it from
// construction to deletion.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/service/async_call.h"
#include "agent/service/stream_serializer.h"
#include "agent/stream/capture_hub.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_sink.h"
#include "proto/capture.grpc.pb.h"

namespace capd::compress {
class BatchCompressor;
}  // namespace capd::compress

namespace capd::agent::keylog {
class KeyLogFollower;
}  // namespace capd::agent::keylog

namespace capd::agent::rewind {
class Rewind;
}  // namespace capd::agent::rewind

namespace capd::agent {

// What capd learned about the relay of a stream (CaptureService): its connections stay left out
// of captures while the stream runs; a warning, if any, goes out with every statistics message.
struct StreamRelay {
  CarrierRegistry::Registration carriers;
  std::string warning;
};

// The gRPC side of a Stream call: raw, so that the stream serializes its own messages.
using AsyncStreamCall = ServerStreamCall<grpc::ByteBuffer, grpc::ByteBuffer>;

// Writes serialized StreamResponse messages (CaptureService registers Stream as a raw method).
class StreamReactor : public StreamSink {
 public:
  // Called from the destructor, so the registry can forget the stream.
  using OnDestroyed = std::function<void(StreamReactor*)>;
  // Starts `work` on a thread the caller owns (and joins); false if it cannot any more.
  using StartThread = std::function<bool(std::function<void()> work)>;

  // Subscribes to a capture in `hub`. max_queue_bytes bounds the messages waiting for the client;
  // a write in flight for longer than stall_timeout ends the stream (CLIENT_STALLED).
  // `rewind` (StreamRequest.since_ns): the capture's messages go through it, and a thread of the
  // stream's own (holding a reference, like the compression thread) runs it (rewind.h).
  // gRPC's events are handled once Start() has been called.
  StreamReactor(CaptureHub& hub, const v1::StreamRequest& request, const AgentIdentity& identity,
                StreamRelay relay, size_t max_queue_bytes, std::chrono::milliseconds stall_timeout,
                std::unique_ptr<AsyncStreamCall> call, OnDestroyed on_destroyed,
                std::unique_ptr<rewind::Rewind> rewind = nullptr);
  ~StreamReactor() override;

  // Runs DriveCall on a thread from `start_thread`; when none can start (capd is shutting
  // down) cancels the call and drives it to its end on this thread. Called once, after
  // FollowKeyLog if any; the object may be gone when it returns.
  void Start(const StartThread& start_thread);

  // Ends the stream with `reason` (e.g. agent shutdown): the capture thread sends what it has,
  // the statistics and the end, then the call finishes. Thread-safe.
  void RequestStop(v1::StreamEnd::Reason reason) { stop_.Request(reason); }
  // Its subscription in the hub (CaptureHub::Change); 0 if the hub refused it at once.
  uint64_t subscription() const { return subscription_; }

  // StreamRequest.tls_keylog: runs `follower` on a thread of the stream's own (holding a
  // reference, like the compression thread) until the call finishes; its lines go out as
  // TlsKeyLog messages through SendKeyLog. Called once, right after construction.
  void FollowKeyLog(std::unique_ptr<keylog::KeyLogFollower> follower);
  // Queues `lines` as a TlsKeyLog message behind what is queued, so before every batch the
  // capture queues later. False when the queue has no room for it now (the caller keeps the
  // lines and tries again); true, and nothing queued, once the call is finishing. Thread-safe.
  bool SendKeyLog(std::string lines);

  // Queues `message` if the queue has room (rewind's past packets and held messages): false,
  // and the message left in place, when it has none now; true, and nothing queued, once the
  // call is finishing. Thread-safe.
  bool Offer(std::unique_ptr<v1::StreamResponse>& message);

  // StreamSink (capture thread)
  bool Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) override;
  std::unique_ptr<v1::StreamResponse> NewMessage() override;

 private:
  // The call's thread: waits in the call's completion queue and hands each event on, until
  // the call is finished and over; then releases its reference.
  void DriveCall();
  // What gRPC reports (DriveCall's thread).
  void OnWriteDone(bool ok);
  void OnCancel();
  // True when the write in flight has waited longer than the stall timeout; the first time,
  // ends the stream (CLIENT_STALLED) and cancels the call. Requires mu_ held.
  bool StalledLocked();
  // The capture's word that this subscription ended (CaptureHub::DoneFn).
  void OnCaptureDone(StatusOr<v1::StreamEnd> ended);
  // Finishes the call with `status` once everything queued before it has been written.
  void FinishAfterQueue(grpc::Status status);
  // Both require mu_ held.
  void StartNextWriteLocked();
  void MaybeFinishLocked();
  void ReleaseReference();
  // The compression thread (only when compressor_ is set): holds a reference until the call
  // is finished.
  void CompressLoop();
  // Replaces the batch's fields with their compressed form. Compression thread only.
  Status CompressBatch(v1::PacketBatch& batch);
  // Sets the compression counters on a statistics message leaving the queue (every batch
  // queued before it has been compressed by then). Requires mu_ held.
  void CountCompressionLocked(v1::Statistics& statistics) const;
  // Serializes in_flight_ and starts its write. Requires mu_ held.
  void WriteInFlightLocked();

  const AgentIdentity identity_;
  const StreamRelay relay_;
  const size_t max_queue_bytes_;
  const std::chrono::milliseconds stall_timeout_;
  const std::unique_ptr<AsyncStreamCall> call_;  // operations started under mu_
  const std::string peer_;
  OnDestroyed on_destroyed_;
  StopSignal stop_;
  uint64_t subscription_ = 0;  // set by the constructor

  std::mutex mu_;
  struct Queued {
    std::unique_ptr<v1::StreamResponse> message;
    size_t bytes;  // its ByteSizeLong(), computed once
  };
  std::deque<Queued> queue_;
  size_t queued_bytes_ = 0;
  std::unique_ptr<v1::StreamResponse> in_flight_;
  grpc::ByteBuffer in_flight_bytes_;  // in_flight_ serialized
  // Blobs of batches gRPC has sent, for the next batches (NewMessage).
  const std::shared_ptr<BlobPool> blobs_ = std::make_shared<BlobPool>();
  std::chrono::steady_clock::time_point in_flight_since_;
  std::vector<std::unique_ptr<v1::StreamResponse>> free_;  // recycled batch messages
  std::optional<grpc::Status> finish_status_;
  bool cancelled_ = false;
  bool finish_called_ = false;
  bool stalled_ = false;

  // Set when the client asked for compression; then compress_wake_ (with mu_) wakes the
  // compression thread when the writer is idle and a message waits, or the call finished.
  std::unique_ptr<compress::BatchCompressor> compressor_;
  std::condition_variable compress_wake_;
  // Set by FollowKeyLog (under mu_); stopped when the call finishes.
  std::unique_ptr<keylog::KeyLogFollower> keylog_;
  // Set by the constructor for a rewind; stopped when the call finishes.
  std::unique_ptr<rewind::Rewind> rewind_;
  std::string serialized_;           // compression thread only: the batch before compression
  std::string compressed_;           // compression thread only: the part, swapped into the message
  uint64_t uncompressed_bytes_ = 0;  // guarded by mu_: batches compressed so far, before
  uint64_t compressed_bytes_ = 0;    // and after

  // One reference for DriveCall (released when gRPC is done with the call), one for the capture
  // (released when it is done), and one for the compression thread when there is one.
  std::atomic<int> references_{2};
};

}  // namespace capd::agent
