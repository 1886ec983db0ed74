// Recordings end to end on a real veth (capd --record-dir, capctl record ...): the files of a
// recording hold exactly the packets sent, in order and byte for byte, each file within its size
// bound and readable by capinfos; the ring keeps the newest N; time rotation lands on wall-clock
// boundaries; a recording outlives the client that started it; a restarted agent resumes it with
// the gap noted; bad requests exit 2 with the agent's message.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7100;

class RecordingTest : public AgentTest {
 protected:
  std::filesystem::path RecordDir() const { return File("records"); }

  // capd with --record-dir, in the agent namespace; `name` keeps the logs of restarts apart.
  void StartRecordingAgent(const std::string& name = "capd") {
    ASSERT_NO_FATAL_FAILURE(Spawn(name,
                                  {kCapdPath, "--listen", kAgentTarget, "--name", "capd-it",
                                   "--record-dir", RecordDir().string()},
                                  &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  // `capctl record ARGS... --agent 127.0.0.1:50051`, run to its end; returns its exit code.
  int Record(const std::string& name, std::vector<std::string> args,
             std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> argv = {kCapctlPath, "record"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--agent");
    argv.push_back(kAgentTarget);
    Spawn(name, argv, out);
    auto status = (*out)->WaitFor(kExitTimeout);
    if (!status || !status->exited) return -1;
    return status->code;
  }

  // The recording's files, oldest first.
  std::vector<std::filesystem::path> Files(const std::string& recording) const {
    std::vector<std::filesystem::path> files;
    const std::regex pattern(recording + R"(_\d{5}_\d{14}\.pcapng)");
    for (const auto& e : std::filesystem::directory_iterator(RecordDir() / recording)) {
      if (std::regex_match(e.path().filename().string(), pattern)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  // Sends the payloads in rounds, waiting after each until the agent's recording has written
  // them (the listed packet count), so a test never races the recording's flush.
  void SendAndWait(const std::string& recording, const std::vector<std::string>& payloads,
                   uint64_t expected_total) {
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      std::unique_ptr<Subprocess> list;
      if (Record("list-" + std::to_string(lists_++), {"list"}, &list) == 0) {
        last = list->Stdout();
        if (last.find(recording + ": running") != std::string::npos &&
            last.find(", " + std::to_string(expected_total) + " packets") != std::string::npos) {
          return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL() << "the recording did not reach " << expected_total << " packets: " << last;
  }

  int lists_ = 0;
};

// The whole path: start, traffic, stop; every packet once, in order, files within the bound, the
// ring of the newest files, each file a complete capture for capinfos.
TEST_F(RecordingTest, FilesHoldEveryPacketWithinTheSizeBound) {
  constexpr int kCount = 300;
  constexpr uint64_t kMax = 20000;
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record("start",
                   {"start", "--name", "night", "-i", kIface, "-f", "udp port 7100",
                    "--rotate-size", "20k", "--rotate-files", "1000"},
                   &start),
            0)
      << start->Describe();
  const auto payloads = MakePayloads(kCount, "rec");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("night", payloads, kCount));
  // A fetch while it runs leaves out the file still being written (the traffic has ended, so
  // it stays the same file), and says so.
  std::unique_ptr<Subprocess> early;
  ASSERT_EQ(Record("fetch-running", {"fetch", "night", "--out", File("early").string()}, &early), 0)
      << early->Describe();
  const std::string open_file = Files("night").back().filename().string();
  EXPECT_NE(early->Stderr().find(open_file + ", the file it is writing, is not included"),
            std::string::npos)
      << early->Stderr();
  EXPECT_FALSE(std::filesystem::exists(File("early") / open_file));
  EXPECT_TRUE(std::filesystem::exists(File("early") / Files("night").front().filename()));

  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "night"}, &stop), 0) << stop->Describe();

  const auto files = Files("night");
  ASSERT_GT(files.size(), 5u);
  size_t total = 0;
  for (const auto& f : files) {
    EXPECT_LE(std::filesystem::file_size(f), kMax + 1500) << f;  // one packet over at most
    const auto packets = ReadOrFail(f);
    ExpectCapinfos(f, packets.size());
    total += packets.size();
  }
  EXPECT_EQ(total, static_cast<size_t>(kCount));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), payloads, kPort));

  // Fetch brings the same files to the client.
  std::unique_ptr<Subprocess> fetch;
  ASSERT_EQ(Record("fetch", {"fetch", "night", "--out", File("fetched").string()}, &fetch), 0)
      << fetch->Describe();
  for (const auto& f : files) {
    const auto copy = File("fetched") / f.filename();
    ASSERT_TRUE(std::filesystem::exists(copy)) << copy;
    EXPECT_EQ(std::filesystem::file_size(copy), std::filesystem::file_size(f));
  }
}

TEST_F(RecordingTest, RingKeepsTheNewestFilesWithTheLastPacket) {
  constexpr int kCount = 300;
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record("start",
                   {"start", "--name", "ring", "-i", kIface, "-f", "udp port 7100", "--rotate-size",
                    "10k", "--rotate-files", "3"},
                   &start),
            0)
      << start->Describe();
  const auto payloads = MakePayloads(kCount, "ring");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("ring", payloads, kCount));
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "ring"}, &stop), 0) << stop->Describe();
  const auto files = Files("ring");
  ASSERT_EQ(files.size(), 3u);
  const auto kept = ReadAllOrFail(files);
  ASSERT_FALSE(kept.empty());
  // The kept packets are the tail of what was sent, the very last one in the newest file.
  const std::vector<std::string> tail(payloads.end() - static_cast<long>(kept.size()),
                                      payloads.end());
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(kept, tail, kPort));
  const auto newest = ReadOrFail(files.back());
  ASSERT_FALSE(newest.empty());
  EXPECT_EQ(newest.back().bytes, kept.back().bytes);
}

// --rotate-seconds 2: every file after the first is named after an even second (a boundary
// since midnight UTC), and its packets lie within [name, name + 2 s).
TEST_F(RecordingTest, TimeRotationLandsOnWallClockBoundaries) {
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record("start",
                   {"start", "--name", "timed", "-i", kIface, "-f", "udp port 7100",
                    "--rotate-seconds", "2", "--rotate-files", "100"},
                   &start),
            0)
      << start->Describe();
  const UniqueFd peer = PeerSocket();
  std::vector<std::string> sent;
  // About 5 s of traffic, a packet every 250 ms: it crosses at least two boundaries.
  for (int i = 0; i < 20; ++i) {
    sent.push_back("tick-" + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, {sent.back()}));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_NO_FATAL_FAILURE(SendAndWait("timed", {}, sent.size()));
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "timed"}, &stop), 0) << stop->Describe();
  const auto files = Files("timed");
  ASSERT_GE(files.size(), 3u);
  for (size_t i = 1; i < files.size(); ++i) {
    const std::string name = files[i].filename().string();
    struct tm utc = {};
    strptime(name.substr(name.size() - 21, 14).c_str(), "%Y%m%d%H%M%S", &utc);
    const int64_t start_s = timegm(&utc);
    EXPECT_EQ(start_s % 2, 0) << name;
    for (const auto& p : ReadOrFail(files[i])) {
      EXPECT_GE(static_cast<int64_t>(p.ts_ns / 1'000'000'000), start_s) << name;
      EXPECT_LT(static_cast<int64_t>(p.ts_ns / 1'000'000'000), start_s + 2) << name;
    }
  }
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), sent, kPort));
}

// Started by one client that then goes away, stopped by another: nothing is lost in between.
// The stop comes from a second capctl process, and the list from a third.
TEST_F(RecordingTest, OutlivesTheClientThatStartedIt) {
  constexpr int kCount = 100;
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(
      Record("start", {"start", "--name", "alone", "-i", kIface, "-f", "udp port 7100"}, &start),
      0);
  // The starting client has exited; the traffic comes afterwards.
  const auto payloads = MakePayloads(kCount, "alone");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("alone", payloads, kCount));
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "alone"}, &stop), 0) << stop->Describe();
  std::unique_ptr<Subprocess> list;
  ASSERT_EQ(Record("list", {"list"}, &list), 0);
  EXPECT_NE(list->Stdout().find("alone: stopped"), std::string::npos) << list->Stdout();
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(Files("alone")), payloads, kPort));
}

// capd stopped (SIGTERM) and started again: the recording resumes by itself, the gap is listed
// and noted in the first new file, and the files of both runs together hold both rounds.
TEST_F(RecordingTest, RestartedAgentResumesTheRecording) {
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent("capd-1"));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(
      Record("start", {"start", "--name", "phoenix", "-i", kIface, "-f", "udp port 7100"}, &start),
      0);
  const auto first = MakePayloads(40, "before");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("phoenix", first, first.size()));
  ASSERT_NO_FATAL_FAILURE(StopAgent());
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent("capd-2"));
  ASSERT_TRUE(agent_->WaitForStderr("recording phoenix resumed", kStartTimeout))
      << agent_->Describe();
  const auto second = MakePayloads(40, "after");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("phoenix", second, first.size() + second.size()));
  std::unique_ptr<Subprocess> list;
  ASSERT_EQ(Record("list", {"list"}, &list), 0);
  EXPECT_NE(list->Stdout().find("gap: capd was not recording from"), std::string::npos)
      << list->Stdout();
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "phoenix"}, &stop), 0) << stop->Describe();
  std::vector<std::string> all = first;
  all.insert(all.end(), second.begin(), second.end());
  const auto files = Files("phoenix");
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), all, kPort));
  bool noted = false;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    noted = noted || bytes.find("recording resumed: capd was not recording") != std::string::npos;
  }
  EXPECT_TRUE(noted) << "no file carries the gap note";
}

// kill -9 of capd while a recording with an upload destination writes its file: that file never
// got its finished note, so capd-upload would never send it. When the recording resumes, capd
// writes the note from the file's own blocks, and the file counts as awaiting upload.
TEST_F(RecordingTest, KilledAgentsUnfinishedFileIsNotedForUploadWhenTheRecordingResumes) {
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent("capd-1"));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record("start",
                   {"start", "--name", "crash", "-i", kIface, "-f", "udp port 7100", "--upload",
                    "s3://capd-test-bucket/crash"},
                   &start),
            0)
      << start->Describe();
  const auto payloads = MakePayloads(40, "unfinished");
  ASSERT_NO_FATAL_FAILURE(SendAndWait("crash", payloads, payloads.size()));
  const auto before = Files("crash");
  ASSERT_EQ(before.size(), 1u);
  const std::filesystem::path note = before[0].string() + ".finished";
  EXPECT_FALSE(std::filesystem::exists(note)) << "the file being written has no note";
  ASSERT_TRUE(agent_->Signal(SIGKILL));
  ASSERT_TRUE(agent_->WaitFor(kStartTimeout).has_value());

  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent("capd-2"));
  ASSERT_TRUE(agent_->WaitForStderr("recording crash resumed", kStartTimeout))
      << agent_->Describe();
  ASSERT_TRUE(std::filesystem::exists(note)) << agent_->Describe();
  std::ifstream in(note);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("packets 40\n"), std::string::npos) << text;
  EXPECT_NE(text.find("link_types 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("interface " + std::string(kIface) + "\t"), std::string::npos) << text;
  std::unique_ptr<Subprocess> list;
  ASSERT_EQ(Record("list", {"list"}, &list), 0);
  EXPECT_NE(list->Stdout().find("1 files awaiting upload"), std::string::npos) << list->Stdout();
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record("stop", {"stop", "crash"}, &stop), 0) << stop->Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail({before[0]}), payloads, kPort));
}

TEST_F(RecordingTest, BadRequestsExitTwoWithTheAgentsMessage) {
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  std::unique_ptr<Subprocess> p;
  for (const std::string& bad : std::vector<std::string>{
           "../escape", "a/b", "..", ".", "...", "-rf", ".hidden", "_x", std::string(65, 'x')}) {
    EXPECT_EQ(Record("bad", {"start", "--name", bad, "-i", kIface}, &p), 2) << bad;
    EXPECT_NE(p->Stderr().find("is not valid"), std::string::npos) << p->Stderr();
  }
  EXPECT_FALSE(std::filesystem::exists(File("escape")));
  ASSERT_EQ(Record("first", {"start", "--name", "twice", "-i", kIface}, &p), 0) << p->Describe();
  EXPECT_EQ(Record("dup", {"start", "--name", "twice", "-i", kIface}, &p), 2);
  EXPECT_NE(p->Stderr().find("already exists"), std::string::npos) << p->Stderr();
  EXPECT_EQ(Record("unknown", {"stop", "nosuch"}, &p), 2);
  EXPECT_NE(p->Stderr().find("no recording named 'nosuch'"), std::string::npos) << p->Stderr();
  EXPECT_EQ(Record("noiface", {"start", "--name", "x", "-i", "nosuch0"}, &p), 2) << p->Describe();
  ASSERT_EQ(Record("stop", {"stop", "twice"}, &p), 0);
}

TEST_F(RecordingTest, NotEnabledIsAFailedPrecondition) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());  // no --record-dir
  std::unique_ptr<Subprocess> p;
  EXPECT_EQ(Record("start", {"start", "--name", "x", "-i", kIface}, &p), 2);
  EXPECT_NE(p->Stderr().find("recordings are not enabled"), std::string::npos) << p->Stderr();
  EXPECT_EQ(Record("list", {"list"}, &p), 2);
}

}  // namespace
}  // namespace capd::test
