// capctl's pcapng encoder without the I/O: WritePacket for each packet, Flush every 1024 packets
// (capctl flushes once per round of batches, which at full rate is about that often), into a
// ByteSink that only counts. Items are packets, bytes are frame bytes (the file grows by 32 more
// per packet: the Enhanced Packet Block header, padding and trailer).

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "capfile/capture_writer.h"
#include "capfile/stream_to_file.h"
#include "proto/capture.pb.h"

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

// capctl's whole path from a parsed batch to the file's bytes, as its merger takes it with one
// agent: StreamToFile::WriteUntil over a full batch from capd's BatchBuilder, in runs of at most
// 256 KiB of packet data (the merger's round), each run flushed to a sink that discards it.
void BM_BatchToPcapng(benchmark::State& state) {
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  capd::agent::BatchBuilder builder;
  builder.Start(std::make_unique<capd::v1::StreamResponse>());
  uint64_t ts = 1'700'000'000'000'000'000;
  const auto size = static_cast<uint32_t>(frame.size());
  while (!builder.full()) {
    builder.Append(0, ts, size, frame.data(), size);
    ts += 1000;
  }
  const std::unique_ptr<capd::v1::StreamResponse> message = builder.Finish();

  uint64_t written = 0;
  auto writer =
      capd::capfile::MakePcapngWriter(std::make_unique<DiscardSink>(&written), "capd_micro");
  capd::capfile::StreamToFile file(*writer);
  capd::v1::InterfaceDescription description;
  description.set_name("bench0");
  description.set_link_type(1);
  description.set_snaplen(262144);
  if (!file.AddInterface(0, description).ok()) {
    state.SkipWithError("AddInterface failed");
    return;
  }
  auto view = file.View(0, message->packets());
  if (!view.ok()) {
    state.SkipWithError("View failed");
    return;
  }
  capd::capfile::StreamToFile::RunLimits round;
  round.max_bytes = 256 * 1024;
  uint64_t packets = 0;
  for (auto _ : state) {
    capd::capfile::BatchCursor cursor;
    while (!view->AtEnd(cursor)) {
      if (!file.WriteUntil(0, *view, cursor, round, &packets).ok() || !writer->Flush().ok()) {
        state.SkipWithError("write failed");
        return;
      }
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(packets * frame.size()));
  state.counters["file_bytes_per_packet"] =
      packets > 0 ? static_cast<double>(written) / static_cast<double>(packets) : 0;
}
BENCHMARK(BM_BatchToPcapng)->Arg(64)->Arg(512)->Arg(1500);

}  // namespace
