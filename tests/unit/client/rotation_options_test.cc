// capctl stream's rotation flags and capctl record's command line (pure parsing).

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "client/cli/options.h"

namespace capd::client {
namespace {

StatusOr<CommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "capctl");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return ParseCommandLine(static_cast<int>(args.size()), argv.data());
}

TEST(RotationOptionsTest, FlagsFillTheRotation) {
  unsetenv("CAPD_AGENT");
  auto line = Parse({"stream", "-w", "/data/cap.pcapng", "--rotate-size", "10M", "--rotate-seconds",
                     "60", "--rotate-files", "5", "--post-rotate", "aws s3 cp --quiet",
                     "--min-free", "1G", "-i", "eth0"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  ASSERT_TRUE(line->stream.rotation.has_value());
  const RotationOptions& r = *line->stream.rotation;
  EXPECT_EQ(r.path, "/data/cap.pcapng");
  EXPECT_EQ(r.max_bytes, 10'000'000u);
  EXPECT_EQ(r.seconds, 60u);
  EXPECT_EQ(r.max_files, 5u);
  EXPECT_EQ(r.post_rotate_command, "aws s3 cp --quiet");
  EXPECT_EQ(r.min_free_bytes, 1'000'000'000u);
  EXPECT_EQ(line->stream.interface, "eth0");
}

TEST(RotationOptionsTest, HandoffFlagsTuneThePostRotateCommand) {
  unsetenv("CAPD_AGENT");
  auto defaults = Parse({"stream", "-w", "cap.pcapng", "--post-rotate", "true"});
  ASSERT_TRUE(defaults.ok()) << defaults.status().message();
  EXPECT_EQ(defaults->stream.rotation->handoff_jobs, 2u);
  EXPECT_EQ(defaults->stream.rotation->handoff_attempts, 5u);
  EXPECT_EQ(defaults->stream.rotation->handoff_wait_seconds, 300u);
  auto line = Parse({"stream", "-w", "cap.pcapng", "--post-rotate", "true", "--handoff-jobs", "4",
                     "--handoff-attempts", "1", "--handoff-wait", "0"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.rotation->handoff_jobs, 4u);
  EXPECT_EQ(line->stream.rotation->handoff_attempts, 1u);
  EXPECT_EQ(line->stream.rotation->handoff_wait_seconds, 0u);
  auto alone = Parse({"stream", "-w", "cap.pcapng", "--rotate-size", "1M", "--handoff-jobs", "4"});
  ASSERT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("need --post-rotate"), std::string::npos)
      << alone.status().message();
  EXPECT_FALSE(
      Parse({"stream", "-w", "c.pcapng", "--post-rotate", "true", "--handoff-jobs", "0"}).ok());
  EXPECT_FALSE(
      Parse({"stream", "-w", "c.pcapng", "--post-rotate", "true", "--handoff-attempts", "0"}).ok());
}

TEST(RotationOptionsTest, UploadWithAndWithoutRotation) {
  unsetenv("CAPD_AGENT");
  auto ring = Parse({"stream", "-w", "/d/cap.pcapng", "--rotate-size", "1M", "--upload",
                     "s3://caps/fleet", "--upload-endpoint-url", "http://127.0.0.1:4568"});
  ASSERT_TRUE(ring.ok()) << ring.status().message();
  ASSERT_TRUE(ring->stream.rotation.has_value());
  EXPECT_FALSE(ring->stream.single_file_handoff.has_value());
  EXPECT_EQ(ring->stream.rotation->upload_url, "s3://caps/fleet");
  EXPECT_EQ(ring->stream.rotation->upload_endpoint_url, "http://127.0.0.1:4568");
  auto single =
      Parse({"stream", "-w", "/d/one.pcapng", "--upload", "s3://caps", "--handoff-attempts", "3"});
  ASSERT_TRUE(single.ok()) << single.status().message();
  EXPECT_FALSE(single->stream.rotation.has_value());
  ASSERT_TRUE(single->stream.single_file_handoff.has_value());
  EXPECT_EQ(single->stream.single_file_handoff->path, "/d/one.pcapng");
  EXPECT_EQ(single->stream.single_file_handoff->handoff_attempts, 3u);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"stream", "--upload", "s3://caps"},
           {"stream", "-w", "-", "--upload", "s3://caps"},
           {"stream", "-w", "x.pcapng", "--upload", "caps/x"},
           {"stream", "-w", "x.pcapng", "--upload", "s3://"},
           {"stream", "-w", "x.pcapng", "--upload", "s3://caps", "--post-rotate", "true"},
           {"stream", "-w", "x.pcapng", "--upload-endpoint-url", "http://x"}}) {
    auto line = Parse(bad);
    EXPECT_FALSE(line.ok()) << bad.back();
    if (!line.ok()) {
      EXPECT_EQ(line.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(RotationOptionsTest, NoFlagsNoRotation) {
  auto line = Parse({"stream", "-w", "cap.pcapng"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_FALSE(line->stream.rotation.has_value());
}

TEST(RotationOptionsTest, RotationNeedsAFilePath) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"stream", "--rotate-size", "1M"},
                                             {"stream", "-w", "-", "--rotate-size", "1M"},
                                             {"stream", "--fifo", "/tmp/f", "--rotate-files", "3"},
                                             {"stream", "--wireshark", "--rotate-seconds", "5"}}) {
    auto line = Parse(args);
    ASSERT_FALSE(line.ok()) << args.back();
    EXPECT_EQ(line.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(line.status().message().find("-w PATH"), std::string::npos)
        << line.status().message();
  }
  EXPECT_FALSE(Parse({"stream", "-w", "x", "--format", "pcap", "--rotate-size", "1M"}).ok());
}

TEST(RotationOptionsTest, BadValuesAreRefused) {
  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"--rotate-size", "0"},
                                             {"--rotate-size", "10X"},
                                             {"--rotate-seconds", "0"},
                                             {"--rotate-seconds", "86401"},
                                             {"--rotate-files", "0"},
                                             {"--rotate-files", "-1"},
                                             {"--min-free", "lots"},
                                             {"--post-rotate", ""}}) {
    std::vector<std::string> args = {"stream", "-w", "cap.pcapng"};
    args.insert(args.end(), bad.begin(), bad.end());
    EXPECT_FALSE(Parse(args).ok()) << bad[0] << " " << bad[1];
  }
}

TEST(RecordOptionsTest, Start) {
  unsetenv("CAPD_AGENT");
  auto line = Parse({"record",         "start",   "--name",           "night",         "-i",
                     "eth1",           "-f",      "tcp port 443",     "--rotate-size", "100M",
                     "--rotate-files", "10",      "--rotate-seconds", "3600",          "--decap",
                     "vxlan",          "--agent", "10.0.0.5:50051",   "--token-file",  "t"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  ASSERT_EQ(line->command, CommandLine::Command::kRecord);
  const RecordOptions& r = line->record;
  EXPECT_EQ(r.action, RecordOptions::Action::kStart);
  EXPECT_EQ(r.name, "night");
  EXPECT_EQ(r.interface, "eth1");
  EXPECT_EQ(r.filter, "tcp port 443");
  EXPECT_EQ(r.rotate_bytes, 100'000'000u);
  EXPECT_EQ(r.rotate_files, 10u);
  EXPECT_EQ(r.rotate_seconds, 3600u);
  EXPECT_EQ(r.decap.mode, DecapOptions::Mode::kVxlan);
  EXPECT_EQ(r.agent.target, "10.0.0.5:50051");
  EXPECT_EQ(r.connection.token_file, "t");
}

TEST(RecordOptionsTest, StopListFetch) {
  auto stop = Parse({"record", "stop", "night"});
  ASSERT_TRUE(stop.ok()) << stop.status().message();
  EXPECT_EQ(stop->record.action, RecordOptions::Action::kStop);
  EXPECT_EQ(stop->record.name, "night");
  auto list = Parse({"record", "list", "--agent", "127.0.0.1:7000"});
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ(list->record.action, RecordOptions::Action::kList);
  EXPECT_EQ(list->record.agent.target, "127.0.0.1:7000");
  auto fetch = Parse({"record", "fetch", "night", "--out", "/tmp/x"});
  ASSERT_TRUE(fetch.ok()) << fetch.status().message();
  EXPECT_EQ(fetch->record.action, RecordOptions::Action::kFetch);
  EXPECT_EQ(fetch->record.name, "night");
  EXPECT_EQ(fetch->record.out_dir, "/tmp/x");
  auto del = Parse({"record", "delete", "night"});
  ASSERT_TRUE(del.ok()) << del.status().message();
  EXPECT_EQ(del->record.action, RecordOptions::Action::kDelete);
  EXPECT_EQ(del->record.name, "night");
  EXPECT_FALSE(Parse({"record", "delete"}).ok());
}

TEST(RecordOptionsTest, Refusals) {
  EXPECT_FALSE(Parse({"record"}).ok());
  EXPECT_FALSE(Parse({"record", "pause", "x"}).ok());
  EXPECT_FALSE(Parse({"record", "start", "-i", "eth0"}).ok());  // no name
  EXPECT_FALSE(Parse({"record", "stop"}).ok());
  EXPECT_FALSE(Parse({"record", "stop", "a", "b"}).ok());
  EXPECT_FALSE(Parse({"record", "list", "-i", "eth0"}).ok());
  // An agent runs no command a client sends it.
  EXPECT_FALSE(Parse({"record", "start", "--name", "x", "--post-rotate", "rm -rf /"}).ok());
  EXPECT_FALSE(Parse({"record", "start", "--name", "x", "--rotate-size", "huge"}).ok());
}

// The one size grammar: k, M, G in powers of 1000 (as tcpdump -C), KiB, MiB, GiB in powers of
// 1024; file counts and seconds take no suffix.
TEST(RotationOptionsTest, SizesInEitherUnitCountsWithout) {
  auto line = Parse({"stream", "-w", "cap.pcapng", "--rotate-size", "20k", "--min-free", "1GiB"});
  ASSERT_TRUE(line.ok()) << line.status().message();
  EXPECT_EQ(line->stream.rotation->max_bytes, 20'000u);
  EXPECT_EQ(line->stream.rotation->min_free_bytes, uint64_t{1} << 30);
  auto record = Parse({"record", "start", "--name", "n", "--rotate-size", "64MiB"});
  ASSERT_TRUE(record.ok()) << record.status().message();
  EXPECT_EQ(record->record.rotate_bytes, uint64_t{64} << 20);
  for (const char* flag : {"--rotate-files", "--rotate-seconds"}) {
    auto refused = Parse({"stream", "-w", "cap.pcapng", flag, "1k"});
    ASSERT_FALSE(refused.ok()) << flag;
    EXPECT_NE(refused.status().message().find(std::string(flag) + " takes"), std::string::npos)
        << refused.status().message();
  }
}

TEST(RecordOptionsTest, NameAsArgumentOrFlagButNotBoth) {
  auto flag = Parse({"record", "stop", "--name", "night"});
  ASSERT_TRUE(flag.ok()) << flag.status().message();
  EXPECT_EQ(flag->record.name, "night");
  EXPECT_FALSE(Parse({"record", "fetch", "a", "--name", "b"}).ok());
  // Options after NAME, as before.
  auto fetch = Parse({"record", "fetch", "night", "--agent", "10.0.0.5:50051/eth0"});
  ASSERT_TRUE(fetch.ok()) << fetch.status().message();
  EXPECT_EQ(fetch->record.agent.target, "10.0.0.5:50051");
}

}  // namespace
}  // namespace capd::client
