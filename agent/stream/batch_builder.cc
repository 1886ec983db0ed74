#include "agent/stream/batch_builder.h"

namespace capd::agent {

void BatchBuilder::Start(std::unique_ptr<v1::StreamResponse> message) {
  message_ = std::move(message);
  // mutable_packets() keeps the existing PacketBatch when the message last carried one; Clear()
  // on it keeps the blob's and the arrays' capacity (protobuf 3.21 ClearToEmpty / RepeatedField).
  batch_ = message_->mutable_packets();
  batch_->Clear();
  data_ = batch_->mutable_data();
  packets_ = 0;
  bytes_ = 0;
}

void BatchBuilder::Append(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                          const uint8_t* data, uint32_t captured_length) {
  data_->append(reinterpret_cast<const char*>(data), captured_length);
  batch_->add_interface_index(interface_index);
  batch_->add_timestamp_ns(timestamp_ns);
  batch_->add_original_length(original_length);
  batch_->add_captured_length(captured_length);
  ++packets_;
  bytes_ += captured_length;
}

void BatchBuilder::AddComment(std::string_view comment) {
  if (packets_ == 0) return;
  batch_->add_comment_packet(static_cast<uint32_t>(packets_ - 1));
  batch_->add_comment(comment.data(), comment.size());
  bytes_ += comment.size();
}

std::unique_ptr<v1::StreamResponse> BatchBuilder::Finish() {
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
