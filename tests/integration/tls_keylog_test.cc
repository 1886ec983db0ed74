// TLS key logs streamed as Decryption Secrets Blocks (capd --tls-keylog-dir, capctl stream
// --tls-keylog; issue 21 item 3): a real TLS 1.3 server (openssl s_server, in the peer
// namespace) and a real client (curl with SSLKEYLOGFILE in the allowed folder, in the agent
// namespace), captured through capd as root and as deployed (--user nobody, the key log readable
// by nobody's group only); tshark, Wireshark's reader with no key-log setting, must show the
// decrypted HTTP request from the file and live from a FIFO. The same file without its secrets
// blocks (editcap --discard-all-secrets) shows none, so the decryption comes from them. Paths
// that leave the allowed folder, and capd without the flag, are refused with exit 2.

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/programs.h"
#include "tests/support/test_pki.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kUri[] = "/keylog-test";
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
// A TLS 1.3 handshake, the request, the answer and the close: more than this many packets.
constexpr size_t kMinPackets = 10;

class TlsKeyLogTest : public HardenedAgentTest {
 protected:
  void SetUp() override {
    HardenedAgentTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const char* tool : {"openssl", "curl", "tshark", "editcap"}) {
      if (!HaveProgram(tool)) GTEST_SKIP() << "needs " << tool << " (scripts/install-deps.sh)";
    }
    fs::create_directories(File("pki"));
    auto pki = MakeTestPki(File("pki"));
    ASSERT_TRUE(pki.ok()) << pki.status().message();
    pki_ = std::move(pki).value();
    // capd's user must pass through the test folder to reach the allowed one.
    fs::permissions(dir_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    keys_ = File("keys");
    fs::create_directories(keys_);
    fs::permissions(keys_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  }

  // The key log curl appends to, created before the stream asks for it. For capd --user nobody:
  // owned by root, readable by nobody's group only (0640 root:nogroup), as an operator would
  // share it with the capd group.
  fs::path MakeKeyLog(const std::string& name, bool for_nobody) {
    const fs::path path = keys_ / name;
    std::ofstream(path).close();
    if (for_nobody) {
      EXPECT_EQ(::chown(path.c_str(), 0, kNogroup), 0) << std::strerror(errno);
      EXPECT_EQ(::chmod(path.c_str(), 0640), 0) << std::strerror(errno);
    } else {
      EXPECT_EQ(::chmod(path.c_str(), 0600), 0) << std::strerror(errno);
    }
    return path;
  }

  // openssl s_server -www on 10.200.0.2:443 (HTTPS's port: Wireshark dissects what it decrypts
  // there as HTTP), answering one connection; it prints ACCEPT once it listens.
  void StartTlsServer() {
    ASSERT_NO_FATAL_FAILURE(
        Spawn("s_server",
              {"openssl", "s_server", "-accept", "443", "-naccept", "1", "-cert",
               pki_.server_cert.string(), "-key", pki_.server_key.string(), "-www"},
              &server_, network().peer_ns()));
    ASSERT_TRUE(WaitForFileContains(File("s_server.out"), "ACCEPT", kStartTimeout, [this] {
      return server_->Running();
    })) << server_->Describe();
  }

  // curl from the agent namespace with SSLKEYLOGFILE=key_log; expects the page.
  void FetchOverTls(const fs::path& key_log) {
    const CommandResult fetched =
        RunCommand({"env", "SSLKEYLOGFILE=" + key_log.string(), "curl", "--silent", "--show-error",
                    "--insecure", "--max-time", "20", "--output", "/dev/null", "--write-out",
                    "%{http_code}", std::string("https://") + TestNetwork::kPeerAddress + kUri},
                   network().agent_ns());
    ASSERT_TRUE(fetched.status.Exited(0)) << fetched.status << fetched.output;
    EXPECT_EQ(fetched.output, "200");
    EXPECT_NE(ReadFileToString(key_log).find("CLIENT_TRAFFIC_SECRET_0 "), std::string::npos)
        << "curl wrote no TLS 1.3 keys";
  }

  // The decrypted HTTP requests tshark finds in `file` with no key-log setting of its own.
  std::string DecryptedRequests(const fs::path& file) {
    const CommandResult read =
        RunCommand({"tshark", "-n", "-r", file.string(), "-Y", "http.request", "-T", "fields", "-e",
                    "http.request.method", "-e", "http.request.uri"});
    EXPECT_TRUE(read.status.Exited(0)) << read.output;
    return LineWith(read.output, "GET");
  }

  // Captures one HTTPS fetch through capd into a file and checks Wireshark decrypts it.
  void CaptureAndDecrypt(bool as_nobody) {
    const fs::path key_log = MakeKeyLog("curl.keys", as_nobody);
    std::vector<std::string> flags = {"--tls-keylog-dir", keys_.string()};
    if (as_nobody) flags.insert(flags.end(), {"--user", "nobody"});
    ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
    ASSERT_NO_FATAL_FAILURE(StartTlsServer());
    const fs::path out = File("tls.pcapng");
    std::unique_ptr<Subprocess> capctl;
    // By absolute path as root, by name in the folder as nobody: both are allowed.
    ASSERT_NO_FATAL_FAILURE(
        StartStream("capctl",
                    {"-i", TestNetwork::kAgentInterface, "-w", out.string(), "--tls-keylog",
                     as_nobody ? "curl.keys" : key_log.string(), "tcp port 443"},
                    &capctl));
    ASSERT_NO_FATAL_FAILURE(FetchOverTls(key_log));
    ASSERT_TRUE(WaitForPackets(out, kMinPackets)) << capctl->Describe();
    ASSERT_TRUE(capctl->Signal(SIGINT));
    ExpectExit(*capctl, 0);
    EXPECT_EQ(capctl->Stderr().find("ignored --tls-keylog"), std::string::npos) << capctl->Stderr();
    EXPECT_NE(agent().Stderr().find("following TLS key log " + key_log.string()), std::string::npos)
        << agent().Stderr();

    EXPECT_EQ(DecryptedRequests(out), std::string("GET\t") + kUri);
    // Without the secrets blocks the same packets are opaque.
    const fs::path stripped = File("stripped.pcapng");
    const CommandResult discarded =
        RunCommand({"editcap", "--discard-all-secrets", out.string(), stripped.string()});
    ASSERT_TRUE(discarded.status.Exited(0)) << discarded.output;
    EXPECT_EQ(DecryptedRequests(stripped), "");
    ExpectAgentAlive();
  }

  TestPki pki_;
  fs::path keys_;
  std::unique_ptr<Subprocess> server_;
};

TEST_F(TlsKeyLogTest, WiresharkDecryptsTheFileCapturedAsRoot) {
  ASSERT_NO_FATAL_FAILURE(CaptureAndDecrypt(/*as_nobody=*/false));
}

TEST_F(TlsKeyLogTest, WiresharkDecryptsTheFileCapturedAsNobody) {
  ASSERT_NO_FATAL_FAILURE(CaptureAndDecrypt(/*as_nobody=*/true));
}

// Wireshark reading a live pipe (tshark -i FIFO, through dumpcap, 4.0) decrypts with the
// secrets blocks as they come.
TEST_F(TlsKeyLogTest, WiresharkDecryptsLiveFromAFifo) {
  const fs::path key_log = MakeKeyLog("live.keys", /*for_nobody=*/true);
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--tls-keylog-dir", keys_.string(), "--user", "nobody"}));
  ASSERT_NO_FATAL_FAILURE(StartTlsServer());
  // The FIFO exists first, so tshark (dumpcap) can open it and wait for capctl.
  const fs::path fifo = File("live.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("tshark",
            {"tshark", "-n", "-l", "-i", fifo.string(), "-Y", "http.request", "-T", "fields", "-e",
             "http.request.method", "-e", "http.request.uri"},
            &tshark));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl",
                                      {"-i", TestNetwork::kAgentInterface, "--fifo", fifo.string(),
                                       "--tls-keylog", "live.keys", "tcp port 443"},
                                      &capctl));
  ASSERT_NO_FATAL_FAILURE(FetchOverTls(key_log));
  // tshark prints the request once it has read and decrypted it (a hang guard, not a timing).
  EXPECT_TRUE(WaitForFileContains(File("tshark.out"), std::string("GET\t") + kUri, kExitTimeout))
      << tshark->Describe();
  ASSERT_TRUE(capctl->Signal(SIGINT));
  ExpectExit(*capctl, 0);
  ExpectExit(*tshark, 0);
}

// Through the Wireshark extcap (capctl extcap install, then tshark -i capd with the dialog's
// "TLS key log" setting): the same decryption, live.
TEST_F(TlsKeyLogTest, WiresharkDecryptsThroughTheExtcap) {
  const fs::path home = File("home");
  fs::create_directories(home);
  const std::vector<std::string> env = {"env", "HOME=" + home.string(),
                                        "XDG_CONFIG_HOME=" + (home / ".config").string()};
  auto with_env = [&env](std::vector<std::string> argv) {
    argv.insert(argv.begin(), env.begin(), env.end());
    return argv;
  };
  const CommandResult install = RunCommand(with_env({kCapctlPath, "extcap", "install"}));
  ASSERT_TRUE(install.status.Exited(0)) << install.status << install.output;
  EXPECT_NE(install.output.find("extcap.capd.tlskeylog"), std::string::npos) << install.output;

  const fs::path key_log = MakeKeyLog("extcap.keys", /*for_nobody=*/true);
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--tls-keylog-dir", keys_.string(), "--user", "nobody"}));
  ASSERT_NO_FATAL_FAILURE(StartTlsServer());
  std::unique_ptr<Subprocess> tshark;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("tshark",
            with_env({"tshark",
                      "-n",
                      "-l",
                      "-i",
                      "capd",
                      "-o",
                      std::string("extcap.capd.agent:") + kAgentTarget,
                      "-o",
                      std::string("extcap.capd.remoteinterface:") + TestNetwork::kAgentInterface,
                      "-o",
                      "extcap.capd.tlskeylog:extcap.keys",
                      "-f",
                      "tcp port 443",
                      "-Y",
                      "http.request",
                      "-T",
                      "fields",
                      "-e",
                      "http.request.method",
                      "-e",
                      "http.request.uri"}),
            &tshark));
  ASSERT_TRUE(agent().WaitForStderr("following TLS key log " + key_log.string(), kStartTimeout))
      << agent().Describe() << "\n"
      << tshark->Describe();
  ASSERT_TRUE(agent().WaitForStderr("stream on veth0", kStartTimeout)) << agent().Describe();
  ASSERT_NO_FATAL_FAILURE(FetchOverTls(key_log));
  EXPECT_TRUE(WaitForFileContains(File("tshark.out"), std::string("GET\t") + kUri, kExitTimeout))
      << tshark->Describe();
  ASSERT_TRUE(tshark->Signal(SIGINT));
  ExpectExit(*tshark, 0);
}

// Every way out of the allowed folder is refused before any capture starts: exit 2, a clear
// line, no file; capd (as deployed) goes on serving.
TEST_F(TlsKeyLogTest, PathsOutsideTheAllowedFolderAreRefused) {
  std::ofstream(File("outside.keys")) << "CLIENT_RANDOM x y\n";
  fs::create_symlink("../outside.keys", keys_ / "escape.keys");
  fs::create_directory_symlink(dir_->path(), keys_ / "up");
  MakeKeyLog("root-only.keys", /*for_nobody=*/false);  // 0600 root: nobody may not read it
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--tls-keylog-dir", keys_.string(), "--user", "nobody"}));
  struct Case {
    std::string path;
    std::string says;
  };
  const std::vector<Case> cases = {
      {File("outside.keys").string(), "is outside the folders capd may read key logs from"},
      {"../outside.keys", "'.' and '..' are not allowed"},
      {(keys_ / ".." / "outside.keys").string(), "'.' and '..' are not allowed"},
      {"escape.keys", "is a symbolic link"},
      {"up/outside.keys", "is not a folder (symbolic links are not followed)"},
      {"root-only.keys", "capd's user may not read it"},
      {"missing.keys", "TLS key log 'missing.keys' not found in " + keys_.string()},
  };
  int n = 0;
  for (const Case& c : cases) {
    const fs::path out = File("refused" + std::to_string(n) + ".pcapng");
    const std::string err =
        RunCapctl("refused" + std::to_string(n++),
                  {"stream", "--agent", kAgentTarget, "-i", TestNetwork::kAgentInterface, "-w",
                   out.string(), "--tls-keylog", c.path},
                  2);
    EXPECT_NE(err.find(c.says), std::string::npos) << c.path << ": " << err;
    EXPECT_FALSE(fs::exists(out)) << c.path;
  }
  ExpectAgentAlive();
}

TEST_F(TlsKeyLogTest, AnAgentWithoutKeyLogFoldersRefusesTheRequest) {
  const fs::path key_log = MakeKeyLog("curl.keys", /*for_nobody=*/false);
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({}));
  const std::string err =
      RunCapctl("refused",
                {"stream", "--agent", kAgentTarget, "-i", TestNetwork::kAgentInterface, "-w",
                 File("x.pcapng").string(), "--tls-keylog", key_log.string()},
                2);
  EXPECT_NE(err.find("TLS key logs are not enabled on this agent (start capd with "
                     "--tls-keylog-dir DIR)"),
            std::string::npos)
      << err;
  ExpectAgentAlive();
}

}  // namespace
}  // namespace capd::test
