#pragma once
// A packet time (nanoseconds since the epoch, as capd.v1 carries them) as RFC 3339 UTC text with
// all nine digits of the fraction: "2026-12-07T15:30:00.123456789Z". For the lines people read
// (trigger matches, in capd's end message and capctl's status); pure, no locale, thread-safe.

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace capd {

inline std::string UtcNanosText(uint64_t timestamp_ns) {
  const time_t seconds = static_cast<time_t>(timestamp_ns / 1'000'000'000);
  struct tm tm {};
  gmtime_r(&seconds, &tm);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned long long>(timestamp_ns % 1'000'000'000));
  return text;
}

}  // namespace capd
