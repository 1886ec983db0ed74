#include "agent/keylog/keylog_lines.h"

#include <algorithm>
#include <array>

namespace capd::agent::keylog {
namespace {

constexpr std::array<std::string_view, 9> kLabels = {
    "CLIENT_RANDOM",
    "CLIENT_EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
    "RSA",
};

bool IsHex(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

}  // namespace

bool IsKeyLogLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxLineBytes) return false;
  const size_t first_space = line.find(' ');
  if (first_space == std::string_view::npos) return false;
  const size_t second_space = line.find(' ', first_space + 1);
  if (second_space == std::string_view::npos) return false;
  const std::string_view label = line.substr(0, first_space);
  const std::string_view first = line.substr(first_space + 1, second_space - first_space - 1);
  const std::string_view second = line.substr(second_space + 1);
  if (std::find(kLabels.begin(), kLabels.end(), label) == kLabels.end()) return false;
  const size_t first_digits = label == "RSA" ? 16 : 64;
  if (first.size() != first_digits || !IsHex(first)) return false;
  if (second.size() < 32 || second.size() > 256 || second.size() % 2 != 0) return false;
  return IsHex(second);
}

size_t AppendKeyLogLines(std::string_view text, std::string& out) {
  size_t dropped = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) break;  // not a complete line: the caller keeps it
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;  // blank lines are not worth counting
    if (IsKeyLogLine(line)) {
      out.append(line);
      out.push_back('\n');
    } else {
      ++dropped;
    }
  }
  return dropped;
}

}  // namespace capd::agent::keylog
