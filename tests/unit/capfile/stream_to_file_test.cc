// From the capd.v1 stream to a pcapng file (capfile/stream_to_file.h): messages built by hand as
// the agent sends them, written through a real pcapng writer to a temp file, read back with the
// tests' pcapng reader (tests/support/pcapng_file.h, written from the specification).

#include "capfile/stream_to_file.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/pcapng_file.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::capfile {
namespace {

using testing::TempDir;

constexpr uint16_t kIsbIfRecv = 4;
constexpr uint16_t kIsbIfDrop = 5;
constexpr uint16_t kIsbOsDrop = 7;
constexpr uint16_t kIsbUsrDeliv = 8;

v1::InterfaceDescription Description(uint32_t index, const std::string& name,
                                     uint64_t start_ns = 1'700'000'000'000'000'000ULL) {
  v1::InterfaceDescription d;
  d.set_index(index);
  d.set_name(name);
  d.set_description("test interface " + name);
  d.set_filter("udp");
  d.set_link_type(1);
  d.set_snaplen(65535);
  d.set_capture_start_ns(start_ns);
  return d;
}

// Appends one packet of `size` bytes (each byte `fill`) to the batch, with an optional comment.
void AddPacket(v1::PacketBatch& b, uint32_t interface, uint64_t ts, size_t size, char fill,
               const std::string& comment = "") {
  if (!comment.empty()) {
    b.add_comment_packet(static_cast<uint32_t>(b.timestamp_ns_size()));
    b.add_comment(comment);
  }
  b.add_interface_index(interface);
  b.add_timestamp_ns(ts);
  b.add_original_length(static_cast<uint32_t>(size) + 10);
  b.add_captured_length(static_cast<uint32_t>(size));
  b.mutable_data()->append(size, fill);
}

// A pcapng file in a temp folder, written through the adapter and read back.
class File {
 public:
  File() {
    auto sink = FdSink::OpenFile(path());
    EXPECT_TRUE(sink.ok()) << sink.status().message();
    writer_ = MakePcapngWriter(std::move(sink).value(), "stream_to_file test");
    to_file_ = std::make_unique<StreamToFile>(*writer_);
  }
  StreamToFile& to_file() { return *to_file_; }
  test::PcapngFile Read() {
    EXPECT_TRUE(writer_->Close().ok());
    auto file = test::ReadPcapng(path());
    EXPECT_TRUE(file.ok()) << file.status().message();
    return file.ok() ? std::move(file).value() : test::PcapngFile{};
  }

 private:
  std::string path() const { return dir_.File("out.pcapng"); }
  TempDir dir_;
  std::unique_ptr<CaptureWriter> writer_;
  std::unique_ptr<StreamToFile> to_file_;
};

TEST(StreamToFileTest, ABatchBecomesPacketsWithTheirCommentsOnTheirInterfaces) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(3, "eth0")).ok());
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(7, "eth1")).ok());
  v1::PacketBatch b;
  AddPacket(b, 3, 1000, 60, 'a');
  AddPacket(b, 7, 2000, 70, 'b', "geneve: flow cookie 42");
  AddPacket(b, 3, 3000, 80, 'c');
  AddPacket(b, 3, 4000, 90, 'd', "second comment");
  CAPD_ASSERT_OK(file.to_file().WriteBatch(0, b));

  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.interfaces.size(), 2u);
  EXPECT_EQ(read.interfaces[0].name, "eth0");
  EXPECT_EQ(read.interfaces[1].name, "eth1");
  EXPECT_EQ(read.interfaces[1].description, "test interface eth1");
  EXPECT_EQ(read.interfaces[0].filter, "udp");
  ASSERT_EQ(read.packets.size(), 4u);
  const std::vector<uint32_t> ids = {0, 1, 0, 0};
  const std::vector<std::string> data = {std::string(60, 'a'), std::string(70, 'b'),
                                         std::string(80, 'c'), std::string(90, 'd')};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(read.packets[i].interface_id, ids[i]) << i;
    EXPECT_EQ(read.packets[i].ts_ns, 1000 * (i + 1)) << i;
    EXPECT_EQ(read.packets[i].bytes, data[i]) << i;
    EXPECT_EQ(read.packets[i].len, data[i].size() + 10) << i;
  }
  EXPECT_TRUE(read.packets[0].comments.empty());
  EXPECT_EQ(read.packets[1].comments, std::vector<std::string>{"geneve: flow cookie 42"});
  EXPECT_TRUE(read.packets[2].comments.empty());
  EXPECT_EQ(read.packets[3].comments, std::vector<std::string>{"second comment"});
}

TEST(StreamToFileTest, ASecondCommentForOnePacketIsPassedOverAndLaterCommentsStay) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(0, "eth0")).ok());
  v1::PacketBatch b;
  AddPacket(b, 0, 1000, 60, 'a', "first");
  b.add_comment_packet(0);
  b.add_comment("also first");
  AddPacket(b, 0, 2000, 60, 'b', "second");
  CAPD_ASSERT_OK(file.to_file().WriteBatch(0, b));
  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.packets.size(), 2u);
  EXPECT_EQ(read.packets[0].comments, std::vector<std::string>{"first"});
  EXPECT_EQ(read.packets[1].comments, std::vector<std::string>{"second"});
}

TEST(StreamToFileTest, MalformedBatchesAreRefusedBeforeAnythingIsWritten) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(0, "eth0")).ok());
  v1::PacketBatch good;
  AddPacket(good, 0, 1000, 60, 'a');
  AddPacket(good, 0, 2000, 60, 'b', "c");

  std::vector<std::pair<std::string, v1::PacketBatch>> bad;
  {
    v1::PacketBatch b = good;
    b.add_timestamp_ns(3000);  // one array longer than the others
    bad.emplace_back("array lengths differ", b);
  }
  {
    v1::PacketBatch b = good;
    b.mutable_data()->resize(100);  // 120 bytes of packets announced
    bad.emplace_back("data too short", b);
  }
  {
    v1::PacketBatch b = good;
    b.set_comment_packet(0, 2);  // past the last packet
    bad.emplace_back("comment positions out of order", b);
  }
  {
    v1::PacketBatch b = good;
    b.add_comment_packet(0);  // before the one already there
    b.add_comment("x");
    bad.emplace_back("comment positions out of order", b);
  }
  {
    v1::PacketBatch b = good;
    b.set_captured_length(0, 61);
    b.set_original_length(0, 61 - 1);
    b.mutable_data()->append(1, 'a');
    bad.emplace_back("captured length over original length", b);
  }
  {
    v1::PacketBatch b = good;
    b.set_captured_length(1, 0xffffffffu);  // an offset far past the blob
    b.set_original_length(1, 0xffffffffu);
    bad.emplace_back("data too short", b);
  }
  {
    v1::PacketBatch b = good;
    b.set_interface_index(1, 9);  // never described
    bad.emplace_back("undeclared interface", b);
  }
  for (const auto& [why, batch] : bad) {
    const Status status = file.to_file().WriteBatch(0, batch);
    EXPECT_EQ(status.code(), StatusCode::kInternal) << why;
    EXPECT_NE(status.message().find(why), std::string::npos) << status.message();
  }
  CAPD_ASSERT_OK(file.to_file().WriteBatch(0, good));
  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.packets.size(), 2u);  // only the good batch's
  EXPECT_EQ(read.packets[1].comments, std::vector<std::string>{"c"});
}

TEST(StreamToFileTest, TwoFeedsWithTheSameInterfaceNamesGetDistinctInterfaces) {
  File file;
  auto a = file.to_file().AddInterface(0, Description(0, "eth0"), "agent-a:eth0");
  auto b = file.to_file().AddInterface(1, Description(0, "eth0"), "agent-b:eth0");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.value(), 0u);
  EXPECT_EQ(b.value(), 1u);
  v1::PacketBatch from_a, from_b;
  AddPacket(from_a, 0, 1000, 60, 'a');
  AddPacket(from_b, 0, 2000, 60, 'b');
  CAPD_ASSERT_OK(file.to_file().WriteBatch(1, from_b));
  CAPD_ASSERT_OK(file.to_file().WriteBatch(0, from_a));
  // Feed 1 never described index 5; feed 0's description does not count for it.
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(5, "eth5")).ok());
  v1::PacketBatch stray;
  AddPacket(stray, 5, 3000, 60, 'x');
  EXPECT_FALSE(file.to_file().WriteBatch(1, stray).ok());

  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.interfaces.size(), 3u);
  EXPECT_EQ(read.interfaces[0].name, "agent-a:eth0");
  EXPECT_EQ(read.interfaces[1].name, "agent-b:eth0");
  ASSERT_EQ(read.packets.size(), 2u);
  EXPECT_EQ(read.packets[0].interface_id, 1u);
  EXPECT_EQ(read.packets[0].bytes, std::string(60, 'b'));
  EXPECT_EQ(read.packets[1].interface_id, 0u);
}

TEST(StreamToFileTest, ABatchIsWrittenInRunsUpToATimestamp) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(0, "eth0")).ok());
  v1::PacketBatch b;
  for (int i = 0; i < 6; ++i) {
    AddPacket(b, 0, 1000 * (i + 1), 50 + i, static_cast<char>('a' + i), i == 4 ? "fifth" : "");
  }
  auto view = file.to_file().View(0, b);
  ASSERT_TRUE(view.ok()) << view.status().message();
  BatchCursor cursor;
  uint64_t packets = 0;
  size_t bytes = 0;
  StreamToFile::RunLimits limits;
  limits.until_ns = 2500;
  CAPD_ASSERT_OK(file.to_file().WriteUntil(0, *view, cursor, limits, &packets, &bytes));
  EXPECT_EQ(packets, 2u);
  EXPECT_EQ(bytes, 50u + 51u);
  // The first packet goes even when it is later than until_ns (it is the oldest there is).
  limits.until_ns = 0;
  CAPD_ASSERT_OK(file.to_file().WriteUntil(0, *view, cursor, limits, &packets));
  EXPECT_EQ(packets, 3u);
  limits.until_ns = UINT64_MAX;
  limits.max_packets = 2;
  CAPD_ASSERT_OK(file.to_file().WriteUntil(0, *view, cursor, limits, &packets));
  EXPECT_EQ(packets, 5u);
  CAPD_ASSERT_OK(file.to_file().WriteUntil(0, *view, cursor, {}, &packets));
  EXPECT_EQ(packets, 6u);
  EXPECT_TRUE(view->AtEnd(cursor));

  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.packets.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(read.packets[i].ts_ns, 1000 * (i + 1));
    EXPECT_EQ(read.packets[i].bytes, std::string(50 + i, static_cast<char>('a' + i)));
    EXPECT_EQ(read.packets[i].comments.size(), i == 4 ? 1u : 0u) << i;
  }
}

TEST(StreamToFileTest, StatisticsBecomeInterfaceStatisticsBlocks) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(0, "eth0")).ok());
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(1, "eth1")).ok());
  ASSERT_TRUE(file.to_file().AddInterface(1, Description(0, "eth0"), "b:eth0").ok());
  v1::PacketBatch b;
  AddPacket(b, 0, 1000, 60, 'a');
  AddPacket(b, 0, 2000, 60, 'a');
  AddPacket(b, 1, 3000, 60, 'a');
  CAPD_ASSERT_OK(file.to_file().WriteBatch(0, b));

  v1::Statistics s;
  s.set_timestamp_ns(1'700'000'001'000'000'000ULL);
  v1::InterfaceStatistics* eth0 = s.add_interfaces();
  eth0->set_interface_index(0);
  eth0->set_packets_received(100);
  eth0->set_interface_drops(2);
  eth0->set_kernel_drops(3);
  eth0->set_agent_drops(4);
  (*eth0->mutable_decap_outcomes())["malformed"] = 2;
  (*eth0->mutable_decap_outcomes())["decapsulated"] = 120;
  v1::InterfaceStatistics* eth1 = s.add_interfaces();
  eth1->set_interface_index(1);
  eth1->set_packets_received(7);
  file.to_file().KeepStatistics(0, s);
  // What capctl writes when one of several agents ends.
  CAPD_ASSERT_OK(file.to_file().WriteFinalStatistics(0, "ended: duration reached"));

  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.statistics.size(), 2u);  // feed 1's interface is not ended
  const test::PcapngStatistics& first = read.statistics[0];
  EXPECT_EQ(first.interface_id, 0u);
  EXPECT_EQ(first.counters.at(kIsbIfRecv), 100u);
  EXPECT_EQ(first.counters.at(kIsbIfDrop), 2u);
  EXPECT_EQ(first.counters.at(kIsbOsDrop), 3u);
  EXPECT_EQ(first.counters.at(kIsbUsrDeliv), 2u);
  std::string comments;
  for (const std::string& c : first.comments) comments += c + "|";
  EXPECT_NE(comments.find("tunnel packets: 120 decapsulated, 2 malformed; ended: duration reached"),
            std::string::npos)
      << comments;
  EXPECT_NE(comments.find("agent queue drops: 4"), std::string::npos) << comments;
  EXPECT_EQ(read.statistics[1].interface_id, 1u);
  EXPECT_EQ(read.statistics[1].counters.at(kIsbIfRecv), 7u);
  EXPECT_EQ(read.statistics[1].counters.at(kIsbUsrDeliv), 1u);
}

TEST(StreamToFileTest, WriteStatisticsWritesABlockPerInterfaceOfTheMessage) {
  File file;
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(0, "eth0")).ok());
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(1, "eth1")).ok());
  v1::Statistics s;
  s.set_timestamp_ns(5000);
  s.add_interfaces()->set_interface_index(1);
  s.add_interfaces()->set_interface_index(9);  // not described: skipped
  CAPD_ASSERT_OK(file.to_file().WriteStatistics(0, s));
  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.statistics.size(), 1u);
  EXPECT_EQ(read.statistics[0].interface_id, 1u);
  const StreamInterface* eth1 = file.to_file().Find(0, 1);
  ASSERT_NE(eth1, nullptr);
  EXPECT_EQ(eth1->last_statistics_ns, 5000u);
}

TEST(StreamToFileTest, AnInterfaceLeftOutOfTheFileRefusesPacketsButKeepsStatistics) {
  File file;
  file.to_file().LeaveOut(0, Description(0, "mirror0"), "mirror0");
  ASSERT_TRUE(file.to_file().AddInterface(0, Description(1, "geneve0")).ok());
  v1::PacketBatch b;
  AddPacket(b, 0, 1000, 60, 'a');
  EXPECT_FALSE(file.to_file().WriteBatch(0, b).ok());
  v1::Statistics s;
  s.set_timestamp_ns(5000);
  s.add_interfaces()->set_interface_index(0);
  s.mutable_interfaces(0)->set_packets_received(42);
  CAPD_ASSERT_OK(file.to_file().WriteStatistics(0, s));
  ASSERT_NE(file.to_file().Find(0, 0), nullptr);
  EXPECT_EQ(file.to_file().Find(0, 0)->latest.packets_received(), 42u);
  const test::PcapngFile read = file.Read();
  ASSERT_EQ(read.interfaces.size(), 1u);
  EXPECT_EQ(read.interfaces[0].name, "geneve0");
  EXPECT_TRUE(read.statistics.empty());
}

// What a writer gets from a batch, as bytes: written in runs (WriteUntil, the merger's path,
// which hands packets of one interface without comments to the writer at once) or packet by
// packet (WritePacket for each). Both must give the same file.
std::string WrittenInRuns(const v1::PacketBatch& batch, const StreamToFile::RunLimits& limits) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<testing::RecordingSink>(&writes), "runs");
  StreamToFile to_file(*writer);
  auto narrow = Description(0, "eth0");
  narrow.set_snaplen(1200);  // the 1400-byte packets are cut
  EXPECT_TRUE(to_file.AddInterface(0, narrow).ok());
  EXPECT_TRUE(to_file.AddInterface(0, Description(7, "eth1")).ok());
  auto view = to_file.View(0, batch);
  EXPECT_TRUE(view.ok()) << view.status().message();
  BatchCursor cursor;
  uint64_t packets = 0;
  size_t bytes = 0;
  while (view.ok() && !view->AtEnd(cursor)) {
    EXPECT_TRUE(to_file.WriteUntil(0, *view, cursor, limits, &packets, &bytes).ok());
  }
  EXPECT_EQ(packets, static_cast<uint64_t>(batch.timestamp_ns_size()));
  EXPECT_EQ(bytes, batch.data().size());
  EXPECT_EQ(to_file.Find(0, 0)->delivered + to_file.Find(0, 7)->delivered, packets);
  EXPECT_TRUE(writer->Close().ok());
  std::string all;
  for (const std::string& w : writes) all += w;
  return all;
}

std::string WrittenPacketByPacket(const v1::PacketBatch& batch) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<testing::RecordingSink>(&writes), "runs");
  StreamToFile to_file(*writer);
  auto narrow = Description(0, "eth0");
  narrow.set_snaplen(1200);
  EXPECT_TRUE(to_file.AddInterface(0, narrow).ok());
  EXPECT_TRUE(to_file.AddInterface(0, Description(7, "eth1")).ok());
  auto view = to_file.View(0, batch);
  EXPECT_TRUE(view.ok()) << view.status().message();
  BatchCursor cursor;
  while (view.ok() && !view->AtEnd(cursor)) {
    EXPECT_TRUE(to_file.WritePacket(0, view->Next(cursor)).ok());
  }
  EXPECT_TRUE(writer->Close().ok());
  std::string all;
  for (const std::string& w : writes) all += w;
  return all;
}

TEST(StreamToFileTest, RunsWriteTheSameBytesAsPacketByPacket) {
  v1::PacketBatch b;
  uint64_t ts = 1'700'000'000'000'000'000ULL;
  // Sizes around the padding and the writer's small/large boundary, two interfaces, comments
  // on the first packet, in the middle (one packet with two) and on the last, and a run of
  // large packets, some over the first interface's snaplen.
  const size_t sizes[] = {0, 1, 2, 3, 4, 5, 60, 61, 1023, 1024, 1025, 1400, 64, 1400, 1514, 7};
  int n = 0;
  for (int round = 0; round < 3; ++round) {
    for (size_t size : sizes) {
      const uint32_t interface = (n / 5) % 2 == 0 ? 0 : 7;
      std::string comment;
      if (n == 0 || n % 11 == 3 || n == 47) comment = n == 47 ? "last" : "note";
      AddPacket(b, interface, ts += 997, size, static_cast<char>('a' + n % 26), comment);
      if (n == 14) {  // a second comment on the same packet is passed over
        b.add_comment_packet(14);
        b.add_comment("second");
      }
      ++n;
    }
  }
  ASSERT_EQ(n, 48);
  const std::string expected = WrittenPacketByPacket(b);
  EXPECT_EQ(WrittenInRuns(b, {}), expected);
  StreamToFile::RunLimits few;
  few.max_packets = 3;
  EXPECT_EQ(WrittenInRuns(b, few), expected);
  StreamToFile::RunLimits small_rounds;
  small_rounds.max_bytes = 2000;
  EXPECT_EQ(WrittenInRuns(b, small_rounds), expected);
  StreamToFile::RunLimits one_at_a_time;
  one_at_a_time.until_ns = 0;
  EXPECT_EQ(WrittenInRuns(b, one_at_a_time), expected);
  // Lent (capctl's merger): packets over 1 KiB go to the sink from the batch itself.
  auto owned = std::make_shared<const v1::PacketBatch>(b);
  StreamToFile::RunLimits lent;
  lent.data_owner = owned;
  EXPECT_EQ(WrittenInRuns(*owned, lent), expected);
  lent.max_bytes = 2000;
  EXPECT_EQ(WrittenInRuns(*owned, lent), expected);
}

// The merger's path to a file: a lent batch's large packets are handed to the kernel from the
// batch (FdSink::WriteGather), and the file holds the same bytes as when every packet is copied;
// the writer lets go of the batch at its Flush.
TEST(StreamToFileTest, ALentBatchReachesTheFileByteForByteAndIsReleasedAtFlush) {
  v1::PacketBatch b;
  uint64_t ts = 1'700'000'000'000'000'000ULL;
  const size_t sizes[] = {1514, 64, 1025, 1024, 9000, 1, 1400, 1401, 1402, 1403};
  for (int n = 0; n < 300; ++n) {
    AddPacket(b, n % 7 == 0 ? 7 : 0, ts += 13, sizes[n % 10], static_cast<char>('A' + n % 50));
  }
  const std::string expected = WrittenPacketByPacket(b);

  TempDir dir;
  const std::string path = dir.File("lent.pcapng");
  auto sink = FdSink::OpenFile(path);
  ASSERT_TRUE(sink.ok()) << sink.status().message();
  auto writer = MakePcapngWriter(std::move(sink).value(), "runs");
  StreamToFile to_file(*writer);
  auto narrow = Description(0, "eth0");
  narrow.set_snaplen(1200);
  ASSERT_TRUE(to_file.AddInterface(0, narrow).ok());
  ASSERT_TRUE(to_file.AddInterface(0, Description(7, "eth1")).ok());
  auto owned = std::make_shared<const v1::PacketBatch>(b);
  auto view = to_file.View(0, *owned);
  ASSERT_TRUE(view.ok()) << view.status().message();
  StreamToFile::RunLimits limits;
  limits.data_owner = owned;
  limits.max_bytes = 64 * 1024;  // several flushes, as the merger's rounds
  BatchCursor cursor;
  while (!view->AtEnd(cursor)) {
    ASSERT_TRUE(to_file.WriteUntil(0, *view, cursor, limits).ok());
    EXPECT_GT(owned.use_count(), 2);  // the test's, the limits', and the writer's
    ASSERT_TRUE(writer->Flush().ok());
    EXPECT_EQ(owned.use_count(), 2);
  }
  ASSERT_TRUE(writer->Close().ok());
  EXPECT_EQ(testing::ReadFileBytes(path), expected);
}

}  // namespace
}  // namespace capd::capfile
