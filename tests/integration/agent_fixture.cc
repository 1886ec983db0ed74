#include "tests/integration/agent_fixture.h"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/support/pcapng_file.h"

namespace capd::test {

void AgentTest::SetUp() {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "integration tests need root (network namespaces, packet capture); "
                    "run ctest as root";
  }
  auto network = TestNetwork::Create();
  if (!network.ok() && network.status().code() == StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << "cannot create network namespaces: " << network.status().message();
  }
  ASSERT_TRUE(network.ok()) << "setting up the test network: " << network.status().message();
  network_ = std::move(network).value();
  dir_ = std::make_unique<TestDir>();
  ASSERT_TRUE(dir_->ok()) << "mkdtemp failed";
}

void AgentTest::TearDown() {
  if (agent_ && agent_->Running()) StopAgent();
  if (HasFailure() && agent_) {
    std::fprintf(stderr, "capd: %s\n", agent_->Describe().c_str());
  }
}

void AgentTest::StartAgent() {
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "capd", {kCapdPath, "--listen", kAgentTarget, "--name", "capd-it", "--log-level", "info"},
      &agent_));
  ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
      << agent_->Describe();
}

void AgentTest::StopAgent() {
  ASSERT_TRUE(agent_);
  EXPECT_TRUE(agent_->Running()) << "capd ended before the test stopped it: " << agent_->Describe();
  agent_->Signal(SIGTERM);
  ExpectExit(*agent_, 0);
}

void AgentTest::Spawn(const std::string& name, std::vector<std::string> argv,
                      std::unique_ptr<Subprocess>* out, const std::string& netns) {
  SubprocessOptions options;
  options.argv = std::move(argv);
  options.netns = netns.empty() ? network_->agent_ns() : netns;
  options.stdout_path = File(name + ".out");
  options.stderr_path = File(name + ".err");
  auto process = Subprocess::Start(std::move(options));
  ASSERT_TRUE(process.ok()) << process.status().message();
  *out = std::move(process).value();
}

void AgentTest::StartStream(const std::string& name, const std::vector<std::string>& args,
                            std::unique_ptr<Subprocess>* out, int stdout_fd, bool wait_ready) {
  SubprocessOptions options;
  options.argv = {kCapctlPath, "stream", "--agent", kAgentTarget};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.netns = network_->agent_ns();
  options.stdout_fd = stdout_fd;
  options.stdout_path = File(name + ".out");
  options.stderr_path = File(name + ".err");
  auto process = Subprocess::Start(std::move(options));
  ASSERT_TRUE(process.ok()) << process.status().message();
  *out = std::move(process).value();
  if (!wait_ready) return;
  ASSERT_TRUE((*out)->WaitForStderr("capctl: capturing on", kStartTimeout)) << (*out)->Describe();
}

void AgentTest::StartTcpdump(const std::string& name, const std::string& interface,
                             const std::filesystem::path& file,
                             const std::vector<std::string>& args,
                             std::unique_ptr<Subprocess>* out) {
  // -Z root: Debian's tcpdump otherwise switches to the "tcpdump" user before opening the file.
  std::vector<std::string> argv = {
      "tcpdump", "-i", interface,    "-n", "-Z", "root", "--time-stamp-precision",
      "nano",    "-w", file.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ASSERT_NO_FATAL_FAILURE(Spawn(name, std::move(argv), out));
  ASSERT_TRUE((*out)->WaitForStderr("listening on", kStartTimeout)) << (*out)->Describe();
}

AgentTest::CaptureRings AgentTest::AgentCaptureRings() {
  CaptureRings rings;
  EXPECT_TRUE(agent_ && agent_->Running()) << (agent_ ? agent_->Describe() : "capd not started");
  if (!agent_) return rings;
  std::ifstream maps("/proc/" + std::to_string(agent_->pid()) + "/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find("socket:[") == std::string::npos) continue;
    const size_t dash = line.find('-');
    const uint64_t start = std::stoull(line.substr(0, dash), nullptr, 16);
    const uint64_t end = std::stoull(line.substr(dash + 1, line.find(' ') - dash - 1), nullptr, 16);
    ++rings.count;
    rings.bytes += end - start;
  }
  return rings;
}

bool AgentTest::WaitForPackets(const std::filesystem::path& path, size_t packets,
                               std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    // A read may catch a block half-written: that is "not yet", like too few packets.
    auto file = ReadPcapng(path);
    if (file.ok() && file->packets.size() >= packets) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void AgentTest::ExpectExit(Subprocess& process, int code, std::chrono::milliseconds timeout) {
  const auto status = process.WaitFor(timeout);
  ASSERT_TRUE(status.has_value()) << "still running after " << timeout.count()
                                  << " ms: " << process.Describe();
  EXPECT_TRUE(status->Exited(code)) << "expected exit code " << code << ": " << process.Describe();
}

UniqueFd AgentTest::PeerSocket() {
  auto fd = OpenUdpSocketIn(network_->peer_ns());
  EXPECT_TRUE(fd.ok()) << fd.status().message();
  return fd.ok() ? std::move(fd).value() : UniqueFd();
}

UniqueFd AgentTest::AgentSocket(const std::string& bind_address, uint16_t bind_port) {
  auto fd = OpenUdpSocketIn(network_->agent_ns(), bind_address, bind_port);
  EXPECT_TRUE(fd.ok()) << fd.status().message();
  return fd.ok() ? std::move(fd).value() : UniqueFd();
}

void AgentTest::SendAll(int fd, const std::string& address, uint16_t port,
                        const std::vector<std::string>& payloads) {
  for (const auto& payload : payloads) {
    const Status s = SendUdp(fd, address, port, payload);
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

std::vector<std::string> MakePayloads(int count, std::string_view tag) {
  // 1 byte and 1400 bytes (a near-MTU frame of 1442) among sizes that do not repeat in a row.
  static constexpr size_t kSizes[] = {1, 1400, 17, 100, 512, 58, 999, 1, 260, 1400, 64, 3};
  std::vector<std::string> payloads;
  for (int i = 0; i < count; ++i) {
    const size_t size = kSizes[static_cast<size_t>(i) % std::size(kSizes)];
    std::string p(size, static_cast<char>('a' + i % 26));
    const std::string label = std::string(tag) + "-" + std::to_string(i) + "-";
    if (label.size() <= size) p.replace(0, label.size(), label);
    payloads.push_back(std::move(p));
  }
  return payloads;
}

std::vector<CapturedPacket> ReadOrFail(const std::filesystem::path& path) {
  auto packets = ReadCapture(path);
  EXPECT_TRUE(packets.ok()) << packets.status().message();
  return packets.ok() ? std::move(packets).value() : std::vector<CapturedPacket>{};
}

std::vector<CapturedPacket> ReadAllOrFail(const std::vector<std::filesystem::path>& files) {
  std::vector<CapturedPacket> all;
  for (const auto& f : files) {
    auto packets = ReadOrFail(f);
    all.insert(all.end(), packets.begin(), packets.end());
  }
  return all;
}

void WaitForPacketsInFile(const std::filesystem::path& path, size_t count, Subprocess& writer) {
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    auto packets = ReadCapture(path);  // may fail while a block is half written
    if (packets.ok() && packets->size() >= count) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "the packets never reached " << path << ": " << writer.Describe();
    ASSERT_TRUE(writer.Running()) << writer.Describe();
    writer.WaitFor(std::chrono::milliseconds(10));
  }
}

void ExpectUdpPayloads(const std::vector<CapturedPacket>& packets,
                       const std::vector<std::string>& payloads, uint16_t port) {
  ASSERT_EQ(packets.size(), payloads.size());
  for (size_t i = 0; i < packets.size(); ++i) {
    uint16_t dst_port = 0;
    const auto payload = UdpPayload(packets[i], &dst_port);
    ASSERT_TRUE(payload.has_value()) << "packet " << i << " is not Ethernet/IPv4/UDP";
    EXPECT_EQ(dst_port, port) << "packet " << i;
    EXPECT_EQ(packets[i].caplen, packets[i].len) << "packet " << i;
    EXPECT_TRUE(*payload == payloads[i])
        << "packet " << i << ": payload of " << payload->size() << " bytes starting '"
        << payload->substr(0, 16) << "', expected " << payloads[i].size() << " bytes starting '"
        << payloads[i].substr(0, 16) << "'";
  }
}

void ExpectCapinfos(const std::filesystem::path& path, size_t packets) {
  // -M: exact numbers, no "1 k"; the default report includes each interface's time precision.
  const CommandResult r = RunCommand({"capinfos", "-M", path.string()});
  ASSERT_TRUE(r.status.Exited(0)) << "capinfos " << path << ": " << r.status << "\n" << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(Number of packets:\s+(\d+))")))
      << r.output;
  EXPECT_EQ(m[1].str(), std::to_string(packets)) << r.output;
  EXPECT_NE(r.output.find("nanoseconds (9)"), std::string::npos)
      << "capinfos does not report nanosecond timestamps:\n"
      << r.output;
}

std::string SummaryLine(const std::string& text) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("capctl: ", 0) == 0 && line.find("packets written") != std::string::npos) {
      return line;
    }
  }
  return "";
}

}  // namespace capd::test
