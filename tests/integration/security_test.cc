// Who may use capd and with what rights: TLS (server-only and mutual) with certificates made by
// the test, the refusal of a non-loopback address without TLS, a bearer token, and --user (uid,
// capabilities and no_new_privs read from /proc, and a capture still opening afterwards).
// Every refusal leaves capd serving.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/proc_status.h"
#include "tests/support/test_pki.h"
#include "tests/support/test_users.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;
// capd on the veth's address, reachable from the peer namespace.
constexpr char kVethTarget[] = "10.200.0.1:50051";

// Writes `content` to `path`.
void WriteText(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  out.close();
  ASSERT_TRUE(out) << "cannot write " << path;
}

// Waits until `path` holds at least `count` UDP datagrams to kPort (capctl flushes every batch).
void WaitForUdpPackets(const std::filesystem::path& path, size_t count, Subprocess& writer) {
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (true) {
    auto packets = ReadCapture(path);  // may fail while a block is half written
    if (packets.ok()) {
      size_t udp = 0;
      for (const auto& p : *packets) {
        uint16_t port = 0;
        if (UdpPayload(p, &port) && port == kPort) ++udp;
      }
      if (udp >= count) return;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "the packets never reached " << path << ": " << writer.Describe();
    ASSERT_TRUE(writer.Running()) << writer.Describe();
    writer.WaitFor(std::chrono::milliseconds(10));
  }
}

class TlsAccessTest : public HardenedAgentTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(HardenedAgentTest::SetUp());
    if (IsSkipped()) return;
    const auto dir = File("pki");
    std::filesystem::create_directory(dir);
    auto pki = MakeTestPki(dir);
    if (!pki.ok() && pki.status().code() == StatusCode::kFailedPrecondition) {
      GTEST_SKIP() << pki.status().message();
    }
    ASSERT_TRUE(pki.ok()) << pki.status().message();
    pki_ = std::move(pki).value();
  }

  std::vector<std::string> ServerTls() const {
    return {"--tls-cert", pki_.server_cert.string(), "--tls-key", pki_.server_key.string()};
  }
  std::vector<std::string> MutualTls() const {
    std::vector<std::string> flags = ServerTls();
    flags.insert(flags.end(), {"--tls-client-ca", pki_.ca_cert.string()});
    return flags;
  }

  // A stream of five datagrams through `capctl stream CONNECTION_ARGS...`: exit 0 and exactly
  // the datagrams in the file.
  void ExpectStreamWorks(const std::string& name, const std::vector<std::string>& connection) {
    const UniqueFd sink = AgentSocket(kDst, kPort);
    std::vector<std::string> args = connection;
    const auto file = File(name + ".pcapng");
    args.insert(args.end(), {"-i", kIface, "-f", "udp", "-c", "5", "-w", file.string()});
    std::unique_ptr<Subprocess> capctl;
    ASSERT_NO_FATAL_FAILURE(StartStream(name, args, &capctl));
    const auto payloads = MakePayloads(5, name);
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
    ExpectUdpPayloads(ReadOrFail(file), payloads, kPort);
  }

  // `capctl stream CONNECTION_ARGS...` must fail to connect: exit 1 with "cannot reach agent",
  // the text `expected`, and no capture file left behind.
  void ExpectConnectionRefused(const std::string& name, const std::vector<std::string>& connection,
                               const std::string& expected) {
    std::vector<std::string> args = {"stream", "--agent", kAgentTarget};
    args.insert(args.end(), connection.begin(), connection.end());
    const auto file = File(name + ".pcapng");
    args.insert(args.end(), {"-i", kIface, "-f", "udp", "-c", "1", "-w", file.string()});
    const std::string err = RunCapctl(name, args, 1);
    const std::string line = LineWith(err, "cannot reach agent at ");
    EXPECT_NE(line, "") << name << ": no 'cannot reach agent' line:\n" << err;
    EXPECT_NE(line.find(expected), std::string::npos)
        << name << ": the line does not say '" << expected << "':\n"
        << err;
    EXPECT_FALSE(std::filesystem::exists(file)) << name << ": a refused stream left a file";
  }

  TestPki pki_;
};

// capd serving TLS: capctl verifying it with --tls-ca streams; capctl without --tls-ca (plain
// HTTP/2 to a TLS port), or trusting another CA, is told why it cannot connect.
TEST_F(TlsAccessTest, ServerTlsServesOnlyClientsThatVerifyIt) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(ServerTls()));
  EXPECT_NE(agent().Stderr().find("(TLS)"), std::string::npos) << agent().Describe();

  ASSERT_NO_FATAL_FAILURE(ExpectStreamWorks("tls", {"--tls-ca", pki_.ca_cert.string()}));
  // Without --tls-ca capctl speaks plaintext; capctl's hint names the missing flag.
  ASSERT_NO_FATAL_FAILURE(ExpectConnectionRefused("plaintext", {}, "--tls-ca"));
  ASSERT_NO_FATAL_FAILURE(
      ExpectConnectionRefused("other-ca", {"--tls-ca", pki_.other_ca_cert.string()}, "TLS"));
  // `capctl interfaces` takes the same connection flags.
  const std::string err = RunCapctl(
      "interfaces", {"interfaces", "--agent", kAgentTarget, "--tls-ca", pki_.ca_cert.string()}, 0);
  EXPECT_NE(ReadFileToString(File("interfaces.out")).find(kIface), std::string::npos) << err;
  ExpectAgentAlive();
}

// --tls-client-ca: a client without a certificate, or with one from another CA, is refused at
// the handshake (exit 1); the client certificate from the right CA streams.
TEST_F(TlsAccessTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(MutualTls()));
  const std::string ca = pki_.ca_cert.string();
  ASSERT_NO_FATAL_FAILURE(ExpectConnectionRefused("no-client-cert", {"--tls-ca", ca}, ""));
  ASSERT_NO_FATAL_FAILURE(
      ExpectConnectionRefused("other-ca-client-cert",
                              {"--tls-ca", ca, "--tls-cert", pki_.other_client_cert.string(),
                               "--tls-key", pki_.other_client_key.string()},
                              ""));
  ExpectAgentAlive();
  ASSERT_NO_FATAL_FAILURE(
      ExpectStreamWorks("client-cert", {"--tls-ca", ca, "--tls-cert", pki_.client_cert.string(),
                                        "--tls-key", pki_.client_key.string()}));
  ExpectAgentAlive();
}

// The refusal must tell the user it is about TLS (the issue: "capctl says which"). With TLS 1.3
// the server checks the client certificate after the client has finished its side of the
// handshake, so gRPC reports only "Socket closed"; capctl, knowing it connected with TLS, must
// still point at the certificates.
TEST_F(TlsAccessTest, MutualTlsRefusalSaysItIsAboutTls) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(MutualTls()));
  const std::string ca = pki_.ca_cert.string();
  ASSERT_NO_FATAL_FAILURE(ExpectConnectionRefused("no-client-cert", {"--tls-ca", ca}, "TLS"));
  ASSERT_NO_FATAL_FAILURE(
      ExpectConnectionRefused("other-ca-client-cert",
                              {"--tls-ca", ca, "--tls-cert", pki_.other_client_cert.string(),
                               "--tls-key", pki_.other_client_key.string()},
                              "TLS"));
  ExpectAgentAlive();
}

// Any address but loopback without TLS: capd refuses to start, exit 2, one clear line.
TEST_F(TlsAccessTest, NonLoopbackListenWithoutTlsIsRefused) {
  std::unique_ptr<Subprocess> capd;
  ASSERT_NO_FATAL_FAILURE(Spawn("capd-plain", {kCapdPath, "--listen", kVethTarget}, &capd));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capd, 2));
  EXPECT_NE(capd->Stderr().find("without TLS"), std::string::npos) << capd->Describe();
  EXPECT_NE(capd->Stderr().find(kVethTarget), std::string::npos) << capd->Describe();
}

// TLS alone on an address others can reach proves capd to its clients but lets anyone capture:
// capd refuses to start, exit 2, naming both ways to authenticate clients. (The attack: a
// stranger listed interfaces and streamed.) On loopback TLS alone is fine: local clients are
// authorized by their uid.
TEST_F(TlsAccessTest, NonLoopbackTlsWithoutClientAuthenticationIsRefused) {
  std::vector<std::string> argv = {kCapdPath, "--listen", kVethTarget};
  const std::vector<std::string> tls = ServerTls();
  argv.insert(argv.end(), tls.begin(), tls.end());
  std::unique_ptr<Subprocess> capd;
  ASSERT_NO_FATAL_FAILURE(Spawn("capd-tls-only", argv, &capd));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capd, 2));
  const std::string said = capd->Stderr();
  EXPECT_NE(said.find("without client authentication"), std::string::npos) << said;
  EXPECT_NE(said.find("--tls-client-ca"), std::string::npos) << said;
  EXPECT_NE(said.find("--auth-token-file"), std::string::npos) << said;
  EXPECT_NE(said.find(kVethTarget), std::string::npos) << said;
}

// A key that is not the certificate's, or files that hold no PEM: gRPC took them and served
// nothing on the port (the issue saw "address in use"). capd exits 2 naming the file and why.
TEST_F(TlsAccessTest, CertificateAndKeyProblemsAreNamedAtStart) {
  struct Case {
    std::string name, cert, key, expected;
  };
  const std::vector<Case> cases = {
      {"mismatch", pki_.server_cert.string(), pki_.client_key.string(),
       "is not the key of the certificate in --tls-cert"},
      {"key-as-cert", pki_.server_key.string(), pki_.server_key.string(),
       "no PEM certificate in it"},
      {"cert-as-key", pki_.server_cert.string(), pki_.server_cert.string(),
       "no unencrypted PEM private key in it"},
  };
  for (const Case& c : cases) {
    std::unique_ptr<Subprocess> capd;
    ASSERT_NO_FATAL_FAILURE(Spawn("capd-" + c.name,
                                  {kCapdPath, "--listen", kAgentTarget, "--tls-cert", c.cert,
                                   "--tls-key", c.key, "--no-metadata"},
                                  &capd));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capd, 2));
    const std::string said = capd->Stderr();
    EXPECT_NE(said.find(c.expected), std::string::npos) << c.name << ": " << said;
    EXPECT_EQ(said.find("address already in use"), std::string::npos) << c.name << ": " << said;
  }
}

// With TLS and a token capd listens on the veth's address, and a capctl in the peer namespace
// streams over the veth. The capture has no filter at all: the agent's own gRPC traffic, which
// crosses the very interface being captured, must still be left out (its port is excluded in the
// kernel).
TEST_F(TlsAccessTest, TlsOnTheVethServesTheOtherNamespace) {
  constexpr int kCount = 20;
  ASSERT_NO_FATAL_FAILURE(WriteText(File("token"), "capd-veth-token-31f7\n"));
  std::vector<std::string> flags = ServerTls();
  flags.insert(flags.end(), {"--auth-token-file", File("token").string()});
  ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags, kVethTarget));
  const UniqueFd sink = AgentSocket(kDst, kPort);
  const std::string ca = pki_.ca_cert.string();
  const std::string token = File("token").string();

  // The certificate names 127.0.0.1 and localhost, not 10.200.0.1: refused unless capctl is
  // told which name to expect.
  const std::string mismatch =
      RunCapctl("name-mismatch",
                {"stream", "--agent", kVethTarget, "--tls-ca", ca, "--token-file", token, "-i",
                 kIface, "-c", "1", "-w", File("mismatch.pcapng").string()},
                1, network().peer_ns());
  EXPECT_NE(LineWith(mismatch, "cannot reach agent at ").find("certificate"), std::string::npos)
      << mismatch;

  std::unique_ptr<Subprocess> capctl;
  const auto file = File("remote.pcapng");
  ASSERT_NO_FATAL_FAILURE(
      Spawn("remote",
            {kCapctlPath, "stream", "--agent", kVethTarget, "--tls-ca", ca, "--tls-server-name",
             "localhost", "--token-file", token, "-i", kIface, "-w", file.string()},
            &capctl, network().peer_ns()));
  ASSERT_TRUE(capctl->WaitForStderr("capctl: capturing on", kStartTimeout)) << capctl->Describe();
  const auto payloads = MakePayloads(kCount, "remote");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(WaitForUdpPackets(file, kCount, *capctl));
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  // Everything captured is either the test's datagrams (in order) or ARP; not one TCP segment
  // (the TLS connection to capd crossed veth0 the whole time).
  std::vector<CapturedPacket> udp;
  for (const auto& p : ReadOrFail(file)) {
    auto is_arp = MatchesFilter(p, "arp");
    ASSERT_TRUE(is_arp.ok()) << is_arp.status().message();
    auto is_tcp = MatchesFilter(p, "tcp");
    ASSERT_TRUE(is_tcp.ok()) << is_tcp.status().message();
    EXPECT_FALSE(*is_tcp) << "a TCP packet (capd's own traffic?) of " << p.len << " bytes";
    if (!*is_arp && !*is_tcp) udp.push_back(p);
  }
  ExpectUdpPayloads(udp, payloads, kPort);
  ExpectAgentAlive();
}

class TokenAccessTest : public HardenedAgentTest {};

// --auth-token-file: no token is UNAUTHENTICATED for a client that is not allowed locally
// (nobody), a wrong one (a prefix of the right one among them) PERMISSION_DENIED whoever sends it,
// and capctl says which; the right token streams; root, allowed locally, needs none; capd keeps
// serving.
TEST_F(TokenAccessTest, OnlyTheRightTokenStreams) {
  constexpr char kToken[] = "capd-test-token-6f1e0c2a9b";
  ASSERT_NO_FATAL_FAILURE(WriteText(File("token"), std::string(kToken) + "\n"));
  ASSERT_NO_FATAL_FAILURE(WriteText(File("wrong-token"), "capd-test-token-000000000\n"));
  ASSERT_NO_FATAL_FAILURE(WriteText(File("prefix-token"), "capd-test-token"));
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--auth-token-file", File("token").string()}));
  EXPECT_NE(agent().Stderr().find("(token required)"), std::string::npos) << agent().Describe();

  auto stream_args = [&](const std::string& name, const std::string& token_file) {
    std::vector<std::string> args = {"stream", "--agent", kAgentTarget};
    if (!token_file.empty()) args.insert(args.end(), {"--token-file", token_file});
    args.insert(args.end(),
                {"-i", kIface, "-f", "udp", "-c", "1", "-w", File(name + ".pcapng").string()});
    return args;
  };
  const std::string refused =
      "capctl: agent " + std::string(kAgentTarget) + " refused the stream: ";

  // capctl as nobody: not allowed locally, so the token decides. It may write in the test's
  // folder (it checks its output path before it connects).
  std::filesystem::permissions(dir_->path(),
                               std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
  auto as_nobody = [&](const std::string& name, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {kCapctlPath};
    argv.insert(argv.end(), args.begin(), args.end());
    std::unique_ptr<Subprocess> capctl;
    Spawn(name, AsUser(65534, 65534, argv), &capctl);
    if (HasFatalFailure()) return std::string();
    ExpectExit(*capctl, 1);
    return capctl->Stderr();
  };
  const std::string none = as_nobody("no-token", stream_args("no-token", ""));
  EXPECT_NE(none.find(refused + "not authenticated"), std::string::npos) << none;
  EXPECT_NE(none.find("uid 65534"), std::string::npos) << none;
  const std::string wrong =
      RunCapctl("wrong-token", stream_args("wrong-token", File("wrong-token").string()), 1);
  EXPECT_NE(wrong.find(refused + "permission denied"), std::string::npos) << wrong;
  const std::string prefix =
      RunCapctl("prefix-token", stream_args("prefix-token", File("prefix-token").string()), 1);
  EXPECT_NE(prefix.find(refused + "permission denied"), std::string::npos) << prefix;
  // ListInterfaces is guarded too.
  const std::string list = as_nobody("interfaces", {"interfaces", "--agent", kAgentTarget});
  EXPECT_NE(list.find("not authenticated"), std::string::npos) << list;
  RunCapctl("root-interfaces", {"interfaces", "--agent", kAgentTarget}, 0);
  ExpectAgentAlive();

  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("right-token",
                                      {"--token-file", File("token").string(), "-i", kIface, "-f",
                                       "udp", "-c", "5", "-w", File("right.pcapng").string()},
                                      &capctl));
  const auto payloads = MakePayloads(5, "token");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ExpectUdpPayloads(ReadOrFail(File("right.pcapng")), payloads, kPort);
  ExpectAgentAlive();
}

// A refused stream must not touch the output file: `capctl stream -w yesterday.pcapng` with a
// wrong token must not leave yesterday's capture empty (tcpdump, too, opens its file only once
// the capture is open).
TEST_F(TokenAccessTest, RefusedStreamLeavesTheOutputFileAlone) {
  ASSERT_NO_FATAL_FAILURE(WriteText(File("token"), "capd-test-token-6f1e0c2a9b\n"));
  ASSERT_NO_FATAL_FAILURE(WriteText(File("wrong-token"), "capd-test-token-000000000\n"));
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--auth-token-file", File("token").string()}));
  const std::string previous = "an earlier capture the user wants to keep";
  ASSERT_NO_FATAL_FAILURE(WriteText(File("earlier.pcapng"), previous));
  const std::string err =
      RunCapctl("wrong-token",
                {"stream", "--agent", kAgentTarget, "--token-file", File("wrong-token").string(),
                 "-i", kIface, "-c", "1", "-w", File("earlier.pcapng").string()},
                1);
  EXPECT_NE(err.find("permission denied"), std::string::npos) << err;
  EXPECT_EQ(ReadFileToString(File("earlier.pcapng")), previous)
      << "the refused stream truncated or rewrote the output file";
  EXPECT_FALSE(std::filesystem::exists(File("new.pcapng")));
  std::filesystem::permissions(dir_->path(),
                               std::filesystem::perms::all | std::filesystem::perms::sticky_bit);
  std::unique_ptr<Subprocess> refused;
  ASSERT_NO_FATAL_FAILURE(Spawn("no-token-new-file",
                                AsUser(65534, 65534,
                                       {kCapctlPath, "stream", "--agent", kAgentTarget, "-i",
                                        kIface, "-c", "1", "-w", File("new.pcapng").string()}),
                                &refused));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*refused, 1));
  EXPECT_FALSE(std::filesystem::exists(File("new.pcapng")))
      << "a refused stream left an empty capture file behind";
  ExpectAgentAlive();
}

class PrivilegeDropTest : public HardenedAgentTest {
 protected:
  // The credentials of capd's process (its main thread), as /proc/PID/status shows them.
  void ExpectDroppedCredentials(const std::string& when) {
    SCOPED_TRACE(when);
    const pid_t pid = AgentPid();
    auto status = ReadProcStatus(pid);
    ASSERT_TRUE(status.ok()) << status.status().message();
    // The nobody user and its group (nogroup on Debian): real, effective, saved, filesystem.
    EXPECT_EQ((*status)["Uid"], "65534\t65534\t65534\t65534");
    EXPECT_EQ((*status)["Gid"], "65534\t65534\t65534\t65534");
    EXPECT_EQ((*status)["Groups"], "") << "supplementary groups survived";
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13): bits 0x3000, and nothing else anywhere.
    EXPECT_EQ((*status)["CapInh"], "0000000000000000");
    EXPECT_EQ((*status)["CapPrm"], "0000000000003000");
    EXPECT_EQ((*status)["CapEff"], "0000000000003000");
    EXPECT_EQ((*status)["CapBnd"], "0000000000003000");
    EXPECT_EQ((*status)["CapAmb"], "0000000000000000");
    EXPECT_EQ((*status)["NoNewPrivs"], "1");
  }

  // Capabilities, the bounding set and no_new_privs are per thread: every thread (gRPC's, a
  // stream's capture thread) must be as restricted as the main one, otherwise code running on
  // a thread with the full bounding set and without no_new_privs could regain root by executing
  // a set-user-ID program.
  void ExpectEveryThreadRestricted(const std::string& when) {
    SCOPED_TRACE(when);
    const pid_t pid = AgentPid();
    auto threads = ThreadIds(pid);
    ASSERT_TRUE(threads.ok()) << threads.status().message();
    EXPECT_GT(threads->size(), 1u);
    for (pid_t tid : *threads) {
      auto t = ReadProcStatus(pid, tid);
      if (!t.ok()) continue;  // the thread ended meanwhile
      std::string wrong;
      for (const auto& [key, expected] :
           std::map<std::string, std::string>{{"Uid", "65534\t65534\t65534\t65534"},
                                              {"CapPrm", "0000000000003000"},
                                              {"CapEff", "0000000000003000"},
                                              {"CapBnd", "0000000000003000"},
                                              {"CapAmb", "0000000000000000"},
                                              {"NoNewPrivs", "1"}}) {
        if ((*t)[key] != expected) wrong += " " + key + " " + (*t)[key];
      }
      EXPECT_EQ(wrong, "") << "thread " << tid << " (" << ThreadName(pid, tid)
                           << ") is not restricted like the process";
    }
  }
};

// --user nobody: capd runs as nobody with only CAP_NET_RAW and CAP_NET_ADMIN, and new captures
// still open (each stream opens its own packet socket long after the drop).
TEST_F(PrivilegeDropTest, NobodyKeepsOnlyTheCaptureCapabilities) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody"}));
  EXPECT_NE(agent().Stderr().find("running as nobody"), std::string::npos) << agent().Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectDroppedCredentials("after start-up"));

  const UniqueFd sink = AgentSocket(kDst, kPort);
  const UniqueFd peer = PeerSocket();
  for (int round = 0; round < 2; ++round) {
    const std::string name = "stream" + std::to_string(round);
    std::unique_ptr<Subprocess> capctl;
    ASSERT_NO_FATAL_FAILURE(StartStream(
        name, {"-i", kIface, "-f", "udp", "-c", "10", "-w", File(name + ".pcapng").string()},
        &capctl));
    ASSERT_NO_FATAL_FAILURE(ExpectDroppedCredentials("while " + name + " runs"));
    const auto payloads = MakePayloads(10, name);
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
    ExpectUdpPayloads(ReadOrFail(File(name + ".pcapng")), payloads, kPort);
  }
  ExpectAgentAlive();
}

// Every thread of capd, those gRPC started as well as a stream's capture thread, runs with the
// same restricted credentials as the process.
TEST_F(PrivilegeDropTest, EveryThreadIsRestricted) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--user", "nobody"}));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "stream", {"-i", kIface, "-f", "udp", "-w", File("stream.pcapng").string()}, &capctl));
  ASSERT_NO_FATAL_FAILURE(ExpectEveryThreadRestricted("while a stream runs"));
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ExpectAgentAlive();
}

TEST_F(PrivilegeDropTest, UnknownUserExitsTwo) {
  std::unique_ptr<Subprocess> capd;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "capd-nosuchuser", {kCapdPath, "--listen", kAgentTarget, "--user", "nosuchuser"}, &capd));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capd, 2));
  EXPECT_NE(capd->Stderr().find("nosuchuser"), std::string::npos) << capd->Describe();
  EXPECT_NE(capd->Stderr().find("no such user"), std::string::npos) << capd->Describe();
  EXPECT_EQ(capd->Stderr().find("listening on"), std::string::npos)
      << "capd served before dropping privileges: " << capd->Describe();
}

}  // namespace
}  // namespace capd::test
