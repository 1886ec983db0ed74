#pragma once
// The trigger fields of a request: StreamRequest (capctl stream, serve, the extcap) and
// StartRecordingRequest (capctl record start) name them alike (start_on, before_ms, stop_on,
// after_ms, after_count), as do StreamOptions and RecordOptions. The window of a trigger that
// is not given stays unset, so an agent sees only the fields of the triggers asked for.

namespace capd::client {

template <typename Options, typename Request>
void SetTriggerFields(const Options& options, Request& request) {
  if (!options.start_on.empty()) {
    request.set_start_on(options.start_on);
    request.set_before_ms(options.before_ms);
  }
  if (!options.stop_on.empty()) {
    request.set_stop_on(options.stop_on);
    request.set_after_ms(options.after_ms);
    request.set_after_count(options.after_count);
  }
}

}  // namespace capd::client
