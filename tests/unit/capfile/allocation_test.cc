// Checks the writers' promise that a warmed-up writer does not allocate per packet. Global
// operator new is replaced in this test binary only to count calls; it still allocates.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "capfile/capture_writer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace capd::capfile {
namespace {

using testing::Pattern;
using testing::RecordingSink;

// One batch of 1000 packets of mixed sizes (~0.7 MB of blocks, under the reserved buffer).
long AllocationsForOneBatch(CaptureWriter& writer, const std::vector<std::vector<uint8_t>>& data) {
  const long before = g_allocations.load();
  for (size_t i = 0; i < 1000; ++i) {
    const std::vector<uint8_t>& d = data[i % data.size()];
    const Status status = writer.WritePacket(0, 1700000000123456789ULL + i, 1514, d);
    if (!status.ok()) ADD_FAILURE() << status.message();
  }
  return g_allocations.load() - before;
}

void ExpectNoAllocationPerPacket(std::unique_ptr<CaptureWriter> writer) {
  InterfaceInfo info;
  info.name = "eth0";
  CAPD_ASSERT_OK(writer->AddInterface(info));
  const std::vector<std::vector<uint8_t>> data = {Pattern(60, 1), Pattern(1514, 2), Pattern(61, 3),
                                                  Pattern(576, 4)};
  AllocationsForOneBatch(*writer, data);  // warm up
  CAPD_ASSERT_OK(writer->Flush());
  EXPECT_EQ(AllocationsForOneBatch(*writer, data), 0);
  // The recording sink copies the flushed bytes: proof that the counter sees allocations.
  const long before_flush = g_allocations.load();
  CAPD_ASSERT_OK(writer->Flush());
  EXPECT_GT(g_allocations.load(), before_flush);
}

TEST(AllocationTest, PcapngWriterDoesNotAllocatePerPacket) {
  std::vector<std::string> writes;
  ExpectNoAllocationPerPacket(
      MakePcapngWriter(std::make_unique<RecordingSink>(&writes), "capctl test"));
}

TEST(AllocationTest, PcapWriterDoesNotAllocatePerPacket) {
  std::vector<std::string> writes;
  ExpectNoAllocationPerPacket(MakePcapWriter(std::make_unique<RecordingSink>(&writes)));
}

}  // namespace
}  // namespace capd::capfile
