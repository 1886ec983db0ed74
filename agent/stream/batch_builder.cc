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
  // A message new to the stream (none was free to recycle) would grow its blob by doubling: each
  // step a fresh allocation the bytes so far are copied into, page-faulted in anew (glibc maps
  // chunks of 128 KiB and more on their own). One the size of the last batch is enough for the
  // next on a busy link and small on a quiet one; the sixteenth more is for the packet that
  // crosses kMaxBytes, which would otherwise double the blob once more.
  const size_t expected = last_bytes_ + last_bytes_ / 16;
  if (data_->capacity() < expected) data_->reserve(expected);
  sized_ = 0;
  packets_ = 0;
  bytes_ = 0;
}

namespace {

// Makes `field` `n` long without writing the new elements (they are written before they are read:
// Append fills each slot once, Finish cuts the rest) and returns its array. Resize would zero-fill
// them first: 20 bytes per packet, a third of a 64 B packet's own copy (docs/performance.md,
// session 14). RepeatedField of a POD type leaves AddNAlreadyReserved's elements uninitialized.
template <typename T>
T* ExtendUninitialized(google::protobuf::RepeatedField<T>* field, int n) {
  field->Reserve(n);
  field->AddNAlreadyReserved(n - field->size());
  return field->mutable_data();
}

}  // namespace

void BatchBuilder::Grow() {
  // Doubling from 256 (a quiet link's batch is small) up to kMaxPackets, the first step straight
  // to the last batch's count (as the blob in Start); a recycled message's capacity makes this a
  // few stores after the first batches.
  sized_ =
      std::min(kMaxPackets, std::max({size_t{256}, sized_ * 2, sized_ == 0 ? last_packets_ : 0}));
  const int n = static_cast<int>(sized_);
  interface_index_ = ExtendUninitialized(batch_->mutable_interface_index(), n);
  timestamp_ns_ = ExtendUninitialized(batch_->mutable_timestamp_ns(), n);
  original_length_ = ExtendUninitialized(batch_->mutable_original_length(), n);
  captured_length_ = ExtendUninitialized(batch_->mutable_captured_length(), n);
}

void BatchBuilder::AddComment(std::string_view comment) {
  if (packets_ == 0) return;
  batch_->add_comment_packet(static_cast<uint32_t>(packets_ - 1));
  batch_->add_comment(comment.data(), comment.size());
  bytes_ += comment.size();
}

std::unique_ptr<v1::StreamResponse> BatchBuilder::Finish() {
  if (batch_ != nullptr) {  // (not started: nothing to cut)
    last_packets_ = packets_;
    last_bytes_ = data_->size();
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
