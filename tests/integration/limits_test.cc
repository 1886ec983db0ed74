// Request limits: what a client may ask of capd. capctl refuses what it can check itself (exit 2,
// before connecting); the agent refuses the rest, and everything capctl would never send, with
// INVALID_ARGUMENT and a message (sent here with a gRPC client of the test's own); beyond
// --max-streams it answers RESOURCE_EXHAUSTED. After every refusal capd keeps serving.

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/agent_client.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kLoopback[] = "127.0.0.1";
constexpr auto kCallTimeout = std::chrono::seconds(20);
constexpr uint64_t kDayMs = 24ULL * 3600 * 1000;

class RequestLimitsTest : public HardenedAgentTest {
 protected:
  void TearDown() override {
    channel_.reset();  // before capd stops: an open connection holds up its shutdown
    HardenedAgentTest::TearDown();
  }

  // A plaintext channel to capd from the test process (through a socket in the agent namespace).
  void Connect() {
    auto channel = ConnectInsecureIn(network().agent_ns(), kLoopback, kAgentPort);
    ASSERT_TRUE(channel.ok()) << channel.status().message();
    channel_ = std::move(channel).value();
  }

  // Stream(request) must be refused with `code` before any capture starts, and the message must
  // contain `text`.
  void ExpectRefused(const std::string& what, const v1::StreamRequest& request,
                     grpc::StatusCode code, const std::string& text) {
    SCOPED_TRACE(what);
    const StreamResult r = RunStream(channel_, request, StreamUntil::kEnd, kCallTimeout);
    EXPECT_EQ(r.status.error_code(), code) << Describe(r.status);
    EXPECT_NE(r.status.error_message().find(text), std::string::npos) << Describe(r.status);
    EXPECT_EQ(r.interfaces, 0u) << "the capture started before the refusal";
  }

  // Stream(request) must be accepted: the capture opens (InterfaceDescription), then the test
  // cancels the call.
  void ExpectAccepted(const std::string& what, const v1::StreamRequest& request) {
    SCOPED_TRACE(what);
    const StreamResult r = RunStream(channel_, request, StreamUntil::kFirstInterface, kCallTimeout);
    EXPECT_EQ(r.interfaces, 1u) << Describe(r.status);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << Describe(r.status);
  }

  static v1::StreamRequest OnVeth() {
    v1::StreamRequest request;
    request.set_interface(kIface);
    request.set_filter("udp");
    return request;
  }

  std::shared_ptr<grpc::Channel> channel_;
};

// `udp) or (tcp`: the agent composes `not (own traffic) and (FILTER)`, so a filter that closes
// the parenthesis early would turn the exclusion of capd's own traffic into `... and (udp) or
// (tcp)`. capctl refuses it before connecting; the agent refuses it too when sent directly.
TEST_F(RequestLimitsTest, FilterBreakingOutOfItsParenthesesIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string filter = "udp) or (tcp";
  const std::string err = RunCapctl("capctl",
                                    {"stream", "--agent", kAgentTarget, "-i", kIface, "-f", filter,
                                     "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find(filter), std::string::npos) << "stderr does not name the filter:\n" << err;

  ASSERT_NO_FATAL_FAILURE(Connect());
  for (const std::string& hostile :
       {filter, std::string("udp) or (tcp port 50051"), std::string("(udp"), std::string("udp)")}) {
    v1::StreamRequest request = OnVeth();
    request.set_filter(hostile);
    ExpectRefused("filter '" + hostile + "'", request, grpc::StatusCode::INVALID_ARGUMENT, "");
  }
  ExpectAgentAlive();
}

// A client's text reaches capd's log escaped: a filter carrying a newline and terminal escapes
// (refused: it does not compile) cannot forge a log line or rewrite an operator's terminal.
TEST_F(RequestLimitsTest, ClientTextInTheLogIsEscaped) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  ASSERT_NO_FATAL_FAILURE(Connect());
  v1::StreamRequest request = OnVeth();
  request.set_filter("udp and \x1b[2K\r\n[2026-01-01 00:00:00.000] [capd] [info] forged");
  ExpectRefused("forging filter", request, grpc::StatusCode::INVALID_ARGUMENT, "");
  ASSERT_TRUE(agent().WaitForStderr("forged", kStartTimeout)) << agent().Describe();
  const std::string log = agent().Stderr();
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << "a raw escape in capd's log";
  EXPECT_EQ(log.find("\n[2026-01-01 00:00:00.000]"), std::string::npos) << "a forged log line";
  EXPECT_NE(log.find("\\x1b[2K\\x0d\\x0a[2026-01-01"), std::string::npos) << log;
  ExpectAgentAlive();
}

// --listen without a port (gRPC would bind 127.0.0.1:443) or with an unbracketed IPv6 address
// exits 2 with the form it takes.
TEST_F(RequestLimitsTest, ListenWithoutAPortIsRefused) {
  for (const char* listen : {"127.0.0.1", "::1", "::1:50051", "0.0.0.0:99999"}) {
    std::unique_ptr<Subprocess> capd;
    ASSERT_NO_FATAL_FAILURE(Spawn("capd-listen", {kCapdPath, "--listen", listen}, &capd));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capd, 2));
    EXPECT_NE(capd->Stderr().find("--listen takes ADDRESS:PORT"), std::string::npos)
        << listen << ": " << capd->Stderr();
  }
}

// Filter text: at most 16 KiB. A valid filter padded with spaces to one byte more is refused by
// name of the limit, through capctl (exit 2) and directly; exactly 16 KiB is accepted.
TEST_F(RequestLimitsTest, FilterOver16KiBIsRefused) {
  constexpr size_t kLimit = 16 * 1024;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  std::string too_long = "udp";
  too_long.resize(kLimit + 1, ' ');
  const std::string err = RunCapctl("capctl",
                                    {"stream", "--agent", kAgentTarget, "-i", kIface, "-f",
                                     too_long, "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("16 KiB"), std::string::npos) << err;

  ASSERT_NO_FATAL_FAILURE(Connect());
  v1::StreamRequest request = OnVeth();
  request.set_filter(too_long);
  ExpectRefused("16 KiB + 1", request, grpc::StatusCode::INVALID_ARGUMENT, "16 KiB");
  std::string at_limit = "udp";
  at_limit.resize(kLimit, ' ');
  request.set_filter(at_limit);
  ExpectAccepted("exactly 16 KiB", request);
  ExpectAgentAlive();
}

// snaplen 1..262144. capctl refuses 262145 itself; the agent refuses 0 and anything over 262144
// (capctl maps -s 0 to "unset", so only a direct request can send 0).
TEST_F(RequestLimitsTest, SnaplenOutsideOneTo262144IsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string err = RunCapctl("capctl",
                                    {"stream", "--agent", kAgentTarget, "-i", kIface, "-s",
                                     "262145", "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("262144"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(File("out.pcapng")));

  ASSERT_NO_FATAL_FAILURE(Connect());
  for (uint32_t snaplen : {0u, 262145u, 300000u, 0xffffffffu}) {
    v1::StreamRequest request = OnVeth();
    request.set_snaplen(snaplen);
    ExpectRefused("snaplen " + std::to_string(snaplen), request, grpc::StatusCode::INVALID_ARGUMENT,
                  "snaplen");
  }
  for (uint32_t snaplen : {1u, 262144u}) {
    v1::StreamRequest request = OnVeth();
    request.set_snaplen(snaplen);
    ExpectAccepted("snaplen " + std::to_string(snaplen), request);
  }
  ExpectAgentAlive();
}

// Interface names: at most 15 characters (IFNAMSIZ) of letters, digits and - _ . : @. Longer or
// odd names are refused before libpcap sees them; a well-formed unknown name is NOT_FOUND.
TEST_F(RequestLimitsTest, MalformedInterfaceNamesAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  // Through capctl, a refusal by the agent: exit 2.
  const std::string err = RunCapctl("capctl",
                                    {"stream", "--agent", kAgentTarget, "-i", std::string(40, 'a'),
                                     "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("interface"), std::string::npos) << err;

  ASSERT_NO_FATAL_FAILURE(Connect());
  for (const std::string& name :
       {std::string(40, 'a'), std::string(16, 'a'), std::string("veth0 "), std::string("../../etc"),
        std::string("eth0;id"), std::string("veth0\n"), std::string("any\0x", 5)}) {
    v1::StreamRequest request = OnVeth();
    request.set_interface(name);
    ExpectRefused("interface of " + std::to_string(name.size()) + " bytes", request,
                  grpc::StatusCode::INVALID_ARGUMENT, "interface name");
  }
  v1::StreamRequest request = OnVeth();
  request.set_interface(std::string(15, 'z'));
  ExpectRefused("15 characters, unknown", request, grpc::StatusCode::NOT_FOUND, "");
  ExpectAgentAlive();
}

// Durations at most 30 days, counts at most 2^48.
TEST_F(RequestLimitsTest, DurationsAndCountsBeyondTheirLimitsAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  // 40 days through capctl (which accepts up to 1e9 s): the agent refuses, capctl exits 2.
  const std::string err =
      RunCapctl("capctl",
                {"stream", "--agent", kAgentTarget, "-i", kIface, "--duration",
                 std::to_string(40 * 24 * 3600), "-w", File("out.pcapng").string()},
                2);
  EXPECT_NE(err.find("30 days"), std::string::npos) << err;

  ASSERT_NO_FATAL_FAILURE(Connect());
  v1::StreamRequest request = OnVeth();
  request.set_duration_ms(40 * kDayMs);
  ExpectRefused("40 days", request, grpc::StatusCode::INVALID_ARGUMENT, "30 days");
  request.set_duration_ms(30 * kDayMs + 1);
  ExpectRefused("30 days + 1 ms", request, grpc::StatusCode::INVALID_ARGUMENT, "30 days");
  request.set_duration_ms(30 * kDayMs);
  ExpectAccepted("30 days", request);

  request = OnVeth();
  request.set_max_packets((1ULL << 48) + 1);
  ExpectRefused("2^48 + 1 packets", request, grpc::StatusCode::INVALID_ARGUMENT, "2^48");
  request.set_max_packets(UINT64_MAX);
  ExpectRefused("2^64 - 1 packets", request, grpc::StatusCode::INVALID_ARGUMENT, "2^48");
  request.set_max_packets(1ULL << 48);
  ExpectAccepted("2^48 packets", request);
  ExpectAgentAlive();
}

// --max-streams 2: with two streams running a third is refused (capctl: exit 1, "too busy";
// the call: RESOURCE_EXHAUSTED); when one ends, its slot is free again.
TEST_F(RequestLimitsTest, MaxStreamsRefusesTheThirdStream) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--max-streams", "2"}));
  std::unique_ptr<Subprocess> first;
  std::unique_ptr<Subprocess> second;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "first", {"-i", kIface, "-f", "udp", "-w", File("first.pcapng").string()}, &first));
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "second", {"-i", "lo", "-f", "udp", "-w", File("second.pcapng").string()}, &second));

  const std::string err = RunCapctl("third",
                                    {"stream", "--agent", kAgentTarget, "-i", kIface, "-c", "1",
                                     "-w", File("third.pcapng").string()},
                                    1);
  EXPECT_NE(err.find("refused the stream: too busy"), std::string::npos) << err;
  EXPECT_NE(err.find("--max-streams"), std::string::npos) << err;
  ASSERT_NO_FATAL_FAILURE(Connect());
  ExpectRefused("a third stream", OnVeth(), grpc::StatusCode::RESOURCE_EXHAUSTED, "--max-streams");
  EXPECT_TRUE(first->Running()) << first->Describe();
  EXPECT_TRUE(second->Running()) << second->Describe();

  // One ends; its slot comes back once capd has let go of the stream (asynchronously after the
  // call ends), so the next stream is accepted within a few attempts.
  ASSERT_TRUE(first->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*first, 0));
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  StreamResult r;
  do {
    r = RunStream(channel_, OnVeth(), StreamUntil::kFirstInterface, kCallTimeout);
  } while (r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(r.interfaces, 1u) << "no slot after a stream ended: " << Describe(r.status);
  EXPECT_TRUE(second->Running()) << second->Describe();
  ASSERT_TRUE(second->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*second, 0));
  ExpectAgentAlive();
}

// Text that is not UTF-8, in every text field of every request that has one: refused with
// INVALID_ARGUMENT naming the field (the fields are `bytes` on the wire; as `string` such a request
// failed in protobuf's parser with a status that named nothing), before the text is used. capd
// runs as deployed (--user nobody, recordings on) and keeps serving.
TEST_F(RequestLimitsTest, TextThatIsNotUtf8IsRefusedByField) {
  namespace fs = std::filesystem;
  const fs::path records = RecordFolderForNobody();
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--record-dir", records.string()}));
  ASSERT_NO_FATAL_FAILURE(Connect());
  const auto stub = v1::Capture::NewStub(channel_);
  auto deadline = [](grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  };
  auto expect_not_utf8 = [](const std::string& what, const grpc::Status& status,
                            const std::string& field) {
    SCOPED_TRACE(what);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
    EXPECT_EQ(status.error_message(), field + " is not UTF-8") << Describe(status);
  };
  // One of each kind: a stray continuation byte, an overlong '/', a surrogate, a code point above
  // U+10FFFF, a sequence cut short.
  const std::vector<std::string> bad = {"eth\x80",
                                        "a\xc0\xaf"
                                        "b",
                                        "udp \xed\xa0\x80", "\xf4\x90\x80\x80", "tcp \xe2\x82"};

  for (const std::string& text : bad) {
    v1::StreamRequest request = OnVeth();
    request.set_interface(text);
    ExpectRefused("stream interface", request, grpc::StatusCode::INVALID_ARGUMENT,
                  "interface is not UTF-8");
    request = OnVeth();
    request.set_filter(text);
    ExpectRefused("stream filter", request, grpc::StatusCode::INVALID_ARGUMENT,
                  "filter is not UTF-8");
    request = OnVeth();
    request.mutable_decap()->set_mode(v1::Decapsulation::VXLAN);
    request.mutable_decap()->set_inner_filter(text);
    ExpectRefused("stream inner filter", request, grpc::StatusCode::INVALID_ARGUMENT,
                  "decap.inner_filter is not UTF-8");
  }

  for (const std::string& text : bad) {
    auto start = [&](const v1::StartRecordingRequest& request) {
      grpc::ClientContext context;
      deadline(context);
      v1::RecordingInfo info;
      return stub->StartRecording(&context, request, &info);
    };
    v1::StartRecordingRequest request;
    request.set_name("utf8");
    request.set_interface(kIface);
    request.set_name(text);
    expect_not_utf8("start name", start(request), "name");
    request.set_name("utf8");
    request.set_interface(text);
    expect_not_utf8("start interface", start(request), "interface");
    request.set_interface(kIface);
    request.set_filter(text);
    expect_not_utf8("start filter", start(request), "filter");
    request.set_filter("");
    request.mutable_decap()->set_mode(v1::Decapsulation::VXLAN);
    request.mutable_decap()->set_inner_filter(text);
    expect_not_utf8("start inner filter", start(request), "decap.inner_filter");

    grpc::ClientContext stop_context;
    deadline(stop_context);
    v1::StopRecordingRequest stop;
    stop.set_name(text);
    v1::RecordingInfo info;
    expect_not_utf8("stop name", stub->StopRecording(&stop_context, stop, &info), "name");

    grpc::ClientContext fetch_context;
    deadline(fetch_context);
    v1::FetchRecordingRequest fetch;
    fetch.set_name(text);
    auto reader = stub->FetchRecording(&fetch_context, fetch);
    v1::RecordingChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk)) << "a chunk of a recording named by bad text";
    expect_not_utf8("fetch name", reader->Finish(), "name");
  }

  // Nothing was started, and capd still serves.
  grpc::ClientContext list_context;
  deadline(list_context);
  v1::ListRecordingsResponse recordings;
  const grpc::Status listed =
      stub->ListRecordings(&list_context, v1::ListRecordingsRequest(), &recordings);
  EXPECT_TRUE(listed.ok()) << Describe(listed);
  EXPECT_EQ(recordings.recordings_size(), 0);
  EXPECT_TRUE(fs::is_empty(records)) << "a recording folder was made";
  ExpectAccepted("a valid stream afterwards", OnVeth());
  ExpectAgentAlive();
}

// --buffer-size and --block-timeout-ms set the kernel ring of every capture: the ring is the
// packet socket's mapping in capd's address space (what a user sees in /proc/PID/maps), and the
// stream's log line names both. Out-of-range values are refused at start with exit code 2.
TEST_F(HardenedAgentTest, RingFlagsSizeEveryCapturesRing) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--buffer-size", "4MiB", "--block-timeout-ms", "20"}));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-i", kIface, "-f", "udp", "-w", File("out.pcapng").string()}, &capctl));
  const CaptureRings rings = AgentCaptureRings();
  EXPECT_EQ(rings.count, 1u);
  EXPECT_EQ(rings.bytes, 4u << 20) << "the capture ring mapped in capd";
  EXPECT_TRUE(agent().WaitForStderr("ring 4096 KiB, block timeout 20 ms", kStartTimeout))
      << agent().Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  for (const auto& flags : std::vector<std::vector<std::string>>{{"--buffer-size", "512k"},
                                                                 {"--buffer-size", "2G"},
                                                                 {"--block-timeout-ms", "0"},
                                                                 {"--block-timeout-ms", "1001"},
                                                                 {"--block-timeout-ms", "soon"}}) {
    std::vector<std::string> argv = {kCapdPath, "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const CommandResult r = RunCommand(argv, network().agent_ns());
    EXPECT_TRUE(r.status.Exited(2)) << JoinArgs(argv) << ": " << r.status;
    EXPECT_NE(r.output.find("capd: " + flags[0] + " takes"), std::string::npos) << r.output;
  }
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
