// Wireshark's control toolbar driven as Wireshark drives it: capctl --capture with a data FIFO
// and control pipes the test makes, the protocol's frames written to control-in (the values, then
// Initialized; a new capture filter and Apply), control-out read back. Real UDP to two ports on a
// veth, with sequence numbers in the payloads, checked against tcpdump run with each filter and
// read with an independent pcapng reader and tshark. And the attack side of ChangeStream: another
// principal's handle, a wrong token, a flood of changes.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "proto/capture.grpc.pb.h"
#include "tests/integration/agent_fixture.h"
#include "tests/support/agent_client.h"
#include "tests/support/pcapng_file.h"
#include "tests/support/programs.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPortA = 7000;
constexpr uint16_t kPortB = 7001;
constexpr char kFilterA[] = "udp port 7000";
constexpr char kFilterB[] = "udp port 7001";
constexpr char kBadFilter[] = "udp port";
constexpr size_t kUdpPayloadOffset = 14 + 20 + 8;  // Ethernet, IPv4 without options, UDP

// Wireshark's control numbers and commands for capd's toolbar (the --extcap-interfaces answer).
constexpr uint8_t kFilterControl = 1;
constexpr uint8_t kApplyControl = 4;
constexpr uint8_t kDropsControl = 5;
constexpr uint8_t kInitialized = 0;
constexpr uint8_t kSet = 1;
constexpr uint8_t kStatusbar = 6;

// One control-protocol frame, written here from Wireshark's description, not capctl's code.
std::string Frame(uint8_t control, uint8_t command, const std::string& payload) {
  const size_t length = payload.size() + 2;
  std::string out = {'T',
                     static_cast<char>(length >> 16),
                     static_cast<char>(length >> 8),
                     static_cast<char>(length),
                     static_cast<char>(control),
                     static_cast<char>(command)};
  return out + payload;
}

struct ControlOut {
  std::vector<std::string> status;         // command 6
  std::vector<std::string> filter_values;  // control 1, Set
  std::vector<std::string> drops_values;   // control 5, Set
};

ControlOut ParseControlOut(const std::string& bytes) {
  ControlOut out;
  for (size_t at = 0; at + 6 <= bytes.size();) {
    EXPECT_EQ(bytes[at], 'T');
    const size_t length = (static_cast<uint8_t>(bytes[at + 1]) << 16) |
                          (static_cast<uint8_t>(bytes[at + 2]) << 8) |
                          static_cast<uint8_t>(bytes[at + 3]);
    if (length < 2 || at + 4 + length > bytes.size()) break;  // the rest is still coming
    const uint8_t control = bytes[at + 4];
    const uint8_t command = bytes[at + 5];
    std::string payload = bytes.substr(at + 6, length - 2);
    if (command == kStatusbar) out.status.push_back(payload);
    if (command == kSet && control == kFilterControl) out.filter_values.push_back(payload);
    if (command == kSet && control == kDropsControl) out.drops_values.push_back(payload);
    at += 4 + length;
  }
  return out;
}

bool AnyContains(const std::vector<std::string>& lines, const std::string& text) {
  for (const std::string& line : lines) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

std::vector<std::string> Series(const std::string& tag, int count) {
  std::vector<std::string> payloads;
  for (int i = 0; i < count; ++i) payloads.push_back(tag + "-" + std::to_string(i) + "-payload");
  return payloads;
}

std::string UdpPayload(const std::string& frame) {
  return frame.size() > kUdpPayloadOffset ? frame.substr(kUdpPayloadOffset) : "";
}

// The payloads of `packets` whose payload starts with one of `prefixes`.
std::vector<std::string> PayloadsStartingWith(const std::vector<CapturedPacket>& packets,
                                              const std::vector<std::string>& prefixes) {
  std::vector<std::string> out;
  for (const CapturedPacket& p : packets) {
    const std::string payload = UdpPayload(p.bytes);
    for (const std::string& prefix : prefixes) {
      if (payload.rfind(prefix, 0) == 0) out.push_back(payload);
    }
  }
  return out;
}

class ToolbarTest : public AgentTest {
 protected:
  // capd as the systemd unit runs it: --user nobody, keeping only its two capabilities.
  void StartDeployedAgent(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {kCapdPath, "--listen",     kAgentTarget, "--name",
                                     "capd-it", "--log-level",  "info",       "--user",
                                     "nobody",  "--no-metadata"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_NO_FATAL_FAILURE(Spawn("capd", argv, &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
  }

  // Wireshark's side: the FIFOs, its reader ends, capctl --capture, its writer end of control-in.
  void StartGui(const std::string& filter) {
    const std::string data = File("data.fifo").string();
    const std::string to_capctl = File("control-in.fifo").string();
    const std::string from_capctl = File("control-out.fifo").string();
    for (const auto& fifo : {data, to_capctl, from_capctl}) {
      ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
    }
    data_reader_.Reset(::open(data.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    control_reader_.Reset(::open(from_capctl.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(data_reader_.valid() && control_reader_.valid()) << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(
        Spawn("capctl",
              {kCapctlPath, "--capture", "--extcap-interface", "capd", "--extcap-capture-filter",
               filter, "--fifo", data, "--extcap-control-out", from_capctl, "--extcap-control-in",
               to_capctl, "--agent", kAgentTarget, "--remote-interface", kIface},
              &capctl_));
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (!control_writer_.valid() && std::chrono::steady_clock::now() < deadline &&
           capctl_->Running()) {
      control_writer_.Reset(::open(to_capctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      if (!control_writer_.valid()) capctl_->WaitFor(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(control_writer_.valid()) << capctl_->Describe();
  }

  void Write(const std::string& frames) {
    ASSERT_EQ(::write(control_writer_.get(), frames.data(), frames.size()),
              static_cast<ssize_t>(frames.size()))
        << std::strerror(errno);
  }

  // Reads both pipes until `done` holds; false after kStartTimeout (a hang guard).
  bool ReadUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    char buffer[65536];
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      const ssize_t n = ::read(data_reader_.get(), buffer, sizeof buffer);
      if (n > 0) pcapng_.append(buffer, n);
      const ssize_t c = ::read(control_reader_.get(), buffer, sizeof buffer);
      if (c > 0) control_.append(buffer, c);
      if (n <= 0 && c <= 0) capctl_->WaitFor(std::chrono::milliseconds(10));
    }
    return true;
  }
  bool ReadUntilPayload(const std::string& payload) {
    return ReadUntil([&] { return pcapng_.find(payload) != std::string::npos; });
  }
  bool ReadUntilStatus(const std::string& text) {
    return ReadUntil([&] { return AnyContains(ParseControlOut(control_).status, text); });
  }

  // Phase `tag`: `count` datagrams to each port, alternating, from the peer namespace.
  void SendPhase(const std::string& tag, int count) {
    const UniqueFd peer = PeerSocket();
    const auto a = Series(tag + "-A", count);
    const auto b = Series(tag + "-B", count);
    for (int i = 0; i < count; ++i) {
      ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPortA, {a[i]}));
      ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPortB, {b[i]}));
    }
  }

  // The whole toolbar story against the running agent: filter A, Apply B, a refused filter.
  void ChangeTheFilterFromTheToolbar() {
    constexpr int kPhase = 5;
    constexpr int kLast = 3;
    const int per_port = kPhase + kPhase + kLast;
    const UniqueFd sink_a = AgentSocket(kDst, kPortA);
    const UniqueFd sink_b = AgentSocket(kDst, kPortB);
    std::unique_ptr<Subprocess> tcpdump_a, tcpdump_b;
    ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump-a", kIface, File("a.pcap"),
                                         {"-c", std::to_string(per_port), kFilterA}, &tcpdump_a));
    ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump-b", kIface, File("b.pcap"),
                                         {"-c", std::to_string(per_port), kFilterB}, &tcpdump_b));
    ASSERT_NO_FATAL_FAILURE(StartGui(kFilterA));
    // As Wireshark: the values it remembers (stale here), then Initialized.
    ASSERT_NO_FATAL_FAILURE(
        Write(Frame(kFilterControl, kSet, "stale") + Frame(0, kInitialized, "")));
    ASSERT_TRUE(agent_->WaitForStderr("stream on veth0: link type", kStartTimeout))
        << capctl_->Describe();
    ASSERT_TRUE(ReadUntil([&] {
      return AnyContains(ParseControlOut(control_).filter_values, kFilterA);
    })) << "the toolbar shows the filter the capture runs with";

    ASSERT_NO_FATAL_FAILURE(SendPhase("p1", kPhase));
    ASSERT_TRUE(ReadUntilPayload("p1-A-" + std::to_string(kPhase - 1))) << capctl_->Describe();

    // The user types the new filter (Wireshark sends a Set per change) and presses Apply.
    ASSERT_NO_FATAL_FAILURE(Write(Frame(kFilterControl, kSet, "udp port 70") +
                                  Frame(kFilterControl, kSet, kFilterB) +
                                  Frame(kApplyControl, kSet, "")));
    ASSERT_TRUE(ReadUntilStatus("filter applied on " + std::string(kAgentTarget)))
        << capctl_->Describe() << agent_->Describe();
    ASSERT_NO_FATAL_FAILURE(SendPhase("p2", kPhase));
    ASSERT_TRUE(ReadUntilPayload("p2-B-" + std::to_string(kPhase - 1))) << capctl_->Describe();
    // The new interface ("capturing on ...") came before these packets: the status bar still
    // ends on the change's result.
    char drain[65536];
    for (ssize_t n; (n = ::read(control_reader_.get(), drain, sizeof drain)) > 0;) {
      control_.append(drain, n);
    }
    const auto status_now = ParseControlOut(control_).status;
    ASSERT_FALSE(status_now.empty());
    EXPECT_NE(status_now.back().find("filter applied on"), std::string::npos) << status_now.back();

    // A filter that does not compile: refused with the agent's reason, the old one kept.
    ASSERT_NO_FATAL_FAILURE(
        Write(Frame(kFilterControl, kSet, kBadFilter) + Frame(kApplyControl, kSet, "")));
    ASSERT_TRUE(ReadUntilStatus("refused the filter")) << capctl_->Describe();
    ASSERT_NO_FATAL_FAILURE(SendPhase("p3", kLast));
    ASSERT_TRUE(ReadUntilPayload("p3-B-" + std::to_string(kLast - 1))) << capctl_->Describe();
    EXPECT_TRUE(capctl_->Running()) << "the capture goes on";

    ASSERT_TRUE(capctl_->Signal(SIGTERM));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl_, 0));
    ReadUntil([] { return true; });
    char buffer[65536];
    for (ssize_t n; (n = ::read(data_reader_.get(), buffer, sizeof buffer)) > 0;) {
      pcapng_.append(buffer, n);
    }
    for (ssize_t n; (n = ::read(control_reader_.get(), buffer, sizeof buffer)) > 0;) {
      control_.append(buffer, n);
    }
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump_a, 0));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump_b, 0));
    EXPECT_EQ(capctl_->Stderr(), "") << "Wireshark shows an extcap's stderr as an error";

    const ControlOut out = ParseControlOut(control_);
    std::string refusal;
    for (const std::string& s : out.status) {
      if (s.find("refused the filter") != std::string::npos) refusal = s;
    }
    EXPECT_NE(refusal.find("the old filter is kept"), std::string::npos) << refusal;
    EXPECT_NE(refusal.find("syntax error"), std::string::npos) << "the agent's reason: " << refusal;
    EXPECT_FALSE(out.drops_values.empty()) << "capd's drop counters in the toolbar";
    if (!out.drops_values.empty()) {
      EXPECT_EQ(out.drops_values.back().rfind("0 (kernel 0", 0), 0u);
    }

    const std::filesystem::path file = File("gui.pcapng");
    std::ofstream(file, std::ios::binary) << pcapng_;
    auto read = ReadPcapng(file);
    ASSERT_TRUE(read.ok()) << read.status().message();
    // The change is recorded in the file: a second interface whose if_filter is the new one,
    // with capd's own-traffic exclusion still in front.
    ASSERT_EQ(read->interfaces.size(), 2u);
    EXPECT_NE(read->interfaces[0].filter.find(kFilterA), std::string::npos);
    EXPECT_NE(read->interfaces[1].filter.find(kFilterB), std::string::npos)
        << read->interfaces[1].filter;
    EXPECT_NE(read->interfaces[1].filter.find("50051"), std::string::npos)
        << "own traffic still excluded: " << read->interfaces[1].filter;

    // Before the change exactly tcpdump's filter-A packets of phase 1; after it exactly its
    // filter-B packets of phases 2 and 3, in order, under the new interface.
    std::vector<std::string> before, after;
    for (const PcapngPacket& p : read->packets) {
      (p.interface_id == 0 ? before : after).push_back(UdpPayload(p.bytes));
    }
    const auto ref_a = ReadOrFail(File("a.pcap"));
    const auto ref_b = ReadOrFail(File("b.pcap"));
    ASSERT_EQ(ref_a.size(), static_cast<size_t>(per_port));
    ASSERT_EQ(ref_b.size(), static_cast<size_t>(per_port));
    EXPECT_EQ(before, PayloadsStartingWith(ref_a, {"p1-"}));
    EXPECT_EQ(after, PayloadsStartingWith(ref_b, {"p2-", "p3-"}));
    EXPECT_EQ(before.size(), static_cast<size_t>(kPhase));
    EXPECT_EQ(after.size(), static_cast<size_t>(kPhase + kLast));

    // Wireshark's own reading of the file: the interface of each frame.
    if (!HaveProgram("tshark")) {
      ADD_FAILURE() << "tshark is not installed (scripts/install-deps.sh)";
      return;
    }
    const CommandResult fields =
        RunCommand({"tshark", "-r", file.string(), "-T", "fields", "-e", "frame.interface_id"});
    ASSERT_TRUE(fields.status.Exited(0)) << fields.output;
    std::string ids;
    std::istringstream lines(fields.output);
    for (std::string line; std::getline(lines, line);) {
      if (line == "0" || line == "1") ids += line;
    }
    EXPECT_EQ(ids, std::string(kPhase, '0') + std::string(kPhase + kLast, '1'));
  }

  UniqueFd data_reader_, control_reader_, control_writer_;
  std::unique_ptr<Subprocess> capctl_;
  std::string pcapng_, control_;
};

TEST_F(ToolbarTest, ApplyChangesTheFilterAsRoot) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  ASSERT_NO_FATAL_FAILURE(ChangeTheFilterFromTheToolbar());
}

TEST_F(ToolbarTest, ApplyChangesTheFilterAsDeployed) {
  ASSERT_NO_FATAL_FAILURE(StartDeployedAgent());
  ASSERT_NO_FATAL_FAILURE(ChangeTheFilterFromTheToolbar());
}

// One Stream call read by hand: its handle, from the initial metadata.
struct OpenStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::StreamResponse>> reader;
  std::string handle;
  ~OpenStream() {
    context.TryCancel();
    if (reader) reader->Finish();
  }
};

grpc::Status Change(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                    const std::string& handle, const std::string& filter,
                    v1::ChangeStreamResponse* response = nullptr) {
  grpc::ClientContext context;
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::ChangeStreamRequest request;
  request.set_stream_handle(handle);
  request.set_filter(filter);
  v1::ChangeStreamResponse ignored;
  return v1::Capture::NewStub(channel)->ChangeStream(&context, request,
                                                     response ? response : &ignored);
}

// A stream opened with the token is changed only with the token: the same host's root without
// it, a wrong token, and a made-up handle learn nothing; a flood of changes costs capd a few
// compiles and another client is still served.
TEST_F(ToolbarTest, OnlyTheStreamsOwnPrincipalCanChangeIt) {
  const std::string token = "toolbar-test-token-0123456789";
  const auto token_file = File("token");
  std::ofstream(token_file) << token << "\n";
  ::chmod(token_file.c_str(), 0644);
  ASSERT_NO_FATAL_FAILURE(StartDeployedAgent({"--auth-token-file", token_file.string()}));
  auto channel = ConnectInsecureIn(network().agent_ns(), "127.0.0.1", kAgentPort);
  ASSERT_TRUE(channel.ok()) << channel.status().message();

  OpenStream stream;
  stream.context.AddMetadata("authorization", "Bearer " + token);
  v1::StreamRequest request;
  request.set_interface(kIface);
  request.set_filter(kFilterA);
  stream.reader = v1::Capture::NewStub(*channel)->Stream(&stream.context, request);
  v1::StreamResponse first;
  ASSERT_TRUE(stream.reader->Read(&first));
  ASSERT_TRUE(first.has_interface());
  const auto& metadata = stream.context.GetServerInitialMetadata();
  const auto found = metadata.find("capd-stream-handle");
  ASSERT_NE(found, metadata.end());
  stream.handle.assign(found->second.data(), found->second.size());
  EXPECT_EQ(stream.handle.size(), 32u) << "128 random bits";

  const grpc::Status other_principal = Change(*channel, "", stream.handle, kFilterB);
  EXPECT_EQ(other_principal.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(other_principal);
  const grpc::Status wrong_token = Change(*channel, "wrong", stream.handle, kFilterB);
  EXPECT_EQ(wrong_token.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(wrong_token);
  const grpc::Status made_up = Change(*channel, token, std::string(32, 'a'), kFilterB);
  EXPECT_EQ(made_up.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(made_up);
  EXPECT_EQ(made_up.error_message(), other_principal.error_message())
      << "another's stream looks like no stream";

  v1::ChangeStreamResponse response;
  const grpc::Status owner = Change(*channel, token, stream.handle, kFilterB, &response);
  ASSERT_TRUE(owner.ok()) << Describe(owner);
  EXPECT_NE(response.filter().find(kFilterB), std::string::npos) << response.filter();

  // The flood: 50 changes at once from the owner.
  int applied = 0, limited = 0;
  for (int i = 0; i < 50; ++i) {
    const grpc::Status s =
        Change(*channel, token, stream.handle, "udp port " + std::to_string(8000 + i));
    if (s.ok()) ++applied;
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++limited;
  }
  EXPECT_LE(applied, 6) << "a burst of 5 (one used above), then one every 2 s";
  EXPECT_GE(limited, 44);
  // capd compiled only what it applied: its log has one line per change.
  const size_t changes = CountOccurrences(agent_->Stderr(), "filter changed; kernel filter now");
  EXPECT_EQ(changes, static_cast<size_t>(applied + 1));
  // And serves another client meanwhile.
  grpc::ClientContext list_context;
  list_context.AddMetadata("authorization", "Bearer " + token);
  v1::ListInterfacesResponse interfaces;
  EXPECT_TRUE(v1::Capture::NewStub(*channel)->ListInterfaces(&list_context, {}, &interfaces).ok());
  // The stream itself still runs: a description of its newest interface came.
  v1::StreamResponse next;
  bool described = false;
  while (!described && stream.reader->Read(&next)) described = next.has_interface();
  EXPECT_TRUE(described);
}

}  // namespace
}  // namespace capd::test
