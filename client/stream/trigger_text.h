#pragma once
// What capctl says about a stream's triggers (--start-on, --stop-on), from the agent's
// Statistics.trigger: the status line while it waits, the line when the start trigger matched,
// and the summary's line. Pure text, no I/O.

#include <string>

#include "proto/capture.pb.h"

namespace capd::client {

// "waiting for --start-on: 1234 packets (1.20 MB) of history held, 0 dropped"
std::string TriggerWaitingText(const v1::TriggerStatus& status);
// "start-on matched at 2026-...Z; 120 packets of history sent" and, when the bound dropped
// some, "; 3000 packets (4.50 MB) of history were dropped by the agent's 32.00 MB bound"
std::string TriggerMatchedText(const v1::TriggerStatus& status);
// For the summary: TriggerMatchedText once matched, else "start-on never matched" with the
// history's drops; empty for a stream with no start trigger (waiting never seen).
std::string TriggerSummaryText(const v1::TriggerStatus& status, bool start_on);

}  // namespace capd::client
