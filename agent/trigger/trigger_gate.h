#pragma once
// Triggers of one stream (StreamRequest start_on/stop_on): which of its packets are sent, and the
// history held until the start trigger matches. Pure: no libpcap handle, no I/O, no clock but the
// packets' own timestamps; owned by the capture thread of the stream's capture, never locked.
//
// How data flows: every packet the stream would get (after its own filter and the exclusion of
// capd's own traffic) is offered, in order. Before the start trigger matches, the gate holds it
// in a history bounded by packet time (`before_ns` behind the newest packet) and by bytes
// (`max_history_bytes`: the oldest packets go first, counted as dropped); nothing is emitted.
// The matching packet releases the history (every held packet whose time is at least the
// match's time less `before_ns`), then itself with a comment, then everything after it live.
// Without a start trigger the gate is open from the first packet. After the stop trigger
// matches (the packet gets a comment and is emitted), the stream goes on for `after_count`
// packets or, with `after_ns`, for the packets up to the match's time plus `after_ns`; then the
// gate has ended and emits nothing more (its owner ends the stream).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>

namespace capd::agent::trigger {

// A packet as the gate sees it; `data` is valid only during the call it is passed to.
struct Packet {
  uint32_t interface_index = 0;
  uint64_t timestamp_ns = 0;
  uint32_t original_length = 0;
  const uint8_t* data = nullptr;
  uint32_t captured_length = 0;
  std::string_view comment;  // the packet's own comment (e.g. Geneve options), may be empty
};

// True when a packet matches a trigger's filter.
using Matcher = std::function<bool(const Packet&)>;

struct TriggerConfig {
  Matcher start_on;        // unset: no start trigger (the gate is open from the start)
  std::string start_text;  // the filter's text, for the comment
  uint64_t before_ns = 0;  // history kept before the start match, by packet time
  Matcher stop_on;         // unset: no stop trigger
  std::string stop_text;
  uint64_t after_ns = 0;     // with stop_on: packet time sent after the stop match
  uint64_t after_count = 0;  // with stop_on, when after_ns is 0: packets sent after the match
  // The history's bound in bytes (each packet counts its captured bytes, its comment and
  // kPacketOverhead): the memory the gate holds, within a few packets' bookkeeping.
  uint64_t max_history_bytes = 32ULL << 20;
};

class TriggerGate {
 public:
  // Bookkeeping a held packet costs beyond its bytes (deque slot, string header, allocation).
  static constexpr uint64_t kPacketOverhead = 96;

  // Receives each packet to send, in order, with the comment it carries (its own joined with
  // the trigger's, or either, or empty). Called only from inside Offer.
  using EmitFn = std::function<void(const Packet& packet, std::string_view comment)>;

  explicit TriggerGate(TriggerConfig config);

  // Takes the next packet of the stream; emits what is to be sent because of it (the history
  // and the packet at the start match, the packet itself while open, nothing while waiting or
  // once ended). Never blocks; allocates only to hold a packet while waiting.
  void Offer(const Packet& packet, const EmitFn& emit);

  bool waiting() const { return waiting_; }  // the start trigger has not matched yet
  bool ended() const { return ended_; }      // the stop trigger's window is over
  bool start_matched() const { return start_matched_ns_ != 0; }
  bool stop_matched() const { return stop_matched_; }
  uint64_t start_matched_ns() const { return start_matched_ns_; }  // packet time; 0: none
  uint64_t stop_matched_ns() const { return stop_matched_ns_; }
  uint64_t held_packets() const { return history_.size(); }
  uint64_t held_bytes() const { return held_bytes_; }
  // Held packets given up to keep the history within max_history_bytes (packets that only grew
  // older than before_ns are not counted: they were never to be sent).
  uint64_t dropped_packets() const { return dropped_packets_; }
  uint64_t dropped_bytes() const { return dropped_bytes_; }
  uint64_t history_sent() const { return history_sent_; }  // held packets sent at the match
  const TriggerConfig& config() const { return config_; }

 private:
  struct Held {
    uint32_t interface_index;
    uint64_t timestamp_ns;
    uint32_t original_length;
    std::string bytes;    // the captured bytes
    std::string comment;  // the packet's own
    uint64_t Cost() const { return bytes.size() + comment.size() + kPacketOverhead; }
  };
  void Hold(const Packet& packet);
  void ReleaseHistory(uint64_t match_ns, const EmitFn& emit);
  // Emits a live packet (checking the stop trigger and its window); `comment` is the trigger's.
  void EmitLive(const Packet& packet, std::string comment, const EmitFn& emit);

  const TriggerConfig config_;
  std::deque<Held> history_;
  uint64_t held_bytes_ = 0;
  uint64_t dropped_packets_ = 0;
  uint64_t dropped_bytes_ = 0;
  uint64_t history_sent_ = 0;
  bool waiting_;
  bool ended_ = false;
  uint64_t start_matched_ns_ = 0;
  bool stop_matched_ = false;
  uint64_t stop_matched_ns_ = 0;
  uint64_t after_left_ = 0;  // packets still to send after the stop match (after_count)
};

// "capd: start-on matched: FILTER" / "capd: stop-on matched: FILTER": the comments the matching
// packets carry.
std::string StartComment(std::string_view filter);
std::string StopComment(std::string_view filter);

}  // namespace capd::agent::trigger
