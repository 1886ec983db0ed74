#include "client/stream/batch_recycler.h"

#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <mutex>
#include <utility>
#include <vector>

#include "proto/capture.pb.h"

namespace capd::client {

struct BatchRecycler::Spares {
  explicit Spares(size_t max) : max_spares(max) {}
  const size_t max_spares;
  std::mutex mu;
  std::vector<std::unique_ptr<v1::PacketBatch>> batches;  // guarded by mu; cleared

  std::unique_ptr<v1::PacketBatch> Take() {
    std::lock_guard lock(mu);
    if (batches.empty()) return std::make_unique<v1::PacketBatch>();
    auto batch = std::move(batches.back());
    batches.pop_back();
    return batch;
  }
  void GiveBack(std::unique_ptr<v1::PacketBatch> batch) {
    // Cleared outside the lock: protobuf's Clear keeps the strings' and arrays' capacity.
    batch->Clear();
    std::lock_guard lock(mu);
    if (batches.size() < max_spares) batches.push_back(std::move(batch));
  }
};

BatchRecycler::BatchRecycler(size_t max_spares) : spares_(std::make_shared<Spares>(max_spares)) {}
BatchRecycler::~BatchRecycler() = default;

size_t BatchRecycler::spares() const {
  std::lock_guard lock(spares_->mu);
  return spares_->batches.size();
}

StatusOr<std::shared_ptr<v1::StreamResponse>> BatchRecycler::Parse(grpc::ByteBuffer& wire) {
  std::shared_ptr<v1::StreamResponse> message(
      new v1::StreamResponse, [spares = spares_](v1::StreamResponse* dropped) {
        std::unique_ptr<v1::StreamResponse> owned(dropped);
        if (owned->has_packets())
          spares->GiveBack(std::unique_ptr<v1::PacketBatch>(owned->release_packets()));
      });
  const auto undecodable = [] {
    return Status(StatusCode::kInvalidArgument, "a message that is not a capd.v1 StreamResponse");
  };
  // Every message the agent sends has one field, its payload; a packet batch is field 2.
  constexpr uint32_t kPacketsTag = (v1::StreamResponse::kPacketsFieldNumber << 3) | 2;
  {
    grpc::ProtoBufferReader bytes(&wire);
    if (!bytes.status().ok()) return undecodable();
    google::protobuf::io::CodedInputStream coded(&bytes);
    if (coded.ReadTag() == kPacketsTag) {
      uint32_t length = 0;
      if (!coded.ReadVarint32(&length)) return undecodable();
      std::unique_ptr<v1::PacketBatch> batch = spares_->Take();
      const auto limit = coded.PushLimit(static_cast<int>(length));
      const bool parsed = batch->MergePartialFromCodedStream(&coded) &&
                          coded.ConsumedEntireMessage() && coded.BytesUntilLimit() == 0;
      coded.PopLimit(limit);
      message->set_allocated_packets(batch.release());
      if (!parsed) return undecodable();
      // Anything after the batch (no agent sends more) merges as protobuf would merge it.
      if (!message->MergePartialFromCodedStream(&coded)) return undecodable();
      return message;
    }
  }
  // Any other payload: parsed from the start by protobuf itself.
  grpc::ProtoBufferReader bytes(&wire);
  if (!bytes.status().ok() || !message->ParsePartialFromZeroCopyStream(&bytes)) {
    return undecodable();
  }
  return message;
}

}  // namespace capd::client
