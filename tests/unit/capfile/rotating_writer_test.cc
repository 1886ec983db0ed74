// The rotating writer end to end: real files in a temp folder, read back with libpcap (and
// capinfos when installed), plus a block walk for what libpcap does not expose (statistics
// blocks, the section comment).

#include "capfile/rotating_writer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::capfile {
namespace {

using testing::FindTool;
using testing::Pattern;
using testing::ReadFileBytes;
using testing::ReadWithLibpcap;
using testing::RunCommand;
using testing::TempDir;

constexpr char kApplication[] = "capctl rotation test";
constexpr uint64_t kSecond = 1'000'000'000ULL;

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

InterfaceInfo Ethernet() {
  InterfaceInfo info;
  info.name = "veth0";
  info.link_type = 1;
  info.snaplen = 65535;
  return info;
}

struct Written {
  uint64_t ts;
  std::vector<uint8_t> data;
};

// Files of the ring for `stem` in `dir`, in ring order (the number sorts them).
std::vector<std::string> RingFiles(const std::string& dir, const std::string& stem) {
  std::vector<std::string> files;
  const std::regex pattern(stem + R"(_\d{5}_\d{14}\.pcapng)");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, pattern)) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The Unix time in a ring file's name.
int64_t NameTime(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  const std::string stamp = name.substr(name.size() - std::string(".pcapng").size() - 14, 14);
  struct tm utc = {};
  strptime(stamp.c_str(), "%Y%m%d%H%M%S", &utc);
  return static_cast<int64_t>(timegm(&utc));
}

std::vector<uint32_t> BlockTypes(const std::string& bytes) {
  std::vector<uint32_t> types;
  size_t offset = 0;
  while (offset + 12 <= bytes.size()) {
    uint32_t type = 0, length = 0;
    std::memcpy(&type, bytes.data() + offset, 4);
    std::memcpy(&length, bytes.data() + offset + 4, 4);
    if (length < 12 || offset + length > bytes.size()) break;
    types.push_back(type);
    offset += length;
  }
  return types;
}

// Designated initializers would leave fields out (-Wmissing-field-initializers).
RingOptions Ring(std::string path, uint64_t max_bytes = 0, uint32_t seconds = 0,
                 uint32_t max_files = 0) {
  RingOptions options;
  options.path = std::move(path);
  options.max_bytes = max_bytes;
  options.seconds = seconds;
  options.max_files = max_files;
  return options;
}

std::unique_ptr<CaptureWriter> Open(const RingOptions& options) {
  auto writer = MakeRotatingWriter(options, kApplication);
  if (!writer.ok()) {
    ADD_FAILURE() << writer.status().message();
    return nullptr;
  }
  return std::move(writer).value();
}

// Writes `count` packets of 100..199 bytes, one Flush per 10 (a batch).
std::vector<Written> WritePackets(CaptureWriter& writer, int count, uint64_t first_ts,
                                  uint64_t step_ns) {
  std::vector<Written> written;
  for (int i = 0; i < count; ++i) {
    Written w{first_ts + static_cast<uint64_t>(i) * step_ns,
              Pattern(100 + static_cast<size_t>(i % 100), static_cast<uint8_t>(i))};
    EXPECT_TRUE(writer
                    .WritePacket(0, w.ts, static_cast<uint32_t>(w.data.size()), w.data,
                                 i % 7 == 0 ? "a comment" : "")
                    .ok());
    written.push_back(std::move(w));
    if (i % 10 == 9) {
      EXPECT_TRUE(writer.Flush().ok());
    }
  }
  return written;
}

InterfaceCounters SomeCounters() {
  InterfaceCounters c;
  c.start_ns = NowNs();
  c.end_ns = c.start_ns + kSecond;
  c.received = 1000;
  c.kernel_drops = 3;
  c.agent_drops = 12;
  return c;
}

TEST(RingFileNameTest, DumpcapStyle) {
  EXPECT_EQ(RingFileName("/data/cap.pcapng", 1, 1700000000), "cap_00001_20231114221320.pcapng");
  EXPECT_EQ(RingFileName("trace", 123456, 0), "trace_123456_19700101000000.pcapng");
}

TEST(RotatingWriterTest, RefusesStdoutAndMissingFolders) {
  EXPECT_EQ(MakeRotatingWriter(Ring("-"), kApplication).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeRotatingWriter(Ring("/nonexistent/dir/cap.pcapng"), kApplication).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RotatingWriterTest, SizeRotationKeepsEveryPacketInOrderWithinTheBound) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  constexpr uint64_t kMax = 3000;
  auto writer = Open(Ring(dir.File("cap.pcapng"), kMax));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  CAPD_ASSERT_OK(writer->WriteStatistics(0, SomeCounters()));
  const auto written = WritePackets(*writer, 200, NowNs(), 1000);
  CAPD_ASSERT_OK(writer->Close());

  const auto files = RingFiles(dir.File(""), "cap");
  ASSERT_GT(files.size(), 10u);
  std::vector<testing::PcapRecord> read;
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_NE(files[i].find("cap_" + std::string(i < 9 ? "0000" : "000") + std::to_string(i + 1)),
              std::string::npos)
        << files[i];
    EXPECT_LE(std::filesystem::file_size(files[i]), kMax) << files[i];
    const auto contents = ReadWithLibpcap(files[i]);
    EXPECT_EQ(contents.error, "") << files[i];
    EXPECT_FALSE(contents.records.empty()) << files[i];
    read.insert(read.end(), contents.records.begin(), contents.records.end());
    // Section header, the interface, packets, then the statistics block at the end.
    const auto types = BlockTypes(ReadFileBytes(files[i]));
    ASSERT_GE(types.size(), 3u);
    EXPECT_EQ(types.front(), 0x0A0D0D0Au);
    EXPECT_EQ(types[1], 1u);
    EXPECT_EQ(types.back(), 5u);
  }
  ASSERT_EQ(read.size(), written.size());
  for (size_t i = 0; i < read.size(); ++i) {
    EXPECT_EQ(read[i].timestamp_ns, written[i].ts) << i;
    EXPECT_EQ(read[i].data, written[i].data) << i;
  }
  if (const std::string capinfos = FindTool("capinfos"); !capinfos.empty()) {
    for (const std::string& file : files) {
      EXPECT_EQ(RunCommand(capinfos + " " + file + " >/dev/null", dir).exit_code, 0) << file;
    }
  }
}

TEST(RotatingWriterTest, APacketLargerThanTheBoundGetsAFileOfItsOwn) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto writer = Open(Ring(dir.File("big"), 500));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  const auto big = Pattern(1400, 9);
  for (int i = 0; i < 3; ++i) CAPD_ASSERT_OK(writer->WritePacket(0, NowNs(), 1400, big));
  CAPD_ASSERT_OK(writer->Close());
  const auto files = RingFiles(dir.File(""), "big");
  ASSERT_EQ(files.size(), 3u);
  for (const auto& file : files) EXPECT_EQ(ReadWithLibpcap(file).records.size(), 1u);
}

TEST(RotatingWriterTest, RingKeepsTheNewestFilesWithTheLastPacketInTheNewest) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto writer = Open(Ring(dir.File("ring.pcapng"), 2000, 0, 3));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  const auto written = WritePackets(*writer, 300, NowNs(), 1000);
  CAPD_ASSERT_OK(writer->Close());
  const auto files = RingFiles(dir.File(""), "ring");
  ASSERT_EQ(files.size(), 3u);
  // Consecutive numbers, the newest holding the last packet written.
  const auto number = [](const std::string& f) {
    const std::string name = std::filesystem::path(f).filename().string();
    return std::stoi(name.substr(5, 5));
  };
  EXPECT_EQ(number(files[1]), number(files[0]) + 1);
  EXPECT_EQ(number(files[2]), number(files[0]) + 2);
  EXPECT_GT(number(files[0]), 10);
  const auto newest = ReadWithLibpcap(files[2]);
  ASSERT_FALSE(newest.records.empty());
  EXPECT_EQ(newest.records.back().timestamp_ns, written.back().ts);
  // What is left is the tail of what was written, in order, with nothing missing.
  std::vector<testing::PcapRecord> read;
  for (const auto& f : files) {
    const auto contents = ReadWithLibpcap(f);
    read.insert(read.end(), contents.records.begin(), contents.records.end());
  }
  const size_t skipped = written.size() - read.size();
  for (size_t i = 0; i < read.size(); ++i) EXPECT_EQ(read[i].data, written[skipped + i].data);
}

TEST(RotatingWriterTest, TimeRotationFollowsWallClockBoundariesByPacketTimestamp) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto writer = Open(Ring(dir.File("t.pcapng"), 0, 2));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  // A boundary a few slots ahead of now; the packets carry timestamps from there on.
  const uint64_t base_s = (NowNs() / kSecond / 2 + 3) * 2;
  const uint64_t base = base_s * kSecond;
  const std::vector<uint64_t> offsets = {
      kSecond / 2,     kSecond * 19 / 10,         2 * kSecond,
      2 * kSecond + 1, 3 * kSecond + kSecond / 2, 7 * kSecond + kSecond / 10};
  for (uint64_t offset : offsets) {
    CAPD_ASSERT_OK(writer->WritePacket(0, base + offset, 60, Pattern(60, 1)));
  }
  CAPD_ASSERT_OK(writer->Close());
  const auto files = RingFiles(dir.File(""), "t");
  // The first file (opened at start-up, before the first slot with packets) holds nothing.
  ASSERT_EQ(files.size(), 4u);
  EXPECT_TRUE(ReadWithLibpcap(files[0]).records.empty());
  const std::vector<uint64_t> expected_start = {base_s, base_s + 2, base_s + 6};
  const std::vector<size_t> expected_count = {2, 3, 1};
  for (size_t i = 1; i < files.size(); ++i) {
    EXPECT_EQ(NameTime(files[i]), static_cast<int64_t>(expected_start[i - 1])) << files[i];
    EXPECT_EQ(NameTime(files[i]) % 2, 0);
    const auto contents = ReadWithLibpcap(files[i]);
    EXPECT_EQ(contents.error, "");
    ASSERT_EQ(contents.records.size(), expected_count[i - 1]) << files[i];
    for (const auto& r : contents.records) {
      EXPECT_GE(r.timestamp_ns / kSecond, expected_start[i - 1]);
      EXPECT_LT(r.timestamp_ns / kSecond, expected_start[i - 1] + 2);
    }
  }
}

TEST(RotatingWriterTest, TickOpensTheNextFileOnAQuietLinkAfterTheGrace) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto writer = Open(Ring(dir.File("q.pcapng"), 0, 10));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  const uint64_t boundary = (NowNs() / kSecond / 10 + 1) * 10 * kSecond;
  CAPD_ASSERT_OK(writer->Tick(boundary - 1));
  CAPD_ASSERT_OK(writer->Tick(boundary + kTickGraceNs / 2));
  EXPECT_EQ(RingFiles(dir.File(""), "q").size(), 1u);
  CAPD_ASSERT_OK(writer->Tick(boundary + kTickGraceNs + 1));
  auto files = RingFiles(dir.File(""), "q");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(NameTime(files[1]), static_cast<int64_t>(boundary / kSecond));
  // Each one a valid, empty capture with its interface.
  for (const auto& f : files) EXPECT_EQ(ReadWithLibpcap(f).error, "") << f;
  CAPD_ASSERT_OK(writer->Close());
}

TEST(RotatingWriterTest, StatisticsAreRepeatedAtTheEndOfEveryFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto writer = Open(Ring(dir.File("s.pcapng"), 1500));
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  InterfaceInfo second = Ethernet();
  second.name = "vxlan-vni-7";
  CAPD_ASSERT_OK(writer->AddInterface(second));
  CAPD_ASSERT_OK(writer->WriteStatistics(0, SomeCounters()));
  CAPD_ASSERT_OK(writer->WriteStatistics(1, SomeCounters()));
  for (int i = 0; i < 40; ++i) {
    CAPD_ASSERT_OK(writer->WritePacket(i % 2, NowNs(), 80, Pattern(80, 1)));
  }
  CAPD_ASSERT_OK(writer->Close());
  const auto files = RingFiles(dir.File(""), "s");
  ASSERT_GT(files.size(), 2u);
  for (const auto& f : files) {
    const auto types = BlockTypes(ReadFileBytes(f));
    ASSERT_GE(types.size(), 5u);
    EXPECT_EQ(std::count(types.begin(), types.end(), 1u), 2) << f;  // both interfaces
    EXPECT_EQ(types[types.size() - 1], 5u);
    EXPECT_EQ(types[types.size() - 2], 5u);
    EXPECT_LE(std::filesystem::file_size(f), 1500u);
  }
}

TEST(RotatingWriterTest, FirstFileCommentIsInTheFirstSectionHeaderOnly) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("c.pcapng"), 1000);
  options.first_file_comment = "gap: capd was not running";
  auto writer = Open(options);
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  WritePackets(*writer, 30, NowNs(), 1);
  CAPD_ASSERT_OK(writer->Close());
  const auto files = RingFiles(dir.File(""), "c");
  ASSERT_GT(files.size(), 1u);
  EXPECT_NE(ReadFileBytes(files[0]).find("gap: capd was not running"), std::string::npos);
  EXPECT_EQ(ReadFileBytes(files[1]).find("gap: capd was not running"), std::string::npos);
  for (const auto& f : files) EXPECT_EQ(ReadWithLibpcap(f).error, "") << f;
  if (const std::string capinfos = FindTool("capinfos"); !capinfos.empty()) {
    const auto result = RunCommand(capinfos + " " + files[0], dir);
    EXPECT_EQ(result.exit_code, 0);
    EXPECT_NE(result.output.find("gap: capd was not running"), std::string::npos) << result.output;
  }
}

TEST(RotatingWriterTest, AdoptedRingContinuesNumberingAndCountsOldFiles) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("r.pcapng"), 1000, 0, 4);
  {
    auto writer = Open(options);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
    WritePackets(*writer, 20, NowNs(), 1);
  }  // the destructor finishes the last file
  const auto before = RingFiles(dir.File(""), "r");
  ASSERT_EQ(before.size(), 4u);
  options.adopt_existing_files = true;
  auto writer = Open(options);
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  CAPD_ASSERT_OK(writer->Close());
  const auto after = RingFiles(dir.File(""), "r");
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0], before[1]);
  const std::string newest = std::filesystem::path(after[3]).filename().string();
  const std::string last_before = std::filesystem::path(before[3]).filename().string();
  EXPECT_EQ(std::stoi(newest.substr(2, 5)), std::stoi(last_before.substr(2, 5)) + 1);
}

// A ring's counts are the packets whole on disk; a resumed ring counts the files it adopts and
// cuts a torn last block off (a crash mid-write), so every file reads to its end.
TEST(RotatingWriterTest, AdoptedRingCountsItsFilesAndCutsATornBlock) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("r.pcapng"), 2000, 0, 0);
  {
    auto ring = MakeRing(options, kApplication);
    ASSERT_TRUE(ring.ok()) << ring.status().message();
    CAPD_ASSERT_OK(ring.value()->AddInterface(Ethernet()));
    WritePackets(*ring.value(), 30, NowNs(), 1);
    EXPECT_EQ(ring.value()->Counts().packets_on_disk, 30u);
    EXPECT_EQ(ring.value()->Counts().packets_removed, 0u);
  }
  const auto files = RingFiles(dir.File(""), "r");
  ASSERT_GE(files.size(), 2u);
  // A torn last block: half a packet block at the end of the newest file.
  const auto whole = std::filesystem::file_size(files.back());
  {
    std::ofstream torn(files.back(), std::ios::app | std::ios::binary);
    const uint32_t header[2] = {6, 200};
    torn.write(reinterpret_cast<const char*>(header), sizeof header);
    torn << std::string(50, 'x');
  }
  options.adopt_existing_files = true;
  options.max_files = 2;  // adopting then trimming: the removed files' packets are counted apart
  auto ring = MakeRing(options, kApplication);
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  EXPECT_EQ(std::filesystem::file_size(files.back()), whole);
  const RingCounts counts = ring.value()->Counts();
  EXPECT_EQ(counts.packets_on_disk + counts.packets_removed, 30u);
  CAPD_ASSERT_OK(ring.value()->AddInterface(Ethernet()));
  CAPD_ASSERT_OK(ring.value()->Close());
  size_t on_disk = 0;
  for (const auto& f : RingFiles(dir.File(""), "r")) {
    const auto contents = ReadWithLibpcap(f);
    EXPECT_EQ(contents.error, "") << f;
    on_disk += contents.records.size();
  }
  EXPECT_EQ(counts.packets_on_disk, on_disk);
}

// A file of an earlier run is described from its own blocks when the ring adopts it, as the ring
// described it when it finished it: a recording whose writer died before finishing its file still
// gets that file's note (and upload). The torn file is described as cut.
TEST(RotatingWriterTest, AdoptedFilesAreDescribedAsTheRingDescribedThemWhenFinished) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("d.pcapng"), 2000, 0, 0);
  std::map<std::string, FinishedFile> finished;
  options.on_file_details = [&](const FinishedFile& f) { finished[f.path] = f; };
  {
    auto ring = MakeRing(options, kApplication);
    ASSERT_TRUE(ring.ok()) << ring.status().message();
    InterfaceInfo second = Ethernet();
    second.name = "ens5 (i-0abc)";
    second.link_type = 101;  // LINKTYPE_RAW: a second link type
    CAPD_ASSERT_OK(ring.value()->AddInterface(Ethernet()));
    CAPD_ASSERT_OK(ring.value()->AddInterface(second));
    WritePackets(*ring.value(), 30, NowNs() + 123, 1);
  }
  const auto files = RingFiles(dir.File(""), "d");
  ASSERT_GE(files.size(), 2u);
  ASSERT_EQ(finished.size(), files.size());
  const auto whole = std::filesystem::file_size(files.back());
  {
    std::ofstream torn(files.back(), std::ios::app | std::ios::binary);
    const uint32_t header[2] = {6, 200};
    torn.write(reinterpret_cast<const char*>(header), sizeof header);
    torn << std::string(50, 'x');
  }
  std::map<std::string, FinishedFile> adopted;
  options.on_file_details = nullptr;
  options.adopt_existing_files = true;
  options.on_file_adopted = [&](const FinishedFile& f) { adopted[f.path] = f; };
  auto ring = MakeRing(options, kApplication);
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  ASSERT_EQ(adopted.size(), files.size());
  for (const auto& [path, was] : finished) {
    ASSERT_EQ(adopted.count(path), 1u) << path;
    const FinishedFile& now = adopted[path];
    EXPECT_EQ(now.number, was.number) << path;
    EXPECT_EQ(now.opened_seconds, was.opened_seconds) << path;
    EXPECT_EQ(now.bytes, was.bytes) << path;
    EXPECT_EQ(now.packets, was.packets) << path;
    EXPECT_EQ(now.first_ns, was.first_ns) << path;
    EXPECT_EQ(now.last_ns, was.last_ns) << path;
    EXPECT_EQ(now.interfaces, was.interfaces) << path;
    EXPECT_EQ(now.link_types, was.link_types) << path;
    EXPECT_EQ(now.agents, std::vector<std::string>(now.interfaces.size())) << path;
  }
  EXPECT_EQ(adopted[files.back()].bytes, whole);
  EXPECT_EQ(std::filesystem::file_size(files.back()), whole);
}

TEST(RotatingWriterTest, ASecondRunWithTheSamePrefixContinuesTheNumbering) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const uint64_t now = NowNs();
  {
    auto first = Open(Ring(dir.File("p.pcapng"), 1000));
    ASSERT_NE(first, nullptr);
    CAPD_ASSERT_OK(first->AddInterface(Ethernet()));
    WritePackets(*first, 30, now, 1);
    CAPD_ASSERT_OK(first->Close());
  }
  const auto before = RingFiles(dir.File(""), "p");
  ASSERT_GT(before.size(), 2u);
  std::vector<std::string> first_contents;
  for (const auto& f : before) first_contents.push_back(ReadFileBytes(f));

  // Not adopted: the earlier files stay as they were, and max_files counts only this run's.
  auto second = Open(Ring(dir.File("p.pcapng"), 1000, 0, 1));
  ASSERT_NE(second, nullptr);
  CAPD_ASSERT_OK(second->AddInterface(Ethernet()));
  WritePackets(*second, 30, now + kSecond, 1);
  CAPD_ASSERT_OK(second->Close());
  const auto after = RingFiles(dir.File(""), "p");
  ASSERT_EQ(after.size(), before.size() + 1);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i], before[i]);
    EXPECT_EQ(ReadFileBytes(after[i]), first_contents[i]) << after[i];
  }
  // Numbered after the highest earlier file (the second run's own older files were trimmed).
  const std::string last = std::filesystem::path(after.back()).filename().string();
  EXPECT_EQ(last.substr(0, 2), "p_");
  EXPECT_GT(std::stoul(last.substr(2, 5)), before.size()) << last;
  EXPECT_EQ(ReadWithLibpcap(after.back()).error, "");
}

// may_delete holds finished files back from --rotate-files until the caller lets them go (capctl:
// once handed off); on_file_details describes each finished file as a reader finds it.
TEST(RotatingWriterTest, MayDeleteHoldsFilesBackAndDetailsDescribeEachFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("h.pcapng"), 2000, 0, 2);
  bool release = false;
  std::vector<FinishedFile> finished;
  std::vector<std::string> log;
  options.may_delete = [&](const std::string&) { return release; };
  options.on_file_details = [&](const FinishedFile& file) { finished.push_back(file); };
  options.log = [&](const std::string& m) { log.push_back(m); };
  auto writer = MakeRing(options, kApplication);
  ASSERT_TRUE(writer.ok()) << writer.status().message();
  CAPD_ASSERT_OK((*writer)->AddInterface(Ethernet()));
  const auto written = WritePackets(**writer, 100, NowNs(), 1000);
  const auto held = RingFiles(dir.File(""), "h");
  ASSERT_GT(held.size(), 4u);  // every file: none may go yet
  EXPECT_EQ(finished.size(), held.size() - 1);
  ASSERT_EQ(log.size(), 1u);  // said once
  EXPECT_NE(log[0].find("more than --rotate-files 2: the oldest are not handed off yet"),
            std::string::npos)
      << log[0];
  for (size_t i = 0; i < finished.size(); ++i) {
    const FinishedFile& f = finished[i];
    EXPECT_EQ(f.path, held[i]);
    EXPECT_EQ(f.number, i + 1);
    EXPECT_EQ(f.bytes, std::filesystem::file_size(held[i]));
    const auto read = ReadWithLibpcap(held[i]);
    ASSERT_FALSE(read.records.empty());
    EXPECT_EQ(f.packets, read.records.size());
    EXPECT_EQ(f.first_ns, read.records.front().timestamp_ns);
    EXPECT_EQ(f.last_ns, read.records.back().timestamp_ns);
    EXPECT_EQ(f.interfaces, std::vector<std::string>{"veth0"});
    EXPECT_EQ(f.link_types, std::vector<uint16_t>{1});
  }
  release = true;
  CAPD_ASSERT_OK((*writer)->Flush());  // the files released go: two are left, the current one too
  EXPECT_EQ(RingFiles(dir.File(""), "h").size(), 2u);
  // More files, held again; after Close, Trim lets the ring shrink to two once they may go.
  release = false;
  (void)WritePackets(**writer, 40, written.back().ts + 1000, 1000);
  CAPD_ASSERT_OK((*writer)->Close());
  EXPECT_GT(RingFiles(dir.File(""), "h").size(), 2u);
  release = true;
  (*writer)->Trim();
  const auto left = RingFiles(dir.File(""), "h");
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left.back(), finished.back().path);
  size_t total = 0;
  for (const FinishedFile& f : finished) total += f.packets;
  EXPECT_EQ(total, 140u);
}

// The free-space floor, in either policy, with a floor no filesystem can keep: the ring stops as
// it opens, with nothing to delete, saying so in the words of the option that set it.
struct UnkeepableFloor {
  const char* name;
  uint64_t RingOptions::*floor;
  std::vector<std::string> reason;  // each is in the status's message
};

class UnkeepableFloorTest : public ::testing::TestWithParam<UnkeepableFloor> {};

TEST_P(UnkeepableFloorTest, StopsTheRingAsItOpensWithItsReason) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  RingOptions options = Ring(dir.File("f.pcapng"));
  options.*GetParam().floor = uint64_t{1} << 62;
  auto writer = MakeRing(options, kApplication);
  ASSERT_FALSE(writer.ok());
  EXPECT_EQ(writer.status().code(), StatusCode::kResourceExhausted);
  for (const std::string& words : GetParam().reason) {
    EXPECT_NE(writer.status().message().find(words), std::string::npos)
        << writer.status().message();
  }
  EXPECT_TRUE(RingFiles(dir.File(""), "f").empty());
}

INSTANTIATE_TEST_SUITE_P(
    BothPolicies, UnkeepableFloorTest,
    ::testing::Values(
        // capctl --min-free
        UnkeepableFloor{"MinFree",
                        &RingOptions::min_free_bytes,
                        {" bytes, below --min-free 4611686018427387904",
                         ", and no older file of the ring is left to delete: stopped writing"}},
        // capd --record-keep-free
        UnkeepableFloor{"KeepFree",
                        &RingOptions::keep_free_bytes,
                        {"stopped: free space on ",
                         " below the floor of 4611686018427387904 bytes ("}}),
    [](const ::testing::TestParamInfo<UnkeepableFloor>& info) { return info.param.name; });

TEST(RotatingWriterTest, KillNineLeavesFinishedFilesValidAndTheCurrentOneReadable) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto writer = MakeRotatingWriter(Ring(dir.File("k.pcapng"), 4000), "k");
    if (!writer.ok() || !(*writer)->AddInterface(Ethernet()).ok()) ::_exit(1);
    for (int i = 0; i < 105; ++i) {
      if (!(*writer)->WritePacket(0, NowNs(), 100, Pattern(100, 1)).ok()) ::_exit(1);
      if (i % 10 == 9 && !(*writer)->Flush().ok()) ::_exit(1);
    }
    // Five packets encoded but not flushed: they are lost, nothing else.
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  const auto files = RingFiles(dir.File(""), "k");
  ASSERT_GT(files.size(), 2u);
  size_t total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto contents = ReadWithLibpcap(files[i]);
    EXPECT_EQ(contents.error, "") << files[i];
    total += contents.records.size();
  }
  EXPECT_EQ(total, 100u);
}

}  // namespace
}  // namespace capd::capfile
