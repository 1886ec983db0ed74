// The pcap representation under --decap (capfile/ethernet_framing.h): decapsulated
// Ethernet and bare-IP frames into one pcap file, read back with libpcap as any reader would.

#include "capfile/ethernet_framing.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "client/output/capture_files.h"
#include "client/stream/stream_command.h"

namespace capd::client {
namespace {

using capfile::FrameBareIpAsEthernet;
using capfile::kMadeUpEthernetHeaderLength;

struct Read {
  int link_type = -1;
  int snaplen = -1;
  struct Packet {
    uint32_t caplen;
    uint32_t len;
    std::vector<uint8_t> bytes;
  };
  std::vector<Packet> packets;
};

Read ReadPcap(const std::string& path) {
  Read read;
  char error[PCAP_ERRBUF_SIZE] = "";
  pcap_t* p = pcap_open_offline(path.c_str(), error);
  EXPECT_NE(p, nullptr) << error;
  if (p == nullptr) return read;
  read.link_type = pcap_datalink(p);
  read.snaplen = pcap_snapshot(p);
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &header, &data) == 1) {
    read.packets.push_back({header->caplen, header->len, {data, data + header->caplen}});
  }
  pcap_close(p);
  return read;
}

class EthernetFramingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("ethernet_framing_test_" + std::to_string(getpid()) + ".pcap");
    auto sink = FdSink::OpenFile(path_.string());
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    writer_ = FrameBareIpAsEthernet(MakePcapWriter(std::move(sink.value())));
  }
  void TearDown() override { std::filesystem::remove(path_); }

  InterfaceInfo Interface(const std::string& name, uint16_t link_type) {
    InterfaceInfo info;
    info.name = name;
    info.link_type = link_type;
    info.snaplen = 262144;
    return info;
  }

  std::filesystem::path path_;
  std::unique_ptr<CaptureWriter> writer_;
};

// A bare IPv4 and IPv6 packet (first bytes only: the framing reads the version nibble) and an
// Ethernet frame carrying IPv4.
const std::vector<uint8_t> kIpv4 = {0x45, 0x00, 0x00, 0x1c, 1, 2, 3, 4, 5, 6};
const std::vector<uint8_t> kIpv6 = {0x60, 0x00, 0x00, 0x00, 0, 8, 17, 64};
const std::vector<uint8_t> kEthernet = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45};

std::vector<uint8_t> Framed(uint16_t ethertype, const std::vector<uint8_t>& ip) {
  std::vector<uint8_t> frame(12, 0);
  frame.push_back(static_cast<uint8_t>(ethertype >> 8));
  frame.push_back(static_cast<uint8_t>(ethertype & 0xff));
  frame.insert(frame.end(), ip.begin(), ip.end());
  return frame;
}

TEST_F(EthernetFramingTest, MixedDecapsulatedLinkTypesBecomeOneEthernetFile) {
  ASSERT_TRUE(writer_->AddInterface(Interface("geneve-vni-10", 1)).ok());
  ASSERT_TRUE(writer_->AddInterface(Interface("geneve-vni-11", 101)).ok());
  ASSERT_TRUE(writer_->WritePacket(0, 1'000, kEthernet.size(), kEthernet).ok());
  ASSERT_TRUE(writer_->WritePacket(1, 2'000, 100, kIpv4).ok());  // truncated at capture
  ASSERT_TRUE(writer_->WritePacket(1, 3'000, kIpv6.size(), kIpv6).ok());
  ASSERT_TRUE(writer_->Close().ok());

  const Read read = ReadPcap(path_.string());
  EXPECT_EQ(read.link_type, DLT_EN10MB);
  ASSERT_EQ(read.packets.size(), 3u);
  EXPECT_EQ(read.packets[0].bytes, kEthernet) << "an Ethernet frame passes unchanged";
  EXPECT_EQ(read.packets[0].len, kEthernet.size());
  EXPECT_EQ(read.packets[1].bytes, Framed(0x0800, kIpv4));
  EXPECT_EQ(read.packets[1].len, 114u) << "the original length grows by the header";
  EXPECT_EQ(read.packets[2].bytes, Framed(0x86DD, kIpv6));
  EXPECT_EQ(read.packets[2].len, kIpv6.size() + 14);
  for (const auto& packet : read.packets) {
    EXPECT_LE(packet.caplen, static_cast<uint32_t>(read.snaplen));
  }
}

TEST_F(EthernetFramingTest, BareIpFirstStillGivesEthernetAndTakesLaterEthernet) {
  ASSERT_TRUE(writer_->AddInterface(Interface("geneve-vni-11", 101)).ok());
  ASSERT_TRUE(writer_->AddInterface(Interface("geneve-vni-10", 1)).ok());
  ASSERT_TRUE(writer_->WritePacket(0, 1'000, kIpv4.size(), kIpv4).ok());
  ASSERT_TRUE(writer_->WritePacket(1, 2'000, kEthernet.size(), kEthernet).ok());
  ASSERT_TRUE(writer_->Close().ok());

  const Read read = ReadPcap(path_.string());
  EXPECT_EQ(read.link_type, DLT_EN10MB);
  ASSERT_EQ(read.packets.size(), 2u);
  EXPECT_EQ(read.packets[0].bytes, Framed(0x0800, kIpv4));
  EXPECT_EQ(read.packets[1].bytes, kEthernet);
}

TEST_F(EthernetFramingTest, OtherLinkTypesStillRefusedAsBefore) {
  ASSERT_TRUE(writer_->AddInterface(Interface("geneve-vni-10", 1)).ok());
  // Linux cooked capture is not bare IP: a pcap file still cannot hold it beside Ethernet.
  EXPECT_FALSE(writer_->AddInterface(Interface("any", 113)).ok());
}

// What a writer is given, for WithPcapLinkType's choice: each interface's link type and snaplen.
using Written = std::vector<std::pair<uint16_t, uint32_t>>;

class InterfaceRecorder final : public CaptureWriter {
 public:
  explicit InterfaceRecorder(Written* written) : written_(written) {}
  Status AddInterface(const InterfaceInfo& info) override {
    written_->emplace_back(info.link_type, info.snaplen);
    return Status::Ok();
  }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t, uint64_t, uint32_t, std::span<const uint8_t>,
                     std::string_view) override {
    return Status::Ok();
  }
  Status WriteStatistics(uint32_t, const InterfaceCounters&) override { return Status::Ok(); }
  Status Flush() override { return Status::Ok(); }

 private:
  Written* written_;
};

Written InterfacesWritten(const StreamOptions& options) {
  Written written;
  auto writer = WithPcapLinkType(options, std::make_unique<InterfaceRecorder>(&written));
  InterfaceInfo ethernet;
  ethernet.name = "vxlan0";
  ethernet.link_type = 1;
  ethernet.snaplen = 65535;
  InterfaceInfo raw;
  raw.name = "geneve0";
  raw.link_type = 101;
  raw.snaplen = 65535;
  EXPECT_TRUE(writer->AddInterface(ethernet).ok());
  EXPECT_TRUE(writer->AddInterface(raw).ok());
  return written;
}

// --upload (files for Arkime, one link type each) frames bare IP as Ethernet in pcapng too, ring
// or single file, with every interface's snaplen raised alike (libpcap refuses a pcapng file
// whose interfaces' snaplens differ); without --upload, pcapng keeps each interface as it is.
TEST(WithPcapLinkTypeTest, UploadGivesOneLinkTypePerFileUnderDecap) {
  StreamOptions options;
  options.format = FileFormat::kPcapng;
  options.decap.mode = DecapOptions::Mode::kAuto;
  const Written as_is = {{1, 65535}, {101, 65535}};
  const Written framed = {{1, 65549}, {1, 65549}};
  EXPECT_EQ(InterfacesWritten(options), as_is);
  options.rotation.emplace();
  options.rotation->upload_url = "s3://caps/fleet";
  EXPECT_EQ(InterfacesWritten(options), framed);
  options.rotation.reset();
  options.single_file_handoff.emplace();
  options.single_file_handoff->upload_url = "s3://caps/fleet";
  EXPECT_EQ(InterfacesWritten(options), framed);
  options.decap.mode = DecapOptions::Mode::kNone;
  EXPECT_EQ(InterfacesWritten(options), as_is);
  // pcap (one header, the first interface's): the framed interface alone, as before.
  options.decap.mode = DecapOptions::Mode::kAuto;
  options.single_file_handoff.reset();
  options.format = FileFormat::kPcap;
  EXPECT_EQ(InterfacesWritten(options), (Written{{1, 65535}, {1, 65549}}));
}

}  // namespace
}  // namespace capd::client
