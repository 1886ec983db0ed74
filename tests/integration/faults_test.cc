// Faults: the captured interface disappearing mid-stream, capd killed mid-stream, and a thousand
// short streams. Each time the client ends promptly and truthfully with a valid file, and capd
// (when alive) keeps serving with the file descriptors, threads and memory it had before.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/agent_client.h"
#include "tests/support/proc_status.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;
constexpr uint64_t kMiB = 1024 * 1024;

class CaptureFaultTest : public HardenedAgentTest {};

// `ip link del veth0` while a stream captures on it: capctl exits 1 naming a capture error, the
// file holds what was captured and is valid, and capd serves the next stream (on lo).
TEST_F(CaptureFaultTest, InterfaceDeletedMidStreamEndsOnlyThatStream) {
  constexpr int kCount = 10;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  const auto file = File("deleted.pcapng");
  ASSERT_NO_FATAL_FAILURE(
      StartStream("deleted", {"-i", kIface, "-f", "udp", "-w", file.string()}, &capctl));
  const auto payloads = MakePayloads(kCount, "deleted");
  {
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  }
  ASSERT_NO_FATAL_FAILURE(WaitForPacketsInFile(file, kCount, *capctl));

  const CommandResult del = RunCommand({"ip", "-n", network().agent_ns(), "link", "del", kIface});
  ASSERT_TRUE(del.status.Exited(0)) << del.output;
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1, std::chrono::seconds(10)));
  const std::string summary = SummaryLine(capctl->Stderr());
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << capctl->Describe();
  EXPECT_NE(summary.find("capture error"), std::string::npos) << capctl->Describe();
  ExpectUdpPayloads(ReadOrFail(file), payloads, kPort);
  ExpectCapinfos(file, kCount);

  // capd serves on.
  ExpectAgentAlive();
  const UniqueFd lo_sink = AgentSocket("127.0.0.1", kPort);
  std::unique_ptr<Subprocess> next;
  ASSERT_NO_FATAL_FAILURE(StartStream("next",
                                      {"-i", "lo", "-f", "udp port " + std::to_string(kPort), "-c",
                                       "3", "-w", File("next.pcapng").string()},
                                      &next));
  const auto next_payloads = MakePayloads(3, "next");
  const UniqueFd sender = AgentSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(sender.get(), "127.0.0.1", kPort, next_payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*next, 0));
  ExpectUdpPayloads(ReadOrFail(File("next.pcapng")), next_payloads, kPort);
}

// kill -9 capd mid-stream: no goodbye from the agent at all. capctl exits 1 saying the agent
// went away and how many packets it wrote, and the file is complete and valid.
TEST_F(CaptureFaultTest, AgentKilledMidStreamLeavesAValidFile) {
  constexpr int kCount = 20;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  const auto file = File("killed.pcapng");
  ASSERT_NO_FATAL_FAILURE(
      StartStream("killed", {"-i", kIface, "-f", "udp", "-w", file.string()}, &capctl));
  const auto payloads = MakePayloads(kCount, "killed");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(WaitForPacketsInFile(file, kCount, *capctl));

  ASSERT_TRUE(agent().Signal(SIGKILL));
  const auto killed = agent().WaitFor(std::chrono::seconds(10));
  ASSERT_TRUE(killed.has_value() && !killed->exited && killed->signal == SIGKILL)
      << agent().Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1, std::chrono::seconds(10)));
  const std::string summary = SummaryLine(capctl->Stderr());
  EXPECT_NE(summary.find("agent went away"), std::string::npos) << capctl->Describe();
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << capctl->Describe();
  ExpectUdpPayloads(ReadOrFail(file), payloads, kPort);
  ExpectCapinfos(file, kCount);
}

// capd's own threads: the main one and one per stream's capture (they keep the process's name;
// gRPC names its threads, and its pools may grow and shrink on their own).
StatusOr<size_t> CapdThreads(pid_t pid) {
  auto threads = ThreadIds(pid);
  if (!threads.ok()) return threads.status();
  size_t count = 0;
  for (pid_t tid : *threads) count += ThreadName(pid, tid) == "capd" ? 1 : 0;
  return count;
}

// Samples capd's open fds and capture threads until they hold still for 100 ms (a stream's
// capture thread closes its ring after the call has finished, so the last ones may still be
// closing), at most 10 s.
void WaitUntilSettled(pid_t pid, size_t& fds_out, size_t& threads_out) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t fds = SIZE_MAX, threads = SIZE_MAX;
  int still = 0;
  while (still < 10 && std::chrono::steady_clock::now() < deadline) {
    auto f = OpenFdCount(pid);
    auto t = CapdThreads(pid);
    ASSERT_TRUE(f.ok() && t.ok());
    still = *f == fds && *t == threads ? still + 1 : 0;
    fds = *f;
    threads = *t;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  fds_out = fds;
  threads_out = threads;
}

// A thousand streams opened and closed on one connection, by two clients at once: half cancelled
// by the client as soon as the capture is open, half ended by the agent after 1 ms, and a
// refused request every tenth cycle. After a 20-cycle warm-up (gRPC's threads and buffers,
// glibc's arenas), capd's open file descriptors and capture threads return to where they were,
// and its resident memory grows by less than kRssGrowthAllowance.
//
// Each cycle opens and closes a 32 MiB capture ring (agent/capture/live_capture.h), which the
// kernel allocates and zeroes: ~25 ms to open and ~25 ms to close on 2 cores, so 1000 cycles one
// after the other took 47 s. Two clients bring that to about half.
TEST_F(CaptureFaultTest, ThousandShortStreamsLeaveFdsAndMemoryWhereTheyWere) {
  constexpr int kWarmup = 20;
  constexpr int kCycles = 1000;
  constexpr int kClients = 2;
  // Per-thread malloc arenas (a capture thread per stream) may settle a little higher than after
  // the warm-up; a leak of even one 256 KiB batch per stream would be 250 MiB. Measured: < 1 MiB.
  constexpr uint64_t kRssGrowthAllowance = 8 * kMiB;
  constexpr auto kCallTimeout = std::chrono::seconds(20);
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const pid_t pid = AgentPid();
  auto connected = ConnectInsecureIn(network().agent_ns(), "127.0.0.1", kAgentPort);
  ASSERT_TRUE(connected.ok()) << connected.status().message();
  const std::shared_ptr<grpc::Channel> channel = *connected;

  v1::StreamRequest cancelled;
  cancelled.set_interface(kIface);
  cancelled.set_filter("udp");
  v1::StreamRequest timed = cancelled;
  timed.set_duration_ms(1);
  v1::StreamRequest refused = cancelled;
  refused.set_snaplen(0);

  // One cycle; "" when it went as expected, else what went wrong. Called from several threads.
  auto cycle = [&](int i) -> std::string {
    const std::string where = "cycle " + std::to_string(i) + ": ";
    if (i % 2 == 0) {
      const StreamResult r =
          RunStream(channel, cancelled, StreamUntil::kFirstInterface, kCallTimeout);
      if (r.interfaces != 1 || r.status.error_code() != grpc::StatusCode::CANCELLED) {
        return where + "cancelled stream: " + std::to_string(r.interfaces) + " interfaces, " +
               Describe(r.status);
      }
    } else {
      const StreamResult r = RunStream(channel, timed, StreamUntil::kEnd, kCallTimeout);
      if (!r.status.ok() || !r.end || r.end->reason() != v1::StreamEnd::DURATION_REACHED) {
        return where + "1 ms stream: " + Describe(r.status) +
               (r.end ? ", end " + v1::StreamEnd::Reason_Name(r.end->reason()) : ", no end");
      }
    }
    if (i % 10 == 0) {
      const StreamResult r = RunStream(channel, refused, StreamUntil::kEnd, kCallTimeout);
      if (r.status.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
        return where + "snaplen 0: " + Describe(r.status);
      }
    }
    return "";
  };
  // Runs cycles [first, first + count) on kClients threads; the first failure stops them all.
  auto run_cycles = [&](int first, int count) {
    std::atomic<int> next{first};
    std::mutex mu;
    std::string failure;
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&] {
        for (int i = next++; i < first + count; i = next++) {
          std::string problem = cycle(i);
          if (problem.empty()) continue;
          std::lock_guard lock(mu);
          if (failure.empty()) failure = std::move(problem);
          next = first + count;
        }
      });
    }
    for (auto& t : clients) t.join();
    return failure;
  };

  const std::string warmup_failure = run_cycles(0, kWarmup);
  ASSERT_EQ(warmup_failure, "");
  size_t fds_before = 0, threads_before = 0;
  ASSERT_NO_FATAL_FAILURE(WaitUntilSettled(pid, fds_before, threads_before));
  auto rss_before = ResidentBytes(pid);
  ASSERT_TRUE(rss_before.ok()) << rss_before.status().message();

  const auto start = std::chrono::steady_clock::now();
  const std::string failure = run_cycles(kWarmup, kCycles);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(failure, "");
  size_t fds_after = 0, threads_after = 0;
  ASSERT_NO_FATAL_FAILURE(WaitUntilSettled(pid, fds_after, threads_after));
  auto rss_after = ResidentBytes(pid);
  ASSERT_TRUE(rss_after.ok()) << rss_after.status().message();
  std::printf(
      "%d stream cycles (%d clients) in %.1f s: fds %zu -> %zu, capd threads %zu -> %zu, VmRSS "
      "%.1f -> %.1f MiB (%+.2f MiB, allowed +%.0f MiB)\n",
      kCycles, kClients, seconds, fds_before, fds_after, threads_before, threads_after,
      *rss_before / double(kMiB), *rss_after / double(kMiB),
      (double(*rss_after) - double(*rss_before)) / kMiB, kRssGrowthAllowance / double(kMiB));
  EXPECT_EQ(fds_after, fds_before) << "capd's descriptors now:\n" << DescribeOpenFds(pid);
  EXPECT_EQ(threads_after, threads_before);
  if (kRssBoundsMeaningful) {
    EXPECT_LT(*rss_after, *rss_before + kRssGrowthAllowance);
  } else {
    std::printf("RSS growth not asserted: AddressSanitizer build (see kRssBoundsMeaningful)\n");
  }
  ExpectAgentAlive();
}

// Recordings started and stopped one after another (each stays listed and fetchable as
// "stopped"): capd's open descriptors and capture threads return to where they were. The issue's
// attack: 1,000 cycles took capd from 15 to 1,016 fds (an eventfd kept by each stopped
// recording), until captures failed with EMFILE. capd runs as deployed (--user nobody, the record
// folder its own).
TEST_F(CaptureFaultTest, RecordingCyclesLeaveNoDescriptorBehind) {
  constexpr int kWarmup = 5;
  constexpr int kCycles = 200;
  // The record folder belongs to capd's user, inside a test folder it may pass through.
  namespace fs = std::filesystem;
  const fs::path records = RecordFolderForNobody();
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string()}));
  const pid_t pid = AgentPid();
  auto connected = ConnectInsecureIn(network().agent_ns(), "127.0.0.1", kAgentPort);
  ASSERT_TRUE(connected.ok()) << connected.status().message();
  const auto stub = v1::Capture::NewStub(*connected);
  auto cycle = [&](int i) -> std::string {
    const std::string name = "cycle-" + std::to_string(i);
    v1::StartRecordingRequest start;
    start.set_name(name);
    start.set_interface(kIface);
    start.set_filter("udp port 7999");
    v1::RecordingInfo info;
    grpc::ClientContext start_context;
    start_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    grpc::Status status = stub->StartRecording(&start_context, start, &info);
    if (!status.ok()) return name + ": start: " + Describe(status);
    v1::StopRecordingRequest stop;
    stop.set_name(name);
    grpc::ClientContext stop_context;
    stop_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    status = stub->StopRecording(&stop_context, stop, &info);
    if (!status.ok()) return name + ": stop: " + Describe(status);
    if (info.state() != v1::RecordingInfo::STOPPED) {
      return name + ": " + v1::RecordingInfo::State_Name(info.state()) + " after stop";
    }
    return "";
  };
  for (int i = 0; i < kWarmup; ++i) ASSERT_EQ(cycle(i), "");
  size_t fds_before = 0, threads_before = 0;
  ASSERT_NO_FATAL_FAILURE(WaitUntilSettled(pid, fds_before, threads_before));
  for (int i = kWarmup; i < kWarmup + kCycles; ++i) ASSERT_EQ(cycle(i), "");
  size_t fds_after = 0, threads_after = 0;
  ASSERT_NO_FATAL_FAILURE(WaitUntilSettled(pid, fds_after, threads_after));
  std::printf("%d recording cycles: fds %zu -> %zu, capd threads %zu -> %zu\n", kCycles, fds_before,
              fds_after, threads_before, threads_after);
  EXPECT_LE(fds_after, fds_before + 2) << "capd's descriptors now:\n" << DescribeOpenFds(pid);
  EXPECT_EQ(threads_after, threads_before);
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
