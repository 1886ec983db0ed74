#pragma once
// A stream's triggers on its capture thread: the request's trigger filters compiled for the
// capture, a TriggerGate, and the stream's batches passed through it. Hooked in where a shared
// capture hands a batch to each subscriber (SharedCapture::FanOut): a stream with triggers gets
// its own batches made from the gate's output instead of the capture's batch.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/trigger/trigger_gate.h"
#include "common/status.h"
#include "filters/bpf_filter.h"
#include "proto/capture.pb.h"

namespace capd::agent::trigger {

inline constexpr uint64_t kDefaultMaxHistoryBytes = 32ULL << 20;  // capd --max-trigger-history
inline constexpr uint32_t kMaxBeforeMs = 3600 * 1000;

// True when the request asks for a trigger (start_on or stop_on).
bool HasTriggers(const v1::StreamRequest& request);

// kInvalidArgument naming the field: a trigger filter that is not UTF-8 or over `max_filter_bytes`,
// before_ms over an hour, after_ms over `max_duration_ms`, after_count over `max_count`, both
// after_ms and after_count, before_ms without start_on, after_* without stop_on, or a trigger on a
// mirror-target (decapsulating) stream. Pure: no compile.
Status ValidateTriggers(const v1::StreamRequest& request, size_t max_filter_bytes,
                        uint64_t max_duration_ms, uint64_t max_count);

class StreamTrigger {
 public:
  // Compiles a trigger filter for the capture (in capd-filters, within its budget); the error
  // names the filter.
  using CompileFn = std::function<StatusOr<filters::CompiledFilter>(const std::string& text)>;
  using NewMessageFn = std::function<std::unique_ptr<v1::StreamResponse>()>;

  // Null when the request has no triggers; else its triggers compiled, or the compile's error
  // ("start-on: filter '...': syntax error").
  static StatusOr<std::unique_ptr<StreamTrigger>> Create(const v1::StreamRequest& request,
                                                         const CompileFn& compile,
                                                         uint64_t max_history_bytes);

  // One batch to send: its packets and whether it carries history (the agent then queues it as
  // it would a control message: the history's bytes were bounded while it was held).
  struct Out {
    std::unique_ptr<v1::StreamResponse> message;
    size_t packets = 0;
    bool history = false;
  };
  // The packets of `batch` the gate lets through, as batches of at most BatchBuilder's size
  // (made with `new_message`), appended to `out`. Whatever the gate holds stays with it.
  void Pass(const v1::PacketBatch& batch, const NewMessageFn& new_message, std::vector<Out>& out);

  // The stop trigger's window is over: the stream is to end (StreamEnd STOP_ON_MATCHED, with
  // EndMessage()).
  bool ended() const { return gate_.ended(); }
  // "stop-on matched at 2026-12-07T15:30:00.123456789Z"
  std::string EndMessage() const;
  void FillStatus(v1::TriggerStatus& status) const;
  const TriggerGate& gate() const { return gate_; }

 private:
  StreamTrigger(TriggerConfig config, std::unique_ptr<filters::CompiledFilter> start,
                std::unique_ptr<filters::CompiledFilter> stop);

  std::unique_ptr<filters::CompiledFilter> start_;
  std::unique_ptr<filters::CompiledFilter> stop_;
  TriggerGate gate_;
};

}  // namespace capd::agent::trigger
