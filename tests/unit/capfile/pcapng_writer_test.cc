#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "capfile/capture_writer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::capfile {
namespace {

using testing::FindTool;
using testing::Pattern;
using testing::ReadFileBytes;
using testing::ReadWithLibpcap;
using testing::RecordingSink;
using testing::RunCommand;
using testing::TempDir;

constexpr char kApplication[] = "capctl test 0.1.0";
constexpr uint64_t kTs = 1700000000123456789ULL;

constexpr uint32_t kShb = 0x0A0D0D0A;
constexpr uint32_t kIdb = 1;
constexpr uint32_t kIsb = 5;
constexpr uint32_t kEpb = 6;

struct TestPacket {
  uint32_t interface_index;
  uint64_t timestamp_ns;
  uint32_t original_length;
  std::vector<uint8_t> data;
};

// Full, odd-length (padding), truncated (caplen < len), one byte, and nothing captured.
std::vector<TestPacket> SamplePackets() {
  return {
      {0, kTs, 60, Pattern(60, 1)},
      {0, kTs + 1, 61, Pattern(61, 2)},
      {0, 1700000001000000000ULL, 1514, Pattern(96, 3)},
      {0, 1700000001999999999ULL, 1, Pattern(1, 4)},
      {0, 1700000002000000001ULL, 60, {}},
  };
}

InterfaceInfo Ethernet(std::string name) {
  InterfaceInfo info;
  info.name = std::move(name);
  info.link_type = 1;
  info.snaplen = 65535;
  return info;
}

std::unique_ptr<CaptureWriter> OpenPcapng(const std::string& path) {
  auto sink = FdSink::OpenFile(path);
  if (!sink.ok()) {
    ADD_FAILURE() << sink.status().message();
    return nullptr;
  }
  return MakePcapngWriter(std::move(sink).value(), kApplication);
}

template <typename T>
T Get(std::string_view bytes, size_t offset) {
  T value{};
  if (offset + sizeof(T) > bytes.size()) {
    ADD_FAILURE() << "read of " << sizeof(T) << " bytes at " << offset << " past " << bytes.size();
    return value;
  }
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

uint64_t GetTimestamp(std::string_view bytes, size_t offset) {
  return (uint64_t{Get<uint32_t>(bytes, offset)} << 32) | Get<uint32_t>(bytes, offset + 4);
}

struct Block {
  uint32_t type;
  std::string body;  // between the leading and the trailing total length
};

// Splits a file into blocks, checking the framing every reader relies on.
std::vector<Block> ParseBlocks(std::string_view file) {
  std::vector<Block> blocks;
  size_t offset = 0;
  while (offset < file.size()) {
    if (file.size() - offset < 12) {
      ADD_FAILURE() << "truncated block at " << offset;
      break;
    }
    const auto type = Get<uint32_t>(file, offset);
    const auto total = Get<uint32_t>(file, offset + 4);
    if (total < 12 || total % 4 != 0 || total > file.size() - offset) {
      ADD_FAILURE() << "bad block length " << total << " at " << offset;
      break;
    }
    EXPECT_EQ(Get<uint32_t>(file, offset + total - 4), total) << "trailing length at " << offset;
    blocks.push_back({type, std::string(file.substr(offset + 8, total - 12))});
    offset += total;
  }
  return blocks;
}

std::vector<Block> BlocksOfType(const std::vector<Block>& blocks, uint32_t type) {
  std::vector<Block> out;
  for (const Block& b : blocks) {
    if (b.type == type) out.push_back(b);
  }
  return out;
}

using Options = std::multimap<uint16_t, std::string>;

// Parses an option list that must end with opt_endofopt and fill the rest of the block.
Options ParseOptions(std::string_view bytes) {
  Options options;
  size_t offset = 0;
  bool ended = false;
  while (offset + 4 <= bytes.size()) {
    const auto code = Get<uint16_t>(bytes, offset);
    const auto length = Get<uint16_t>(bytes, offset + 2);
    offset += 4;
    if (code == 0) {
      EXPECT_EQ(length, 0);
      ended = true;
      break;
    }
    const size_t padded = (length + 3u) & ~size_t{3};
    if (offset + padded > bytes.size()) {
      ADD_FAILURE() << "option " << code << " overruns the block";
      break;
    }
    options.emplace(code, std::string(bytes.substr(offset, length)));
    EXPECT_EQ(bytes.substr(offset + length, padded - length), std::string(padded - length, '\0'))
        << "padding of option " << code;
    offset += padded;
  }
  EXPECT_TRUE(ended || bytes.empty()) << "no opt_endofopt";
  EXPECT_EQ(offset, bytes.size()) << "bytes after opt_endofopt";
  return options;
}

std::string U64Bytes(uint64_t value) {
  std::string bytes(sizeof(value), '\0');
  std::memcpy(bytes.data(), &value, sizeof(value));
  return bytes;
}

std::string TimestampBytes(uint64_t ns) {
  const uint32_t words[2] = {static_cast<uint32_t>(ns >> 32), static_cast<uint32_t>(ns)};
  std::string bytes(sizeof(words), '\0');
  std::memcpy(bytes.data(), words, sizeof(words));
  return bytes;
}

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

void WritePackets(CaptureWriter& writer, const std::vector<TestPacket>& packets) {
  for (const TestPacket& p : packets) {
    CAPD_ASSERT_OK(
        writer.WritePacket(p.interface_index, p.timestamp_ns, p.original_length, p.data));
  }
}

void ExpectSameRecords(const testing::PcapContents& read, const std::vector<TestPacket>& packets) {
  ASSERT_EQ(read.records.size(), packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(read.records[i].timestamp_ns, packets[i].timestamp_ns);
    EXPECT_EQ(read.records[i].caplen, packets[i].data.size());
    EXPECT_EQ(read.records[i].len, packets[i].original_length);
    EXPECT_EQ(read.records[i].data, packets[i].data);
  }
}

TEST(PcapngWriterTest, LibpcapReadsPacketsWithNanosecondTimestamps) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("one.pcapng");
  const std::vector<TestPacket> packets = SamplePackets();
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
    WritePackets(*writer, packets);
    CAPD_ASSERT_OK(writer->Flush());
  }

  const testing::PcapContents read = ReadWithLibpcap(path);
  ASSERT_EQ(read.error, "");
  EXPECT_EQ(read.datalink, 1);
  EXPECT_EQ(read.snaplen, 65535);
  ExpectSameRecords(read, packets);
}

TEST(PcapngWriterTest, TwoInterfacesKeepTheirIndices) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("two.pcapng");
  const std::vector<TestPacket> packets = {
      {0, kTs, 60, Pattern(60, 1)},
      {1, kTs + 10, 71, Pattern(71, 2)},
      {1, kTs + 20, 1514, Pattern(128, 3)},
      {0, kTs + 30, 61, Pattern(61, 4)},
  };
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth1")));
    WritePackets(*writer, packets);
    CAPD_ASSERT_OK(writer->Flush());
  }

  // libpcap merges the interfaces into one stream (and needs them to share link type and
  // snaplen; see TsharkReadsMixedLinkTypes for a file it cannot read).
  const testing::PcapContents read = ReadWithLibpcap(path);
  ASSERT_EQ(read.error, "");
  EXPECT_EQ(read.datalink, 1);
  ExpectSameRecords(read, packets);

  const std::vector<Block> blocks = ParseBlocks(ReadFileBytes(path));
  const std::vector<Block> idbs = BlocksOfType(blocks, kIdb);
  ASSERT_EQ(idbs.size(), 2u);
  EXPECT_EQ(ParseOptions(std::string_view(idbs[0].body).substr(8)).find(2)->second, "eth0");
  EXPECT_EQ(ParseOptions(std::string_view(idbs[1].body).substr(8)).find(2)->second, "eth1");
  const std::vector<Block> epbs = BlocksOfType(blocks, kEpb);
  ASSERT_EQ(epbs.size(), packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    EXPECT_EQ(Get<uint32_t>(epbs[i].body, 0), packets[i].interface_index) << "packet " << i;
  }
}

TEST(PcapngWriterTest, SectionAndInterfaceBlocksCarryOptions) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("options.pcapng");
  InterfaceInfo described = Ethernet("eth0");
  described.description = "uplink";
  described.filter = "tcp port 443";
  described.os = "Linux 6.1.0-test";
  described.snaplen = 262144;
  InterfaceInfo raw;
  raw.name = "vxlan-vni-7";
  raw.link_type = 101;  // LINKTYPE_RAW
  raw.snaplen = 9000;
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(described));
    CAPD_ASSERT_OK(writer->AddInterface(raw));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const std::vector<Block> blocks = ParseBlocks(ReadFileBytes(path));
  ASSERT_EQ(blocks.size(), 3u);

  ASSERT_EQ(blocks[0].type, kShb);
  const std::string_view shb = blocks[0].body;
  EXPECT_EQ(Get<uint32_t>(shb, 0), 0x1A2B3C4Du);
  EXPECT_EQ(Get<uint16_t>(shb, 4), 1);  // major
  EXPECT_EQ(Get<uint16_t>(shb, 6), 0);  // minor
  EXPECT_EQ(Get<int64_t>(shb, 8), -1);  // section length unknown
  const Options shb_options = ParseOptions(shb.substr(16));
  ASSERT_EQ(shb_options.count(3), 1u);
  EXPECT_TRUE(shb_options.find(3)->second.starts_with("Linux ")) << shb_options.find(3)->second;
  ASSERT_EQ(shb_options.count(4), 1u);
  EXPECT_EQ(shb_options.find(4)->second, kApplication);

  ASSERT_EQ(blocks[1].type, kIdb);
  const std::string_view idb0 = blocks[1].body;
  EXPECT_EQ(Get<uint16_t>(idb0, 0), 1);  // link type
  EXPECT_EQ(Get<uint16_t>(idb0, 2), 0);  // reserved
  EXPECT_EQ(Get<uint32_t>(idb0, 4), 262144u);
  const Options if0 = ParseOptions(idb0.substr(8));
  EXPECT_EQ(if0, (Options{{2, "eth0"},
                          {3, "uplink"},
                          {9, std::string(1, '\x09')},
                          {11, std::string("\0tcp port 443", 13)},
                          {12, "Linux 6.1.0-test"}}));

  ASSERT_EQ(blocks[2].type, kIdb);
  const std::string_view idb1 = blocks[2].body;
  EXPECT_EQ(Get<uint16_t>(idb1, 0), 101);
  EXPECT_EQ(Get<uint32_t>(idb1, 4), 9000u);
  // Empty description, filter and OS are left out.
  EXPECT_EQ(ParseOptions(idb1.substr(8)), (Options{{2, "vxlan-vni-7"}, {9, "\x09"}}));
}

TEST(PcapngWriterTest, StatisticsBlockCarriesCounters) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("stats.pcapng");
  InterfaceCounters counters;
  counters.start_ns = kTs;
  counters.end_ns = kTs + 5'000'000'000ULL;
  counters.received = 1000;
  counters.interface_drops = 3;
  counters.kernel_drops = 17;
  counters.delivered = 970;
  counters.agent_drops = 10;
  InterfaceCounters quiet = counters;
  quiet.agent_drops = 0;
  const std::vector<TestPacket> packets = {{1, kTs + 1, 60, Pattern(60, 9)}};
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth1")));
    WritePackets(*writer, packets);
    CAPD_ASSERT_OK(writer->WriteStatistics(1, counters));
    CAPD_ASSERT_OK(writer->WriteStatistics(0, quiet));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const std::vector<Block> isbs = BlocksOfType(ParseBlocks(ReadFileBytes(path)), kIsb);
  ASSERT_EQ(isbs.size(), 2u);
  EXPECT_EQ(Get<uint32_t>(isbs[0].body, 0), 1u);  // interface id
  EXPECT_EQ(GetTimestamp(isbs[0].body, 4), counters.end_ns);
  EXPECT_EQ(ParseOptions(std::string_view(isbs[0].body).substr(12)),
            (Options{{1, "agent queue drops: 10"},
                     {2, TimestampBytes(counters.start_ns)},
                     {3, TimestampBytes(counters.end_ns)},
                     {4, U64Bytes(1000)},
                     {5, U64Bytes(3)},
                     {7, U64Bytes(17)},
                     {8, U64Bytes(970)}}));
  // No agent drops: no comment.
  EXPECT_EQ(Get<uint32_t>(isbs[1].body, 0), 0u);
  EXPECT_EQ(ParseOptions(std::string_view(isbs[1].body).substr(12)).count(1), 0u);

  // Readers skip ISBs: the packet is still there.
  const testing::PcapContents read = ReadWithLibpcap(path);
  ASSERT_EQ(read.error, "");
  ExpectSameRecords(read, packets);
}

TEST(PcapngWriterTest, InterfaceAndPacketBlocksAreExactBytes) {
  if constexpr (std::endian::native != std::endian::little) {
    GTEST_SKIP() << "expected bytes are written for a little-endian host";
  }
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<RecordingSink>(&writes), kApplication);
  CAPD_ASSERT_OK(writer->Flush());  // the SHB alone
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
  CAPD_ASSERT_OK(writer->Flush());
  const uint8_t data[] = {0xde, 0xad, 0xbe, 0xef, 0x01};
  CAPD_ASSERT_OK(writer->WritePacket(0, 0x0000000100000002ULL, 9, data));
  CAPD_ASSERT_OK(writer->Flush());

  ASSERT_EQ(writes.size(), 3u);
  EXPECT_EQ(writes[1], Bytes({0x01, 0x00, 0x00, 0x00, 40,   0x00, 0x00, 0x00,  // IDB, length
                              0x01, 0x00, 0x00, 0x00,                          // Ethernet
                              0xff, 0xff, 0x00, 0x00,                          // snaplen
                              0x02, 0x00, 0x04, 0x00, 'e',  't',  'h',  '0',   // if_name
                              0x09, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00,  // if_tsresol
                              0x00, 0x00, 0x00, 0x00,                          // end
                              40,   0x00, 0x00, 0x00}));
  EXPECT_EQ(writes[2], Bytes({0x06, 0x00, 0x00, 0x00, 40,   0x00, 0x00, 0x00,  // EPB, length
                              0x00, 0x00, 0x00, 0x00,                          // interface
                              0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,  // ts high, low
                              0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,  // caplen, len
                              0xde, 0xad, 0xbe, 0xef, 0x01, 0x00, 0x00, 0x00,  // data, padding
                              40,   0x00, 0x00, 0x00}));
}

// The writer grows its buffer without zeroing it (capfile/encode_buffer.h) and reuses it after
// every Flush, so a block's padding is whatever the previous round left there unless the writer
// writes the zeros itself. A first round fills the buffer with 0xff; the second round's packets
// of every length modulo 4, written one by one and as runs (small and over 1 KiB, not lent),
// must carry zero padding and their own bytes exactly.
TEST(PcapngWriterTest, PaddingIsZeroInABufferReusedAfterFlush) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<RecordingSink>(&writes), kApplication);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
  CAPD_ASSERT_OK(writer->Flush());
  const std::vector<uint8_t> ones(2000, 0xff);
  for (int k = 0; k < 200; ++k) CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 2000, ones));
  CAPD_ASSERT_OK(writer->Flush());

  std::vector<std::vector<uint8_t>> packets;
  for (uint32_t length : {0u, 1u, 2u, 3u, 4u, 61u, 62u, 63u, 1025u, 1026u, 1027u, 1501u}) {
    packets.push_back(Pattern(length, static_cast<uint8_t>(length)));
  }
  for (const auto& packet : packets) {
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs, static_cast<uint32_t>(packet.size()), packet));
  }
  // As two runs: the small packets (one buffer growth for the run), then all of them.
  for (size_t count : {size_t{8}, packets.size()}) {
    std::vector<uint64_t> timestamps(count, kTs);
    std::vector<uint32_t> lengths;
    std::vector<uint8_t> data;
    for (size_t k = 0; k < count; ++k) {
      lengths.push_back(static_cast<uint32_t>(packets[k].size()));
      data.insert(data.end(), packets[k].begin(), packets[k].end());
    }
    PacketRun run;
    run.timestamp_ns = timestamps.data();
    run.original_length = lengths.data();
    run.captured_length = lengths.data();
    run.data = data.data();
    run.count = count;
    CAPD_ASSERT_OK(writer->WritePackets(0, run));
  }
  CAPD_ASSERT_OK(writer->Flush());

  ASSERT_EQ(writes.size(), 3u);
  const std::vector<Block> epbs = BlocksOfType(ParseBlocks(writes[2]), kEpb);
  ASSERT_EQ(epbs.size(), 2 * packets.size() + 8);
  for (size_t b = 0; b < epbs.size(); ++b) {
    const auto& packet = b < packets.size()       ? packets[b]
                         : b < packets.size() + 8 ? packets[b - packets.size()]
                                                  : packets[b - packets.size() - 8];
    const std::string& body = epbs[b].body;
    const size_t padded = (packet.size() + 3) & ~size_t{3};
    ASSERT_EQ(body.size(), 20 + padded) << "block " << b;
    EXPECT_EQ(Get<uint32_t>(body, 12), packet.size()) << "block " << b;
    EXPECT_EQ(body.substr(20, packet.size()), std::string(packet.begin(), packet.end()))
        << "block " << b;
    EXPECT_EQ(body.substr(20 + packet.size()), std::string(padded - packet.size(), '\0'))
        << "padding of block " << b << " (" << packet.size() << " bytes)";
  }
}

TEST(PcapngWriterTest, WritesOnceAndOnlyOnFlush) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<RecordingSink>(&writes), kApplication);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
  WritePackets(*writer, SamplePackets());
  EXPECT_TRUE(writes.empty());
  CAPD_ASSERT_OK(writer->Flush());
  ASSERT_EQ(writes.size(), 1u);  // SHB, IDB and five packets in one write
  CAPD_ASSERT_OK(writer->Flush());
  EXPECT_EQ(writes.size(), 1u);  // nothing buffered: no empty write
  WritePackets(*writer, SamplePackets());
  CAPD_ASSERT_OK(writer->Flush());
  ASSERT_EQ(writes.size(), 2u);

  const std::vector<Block> blocks = ParseBlocks(writes[0] + writes[1]);
  EXPECT_EQ(blocks.size(), 2u + 2 * SamplePackets().size());
  EXPECT_EQ(BlocksOfType(ParseBlocks(writes[1]), kEpb).size(), SamplePackets().size());
}

TEST(PcapngWriterTest, CapturedBytesBeyondSnaplenAreCut) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<RecordingSink>(&writes), kApplication);
  InterfaceInfo small = Ethernet("eth0");
  small.snaplen = 64;
  CAPD_ASSERT_OK(writer->AddInterface(small));
  const std::vector<uint8_t> data = Pattern(100, 5);
  CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 100, data));
  CAPD_ASSERT_OK(writer->Flush());

  const std::vector<Block> epbs = BlocksOfType(ParseBlocks(writes.at(0)), kEpb);
  ASSERT_EQ(epbs.size(), 1u);
  EXPECT_EQ(Get<uint32_t>(epbs[0].body, 12), 64u);   // captured
  EXPECT_EQ(Get<uint32_t>(epbs[0].body, 16), 100u);  // original
  EXPECT_EQ(epbs[0].body.substr(20), std::string(data.begin(), data.begin() + 64));
}

TEST(PcapngWriterTest, RejectsUnknownInterfaceAndImpossibleLengths) {
  std::vector<std::string> writes;
  auto writer = MakePcapngWriter(std::make_unique<RecordingSink>(&writes), kApplication);
  const std::vector<uint8_t> data = Pattern(60, 1);
  EXPECT_EQ(writer->WritePacket(0, kTs, 60, data).code(), StatusCode::kInvalidArgument);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
  EXPECT_EQ(writer->WritePacket(1, kTs, 60, data).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->WriteStatistics(1, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(writer->WritePacket(0, kTs, 59, data).code(), StatusCode::kInvalidArgument);
  CAPD_ASSERT_OK(writer->Flush());

  // The rejected calls left nothing behind.
  const std::vector<Block> blocks = ParseBlocks(writes.at(0));
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[1].type, kIdb);
}

TEST(PcapngWriterTest, TsharkReadsMixedLinkTypes) {
  const std::string tshark = FindTool("tshark");
  if (tshark.empty()) GTEST_SKIP() << "tshark is not installed: Wireshark's reader not checked";
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("mixed.pcapng");
  InterfaceInfo raw;
  raw.name = "vxlan-vni-7";
  raw.link_type = 101;  // LINKTYPE_RAW: the agent files bare-IP decapsulated packets this way
  raw.snaplen = 9000;
  const std::vector<TestPacket> packets = {
      {0, kTs, 1514, Pattern(96, 1)},
      {1, kTs + 1, 61, Pattern(61, 2)},
      {0, 1700000001000000000ULL, 1, Pattern(1, 3)},
  };
  InterfaceCounters counters;
  counters.end_ns = kTs + 2;
  counters.received = 2;
  counters.delivered = 2;
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet("eth0")));
    CAPD_ASSERT_OK(writer->AddInterface(raw));
    WritePackets(*writer, packets);
    CAPD_ASSERT_OK(writer->WriteStatistics(0, counters));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const testing::CommandResult result =
      RunCommand(tshark + " -n -r " + path +
                     " -T fields -E separator=, -e frame.interface_id -e frame.interface_name"
                     " -e frame.len -e frame.cap_len -e frame.time_epoch",
                 dir);
  ASSERT_EQ(result.exit_code, 0) << result.errors;
  EXPECT_EQ(result.output,
            "0,eth0,1514,96,1700000000.123456789\n"
            "1,vxlan-vni-7,61,61,1700000000.123456790\n"
            "0,eth0,1,1,1700000001.000000000\n")
      << result.errors;

  const std::string capinfos = FindTool("capinfos");
  if (capinfos.empty()) GTEST_SKIP() << "capinfos is not installed: interface details not checked";
  const testing::CommandResult info = RunCommand(capinfos + " " + path, dir);
  ASSERT_EQ(info.exit_code, 0) << info.errors;
  EXPECT_NE(info.output.find("Number of packets:   3"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("Number of interfaces in file: 2"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("Time precision = nanoseconds (9)"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("Number of stat entries = 1"), std::string::npos) << info.output;
}

}  // namespace
}  // namespace capd::capfile
