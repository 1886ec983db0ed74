#include "client/stream/agent_feed.h"

#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/sync_stream.h>
#include <pthread.h>

#include <string>
#include <utility>

#include "client/stream/batch_decompression.h"
#include "client/stream/batch_recycler.h"

namespace capd::client {

AgentFeed::AgentFeed(size_t index, std::string address, AgentConnection connection,
                     v1::StreamRequest request, FeedHub& hub)
    : Feed(index, std::move(address)),
      connection_(std::move(connection)),
      request_(std::move(request)),
      hub_(hub) {
  connection_.Prepare(context_);
}

AgentFeed::~AgentFeed() {
  context_.TryCancel();
  {
    // Wake a reader waiting for queue space.
    std::lock_guard lock(hub_.mu);
    queue.clear();
    queued_bytes = 0;
  }
  hub_.changed.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AgentFeed::Start() { thread_ = std::thread(&AgentFeed::ReadLoop, this); }

void AgentFeed::ReadLoop() {
  // Named apart from the merger's thread: it also writes the file (stream_session.h), and
  // per-thread CPU (bench/threads.sh, top -H) should say which of the two did.
  pthread_setname_np(pthread_self(), "capctl-reader");
  // The Stream call as the generated stub makes it, but reading each message's bytes as they
  // came (a ByteBuffer), which BatchRecycler parses into the memory of a batch already written.
  // (grpc 1.51: ClientReaderFactory is the generated stub's own way to open the call.)
  const std::string method_name = std::string("/") + v1::Capture::service_full_name() + "/Stream";
  const grpc::internal::RpcMethod method(
      method_name.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING, connection_.channel());
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(connection_.channel().get(),
                                                                    method, &context_, request_));
  // The messages the writer still holds (until its next Flush) and a few more.
  BatchRecycler recycler(kSpareBatches);
  BatchDecompression decompression(address());
  Status undecodable;
  bool first = true;
  bool since_ignored = false;
  while (true) {
    grpc::ByteBuffer wire;
    if (!reader->Read(&wire)) break;
    NoteHandle();
    StatusOr<std::shared_ptr<v1::StreamResponse>> parsed = recycler.Parse(wire);
    if (!parsed.ok()) {
      undecodable = Status(parsed.status().code(), address() + ": " + parsed.status().message());
      context_.TryCancel();
      break;
    }
    std::shared_ptr<v1::StreamResponse> message = std::move(parsed).value();
    // An agent that honours --since answers with a Rewind first; one that predates the field
    // would stream live packets only, which is not what the user asked for.
    if (first && request_.since_ns() != 0 && !message->has_rewind()) {
      since_ignored = true;
      context_.TryCancel();
      break;
    }
    if (std::exchange(first, false) && !request_.tls_keylog().empty() &&
        context_.GetServerInitialMetadata().count("capd-tls-keylog") == 0) {
      std::lock_guard lock(hub_.mu);
      keylog_ignored = true;
    }
    if (!trigger_checked_ && (!request_.start_on().empty() || !request_.stop_on().empty())) {
      trigger_checked_ = true;
      if (context_.GetServerInitialMetadata().count("capd-trigger") == 0) {
        // An agent that predates triggers streams everything: nothing of it is written.
        context_.TryCancel();
        trigger_ignored_ = true;
        break;
      }
    }
    const size_t wire_bytes = wire.Length();
    // Decoded after anything that counts what came over the wire, before anything that reads
    // the packets.
    if (message->has_packets()) {
      undecodable = decompression.Decode(*message->mutable_packets());
      if (!undecodable.ok()) {
        context_.TryCancel();
        break;
      }
    }
    QueueFromReader(hub_, std::move(message), wire_bytes, kMaxQueuedBytes);
  }
  grpc::Status finished = reader->Finish();
  if (!undecodable.ok())
    finished = grpc::Status(grpc::StatusCode::DATA_LOSS, undecodable.message());
  if (trigger_ignored_) {
    finished = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "this agent does not support --start-on/--stop-on (a capd that "
                            "predates them); nothing was captured");
  } else if (since_ignored) {
    finished = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            "this agent does not rewind (--since needs a newer capd): refused "
                            "rather than streaming only live packets");
  }
  {
    std::lock_guard lock(hub_.mu);
    status = std::move(finished);
    done = true;
    ++hub_.arrivals;
  }
  hub_.changed.notify_all();
}

void AgentFeed::NoteHandle() {
  std::lock_guard lock(handle_mu_);
  if (handle_) return;
  // Readable once a message arrived (gRPC: initial metadata comes before it).
  const auto& metadata = context_.GetServerInitialMetadata();
  auto found = metadata.find("capd-stream-handle");
  handle_ = found == metadata.end() ? std::string()
                                    : std::string(found->second.data(), found->second.size());
}

StatusOr<v1::ChangeStreamResponse> AgentFeed::Change(v1::ChangeStreamRequest change) {
  {
    std::lock_guard lock(handle_mu_);
    if (!handle_) return Unavailable("the stream has not started yet");
    if (handle_->empty()) {
      return Status(StatusCode::kFailedPrecondition,
                    "this agent cannot change a running stream (an older capd)");
    }
    change.set_stream_handle(*handle_);
  }
  auto stub = v1::Capture::NewStub(connection_.channel());
  grpc::ClientContext context;
  connection_.Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + kChangeTimeout);
  v1::ChangeStreamResponse response;
  const grpc::Status status = stub->ChangeStream(&context, change, &response);
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return Status(StatusCode::kFailedPrecondition,
                  "this agent cannot change a running stream (an older capd)");
  }
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

}  // namespace capd::client
