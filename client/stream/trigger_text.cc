#include "client/stream/trigger_text.h"

#include <cstdio>

#include "common/utc_text.h"

namespace capd::client {
namespace {

std::string Megabytes(uint64_t bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%.2f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

std::string Count(uint64_t n) { return std::to_string(n); }

std::string DroppedText(const v1::TriggerStatus& s) {
  if (s.dropped_packets() == 0) return "";
  return "; " + Count(s.dropped_packets()) + " packets (" + Megabytes(s.dropped_bytes()) +
         ") of history were dropped by the agent's " + Megabytes(s.history_limit_bytes()) +
         " bound";
}

}  // namespace

std::string TriggerWaitingText(const v1::TriggerStatus& s) {
  return "waiting for --start-on: " + Count(s.held_packets()) + " packets (" +
         Megabytes(s.held_bytes()) + ") of history held, " + Count(s.dropped_packets()) +
         " dropped";
}

std::string TriggerMatchedText(const v1::TriggerStatus& s) {
  return "start-on matched at " + UtcNanosText(s.start_matched_ns()) + "; " +
         Count(s.history_sent()) + " packets of history sent" + DroppedText(s);
}

std::string TriggerSummaryText(const v1::TriggerStatus& s, bool start_on) {
  if (s.start_matched_ns() != 0) return TriggerMatchedText(s);
  if (!start_on) return "";
  return "start-on never matched (" + Count(s.held_packets()) +
         " packets of history were held at the end" + DroppedText(s) + ")";
}

}  // namespace capd::client
