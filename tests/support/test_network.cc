#include "tests/support/test_network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <sstream>
#include <thread>
#include <vector>

namespace capd::test {
Status RunChecked(const std::vector<std::string>& argv, const std::string& netns) {
  const CommandResult r = RunCommand(argv, netns);
  if (r.status.Exited(0)) return Status::Ok();
  // Appends only: GCC 12 warns falsely (-Wrestrict, GCC bug 105329) on "literal" + std::string&&.
  std::string message = "`";
  message.append(JoinArgs(argv)).append("`");
  if (!netns.empty()) message.append(" in netns ").append(netns);
  message.append(": ").append(r.status.ToString()).append(": ").append(r.output);
  return Internal(message);
}

void KillAndDeleteNamespace(const std::string& netns) {
  const CommandResult pids = RunCommand({"ip", "netns", "pids", netns});
  std::istringstream in(pids.output);
  for (pid_t pid; in >> pid;) {
    if (pid > 1 && pid != ::getpid()) ::kill(pid, SIGKILL);
  }
  RunCommand({"ip", "netns", "del", netns});
}

void TestNetwork::RemoveStaleNamespaces() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kNamePrefix, 0) != 0) continue;
    // "capdt-<pid>-<counter>-<a|b>"
    const size_t start = sizeof(kNamePrefix) - 1;
    const size_t dash = name.find('-', start);
    if (dash == std::string::npos) continue;
    pid_t pid = 0;
    try {
      pid = static_cast<pid_t>(std::stol(name.substr(start, dash - start)));
    } catch (const std::exception&) {
      continue;
    }
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // its owner is alive
    KillAndDeleteNamespace(name);
  }
}

StatusOr<std::unique_ptr<TestNetwork>> TestNetwork::Create() {
  RemoveStaleNamespaces();
  static std::atomic<int> counter{0};
  const std::string prefix =
      std::string(kNamePrefix) + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-";
  auto agent_ns = prefix + "a";
  auto peer_ns = prefix + "b";
  if (Status s = RunChecked({"ip", "netns", "add", agent_ns}); !s.ok()) {
    return Status(StatusCode::kFailedPrecondition, s.message());
  }
  if (Status s = RunChecked({"ip", "netns", "add", peer_ns}); !s.ok()) {
    RunCommand({"ip", "netns", "del", agent_ns});
    return Status(StatusCode::kFailedPrecondition, s.message());
  }
  std::unique_ptr<TestNetwork> network(new TestNetwork(agent_ns, peer_ns));
  if (Status s = network->Setup(); !s.ok()) return s;  // the destructor deletes both
  return network;
}

Status TestNetwork::Setup() {
  const std::string a = agent_ns_;
  const std::string b = peer_ns_;
  // Created directly inside the namespaces, so the names never meet in the root namespace.
  CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", a, "link", "add", kAgentInterface, "type", "veth",
                                   "peer", "name", kPeerInterface, "netns", b}));
  // Before the links go up, so not even the first router solicitation is sent.
  CAPD_RETURN_IF_ERROR(RunChecked(
      {"sysctl", "-qw", std::string("net.ipv6.conf.") + kAgentInterface + ".disable_ipv6=1"}, a));
  CAPD_RETURN_IF_ERROR(RunChecked(
      {"sysctl", "-qw", std::string("net.ipv6.conf.") + kPeerInterface + ".disable_ipv6=1"}, b));
  CAPD_RETURN_IF_ERROR(RunChecked(
      {"ip", "-n", a, "addr", "add", std::string(kAgentAddress) + "/24", "dev", kAgentInterface}));
  CAPD_RETURN_IF_ERROR(RunChecked(
      {"ip", "-n", b, "addr", "add", std::string(kPeerAddress) + "/24", "dev", kPeerInterface}));
  for (const auto& [ns, iface] : {std::pair{a, kAgentInterface}, std::pair{b, kPeerInterface}}) {
    CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", ns, "link", "set", "lo", "up"}));
    CAPD_RETURN_IF_ERROR(RunChecked({"ip", "-n", ns, "link", "set", iface, "up"}));
  }
  return Status::Ok();
}

TestNetwork::~TestNetwork() {
  KillAndDeleteNamespace(agent_ns_);
  KillAndDeleteNamespace(peer_ns_);
}

Status TestNetwork::AddDefaultRoute() {
  return RunChecked({"ip", "-n", agent_ns_, "route", "add", "default", "via", kPeerAddress});
}

StatusOr<UniqueFd> OpenSocketIn(const std::string& netns, int domain, int type) {
  Status status;
  UniqueFd socket_fd;
  // setns() changes only the calling thread's namespace; a socket keeps the namespace it was
  // created in, so the thread can end right after socket().
  std::thread worker([&] {
    const std::string path = "/run/netns/" + netns;
    UniqueFd ns_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns_fd.valid()) {
      status = Internal("open(" + path + "): " + strerror(errno));
      return;
    }
    if (::setns(ns_fd.get(), CLONE_NEWNET) != 0) {
      status = Internal("setns(" + path + "): " + strerror(errno));
      return;
    }
    socket_fd.Reset(::socket(domain, type | SOCK_CLOEXEC, 0));
    if (!socket_fd.valid()) status = Internal(std::string("socket: ") + strerror(errno));
  });
  worker.join();
  if (!status.ok()) return status;
  return socket_fd;
}

StatusOr<UniqueFd> OpenUdpSocketIn(const std::string& netns, const std::string& bind_address,
                                   uint16_t bind_port) {
  auto opened = OpenSocketIn(netns, AF_INET, SOCK_DGRAM);
  if (!opened.ok()) return opened.status();
  UniqueFd socket_fd = std::move(opened).value();
  if (!bind_address.empty() || bind_port != 0) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(bind_port);
    const std::string a = bind_address.empty() ? "0.0.0.0" : bind_address;
    if (::inet_pton(AF_INET, a.c_str(), &addr.sin_addr) != 1) {
      return InvalidArgument("not an IPv4 address: " + a);
    }
    if (::bind(socket_fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      return Internal("bind(" + a + ":" + std::to_string(bind_port) + "): " + strerror(errno));
    }
  }
  return socket_fd;
}

Status SendUdp(int fd, const std::string& address, uint16_t port, std::string_view payload) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("not an IPv4 address: " + address);
  }
  const ssize_t n = ::sendto(fd, payload.data(), payload.size(), 0,
                             reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  if (n != static_cast<ssize_t>(payload.size())) {
    return Internal("sendto(" + address + ":" + std::to_string(port) +
                    "): " + (n < 0 ? strerror(errno) : "short write"));
  }
  return Status::Ok();
}

}  // namespace capd::test
