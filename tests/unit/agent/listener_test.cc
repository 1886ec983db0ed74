// listener/: the admission rules as pure bookkeeping, and TcpListener against real loopback
// connections the test makes (no root needed: the test's own uid is the local client).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
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
  const uint8_t address[4] = {10, 0, 0, 5};
  const std::string flood = LocalClient(1000), other = RemoteClient(AF_INET, address);
  admission.Admitted(1, flood);
  EXPECT_EQ(admission.Judge(flood), Verdict::kAdmit);
  admission.Admitted(2, flood);
  EXPECT_EQ(admission.Judge(flood), Verdict::kClientFull);
  EXPECT_EQ(admission.Judge(other), Verdict::kAdmit);
  EXPECT_EQ(admission.OpenFrom(flood), 2u);
  EXPECT_EQ(admission.open(), 2u);
}

TEST(ConnectionAdmissionTest, AllPlacesTakenLeavesAReserveToAllowedLocalUsers) {
  ConnectionAdmission admission({.max_connections = 3, .max_per_client = 2});
  admission.Admitted(1, LocalClient(1001));
  admission.Admitted(2, LocalClient(1002));
  admission.Admitted(3, LocalClient(1003));
  EXPECT_EQ(admission.Judge(LocalClient(1004)), Verdict::kFull);
  EXPECT_EQ(admission.Judge(LocalClient(0), /*trusted=*/true), Verdict::kAdmit);
  admission.Admitted(4, LocalClient(0));
  EXPECT_FALSE(admission.Exhausted());
  admission.Admitted(5, LocalClient(0));
  EXPECT_EQ(admission.Judge(LocalClient(0), /*trusted=*/true), Verdict::kClientFull);
  EXPECT_EQ(admission.Judge(LocalClient(7), /*trusted=*/true), Verdict::kFull);
  EXPECT_TRUE(admission.Exhausted());  // max_connections plus one client's share
  // A client at its own limit is told so first.
  admission.Reconcile({1, 2, 3, 4});
  admission.Admitted(6, LocalClient(1001));
  EXPECT_EQ(admission.Judge(LocalClient(1001)), Verdict::kClientFull);
}

TEST(ConnectionAdmissionTest, OneIpv6HostIsOneClientWhateverItsAddressInThe64) {
  uint8_t first[16] = {0xfd, 0, 0xa, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x10};
  uint8_t second[16] = {0xfd, 0, 0xa, 0x77, 0, 0, 0, 0, 0xde, 0xad, 0, 0, 0, 0, 0x01, 0x1f};
  uint8_t other_64[16] = {0xfd, 0, 0xa, 0x77, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x01, 0x10};
  EXPECT_EQ(RemoteClient(AF_INET6, first), RemoteClient(AF_INET6, second));
  EXPECT_EQ(RemoteClient(AF_INET6, first), "remote fd00:a77::/64");
  EXPECT_NE(RemoteClient(AF_INET6, first), RemoteClient(AF_INET6, other_64));
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

TEST(TcpListenerTest, WhenFullStrangersAreClosedAndAllowedUsersUseTheReserve) {
  for (const bool allowed : {false, true}) {
    SCOPED_TRACE(allowed ? "the test's uid is allowed" : "the test's uid is a stranger");
    auto listener = TcpListener::Bind("127.0.0.1:0", {.max_connections = 2, .max_per_client = 5},
                                      [allowed](uid_t) { return allowed; });
    ASSERT_TRUE(listener.ok()) << listener.status().message();
    HandedOver handed;
    (*listener)->Start([&handed](int, int fd) { handed.Add(fd); });
    const uint16_t port = (*listener)->port();
    const int a = Connect(port), b = Connect(port);
    ASSERT_TRUE(handed.WaitForCount(2, std::chrono::seconds(5)));
    const int third = Connect(port);
    if (allowed) {
      EXPECT_TRUE(handed.WaitForCount(3, std::chrono::seconds(5)));
      EXPECT_FALSE(ClosedByServer(third, std::chrono::milliseconds(50)));
    } else {
      EXPECT_TRUE(ClosedByServer(third, std::chrono::seconds(5)));
      EXPECT_EQ(handed.count(), 2u);
      // Once a place is free again, a stranger is served.
      handed.Close(0);
      std::this_thread::sleep_for(TcpListener::kFullRecheck * 2);
      const int fourth = Connect(port);
      EXPECT_TRUE(handed.WaitForCount(3, std::chrono::seconds(5)));
      close(fourth);
    }
    (*listener)->Stop();
    for (int fd : {a, b, third}) close(fd);
  }
}

TEST(TcpListenerTest, BindErrorsSayWhat) {
  auto taken = TcpListener::Bind("127.0.0.1:0", {});
  ASSERT_TRUE(taken.ok());
  const std::string address = "127.0.0.1:" + std::to_string((*taken)->port());
  auto second = TcpListener::Bind(address, {});
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("address already in use (another capd?)"),
            std::string::npos)
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
