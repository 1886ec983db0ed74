// listener/: the admission rules as pure bookkeeping, and TcpListener against real loopback
// connections the test makes (no root needed: the test's own uid is the local client).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/listener/connection_admission.h"
#include "agent/listener/tcp_listener.h"
#include "common/log_throttle.h"

namespace capd::agent {
namespace {

using Verdict = ConnectionAdmission::Verdict;

TEST(ConnectionAdmissionTest, OneClientIsHeldToItsShareWhileOthersAreAdmitted) {
  ConnectionAdmission admission({.max_connections = 10, .max_per_client = 2});
  const std::string flood = LocalClient(1000), other = RemoteClient("10.0.0.5");
  admission.Admitted(1, flood);
  EXPECT_EQ(admission.Judge(flood), Verdict::kAdmit);
  admission.Admitted(2, flood);
  EXPECT_EQ(admission.Judge(flood), Verdict::kClientFull);
  EXPECT_EQ(admission.Judge(other), Verdict::kAdmit);
  EXPECT_EQ(admission.OpenFrom(flood), 2u);
  EXPECT_EQ(admission.open(), 2u);
}

TEST(ConnectionAdmissionTest, AllPlacesTakenMakesEveryoneWait) {
  ConnectionAdmission admission({.max_connections = 3, .max_per_client = 2});
  admission.Admitted(1, LocalClient(1));
  admission.Admitted(2, LocalClient(2));
  admission.Admitted(3, LocalClient(3));
  EXPECT_EQ(admission.Judge(LocalClient(4)), Verdict::kFull);
  // A client at its own limit is told so first: it is refused rather than left waiting.
  admission.Admitted(4, LocalClient(1));
  EXPECT_EQ(admission.Judge(LocalClient(1)), Verdict::kClientFull);
}

TEST(ConnectionAdmissionTest, ClosedSocketsGiveTheirPlacesBack) {
  ConnectionAdmission admission({.max_connections = 2, .max_per_client = 2});
  admission.Admitted(11, LocalClient(7));
  admission.Admitted(12, LocalClient(7));
  ASSERT_EQ(admission.Judge(LocalClient(7)), Verdict::kClientFull);
  admission.Reconcile({12});  // 11 closed
  EXPECT_EQ(admission.open(), 1u);
  EXPECT_EQ(admission.OpenFrom(LocalClient(7)), 1u);
  EXPECT_EQ(admission.Judge(LocalClient(7)), Verdict::kAdmit);
  admission.Reconcile({});
  EXPECT_EQ(admission.open(), 0u);
  EXPECT_EQ(admission.OpenFrom(LocalClient(7)), 0u);
}

TEST(ConnectionAdmissionTest, AReusedInodeReplacesTheConnectionThatHadIt) {
  ConnectionAdmission admission({.max_connections = 5, .max_per_client = 5});
  admission.Admitted(5, LocalClient(1));
  admission.Admitted(5, LocalClient(2));  // the first socket closed unseen; its inode came back
  EXPECT_EQ(admission.open(), 1u);
  EXPECT_EQ(admission.OpenFrom(LocalClient(1)), 0u);
  EXPECT_EQ(admission.OpenFrom(LocalClient(2)), 1u);
}

TEST(LogThrottleTest, HoldsBackLinesOverTheRateAndCountsThem) {
  LogThrottle throttle(2, std::chrono::seconds(60));
  const auto t0 = LogThrottle::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(throttle.Admit(t0), 0u);
  EXPECT_EQ(throttle.Admit(t0), 0u);
  EXPECT_EQ(throttle.Admit(t0 + std::chrono::seconds(1)), std::nullopt);
  EXPECT_EQ(throttle.Admit(t0 + std::chrono::seconds(2)), std::nullopt);
  // The next interval logs again and says how many were held back.
  EXPECT_EQ(throttle.Admit(t0 + std::chrono::seconds(61)), 2u);
  EXPECT_EQ(throttle.Admit(t0 + std::chrono::seconds(62)), 0u);
}

// A loopback client connection to `port`; the test fails if it cannot connect.
int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0)
      << strerror(errno);
  return fd;
}

// True if capd closed `fd`'s connection within `timeout` (the read sees end of file or reset).
bool ClosedByServer(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
  char byte;
  return recv(fd, &byte, 1, MSG_DONTWAIT) <= 0;
}

// What the listener handed over, for the test to wait on.
class HandedOver {
 public:
  void Add(int fd) {
    std::lock_guard lock(mutex_);
    fds_.push_back(fd);
    changed_.notify_all();
  }
  bool WaitForCount(size_t count, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return fds_.size() >= count; });
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return fds_.size();
  }
  // The server side ends connection `i`.
  void Close(size_t i) {
    std::lock_guard lock(mutex_);
    close(fds_.at(i));
    fds_.at(i) = -1;
  }
  ~HandedOver() {
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<int> fds_;
};

TEST(TcpListenerTest, AClientOverItsLimitIsClosedAtOnce) {
  auto listener = TcpListener::Bind("127.0.0.1:0", {.max_connections = 10, .max_per_client = 2});
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  HandedOver handed;
  (*listener)->Start([&handed](int, int fd) { handed.Add(fd); });
  const uint16_t port = (*listener)->port();
  ASSERT_NE(port, 0);
  const int first = Connect(port), second = Connect(port), third = Connect(port);
  ASSERT_TRUE(handed.WaitForCount(2, std::chrono::seconds(5)));
  EXPECT_TRUE(ClosedByServer(third, std::chrono::seconds(5)));
  EXPECT_FALSE(ClosedByServer(first, std::chrono::milliseconds(50)));
  EXPECT_EQ(handed.count(), 2u);
  // Once one of its connections has closed, the client may connect again.
  handed.Close(0);
  close(first);
  std::this_thread::sleep_for(TcpListener::kFullRecheck * 2);
  const int fourth = Connect(port);
  EXPECT_TRUE(handed.WaitForCount(3, std::chrono::seconds(5)));
  (*listener)->Stop();
  for (int fd : {second, third, fourth}) close(fd);
}

TEST(TcpListenerTest, WhenFullNewConnectionsWaitAndAreServedWhenOthersClose) {
  auto listener = TcpListener::Bind("127.0.0.1:0", {.max_connections = 2, .max_per_client = 5});
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  HandedOver handed;
  (*listener)->Start([&handed](int, int fd) { handed.Add(fd); });
  const uint16_t port = (*listener)->port();
  const int a = Connect(port), b = Connect(port), waiting = Connect(port);
  ASSERT_TRUE(handed.WaitForCount(2, std::chrono::seconds(5)));
  EXPECT_FALSE(handed.WaitForCount(3, TcpListener::kFullRecheck * 3));
  EXPECT_FALSE(ClosedByServer(waiting, std::chrono::milliseconds(10)));
  handed.Close(0);
  EXPECT_TRUE(handed.WaitForCount(3, std::chrono::seconds(5)));
  (*listener)->Stop();
  for (int fd : {a, b, waiting}) close(fd);
}

TEST(TcpListenerTest, BindErrorsSayWhat) {
  auto taken = TcpListener::Bind("127.0.0.1:0", {});
  ASSERT_TRUE(taken.ok());
  const std::string address = "127.0.0.1:" + std::to_string((*taken)->port());
  auto second = TcpListener::Bind(address, {});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("address already in use (another capd?)"), std::string::npos)
      << second.status().message();
  auto bad = TcpListener::Bind("no-such-host.invalid:1", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no-such-host.invalid"), std::string::npos);
  auto v6 = TcpListener::Bind("[::1]:0", {});
  ASSERT_TRUE(v6.ok()) << v6.status().message();
  EXPECT_NE((*v6)->port(), 0);
}

}  // namespace
}  // namespace capd::agent
