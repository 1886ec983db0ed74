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
    if (i % 10 == 9) {
      EXPECT_TRUE(writer.Flush().ok());
    }
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
    // Close waits for the commands: every one has appended its line when it returns.
    CAPD_ASSERT_OK(writer->Close());
  }
  const auto files = RingFiles(dir.File(""), "p");
  ASSERT_GT(files.size(), 2u);
  const std::string lines = ReadFileBytes(log);
  EXPECT_EQ(static_cast<size_t>(std::count(lines.begin(), lines.end(), '\n')), files.size())
      << lines;
  for (const auto& f : files) EXPECT_NE(lines.find(f + "\n"), std::string::npos) << lines;
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.back(),
            std::to_string(files.size()) + " files handed off to the post-rotate command");
  messages.clear();

  RotationOptions failing_options = Ring(dir.File("f.pcapng"), 1000);
  failing_options.post_rotate_command = "exit 3; true";
  failing_options.handoff_attempts = 1;
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
  ASSERT_FALSE(messages.empty());
  EXPECT_NE(messages[0].find("exit status 3 (attempt 1 of 1); giving up"), std::string::npos)
      << messages[0];
  WritePackets(*failing, 30, NowNs() + 1000);
  CAPD_ASSERT_OK(failing->Close());
  // Every file stays: none was handed off.
  const auto kept = RingFiles(dir.File(""), "f");
  EXPECT_NE(messages.back().find(std::to_string(kept.size()) + " files failed after 1 attempt: "),
            std::string::npos)
      << messages.back();
}

// --rotate-files 2 with a command that holds each file until the test lets it go: the ring keeps
// every file whose command has not succeeded (saying so once), and shrinks back to two once they
// have, at the latest when the writer closes.
TEST(PostRotateTest, TheRingKeepsFilesUntilTheirCommandSucceeded) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string gate = dir.File("gate");
  std::vector<std::string> messages;
  RotationOptions options = Ring(dir.File("h.pcapng"), 1000);
  options.max_files = 2;
  options.handoff_jobs = 64;
  // Each command waits for the gate file to appear.
  options.post_rotate_command = "while [ ! -e " + gate + " ]; do sleep 0.05; done; true";
  options.log = [&](const std::string& m) { messages.push_back(m); };
  auto writer = Open(options);
  ASSERT_NE(writer, nullptr);
  CAPD_ASSERT_OK(writer->AddInterface(Ethernet()));
  WritePackets(*writer, 60, NowNs());
  const auto held = RingFiles(dir.File(""), "h");
  ASSERT_GT(held.size(), 4u);  // nothing deleted: every command still runs
  size_t said = 0;
  for (const auto& m : messages) said += m.find("more than --rotate-files 2") != std::string::npos;
  EXPECT_EQ(said, 1u);
  {
    std::FILE* f = std::fopen(gate.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  CAPD_ASSERT_OK(writer->Close());
  const auto after = RingFiles(dir.File(""), "h");
  EXPECT_EQ(after.size(), 2u);
  EXPECT_EQ(after.back(), held.back());
  EXPECT_EQ(messages.back(),
            std::to_string(held.size()) + " files handed off to the post-rotate command");
}

}  // namespace
}  // namespace capd::client
