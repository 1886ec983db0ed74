#include "agent/trigger/trigger_gate.h"

#include <utility>

namespace capd::agent::trigger {
namespace {

std::string Joined(std::string_view own, std::string_view trigger) {
  if (own.empty()) return std::string(trigger);
  if (trigger.empty()) return std::string(own);
  std::string text(own);
  text += "; ";
  text += trigger;
  return text;
}

}  // namespace

std::string StartComment(std::string_view filter) {
  return "capd: start-on matched: " + std::string(filter);
}

std::string StopComment(std::string_view filter) {
  return "capd: stop-on matched: " + std::string(filter);
}

TriggerGate::TriggerGate(TriggerConfig config)
    : config_(std::move(config)), waiting_(static_cast<bool>(config_.start_on)) {}

void TriggerGate::Offer(const Packet& packet, const EmitFn& emit) {
  if (ended_) return;
  if (!waiting_) {
    EmitLive(packet, {}, emit);
    return;
  }
  if (!config_.start_on(packet)) {
    Hold(packet);
    return;
  }
  // A zero time is "no match" in the counters: the first nanosecond of 1970 is not a real one.
  start_matched_ns_ = packet.timestamp_ns == 0 ? 1 : packet.timestamp_ns;
  waiting_ = false;
  ReleaseHistory(packet.timestamp_ns, emit);
  EmitLive(packet, StartComment(config_.start_text), emit);
}

void TriggerGate::Hold(const Packet& packet) {
  // The time bound: what is older than before_ns behind this packet will never be sent.
  const uint64_t oldest =
      packet.timestamp_ns > config_.before_ns ? packet.timestamp_ns - config_.before_ns : 0;
  while (!history_.empty() && history_.front().timestamp_ns < oldest) {
    held_bytes_ -= history_.front().Cost();
    history_.pop_front();
  }
  Held held{packet.interface_index, packet.timestamp_ns, packet.original_length,
            std::string(reinterpret_cast<const char*>(packet.data), packet.captured_length),
            std::string(packet.comment)};
  const uint64_t cost = held.Cost();
  if (packet.timestamp_ns < oldest || cost > config_.max_history_bytes) {
    ++dropped_packets_;  // (a packet larger than the whole bound: it cannot be held)
    dropped_bytes_ += packet.captured_length;
    return;
  }
  // The byte bound: the oldest go first, and are counted.
  while (!history_.empty() && held_bytes_ + cost > config_.max_history_bytes) {
    ++dropped_packets_;
    dropped_bytes_ += history_.front().bytes.size();
    held_bytes_ -= history_.front().Cost();
    history_.pop_front();
  }
  held_bytes_ += cost;
  history_.push_back(std::move(held));
}

void TriggerGate::ReleaseHistory(uint64_t match_ns, const EmitFn& emit) {
  const uint64_t from = match_ns > config_.before_ns ? match_ns - config_.before_ns : 0;
  while (!history_.empty()) {
    Held held = std::move(history_.front());
    history_.pop_front();
    held_bytes_ -= held.Cost();
    if (held.timestamp_ns < from) continue;
    Packet p;
    p.interface_index = held.interface_index;
    p.timestamp_ns = held.timestamp_ns;
    p.original_length = held.original_length;
    p.data = reinterpret_cast<const uint8_t*>(held.bytes.data());
    p.captured_length = static_cast<uint32_t>(held.bytes.size());
    p.comment = held.comment;
    ++history_sent_;
    // Held packets are before the start match: the stop trigger is not yet armed for them.
    emit(p, p.comment);
  }
  held_bytes_ = 0;
}

void TriggerGate::EmitLive(const Packet& packet, std::string comment, const EmitFn& emit) {
  if (stop_matched_) {
    if (config_.after_ns != 0) {
      if (packet.timestamp_ns > stop_matched_ns_ + config_.after_ns) {
        ended_ = true;
        return;
      }
    } else if (after_left_ == 0) {
      ended_ = true;
      return;
    } else {
      --after_left_;
    }
    emit(packet, Joined(packet.comment, comment));
    if (config_.after_ns == 0 && after_left_ == 0) ended_ = true;
    return;
  }
  if (config_.stop_on && config_.stop_on(packet)) {
    stop_matched_ = true;
    stop_matched_ns_ = packet.timestamp_ns;
    after_left_ = config_.after_count;
    comment = Joined(comment, StopComment(config_.stop_text));
    emit(packet, Joined(packet.comment, comment));
    if (config_.after_ns == 0 && after_left_ == 0) ended_ = true;
    return;
  }
  emit(packet, Joined(packet.comment, comment));
}

}  // namespace capd::agent::trigger
