#pragma once
// The path report as people read it (text) and as programs read it (JSON lines: one object per
// flow, its fields documented in the README's "capctl paths" section).

#include <string>

#include "paths/path_analyzer.h"

namespace capd::paths {

// The whole report: a summary, the clock estimates, then each flow (problems first) with its
// verdicts and a line per capture point.
std::string FormatText(const Report& report);

// The summary lines alone: flow and packet counts, capture points, clock estimates, the grace
// window, what was not analysed.
std::string FormatSummary(const Report& report);

// One JSON object (one line, with its newline) per flow.
std::string FormatJsonLine(const FlowReport& flow);

// The clock estimate in words: "clocks of A and B agree within 0.4 ms as far as packets show
// (B - A between -0.1 and 0.4 ms, 12 packets seen at both)".
std::string DescribeClock(const ClockEstimate& clock);

// "12:00:01.123456" (UTC, microseconds).
std::string FormatTime(uint64_t ts_ns);

}  // namespace capd::paths
