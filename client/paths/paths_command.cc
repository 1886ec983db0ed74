#include "client/paths/paths_command.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "paths/capture_reader.h"
#include "paths/path_analyzer.h"
#include "paths/report_format.h"

namespace capd::client {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

int RunPathsCommand(const PathsOptions& options) {
  std::unique_ptr<std::FILE, FileCloser> owned;
  std::FILE* input = stdin;
  if (options.input != "-") {
    owned.reset(std::fopen(options.input.c_str(), "rb"));
    if (!owned) {
      std::fprintf(stderr, "capctl: %s: %s\n", options.input.c_str(), std::strerror(errno));
      return 1;
    }
    input = owned.get();
  }
  paths::Options analysis;
  analysis.max_flows = options.max_flows;
  analysis.grace_ns = static_cast<uint64_t>(std::llround(options.grace_seconds * 1e9));
  paths::PathAnalyzer analyzer(analysis);
  // A pcap file has one unnamed interface: it is named after the file.
  paths::CaptureReader reader(input, options.input == "-" ? "stdin" : options.input);
  std::vector<uint32_t> point_of_interface;
  paths::CapturedFrame frame;
  paths::CaptureReader::Result result;
  while ((result = reader.Next(frame)) == paths::CaptureReader::Result::kPacket) {
    const auto& interfaces = reader.interfaces();
    while (point_of_interface.size() < interfaces.size()) {
      point_of_interface.push_back(
          analyzer.DeclarePoint(interfaces[point_of_interface.size()].name));
    }
    analyzer.Add(point_of_interface[frame.interface], interfaces[frame.interface].link_type,
                 frame.ts_ns, frame.data);
  }
  // Interfaces declared after the last packet are capture points too.
  for (const auto& interface : reader.interfaces()) analyzer.DeclarePoint(interface.name);
  const std::string name = options.input == "-" ? "stdin" : options.input;
  int code = 0;
  if (result == paths::CaptureReader::Result::kError) {
    std::fprintf(stderr, "capctl: %s: %s\n", name.c_str(), reader.error().c_str());
    code = 1;
    if (reader.interfaces().empty()) return code;
  } else if (reader.truncated()) {
    std::fprintf(stderr, "capctl: %s: the last block is cut short (ignored)\n", name.c_str());
  }
  const paths::Report report = analyzer.Finish();
  if (options.json) {
    for (const paths::FlowReport& flow : report.flows) {
      const std::string line = paths::FormatJsonLine(flow);
      std::fwrite(line.data(), 1, line.size(), stdout);
    }
    // The summary on stderr: stdout holds only the flows' JSON lines.
    const std::string text = paths::FormatSummary(report);
    std::fprintf(stderr, "%s", text.c_str());
  } else {
    const std::string text = paths::FormatText(report);
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  if (std::fflush(stdout) != 0 && code == 0) code = 1;
  return code;
}

}  // namespace capd::client
