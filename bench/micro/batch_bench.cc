// The batch codec on both ends of the stream. capd appends the packets it reads from the ring to
// a PacketBatch (BatchBuilder) until the batch is full, then gRPC serializes the StreamResponse;
// capctl parses it and walks the packets (Merger::WriteRun, client/stream/merger.cc). These
// benchmarks do exactly that without gRPC, so their cost can be told apart from the transport's.
//
// One iteration is one full batch: as many packets of the given frame size as BatchBuilder takes
// before full() (kMaxPackets or kMaxBytes, whichever comes first; the batch_packets counter says
// how many). Items are packets, bytes are frame bytes.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "proto/capture.pb.h"

namespace {

using capd::agent::BatchBuilder;
using capd::v1::StreamResponse;

constexpr uint64_t kStartNs = 1'700'000'000'000'000'000;

// Fills `builder` (already started) the way capd's capture loop does; returns the packet count.
size_t FillBatch(BatchBuilder& builder, const std::vector<uint8_t>& frame) {
  uint64_t ts = kStartNs;
  const auto size = static_cast<uint32_t>(frame.size());
  while (!builder.full()) {
    builder.Append(0, ts, size, frame.data(), size);
    ts += 1000;
  }
  return builder.packet_count();
}

// capd's side: Start (a recycled message, as the stream reactor hands back), Append until full,
// Finish, SerializeToString (what gRPC's protobuf serializer does for each message written).
void BM_BatchEncode(benchmark::State& state) {
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  BatchBuilder builder;
  auto message = std::make_unique<StreamResponse>();
  std::string wire;
  size_t packets = 0;
  for (auto _ : state) {
    builder.Start(std::move(message));
    packets += FillBatch(builder, frame);
    message = builder.Finish();
    message->SerializeToString(&wire);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(packets * frame.size()));
  state.counters["batch_packets"] = static_cast<double>(packets) / state.iterations();
  state.counters["wire_bytes"] = static_cast<double>(wire.size());
}
BENCHMARK(BM_BatchEncode)->Arg(64)->Arg(512)->Arg(1500);

// capctl's side: ParseFromString into a reused message, then the per-packet walk of WriteRun
// (bounds check against the blob, interface index, timestamp, lengths, the packet's bytes).
void BM_BatchDecode(benchmark::State& state) {
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  BatchBuilder builder;
  builder.Start(std::make_unique<StreamResponse>());
  FillBatch(builder, frame);
  std::string wire;
  builder.Finish()->SerializeToString(&wire);

  StreamResponse message;
  size_t packets = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    if (!message.ParseFromString(wire) || !message.has_packets()) {
      state.SkipWithError("ParseFromString failed");
      break;
    }
    const capd::v1::PacketBatch& batch = message.packets();
    const int n = batch.timestamp_ns_size();
    const auto* data = reinterpret_cast<const uint8_t*>(batch.data().data());
    const size_t data_size = batch.data().size();
    size_t offset = 0;
    uint64_t sum = 0;
    for (int i = 0; i < n; ++i) {
      const uint32_t caplen = batch.captured_length(i);
      if (caplen > data_size - offset) {
        state.SkipWithError("malformed batch");
        break;
      }
      sum += batch.interface_index(i) + batch.timestamp_ns(i) + batch.original_length(i);
      sum += data[offset];  // the writer copies the bytes; touch them so they are not skipped
      offset += caplen;
    }
    benchmark::DoNotOptimize(sum);
    packets += static_cast<size_t>(n);
    bytes += offset;
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_BatchDecode)->Arg(64)->Arg(512)->Arg(1500);

}  // namespace
