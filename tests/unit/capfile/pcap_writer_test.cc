#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
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

constexpr uint64_t kTs = 1700000000123456789ULL;
constexpr size_t kFileHeaderBytes = 24;
constexpr size_t kRecordHeaderBytes = 16;

InterfaceInfo Interface(std::string name, uint16_t link_type, uint32_t snaplen) {
  InterfaceInfo info;
  info.name = std::move(name);
  info.link_type = link_type;
  info.snaplen = snaplen;
  return info;
}

std::unique_ptr<CaptureWriter> OpenPcap(const std::string& path) {
  auto sink = FdSink::OpenFile(path);
  if (!sink.ok()) {
    ADD_FAILURE() << sink.status().message();
    return nullptr;
  }
  return MakePcapWriter(std::move(sink).value());
}

TEST(PcapWriterTest, LibpcapReadsNanosecondRecords) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("one.pcap");
  struct Packet {
    uint64_t ts;
    uint32_t original;
    std::vector<uint8_t> data;
  };
  const std::vector<Packet> packets = {
      {kTs, 60, Pattern(60, 1)},
      {kTs + 1, 61, Pattern(61, 2)},                    // odd: pcap has no padding
      {1700000001000000000ULL, 1514, Pattern(128, 3)},  // truncated
      {1700000001999999999ULL, 1, Pattern(1, 4)},
  };
  {
    auto writer = OpenPcap(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 128)));
    for (const Packet& p : packets)
      CAPD_ASSERT_OK(writer->WritePacket(0, p.ts, p.original, p.data));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const std::string file = ReadFileBytes(path);
  size_t expected_size = kFileHeaderBytes;
  for (const Packet& p : packets) expected_size += kRecordHeaderBytes + p.data.size();
  EXPECT_EQ(file.size(), expected_size);

  const testing::PcapContents read = ReadWithLibpcap(path);
  ASSERT_EQ(read.error, "");
  EXPECT_EQ(read.datalink, 1);
  EXPECT_EQ(read.snaplen, 128);
  ASSERT_EQ(read.records.size(), packets.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(read.records[i].timestamp_ns, packets[i].ts);
    EXPECT_EQ(read.records[i].caplen, packets[i].data.size());
    EXPECT_EQ(read.records[i].len, packets[i].original);
    EXPECT_EQ(read.records[i].data, packets[i].data);
  }
}

TEST(PcapWriterTest, HeaderAndRecordAreExactBytes) {
  if constexpr (std::endian::native != std::endian::little) {
    GTEST_SKIP() << "expected bytes are written for a little-endian host";
  }
  std::vector<std::string> writes;
  auto writer = MakePcapWriter(std::make_unique<RecordingSink>(&writes));
  CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 101, 65535)));
  const uint8_t data[] = {0x45, 0x00, 0x00};
  CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 20, data));
  CAPD_ASSERT_OK(writer->Flush());

  ASSERT_EQ(writes.size(), 1u);
  const uint8_t expected[] = {
      0x4d, 0x3c, 0xb2, 0xa1,  // nanosecond magic
      0x02, 0x00, 0x04, 0x00,  // version 2.4
      0x00, 0x00, 0x00, 0x00,  // thiszone
      0x00, 0x00, 0x00, 0x00,  // sigfigs
      0xff, 0xff, 0x00, 0x00,  // snaplen
      0x65, 0x00, 0x00, 0x00,  // LINKTYPE_RAW
      0x00, 0xf1, 0x53, 0x65,  // ts_sec 1700000000
      0x15, 0xcd, 0x5b, 0x07,  // ts_nsec 123456789
      0x03, 0x00, 0x00, 0x00,  // incl_len
      0x14, 0x00, 0x00, 0x00,  // orig_len
      0x45, 0x00, 0x00,
  };
  EXPECT_EQ(writes[0], std::string(std::begin(expected), std::end(expected)));
}

TEST(PcapWriterTest, HeaderWaitsForTheFirstInterface) {
  std::vector<std::string> writes;
  auto writer = MakePcapWriter(std::make_unique<RecordingSink>(&writes));
  CAPD_ASSERT_OK(writer->Flush());
  EXPECT_TRUE(writes.empty());
  EXPECT_EQ(writer->WritePacket(0, kTs, 1, Pattern(1, 0)).code(), StatusCode::kInvalidArgument);
  CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 65535)));
  CAPD_ASSERT_OK(writer->Flush());
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].size(), kFileHeaderBytes);
}

TEST(PcapWriterTest, SecondInterfaceWithSameLinkTypeIsWritten) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("two.pcap");
  const std::vector<uint8_t> big = Pattern(200, 7);
  {
    auto writer = OpenPcap(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 128)));
    CAPD_ASSERT_OK(writer->AddInterface(Interface("eth1", 1, 65535)));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 60, Pattern(60, 1)));
    // Longer than the file's snaplen (from eth0): cut to 128, original length kept.
    CAPD_ASSERT_OK(writer->WritePacket(1, kTs + 1, 200, big));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const testing::PcapContents read = ReadWithLibpcap(path);
  ASSERT_EQ(read.error, "");
  EXPECT_EQ(read.snaplen, 128);
  ASSERT_EQ(read.records.size(), 2u);
  EXPECT_EQ(read.records[0].data, Pattern(60, 1));
  EXPECT_EQ(read.records[1].timestamp_ns, kTs + 1);
  EXPECT_EQ(read.records[1].caplen, 128u);
  EXPECT_EQ(read.records[1].len, 200u);
  EXPECT_EQ(read.records[1].data, std::vector<uint8_t>(big.begin(), big.begin() + 128));
}

TEST(PcapWriterTest, SecondInterfaceWithOtherLinkTypeIsRejected) {
  std::vector<std::string> writes;
  auto writer = MakePcapWriter(std::make_unique<RecordingSink>(&writes));
  CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 65535)));
  const Status status = writer->AddInterface(Interface("vxlan-vni-7", 101, 65535));
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("one link type"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("pcapng"), std::string::npos) << status.message();
  // The rejected interface took no index.
  EXPECT_EQ(writer->WritePacket(1, kTs, 1, Pattern(1, 0)).code(), StatusCode::kInvalidArgument);
}

TEST(PcapWriterTest, StatisticsAreIgnored) {
  std::vector<std::string> writes;
  auto writer = MakePcapWriter(std::make_unique<RecordingSink>(&writes));
  CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 65535)));
  InterfaceCounters counters;
  counters.received = 5;
  CAPD_ASSERT_OK(writer->WriteStatistics(0, counters));
  CAPD_ASSERT_OK(writer->Flush());
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].size(), kFileHeaderBytes);
}

TEST(PcapWriterTest, RejectsImpossibleLengths) {
  std::vector<std::string> writes;
  auto writer = MakePcapWriter(std::make_unique<RecordingSink>(&writes));
  CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 65535)));
  EXPECT_EQ(writer->WritePacket(0, kTs, 59, Pattern(60, 0)).code(), StatusCode::kInvalidArgument);
  CAPD_ASSERT_OK(writer->Flush());
  EXPECT_EQ(writes.at(0).size(), kFileHeaderBytes);
}

TEST(PcapWriterTest, TsharkReadsTheFile) {
  const std::string tshark = FindTool("tshark");
  if (tshark.empty()) GTEST_SKIP() << "tshark is not installed: Wireshark's reader not checked";
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("tshark.pcap");
  {
    auto writer = OpenPcap(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Interface("eth0", 1, 96)));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 1514, Pattern(96, 1)));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs + 1, 61, Pattern(61, 2)));
    CAPD_ASSERT_OK(writer->Flush());
  }

  const testing::CommandResult result =
      RunCommand(tshark + " -n -r " + path +
                     " -T fields -E separator=, -e frame.len -e frame.cap_len -e frame.time_epoch",
                 dir);
  ASSERT_EQ(result.exit_code, 0) << result.errors;
  EXPECT_EQ(result.output,
            "1514,96,1700000000.123456789\n"
            "61,61,1700000000.123456790\n")
      << result.errors;

  const std::string capinfos = FindTool("capinfos");
  if (capinfos.empty()) GTEST_SKIP() << "capinfos is not installed: file type not checked";
  const testing::CommandResult info = RunCommand(capinfos + " -t -E -l " + path, dir);
  ASSERT_EQ(info.exit_code, 0) << info.errors;
  EXPECT_NE(info.output.find("nanosecond pcap"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("Ethernet"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("96 bytes"), std::string::npos) << info.output;
}

}  // namespace
}  // namespace capd::capfile
