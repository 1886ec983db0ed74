// Decryption Secrets Blocks (CaptureWriter::WriteDecryptionSecrets): the block's bytes against
// the one editcap writes for the same key log (Wireshark's own writer, an independent one), read
// back by libpcap and tshark, where it sits among the other blocks, and the ring of files
// repeating the secrets at the start of each file. pcap refuses them.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "capfile/capture_writer.h"
#include "capfile/rotating_writer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::capfile {
namespace {

using testing::FindTool;
using testing::Pattern;
using testing::ReadFileBytes;
using testing::ReadWithLibpcap;
using testing::RunCommand;
using testing::TempDir;

constexpr uint32_t kIdb = 1;
constexpr uint32_t kEpb = 6;
constexpr uint32_t kDsb = 0x0000000A;
constexpr uint64_t kTs = 1700000000123456789ULL;

// Two lines of a real TLS 1.3 key log (as curl writes with SSLKEYLOGFILE), 389 bytes: not a
// multiple of 4, so the block needs padding.
constexpr std::string_view kKeyLog =
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET "
    "644b0688a20dc797ea55c312d825d5d9beb609b64a67d4e1f2c3b4a5968778695a4b3c2d1e0f1a2b "
    "8f2e5d4c3b2a19081726354453627180a9b8c7d6e5f4031221304f5e6d7c8b9aa1b2c3d4e5f60718293a4b5c6d"
    "7e8f90a1b2\n"
    "SERVER_HANDSHAKE_TRAFFIC_SECRET "
    "644b0688a20dc797ea55c312d825d5d9beb609b64a67d4e1f2c3b4a5968778695a4b3c2d1e0f1a2b "
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    "abcdef0123\n";

struct Block {
  uint32_t type;
  std::string bytes;  // the whole block, both lengths included
};

std::vector<Block> Blocks(std::string_view file) {
  std::vector<Block> blocks;
  size_t offset = 0;
  while (offset + 12 <= file.size()) {
    uint32_t type = 0, total = 0;
    std::memcpy(&type, file.data() + offset, 4);
    std::memcpy(&total, file.data() + offset + 4, 4);
    if (total < 12 || total % 4 != 0 || total > file.size() - offset) {
      ADD_FAILURE() << "bad block length " << total << " at " << offset;
      break;
    }
    blocks.push_back({type, std::string(file.substr(offset, total))});
    offset += total;
  }
  EXPECT_EQ(offset, file.size()) << "trailing bytes";
  return blocks;
}

std::vector<uint32_t> Types(const std::vector<Block>& blocks) {
  std::vector<uint32_t> types;
  for (const Block& b : blocks) types.push_back(b.type);
  return types;
}

InterfaceInfo Ethernet() {
  InterfaceInfo info;
  info.name = "eth0";
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
  return MakePcapngWriter(std::move(sink).value(), "capctl secrets test");
}

TEST(DecryptionSecretsTest, BlockLiesBetweenThePacketsInWriteOrderAndLibpcapSkipsIt) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("keys.pcapng");
  {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 60, Pattern(60, 1)));
    CAPD_ASSERT_OK(writer->WriteDecryptionSecrets(kTlsKeyLogSecrets, kKeyLog));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs + 1, 61, Pattern(61, 2)));
    CAPD_ASSERT_OK(writer->Flush());
  }
  const std::vector<Block> blocks = Blocks(ReadFileBytes(path));
  EXPECT_EQ(Types(blocks), (std::vector<uint32_t>{0x0A0D0D0A, kIdb, kEpb, kDsb, kEpb}));
  // type, length, secrets type "TLSK", secrets length, the lines, padding to 4, length.
  const std::string& dsb = blocks[3].bytes;
  const size_t padded = (kKeyLog.size() + 3) & ~size_t{3};
  ASSERT_EQ(dsb.size(), 20 + padded);
  uint32_t secrets_type = 0, secrets_length = 0;
  std::memcpy(&secrets_type, dsb.data() + 8, 4);
  std::memcpy(&secrets_length, dsb.data() + 12, 4);
  EXPECT_EQ(secrets_type, 0x544c534bu);
  EXPECT_EQ(secrets_length, kKeyLog.size());
  EXPECT_EQ(dsb.substr(16, kKeyLog.size()), kKeyLog);
  EXPECT_EQ(dsb.substr(16 + kKeyLog.size(), padded - kKeyLog.size()),
            std::string(padded - kKeyLog.size(), '\0'));

  const auto read = ReadWithLibpcap(path);
  ASSERT_TRUE(read.error.empty()) << read.error;
  EXPECT_EQ(read.records.size(), 2u);
}

// editcap --inject-secrets writes the DSB Wireshark's own way: the same key log must come out
// as the same block, and tshark must read our file as it reads editcap's.
TEST(DecryptionSecretsTest, SameBlockAsEditcapWritesAndTsharkReadsIt) {
  const std::string editcap = FindTool("editcap");
  const std::string tshark = FindTool("tshark");
  if (editcap.empty() || tshark.empty()) {
    GTEST_SKIP() << "editcap or tshark is not installed: Wireshark's writer not compared";
  }
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string plain = dir.File("plain.pcapng");
  const std::string ours = dir.File("ours.pcapng");
  const std::string theirs = dir.File("theirs.pcapng");
  const std::string keys = dir.File("keys.txt");
  std::ofstream(keys) << kKeyLog;
  for (const std::string& path : {plain, ours}) {
    auto writer = OpenPcapng(path);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
    if (path == ours) CAPD_ASSERT_OK(writer->WriteDecryptionSecrets(kTlsKeyLogSecrets, kKeyLog));
    CAPD_ASSERT_OK(writer->WritePacket(0, kTs, 60, Pattern(60, 1)));
    CAPD_ASSERT_OK(writer->Flush());
  }
  const auto injected =
      RunCommand(editcap + " --inject-secrets tls," + keys + " " + plain + " " + theirs, dir);
  ASSERT_EQ(injected.exit_code, 0) << injected.errors;
  auto dsb_of = [](const std::string& path) {
    for (const Block& b : Blocks(ReadFileBytes(path))) {
      if (b.type == kDsb) return b.bytes;
    }
    return std::string();
  };
  ASSERT_FALSE(dsb_of(theirs).empty()) << "editcap wrote no DSB";
  EXPECT_EQ(dsb_of(ours), dsb_of(theirs));

  const auto read = RunCommand(tshark + " -n -r " + ours + " -T fields -e frame.len", dir);
  EXPECT_EQ(read.exit_code, 0) << read.errors;
  EXPECT_EQ(read.output, "60\n");
  // Wireshark's own tool removes exactly that block, and nothing else.
  const std::string stripped = dir.File("stripped.pcapng");
  const auto discarded =
      RunCommand(editcap + " --discard-all-secrets " + ours + " " + stripped, dir);
  ASSERT_EQ(discarded.exit_code, 0) << discarded.errors;
  const auto types = Types(Blocks(ReadFileBytes(stripped)));
  EXPECT_EQ(std::count(types.begin(), types.end(), kDsb), 0);
  EXPECT_EQ(std::count(types.begin(), types.end(), kEpb), 1);
}

TEST(DecryptionSecretsTest, PcapHasNoPlaceForThem) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto sink = FdSink::OpenFile(dir.File("x.pcap"));
  ASSERT_TRUE(sink.ok());
  auto writer = MakePcapWriter(std::move(sink).value());
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  const Status refused = writer->WriteDecryptionSecrets(kTlsKeyLogSecrets, kKeyLog);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("pcapng"), std::string::npos) << refused.message();
}

// Each file of a ring decrypts alone: every file after the first starts with the interfaces and
// then every secret written so far, before its first packet.
TEST(DecryptionSecretsTest, RingRepeatsTheSecretsSoFarAtTheStartOfEveryFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options;
  options.path = dir.File("r.pcapng");
  options.max_bytes = 2000;
  auto ring = MakeRotatingWriter(options, "capctl secrets test");
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  CaptureWriter& writer = *ring.value();
  CAPD_ASSERT_OK(writer.AddInterface(Ethernet()));
  const std::string first =
      "CLIENT_RANDOM " + std::string(64, 'a') + " " + std::string(96, 'b') + "\n";
  const std::string second =
      "CLIENT_RANDOM " + std::string(64, 'c') + " " + std::string(96, 'd') + "\n";
  CAPD_ASSERT_OK(writer.WriteDecryptionSecrets(kTlsKeyLogSecrets, first));
  for (int i = 0; i < 30; ++i) {
    if (i == 10) CAPD_ASSERT_OK(writer.WriteDecryptionSecrets(kTlsKeyLogSecrets, second));
    CAPD_ASSERT_OK(writer.WritePacket(0, kTs + i, 200, Pattern(200, static_cast<uint8_t>(i))));
    CAPD_ASSERT_OK(writer.Flush());
  }
  CAPD_ASSERT_OK(writer.Close());
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir.File(""))) {
    if (entry.path().extension() == ".pcapng") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 4u);
  size_t files_with_both = 0;
  for (const auto& file : files) {
    const std::vector<Block> blocks = Blocks(ReadFileBytes(file.string()));
    const auto types = Types(blocks);
    const auto first_packet = std::find(types.begin(), types.end(), kEpb) - types.begin();
    std::vector<std::string> secrets_before_packets;
    for (long i = 0; i < first_packet; ++i) {
      if (blocks[i].type == kDsb) secrets_before_packets.push_back(blocks[i].bytes.substr(16));
    }
    ASSERT_FALSE(secrets_before_packets.empty()) << file << " has no secrets before its packets";
    EXPECT_EQ(secrets_before_packets.front().substr(0, first.size()), first) << file;
    if (secrets_before_packets.size() == 2) {
      EXPECT_EQ(secrets_before_packets[1].substr(0, second.size()), second) << file;
      ++files_with_both;
    }
    EXPECT_TRUE(ReadWithLibpcap(file.string()).error.empty()) << file;
  }
  EXPECT_GE(files_with_both, 2u);  // every file opened after the second secret
}

}  // namespace
}  // namespace capd::capfile
