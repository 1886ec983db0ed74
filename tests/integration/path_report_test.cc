// capctl paths on real traffic (issue 22): where each flow was seen, from one capture merged
// from two capd agents, one at each end of a routed path.
//
//   netns <prefix>c (client)        netns <prefix>r (router)             netns <prefix>s (server)
//   eth0 10.241.1.2/24 <── veth ──> rc 10.241.1.1   rs 10.241.2.1 <── veth ──> eth0 10.241.2.2/24
//   default via 10.241.1.1          ip_forward=1, nft rules per test     default via 10.241.2.1
//
// capd "client" captures eth0 in the client namespace and capd "server" eth0 in the server's,
// each listening on its own namespace's loopback. capctl runs in the client namespace and reaches
// the server's agent through two socat relays joined by a Unix socket in the test folder (capd
// serves loopback without TLS; a relay keeps that as deployed). The merged file names the
// interfaces "client:eth0" and "server:eth0". Traffic comes from sockets the test opens inside
// the namespaces; the router drops what each case needs with nftables.
//
// Each case ends the capture the same way: a marker datagram from the client to the server, and
// capctl stopped (SIGINT) once the file holds the marker at both points. `capctl paths --grace
// 0.2` then judges the file; the cases that need a packet to be older than the grace window wait
// 2 x grace before the marker (that wait is what is being tested: a packet seen within the grace
// window of the end is never called lost). Each verdict is checked in the JSON lines.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/pcapng_file.h"
#include "tests/support/programs.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_network.h"

namespace capd::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kClientAddress[] = "10.241.1.2";
constexpr char kRouterClientSide[] = "10.241.1.1";
constexpr char kServerAddress[] = "10.241.2.2";
constexpr uint16_t kMarkerPort = 9999;
constexpr uint16_t kRelayPort = 50061;  // the server agent's relay, on the client's loopback
constexpr auto kGrace = std::chrono::milliseconds(200);

sockaddr_in Ipv4(const char* address, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, address, &a.sin_addr);
  return a;
}

// Waits for `events` on `fd`; false after `timeout` (a hang guard).
bool WaitFd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

class PathReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, packet capture)";
    // scripts/install-deps.sh installs both; under CI a skip fails (scripts/no-skips-under-ci.sh).
    if (!HaveProgram("socat")) GTEST_SKIP() << "needs socat (apt-get install socat)";
    if (!HaveProgram("nft")) GTEST_SKIP() << "needs nft (apt-get install nftables)";
    if (!HaveProgram("tshark")) GTEST_SKIP() << "needs tshark (apt-get install tshark)";
    TestNetwork::RemoveStaleNamespaces();
    static std::atomic<int> counter{0};
    const std::string prefix = std::string(TestNetwork::kNamePrefix) + std::to_string(::getpid()) +
                               "-p" + std::to_string(counter++) + "-";
    client_ns_ = prefix + "c";
    router_ns_ = prefix + "r";
    server_ns_ = prefix + "s";
    for (const std::string& ns : {client_ns_, router_ns_, server_ns_}) {
      const Status added = RunChecked({"ip", "netns", "add", ns});
      if (!added.ok()) GTEST_SKIP() << "cannot create network namespaces: " << added.message();
      created_.push_back(ns);
    }
    ASSERT_NO_FATAL_FAILURE(BuildNetwork());
    dir_ = std::make_unique<TestDir>();
    ASSERT_TRUE(dir_->ok());
    ::chmod(dir_->path().c_str(), 0755);  // capd as nobody opens nothing here, socat as root does
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto* p : {client_agent_.get(), server_agent_.get(), capctl_.get(), paths_.get()}) {
        if (p) std::fprintf(stderr, "%s\n", p->Describe().c_str());
      }
      if (!report_.empty()) std::fprintf(stderr, "capctl paths --json:\n%s\n", report_.c_str());
    }
    relays_.clear();
    capctl_.reset();
    paths_.reset();
    client_agent_.reset();
    server_agent_.reset();
    for (const std::string& ns : created_) KillAndDeleteNamespace(ns);
  }

  void Run(const std::vector<std::string>& argv, const std::string& ns) {
    const Status s = RunChecked(argv, ns);
    ASSERT_TRUE(s.ok()) << s.message();
  }

  void BuildNetwork() {
    const std::string& c = client_ns_;
    const std::string& r = router_ns_;
    const std::string& s = server_ns_;
    Run({"ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "rc", "netns", r},
        "");
    Run({"ip", "-n", r, "link", "add", "rs", "type", "veth", "peer", "name", "eth0", "netns", s},
        "");
    for (const std::string& ns : {c, r, s}) {
      // No neighbour discovery or MLD in the captures.
      Run({"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"}, ns);
      Run({"ip", "-n", ns, "link", "set", "lo", "up"}, "");
    }
    Run({"ip", "-n", c, "addr", "add", "10.241.1.2/24", "dev", "eth0"}, "");
    Run({"ip", "-n", r, "addr", "add", "10.241.1.1/24", "dev", "rc"}, "");
    Run({"ip", "-n", r, "addr", "add", "10.241.2.1/24", "dev", "rs"}, "");
    Run({"ip", "-n", s, "addr", "add", "10.241.2.2/24", "dev", "eth0"}, "");
    Run({"ip", "-n", c, "link", "set", "eth0", "up"}, "");
    Run({"ip", "-n", r, "link", "set", "rc", "up"}, "");
    Run({"ip", "-n", r, "link", "set", "rs", "up"}, "");
    Run({"ip", "-n", s, "link", "set", "eth0", "up"}, "");
    Run({"ip", "-n", c, "route", "add", "default", "via", "10.241.1.1"}, "");
    Run({"ip", "-n", s, "route", "add", "default", "via", "10.241.2.1"}, "");
    Run({"sysctl", "-qw", "net.ipv4.ip_forward=1"}, r);
    // The router's table for the drop rules of each case.
    Run({"nft",
         "add table ip capdt; add chain ip capdt forward { type filter hook forward "
         "priority 0; }; add chain ip capdt output { type filter hook output priority 0; }"},
        r);
  }

  // nft rule text into chain `chain` of the router's table.
  void RouterRule(const std::string& chain, const std::string& rule) {
    Run({"nft", "add rule ip capdt " + chain + " " + rule}, router_ns_);
  }

  std::unique_ptr<Subprocess> Start(const std::string& name, std::vector<std::string> argv,
                                    const std::string& ns) {
    SubprocessOptions options;
    options.argv = std::move(argv);
    options.netns = ns;
    options.stdout_path = dir_->File(name + ".out");
    options.stderr_path = dir_->File(name + ".err");
    auto process = Subprocess::Start(std::move(options));
    EXPECT_TRUE(process.ok()) << process.status().message();
    return process.ok() ? std::move(process).value() : nullptr;
  }

  // capd NAME on eth0 of `ns`, listening on that namespace's 127.0.0.1; returns its port.
  uint16_t StartAgent(const std::string& name, const std::string& ns, bool as_nobody,
                      std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> argv = {kCapdPath, "--listen",      "127.0.0.1:0", "--name",
                                     name,      "--no-metadata", "--log-level", "info"};
    if (as_nobody) {
      argv.push_back("--user");
      argv.push_back("nobody");
    }
    *out = Start("capd-" + name, argv, ns);
    if (!*out) return 0;
    const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+)[^\n]*\n)");
    const auto deadline = Clock::now() + kStartTimeout;
    std::smatch m;
    while (true) {
      const std::string err = (*out)->Stderr();
      if (std::regex_search(err, m, listening)) return static_cast<uint16_t>(std::stoul(m[1]));
      if (!(*out)->Running() || Clock::now() > deadline) {
        ADD_FAILURE() << "capd " << name << " never listened: " << (*out)->Describe();
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
  }

  // Both agents, the relay to the server's, and capctl stream merging them into `file`.
  // `pipe_seconds` > 0: capctl stream writes to stdout for that long (--duration), into a pipe
  // read by `capctl paths --json -` (the report then comes at the stream's end: FinishPipe).
  void StartCapture(bool as_nobody = false, int pipe_seconds = 0) {
    const uint16_t client_port = StartAgent("client", client_ns_, as_nobody, &client_agent_);
    const uint16_t server_port = StartAgent("server", server_ns_, as_nobody, &server_agent_);
    ASSERT_NE(client_port, 0);
    ASSERT_NE(server_port, 0);
    const std::string sock = dir_->File("server-agent.sock").string();
    relays_.push_back(Start(
        "relay-s",
        {"socat", "UNIX-LISTEN:" + sock + ",fork", "TCP:127.0.0.1:" + std::to_string(server_port)},
        server_ns_));
    ASSERT_TRUE(WaitForPath(sock)) << "socat never listened on " << sock;
    relays_.push_back(Start(
        "relay-c",
        {"socat", "TCP-LISTEN:" + std::to_string(kRelayPort) + ",bind=127.0.0.1,fork,reuseaddr",
         "UNIX-CONNECT:" + sock},
        client_ns_));
    ASSERT_TRUE(WaitForListening(client_ns_, kRelayPort));
    file_ = dir_->File("both.pcapng");
    std::vector<std::string> argv = {
        kCapctlPath, "stream",
        "--agent",   "127.0.0.1:" + std::to_string(client_port) + "/eth0",
        "--agent",   "127.0.0.1:" + std::to_string(kRelayPort) + "/eth0"};
    if (pipe_seconds == 0) {
      argv.insert(argv.end(), {"-w", file_.string(), "ip"});
      capctl_ = Start("capctl", argv, client_ns_);
    } else {
      int fds[2];
      ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
      UniqueFd read_end(fds[0]), write_end(fds[1]);
      SubprocessOptions paths;
      paths.argv = {kCapctlPath, "paths", "--json", "--grace", "0.2", "-"};
      paths.stdin_fd = read_end.get();
      paths.stdout_path = dir_->File("paths.out");
      paths.stderr_path = dir_->File("paths.err");
      auto reader = Subprocess::Start(std::move(paths));
      ASSERT_TRUE(reader.ok()) << reader.status().message();
      paths_ = std::move(reader).value();
      argv.insert(argv.end(), {"-w", "-", "--duration", std::to_string(pipe_seconds), "ip"});
      SubprocessOptions stream;
      stream.argv = argv;
      stream.netns = client_ns_;
      stream.stdout_fd = write_end.get();
      stream.stderr_path = dir_->File("capctl.err");
      auto writer = Subprocess::Start(std::move(stream));
      ASSERT_TRUE(writer.ok()) << writer.status().message();
      capctl_ = std::move(writer).value();
      // Only the children hold the pipe now: capctl paths sees its end when capctl stream ends.
    }
    ASSERT_TRUE(capctl_);
    for (const char* point : {"client:eth0", "server:eth0"}) {
      ASSERT_TRUE(capctl_->WaitForStderr(std::string("capctl: capturing on ") + point + " (",
                                         kStartTimeout))
          << capctl_->Describe();
    }
    // A bound sink, so the marker draws no ICMP port unreachable.
    auto sink = OpenUdpSocketIn(server_ns_, kServerAddress, kMarkerPort);
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    marker_sink_ = std::move(sink).value();
  }

  bool WaitForPath(const std::string& path) {
    const auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      if (::access(path.c_str(), F_OK) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
    return false;
  }

  bool WaitForListening(const std::string& ns, uint16_t port) {
    const auto deadline = Clock::now() + kStartTimeout;
    while (Clock::now() < deadline) {
      const CommandResult r = RunCommand({"ss", "-Hltn", "sport = :" + std::to_string(port)}, ns);
      if (r.output.find(std::to_string(port)) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
    }
    return false;
  }

  // The marker datagram, then capctl stopped once the file holds it at both points; then
  // `capctl paths --json` on the file. Returns its stdout.
  void FinishCapture() {
    auto sender = OpenUdpSocketIn(client_ns_);
    ASSERT_TRUE(sender.ok());
    ASSERT_TRUE(SendUdp(sender.value().get(), kServerAddress, kMarkerPort, "marker").ok());
    const auto deadline = Clock::now() + kStartTimeout;
    while (true) {
      if (MarkerAtBothPoints()) break;
      ASSERT_LT(Clock::now(), deadline) << "the marker never reached the file at both points";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling interval
    }
    capctl_->Signal(SIGINT);
    const auto status = capctl_->WaitFor(kExitTimeout);
    ASSERT_TRUE(status && status->Exited(0)) << capctl_->Describe();
    CommandResult paths = RunCommand(
        {kCapctlPath, "paths", "--json", "--grace", "0.2", file_.string()}, "", kExitTimeout);
    report_ = paths.output;
    ASSERT_TRUE(paths.status.Exited(0)) << paths.output;
  }

  // The piped capture's end: capctl stream stops after its --duration, capctl paths reports.
  void FinishPipe() {
    auto status = capctl_->WaitFor(kExitTimeout);
    ASSERT_TRUE(status && status->Exited(0)) << capctl_->Describe();
    status = paths_->WaitFor(kExitTimeout);
    report_ = paths_->Stdout();
    ASSERT_TRUE(status && status->Exited(0)) << paths_->Describe();
  }

  bool MarkerAtBothPoints() {
    auto file = ReadPcapng(file_);
    if (!file.ok()) return false;  // a block still being written: read again
    bool seen[2] = {false, false};
    for (const PcapngPacket& p : file->packets) {
      if (p.bytes.find("marker") == std::string::npos) continue;
      const std::string& name = file->interfaces[p.interface_id].name;
      if (name == "client:eth0") seen[0] = true;
      if (name == "server:eth0") seen[1] = true;
    }
    return seen[0] && seen[1];
  }

  // The JSON line of the flow to the server's `port` (stderr lines are mixed in: they are not
  // JSON objects).
  std::string FlowLine(const std::string& protocol, uint16_t port) {
    std::istringstream in(report_);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("{\"protocol\":\"" + protocol + "\"", 0) == 0 &&
          line.find("\"server_port\":" + std::to_string(port) + ",") != std::string::npos) {
        return line;
      }
    }
    ADD_FAILURE() << "no " << protocol << " flow to port " << port;
    return "";
  }
  // tshark's reading of the merged file, an independent check of what the report says: the
  // interface name of every packet matching the display filter, one per line (tshark's own
  // warnings mixed in).
  std::string TsharkInterfaces(const std::string& display_filter) {
    const CommandResult r = RunCommand({"tshark", "-n", "-r", file_.string(), "-Y", display_filter,
                                        "-T", "fields", "-e", "frame.interface_name"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    return r.output;
  }
  static std::string Verdict(const std::string& kind, const std::string& text) {
    return "{\"kind\":\"" + kind + "\",\"text\":\"" + text + "\"";
  }

  // A TCP listener in the server namespace on `port`.
  UniqueFd Listen(uint16_t port) {
    auto s = OpenSocketIn(server_ns_, AF_INET, SOCK_STREAM);
    EXPECT_TRUE(s.ok());
    const int one = 1;
    ::setsockopt(s->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const sockaddr_in a = Ipv4(kServerAddress, port);
    EXPECT_EQ(::bind(s->get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(s->get(), 4), 0);
    return std::move(s).value();
  }
  // A non-blocking connect from the client namespace; the caller waits for its outcome.
  UniqueFd Connect(uint16_t port) {
    auto s = OpenSocketIn(client_ns_, AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
    EXPECT_TRUE(s.ok());
    const sockaddr_in a = Ipv4(kServerAddress, port);
    ::connect(s->get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a));
    return std::move(s).value();
  }
  static int SocketError(int fd) {
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    return error;
  }
  // Writes all of `data` (non-blocking socket), waiting for room; false after `timeout`.
  static bool SendAll(int fd, const std::string& data, std::chrono::milliseconds timeout) {
    size_t sent = 0;
    const auto deadline = Clock::now() + timeout;
    while (sent < data.size() && Clock::now() < deadline) {
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else {
        WaitFd(fd, POLLOUT, std::chrono::milliseconds(50));
      }
    }
    return sent == data.size();
  }
  // Reads `count` bytes from `fd`; false after `timeout`.
  static bool ReceiveAll(int fd, size_t count, std::chrono::milliseconds timeout) {
    size_t got = 0;
    char buffer[65536];
    const auto deadline = Clock::now() + timeout;
    while (got < count && Clock::now() < deadline) {
      if (!WaitFd(fd, POLLIN, std::chrono::milliseconds(50))) continue;
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return got >= count;
  }

  std::string client_ns_, router_ns_, server_ns_;
  std::vector<std::string> created_;
  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<Subprocess> client_agent_, server_agent_, capctl_, paths_;
  std::vector<std::unique_ptr<Subprocess>> relays_;
  UniqueFd marker_sink_;
  std::filesystem::path file_;
  std::string report_;
};

// (a) A working TCP connection: request and reply; the handshake complete, seen at both points.
TEST_F(PathReportTest, WorkingConnectionHandshakeCompleteSeenAtBoth) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  UniqueFd listener = Listen(5432);
  UniqueFd client = Connect(5432);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), 0);
  ASSERT_TRUE(WaitFd(listener.get(), POLLIN, kStartTimeout));
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  ASSERT_TRUE(SendAll(client.get(), "SELECT 1;", kStartTimeout));
  ASSERT_TRUE(ReceiveAll(server.get(), 9, kStartTimeout));
  ASSERT_TRUE(SendAll(server.get(), "one row", kStartTimeout));
  ASSERT_TRUE(ReceiveAll(client.get(), 7, kStartTimeout));
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5432);
  EXPECT_NE(flow.find("\"client\":\"10.241.1.2\""), std::string::npos) << flow;
  EXPECT_NE(flow.find("\"problem\":false"), std::string::npos) << flow;
  EXPECT_NE(flow.find(Verdict("handshake_complete",
                              "TCP handshake complete, seen at client:eth0 and server:eth0")),
            std::string::npos)
      << flow;
  EXPECT_EQ(flow.find("\"seen\":false"), std::string::npos) << flow;
  // Both agents stamp with this host's clock: packets seen at both bound the offset on both
  // sides (the summary on stderr; the points in the order their interfaces reached the file).
  EXPECT_TRUE(std::regex_search(
      report_, std::regex("clocks of (client:eth0 and server:eth0|server:eth0 and client:eth0) "
                          "agree within [0-9.]+ ms as far as packets show")))
      << report_;
}

// (b) SYNs dropped in the router: seen at the client, never at the server.
TEST_F(PathReportTest, SynDroppedByTheRouterSeenAtClientNotAtServer) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  ASSERT_NO_FATAL_FAILURE(RouterRule("forward", "tcp dport 5433 tcp flags syn drop"));
  UniqueFd listener = Listen(5433);
  UniqueFd client = Connect(5433);
  // The SYN must be older than the grace window when the capture ends.
  EXPECT_FALSE(WaitFd(client.get(), POLLOUT, 2 * kGrace)) << "connected through a drop rule";
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5433);
  EXPECT_NE(flow.find("\"problem\":true"), std::string::npos) << flow;
  const std::string syns = TsharkInterfaces("tcp.dstport == 5433 && tcp.flags.syn == 1");
  EXPECT_NE(syns.find("client:eth0"), std::string::npos) << syns;
  EXPECT_EQ(syns.find("server:eth0"), std::string::npos) << syns;
  EXPECT_NE(
      flow.find(Verdict("syn_not_arrived",
                        "SYN seen at client:eth0, never at server:eth0 (no SYN-ACK anywhere)")),
      std::string::npos)
      << flow;
}

// (c) The server's port closed: the SYN answered by a RST from the server, seen at both points.
TEST_F(PathReportTest, ClosedPortResetByTheServerSeenAtBoth) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  UniqueFd client = Connect(5434);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), ECONNREFUSED);
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5434);
  EXPECT_NE(flow.find(Verdict("reset_by_server",
                              "connection refused: the SYN was answered by RST from the server "
                              "10.241.2.2:5434, seen at client:eth0 and server:eth0")),
            std::string::npos)
      << flow;
}

// (d) The reply dropped on its way back (nft on the router's return direction): the request seen
// at both points, the reply only at the server. UDP (the whole reply dropped) and TCP (only the
// server's data segments dropped, so the handshake completes).
TEST_F(PathReportTest, ReplyDroppedOnTheWayBackSeenOnlyAtTheServer) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  ASSERT_NO_FATAL_FAILURE(RouterRule("forward", "udp sport 5435 drop"));
  // Larger than a bare ACK or SYN-ACK (at most 60 bytes here): the server's data.
  ASSERT_NO_FATAL_FAILURE(RouterRule("forward", "tcp sport 5436 ip length > 60 drop"));

  auto udp_server = OpenUdpSocketIn(server_ns_, kServerAddress, 5435);
  ASSERT_TRUE(udp_server.ok());
  auto udp_client = OpenUdpSocketIn(client_ns_);
  ASSERT_TRUE(udp_client.ok());
  ASSERT_TRUE(SendUdp(udp_client->get(), kServerAddress, 5435, "query").ok());
  ASSERT_TRUE(WaitFd(udp_server->get(), POLLIN, kStartTimeout));
  char buffer[64];
  sockaddr_in from{};
  socklen_t from_length = sizeof(from);
  ASSERT_EQ(::recvfrom(udp_server->get(), buffer, sizeof(buffer), 0,
                       reinterpret_cast<sockaddr*>(&from), &from_length),
            5);
  ASSERT_EQ(
      ::sendto(udp_server->get(), "answer", 6, 0, reinterpret_cast<sockaddr*>(&from), from_length),
      6);

  UniqueFd listener = Listen(5436);
  UniqueFd client = Connect(5436);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), 0);
  ASSERT_TRUE(WaitFd(listener.get(), POLLIN, kStartTimeout));
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(SendAll(client.get(), "GET / HTTP/1.0\r\n\r\n", kStartTimeout));
  ASSERT_TRUE(ReceiveAll(server.get(), 18, kStartTimeout));
  ASSERT_TRUE(SendAll(server.get(), "HTTP/1.0 200 OK\r\n\r\n", kStartTimeout));
  // The replies must be older than the grace window when the capture ends.
  EXPECT_FALSE(WaitFd(client.get(), POLLIN, 2 * kGrace)) << "a reply passed the drop rule";
  ASSERT_NO_FATAL_FAILURE(FinishCapture());

  const std::string replies = TsharkInterfaces("udp.srcport == 5435");
  EXPECT_NE(replies.find("server:eth0"), std::string::npos) << replies;
  EXPECT_EQ(replies.find("client:eth0"), std::string::npos) << replies;
  const std::string udp = FlowLine("udp", 5435);
  EXPECT_NE(udp.find(Verdict("reply_lost",
                             "reply (server→client) seen at server:eth0, never at client:eth0")),
            std::string::npos)
      << udp;
  const std::string tcp = FlowLine("tcp", 5436);
  EXPECT_NE(tcp.find(Verdict("handshake_complete",
                             "TCP handshake complete, seen at client:eth0 and server:eth0")),
            std::string::npos)
      << tcp;
  EXPECT_NE(
      tcp.find(Verdict("reply_lost",
                       "reply (server→client data) seen at server:eth0, never at client:eth0")),
      std::string::npos)
      << tcp;
}

// (e) An MTU of 1200 on the router's server side, DF set by the client (Linux's path MTU
// discovery). The router's ICMP fragmentation-needed delivered: the verdict names it, its MTU
// and the router.
TEST_F(PathReportTest, MtuLoweredFragNeededDelivered) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  Run({"ip", "-n", router_ns_, "link", "set", "rs", "mtu", "1200"}, "");
  UniqueFd listener = Listen(5437);
  UniqueFd client = Connect(5437);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), 0);
  ASSERT_TRUE(WaitFd(listener.get(), POLLIN, kStartTimeout));
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  const std::string bulk(20000, 'b');
  ASSERT_TRUE(SendAll(client.get(), bulk, kStartTimeout));
  ASSERT_TRUE(ReceiveAll(server.get(), bulk.size(), kStartTimeout));  // after the MTU is learnt
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5437);
  // "..., seen at client:eth0 (N times)" when the router sent it for several segments.
  EXPECT_NE(flow.find("{\"kind\":\"icmp_frag_needed\",\"text\":\"ICMP fragmentation needed (MTU "
                      "1200) from 10.241.1.1 about client→server packets, seen at client:eth0"),
            std::string::npos)
      << flow;
  EXPECT_NE(flow.find("\"mtu\":1200,\"from\":\"" + std::string(kRouterClientSide) + "\""),
            std::string::npos)
      << flow;
}

// (e) The same with the router's ICMP dropped (nft on its output): an MTU black hole. Large
// segments are sent again and again at the client and never reach the server.
TEST_F(PathReportTest, MtuBlackHoleLargeSegmentsMissingAtTheServer) {
  ASSERT_NO_FATAL_FAILURE(StartCapture());
  Run({"ip", "-n", router_ns_, "link", "set", "rs", "mtu", "1200"}, "");
  ASSERT_NO_FATAL_FAILURE(RouterRule("output", "icmp type destination-unreachable drop"));
  UniqueFd listener = Listen(5438);
  UniqueFd client = Connect(5438);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), 0);
  ASSERT_TRUE(WaitFd(listener.get(), POLLIN, kStartTimeout));
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(SendAll(client.get(), std::string(20000, 'b'), kStartTimeout));
  // Long enough for the retransmission timer to send the first segment again twice (200 ms,
  // then 400 ms more): nothing arrives meanwhile.
  EXPECT_FALSE(ReceiveAll(server.get(), 20000, std::chrono::milliseconds(1500)));
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5438);
  EXPECT_NE(flow.find("{\"kind\":\"mtu_black_hole\",\"text\":\"large segments client→server (1500 "
                      "bytes, sent "),
            std::string::npos)
      << flow;
  EXPECT_NE(flow.find("seen at client:eth0, none larger than"), std::string::npos) << flow;
  EXPECT_EQ(flow.find("icmp_frag_needed"), std::string::npos) << flow;
}

// capctl paths following a live stream through a pipe (`capctl stream ... -w - | capctl paths
// -`): the report when the stream ends, here a connection refused by the server.
TEST_F(PathReportTest, FollowsALiveStreamThroughAPipe) {
  ASSERT_NO_FATAL_FAILURE(StartCapture(/*as_nobody=*/false, /*pipe_seconds=*/3));
  UniqueFd client = Connect(5434);
  ASSERT_TRUE(WaitFd(client.get(), POLLOUT, kStartTimeout));
  ASSERT_EQ(SocketError(client.get()), ECONNREFUSED);
  ASSERT_NO_FATAL_FAILURE(FinishPipe());
  const std::string flow = FlowLine("tcp", 5434);
  EXPECT_NE(flow.find(Verdict("reset_by_server",
                              "connection refused: the SYN was answered by RST from the server "
                              "10.241.2.2:5434, seen at client:eth0 and server:eth0")),
            std::string::npos)
      << flow;
}

// capctl's exit codes for `paths`: 2 for bad arguments, 1 for an input it cannot read; no root.
TEST(PathsCommandTest, ExitCodes) {
  TestDir dir;
  ASSERT_TRUE(dir.ok());
  CommandResult r = RunCommand({kCapctlPath, "paths"});
  EXPECT_TRUE(r.status.Exited(2)) << r.output;
  r = RunCommand({kCapctlPath, "paths", "--grace", "-1", "x"});
  EXPECT_TRUE(r.status.Exited(2)) << r.output;
  r = RunCommand({kCapctlPath, "paths", dir.File("missing.pcapng").string()});
  EXPECT_TRUE(r.status.Exited(1)) << r.output;
  EXPECT_NE(r.output.find("missing.pcapng: No such file or directory"), std::string::npos)
      << r.output;
  {
    std::ofstream text(dir.File("notes.txt"));
    text << "not a capture\n";
  }
  r = RunCommand({kCapctlPath, "paths", dir.File("notes.txt").string()});
  EXPECT_TRUE(r.status.Exited(1)) << r.output;
  EXPECT_NE(r.output.find("not a pcap or pcapng capture"), std::string::npos) << r.output;
}

// As deployed: both agents run as nobody (the systemd unit's --user), the same report.
TEST_F(PathReportTest, AgentsAsNobodySynDroppedSeenAtClientNotAtServer) {
  ASSERT_NO_FATAL_FAILURE(StartCapture(/*as_nobody=*/true));
  ASSERT_NO_FATAL_FAILURE(RouterRule("forward", "tcp dport 5433 tcp flags syn drop"));
  UniqueFd client = Connect(5433);
  EXPECT_FALSE(WaitFd(client.get(), POLLOUT, 2 * kGrace));
  ASSERT_NO_FATAL_FAILURE(FinishCapture());
  const std::string flow = FlowLine("tcp", 5433);
  EXPECT_NE(
      flow.find(Verdict("syn_not_arrived",
                        "SYN seen at client:eth0, never at server:eth0 (no SYN-ACK anywhere)")),
      std::string::npos)
      << flow;
}

}  // namespace
}  // namespace capd::test
