#include "agent/stream/batch_builder.h"

#include <algorithm>

namespace capd::agent {

void BatchBuilder::Start(std::unique_ptr<v1::StreamResponse> message) {
  message_ = std::move(message);
  // mutable_packets() keeps the existing PacketBatch when the message last carried one; Clear()
  // on it keeps the blob's and the arrays' capacity (protobuf 3.21 ClearToEmpty / RepeatedField).
  batch_ = message_->mutable_packets();
  batch_->Clear();
  data_ = batch_->mutable_data();
  sized_ = 0;
  packets_ = 0;
  bytes_ = 0;
}

void BatchBuilder::Grow() {
  // Doubling from 256 (a quiet link's batch is small) up to kMaxPackets; a recycled message's
  // capacity makes this a few stores after the first batches.
  sized_ = std::min(kMaxPackets, std::max<size_t>(256, sized_ * 2));
  const int n = static_cast<int>(sized_);
  batch_->mutable_interface_index()->Resize(n, 0);
  batch_->mutable_timestamp_ns()->Resize(n, 0);
  batch_->mutable_original_length()->Resize(n, 0);
  batch_->mutable_captured_length()->Resize(n, 0);
  interface_index_ = batch_->mutable_interface_index()->mutable_data();
  timestamp_ns_ = batch_->mutable_timestamp_ns()->mutable_data();
  original_length_ = batch_->mutable_original_length()->mutable_data();
  captured_length_ = batch_->mutable_captured_length()->mutable_data();
}

void BatchBuilder::AddComment(std::string_view comment) {
  if (packets_ == 0) return;
  batch_->add_comment_packet(static_cast<uint32_t>(packets_ - 1));
  batch_->add_comment(comment.data(), comment.size());
  bytes_ += comment.size();
}

std::unique_ptr<v1::StreamResponse> BatchBuilder::Finish() {
  if (batch_ != nullptr) {  // (not started: nothing to cut)
    const int n = static_cast<int>(packets_);
    batch_->mutable_interface_index()->Truncate(n);
    batch_->mutable_timestamp_ns()->Truncate(n);
    batch_->mutable_original_length()->Truncate(n);
    batch_->mutable_captured_length()->Truncate(n);
  }
  batch_ = nullptr;
  data_ = nullptr;
  packets_ = 0;
  bytes_ = 0;
  return std::move(message_);
}

void TruncateBatch(v1::PacketBatch& batch, int keep) {
  size_t bytes = 0;
  for (int i = 0; i < keep; ++i) bytes += batch.captured_length(i);
  batch.mutable_data()->resize(bytes);
  batch.mutable_interface_index()->Truncate(keep);
  batch.mutable_timestamp_ns()->Truncate(keep);
  batch.mutable_original_length()->Truncate(keep);
  batch.mutable_captured_length()->Truncate(keep);
  int comments = 0;  // comment_packet is ascending
  while (comments < batch.comment_packet_size() &&
         batch.comment_packet(comments) < static_cast<uint32_t>(keep)) {
    ++comments;
  }
  batch.mutable_comment_packet()->Truncate(comments);
  batch.mutable_comment()->DeleteSubrange(comments, batch.comment_size() - comments);
}

}  // namespace capd::agent
