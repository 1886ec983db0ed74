#include "agent/carrier/carrier_tracker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

namespace capd::agent {
namespace {

// A loopback listener on an ephemeral port; connections to it are accepted by the kernel's
// backlog, which is all a relay's connection needs to be ESTABLISHED.
struct Listener {
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(fd, 8);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  ~Listener() { close(fd); }
  int fd = -1;
  uint16_t port = 0;
};

int ConnectTo(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? fd : -1;
}

// A relay in a child process (the tracker never counts capd itself): it connects to the agent's
// port and to one upstream, then to one more port each time it reads a port from its pipe.
class Relay {
 public:
  Relay(uint16_t agent_port, uint16_t upstream_port) {
    int command[2], ready[2];
    EXPECT_EQ(pipe(command), 0);
    EXPECT_EQ(pipe(ready), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(command[1]);
      close(ready[0]);
      const bool ok = ConnectTo(agent_port) >= 0 && ConnectTo(upstream_port) >= 0;
      char byte = ok ? 1 : 0;
      (void)!write(ready[1], &byte, 1);
      uint16_t port = 0;
      while (read(command[0], &port, sizeof port) == sizeof port) {
        byte = ConnectTo(port) >= 0 ? 1 : 0;
        (void)!write(ready[1], &byte, 1);
      }
      _exit(0);
    }
    close(command[0]);
    close(ready[1]);
    command_ = command[1];
    ready_ = ready[0];
    EXPECT_TRUE(WaitReady());
  }
  ~Relay() {
    close(command_);
    close(ready_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool ConnectAlso(uint16_t port) {
    return write(command_, &port, sizeof port) == sizeof port && WaitReady();
  }
  pid_t pid() const { return pid_; }

 private:
  bool WaitReady() {
    char byte = 0;
    return read(ready_, &byte, 1) == 1 && byte == 1;
  }
  pid_t pid_ = -1;
  int command_ = -1;
  int ready_ = -1;
};

bool HasConnectionTo(const CarrierSnapshot& snapshot, uint16_t port, pid_t pid) {
  for (const CarrierConnection& c : snapshot.connections) {
    if (c.remote.port == port && c.pid == pid) return true;
  }
  return false;
}

TEST(CarrierTrackerTest, FindsTheRelaysOtherConnections) {
  Listener agent, upstream;
  Relay relay(agent.port, upstream.port);
  CarrierTracker tracker;
  tracker.Refresh(agent.port);
  const auto snapshot = tracker.Snapshot();
  EXPECT_TRUE(HasConnectionTo(*snapshot, upstream.port, relay.pid()));
  EXPECT_NE(snapshot->expression.find("tcp port " + std::to_string(upstream.port)),
            std::string::npos);
  for (const CarrierConnection& c : snapshot->connections) {
    EXPECT_NE(c.remote.port, agent.port) << "the agent's own connection is excluded by port";
  }
}

TEST(CarrierTrackerTest, PollNoticesANewConnectionOfARelay) {
  Listener agent, upstream, later;
  Relay relay(agent.port, upstream.port);
  CarrierTracker tracker;
  tracker.Refresh(agent.port);
  const uint64_t before = tracker.generation();

  tracker.Poll(agent.port);  // nothing changed: the same set, the same generation
  EXPECT_EQ(tracker.generation(), before);

  ASSERT_TRUE(relay.ConnectAlso(later.port));
  tracker.Poll(agent.port);
  EXPECT_GT(tracker.generation(), before);
  EXPECT_TRUE(HasConnectionTo(*tracker.Snapshot(), later.port, relay.pid()));
}

TEST(CarrierTrackerTest, PollWithoutRelaysLooksAtNothing) {
  // No stream has come through a local relay: the periodic check has nothing to watch, and a
  // relay that appears later is found by the Refresh of the stream it carries.
  Listener agent, upstream;
  CarrierTracker tracker;
  tracker.Refresh(agent.port);
  Relay relay(agent.port, upstream.port);
  tracker.Poll(agent.port);
  EXPECT_TRUE(tracker.Snapshot()->connections.empty());
  tracker.Refresh(agent.port);
  EXPECT_TRUE(HasConnectionTo(*tracker.Snapshot(), upstream.port, relay.pid()));
}

}  // namespace
}  // namespace capd::agent
