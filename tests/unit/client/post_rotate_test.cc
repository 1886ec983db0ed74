// capctl's ring of files with --post-rotate (client/output/rotation.h): the command runs once for
// each finished file, with real files in a temp folder, and a failing command is reported
// without stopping the ring.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "client/output/rotation.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::client {
namespace {

using capfile::testing::Pattern;
using capfile::testing::ReadFileBytes;
using capfile::testing::TempDir;

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

RotationOptions Ring(std::string path, uint64_t max_bytes) {
  RotationOptions options;
  options.path = std::move(path);
  options.max_bytes = max_bytes;
  return options;
}

std::unique_ptr<CaptureWriter> Open(const RotationOptions& options) {
  auto writer = MakeRotatingWriter(options, "capctl post-rotate test");
  if (!writer.ok()) {
    ADD_FAILURE() << writer.status().message();
    return nullptr;
  }
  return std::move(writer).value();
}

void WritePackets(CaptureWriter& writer, int count, uint64_t first_ts) {
  for (int i = 0; i < count; ++i) {
    const std::vector<uint8_t> data =
        Pattern(100 + static_cast<size_t>(i), static_cast<uint8_t>(i));
    EXPECT_TRUE(writer
                    .WritePacket(0, first_ts + static_cast<uint64_t>(i),
                                 static_cast<uint32_t>(data.size()), data)
                    .ok());
    if (i % 10 == 9) EXPECT_TRUE(writer.Flush().ok());
  }
}

TEST(PostRotateTest, RunsForEachFinishedFileAndItsFailureIsHarmless) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string log = dir.File("rotated.log");
  std::vector<std::string> messages;
  {
    RotationOptions options = Ring(dir.File("p.pcapng"), 1000);
    options.post_rotate_command = "printf '%s\\n' >>" + log;
    options.log = [&](const std::string& m) { messages.push_back(m); };
    auto writer = Open(options);
    ASSERT_NE(writer, nullptr);
    CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
    WritePackets(*writer, 30, NowNs());
    CAPD_ASSERT_OK(writer->Close());
  }
  const auto files = RingFiles(dir.File(""), "p");
  ASSERT_GT(files.size(), 2u);
  // The commands run on their own; wait (bounded) until every one has appended its line.
  std::string lines;
  for (int i = 0; i < 200; ++i) {
    lines = ReadFileBytes(log);
    if (static_cast<size_t>(std::count(lines.begin(), lines.end(), '\n')) == files.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& f : files) EXPECT_NE(lines.find(f + "\n"), std::string::npos) << lines;

  RotationOptions failing_options = Ring(dir.File("f.pcapng"), 1000);
  failing_options.post_rotate_command = "exit 3; true";
  failing_options.log = [&](const std::string& m) { messages.push_back(m); };
  auto failing = Open(failing_options);
  ASSERT_NE(failing, nullptr);
  CAPD_ASSERT_OK(failing->AddInterface(Ethernet()));
  WritePackets(*failing, 30, NowNs());
  // The failures are reported as they are reaped, and writing goes on.
  for (int i = 0; i < 200 && messages.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CAPD_ASSERT_OK(failing->Tick(NowNs()));
  }
  CAPD_ASSERT_OK(failing->Close());
  ASSERT_FALSE(messages.empty());
  EXPECT_NE(messages[0].find("exit status 3"), std::string::npos) << messages[0];
}

}  // namespace
}  // namespace capd::client
