// Who is on the other end of a connection to capd, as capd is deployed (`--user nobody`, the
// unit's four capabilities shared out between capd and its peer helper):
// - local clients are served only as root or as members of the allowed group, also through a
//   real `ssh -L` session (the connecting process is the SSH user's sshd session process);
// - a local process holding idle connections to capd hides nothing of its other traffic (checked
//   against tcpdump), and 1,000 of them change no capture filter;
// - a relay capd cannot identify (a helper without its capabilities) gives the user a warning,
//   and the capture honestly holds the relay's packets;
// - a relay named with terminal escapes is printed escaped;
// - a second capd on the same address exits 1 with the reason; the first keeps serving.
//
// Layout (tests/support/test_network.h): capd, sshd and socat in the agent namespace (veth0,
// 10.200.0.1), the remote side in the peer namespace (veth1, 10.200.0.2).

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/programs.h"
#include "tests/support/test_sshd.h"
#include "tests/support/test_users.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr char kPeer[] = "10.200.0.2";
constexpr uint16_t kPort = 7000;

class PeerIdentityTest : public HardenedAgentTest {
 protected:
  void MakeUsers() {
    auto users = TestUsers::Make();
    ASSERT_TRUE(users.ok()) << users.status().message();
    users_ = std::move(users).value();
  }

  // capctl ARGS as `user` in `netns`, to its end with exit code `code`; returns its stderr.
  std::string RunCapctlAs(const TestUser& user, const std::string& name,
                          const std::vector<std::string>& args, int code,
                          const std::string& netns = "") {
    std::vector<std::string> argv = {kCapctlPath};
    argv.insert(argv.end(), args.begin(), args.end());
    std::unique_ptr<Subprocess> capctl;
    Spawn(name, AsUser(user.uid, user.gid, argv), &capctl, netns);
    if (HasFatalFailure()) return "";
    ExpectExit(*capctl, code);
    return capctl->Stderr();
  }

  // A real sshd on 10.200.0.1:22 whose authorized keys every test user can read (sshd reads
  // them as the user logging in).
  void StartSshd() {
    auto sshd = MakeTestSshd(dir_->path(), kDst);
    ASSERT_TRUE(sshd.ok()) << sshd.status().message();
    sshd_ = *sshd;
    namespace fs = std::filesystem;
    fs::permissions(dir_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::permissions(dir_->path() / "ssh",
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::permissions(dir_->path() / "ssh" / "authorized_keys",
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                        fs::perms::others_read);
    ASSERT_NO_FATAL_FAILURE(Spawn("sshd", SshdCommand(sshd_), &sshd_process_));
    ASSERT_TRUE(sshd_process_->WaitForStderr(SshdReadyLine(sshd_), kStartTimeout))
        << sshd_process_->Describe();
  }

  // `env CAPCTL_SSH_COMMAND="ssh -F <config>" capctl ARGS` in the peer namespace.
  std::vector<std::string> CapctlOverSsh(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "env", "CAPCTL_SSH_COMMAND=ssh -F " + sshd_.client_config.string(), kCapctlPath};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // `program` (socat, or a copy of it under another name) relaying 10.200.0.1:`port` to capd,
  // listening when this returns.
  void StartSocatRelay(const std::string& program, uint16_t port,
                       std::unique_ptr<Subprocess>* relay) {
    ASSERT_NO_FATAL_FAILURE(
        Spawn("relay",
              {program, "-d", "-d",
               "TCP-LISTEN:" + std::to_string(port) + ",bind=" + kDst + ",reuseaddr,fork",
               std::string("TCP:") + kAgentTarget},
              relay));
    ASSERT_TRUE((*relay)->WaitForStderr("listening on", kStartTimeout)) << (*relay)->Describe();
  }

  std::unique_ptr<TestUsers> users_;
  TestSshd sshd_;
  std::unique_ptr<Subprocess> sshd_process_;
};

// ---------------------------------------------------------------------------------------------
// Local authorization.

TEST_F(PeerIdentityTest, LoopbackServesRootAndTheAllowedGroupOnly) {
  ASSERT_NO_FATAL_FAILURE(MakeUsers());
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--allow-group", users_->group()}));
  const TestUser& outsider = users_->outsider();
  const TestUser& member = users_->member();

  // An outsider may neither list nor capture, and capctl says who was refused and how to fix it.
  const std::string listed =
      RunCapctlAs(outsider, "outsider-interfaces", {"interfaces", "--agent", kAgentTarget}, 1);
  EXPECT_NE(listed.find("permission denied"), std::string::npos) << listed;
  EXPECT_NE(listed.find("uid " + std::to_string(outsider.uid) + " (" + outsider.name + ")"),
            std::string::npos)
      << listed;
  EXPECT_NE(listed.find("usermod -aG " + users_->group() + " " + outsider.name), std::string::npos)
      << listed;
  const std::string streamed =
      RunCapctlAs(outsider, "outsider-stream",
                  {"stream", "--agent", kAgentTarget, "-i", kIface, "-c", "1", "-w", "-"}, 1);
  EXPECT_NE(streamed.find("refused the stream: permission denied"), std::string::npos) << streamed;
  // capd says it too, with the peer.
  EXPECT_TRUE(agent().WaitForStderr("refused a stream from ipv4:127.0.0.1:", kStartTimeout))
      << agent().Describe();

  // A member and root are served: a member's stream captures what the test sends.
  const std::string member_list =
      RunCapctlAs(member, "member-interfaces", {"interfaces", "--agent", kAgentTarget}, 0);
  const std::string root_list =
      RunCapctl("root-interfaces", {"interfaces", "--agent", kAgentTarget}, 0);
  EXPECT_NE(ReadFileToString(File("member-interfaces.out")).find(kIface), std::string::npos);
  EXPECT_NE(ReadFileToString(File("root-interfaces.out")).find(kIface), std::string::npos);

  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(Spawn("member-stream",
                                AsUser(member.uid, member.gid,
                                       {kCapctlPath, "stream", "--agent", kAgentTarget, "-i",
                                        kIface, "-f", "udp port 7000", "-c", "4", "-w", "-"}),
                                &capctl));
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();
  const auto payloads = MakePayloads(4, "member");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ExpectUdpPayloads(ReadOrFail(File("member-stream.out")), payloads, kPort);
  ExpectAgentAlive();
}

TEST_F(PeerIdentityTest, ThroughSshTheSshUsersGroupDecides) {
  ASSERT_NO_FATAL_FAILURE(MakeUsers());
  ASSERT_NO_FATAL_FAILURE(StartSshd());
  ASSERT_NO_FATAL_FAILURE(
      StartAgentWith({"--user", "nobody", "--no-metadata", "--allow-group", users_->group()}));
  const TestUser& outsider = users_->outsider();
  const TestUser& member = users_->member();

  // capctl on "the laptop" (the peer namespace, as root there), logging in as each user.
  std::unique_ptr<Subprocess> as_member;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "ssh-member",
      CapctlOverSsh({"interfaces", "--agent", "ssh://" + member.name + "@" + std::string(kDst)}),
      &as_member, network().peer_ns()));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*as_member, 0));
  EXPECT_NE(ReadFileToString(File("ssh-member.out")).find(kIface), std::string::npos)
      << as_member->Describe();

  // The member's stream of the interface its own SSH session crosses: capd (nobody) finds the
  // member's sshd session process, which runs as the member, and leaves its connection out.
  std::unique_ptr<Subprocess> stream;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("ssh-member-stream",
            CapctlOverSsh({"stream", "--agent",
                           "ssh://" + member.name + "@" + std::string(kDst) + "/" + kIface, "-w",
                           File("member.pcapng").string()}),
            &stream, network().peer_ns()));
  ASSERT_TRUE(
      stream->WaitForStderr("excludes the connections carrying this stream: sshd[", kStartTimeout))
      << stream->Describe();
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd peer = PeerSocket();
  const auto payloads = MakePayloads(10, "over-ssh");
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_TRUE(WaitForFileContains(File("member.pcapng"), payloads.back(), kStartTimeout, [&] {
    return stream->Running();
  })) << stream->Describe();
  ASSERT_TRUE(stream->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*stream, 0));
  size_t ssh_packets = 0;
  for (const auto& packet : ReadOrFail(File("member.pcapng"))) {
    auto matches = MatchesFilter(packet, "tcp port 22");
    ASSERT_TRUE(matches.ok()) << matches.status().message();
    ssh_packets += *matches ? 1 : 0;
  }
  EXPECT_EQ(ssh_packets, 0u) << "the member's own SSH session is in its capture";
  EXPECT_NE(agent().Stderr().find("(uid " + std::to_string(member.uid) + ") relays this stream"),
            std::string::npos)
      << agent().Describe();

  std::unique_ptr<Subprocess> as_outsider;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "ssh-outsider",
      CapctlOverSsh({"interfaces", "--agent", "ssh://" + outsider.name + "@" + std::string(kDst)}),
      &as_outsider, network().peer_ns()));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*as_outsider, 1));
  const std::string said = as_outsider->Stderr();
  EXPECT_NE(said.find("permission denied"), std::string::npos) << said;
  EXPECT_NE(said.find("uid " + std::to_string(outsider.uid)), std::string::npos) << said;
  ExpectAgentAlive();
}

// ---------------------------------------------------------------------------------------------
// Idle connections to capd hide nothing.

// A process of another uid opens `connections` idle connections to capd, then one TCP
// connection to the peer namespace over which it sends `messages` lines; it exits when done.
constexpr char kHider[] = R"(
import resource, socket, sys, time
connections, messages = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
idle = [socket.create_connection(("127.0.0.1", 50051)) for _ in range(connections)]
print("holding", len(idle), flush=True)
sys.stdin.readline()
talk = socket.create_connection(("10.200.0.2", 4444))
for i in range(messages):
    talk.sendall(b"hidden-%d\n" % i)
    time.sleep(0.002)
talk.close()
)";

TEST_F(PeerIdentityTest, IdleConnectionsOfAnotherUserHideNothing) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "needs Debian's python3";
  if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata"}));
  std::unique_ptr<Subprocess> listener;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("listener",
            {"socat", "-d", "-d", "-u", std::string("TCP-LISTEN:4444,bind=") + kPeer + ",reuseaddr",
             "OPEN:" + File("received.txt").string() + ",creat"},
            &listener, network().peer_ns()));
  ASSERT_TRUE(listener->WaitForStderr("listening on", kStartTimeout)) << listener->Describe();

  // uid 12345 holds 1,000 connections to capd, then, on a line on its stdin, talks to
  // 10.200.0.2:4444 across veth0.
  constexpr int kConnections = 1000, kMessages = 200;
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const UniqueFd go_read(go[0]), go_write(go[1]);
  SubprocessOptions options;
  options.argv = AsUser(
      12345, 12345,
      {"/usr/bin/python3", "-c", kHider, std::to_string(kConnections), std::to_string(kMessages)});
  options.netns = network().agent_ns();
  options.stdout_path = File("hider.out");
  options.stderr_path = File("hider.err");
  options.stdin_fd = go_read.get();
  auto started_hider = Subprocess::Start(std::move(options));
  ASSERT_TRUE(started_hider.ok()) << started_hider.status().message();
  std::unique_ptr<Subprocess> hider = std::move(started_hider).value();
  ASSERT_TRUE(WaitForFileContains(File("hider.out"), "holding 1000", kStartTimeout, [&] {
    return hider->Running();
  })) << hider->Describe();

  // A stream starts while they are held, next to tcpdump on the same interface.
  const auto before = std::chrono::steady_clock::now();
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-i", kIface, "-f", "tcp port 4444", "-w", File("out.pcapng").string()}, &capctl));
  const auto started = std::chrono::steady_clock::now() - before;
  std::cout << "capture start with " << kConnections << " idle connections to capd: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(started).count() << " ms\n";
  std::unique_ptr<Subprocess> witness;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("witness", kIface, File("witness.pcap"),
                                       {"-U", "--immediate-mode", "tcp port 4444"}, &witness));

  ASSERT_EQ(write(go_write.get(), "go\n", 3), 3);
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*hider, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*listener, 0));
  const std::string last = "hidden-" + std::to_string(kMessages - 1) + "\n";
  ASSERT_TRUE(WaitForFileContains(File("out.pcapng"), last, kStartTimeout,
                                  [&] { return capctl->Running(); }))
      << "capd's capture misses the hider's last message: " << capctl->Describe();
  ASSERT_TRUE(WaitForFileContains(File("witness.pcap"), last, kStartTimeout, [&] {
    return witness->Running();
  })) << witness->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ASSERT_TRUE(witness->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*witness, 0));

  // Every message is in capd's capture, in as many data segments as tcpdump saw.
  const std::string file = ReadFileToString(File("out.pcapng"));
  for (int i = 0; i < kMessages; ++i) {
    const std::string message = "hidden-" + std::to_string(i) + "\n";
    EXPECT_NE(file.find(message), std::string::npos) << "capd's capture misses " << message;
  }
  const std::string data_segments =
      "tcp dst port 4444 and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) != 0";
  auto count = [&](const std::vector<CapturedPacket>& packets) {
    size_t n = 0;
    for (const auto& packet : packets) {
      auto matches = MatchesFilter(packet, data_segments);
      EXPECT_TRUE(matches.ok()) << matches.status().message();
      n += matches.ok() && *matches ? 1 : 0;
    }
    return n;
  };
  const size_t witnessed = count(ReadOrFail(File("witness.pcap")));
  EXPECT_GT(witnessed, 0u) << "tcpdump saw no data segment: the test proves nothing";
  EXPECT_EQ(count(ReadOrFail(File("out.pcapng"))), witnessed)
      << "capd's capture of the hider's connection differs from tcpdump's";
  // No idle connection changed a filter, and nothing was excluded.
  EXPECT_EQ(agent().Stderr().find("carriers changed"), std::string::npos) << agent().Describe();
  EXPECT_EQ(capctl->Stderr().find("excludes the connections"), std::string::npos)
      << capctl->Describe();
  EXPECT_NE(SummaryLine(capctl->Stderr()).find("0 by kernel"), std::string::npos)
      << capctl->Describe();
  ExpectAgentAlive();
}

// ---------------------------------------------------------------------------------------------
// Relays capd cannot identify, and relays with hostile names.

TEST_F(PeerIdentityTest, UnidentifiedRelayIsAWarningAndItsPacketsAreCaptured) {
  if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
  // capd as the unit would start it without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (an old unit
  // file): nobody with only the capture capabilities. Its helper can read no other user's fds.
  std::vector<std::string> argv = {"setpriv",
                                   "--reuid",
                                   "nobody",
                                   "--regid",
                                   "nogroup",
                                   "--clear-groups",
                                   "--inh-caps",
                                   "-all,+net_raw,+net_admin",
                                   "--ambient-caps",
                                   "-all,+net_raw,+net_admin",
                                   "--",
                                   kCapdPath,
                                   "--listen",
                                   kAgentTarget,
                                   "--user",
                                   "nobody",
                                   "--no-metadata"};
  ASSERT_NO_FATAL_FAILURE(Spawn("capd", argv, &agent_));
  ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
      << agent_->Describe();
  EXPECT_NE(agent().Stderr().find("lacks CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH"), std::string::npos)
      << agent().Describe();

  constexpr uint16_t kRelayPort = 50053;
  std::unique_ptr<Subprocess> relay;
  ASSERT_NO_FATAL_FAILURE(StartSocatRelay("socat", kRelayPort, &relay));

  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("capctl",
            {kCapctlPath, "stream", "--agent",
             std::string(kDst) + ":" + std::to_string(kRelayPort) + "/" + kIface, "-w",
             File("out.pcapng").string()},
            &capctl, network().peer_ns()));
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();
  // One warning line, before the user reads the capture: what is not excluded and why.
  ASSERT_TRUE(capctl->WaitForStderr("capctl: warning: agent ", kStartTimeout))
      << capctl->Describe();
  const std::string warning = LineWith(capctl->Stderr(), "capctl: warning: ");
  EXPECT_NE(warning.find("could not identify the process relaying this stream"), std::string::npos)
      << warning;
  EXPECT_NE(warning.find("NOT left out of captures"), std::string::npos) << warning;
  // Batches cross veth0 through the relay: the capture holds them, as the warning says.
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, MakePayloads(20, "unidentified")));
  ASSERT_TRUE(WaitForPackets(File("out.pcapng"), 30)) << capctl->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  size_t relay_packets = 0;
  for (const auto& packet : ReadOrFail(File("out.pcapng"))) {
    auto matches = MatchesFilter(packet, "tcp port " + std::to_string(kRelayPort));
    ASSERT_TRUE(matches.ok()) << matches.status().message();
    relay_packets += *matches ? 1 : 0;
  }
  EXPECT_GT(relay_packets, 0u) << "the warning says the relay is captured; the capture disagrees";
  const std::string said = capctl->Stderr();
  size_t warnings = 0;
  for (size_t at = said.find("capctl: warning: "); at != std::string::npos;
       at = said.find("capctl: warning: ", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << said;
  ExpectAgentAlive();
}

TEST_F(PeerIdentityTest, RelayNamedWithTerminalEscapesIsPrintedEscaped) {
  if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
  // A copy of socat whose name erases the line and hides what follows on a terminal.
  const std::string hostile = "\x1b[2K\x1b[8mrelay";
  const std::filesystem::path program = File(hostile);
  std::filesystem::copy_file("/usr/bin/socat", program);
  std::filesystem::permissions(program, std::filesystem::perms::owner_all);
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata"}));
  constexpr uint16_t kRelayPort = 50054;
  std::unique_ptr<Subprocess> relay;
  ASSERT_NO_FATAL_FAILURE(StartSocatRelay(program.string(), kRelayPort, &relay));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("capctl",
            {kCapctlPath, "stream", "--agent",
             std::string(kDst) + ":" + std::to_string(kRelayPort) + "/" + kIface, "-f",
             "udp port 7000", "--duration", "3", "-w", File("out.pcapng").string()},
            &capctl, network().peer_ns()));
  ASSERT_TRUE(capctl->WaitForStderr("excludes the connections carrying this stream", kStartTimeout))
      << capctl->Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  const std::string said = capctl->Stderr();
  EXPECT_NE(said.find("\\x1b[2K\\x1b[8mrelay["), std::string::npos) << said;
  EXPECT_EQ(said.find('\x1b'), std::string::npos) << "a raw escape reached capctl's stderr";
  EXPECT_EQ(agent().Stderr().find('\x1b'), std::string::npos) << "a raw escape reached capd's log";
  ExpectAgentAlive();
}

// ---------------------------------------------------------------------------------------------
// Streams through a relay start and end while another stream runs: each changes the carrier set
// and so every capture's kernel filter, and the running stream loses nothing (libpcap's
// pcap_setfilter would drop, uncounted, whatever arrived while it drained the socket).

TEST_F(PeerIdentityTest, RelayedStreamsComingAndGoingLoseNothingOfARunningStream) {
  if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata"}));
  constexpr uint16_t kRelayPort = 50055;
  std::unique_ptr<Subprocess> relay;
  ASSERT_NO_FATAL_FAILURE(StartSocatRelay("socat", kRelayPort, &relay));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> running;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "running", {"-i", kIface, "-f", "udp port 7000", "-w", File("running.pcapng").string()},
      &running));

  // A steady flow (about 10,000 datagrams a second) for as long as the relayed streams cycle.
  std::atomic<bool> stop{false};
  std::vector<std::string> sent;
  std::thread sender([&] {
    const UniqueFd peer = PeerSocket();
    for (int i = 0; !stop.load() || i < 2000; ++i) {
      sent.push_back("flow-" + std::to_string(i));
      if (!SendUdp(peer.get(), kDst, kPort, sent.back()).ok()) return;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  constexpr int kCycles = 4;
  for (int i = 0; i < kCycles; ++i) {
    // Another capture (its own filter) through the relay; -c 5 ends it within the flow.
    std::unique_ptr<Subprocess> relayed;
    Spawn("relayed-" + std::to_string(i),
          {kCapctlPath, "stream", "--agent",
           std::string(kDst) + ":" + std::to_string(kRelayPort) + "/" + kIface, "-f",
           "udp port 7000 or udp port 7001", "-c", "5", "-w",
           File("relayed-" + std::to_string(i) + ".pcapng").string()},
          &relayed, network().peer_ns());
    if (HasFatalFailure()) break;
    ExpectExit(*relayed, 0);
    EXPECT_NE(relayed->Stderr().find("excludes the connections carrying this stream"),
              std::string::npos)
        << relayed->Describe();
  }
  stop = true;
  sender.join();
  ASSERT_FALSE(sent.empty());
  ASSERT_TRUE(WaitForFileContains(File("running.pcapng"), sent.back(), kStartTimeout, [&] {
    return running->Running();
  })) << running->Describe();
  ASSERT_TRUE(running->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*running, 0));
  ExpectUdpPayloads(ReadOrFail(File("running.pcapng")), sent, kPort);
  EXPECT_NE(SummaryLine(running->Stderr()).find("0 by kernel"), std::string::npos)
      << running->Describe();
  // The filters did change: one start and one end per relayed stream.
  const std::string log = agent().Stderr();
  size_t changes = 0;
  for (size_t at = log.find("carriers changed"); at != std::string::npos;
       at = log.find("carriers changed", at + 1)) {
    ++changes;
  }
  EXPECT_GE(changes, static_cast<size_t>(kCycles)) << log;
  std::cout << sent.size() << " datagrams sent during " << changes << " filter changes\n";
  ExpectAgentAlive();
}

// ---------------------------------------------------------------------------------------------
// One capd per address.

TEST_F(PeerIdentityTest, SecondAgentOnTheSameAddressExitsOne) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody", "--no-metadata"}));
  std::unique_ptr<Subprocess> second;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("second", {kCapdPath, "--listen", kAgentTarget, "--user", "nobody", "--no-metadata"},
            &second));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*second, 1));
  EXPECT_NE(second->Stderr().find("address already in use"), std::string::npos)
      << second->Describe();
  // The first one still serves, every time (no splitting of clients between two listeners).
  for (int i = 0; i < 5; ++i) {
    RunCapctl("interfaces-" + std::to_string(i), {"interfaces", "--agent", kAgentTarget}, 0);
  }
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
