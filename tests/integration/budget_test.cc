// Budgets for what runs without a client watching (issue 16 item 3): recordings, their rotation
// bounds, and fetches of their files. The findings: 60 recordings with --max-streams 2
// all started (RSS 1.99 GB, 190 threads); max_bytes=1 with max_files=2^32-1 was accepted (one
// file per packet, never trimmed); 400 FetchRecording calls whose clients never read took capd
// to 842 MiB, still 823 MiB after they were cancelled, with no stall timeout as streams have.
// Requests go through the test's own gRPC client (tests/support/agent_client.h): many calls at
// once without many processes, and calls that never read.

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/agent_client.h"
#include "tests/support/proc_status.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kLoopback[] = "127.0.0.1";
constexpr uint64_t kMiB = 1024 * 1024;
constexpr auto kCallTimeout = std::chrono::seconds(30);

std::chrono::system_clock::time_point Deadline(std::chrono::seconds in = kCallTimeout) {
  return std::chrono::system_clock::now() + in;
}

class BudgetTest : public HardenedAgentTest {
 protected:
  void TearDown() override {
    stubs_.clear();
    channels_.clear();  // before capd stops: an open connection holds up its shutdown
    HardenedAgentTest::TearDown();
  }

  // `count` connections to capd (each its own TCP connection), as stubs. Without BDP probing the
  // client's receive window stays at HTTP/2's 64 KiB, so a call it does not read stalls capd's
  // writes at once (with it, gRPC grows the window on loopback until a client that never reads
  // still takes in tens of MiB per call, and such a fetch simply completes).
  void Connect(size_t count = 1) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    for (size_t i = 0; i < count; ++i) {
      auto channel = ConnectInsecureIn(network().agent_ns(), kLoopback, kAgentPort, arguments);
      ASSERT_TRUE(channel.ok()) << channel.status().message();
      channels_.push_back(*channel);
      stubs_.push_back(v1::Capture::NewStub(*channel));
    }
  }
  v1::Capture::Stub& stub(size_t i = 0) { return *stubs_[i % stubs_.size()]; }

  grpc::Status StartRecording(const v1::StartRecordingRequest& request, size_t via = 0) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::RecordingInfo info;
    return stub(via).StartRecording(&context, request, &info);
  }
  grpc::Status StopRecording(const std::string& name) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::StopRecordingRequest request;
    request.set_name(name);
    v1::RecordingInfo info;
    return stub().StopRecording(&context, request, &info);
  }

  static v1::StartRecordingRequest Recording(const std::string& name, const std::string& filter) {
    v1::StartRecordingRequest request;
    request.set_name(name);
    request.set_interface(kIface);
    request.set_filter(filter);
    return request;
  }

  // A stopped recording NAME on disk, as capd leaves one, with `files` files of `bytes` random
  // bytes each (a fetch sends files as they are; they need not be pcapng). Returns their bytes,
  // concatenated, oldest first.
  std::string PlantStoppedRecording(const fs::path& records, const std::string& name, int files,
                                    size_t bytes) {
    const fs::path dir = records / name;
    fs::create_directories(dir);
    std::ofstream(dir / "request.txtpb")
        << "name: \"" << name << "\"\ninterface: \"" << kIface << "\"\n";
    std::ofstream(dir / "recording.state") << "state STOPPED\nstarted_ns 1\n";
    std::mt19937_64 random(42);
    std::string all;
    for (int i = 0; i < files; ++i) {
      std::string data(bytes, '\0');
      for (size_t k = 0; k + 8 <= bytes; k += 8) {
        const uint64_t word = random();
        std::memcpy(&data[k], &word, 8);
      }
      char file[128];
      std::snprintf(file, sizeof file, "%s_%05d_20260101000000.pcapng", name.c_str(), i + 1);
      std::ofstream(dir / file, std::ios::binary) << data;
      all += data;
    }
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      EXPECT_EQ(chown(entry.path().c_str(), 65534, 65534), 0);
    }
    EXPECT_EQ(chown(dir.c_str(), 65534, 65534), 0);
    return all;
  }

  // Fetches NAME to the end; the bytes of every chunk, concatenated.
  grpc::Status FetchAll(const std::string& name, std::string* bytes) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::FetchRecordingRequest request;
    request.set_name(name);
    auto reader = stub().FetchRecording(&context, request);
    v1::RecordingChunk chunk;
    while (reader->Read(&chunk)) *bytes += chunk.data();
    return reader->Finish();
  }

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Capture::Stub>> stubs_;
};

// capd's threads, counted from /proc.
size_t ThreadCount(pid_t pid) {
  auto threads = ThreadIds(pid);
  return threads.ok() ? threads->size() : 0;
}

// 60 recordings started at once, each with a filter of its own (so each would hold its own
// capture ring and threads), against --max-recordings 4: exactly 4 start, the other 56 are
// refused with RESOURCE_EXHAUSTED naming the flag, and capd's threads and memory grow by what 4
// recordings cost, not 60. Stopping one frees a place. capd runs as deployed (--user nobody).
TEST_F(BudgetTest, SixtyRecordingStartsWithABudgetOfFour) {
  constexpr int kStarts = 60;
  constexpr int kBudget = 4;
  const fs::path records = RecordFolderForNobody();
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string(),
                      "--max-recordings", std::to_string(kBudget), "--max-streams", "2"}));
  const pid_t pid = AgentPid();
  ASSERT_NO_FATAL_FAILURE(Connect(4));
  const size_t threads_before = ThreadCount(pid);
  auto rss_before = ResidentBytes(pid);
  ASSERT_TRUE(rss_before.ok()) << rss_before.status().message();

  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < kStarts; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      return StartRecording(
          Recording("budget-" + std::to_string(i), "udp port " + std::to_string(7100 + i)),
          static_cast<size_t>(i));
    }));
  }
  int started = 0, refused = 0;
  std::string started_names;
  for (int i = 0; i < kStarts; ++i) {
    const grpc::Status status = calls[static_cast<size_t>(i)].get();
    if (status.ok()) {
      ++started;
      started_names += " budget-" + std::to_string(i);
      continue;
    }
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(status);
    EXPECT_NE(status.error_message().find("--max-recordings"), std::string::npos)
        << Describe(status);
    ++refused;
  }
  EXPECT_EQ(started, kBudget) << "started:" << started_names;
  EXPECT_EQ(refused, kStarts - kBudget);

  const size_t threads_after = ThreadCount(pid);
  auto rss_after = ResidentBytes(pid);
  ASSERT_TRUE(rss_after.ok()) << rss_after.status().message();
  std::printf(
      "%d recording starts, budget %d: %d started, %d refused; capd threads %zu -> %zu, VmRSS "
      "%.1f -> %.1f MiB\n",
      kStarts, kBudget, started, refused, threads_before, threads_after, *rss_before / double(kMiB),
      *rss_after / double(kMiB));
  // Per recording: a capture thread, a writer thread and the shared capture's thread (3); its
  // 32 MiB ring, counted in RSS once mapped. Beyond those, gRPC's callback threads grow with 60
  // calls at once and each start ran on a thread of its own, some still ending (measured: 2 to
  // 4 more). 60 recordings were 190 threads and 1.99 GB.
  EXPECT_LE(threads_after, threads_before + 3 * kBudget + 10);
  if (kRssBoundsMeaningful) {
    EXPECT_LE(*rss_after, *rss_before + kBudget * 40 * kMiB);
  }

  // A place frees when a recording stops; a stopped recording keeps its name.
  std::vector<std::string> names;
  for (size_t at = 1; at < started_names.size();) {
    const size_t end = started_names.find(' ', at);
    names.push_back(started_names.substr(at, end - at));
    at = end == std::string::npos ? started_names.size() : end + 1;
  }
  ASSERT_FALSE(names.empty());
  ASSERT_TRUE(StopRecording(names.front()).ok());
  EXPECT_TRUE(StartRecording(Recording("after-stop", "udp port 7099")).ok());
  const grpc::Status over = StartRecording(Recording("over", "udp port 7098"));
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(over);
  ExpectAgentAlive();
}

// capd restarted with a smaller budget than the recordings it left running: it resumes that
// many (in name order) and marks the others failed, saying why, instead of running them all.
TEST_F(BudgetTest, RestartWithASmallerBudgetResumesOnlyThatMany) {
  const fs::path records = RecordFolderForNobody();
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir",
                                          records.string(), "--max-recordings", "3"}));
  ASSERT_NO_FATAL_FAILURE(Connect());
  for (int i = 0; i < 3; ++i) {
    const grpc::Status started = StartRecording(
        Recording("resume-" + std::to_string(i), "udp port " + std::to_string(7200 + i)));
    ASSERT_TRUE(started.ok()) << Describe(started);
  }
  stubs_.clear();
  channels_.clear();
  ASSERT_NO_FATAL_FAILURE(StopAgent());  // the three stay "running", to resume
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir",
                                          records.string(), "--max-recordings", "2"}));
  ASSERT_NO_FATAL_FAILURE(Connect());
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  v1::ListRecordingsResponse list;
  const grpc::Status listed = stub().ListRecordings(&context, {}, &list);
  ASSERT_TRUE(listed.ok()) << Describe(listed);
  ASSERT_EQ(list.recordings_size(), 3);
  std::map<std::string, const v1::RecordingInfo*> by_name;
  for (const auto& r : list.recordings()) by_name[r.name()] = &r;
  EXPECT_EQ(by_name.at("resume-0")->state(), v1::RecordingInfo::RUNNING);
  EXPECT_EQ(by_name.at("resume-1")->state(), v1::RecordingInfo::RUNNING);
  EXPECT_EQ(by_name.at("resume-2")->state(), v1::RecordingInfo::FAILED);
  EXPECT_NE(by_name.at("resume-2")
                ->message()
                .find("not resumed: 2 recordings were already "
                      "running, capd's limit (--max-recordings)"),
            std::string::npos)
      << by_name.at("resume-2")->message();
  ExpectAgentAlive();
}

// Rotation bounds: a size under 10 kB (a file per packet or two) or over 1 TB, a file count over
// 100,000 (the max_files = 2^32-1) are INVALID_ARGUMENT with the bounds in the message,
// and start nothing; the bounds themselves are accepted.
TEST_F(BudgetTest, RotationOutsideItsBoundsIsInvalid) {
  const fs::path records = RecordFolderForNobody();
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string()}));
  ASSERT_NO_FATAL_FAILURE(Connect());
  struct Case {
    uint64_t max_bytes;
    uint32_t max_files;
    bool ok;
    std::string text;
  };
  const std::vector<Case> cases = {
      {1, 0, false, "10 kB to 1 TB"},
      {1, 4294967295u, false, "10 kB to 1 TB"},
      {0, 4294967295u, false, "1..100000"},
      {9'999, 0, false, "10 kB to 1 TB"},
      {1'000'000'000'001, 0, false, "10 kB to 1 TB"},
      {0, 100'001, false, "1..100000"},
      {10'000, 100'000, true, ""},
      {0, 0, true, ""},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE("max_bytes " + std::to_string(c.max_bytes) + ", max_files " +
                 std::to_string(c.max_files));
    const std::string name = "rotation-" + std::to_string(i++);
    v1::StartRecordingRequest request = Recording(name, "udp port 7999");
    request.mutable_rotation()->set_max_bytes(c.max_bytes);
    request.mutable_rotation()->set_max_files(c.max_files);
    const grpc::Status status = StartRecording(request);
    if (c.ok) {
      EXPECT_TRUE(status.ok()) << Describe(status);
      EXPECT_TRUE(StopRecording(name).ok());
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
      EXPECT_NE(status.error_message().find(c.text), std::string::npos) << Describe(status);
      EXPECT_FALSE(fs::exists(records / name)) << "a refused recording left its folder";
    }
  }
  ExpectAgentAlive();
}

// 400 fetches of a 24 MiB recording whose clients never read, over 8 connections: --max-fetches
// (default 8) are served, the other 392 are RESOURCE_EXHAUSTED at once; capd's memory grows by
// what 8 fetches buffer (a 256 KiB chunk each plus gRPC's flow-control window), not 400 (the
// issue: 842 MiB). Once the clients cancel, the places are free again: a new fetch gets every
// byte, and capd's memory is back within the bound.
TEST_F(BudgetTest, FourHundredFetchesThatNeverReadAreBounded) {
  constexpr int kFetches = 400;
  constexpr int kBudget = 8;  // capd's default --max-fetches
  // What 8 stalled fetches may add: a chunk (256 KiB) and gRPC's buffers for a client that does
  // not read (the message being written and HTTP/2 frames up to the window, a few MiB) each,
  // plus allocator slack.
  constexpr uint64_t kRssAllowance = 64 * kMiB;
  const fs::path records = RecordFolderForNobody();
  const std::string sent = PlantStoppedRecording(records, "big", 3, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string()}));
  const pid_t pid = AgentPid();
  ASSERT_NO_FATAL_FAILURE(Connect(8));
  auto baseline = ResidentBytes(pid);
  ASSERT_TRUE(baseline.ok()) << baseline.status().message();

  // Each call reads its first message only, which tells a served fetch (a chunk) from a refused
  // one (no message, the status): then it never reads again.
  struct Call {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::RecordingChunk>> reader;
  };
  std::vector<std::unique_ptr<Call>> calls;
  v1::FetchRecordingRequest request;
  request.set_name("big");
  int served = 0, refused = 0;
  for (int i = 0; i < kFetches; ++i) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(Deadline(std::chrono::seconds(120)));
    call->reader = stub(static_cast<size_t>(i)).FetchRecording(&call->context, request);
    v1::RecordingChunk first;
    if (call->reader->Read(&first)) {
      ++served;
      calls.push_back(std::move(call));
      continue;
    }
    const grpc::Status status = call->reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(status);
    EXPECT_NE(status.error_message().find("--max-fetches"), std::string::npos) << Describe(status);
    ++refused;
  }
  EXPECT_EQ(served, kBudget);
  EXPECT_EQ(refused, kFetches - kBudget);
  auto peak = ResidentBytes(pid);
  ASSERT_TRUE(peak.ok()) << peak.status().message();

  // The clients give up.
  for (auto& call : calls) call->context.TryCancel();
  for (auto& call : calls) {
    const grpc::Status status = call->reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << Describe(status);
  }
  calls.clear();

  // The cancelled fetches are gone (their places are free): a fetch reads the whole recording.
  // Retried while capd is still finishing the cancelled calls (OnDone comes after the cancel).
  std::string fetched;
  grpc::Status whole;
  const auto until = std::chrono::steady_clock::now() + kStartTimeout;
  do {
    fetched.clear();
    whole = FetchAll("big", &fetched);
  } while (whole.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           std::chrono::steady_clock::now() < until);
  EXPECT_TRUE(whole.ok()) << Describe(whole);
  EXPECT_EQ(fetched.size(), sent.size());
  EXPECT_TRUE(fetched == sent) << "the fetched bytes differ from the files";
  auto after = ResidentBytes(pid);
  ASSERT_TRUE(after.ok()) << after.status().message();
  std::printf(
      "%d fetches that never read: %d served, %d refused; capd VmRSS %.1f MiB before, %.1f MiB "
      "with them open (+%.1f, allowed +%.1f), %.1f MiB after cancelling and one full fetch\n",
      kFetches, served, refused, *baseline / double(kMiB), *peak / double(kMiB),
      (double(*peak) - double(*baseline)) / kMiB, kRssAllowance / double(kMiB),
      *after / double(kMiB));
  if (kRssBoundsMeaningful) {
    EXPECT_LE(*peak, *baseline + kRssAllowance);
    EXPECT_LE(*after, *baseline + kRssAllowance);
  }
  ExpectAgentAlive();
}

// A fetch whose client reads nothing (after its first chunk) is ended by capd after --stall-timeout
// (2 s here; 60 s by default), as a stream is: the client sees CANCELLED, capd logs why, and the
// place is free.
TEST_F(BudgetTest, StalledFetchIsEndedAfterTheStallTimeout) {
  const fs::path records = RecordFolderForNobody();
  PlantStoppedRecording(records, "big", 2, 8 * kMiB);
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string(),
                      "--stall-timeout", "2", "--max-fetches", "1"}));
  ASSERT_NO_FATAL_FAILURE(Connect());
  grpc::ClientContext context;
  context.set_deadline(Deadline(std::chrono::seconds(60)));
  v1::FetchRecordingRequest request;
  request.set_name("big");
  const auto start = std::chrono::steady_clock::now();
  auto reader = stub().FetchRecording(&context, request);
  v1::RecordingChunk first;
  ASSERT_TRUE(reader->Read(&first)) << "the fetch was not served";
  ASSERT_TRUE(agent().WaitForStderr("has read nothing for 2 s; ending it", kExitTimeout))
      << agent().Describe();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // gRPC hands the client the call's status only once it has read what it had received: the
  // chunks that were in flight, then the end.
  size_t chunks = 1;
  while (reader->Read(&first)) ++chunks;
  const grpc::Status status = reader->Finish();
  std::printf("the stalled fetch was ended after %.1f s (%zu chunks received): %s\n", seconds,
              chunks, Describe(status).c_str());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << Describe(status);
  EXPECT_LT(chunks * 256 * 1024, 16 * kMiB) << "the fetch was not stalled";
  EXPECT_GE(seconds, 2.0);
  EXPECT_LT(seconds, 15.0);
  EXPECT_NE(LineWith(agent().Stderr(), "ending it").find("fetch of recording big"),
            std::string::npos)
      << agent().Describe();
  // The only place (--max-fetches 1) is free again.
  std::string fetched;
  grpc::Status whole;
  const auto until = std::chrono::steady_clock::now() + kStartTimeout;
  do {
    fetched.clear();
    whole = FetchAll("big", &fetched);
  } while (whole.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           std::chrono::steady_clock::now() < until);
  EXPECT_TRUE(whole.ok()) << Describe(whole);
  EXPECT_EQ(fetched.size(), 16 * kMiB);
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
