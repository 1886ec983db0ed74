// peers/ against the real kernel of the test's own network namespace: loopback connections the
// test makes, /proc of its own processes, and the peer helper forked for real. Nothing here needs
// root; a relay is a child process of the test, which AnswerRelayQuery can read as its own uid.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/peers/peer_helper.h"
#include "agent/peers/process_sockets.h"
#include "agent/peers/relay_protocol.h"
#include "agent/peers/socket_table.h"
#include "agent/security/privileges.h"
#include "tests/unit/agent/endpoints.h"

namespace capd::agent {
namespace {

using std::chrono::milliseconds;

// How long a step that should be immediate may take before the test fails instead of hanging.
constexpr int kPatienceMs = 10'000;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

using peers_testing::Endpoint;
using peers_testing::V4;
using peers_testing::V6;

// An endpoint as the socket API reports it (an IPv4-mapped address stays IPv6).
TcpEndpoint FromSockaddr(const sockaddr_storage& address) {
  TcpEndpoint endpoint;
  endpoint.family = address.ss_family;
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    std::memcpy(endpoint.address.data(), &in.sin_addr, 4);
    endpoint.port = ntohs(in.sin_port);
  } else {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    std::memcpy(endpoint.address.data(), &in6.sin6_addr, 16);
    endpoint.port = ntohs(in6.sin6_port);
  }
  return endpoint;
}
TcpEndpoint LocalOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  return FromSockaddr(address);
}
TcpEndpoint RemoteOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  EXPECT_EQ(getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  return FromSockaddr(address);
}
uint64_t InodeOf(int fd) {
  struct stat status {};
  EXPECT_EQ(fstat(fd, &status), 0);
  return status.st_ino;
}

// 127.0.0.1 or ::1 (`any`: the IPv6 wildcard, dual-stack) and a port, as a sockaddr.
socklen_t Loopback(int family, uint16_t port, sockaddr_storage& address, bool any = false) {
  address = {};
  if (family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(address);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in.sin_port = htons(port);
    return sizeof in;
  }
  auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
  in6.sin6_family = AF_INET6;
  in6.sin6_addr = any ? in6addr_any : in6addr_loopback;
  in6.sin6_port = htons(port);
  return sizeof in6;
}

// A loopback listener on a port the kernel picks. Connections to it complete in the kernel's
// backlog; the test accepts those whose server end must be held by a process.
class Listener {
 public:
  explicit Listener(int family = AF_INET, bool dual_stack = false)
      : fd_(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_.get() < 0) return;
    if (dual_stack) {
      const int off = 0;
      setsockopt(fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    }
    sockaddr_storage address;
    const socklen_t length = Loopback(family, 0, address, dual_stack);
    if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        listen(fd_.get(), 16) != 0) {
      return;
    }
    port_ = LocalOf(fd_.get()).port;
  }
  bool ok() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  UniqueFd Accept() const { return UniqueFd(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC)); }

 private:
  UniqueFd fd_;
  uint16_t port_ = 0;
};

// A connected socket, or -1. Allocates nothing: a forked child calls it.
int ConnectTo(int family, uint16_t port) {
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_storage address;
  const socklen_t length = Loopback(family, port, address);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool HaveIpv6Loopback() {
  Listener probe(AF_INET6);
  return probe.ok();
}

constexpr char kRelayName[] = "test-relay";

// A relay in a child process (AnswerRelayQuery never takes the agent, this process, for the
// relay): it connects to the agent's port and to each of `upstreams`, holds them, and is killed
// when the Relay goes away.
class Relay {
 public:
  Relay(int agent_family, uint16_t agent_port, const std::vector<uint16_t>& upstreams) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // Only what a relay holds: a descriptor inherited from the test (a connection of an earlier
      // test still open, the agent's end) would count as the relay's.
      if (ready[1] > 3) close_range(3, ready[1] - 1, 0);
      close_range(ready[1] + 1, ~0U, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      prctl(PR_SET_NAME, kRelayName, 0, 0, 0);
      bool ok = ConnectTo(agent_family, agent_port) >= 0;
      for (uint16_t port : upstreams) ok = ok && ConnectTo(AF_INET, port) >= 0;
      const char byte = ok ? 1 : 0;
      (void)!write(ready[1], &byte, 1);
      while (true) pause();
    }
    close(ready[1]);
    char byte = 0;
    ok_ = pid_ > 0 && read(ready[0], &byte, 1) == 1 && byte == 1;
    close(ready[0]);
  }
  ~Relay() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

// The relay's other connections as the test sees them from the server side, normalized.
std::vector<RelayConnection> AcceptAll(const Listener& upstream, size_t count,
                                       std::vector<UniqueFd>& held) {
  std::vector<RelayConnection> connections;
  for (size_t i = 0; i < count; ++i) {
    UniqueFd accepted = upstream.Accept();
    EXPECT_GE(accepted.get(), 0);
    if (accepted.get() < 0) break;
    connections.push_back(
        {Normalized(RemoteOf(accepted.get())), Normalized(LocalOf(accepted.get()))});
    held.push_back(std::move(accepted));
  }
  return connections;
}

bool Contains(const std::vector<RelayConnection>& connections, const RelayConnection& c) {
  return std::find(connections.begin(), connections.end(), c) != connections.end();
}

std::string ProcComm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string line;
  std::getline(in, line);
  return line;
}

// --- The socket table (NETLINK_SOCK_DIAG) ---------------------------------------------------

TEST(SocketTableTest, DumpFindsBothEndsOfALoopbackConnection) {
  Listener listener;
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd server = listener.Accept();
  ASSERT_GE(server.get(), 0);

  const auto sockets = DumpTcpSockets(1u << TCP_ESTABLISHED);
  ASSERT_TRUE(sockets.ok()) << sockets.status().message();
  for (const int fd : {client.get(), server.get()}) {
    const TcpSocket* found = FindSocket(sockets.value(), LocalOf(fd), RemoteOf(fd));
    ASSERT_NE(found, nullptr) << LocalOf(fd).ToString() << " <-> " << RemoteOf(fd).ToString();
    EXPECT_EQ(found->state, TCP_ESTABLISHED);
    EXPECT_EQ(found->uid, geteuid());
    EXPECT_NE(found->inode, 0u);
    EXPECT_EQ(found->inode, InodeOf(fd));
    EXPECT_EQ(found->local.family, AF_INET);
    EXPECT_TRUE(found->local.IsLoopback());
  }
}

TEST(SocketTableTest, DumpKeepsToTheStatesAsked) {
  Listener listener;
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  const TcpEndpoint listening = V4("127.0.0.1", listener.port());

  const auto listeners = DumpTcpSockets(1u << TCP_LISTEN);
  ASSERT_TRUE(listeners.ok()) << listeners.status().message();
  bool found_listener = false;
  for (const TcpSocket& s : listeners.value()) {
    EXPECT_EQ(s.state, TCP_LISTEN);
    found_listener = found_listener || s.local == listening;
  }
  EXPECT_TRUE(found_listener);
  EXPECT_EQ(FindSocket(listeners.value(), LocalOf(client.get()), RemoteOf(client.get())), nullptr);

  const auto established = DumpTcpSockets(1u << TCP_ESTABLISHED);
  ASSERT_TRUE(established.ok()) << established.status().message();
  for (const TcpSocket& s : established.value()) {
    EXPECT_EQ(s.state, TCP_ESTABLISHED);
    EXPECT_FALSE(s.local == listening && s.remote.port == 0) << "the listener is not established";
  }
}

TEST(SocketTableTest, DumpFindsAnIpv6LoopbackConnection) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback (::1) in this network namespace";
  Listener listener(AF_INET6);
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET6, listener.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd server = listener.Accept();
  ASSERT_GE(server.get(), 0);

  const auto sockets = DumpTcpSockets(1u << TCP_ESTABLISHED);
  ASSERT_TRUE(sockets.ok()) << sockets.status().message();
  for (const int fd : {client.get(), server.get()}) {
    const TcpSocket* found = FindSocket(sockets.value(), LocalOf(fd), RemoteOf(fd));
    ASSERT_NE(found, nullptr) << LocalOf(fd).ToString();
    EXPECT_EQ(found->local.family, AF_INET6);
    EXPECT_EQ(found->local.AddressText(), "::1");
    EXPECT_EQ(found->uid, geteuid());
    EXPECT_EQ(found->inode, InodeOf(fd));
  }
}

TEST(SocketTableTest, LookupFindsOneSocketByItsEndpoints) {
  Listener listener;
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd server = listener.Accept();
  ASSERT_GE(server.get(), 0);
  for (const int fd : {client.get(), server.get()}) {
    auto found = LookupTcpSocket(LocalOf(fd), RemoteOf(fd));
    ASSERT_TRUE(found.ok()) << found.status().message();
    ASSERT_TRUE(found->has_value()) << LocalOf(fd).ToString();
    EXPECT_EQ((*found)->inode, InodeOf(fd));
    EXPECT_EQ((*found)->uid, geteuid());
    EXPECT_EQ((*found)->state, TCP_ESTABLISHED);
  }
  // No such connection (the kernel's lookup would fall back to the listener: not a match).
  TcpEndpoint stranger = RemoteOf(server.get());
  stranger.port = static_cast<uint16_t>(stranger.port == 65535 ? 1 : stranger.port + 1);
  auto missing = LookupTcpSocket(LocalOf(server.get()), stranger);
  ASSERT_TRUE(missing.ok()) << missing.status().message();
  EXPECT_FALSE(missing->has_value());
}

TEST(SocketTableTest, LookupFindsTheIpv4ClientOfADualStackListener) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 in this network namespace";
  Listener listener(AF_INET6, /*dual_stack=*/true);
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd server = listener.Accept();
  ASSERT_GE(server.get(), 0);
  // What the listener sees of its peer (IPv4-mapped), looked up as the client's own socket.
  auto client_end = LookupTcpSocket(RemoteOf(server.get()), LocalOf(server.get()));
  ASSERT_TRUE(client_end.ok()) << client_end.status().message();
  ASSERT_TRUE(client_end->has_value());
  EXPECT_EQ((*client_end)->inode, InodeOf(client.get()));
  auto server_end = LookupTcpSocket(LocalOf(server.get()), RemoteOf(server.get()));
  ASSERT_TRUE(server_end.ok() && server_end->has_value());
  EXPECT_EQ((*server_end)->inode, InodeOf(server.get()));
}

TEST(SocketTableTest, DualStackEndsAreNormalizedToIpv4) {
  // gRPC listens on [::]:port: an IPv4 client's connection is IPv4 on one end and IPv4-mapped
  // IPv6 on the other, and both must compare equal.
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 in this network namespace";
  Listener listener(AF_INET6, /*dual_stack=*/true);
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd server = listener.Accept();
  ASSERT_GE(server.get(), 0);
  const TcpEndpoint mapped_peer = RemoteOf(server.get());
  ASSERT_EQ(mapped_peer.family, AF_INET6);

  const auto sockets = DumpTcpSockets(1u << TCP_ESTABLISHED);
  ASSERT_TRUE(sockets.ok()) << sockets.status().message();
  const TcpSocket* server_end =
      FindSocket(sockets.value(), LocalOf(server.get()), RemoteOf(server.get()));
  ASSERT_NE(server_end, nullptr);
  EXPECT_EQ(server_end->local.family, AF_INET);
  EXPECT_EQ(server_end->remote, LocalOf(client.get()));
  EXPECT_EQ(server_end->inode, InodeOf(server.get()));
  const TcpSocket* client_end = FindSocket(sockets.value(), server_end->remote, server_end->local);
  ASSERT_NE(client_end, nullptr);
  EXPECT_EQ(client_end->inode, InodeOf(client.get()));
}

TEST(SocketTableTest, NormalizedMakesMappedAddressesIpv4) {
  EXPECT_EQ(Normalized(V6("::ffff:10.0.0.1", 22)), V4("10.0.0.1", 22));
  EXPECT_EQ(Normalized(V6("::ffff:127.0.0.1", 5)).ToString(), "127.0.0.1:5");
  EXPECT_EQ(Normalized(V6("::1", 22)), V6("::1", 22));
  EXPECT_EQ(Normalized(V6("2001:db8::ffff:1", 22)), V6("2001:db8::ffff:1", 22));
  EXPECT_EQ(Normalized(V6("64:ff9b::10.0.0.1", 22)), V6("64:ff9b::10.0.0.1", 22));
  TcpEndpoint junk = V4("10.0.0.1", 22);
  junk.address[4] = 1;
  junk.address[15] = 0xff;
  EXPECT_EQ(Normalized(junk), V4("10.0.0.1", 22));
}

TEST(SocketTableTest, FindSocketNormalizesWhatItIsAskedFor) {
  TcpSocket socket;
  socket.local = V4("127.0.0.1", 50051);
  socket.remote = V4("127.0.0.1", 41234);
  socket.inode = 99;
  const std::vector<TcpSocket> sockets = {socket};
  ASSERT_NE(FindSocket(sockets, V6("::ffff:127.0.0.1", 50051), V6("::ffff:127.0.0.1", 41234)),
            nullptr);
  EXPECT_EQ(FindSocket(sockets, V4("127.0.0.1", 41234), V4("127.0.0.1", 50051)), nullptr);
  EXPECT_EQ(FindSocket(sockets, V6("::1", 50051), V6("::1", 41234)), nullptr);
}

TEST(SocketTableTest, EndpointText) {
  EXPECT_EQ(V4("10.0.0.5", 22).ToString(), "10.0.0.5:22");
  EXPECT_EQ(V6("2001:db8::1", 22).ToString(), "[2001:db8::1]:22");
  EXPECT_TRUE(V4("127.0.0.1", 1).IsLoopback());
  EXPECT_TRUE(V4("127.255.0.9", 1).IsLoopback());
  EXPECT_TRUE(V6("::1", 1).IsLoopback());
  EXPECT_FALSE(V4("10.0.0.1", 1).IsLoopback());
  EXPECT_FALSE(V6("::2", 1).IsLoopback());
  EXPECT_FALSE(TcpEndpoint{}.IsLoopback());
}

TEST(ParseGrpcPeerTest, ReadsIpv4AndIpv6Peers) {
  EXPECT_EQ(ParseGrpcPeer("ipv4:127.0.0.1:41234"), V4("127.0.0.1", 41234));
  EXPECT_EQ(ParseGrpcPeer("ipv4:203.0.113.9:1"), V4("203.0.113.9", 1));
  EXPECT_EQ(ParseGrpcPeer("ipv4:10.0.0.1:65535"), V4("10.0.0.1", 65535));
  EXPECT_EQ(ParseGrpcPeer("ipv6:[::1]:41234"), V6("::1", 41234));
  EXPECT_EQ(ParseGrpcPeer("ipv6:%5B::1%5D:41234"), V6("::1", 41234));
  EXPECT_EQ(ParseGrpcPeer("ipv6:%5b::1%5d:41234"), V6("::1", 41234));
  EXPECT_EQ(ParseGrpcPeer("ipv6:[2001:db8::1]:443"), V6("2001:db8::1", 443));
  // A dual-stack listener's IPv4 client: the same endpoint as its IPv4 end.
  const auto mapped = ParseGrpcPeer("ipv6:[::ffff:127.0.0.1]:5");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_EQ(mapped->family, AF_INET);
  EXPECT_EQ(*mapped, V4("127.0.0.1", 5));
  EXPECT_EQ(ParseGrpcPeer("ipv6:%5B::ffff:127.0.0.1%5D:5"), V4("127.0.0.1", 5));
}

TEST(ParseGrpcPeerTest, RefusesEverythingElse) {
  for (const char* peer : {
           "",
           "unix:/x",
           "unix:/run/capd/capd.sock",
           "unix-abstract:capd",
           "ipv4:1.2.3.4",
           "ipv4:1.2.3.4:",
           "ipv4:1.2.3.4:0",
           "ipv4:1.2.3.4:65536",
           "ipv4:1.2.3.4:99999",
           "ipv4:1.2.3.4:12a",
           "ipv4:1.2.3.4:-1",
           "ipv4:1.2.3.4:+1",
           "ipv4:1.2.3.4: 1",
           "ipv4:1.2.3.4:123456",
           "ipv4:256.0.0.1:80",
           "ipv4:1.2.3:80",
           "ipv4:::1:80",
           "ipv4:[127.0.0.1]:80",
           "ipv4:127.0.0.1%00junk:41234",
           "ipv4:127.0.0.1%zz:41234",
           "ipv4:127.0.0.1%+1:41234",
           "ipv4:",
           "ipv6:::1:41234",
           "ipv6:[::1]",
           "ipv6:[::1]:",
           "ipv6:[::1]41234",
           "ipv6:[::1]:0",
           "ipv6:[::1]:65536",
           "ipv6:[zz::1]:80",
           "ipv6:[127.0.0.1]:80",
           "ipv6:%ZZ::1%5D:41234",
           "ipv6:%5B::1%5D:4123%",
           "IPV4:127.0.0.1:80",
           "dns:localhost:80",
           "garbage",
           "%",
           "%%%%",
       }) {
    EXPECT_EQ(ParseGrpcPeer(peer), std::nullopt) << peer;
  }
}

// --- /proc: which process holds a socket -------------------------------------------------------

TEST(ProcessSocketsTest, ReadsThisProcessesSockets) {
  Listener listener;
  ASSERT_TRUE(listener.ok());
  UniqueFd client(ConnectTo(AF_INET, listener.port()));
  ASSERT_GE(client.get(), 0);
  const auto inodes = ReadSocketInodes(getpid());
  ASSERT_TRUE(inodes.has_value());
  EXPECT_TRUE(std::is_sorted(inodes->begin(), inodes->end()));
  EXPECT_TRUE(std::binary_search(inodes->begin(), inodes->end(), InodeOf(client.get())));
  EXPECT_EQ(ReadSocketInodes(0x3fffffff), std::nullopt) << "no such process";
}

TEST(ProcessSocketsTest, FindsOwnersInAProcTree) {
  // A /proc of its own, with pids above any real one (PID_MAX_LIMIT is 4194304): 5000123 holds
  // socket 4242 (and 7 and a file), 5000456 only 99, 5000789's fd folder cannot be read, "self"
  // and "net" are not processes.
  const std::filesystem::path root =
      std::filesystem::path(testing::TempDir()) / ("proc-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root / "5000123" / "fd");
  std::filesystem::create_directories(root / "5000456" / "fd");
  std::filesystem::create_directories(root / "5000789");
  std::filesystem::create_directories(root / "net");
  std::filesystem::create_symlink("socket:[4242]", root / "5000123" / "fd" / "3");
  std::filesystem::create_symlink("socket:[7]", root / "5000123" / "fd" / "4");
  std::filesystem::create_symlink("/dev/null", root / "5000123" / "fd" / "5");
  std::filesystem::create_symlink("pipe:[4242]", root / "5000123" / "fd" / "6");
  std::filesystem::create_symlink("socket:[99]", root / "5000456" / "fd" / "3");
  std::filesystem::create_symlink("5000123", root / "self");
  std::ofstream(root / "5000123" / "comm") << "evil\x1b[2J\n";

  int unreadable = -1;
  const std::vector<SocketOwner> owners = FindSocketOwners({4242}, unreadable, 0, root.string());
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners[0].pid, 5000123);
  EXPECT_EQ(owners[0].command, "evil\x1b[2J");  // raw, without its newline
  EXPECT_EQ(owners[0].socket_inodes, (std::vector<uint64_t>{7, 4242}));
  EXPECT_EQ(unreadable, 1);  // 5000789

  EXPECT_TRUE(FindSocketOwners({4242}, unreadable, /*skip=*/5000123, root.string()).empty());
  EXPECT_TRUE(FindSocketOwners({5}, unreadable, 0, root.string()).empty());
  EXPECT_EQ(ReadSocketInodes(5000456, root.string()), (std::vector<uint64_t>{99}));
  EXPECT_EQ(ReadSocketInodes(5000789, root.string()), std::nullopt);
  std::filesystem::remove_all(root);
}

// Two processes hold socket 4242 (a relay and a child it forked): the one whose /proc entry
// belongs to the socket's uid is examined first, and with limit 1 it is the only one read.
TEST(ProcessSocketsTest, OwnersOfTheSocketsUidComeFirst) {
  const std::filesystem::path root =
      std::filesystem::path(testing::TempDir()) / ("proc-uid-" + std::to_string(getpid()));
  std::filesystem::remove_all(root);
  for (const char* pid : {"5000123", "5000456"}) {
    std::filesystem::create_directories(root / pid / "fd");
    std::filesystem::create_symlink("socket:[4242]", root / pid / "fd" / "3");
  }
  const uid_t mine = geteuid();
  struct stat first {};
  ASSERT_EQ(stat((root / "5000123").c_str(), &first), 0);
  ASSERT_EQ(first.st_uid, mine);
  int unreadable = -1;
  // Without a uid: pid order, both found.
  auto owners = FindSocketOwners({4242}, unreadable, 0, root.string());
  ASSERT_EQ(owners.size(), 2u);
  EXPECT_EQ(owners[0].pid, 5000123);
  // Only this test's uid owns the entries: an unknown uid changes nothing but the limit applies.
  owners = FindSocketOwners({4242}, unreadable, 0, root.string(), /*first_uid=*/mine + 1, 1);
  ASSERT_EQ(owners.size(), 1u);
  EXPECT_EQ(owners[0].pid, 5000123);
  if (mine == 0) {
    // As root the second entry can be given to another uid, which then comes first.
    ASSERT_EQ(chown((root / "5000456").c_str(), 4242, 4242), 0);
    owners = FindSocketOwners({4242}, unreadable, 0, root.string(), /*first_uid=*/4242, 1);
    ASSERT_EQ(owners.size(), 1u);
    EXPECT_EQ(owners[0].pid, 5000456);
  }
  std::filesystem::remove_all(root);
}

// --- AnswerRelayQuery: this process is the agent, a child the relay ---------------------------

// The agent's listener, a relay connected to it and to `upstreams` connections of an upstream
// listener, the agent's end accepted (held by this process, as capd holds its clients').
struct RelayScene {
  explicit RelayScene(size_t upstreams, int agent_family = AF_INET, bool dual_stack = false)
      : agent(agent_family, dual_stack),
        relay(dual_stack ? AF_INET : agent_family, agent.port(),
              std::vector<uint16_t>(upstreams, upstream.port())) {
    if (!agent.ok() || !upstream.ok() || !relay.ok()) return;
    agent_end = agent.Accept();
    if (agent_end.get() < 0) return;
    peer = RemoteOf(agent_end.get());
    expected = AcceptAll(upstream, upstreams, upstream_ends);
    ok = expected.size() == upstreams;
  }
  RelayQuery Query() const { return {peer, agent.port()}; }

  Listener upstream;  // made first: the relay connects to both
  Listener agent;
  Relay relay;
  UniqueFd agent_end;
  std::vector<UniqueFd> upstream_ends;
  TcpEndpoint peer;  // the relay's end, as the agent sees it
  std::vector<RelayConnection> expected;
  bool ok = false;
};

void ExpectFound(const RelayAnswer& answer, const RelayScene& scene) {
  EXPECT_EQ(answer.outcome, RelayOutcome::kFound);
  EXPECT_EQ(answer.pid, scene.relay.pid());
  EXPECT_EQ(answer.uid, geteuid());
  EXPECT_EQ(answer.command, kRelayName);
  EXPECT_EQ(answer.total_connections, scene.expected.size());
  EXPECT_EQ(answer.connections.size(), std::min(scene.expected.size(), kMaxRelayConnections));
  for (const RelayConnection& c : answer.connections) {
    EXPECT_TRUE(Contains(scene.expected, c))
        << c.local.ToString() << " <-> " << c.remote.ToString();
    EXPECT_NE(c.remote.port, scene.agent.port()) << "the connection to the agent is not counted";
  }
}

TEST(AnswerRelayQueryTest, FindsTheRelayAndItsOtherConnections) {
  RelayScene scene(1);
  ASSERT_TRUE(scene.ok);
  ASSERT_EQ(ProcComm(scene.relay.pid()), kRelayName);
  const RelayAnswer answer = AnswerRelayQuery(scene.Query(), getpid());
  ExpectFound(answer, scene);
  ASSERT_EQ(answer.connections.size(), 1u);
  EXPECT_EQ(answer.connections[0], scene.expected[0]);
}

TEST(AnswerRelayQueryTest, FindsEveryConnectionUpToTheMaximum) {
  for (size_t upstreams : {0u, 2u, 4u}) {
    RelayScene scene(upstreams);
    ASSERT_TRUE(scene.ok) << upstreams;
    const RelayAnswer answer = AnswerRelayQuery(scene.Query(), getpid());
    ExpectFound(answer, scene);
    for (const RelayConnection& c : scene.expected) {
      EXPECT_TRUE(Contains(answer.connections, c)) << upstreams;
    }
  }
}

TEST(AnswerRelayQueryTest, CountsAllConnectionsAndListsFour) {
  RelayScene scene(6);
  ASSERT_TRUE(scene.ok);
  const RelayAnswer answer = AnswerRelayQuery(scene.Query(), getpid());
  ExpectFound(answer, scene);
  EXPECT_EQ(answer.total_connections, 6u);
  EXPECT_EQ(answer.connections.size(), 4u);
}

TEST(AnswerRelayQueryTest, FindsAnIpv6Relay) {
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback (::1) in this network namespace";
  RelayScene scene(1, AF_INET6);
  ASSERT_TRUE(scene.ok);
  EXPECT_EQ(scene.peer.family, AF_INET6);
  ExpectFound(AnswerRelayQuery(scene.Query(), getpid()), scene);
}

TEST(AnswerRelayQueryTest, FindsAnIpv4RelayOfADualStackAgent) {
  // gRPC on [::]:port reports an IPv4 client as ipv6:[::ffff:127.0.0.1]:port.
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 in this network namespace";
  RelayScene scene(1, AF_INET6, /*dual_stack=*/true);
  ASSERT_TRUE(scene.ok);
  ASSERT_EQ(scene.peer.family, AF_INET6) << scene.peer.ToString();
  ExpectFound(AnswerRelayQuery(scene.Query(), getpid()), scene);
}

TEST(AnswerRelayQueryTest, RefusesAConnectionTheAgentDoesNotHold) {
  RelayScene scene(1);
  ASSERT_TRUE(scene.ok);
  // The relay's own pid, or init's, as the agent: neither holds the agent's end.
  EXPECT_EQ(AnswerRelayQuery(scene.Query(), scene.relay.pid()).outcome,
            RelayOutcome::kNotAgentConnection);
  EXPECT_EQ(AnswerRelayQuery(scene.Query(), 1).outcome, RelayOutcome::kNotAgentConnection);
  // A process that is gone.
  EXPECT_EQ(AnswerRelayQuery(scene.Query(), 0x3fffffff).outcome, RelayOutcome::kNotAgentConnection);
  // The agent's end accepted by nobody: the connection is in the backlog, held by no process.
  UniqueFd unaccepted(ConnectTo(AF_INET, scene.agent.port()));
  ASSERT_GE(unaccepted.get(), 0);
  EXPECT_EQ(AnswerRelayQuery({LocalOf(unaccepted.get()), scene.agent.port()}, getpid()).outcome,
            RelayOutcome::kNotAgentConnection);
}

TEST(AnswerRelayQueryTest, RefusesAPortNothingListensOn) {
  RelayScene scene(1);
  ASSERT_TRUE(scene.ok);
  // A port that is bound but not listening: no connection can be on it.
  UniqueFd reserved(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage address;
  const socklen_t length = Loopback(AF_INET, 0, address);
  ASSERT_EQ(bind(reserved.get(), reinterpret_cast<sockaddr*>(&address), length), 0);
  const uint16_t unused = LocalOf(reserved.get()).port;
  EXPECT_EQ(AnswerRelayQuery({scene.peer, unused}, getpid()).outcome,
            RelayOutcome::kNotAgentConnection);
  // The upstream's port: the relay is connected to it, but not from that endpoint.
  EXPECT_EQ(AnswerRelayQuery({scene.peer, scene.upstream.port()}, getpid()).outcome,
            RelayOutcome::kNotAgentConnection);
  // A peer endpoint that does not exist.
  EXPECT_EQ(AnswerRelayQuery({V4("127.0.0.1", unused), scene.agent.port()}, getpid()).outcome,
            RelayOutcome::kNotAgentConnection);
}

TEST(AnswerRelayQueryTest, SocketHeldByNoOtherProcessIsOwnerUnknown) {
  // The agent connects to itself: the peer socket exists, and the only process holding it is
  // the agent, which is never taken for a relay.
  Listener agent;
  ASSERT_TRUE(agent.ok());
  UniqueFd client(ConnectTo(AF_INET, agent.port()));
  ASSERT_GE(client.get(), 0);
  UniqueFd agent_end = agent.Accept();
  ASSERT_GE(agent_end.get(), 0);
  const RelayAnswer answer = AnswerRelayQuery({RemoteOf(agent_end.get()), agent.port()}, getpid());
  EXPECT_EQ(answer.outcome, RelayOutcome::kOwnerUnknown);
  EXPECT_EQ(answer.uid, geteuid());
  EXPECT_EQ(answer.pid, 0);
  EXPECT_TRUE(answer.connections.empty());
}

// --- ServeRelayQueries over a socket pair -----------------------------------------------------

// A datagram's answer within kPatienceMs, or nullopt.
std::optional<RelayAnswer> ReceiveAnswer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, kPatienceMs) != 1) return std::nullopt;
  char buffer[kMaxAnswerSize + 1];
  const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_TRUNC);
  if (n <= 0 || static_cast<size_t>(n) > kMaxAnswerSize) return std::nullopt;
  return DecodeAnswer({buffer, static_cast<size_t>(n)});
}

std::optional<RelayAnswer> Exchange(int fd, const std::string& datagram) {
  if (send(fd, datagram.data(), datagram.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(datagram.size())) {
    return std::nullopt;
  }
  return ReceiveAnswer(fd);
}

// ServeRelayQueries on its own thread, answering for this process as the agent.
class ServedPair {
 public:
  ServedPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return;
    client_.Reset(fds[0]);
    server_.Reset(fds[1]);
    ended_ = served_.get_future();
    thread_ = std::thread([this] {
      ServeRelayQueries(server_.get(), getpid());
      served_.set_value();
    });
  }
  ~ServedPair() {
    if (!thread_.joinable()) return;
    shutdown(server_.get(), SHUT_RDWR);  // ends a loop that did not end on its own
    thread_.join();
  }
  int client() const { return client_.get(); }
  // Closes the client's end; whether the loop ends within kPatienceMs.
  bool EndsWhenClosed() {
    client_.Reset();
    return ended_.wait_for(milliseconds(kPatienceMs)) == std::future_status::ready;
  }

 private:
  UniqueFd client_, server_;
  std::promise<void> served_;
  std::future<void> ended_;
  std::thread thread_;
};

// A connection this process holds at both ends: a query for it is answered kOwnerUnknown.
struct SelfConnection {
  SelfConnection() : client(ConnectTo(AF_INET, agent.port())), agent_end(agent.Accept()) {}
  RelayQuery Query() const { return {LocalOf(client.get()), agent.port()}; }
  Listener agent;
  UniqueFd client;
  UniqueFd agent_end;
};

TEST(ServeRelayQueriesTest, AnswersMalformedDatagramsAndKeepsServing) {
  SelfConnection connection;
  ASSERT_GE(connection.agent_end.get(), 0);
  const std::string valid = EncodeQuery(connection.Query());
  ASSERT_EQ(valid.size(), kQuerySize);
  std::string bad_magic = valid;
  bad_magic[3] = '2';
  ServedPair pair;
  ASSERT_GE(pair.client(), 0);
  for (const std::string& datagram : {valid.substr(0, 24), valid + '\0', std::string(1000, 'Q'),
                                      valid + std::string(975, '\0'), bad_magic}) {
    const auto answer = Exchange(pair.client(), datagram);
    ASSERT_TRUE(answer.has_value()) << datagram.size() << " bytes";
    EXPECT_EQ(answer->outcome, RelayOutcome::kMalformed) << datagram.size() << " bytes";
  }
  const auto answer = Exchange(pair.client(), valid);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->outcome, RelayOutcome::kOwnerUnknown);
  EXPECT_EQ(answer->uid, geteuid());
  EXPECT_TRUE(pair.EndsWhenClosed());
}

// An empty datagram on SOCK_SEQPACKET reads as 0 bytes, like the end of the connection:
// ServeRelayQueries must tell the two apart, answer kMalformed and keep serving.
TEST(ServeRelayQueriesTest, AnswersAnEmptyDatagramAndKeepsServing) {
  SelfConnection connection;
  ASSERT_GE(connection.agent_end.get(), 0);
  ServedPair pair;
  ASSERT_GE(pair.client(), 0);
  const auto empty = Exchange(pair.client(), "");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->outcome, RelayOutcome::kMalformed);
  const auto answer = Exchange(pair.client(), EncodeQuery(connection.Query()));
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->outcome, RelayOutcome::kOwnerUnknown);
  EXPECT_TRUE(pair.EndsWhenClosed());
}

TEST(ServeRelayQueriesTest, EndsWhenTheAgentCloses) {
  ServedPair pair;
  ASSERT_GE(pair.client(), 0);
  EXPECT_TRUE(pair.EndsWhenClosed());
}

// --- PeerHelper::Ask against a helper on a thread ---------------------------------------------

std::unique_ptr<PeerHelper> HelperOn(UniqueFd& theirs) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return nullptr;
  theirs.Reset(fds[1]);
  return std::make_unique<PeerHelper>(fds[0], /*pid=*/0, /*capability_bits=*/0);
}

// One datagram within kPatienceMs, as a string; "" when none came.
std::string ReceiveDatagram(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, kPatienceMs) != 1) return "";
  char buffer[256];
  const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

TEST(PeerHelperAskTest, AsksAServingHelper) {
  SelfConnection connection;
  ASSERT_GE(connection.agent_end.get(), 0);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd theirs(fds[1]);
  std::thread serving([&theirs] { ServeRelayQueries(theirs.get(), getpid()); });
  {
    PeerHelper helper(fds[0], 0, kHelperHasPtrace);
    EXPECT_FALSE(helper.CanReadEveryProcess());
    EXPECT_EQ(helper.Describe(), "pid 0, CAP_SYS_PTRACE");
    const auto answer = helper.Ask(connection.Query());
    EXPECT_TRUE(answer.ok()) << answer.status().message();
    if (answer.ok()) {
      EXPECT_EQ(answer.value().outcome, RelayOutcome::kOwnerUnknown);
    }
  }  // closes its end: the loop ends
  serving.join();
}

TEST(PeerHelperAskTest, SilentHelperIsUnavailableWithinTheTimeout) {
  UniqueFd theirs;
  auto helper = HelperOn(theirs);
  ASSERT_NE(helper, nullptr);
  const auto answer = helper->Ask({V4("127.0.0.1", 41234), 50051}, milliseconds(20));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(answer.status().message().find("20 ms"), std::string::npos)
      << answer.status().message();
  EXPECT_EQ(ReceiveDatagram(theirs.get()), EncodeQuery({V4("127.0.0.1", 41234), 50051}));
}

TEST(PeerHelperAskTest, HelperThatIsGoneIsUnavailable) {
  UniqueFd theirs;
  auto helper = HelperOn(theirs);
  ASSERT_NE(helper, nullptr);
  theirs.Reset();
  const auto answer = helper->Ask({V4("127.0.0.1", 41234), 50051});
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable);
}

TEST(PeerHelperAskTest, MalformedAnswerIsAnError) {
  for (const std::string& reply : {std::string("garbage"), EncodeReady(3),
                                   EncodeAnswer(RelayAnswer{}) + std::string(200, 'x')}) {
    UniqueFd theirs;
    auto helper = HelperOn(theirs);
    ASSERT_NE(helper, nullptr);
    std::thread replying([&theirs, &reply] {
      if (!ReceiveDatagram(theirs.get()).empty()) {
        (void)!send(theirs.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
      }
    });
    const auto answer = helper->Ask({V4("127.0.0.1", 41234), 50051});
    replying.join();
    ASSERT_FALSE(answer.ok()) << reply.size() << " bytes";
    EXPECT_EQ(answer.status().code(), StatusCode::kInternal);
  }
}

TEST(PeerHelperAskTest, LateAnswerIsNotTakenForTheNextOnes) {
  UniqueFd theirs;
  auto helper = HelperOn(theirs);
  ASSERT_NE(helper, nullptr);
  int go[2], sent[2];  // the test tells the helper when to answer late; it tells when it has
  ASSERT_EQ(pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(sent, O_CLOEXEC), 0);
  UniqueFd go_read(go[0]), go_write(go[1]), sent_read(sent[0]), sent_write(sent[1]);
  const RelayQuery first{V4("127.0.0.1", 1111), 50051}, second{V4("127.0.0.1", 2222), 50051};
  std::thread late([&] {
    char byte = 0;
    if (ReceiveDatagram(theirs.get()) == EncodeQuery(first) && read(go_read.get(), &byte, 1) == 1) {
      const std::string stale = EncodeAnswer(RelayAnswer{RelayOutcome::kNotLocal});
      (void)!send(theirs.get(), stale.data(), stale.size(), MSG_NOSIGNAL);
      (void)!write(sent_write.get(), &byte, 1);
      if (ReceiveDatagram(theirs.get()) == EncodeQuery(second)) {
        const std::string fresh = EncodeAnswer(RelayAnswer{RelayOutcome::kNotAgentConnection});
        (void)!send(theirs.get(), fresh.data(), fresh.size(), MSG_NOSIGNAL);
      }
    }
    sent_write.Reset();  // the test's read below never waits for a thread that gave up
  });
  const auto timed_out = helper->Ask(first, milliseconds(20));
  EXPECT_FALSE(timed_out.ok());
  char byte = 1;
  EXPECT_EQ(write(go_write.get(), &byte, 1), 1);
  EXPECT_EQ(read(sent_read.get(), &byte, 1), 1);  // the stale answer is waiting now
  const auto answer = helper->Ask(second);
  late.join();
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer.value().outcome, RelayOutcome::kNotAgentConnection);
}

// --- PeerHelper::Start: the helper process for real -------------------------------------------

bool Gone(pid_t pid) {
  errno = 0;
  return kill(pid, 0) == -1 && errno == ESRCH;
}

TEST(PeerHelperTest, StartedHelperAnswersAndLeavesNoProcess) {
  // Runs as root or not: the helper keeps what this process has of CAP_SYS_PTRACE and
  // CAP_DAC_READ_SEARCH, and a relay of the test's own uid is readable either way.
  RelayScene scene(2);
  ASSERT_TRUE(scene.ok);
  auto started = PeerHelper::Start("");
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::unique_ptr<PeerHelper> helper = std::move(started.value());
  const pid_t pid = helper->pid();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(ProcComm(pid), "capd-peers");
  const bool has_both =
      HasEffectiveCapability(CAP_SYS_PTRACE) && HasEffectiveCapability(CAP_DAC_READ_SEARCH);
  EXPECT_EQ(helper->CanReadEveryProcess(), has_both) << helper->Describe();
  EXPECT_EQ(helper->Describe().rfind("pid " + std::to_string(pid) + ", ", 0), 0u)
      << helper->Describe();

  const auto answer = helper->Ask(scene.Query(), milliseconds(kPatienceMs));
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  ExpectFound(answer.value(), scene);
  // And a query that names no connection of this process's.
  const auto refused = helper->Ask({V4("127.0.0.1", 1), scene.agent.port()});
  ASSERT_TRUE(refused.ok()) << refused.status().message();
  EXPECT_EQ(refused.value().outcome, RelayOutcome::kNotAgentConnection);

  helper.reset();
  EXPECT_TRUE(Gone(pid)) << "the helper is still running or a zombie";
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(PeerHelperTest, StartFailsCleanlyForAnUnknownUser) {
  // The child cannot drop to the user and exits before its ready message.
  const auto started = PeerHelper::Start("capd-test-no-such-user");
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.status().code(), StatusCode::kInternal);
  int status = 0;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1) << "a child was left behind";
  EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace capd::agent

namespace capd::agent {
namespace {

using peers_testing::V4;
using peers_testing::V6;

TcpSocket Socket(TcpEndpoint local, TcpEndpoint remote, uid_t uid, uint64_t inode) {
  TcpSocket socket;
  socket.local = local;
  socket.remote = remote;
  socket.state = 1;
  socket.uid = uid;
  socket.inode = inode;
  return socket;
}

// capd on 127.0.0.1:50051; alice (1001) at 127.0.0.1:40000, a client on another host at
// 10.0.0.9:40000 (only capd's end is in the table).
TEST(FindLocalPeerTest, LocalClientIsItsSocketsOwnerAndARemoteOneIsRemote) {
  const std::vector<TcpSocket> sockets = {
      Socket(V4("127.0.0.1", 50051), V4("127.0.0.1", 40000), 65534, 1),
      Socket(V4("127.0.0.1", 40000), V4("127.0.0.1", 50051), 1001, 2),
      Socket(V4("10.0.0.5", 50051), V4("10.0.0.9", 40000), 65534, 3),
  };
  const LocalPeer alice = FindLocalPeer(sockets, V4("127.0.0.1", 40000), 50051);
  EXPECT_EQ(alice.place, LocalPeer::Place::kLocal);
  EXPECT_EQ(alice.uid, 1001u);
  EXPECT_EQ(FindLocalPeer(sockets, V4("10.0.0.9", 40000), 50051).place, LocalPeer::Place::kRemote);
  // The peer as an IPv4-mapped IPv6 address (a dual-stack listener) is the same peer.
  EXPECT_EQ(FindLocalPeer(sockets, V6("::ffff:127.0.0.1", 40000), 50051).uid, 1001u);
  // Another port of the same peer is not a connection to capd.
  EXPECT_EQ(FindLocalPeer(sockets, V4("127.0.0.1", 40000), 50052).place, LocalPeer::Place::kRemote);
}

// One peer endpoint connected to capd on two local addresses, the two sockets owned by different
// users: capd cannot tell which call is whose, so it trusts neither.
TEST(FindLocalPeerTest, TwoOwnersOfOnePeerEndpointAreUnknown) {
  const std::vector<TcpSocket> sockets = {
      Socket(V4("127.0.0.1", 50051), V4("127.0.0.1", 40000), 65534, 1),
      Socket(V4("127.0.0.1", 40000), V4("127.0.0.1", 50051), 1001, 2),
      Socket(V4("127.0.0.2", 50051), V4("127.0.0.1", 40000), 65534, 3),
      Socket(V4("127.0.0.1", 40000), V4("127.0.0.2", 50051), 0, 4),
  };
  EXPECT_EQ(FindLocalPeer(sockets, V4("127.0.0.1", 40000), 50051).place,
            LocalPeer::Place::kUnknown);
}

}  // namespace
}  // namespace capd::agent
