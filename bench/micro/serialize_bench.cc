// capd's side of a batch as gRPC gets it: BatchBuilder fills a recycled message, then the
// message becomes a gRPC ByteBuffer, either by gRPC's own protobuf serializer (a copy of every
// packet byte into gRPC's buffer: what capd did before) or by SerializeForWrite (the blob becomes
// a slice of its own and returns to the stream's pool once the buffer lets go: what
// StreamReactor does). One iteration is one full batch, as in batch_bench.cc.

#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "agent/service/stream_serializer.h"
#include "agent/stream/batch_builder.h"

namespace {

using capd::agent::BatchBuilder;
using capd::agent::BlobPool;
using capd::v1::StreamResponse;

size_t Fill(BatchBuilder& builder, const std::vector<uint8_t>& frame) {
  uint64_t ts = 1'700'000'000'000'000'000;
  const auto size = static_cast<uint32_t>(frame.size());
  while (!builder.full()) builder.Append(0, ts++, size, frame.data(), size);
  return builder.packet_count();
}

// range(0): frame size; range(1): 0 = gRPC's serializer, 1 = SerializeForWrite.
void BM_BatchToGrpcBuffer(benchmark::State& state) {
  grpc::internal::GrpcLibrary library;
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  const bool slice = state.range(1) == 1;
  auto pool = std::make_shared<BlobPool>();
  BatchBuilder builder;
  auto message = std::make_unique<StreamResponse>();
  size_t packets = 0;
  for (auto _ : state) {
    builder.Start(std::move(message));
    packets += Fill(builder, frame);
    message = builder.Finish();
    grpc::ByteBuffer buffer;
    if (slice) {
      capd::agent::SerializeForWrite(*message, pool, buffer);
    } else {
      bool own = false;
      (void)grpc::SerializationTraits<StreamResponse>::Serialize(*message, &buffer, &own);
    }
    benchmark::DoNotOptimize(buffer.Length());
    buffer.Clear();                                                      // gRPC has sent it
    if (slice) pool->Take(*message->mutable_packets()->mutable_data());  // NewMessage
  }
  state.SetItemsProcessed(static_cast<int64_t>(packets));
  state.SetBytesProcessed(static_cast<int64_t>(packets * frame.size()));
}
BENCHMARK(BM_BatchToGrpcBuffer)
    ->ArgNames({"size", "slice"})
    ->ArgsProduct({{64, 512, 1500}, {0, 1}});

}  // namespace
