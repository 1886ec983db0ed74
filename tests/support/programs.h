#pragma once
// Small helpers for tests that drive third-party programs (sshd, socat, tshark): whether one is
// installed, and waiting for the n-th occurrence of a log line.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "tests/support/subprocess.h"

namespace capd::test {

// True when `program` is found on PATH (`command -v`).
bool HaveProgram(const std::string& program);

// How many times `text` occurs in `haystack`.
size_t CountOccurrences(std::string_view haystack, std::string_view text);

// Polls the process's stderr every 10 ms until `text` occurs at least `count` times. False on
// timeout, or as soon as the process has ended without it.
bool WaitForStderrCount(Subprocess& process, std::string_view text, size_t count,
                        std::chrono::milliseconds timeout);

}  // namespace capd::test
