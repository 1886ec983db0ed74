#pragma once
// Small helpers for tests that drive third-party programs (sshd, socat, tshark): whether one is
// installed, and counting a log line's occurrences.

#include <cstddef>
#include <string>
#include <string_view>

namespace capd::test {

// True when `program` is found on PATH (`command -v`).
bool HaveProgram(const std::string& program);

// How many times `text` occurs in `haystack`.
size_t CountOccurrences(std::string_view haystack, std::string_view text);

}  // namespace capd::test
