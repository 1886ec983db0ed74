#include "agent/service/stream_reactor.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "agent/keylog/keylog_follower.h"
#include "agent/rewind/rewind.h"
#include "agent/service/status_mapping.h"
#include "common/log_throttle.h"
#include "compress/batch_codec.h"

namespace capd::agent {
namespace {
// Recycled messages kept per stream: enough for the steady state (one being filled while one is
// written), at most 4 MiB (BatchBuilder::kMaxBytes each).
constexpr size_t kMaxFreeMessages = 2;
}  // namespace

StreamReactor::StreamReactor(CaptureHub& hub, const v1::StreamRequest& request,
                             const AgentIdentity& identity, StreamRelay relay,
                             size_t max_queue_bytes, std::chrono::milliseconds stall_timeout,
                             std::unique_ptr<AsyncStreamCall> call, OnDestroyed on_destroyed,
                             std::unique_ptr<rewind::Rewind> rewind)
    : identity_(identity),
      relay_(std::move(relay)),
      max_queue_bytes_(max_queue_bytes),
      stall_timeout_(stall_timeout),
      call_(std::move(call)),
      peer_(call_->context().peer()),
      on_destroyed_(std::move(on_destroyed)),
      rewind_(std::move(rewind)) {
  if (request.compression() == v1::COMPRESSION_ZSTD) {
    auto compressor = compress::BatchCompressor::Create();
    if (compressor.ok()) {
      compressor_ = std::move(*compressor);
      references_.fetch_add(1);
      // Detached: it holds a reference, so the last one to let go deletes the reactor and no
      // thread ever waits to join it.
      std::thread(&StreamReactor::CompressLoop, this).detach();
    } else {
      // The stream goes out plain, which the client decodes as well.
      spdlog::warn("stream to {}: no compression: {}", peer_, compressor.status().message());
    }
  }
  // The capture holds a reference until its done call; the last reference deletes the reactor,
  // so nothing ever has to wait for the capture.
  StreamSink* sink = this;
  if (rewind_) {
    rewind_->SetDownstream(this);
    sink = rewind_.get();
    references_.fetch_add(1);
    // Detached, holding a reference, as the compression thread: reads files.
    std::thread([this] {
      auto end = rewind_->Run(
          [this](std::unique_ptr<v1::StreamResponse>& message) { return Offer(message); });
      if (end) {
        Send(std::move(end), /*droppable=*/false);
        FinishAfterQueue(grpc::Status::OK);
      }
      ReleaseReference();
    }).detach();
  }
  subscription_ =
      hub.Subscribe(request, identity_, *sink, stop_,
                    [this](StatusOr<v1::StreamEnd> ended) { OnCaptureDone(std::move(ended)); });
}

void StreamReactor::Start(const StartThread& start_thread) {
  if (start_thread([this] { DriveCall(); })) return;
  stop_.Request(v1::StreamEnd::AGENT_SHUTDOWN);
  call_->context().TryCancel();
  DriveCall();  // the cancel comes at once: the call finishes here
}

StreamReactor::~StreamReactor() {
  if (on_destroyed_) on_destroyed_(this);
}

void StreamReactor::OnCaptureDone(StatusOr<v1::StreamEnd> ended) {
  if (!ended.ok()) {
    if (auto held_back = RefusalLogThrottle().Admit()) {
      spdlog::info("stream from {} refused: {}{}", peer_, ended.status().message(),
                   HeldBackNote(*held_back));
    }
    FinishAfterQueue(ToGrpcStatus(ended.status()));
    if (rewind_) rewind_->Stop();
  } else {
    auto message = NewMessage();
    *message->mutable_end() = ended.value();
    // Behind what the rewind holds: its thread sends the end and finishes.
    if (rewind_) message = rewind_->Close(std::move(message));
    if (message) {
      Send(std::move(message), /*droppable=*/false);
      FinishAfterQueue(grpc::Status::OK);
    }
  }
  ReleaseReference();
}

bool StreamReactor::Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) {
  if (!relay_.warning.empty() && message->has_statistics()) {
    message->mutable_statistics()->set_relay_warning(relay_.warning);
  }
  const size_t size = message->ByteSizeLong();
  std::lock_guard lock(mu_);
  if (cancelled_ || finish_called_) return true;  // nobody to count drops for any more
  if (StalledLocked()) return false;
  // An empty queue takes a batch whatever its size, as Offer does: --max-queue-bytes may be as
  // small as 1M while a batch reaches 2 MiB (BatchBuilder::kMaxBytes), and a bound below one
  // batch must slow the stream down, not stop it.
  if (droppable && !queue_.empty() && queued_bytes_ + size > max_queue_bytes_) {
    if (free_.size() < kMaxFreeMessages) free_.push_back(std::move(message));
    return false;
  }
  queued_bytes_ += size;
  queue_.push_back({std::move(message), size});
  if (!in_flight_) StartNextWriteLocked();
  return true;
}

bool StreamReactor::Offer(std::unique_ptr<v1::StreamResponse>& message) {
  if (!relay_.warning.empty() && message->has_statistics()) {
    message->mutable_statistics()->set_relay_warning(relay_.warning);
  }
  const size_t size = message->ByteSizeLong();
  std::lock_guard lock(mu_);
  if (cancelled_ || finish_called_) return true;
  // The capture's sends are held meanwhile, so the stall watchdog is here as well.
  if (StalledLocked()) return true;
  if (!queue_.empty() && queued_bytes_ + size > max_queue_bytes_) return false;
  queued_bytes_ += size;
  queue_.push_back({std::move(message), size});
  if (!in_flight_) StartNextWriteLocked();
  return true;
}

void StreamReactor::FollowKeyLog(std::unique_ptr<keylog::KeyLogFollower> follower) {
  keylog::KeyLogFollower* running = follower.get();
  {
    std::lock_guard lock(mu_);
    keylog_ = std::move(follower);
    if (finish_called_) running->Stop();  // refused at once: Run returns at once
  }
  references_.fetch_add(1);
  // Detached for the same reason as the compression thread: it holds a reference.
  std::thread([this, running] {
    running->Run([this](std::string lines) { return SendKeyLog(std::move(lines)); });
    ReleaseReference();
  }).detach();
}

bool StreamReactor::SendKeyLog(std::string lines) {
  auto message = std::make_unique<v1::StreamResponse>();
  message->mutable_tls_keys()->set_lines(std::move(lines));
  const size_t size = message->ByteSizeLong();
  std::lock_guard lock(mu_);
  if (cancelled_ || finish_called_ || finish_status_) return true;
  if (queued_bytes_ + size > max_queue_bytes_) return false;
  queued_bytes_ += size;
  queue_.push_back({std::move(message), size});
  if (!in_flight_) StartNextWriteLocked();
  return true;
}

std::unique_ptr<v1::StreamResponse> StreamReactor::NewMessage() {
  std::unique_ptr<v1::StreamResponse> message;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      message = std::move(free_.back());
      free_.pop_back();
    }
  }
  if (!message) return std::make_unique<v1::StreamResponse>();
  // A recycled batch whose blob went out as a slice gets one back (or a new one sized like it).
  if (message->has_packets() && message->packets().data().capacity() < kMinBlobSliceBytes) {
    blobs_->Take(*message->mutable_packets()->mutable_data());
  }
  return message;
}

void StreamReactor::StartNextWriteLocked() {
  if (queue_.empty() || cancelled_) return;
  if (compressor_) {
    compress_wake_.notify_one();
    return;
  }
  in_flight_ = std::move(queue_.front().message);
  queued_bytes_ -= queue_.front().bytes;
  queue_.pop_front();
  in_flight_since_ = std::chrono::steady_clock::now();
  WriteInFlightLocked();
}

void StreamReactor::WriteInFlightLocked() {
  SerializeForWrite(*in_flight_, blobs_, in_flight_bytes_);
  call_->StartWrite(in_flight_bytes_);
}

bool StreamReactor::StalledLocked() {
  if (!in_flight_ || std::chrono::steady_clock::now() - in_flight_since_ <= stall_timeout_) {
    return false;
  }
  if (!stalled_) {
    stalled_ = true;
    spdlog::warn("stream to {}: the client has read nothing for {} s; ending it", peer_,
                 stall_timeout_.count() / 1000.0);
    stop_.Request(v1::StreamEnd::CLIENT_STALLED);
    call_->context().TryCancel();  // the cancel and the failed write follow and finish the call
  }
  return true;
}

void StreamReactor::DriveCall() {
  bool finished = false;
  bool done = false;
  while (!finished || !done) {
    // While a write is in flight, wake when it has been for the stall timeout (a write started
    // while this waits is watched by Send's check instead).
    auto deadline = std::chrono::system_clock::time_point::max();
    {
      std::lock_guard lock(mu_);
      if (in_flight_ && !stalled_) {
        deadline = std::chrono::system_clock::now() + stall_timeout_ -
                   (std::chrono::steady_clock::now() - in_flight_since_);
      }
    }
    bool ok = false;
    switch (call_->Next(deadline, ok)) {
      case AsyncStreamCall::Event::kWritten:
        OnWriteDone(ok);
        break;
      case AsyncStreamCall::Event::kDone:
        done = true;
        if (call_->context().IsCancelled()) OnCancel();
        break;
      case AsyncStreamCall::Event::kFinished:
        finished = true;
        break;
      case AsyncStreamCall::Event::kDeadline: {
        std::lock_guard lock(mu_);
        StalledLocked();
        break;
      }
      case AsyncStreamCall::Event::kShutdown:
        finished = done = true;
        break;
    }
  }
  // Everything done under mu_ (the writes, the queue) happened before the reference goes.
  { std::lock_guard lock(mu_); }
  ReleaseReference();
}

void StreamReactor::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  if (in_flight_ && in_flight_->has_packets() && free_.size() < kMaxFreeMessages) {
    free_.push_back(std::move(in_flight_));
  }
  in_flight_.reset();
  in_flight_bytes_.Clear();
  if (!ok) {
    // The client is gone or the call was cancelled: stop capturing for it.
    cancelled_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    stop_.Request(v1::StreamEnd::CLIENT_CANCELLED);
  } else {
    StartNextWriteLocked();
  }
  MaybeFinishLocked();
}

void StreamReactor::OnCancel() {
  std::lock_guard lock(mu_);
  stop_.Request(v1::StreamEnd::CLIENT_CANCELLED);
  cancelled_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  MaybeFinishLocked();
}

void StreamReactor::FinishAfterQueue(grpc::Status status) {
  std::lock_guard lock(mu_);
  if (!finish_status_) finish_status_ = std::move(status);
  MaybeFinishLocked();
}

void StreamReactor::MaybeFinishLocked() {
  if (finish_called_ || in_flight_) return;
  if (cancelled_) {
    finish_called_ = true;
    call_->StartFinish(grpc::Status::CANCELLED);
  } else if (finish_status_ && queue_.empty()) {
    finish_called_ = true;
    call_->StartFinish(*finish_status_);
  }
  if (finish_called_ && compressor_) compress_wake_.notify_one();
  if (finish_called_ && keylog_) keylog_->Stop();
  if (finish_called_ && rewind_) rewind_->Stop();
}

void StreamReactor::CompressLoop() {
  std::unique_lock lock(mu_);
  while (true) {
    compress_wake_.wait(
        lock, [this] { return finish_called_ || (!in_flight_ && !queue_.empty() && !cancelled_); });
    if (finish_called_) break;
    in_flight_ = std::move(queue_.front().message);
    queued_bytes_ -= queue_.front().bytes;
    queue_.pop_front();
    in_flight_since_ = std::chrono::steady_clock::now();
    if (in_flight_->has_packets()) {
      lock.unlock();
      const Status compressed = CompressBatch(*in_flight_->mutable_packets());
      lock.lock();
      if (!compressed.ok()) {
        // Only when zstd runs out of memory; the stream cannot go on without a hole.
        spdlog::error("stream to {}: compression failed: {}; ending it", peer_,
                      compressed.message());
        stop_.Request(v1::StreamEnd::CAPTURE_ERROR);
        call_->context().TryCancel();
        cancelled_ = true;
      }
    } else if (in_flight_->has_statistics()) {
      CountCompressionLocked(*in_flight_->mutable_statistics());
    }
    if (cancelled_) {
      in_flight_.reset();
      queue_.clear();
      queued_bytes_ = 0;
      MaybeFinishLocked();
      continue;
    }
    WriteInFlightLocked();
  }
  lock.unlock();
  ReleaseReference();
}

Status StreamReactor::CompressBatch(v1::PacketBatch& batch) {
  if (!batch.SerializeToString(&serialized_)) return Internal("a batch did not serialize");
  CAPD_RETURN_IF_ERROR(compressor_->Compress(serialized_, compressed_));
  // Clear() keeps the blob's and arrays' capacity for the message's next use (BatchBuilder);
  // the swap keeps the previous part's buffer for the next compression.
  batch.Clear();
  batch.set_compression(v1::COMPRESSION_ZSTD);
  batch.set_uncompressed_length(static_cast<uint32_t>(serialized_.size()));
  batch.mutable_compressed()->swap(compressed_);
  std::lock_guard lock(mu_);
  uncompressed_bytes_ += serialized_.size();
  compressed_bytes_ += batch.compressed().size();
  return Status::Ok();
}

void StreamReactor::CountCompressionLocked(v1::Statistics& statistics) const {
  statistics.set_uncompressed_bytes(uncompressed_bytes_);
  statistics.set_compressed_bytes(compressed_bytes_);
}

void StreamReactor::ReleaseReference() {
  if (references_.fetch_sub(1) == 1) delete this;
}

}  // namespace capd::agent
