// Issue 8 asks to measure a single packed bytes field against repeated messages. BM_BatchEncode
// and BM_BatchDecode (batch_bench.cc) measure capd's layout; these measure the same batches as
// `repeated PacketRecord` (layouts.proto), built three ways:
//   - Reused: one RecordBatch kept across batches; Clear() keeps the PacketRecord objects and
//     their strings for the next batch (protobuf's RepeatedPtrField recycling), as capd recycles
//     its messages;
//   - Fresh: a new RecordBatch per batch, so one allocation per packet and one per packet's bytes;
//   - Arena: a new RecordBatch per batch on a protobuf Arena (one arena per batch, reset after).
// One iteration is one batch of as many packets as BatchBuilder takes (kMaxPackets or kMaxBytes),
// serialized with SerializeToString as gRPC does per message. Decode parses into a reused message
// and walks the packets like capctl. Items are packets.

#include <benchmark/benchmark.h>
#include <google/protobuf/arena.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "layouts.pb.h"  // generated into this build directory

namespace {

using capd::agent::BatchBuilder;
using capd::bench::PacketRecord;
using capd::bench::RecordBatch;

constexpr uint64_t kStartNs = 1'700'000'000'000'000'000;

// The packet count of a full BatchBuilder batch of `frame_bytes` frames.
size_t PacketsPerBatch(size_t frame_bytes) {
  return std::min(BatchBuilder::kMaxPackets,
                  (BatchBuilder::kMaxBytes + frame_bytes - 1) / frame_bytes);
}

void Fill(RecordBatch& batch, const std::string& frame, size_t packets) {
  uint64_t ts = kStartNs;
  for (size_t i = 0; i < packets; ++i) {
    PacketRecord* record = batch.add_packets();
    record->set_interface_index(0);
    record->set_timestamp_ns(ts);
    record->set_original_length(static_cast<uint32_t>(frame.size()));
    record->set_data(frame);
    ts += 1000;
  }
}

enum class Allocation { kReused, kFresh, kArena };

void BM_RepeatedEncode(benchmark::State& state, Allocation allocation) {
  const std::string frame(static_cast<size_t>(state.range(0)), '\x5a');
  const size_t per_batch = PacketsPerBatch(frame.size());
  RecordBatch reused;
  std::string wire;
  size_t packets = 0;
  for (auto _ : state) {
    switch (allocation) {
      case Allocation::kReused:
        reused.Clear();
        Fill(reused, frame, per_batch);
        reused.SerializeToString(&wire);
        break;
      case Allocation::kFresh: {
        RecordBatch fresh;
        Fill(fresh, frame, per_batch);
        fresh.SerializeToString(&wire);
        break;
      }
      case Allocation::kArena: {
        google::protobuf::Arena arena;
        auto* batch = google::protobuf::Arena::CreateMessage<RecordBatch>(&arena);
        Fill(*batch, frame, per_batch);
        batch->SerializeToString(&wire);
        break;
      }
    }
    benchmark::DoNotOptimize(wire.data());
    packets += per_batch;
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(packets * frame.size()));
  state.counters["batch_packets"] = static_cast<double>(per_batch);
  state.counters["wire_bytes"] = static_cast<double>(wire.size());
}
BENCHMARK_CAPTURE(BM_RepeatedEncode, reused, Allocation::kReused)->Arg(64)->Arg(512)->Arg(1500);
BENCHMARK_CAPTURE(BM_RepeatedEncode, fresh, Allocation::kFresh)->Arg(64)->Arg(512)->Arg(1500);
BENCHMARK_CAPTURE(BM_RepeatedEncode, arena, Allocation::kArena)->Arg(64)->Arg(512)->Arg(1500);

void BM_RepeatedDecode(benchmark::State& state) {
  const std::string frame(static_cast<size_t>(state.range(0)), '\x5a');
  RecordBatch source;
  Fill(source, frame, PacketsPerBatch(frame.size()));
  std::string wire;
  source.SerializeToString(&wire);
  RecordBatch message;
  size_t packets = 0;
  for (auto _ : state) {
    if (!message.ParseFromString(wire)) {
      state.SkipWithError("ParseFromString failed");
      break;
    }
    uint64_t sum = 0;
    for (const PacketRecord& record : message.packets()) {
      sum += record.interface_index() + record.timestamp_ns() + record.original_length();
      sum += static_cast<uint8_t>(record.data()[0]);  // touch the bytes, as the writer copies them
    }
    benchmark::DoNotOptimize(sum);
    packets += static_cast<size_t>(message.packets_size());
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(packets * frame.size()));
}
BENCHMARK(BM_RepeatedDecode)->Arg(64)->Arg(512)->Arg(1500);

}  // namespace
