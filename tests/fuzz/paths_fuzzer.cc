// libFuzzer target for capctl paths: the input is a whole capture file (pcapng or pcap) read as a
// stream by paths::CaptureReader, each packet fed to paths::PathAnalyzer, then the report built
// and formatted as text and JSON lines.
// Invariants checked on top of "no crash, no sanitizer report": every packet lies inside the
// input, the report counts exactly the packets read, and every flow names every capture point.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "paths/capture_reader.h"
#include "paths/path_analyzer.h"
#include "paths/report_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> copy(data, data + size);
  std::FILE* file = fmemopen(copy.data(), copy.size(), "rb");
  if (file == nullptr) return 0;
  capd::paths::Options options;
  options.max_flows = 64;  // small, so that inputs reach the cap
  options.max_signatures = 256;
  capd::paths::PathAnalyzer analyzer(options);
  capd::paths::CaptureReader reader(file, "fuzz.pcap");
  capd::paths::CapturedFrame frame;
  std::vector<uint32_t> points;
  uint64_t packets = 0;
  while (reader.Next(frame) == capd::paths::CaptureReader::Result::kPacket) {
    const auto& interfaces = reader.interfaces();
    if (frame.interface >= interfaces.size()) std::abort();
    if (frame.data.size() > size) std::abort();
    while (points.size() < interfaces.size()) {
      points.push_back(analyzer.DeclarePoint(interfaces[points.size()].name));
    }
    analyzer.Add(points[frame.interface], interfaces[frame.interface].link_type, frame.ts_ns,
                 frame.data);
    ++packets;
  }
  std::fclose(file);
  const capd::paths::Report report = analyzer.Finish();
  if (report.packets != packets) std::abort();
  (void)capd::paths::FormatText(report);
  for (const capd::paths::FlowReport& flow : report.flows) {
    if (flow.points.size() != report.points.size()) std::abort();
    (void)capd::paths::FormatJsonLine(flow);
  }
  return 0;
}
