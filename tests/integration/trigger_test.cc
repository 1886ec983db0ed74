// capctl stream --start-on/--stop-on on a real veth, against a tcpdump reference of the whole
// run: the file starts exactly at the first packet within --before of the start marker and ends
// exactly --after-count packets after the stop marker; the markers carry comments Wireshark
// reads; a trigger that never matches leaves a header-only file and says so; a flood while
// waiting keeps capd's memory within its history bound and reports what it dropped; a bad
// trigger filter is refused. capd runs as root and as deployed (--user nobody).

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "proto/capture.grpc.pb.h"
#include "tests/integration/agent_fixture.h"
#include "tests/support/proc_status.h"
#include "tests/support/tshark_dissection.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;       // the sequence-numbered traffic
constexpr uint16_t kStartPort = 7001;  // the start marker
constexpr uint16_t kStopPort = 7002;   // the stop marker
constexpr size_t kUdpHeaders = 14 + 20 + 8;

// The UDP destination port of an Ethernet/IPv4 frame without options.
uint16_t DstPort(const CapturedPacket& p) {
  if (p.bytes.size() < 14 + 20 + 4) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(p.bytes[14 + 20 + 2]) << 8) |
                               static_cast<uint8_t>(p.bytes[14 + 20 + 3]));
}

size_t IndexOfPort(const std::vector<CapturedPacket>& packets, uint16_t port) {
  for (size_t i = 0; i < packets.size(); ++i) {
    if (DstPort(packets[i]) == port) return i;
  }
  return packets.size();
}

class TriggerTest : public AgentTest {
 protected:
  void StartAgentAs(const std::string& user, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {kCapdPath, "--listen", kAgentTarget,
                                     "--name",  "capd-it",  "--no-metadata"};
    if (!user.empty()) argv.insert(argv.end(), {"--user", user});
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_NO_FATAL_FAILURE(
        Spawn("capd-" + (user.empty() ? std::string("root") : user), argv, &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  // Sends `payloads` one by one, `gap` apart, so that the run spans packet time.
  void SendPaced(int fd, uint16_t port, const std::vector<std::string>& payloads,
                 std::chrono::microseconds gap) {
    for (const auto& payload : payloads) {
      ASSERT_NO_FATAL_FAILURE(SendAll(fd, kDst, port, {payload}));
      std::this_thread::sleep_for(gap);
    }
  }

  // The frame.comment of every packet, as tshark (Wireshark 4.0) reads the file.
  std::vector<std::string> Comments(const std::filesystem::path& file) {
    const CommandResult r =
        RunCommand({"tshark", "-n", "-r", file.string(), "-T", "fields", "-e", "frame.comment"});
    EXPECT_TRUE(r.status.exited && r.status.code == 0) << r.output;
    std::vector<std::string> lines;
    size_t from = 0;
    while (from < r.output.size()) {
      size_t end = r.output.find('\n', from);
      if (end == std::string::npos) end = r.output.size();
      const std::string line = r.output.substr(from, end - from);
      // (tshark's warning about running as root comes on stderr, merged here)
      if (line.rfind("Running as user", 0) != 0) lines.push_back(line);
      from = end + 1;
    }
    return lines;
  }
};

// --start-on M1 --before 0.4 --stop-on M2 --after-count 20: the file is exactly the reference's
// packets from the first one at or after (M1's time - 0.4 s) to the 20th after M2, byte for byte
// and to the nanosecond; M1 and M2 carry the comments; capctl ends by itself and says why.
TEST_F(TriggerTest, StartsBeforeTheMarkerAndStopsCountAfterIt) {
  if (!HaveTshark()) GTEST_SKIP() << "tshark is not installed";
  for (const std::string user : {"", "nobody"}) {
    SCOPED_TRACE(user.empty() ? "capd as root" : "capd --user nobody");
    ASSERT_NO_FATAL_FAILURE(StartAgentAs(user));
    const UniqueFd sink = AgentSocket(kDst, kPort);
    const UniqueFd sink_start = AgentSocket(kDst, kStartPort);
    const UniqueFd sink_stop = AgentSocket(kDst, kStopPort);
    constexpr int kBefore = 200, kBetween = 100, kAfter = 60, kAfterCount = 20;
    constexpr int kTotal = kBefore + 1 + kBetween + 1 + kAfter;
    const std::string tag = user.empty() ? "root" : user;
    const auto ref_path = File("ref-" + tag + ".pcap");
    const auto out_path = File("out-" + tag + ".pcapng");
    std::unique_ptr<Subprocess> tcpdump, capctl;
    ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump-" + tag, kIface, ref_path,
                                         {"-c", std::to_string(kTotal), "udp"}, &tcpdump));
    ASSERT_NO_FATAL_FAILURE(StartStream(
        "capctl-" + tag,
        {"-i", kIface, "-f", "udp", "--start-on", "udp dst port " + std::to_string(kStartPort),
         "--before", "0.4", "--stop-on", "udp dst port " + std::to_string(kStopPort),
         "--after-count", std::to_string(kAfterCount), "-w", out_path.string()},
        &capctl));
    const UniqueFd peer = PeerSocket();
    // 5 ms apart: the 200 packets before the marker span about a second, of which the 0.4 s
    // before it are wanted.
    const auto gap = std::chrono::microseconds(5000);
    ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kBefore, "pre"), gap));
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStartPort, {"start-marker"}));
    ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kBetween, "mid"), gap));
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStopPort, {"stop-marker"}));
    ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kAfter, "post"), gap));

    ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
    const std::string err = capctl->Stderr();
    EXPECT_NE(err.find("start-on matched at "), std::string::npos) << err;
    EXPECT_NE(SummaryLine(err).find("(stop-on matched at "), std::string::npos) << err;

    const auto ref = ReadOrFail(ref_path);
    const auto out = ReadOrFail(out_path);
    ASSERT_EQ(ref.size(), static_cast<size_t>(kTotal));
    const size_t start = IndexOfPort(ref, kStartPort);
    const size_t stop = IndexOfPort(ref, kStopPort);
    ASSERT_LT(stop, ref.size());
    size_t first = 0;
    while (ref[first].ts_ns < ref[start].ts_ns - 400'000'000ULL) ++first;
    ASSERT_GT(first, 0u) << "the run must reach back further than --before";
    const size_t last = stop + kAfterCount;  // inclusive
    ASSERT_EQ(out.size(), last - first + 1) << "first " << first << ", last " << last;
    for (size_t i = 0; i < out.size(); ++i) {
      SCOPED_TRACE("packet " + std::to_string(i));
      EXPECT_EQ(out[i].ts_ns, ref[first + i].ts_ns);
      EXPECT_TRUE(out[i].bytes == ref[first + i].bytes) << "bytes differ";
      if (HasFailure()) break;
    }
    EXPECT_EQ(out.front().bytes.size() > kUdpHeaders, true);

    // Wireshark reads the markers' comments, on those packets only.
    const auto comments = Comments(out_path);
    ASSERT_EQ(comments.size(), out.size());
    for (size_t i = 0; i < comments.size(); ++i) {
      if (first + i == start) {
        EXPECT_EQ(comments[i], "capd: start-on matched: udp dst port 7001");
      } else if (first + i == stop) {
        EXPECT_EQ(comments[i], "capd: stop-on matched: udp dst port 7002");
      } else {
        EXPECT_EQ(comments[i], "") << "packet " << i;
      }
    }
    ASSERT_NO_FATAL_FAILURE(StopAgent());
  }
}

// --stop-on M --after 0.2: every packet up to M's time + 0.2 s, none after, checked against the
// reference; the stream then ends by itself although the link has gone quiet.
TEST_F(TriggerTest, StopAfterSecondsOfPacketTime) {
  ASSERT_NO_FATAL_FAILURE(StartAgentAs("nobody"));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd sink_stop = AgentSocket(kDst, kStopPort);
  constexpr int kBefore = 30, kAfter = 100;
  constexpr int kTotal = kBefore + 1 + kAfter;
  std::unique_ptr<Subprocess> tcpdump, capctl;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, File("ref.pcap"),
                                       {"-c", std::to_string(kTotal), "udp"}, &tcpdump));
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl",
      {"-i", kIface, "-f", "udp", "--stop-on", "udp dst port " + std::to_string(kStopPort),
       "--after", "0.2", "-w", File("out.pcapng").string()},
      &capctl));
  const UniqueFd peer = PeerSocket();
  const auto gap = std::chrono::microseconds(5000);
  ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kBefore, "pre"), gap));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStopPort, {"stop-marker"}));
  // 100 packets 5 ms apart: half a second, of which 0.2 s are wanted.
  ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kAfter, "post"), gap));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  EXPECT_NE(SummaryLine(capctl->Stderr()).find("(stop-on matched at "), std::string::npos)
      << capctl->Stderr();
  const auto ref = ReadOrFail(File("ref.pcap"));
  const auto out = ReadOrFail(File("out.pcapng"));
  ASSERT_EQ(ref.size(), static_cast<size_t>(kTotal));
  const size_t stop = IndexOfPort(ref, kStopPort);
  ASSERT_LT(stop, ref.size());
  size_t last = stop;
  while (last + 1 < ref.size() && ref[last + 1].ts_ns <= ref[stop].ts_ns + 200'000'000ULL) ++last;
  ASSERT_LT(last + 1, ref.size()) << "the run must go on past --after";
  ASSERT_EQ(out.size(), last + 1);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].ts_ns, ref[i].ts_ns) << "packet " << i;
    if (HasFailure()) break;
  }
  // Quiet link: a stream that only waits for a packet past the window still ends.
  std::unique_ptr<Subprocess> quiet;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl-quiet",
      {"-i", kIface, "-f", "udp", "--stop-on", "udp dst port " + std::to_string(kStopPort),
       "--after", "1", "-w", File("quiet.pcapng").string()},
      &quiet));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStopPort, {"stop-marker"}));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*quiet, 0));
  EXPECT_NE(SummaryLine(quiet->Stderr()).find("(stop-on matched at "), std::string::npos)
      << quiet->Stderr();
  EXPECT_EQ(ReadOrFail(File("quiet.pcapng")).size(), 1u);
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// A flight recorder that keeps only what surrounds an event: `capctl record start --start-on M1
// --before 0.4 --stop-on M2 --after-count 20` records exactly the reference's packets from the
// first within 0.4 s before M1 to the 20th after M2, then stops by itself and says why.
TEST_F(TriggerTest, RecordingKeepsOnlyWhatSurroundsTheEvent) {
  const auto record_dir = File("recordings");
  std::filesystem::create_directories(record_dir);
  ASSERT_NO_FATAL_FAILURE(StartAgentAs("", {"--record-dir", record_dir.string()}));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd sink_start = AgentSocket(kDst, kStartPort);
  const UniqueFd sink_stop = AgentSocket(kDst, kStopPort);
  constexpr int kBefore = 200, kBetween = 50, kAfter = 40, kAfterCount = 20;
  constexpr int kTotal = kBefore + 1 + kBetween + 1 + kAfter;
  std::unique_ptr<Subprocess> tcpdump;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, File("ref.pcap"),
                                       {"-c", std::to_string(kTotal), "udp"}, &tcpdump));
  auto record = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {kCapctlPath, "record"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--agent", kAgentTarget});
    return RunCommand(argv, network().agent_ns());
  };
  const CommandResult started = record(
      {"start", "--name", "event", "-i", kIface, "-f", "udp", "--start-on",
       "udp dst port " + std::to_string(kStartPort), "--before", "0.4", "--stop-on",
       "udp dst port " + std::to_string(kStopPort), "--after-count", std::to_string(kAfterCount)});
  ASSERT_TRUE(started.status.Exited(0)) << started.output;
  ASSERT_TRUE(agent_->WaitForStderr("stream on veth0", kStartTimeout)) << agent_->Describe();
  const UniqueFd peer = PeerSocket();
  const auto gap = std::chrono::microseconds(5000);
  ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kBefore, "pre"), gap));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStartPort, {"start-marker"}));
  ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kBetween, "mid"), gap));
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kStopPort, {"stop-marker"}));
  ASSERT_NO_FATAL_FAILURE(SendPaced(peer.get(), kPort, MakePayloads(kAfter, "post"), gap));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));
  // It stops by itself (a hang guard, not a timing assertion).
  std::string listed;
  const auto give_up = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < give_up) {
    listed = record({"list"}).output;
    if (listed.find("event: stopped") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(listed.find("event: stopped"), std::string::npos) << listed;
  EXPECT_NE(listed.find("stop-on matched at "), std::string::npos) << listed;

  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(record_dir / "event")) {
    if (entry.path().extension() == ".pcapng") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  const auto out = ReadAllOrFail(files);
  const auto ref = ReadOrFail(File("ref.pcap"));
  ASSERT_EQ(ref.size(), static_cast<size_t>(kTotal));
  const size_t start = IndexOfPort(ref, kStartPort);
  const size_t stop = IndexOfPort(ref, kStopPort);
  ASSERT_LT(stop, ref.size());
  size_t first = 0;
  while (ref[first].ts_ns < ref[start].ts_ns - 400'000'000ULL) ++first;
  ASSERT_GT(first, 0u);
  ASSERT_EQ(out.size(), stop + kAfterCount - first + 1) << "first " << first;
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i].ts_ns, ref[first + i].ts_ns) << "packet " << i;
    if (HasFailure()) break;
  }
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// A start trigger that never matches: a file with the header only, and the summary says so.
TEST_F(TriggerTest, NeverMatchingStartLeavesAHeaderOnlyFile) {
  ASSERT_NO_FATAL_FAILURE(StartAgentAs("nobody"));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl",
                                      {"-i", kIface, "-f", "udp", "--start-on", "udp port 9",
                                       "--duration", "3", "-w", File("out.pcapng").string()},
                                      &capctl));
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, MakePayloads(100, "never")));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  const std::string err = capctl->Stderr();
  EXPECT_NE(err.find("capctl: start-on never matched"), std::string::npos) << err;
  EXPECT_NE(SummaryLine(err).find("0 packets written"), std::string::npos) << err;
  EXPECT_EQ(ReadOrFail(File("out.pcapng")).size(), 0u);
  ExpectCapinfos(File("out.pcapng"), 0);
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// A flood while the start trigger waits: capd holds at most --max-trigger-history (8 MB here)
// of it, drops the oldest and says how much; its resident memory grows by no more than that
// bound plus 8 MiB (measured: +9.5 MB; the capture ring's pages were mapped before the flood)
// while four times the bound crossed the wire (without the bound it would hold all of it).
TEST_F(TriggerTest, FloodWhileWaitingStaysWithinTheHistoryBound) {
  constexpr uint64_t kBound = 8'000'000;
  ASSERT_NO_FATAL_FAILURE(StartAgentAs("nobody", {"--max-trigger-history", "8MB"}));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("capctl",
                  {"-i", kIface, "-f", "udp", "--start-on", "udp port 9", "--before", "600",
                   "--duration", "6", "-w", File("out.pcapng").string()},
                  &capctl));
  auto before = ResidentBytes(agent_->pid());
  ASSERT_TRUE(before.ok()) << before.status().message();
  const UniqueFd peer = PeerSocket();
  const std::string payload(1400, 'f');
  uint64_t sent = 0, peak = *before;
  // 32 MB: four times the bound; paced in rounds so the kernel ring keeps up.
  for (int round = 0; round < 54; ++round) {
    for (int i = 0; i < 430; ++i) {
      ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, {payload}));
      sent += payload.size();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto now = ResidentBytes(agent_->pid());
    if (now.ok()) peak = std::max(peak, *now);
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  const std::string err = capctl->Stderr();
  EXPECT_NE(err.find("start-on never matched"), std::string::npos) << err;
  EXPECT_NE(err.find("of history were dropped by the agent's 8.00 MB bound"), std::string::npos)
      << err;
  const uint64_t growth = peak > *before ? peak - *before : 0;
  std::printf("trigger flood: %llu bytes sent, capd RSS %llu -> peak %llu (+%llu), bound %llu\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(*before),
              static_cast<unsigned long long>(peak), static_cast<unsigned long long>(growth),
              static_cast<unsigned long long>(kBound));
  if (kRssBoundsMeaningful) {
    EXPECT_LT(growth, kBound + (8ULL << 20)) << err;
  }
  EXPECT_GT(sent, 4 * kBound);
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// A trigger filter that does not compile: exit 2 with the reason, before anything is written.
TEST_F(TriggerTest, BadTriggerFilterIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgentAs("nobody"));
  for (const char* flag : {"--start-on", "--stop-on"}) {
    SCOPED_TRACE(flag);
    std::unique_ptr<Subprocess> capctl;
    ASSERT_NO_FATAL_FAILURE(
        StartStream(std::string("capctl") + flag,
                    {"-i", kIface, flag, "udp porrt 7", "-w", File("bad.pcapng").string()}, &capctl,
                    -1, /*wait_ready=*/false));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 2));
    const std::string err = capctl->Stderr();
    EXPECT_NE(err.find(std::string(flag) + ": "), std::string::npos) << err;
    EXPECT_NE(err.find("porrt"), std::string::npos) << err;
  }
  // A filter that compiles only for 802.11 captures, not for this Ethernet
  // one: capctl's check lets it through, capd refuses it.
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("capctl-agent",
                  {"-i", kIface, "--start-on", "wlan type mgt", "-w", File("bad2.pcapng").string()},
                  &capctl, -1, /*wait_ready=*/false));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 2));
  EXPECT_NE(capctl->Stderr().find("start-on filter"), std::string::npos) << capctl->Stderr();
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// An agent as it was before triggers: it knows nothing of fields 10-14, streams everything and
// does not say "capd-trigger".
class AgentBeforeTriggers final : public v1::Capture::Service {
  grpc::Status Stream(grpc::ServerContext* /*context*/, const v1::StreamRequest* /*request*/,
                      grpc::ServerWriter<v1::StreamResponse>* writer) override {
    v1::StreamResponse m;
    v1::InterfaceDescription* d = m.mutable_interface();
    d->set_name("eth0");
    d->set_link_type(1);
    d->set_snaplen(262144);
    d->set_agent_name("old-capd");
    writer->Write(m);
    v1::StreamResponse batch;
    v1::PacketBatch* b = batch.mutable_packets();
    b->set_data(std::string(60, 'x'));
    b->add_interface_index(0);
    b->add_timestamp_ns(1'700'000'000'000'000'000ULL);
    b->add_original_length(60);
    b->add_captured_length(60);
    writer->Write(batch);
    v1::StreamResponse end;
    end.mutable_end()->set_reason(v1::StreamEnd::COUNT_REACHED);
    writer->Write(end);
    return grpc::Status::OK;
  }
};

// capctl with --start-on against an agent that predates triggers: refused (exit 2) with the reason
// and nothing written, rather than everything streamed as if the trigger had matched.
TEST(TriggerCompatibilityTest, AnAgentThatIgnoresTriggersIsRefused) {
  AgentBeforeTriggers service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server != nullptr);
  ASSERT_GT(port, 0);
  TestDir dir;
  const auto out = dir.File("out.pcapng");
  const CommandResult r =
      RunCommand({kCapctlPath, "stream", "--agent", "127.0.0.1:" + std::to_string(port), "-i",
                  "eth0", "--start-on", "udp port 7001", "-w", out.string()});
  server->Shutdown();
  EXPECT_TRUE(r.status.Exited(2)) << r.status << "\n" << r.output;
  EXPECT_NE(r.output.find("does not support --start-on/--stop-on"), std::string::npos) << r.output;
  if (std::filesystem::exists(out)) {
    EXPECT_EQ(ReadOrFail(out).size(), 0u);
  }
}

}  // namespace
}  // namespace capd::test
