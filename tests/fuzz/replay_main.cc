// Replays a fuzz target's inputs without libFuzzer: every file named on the command line, and
// every file inside each directory named there, goes once through LLVMFuzzerTestOneInput. Built
// with the project's compiler and sanitizers, so that the regression inputs and the seed corpora
// run in every ctest (and under AddressSanitizer in CI), not only when someone fuzzes with Clang.
//
// A target reports a broken property by aborting: the input being replayed is printed before it
// runs, so the failing file is the last one named in the test's output. Exit status: 0 when every
// input ran, 1 when an input could not be read or none were found (a replay of nothing proves
// nothing).

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::filesystem::path> InputsIn(const std::filesystem::path& path,
                                            std::error_code& error) {
  std::vector<std::filesystem::path> inputs;
  if (!std::filesystem::is_directory(path, error)) {
    if (!error) inputs.push_back(path);
    return inputs;
  }
  for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
    if (entry.is_regular_file()) inputs.push_back(entry.path());
  }
  std::sort(inputs.begin(), inputs.end());  // the same order on every run
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s INPUT_OR_DIRECTORY...\n", argv[0]);
    return 1;
  }
  size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    std::error_code error;
    const std::vector<std::filesystem::path> inputs = InputsIn(argv[i], error);
    if (error) {
      std::fprintf(stderr, "%s: %s\n", argv[i], error.message().c_str());
      return 1;
    }
    for (const auto& input : inputs) {
      std::ifstream in(input, std::ios::binary);
      const std::vector<char> bytes{std::istreambuf_iterator<char>(in),
                                    std::istreambuf_iterator<char>()};
      if (in.bad()) {
        std::fprintf(stderr, "%s: cannot be read\n", input.c_str());
        return 1;
      }
      std::fprintf(stderr, "replaying %s (%zu bytes)\n", input.c_str(), bytes.size());
      // A copy of exactly the input's size, as libFuzzer passes it, so that AddressSanitizer
      // catches a read one byte past the end.
      std::vector<uint8_t> exact(bytes.begin(), bytes.end());
      LLVMFuzzerTestOneInput(exact.empty() ? nullptr : exact.data(), exact.size());
      ++replayed;
    }
  }
  if (replayed == 0) {
    std::fprintf(stderr, "no inputs found: a replay of nothing proves nothing\n");
    return 1;
  }
  std::printf("replayed %zu inputs\n", replayed);
  return 0;
}
