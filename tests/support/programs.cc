#include "tests/support/programs.h"

#include <thread>

namespace capd::test {

bool HaveProgram(const std::string& program) {
  return RunCommand({"sh", "-c", "command -v '" + program + "'"}).status.Exited(0);
}

size_t CountOccurrences(std::string_view haystack, std::string_view text) {
  size_t count = 0;
  for (size_t at = haystack.find(text); at != std::string_view::npos;
       at = haystack.find(text, at + text.size())) {
    ++count;
  }
  return count;
}

bool WaitForStderrCount(Subprocess& process, std::string_view text, size_t count,
                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (CountOccurrences(process.Stderr(), text) >= count) return true;
    if (!process.Running()) return CountOccurrences(process.Stderr(), text) >= count;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace capd::test
