// capctl's pcapng encoder without the I/O: WritePacket for each packet, Flush every 1024 packets
// (capctl flushes once per round of batches, which at full rate is about that often), into a
// ByteSink that only counts. Items are packets, bytes are frame bytes (the file grows by 32 more
// per packet: the Enhanced Packet Block header, padding and trailer).

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "capfile/capture_writer.h"

namespace {

using capd::Status;
using capd::capfile::ByteSink;

// Discards what it is given; keeps the byte count so the benchmark can report the file size.
class DiscardSink : public ByteSink {
 public:
  explicit DiscardSink(uint64_t* written) : written_(written) {}
  Status Write(std::string_view bytes) override {
    benchmark::DoNotOptimize(bytes.data());
    *written_ += bytes.size();
    return Status::Ok();
  }

 private:
  uint64_t* written_;  // owned by the benchmark, outlives the sink
};

constexpr int kPacketsPerFlush = 1024;

void BM_PcapngWrite(benchmark::State& state) {
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  uint64_t written = 0;
  auto writer =
      capd::capfile::MakePcapngWriter(std::make_unique<DiscardSink>(&written), "capd_micro");
  capd::capfile::InterfaceInfo info;
  info.name = "bench0";
  info.description = "capd micro-benchmark";
  if (!writer->AddInterface(info).ok()) {
    state.SkipWithError("AddInterface failed");
    return;
  }
  uint64_t ts = 1'700'000'000'000'000'000;
  const auto size = static_cast<uint32_t>(frame.size());
  for (auto _ : state) {
    for (int i = 0; i < kPacketsPerFlush; ++i) {
      if (!writer->WritePacket(0, ts, size, frame).ok()) {
        state.SkipWithError("WritePacket failed");
        return;
      }
      ts += 1000;
    }
    if (!writer->Flush().ok()) {
      state.SkipWithError("Flush failed");
      return;
    }
  }
  const auto packets = static_cast<int64_t>(state.iterations()) * kPacketsPerFlush;
  state.SetItemsProcessed(packets);
  state.SetBytesProcessed(packets * static_cast<int64_t>(frame.size()));
  state.counters["file_bytes_per_packet"] =
      packets > 0 ? static_cast<double>(written) / static_cast<double>(packets) : 0;
}
BENCHMARK(BM_PcapngWrite)->Arg(64)->Arg(512)->Arg(1500);

}  // namespace
