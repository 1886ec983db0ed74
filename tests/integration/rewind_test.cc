// Rewind into live (capctl stream --since) on a real veth: a recording runs as a flight recorder
// (a ring of small files), numbered UDP datagrams flow all the time, and a stream --since a time
// inside the recording gives every number from there exactly once, in time order, across the
// seam between the recording's files and the live capture, and goes on live; from --since on it
// is a tcpdump reference of the interface, packet for packet (bytes and nanosecond times).
// Wireshark's tshark reads the stream live through a FIFO; the stream's filter applies to both
// parts. Also: --since before the recording's start (the warning, then everything recorded), and
// no recording on the interface (exit 2 naming the recordings that run). capd runs as root and
// as deployed (--user nobody).

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7100;   // the stream's filter
constexpr uint16_t kOther = 7101;  // recorded, never streamed

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// Numbered datagrams from the peer namespace, one every millisecond, to kPort (and every third
// number to kOther as well), until stopped. `sent_at(n)` is the wall clock just before n left.
class Sender {
 public:
  explicit Sender(UniqueFd fd) : fd_(std::move(fd)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Sender() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint32_t sent() const { return next_.load(); }
  uint64_t sent_at(uint32_t n) {
    std::lock_guard lock(mu_);
    return times_.at(n);
  }
  // Waits (the sender's own pace) until `n` numbers have left.
  bool WaitForSent(uint32_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (next_.load() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return next_.load() >= n;
  }

 private:
  void Run() {
    while (!stop_) {
      const uint32_t n = next_.load();
      char payload[32];
      std::snprintf(payload, sizeof payload, "seq-%08u", n);
      {
        std::lock_guard lock(mu_);
        times_[n] = NowNs();
      }
      (void)SendUdp(fd_.get(), kDst, kPort, payload);
      if (n % 3 == 0) (void)SendUdp(fd_.get(), kDst, kOther, payload);
      next_.store(n + 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  UniqueFd fd_;
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> next_{0};
  std::mutex mu_;
  std::map<uint32_t, uint64_t> times_;
  std::thread thread_;
};

struct Row {
  uint64_t ts_ns;
  uint16_t port;
  uint32_t seq;
};

// tshark's fields: frame.time_epoch, udp.dstport, udp.payload (hex of "seq-NNNNNNNN").
std::vector<Row> ParseTshark(const std::string& text) {
  std::vector<Row> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string time, port, payload;
    if (!std::getline(fields, time, '\t') || !std::getline(fields, port, '\t') ||
        !std::getline(fields, payload, '\t')) {
      continue;
    }
    const size_t dot = time.find('.');
    if (dot == std::string::npos) continue;
    std::string fraction = time.substr(dot + 1);
    fraction.resize(9, '0');
    Row row;
    row.ts_ns = std::stoull(time.substr(0, dot)) * 1'000'000'000ULL + std::stoull(fraction);
    row.port = static_cast<uint16_t>(std::stoul(port));
    std::string ascii;
    for (size_t i = 0; i + 1 < payload.size(); i += 2) {
      ascii.push_back(static_cast<char>(std::stoul(payload.substr(i, 2), nullptr, 16)));
    }
    if (ascii.rfind("seq-", 0) != 0) continue;
    row.seq = static_cast<uint32_t>(std::stoul(ascii.substr(4)));
    rows.push_back(row);
  }
  return rows;
}

class RewindTest : public AgentTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool as_nobody() const { return GetParam(); }

  void StartRewindAgent() {
    const fs::path records = File("records");
    std::vector<std::string> argv = {kCapdPath, "--listen",     kAgentTarget,    "--name",
                                     "capd-it", "--record-dir", records.string()};
    if (as_nobody()) {
      // As the systemd unit runs it: the record folder is capd's user's own.
      fs::permissions(File("."),
                      fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
      fs::create_directories(records);
      ASSERT_EQ(::chown(records.c_str(), 65534, 65534), 0) << std::strerror(errno);
      argv.insert(argv.end(), {"--user", "nobody"});
    }
    ASSERT_NO_FATAL_FAILURE(Spawn("capd", argv, &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  int Run(const std::string& name, const std::vector<std::string>& args,
          std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> argv = {kCapctlPath};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--agent", kAgentTarget});
    Spawn(name, argv, out);
    auto status = (*out)->WaitFor(kExitTimeout);
    return status && status->exited ? status->code : -1;
  }

  // A flight recorder on veth0: small files, a ring long enough for the test's few seconds.
  void StartRing(const std::string& interface = kIface) {
    std::unique_ptr<Subprocess> start;
    ASSERT_EQ(Run("record-start",
                  {"record", "start", "--name", "ring", "-i", interface, "-f", "udp",
                   "--rotate-size", "20k", "--rotate-files", "200"},
                  &start),
              0)
        << start->Describe();
  }
};

// The seam: the recording's part and the live part together hold every number from the first
// at or after --since, once each, in time order, and the stream goes on live; the filter (port
// 7100) holds in both parts although the recording keeps port 7101 too. Read live from a FIFO
// by tshark.
TEST_P(RewindTest, EveryNumberOnceAcrossTheSeamIntoLive) {
  ASSERT_NO_FATAL_FAILURE(StartRewindAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd other_sink = AgentSocket(kDst, kOther);
  ASSERT_NO_FATAL_FAILURE(StartRing());
  // The reference: every packet the stream's filter takes, as tcpdump sees the interface. Its
  // buffer is large (64 MiB): with libpcap's default 2 MiB of 256 KiB frames (immediate mode) it
  // lost 32 packets while capd opened its own capture on a loaded machine.
  const fs::path ref_path = File("ref.pcap");
  std::unique_ptr<Subprocess> tcpdump;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, ref_path,
                                       {"-U", "-B", "65536", "udp", "port", std::to_string(kPort)},
                                       &tcpdump));
  Sender sender(PeerSocket());
  ASSERT_TRUE(sender.WaitForSent(2500));  // ~2.5 s recorded, a dozen files
  const uint32_t since_seq = 1000;
  const uint64_t since = sender.sent_at(since_seq);

  // tshark reads the stream live from the FIFO and keeps it, to compare with the reference.
  const std::string fifo = File("rewind.fifo").string();
  const fs::path out_path = File("rewind.pcapng");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("tshark", {"tshark", "-n", "-r", fifo, "-w", out_path.string()}, &tshark));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl",
                                      {"-i", kIface, "--since", std::to_string(since), "--duration",
                                       "3", "--fifo", fifo, "udp", "port", std::to_string(kPort)},
                                      &capctl, -1, /*wait_ready=*/false));
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();
  const uint32_t at_start = sender.sent();
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tshark, 0));
  const uint32_t at_end = sender.sent();
  sender.Stop();
  ASSERT_TRUE(tcpdump->Signal(SIGTERM));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));

  std::unique_ptr<Subprocess> fields;
  ASSERT_NO_FATAL_FAILURE(Spawn("tshark-fields",
                                {"tshark", "-n", "-r", out_path.string(), "-T", "fields", "-e",
                                 "frame.time_epoch", "-e", "udp.dstport", "-e", "udp.payload"},
                                &fields));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*fields, 0));
  const std::vector<Row> rows = ParseTshark(fields->Stdout());
  ASSERT_FALSE(rows.empty()) << tshark->Describe() << capctl->Describe();
  EXPECT_LE(rows.front().seq, since_seq) << capctl->Stderr();
  EXPECT_GE(rows.front().ts_ns, since);

  // Against the reference: the first packet is exactly its first at or after --since, and from
  // there the stream is the reference, packet for packet, bytes and nanosecond times, up to the
  // end of the shorter (the reference goes on after the stream's end).
  ASSERT_NE(tcpdump->Stderr().find("\n0 packets dropped by kernel"), std::string::npos)
      << "the reference itself is incomplete: " << tcpdump->Describe();
  const std::vector<CapturedPacket> ref = ReadOrFail(ref_path);
  const std::vector<CapturedPacket> out = ReadOrFail(out_path);
  ASSERT_FALSE(out.empty());
  size_t first = 0;
  while (first < ref.size() && ref[first].ts_ns < since) ++first;
  ASSERT_LT(first, ref.size()) << "the reference ends before --since";
  EXPECT_EQ(out.front().ts_ns, ref[first].ts_ns) << "the first packet is not the reference's "
                                                    "first at or after --since";
  const size_t common = std::min(out.size(), ref.size() - first);
  EXPECT_GT(common, 1000u);
  size_t differing = 0;
  for (size_t i = 0; i < common; ++i) {
    if (out[i].ts_ns == ref[first + i].ts_ns && out[i].bytes == ref[first + i].bytes &&
        out[i].len == ref[first + i].len) {
      continue;
    }
    if (++differing <= 3) {
      ADD_FAILURE() << "packet " << i << " differs from reference packet " << first + i << ": time "
                    << out[i].ts_ns << " vs " << ref[first + i].ts_ns << ", " << out[i].bytes.size()
                    << " vs " << ref[first + i].bytes.size() << " bytes";
    }
  }
  EXPECT_EQ(differing, 0u);
  // The compared part crosses the seam: it reaches packets sent after the stream started (tcpdump,
  // stopped once the stream ended, may miss the last of them).
  EXPECT_GT(out[common - 1].ts_ns, sender.sent_at(at_start)) << "compared before the seam only";
  size_t missing = 0, repeated = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].port, kPort) << "the filter holds in both parts, row " << i;
    if (i == 0) continue;
    EXPECT_GE(rows[i].ts_ns, rows[i - 1].ts_ns) << "time order, row " << i;
    if (rows[i].seq <= rows[i - 1].seq) ++repeated;
    if (rows[i].seq > rows[i - 1].seq + 1) {
      ++missing;
      ADD_FAILURE() << "numbers " << rows[i - 1].seq + 1 << ".." << rows[i].seq - 1
                    << " are missing (row " << i << ")";
    }
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(repeated, 0u);
  // Into live: well past what had been sent when the stream started, up to near its end.
  EXPECT_GT(rows.back().seq, at_start + 1000) << "the stream did not go on live";
  EXPECT_LE(rows.back().seq, at_end);
  // The whole run was checked by count too: contiguous from the first to the last.
  EXPECT_EQ(rows.size(), rows.back().seq - rows.front().seq + 1);
  // The one warning: the recording's own filter (wider here, which capd does not judge).
  const std::string stderr_text = capctl->Stderr();
  const size_t warning = stderr_text.find("warning: ");
  ASSERT_NE(warning, std::string::npos) << stderr_text;
  EXPECT_NE(stderr_text.find("recording ring captures with its own filter 'udp': the recorded "
                             "part holds only the packets that filter kept"),
            std::string::npos)
      << stderr_text;
  EXPECT_EQ(stderr_text.find("warning: ", warning + 1), std::string::npos) << stderr_text;
  EXPECT_NE(agent_->Stderr().find("seam at the recorded copy of the first live packet"),
            std::string::npos)
      << "the seam was found by time only: " << agent_->Stderr();
}

// --since before the recording began: capctl says from when the recording starts (the agent's
// warning, not a guess of capctl's), and the stream holds everything recorded from its start.
TEST_P(RewindTest, SinceBeforeTheRecordingStartsWarnsAndStreamsFromItsStart) {
  ASSERT_NO_FATAL_FAILURE(StartRewindAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd other_sink = AgentSocket(kDst, kOther);
  ASSERT_NO_FATAL_FAILURE(StartRing());
  Sender sender(PeerSocket());
  ASSERT_TRUE(sender.WaitForSent(800));
  std::unique_ptr<Subprocess> capctl;
  const fs::path out = File("since-1h.pcapng");
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-i", kIface, "--since", "1h", "--duration", "1", "-w", out.string(), "udp"},
      &capctl));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  sender.Stop();
  EXPECT_NE(capctl->Stderr().find("the recording on veth0 starts at "), std::string::npos)
      << capctl->Stderr();
  EXPECT_NE(capctl->Stderr().find("; streaming from there"), std::string::npos);
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("tshark-file",
            {"tshark", "-n", "-r", out.string(), "-Y", "udp.dstport == " + std::to_string(kPort),
             "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.dstport", "-e", "udp.payload"},
            &tshark));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tshark, 0));
  const std::vector<Row> rows = ParseTshark(tshark->Stdout());
  ASSERT_FALSE(rows.empty()) << tshark->Describe();
  // The sender began after the recording: number 0 is its first packet.
  EXPECT_EQ(rows.front().seq, 0u);
  EXPECT_EQ(rows.size(), rows.back().seq + 1) << "every number once";
}

// No recording on the stream's interface: exit 2, the agent's reason naming what runs.
TEST_P(RewindTest, NoRecordingOnTheInterfaceExitsTwoNamingWhatRuns) {
  ASSERT_NO_FATAL_FAILURE(StartRewindAgent());
  ASSERT_NO_FATAL_FAILURE(StartRing("lo"));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("capctl", {"-i", kIface, "--since", "5m", "-w", File("none.pcapng").string()},
                  &capctl, -1, /*wait_ready=*/false));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 2));
  EXPECT_NE(capctl->Stderr().find("--since needs a recording running on interface 'veth0'"),
            std::string::npos)
      << capctl->Stderr();
  EXPECT_NE(capctl->Stderr().find("recordings running: ring on 'lo'"), std::string::npos)
      << capctl->Stderr();
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsDeployed, RewindTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("UserNobody") : std::string("Root");
                         });

}  // namespace
}  // namespace capd::test
