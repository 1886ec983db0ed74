#include "agent/trigger/stream_trigger.h"

#include <utility>

#include "agent/stream/batch_builder.h"
#include "common/utc_text.h"
#include "common/utf8.h"

namespace capd::agent::trigger {
namespace {

Matcher MatcherOf(const filters::CompiledFilter* filter) {
  if (filter == nullptr) return nullptr;
  return [filter](const Packet& p) {
    return filter->Matches(p.data, p.captured_length, p.original_length);
  };
}

}  // namespace

bool HasTriggers(const v1::StreamRequest& request) {
  return !request.start_on().empty() || !request.stop_on().empty();
}

Status ValidateTriggers(const v1::StreamRequest& request, size_t max_filter_bytes,
                        uint64_t max_duration_ms, uint64_t max_count) {
  if (!IsValidUtf8(request.start_on())) return InvalidArgument("start_on is not UTF-8");
  if (!IsValidUtf8(request.stop_on())) return InvalidArgument("stop_on is not UTF-8");
  if (request.start_on().size() > max_filter_bytes) {
    return InvalidArgument("start-on filter is over 16 KiB");
  }
  if (request.stop_on().size() > max_filter_bytes) {
    return InvalidArgument("stop-on filter is over 16 KiB");
  }
  if (request.before_ms() != 0 && request.start_on().empty()) {
    return InvalidArgument("--before needs --start-on");
  }
  if ((request.after_ms() != 0 || request.after_count() != 0) && request.stop_on().empty()) {
    return InvalidArgument("--after and --after-count need --stop-on");
  }
  if (request.after_ms() != 0 && request.after_count() != 0) {
    return InvalidArgument("--after and --after-count exclude each other");
  }
  if (request.before_ms() > kMaxBeforeMs) {
    return InvalidArgument("--before " + std::to_string(request.before_ms() / 1000) +
                           " s is over the limit of 1 hour");
  }
  if (request.after_ms() > max_duration_ms) {
    return InvalidArgument("--after is over the limit of 30 days");
  }
  if (request.after_count() > max_count) {
    return InvalidArgument("--after-count " + std::to_string(request.after_count()) +
                           " is over 2^48");
  }
  if (HasTriggers(request) && request.decap().mode() != v1::Decapsulation::NONE) {
    return InvalidArgument("--start-on and --stop-on are not available with decapsulation");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<StreamTrigger>> StreamTrigger::Create(const v1::StreamRequest& request,
                                                               const CompileFn& compile,
                                                               uint64_t max_history_bytes) {
  if (!HasTriggers(request)) return std::unique_ptr<StreamTrigger>();
  TriggerConfig config;
  config.max_history_bytes = max_history_bytes;
  std::unique_ptr<filters::CompiledFilter> start, stop;
  if (!request.start_on().empty()) {
    auto compiled = compile(request.start_on());
    if (!compiled.ok()) {
      return Status(compiled.status().code(), "start-on " + compiled.status().message());
    }
    start = std::make_unique<filters::CompiledFilter>(std::move(compiled).value());
    config.start_text = request.start_on();
    config.before_ns = uint64_t{request.before_ms()} * 1'000'000;
  }
  if (!request.stop_on().empty()) {
    auto compiled = compile(request.stop_on());
    if (!compiled.ok()) {
      return Status(compiled.status().code(), "stop-on " + compiled.status().message());
    }
    stop = std::make_unique<filters::CompiledFilter>(std::move(compiled).value());
    config.stop_text = request.stop_on();
    config.after_ns = uint64_t{request.after_ms()} * 1'000'000;
    config.after_count = request.after_count();
  }
  return std::unique_ptr<StreamTrigger>(
      new StreamTrigger(std::move(config), std::move(start), std::move(stop)));
}

StreamTrigger::StreamTrigger(TriggerConfig config, std::unique_ptr<filters::CompiledFilter> start,
                             std::unique_ptr<filters::CompiledFilter> stop)
    : start_(std::move(start)), stop_(std::move(stop)), gate_([&] {
        config.start_on = MatcherOf(start_.get());
        config.stop_on = MatcherOf(stop_.get());
        return std::move(config);
      }()) {}

void StreamTrigger::Pass(const v1::PacketBatch& batch, const NewMessageFn& new_message,
                         std::vector<Out>& out) {
  BatchBuilder builder;
  bool history = false;
  bool releasing = false;  // the packet offered is the start match: what it emits is history
  auto finish = [&] {
    if (!builder.started() || builder.empty()) return;
    const size_t n = builder.packet_count();
    out.push_back({builder.Finish(), n, history});
    history = false;
  };
  const TriggerGate::EmitFn emit = [&](const Packet& p, std::string_view comment) {
    if (!builder.started()) builder.Start(new_message());
    if (releasing) history = true;
    builder.Append(p.interface_index, p.timestamp_ns, p.original_length, p.data, p.captured_length);
    builder.CommentLast(comment);
    if (builder.full()) finish();
  };
  const std::string& data = batch.data();
  size_t offset = 0;
  int comment = 0;
  for (int i = 0; i < batch.captured_length_size() && !gate_.ended(); ++i) {
    Packet p;
    p.interface_index = batch.interface_index(i);
    p.timestamp_ns = batch.timestamp_ns(i);
    p.original_length = batch.original_length(i);
    p.captured_length = batch.captured_length(i);
    if (offset + p.captured_length > data.size()) break;  // (the agent's own batch: never)
    p.data = reinterpret_cast<const uint8_t*>(data.data()) + offset;
    offset += p.captured_length;
    while (comment < batch.comment_packet_size() &&
           batch.comment_packet(comment) < static_cast<uint32_t>(i)) {
      ++comment;
    }
    if (comment < batch.comment_packet_size() &&
        batch.comment_packet(comment) == static_cast<uint32_t>(i)) {
      p.comment = batch.comment(comment);
    }
    releasing = gate_.waiting();
    gate_.Offer(p, emit);
  }
  finish();
}

std::string StreamTrigger::EndMessage() const {
  return "stop-on matched at " + UtcNanosText(gate_.stop_matched_ns());
}

void StreamTrigger::FillStatus(v1::TriggerStatus& s) const {
  s.set_waiting(gate_.waiting());
  s.set_held_packets(gate_.held_packets());
  s.set_held_bytes(gate_.held_bytes());
  s.set_history_limit_bytes(gate_.config().max_history_bytes);
  s.set_dropped_packets(gate_.dropped_packets());
  s.set_dropped_bytes(gate_.dropped_bytes());
  s.set_start_matched_ns(gate_.start_matched_ns());
  s.set_history_sent(gate_.history_sent());
  s.set_stop_matched_ns(gate_.stop_matched() ? gate_.stop_matched_ns() : 0);
}

}  // namespace capd::agent::trigger
