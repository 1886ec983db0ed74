#pragma once
// A private two-namespace network for one test:
//
//   netns "<prefix>a" (the agent's)              netns "<prefix>b" (the peer's)
//   lo up, veth0 10.200.0.1/24  <── veth pair ──> veth1 10.200.0.2/24
//
// capd, capctl and tcpdump run in the agent namespace; traffic is sent from the peer namespace
// to 10.200.0.1 and captured on veth0. Each test has its own namespaces, so addresses, interface
// names and the agent's port 50051 repeat freely between tests that ctest runs in parallel.
// IPv6 is disabled on the veths so no neighbour discovery or MLD packets appear in captures.
//
// The prefix is "capdt-<pid>-<counter>-". Creating a network first deletes namespaces left by a
// test process that is gone (a ctest timeout kills with SIGKILL, so destructors do not run).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "tests/support/subprocess.h"

namespace capd::test {

class TestNetwork {
 public:
  static constexpr char kAgentInterface[] = "veth0";
  static constexpr char kPeerInterface[] = "veth1";
  static constexpr char kAgentAddress[] = "10.200.0.1";
  static constexpr char kPeerAddress[] = "10.200.0.2";
  static constexpr char kNamePrefix[] = "capdt-";

  // Runs `ip netns add` and friends; fails (with the command's output) when any step fails.
  // kFailedPrecondition when `ip netns add` itself fails (no CAP_SYS_ADMIN, no iproute2): the
  // environment cannot run these tests. Whatever was created is deleted again on failure.
  static StatusOr<std::unique_ptr<TestNetwork>> Create();

  // Kills any process still inside the namespaces, then deletes them (and so the veth pair).
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  const std::string& agent_ns() const { return agent_ns_; }
  const std::string& peer_ns() const { return peer_ns_; }

  // Adds "default via 10.200.0.2" in the agent namespace, making veth0 its default-route
  // interface (there is none otherwise).
  Status AddDefaultRoute();

  // Deletes namespaces named "capdt-<pid>-..." whose pid is no longer alive.
  static void RemoveStaleNamespaces();

 private:
  TestNetwork(std::string agent_ns, std::string peer_ns)
      : agent_ns_(std::move(agent_ns)), peer_ns_(std::move(peer_ns)) {}
  Status Setup();

  std::string agent_ns_;
  std::string peer_ns_;
};

// Runs `argv` (inside `netns` when given) and fails naming the command, the namespace, its exit
// status and its output unless it exits 0.
Status RunChecked(const std::vector<std::string>& argv, const std::string& netns = "");

// Kills every process in the namespace, then deletes it. Best effort: used for cleanup.
void KillAndDeleteNamespace(const std::string& netns);

// socket(domain, type | SOCK_CLOEXEC, 0) created inside network namespace `netns`, by a
// short-lived thread that joins the namespace; the socket stays in that namespace for its life.
StatusOr<UniqueFd> OpenSocketIn(const std::string& netns, int domain, int type);

// A UDP socket created inside network namespace `netns` (by a short-lived thread that joins the
// namespace; the socket stays in that namespace for its whole life). Bound to `bind_address`:
// `bind_port` when given (0: any port).
StatusOr<UniqueFd> OpenUdpSocketIn(const std::string& netns, const std::string& bind_address = "",
                                   uint16_t bind_port = 0);

// One datagram to address:port. Fails unless the whole payload was sent.
Status SendUdp(int fd, const std::string& address, uint16_t port, std::string_view payload);

}  // namespace capd::test
