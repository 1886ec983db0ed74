// capctl's refusals: exit code 2 and one clear line for requests the agent (or capctl) refuses
// as invalid, exit code 1 and a prompt message when the agent cannot be reached.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/pcapng_file.h"
#include "tests/support/programs.h"

namespace capd::test {
namespace {

class ErrorsTest : public AgentTest {
 protected:
  // Runs `capctl ARGS...` in the agent namespace and expects it to end with `code` within
  // `timeout`; returns its stderr.
  std::string RunCapctl(const std::vector<std::string>& args, int code,
                        std::chrono::milliseconds timeout = kExitTimeout) {
    std::vector<std::string> argv = {kCapctlPath};
    argv.insert(argv.end(), args.begin(), args.end());
    std::unique_ptr<Subprocess> capctl;
    Spawn("capctl", argv, &capctl);
    if (HasFatalFailure()) return "";
    ExpectExit(*capctl, code, timeout);
    return capctl->Stderr();
  }

  // `capctl stream -i nflog:7 -c 5 -w FILE` while 5 datagrams to 10.200.0.1:7000 are logged to
  // group 7: FILE holds them in an NFLOG interface, stamped within the sending window.
  void ExpectNflogCapture(const std::filesystem::path& file);
};

class BadFilterTest : public ErrorsTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(BadFilterTest, ExitsTwoNamingTheFilterAndLibpcapsComplaint) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string filter = GetParam();
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "veth0", "-f", filter,
                                     "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find(filter), std::string::npos) << "stderr does not name the filter:\n" << err;
  EXPECT_NE(err.find("syntax error"), std::string::npos) << "stderr lacks libpcap's message:\n"
                                                         << err;
}

INSTANTIATE_TEST_SUITE_P(Filters, BadFilterTest,
                         ::testing::Values("tcp port", "not a filter", "udp and (port 53"),
                         [](const auto& info) { return "Filter" + std::to_string(info.index); });

// The cases above may be caught by capctl before it connects. This filter compiles for 802.11
// radiotap but not for the veth's Ethernet, so only the agent, compiling it for the live handle,
// can refuse it (INVALID_ARGUMENT).
TEST_F(ErrorsTest, FilterForAnotherLinkTypeIsRefusedByTheAgent) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "veth0", "-f",
                                     "type mgt", "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("type mgt"), std::string::npos) << err;
  // libpcap 1.10's text for an 802.11 keyword on another link type.
  EXPECT_NE(err.find("supported only on 802.11"), std::string::npos) << err;
  EXPECT_NE(agent().Stderr().find("refused"), std::string::npos)
      << "the agent did not see (and refuse) the request: " << agent().Describe();
}

TEST_F(ErrorsTest, UnknownInterfaceExitsTwoNamingIt) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "nosuch0", "-f",
                                     "udp", "-c", "1", "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("nosuch0"), std::string::npos) << err;
}

// libpcap's netfilter log device has microsecond timestamps only: capd asked for nanoseconds,
// got a status code without text, and refused every nflog stream with INTERNAL and an empty
// reason ("pcap_set_tstamp_precision(nflog): "); past that, libpcap reports an empty
// non-blocking read there as an error. Now datagrams logged by an nftables rule to group 7 are
// captured on nflog:7, in an NFLOG interface, stamped with the wall clock (microseconds scaled
// to nanoseconds, not read as nanoseconds).
TEST_F(ErrorsTest, NflogCapturesWhatNftablesLogs) {
  if (!HaveProgram("nft")) GTEST_SKIP() << "needs nft (apt-get install nftables)";
  const std::string ns = network().agent_ns();
  for (const std::string& command :
       {std::string("add table ip capdt"),
        std::string("add chain ip capdt in { type filter hook input priority 0 ; }"),
        std::string("add rule ip capdt in udp dport 7000 log group 7")}) {
    const Status added = RunToSuccess({"ip", "netns", "exec", ns, "nft", command});
    ASSERT_TRUE(added.ok()) << added.message();
  }
  // As root, and as deployed: --user nobody keeps CAP_NET_ADMIN, which nflog needs.
  for (const char* user : {"", "nobody"}) {
    SCOPED_TRACE(*user ? "capd --user nobody" : "capd as root");
    std::vector<std::string> argv = {kCapdPath, "--listen", kAgentTarget, "--name", "capd-it"};
    if (*user) argv.insert(argv.end(), {"--user", user});
    ASSERT_NO_FATAL_FAILURE(Spawn("capd", argv, &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
    ASSERT_NO_FATAL_FAILURE(ExpectNflogCapture(File(std::string("nflog-") + user + ".pcapng")));
    ASSERT_NO_FATAL_FAILURE(StopAgent());
  }
}

void ErrorsTest::ExpectNflogCapture(const std::filesystem::path& file) {
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("nflog", {"-i", "nflog:7", "-c", "5", "-w", file.string()}, &capctl));
  const UniqueFd sink = AgentSocket("10.200.0.1", 7000);
  const UniqueFd peer = PeerSocket();
  const auto before = std::chrono::system_clock::now();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), "10.200.0.1", 7000, MakePayloads(5, "nflog")));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  const auto after = std::chrono::system_clock::now();
  auto read = ReadPcapng(file);
  ASSERT_TRUE(read.ok()) << read.status().message();
  ASSERT_EQ(read->interfaces.size(), 1u);
  constexpr uint16_t kLinktypeNflog = 239;
  EXPECT_EQ(read->interfaces[0].link_type, kLinktypeNflog);
  ASSERT_EQ(read->packets.size(), 5u);
  const auto ns_since_epoch = [](std::chrono::system_clock::time_point t) {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  };
  for (const PcapngPacket& packet : read->packets) {
    EXPECT_GE(packet.ts_ns + 1'000'000, ns_since_epoch(before));
    EXPECT_LE(packet.ts_ns, ns_since_epoch(after) + 1'000'000);
  }
}

// A request the agent refuses as such exits 2, whichever gRPC code carries it: an interface that
// is down is FAILED_PRECONDITION (it exited 1 from stream and 2 from record); a recording name in
// use is ALREADY_EXISTS.
TEST_F(ErrorsTest, RequestsRefusedAsSuchExitTwoFromEveryCommand) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const Status down =
      RunToSuccess({"ip", "-n", network().agent_ns(), "link", "set", "veth0", "down"});
  ASSERT_TRUE(down.ok()) << down.message();
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "veth0", "-c", "1",
                                     "-w", File("down.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("veth0 is down"), std::string::npos) << err;
}

TEST_F(ErrorsTest, BadArgumentsExitTwo) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "veth0", "-c", "many",
                                     "-w", File("out.pcapng").string()},
                                    2);
  EXPECT_NE(err.find("capctl"), std::string::npos) << err;
}

// Nothing listens on port 1 in the agent namespace: a refused connection, reported quickly.
TEST_F(ErrorsTest, UnreachableAgentExitsOneQuickly) {
  const auto start = std::chrono::steady_clock::now();
  const std::string err = RunCapctl({"stream", "--agent", "127.0.0.1:1", "-i", "veth0", "-c", "1",
                                     "-w", File("out.pcapng").string()},
                                    1, std::chrono::seconds(10));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_NE(err.find("cannot reach agent"), std::string::npos) << err;
  EXPECT_NE(err.find("127.0.0.1:1"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(File("out.pcapng")))
      << "an unreachable agent left an empty capture file behind";

  const std::string interfaces_err =
      RunCapctl({"interfaces", "--agent", "127.0.0.1:1"}, 1, std::chrono::seconds(10));
  EXPECT_NE(interfaces_err.find("cannot reach agent"), std::string::npos) << interfaces_err;
}

// Something accepts TCP connections on the agent's address but never speaks HTTP/2 (a listening
// socket nobody accepts from): capctl gives up within its connect timeout, not gRPC's minutes.
TEST_F(ErrorsTest, SilentAgentTimesOutWithAClearMessage) {
  auto listener = OpenSocketIn(network().agent_ns(), AF_INET, SOCK_STREAM);
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(kAgentPort);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener->get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::listen(listener->get(), 16), 0) << std::strerror(errno);

  const auto start = std::chrono::steady_clock::now();
  const std::string err = RunCapctl({"stream", "--agent", kAgentTarget, "-i", "veth0", "-c", "1",
                                     "-w", File("out.pcapng").string()},
                                    1, std::chrono::seconds(15));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  EXPECT_NE(err.find("cannot reach agent"), std::string::npos) << err;
  EXPECT_NE(err.find(kAgentTarget), std::string::npos) << err;
}

}  // namespace
}  // namespace capd::test
