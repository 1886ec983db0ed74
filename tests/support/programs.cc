#include "tests/support/programs.h"

#include "tests/support/subprocess.h"

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

}  // namespace capd::test
