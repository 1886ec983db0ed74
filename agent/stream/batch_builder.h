#pragma once
// Packs packet records into one PacketBatch message: the bytes of all packets in one `data` blob
// and the per-packet metadata in packed arrays (ARCHITECTURE.md, "Batch and encode as a blob": 7-15
// ns per packet).
//
// Messages are recycled: Start() takes a message that may have carried an earlier batch and
// clears it without giving back the capacity of its blob and arrays, so a warmed-up stream
// allocates nothing per packet. A message without that capacity is sized once, to the last
// batch's size, instead of growing step by step; the arrays are never zero-filled ahead.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proto/capture.pb.h"

namespace capd::agent {

class BatchBuilder {
 public:
  // Flush rule: a message holds at most 8192 packets or ~2 MiB. On a busy link fewer, larger
  // messages cost both ends fewer wake-ups: each costs capd ~10 and capctl ~5 at 1500 B, so 2 MiB
  // against 512 KiB took capd from ~25,000 to ~5,000 wake-ups per million packets
  // (docs/performance.md, session 13). 2 MiB keeps a stream's recycled messages within a few MiB
  // and below gRPC's default 4 MiB receive limit, which older clients may still have.
  static constexpr size_t kMaxPackets = 8192;
  static constexpr size_t kMaxBytes = 2048 * 1024;

  // Begins a batch in `message` (a fresh or recycled StreamResponse).
  void Start(std::unique_ptr<v1::StreamResponse> message);
  bool started() const { return message_ != nullptr; }

  void Append(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
              const uint8_t* data, uint32_t captured_length) {
    if (packets_ == sized_) Grow();
    data_->append(reinterpret_cast<const char*>(data), captured_length);
    interface_index_[packets_] = interface_index;
    timestamp_ns_[packets_] = timestamp_ns;
    original_length_[packets_] = original_length;
    captured_length_[packets_] = captured_length;
    ++packets_;
    bytes_ += captured_length;
  }

  // Attaches a comment to the packet appended last (sparse: most packets have none, so the
  // empty case is inline).
  void CommentLast(std::string_view comment) {
    if (!comment.empty()) AddComment(comment);
  }

  bool empty() const { return packets_ == 0; }
  bool full() const { return packets_ >= kMaxPackets || bytes_ >= kMaxBytes; }
  size_t packet_count() const { return packets_; }

  // Hands the batch over; the builder is not started afterwards.
  std::unique_ptr<v1::StreamResponse> Finish();

 private:
  void AddComment(std::string_view comment);

  // The per-packet arrays are sized ahead in steps (Grow) and written through plain pointers,
  // one capacity check per packet instead of one per array; Finish cuts them to the packet
  // count. BM_BatchEncode measures it.
  void Grow();

  std::unique_ptr<v1::StreamResponse> message_;
  v1::PacketBatch* batch_ = nullptr;
  std::string* data_ = nullptr;  // batch_->mutable_data(), looked up once per batch
  uint32_t* interface_index_ = nullptr;
  uint64_t* timestamp_ns_ = nullptr;
  uint32_t* original_length_ = nullptr;
  uint32_t* captured_length_ = nullptr;
  size_t sized_ = 0;  // the arrays' current size: packets_ <= sized_
  // The last finished batch's packets and blob bytes: how large a new batch is sized ahead.
  size_t last_packets_ = 0;
  size_t last_bytes_ = 0;
  size_t packets_ = 0;
  size_t bytes_ = 0;
};

// Keeps the first `keep` packets of a finished batch (0 <= keep <= its packet count): their bytes,
// metadata and comments. For a client whose count ends inside a batch other clients get whole.
void TruncateBatch(v1::PacketBatch& batch, int keep);

}  // namespace capd::agent
