#include "agent/carrier/proc_net.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>

namespace capd::agent {
namespace {

// Lines as the kernel prints them (little-endian host): 127.0.0.1:50051 <- 127.0.0.1:41234,
// and an IPv6 socket whose peer is IPv4-mapped.
constexpr char kTcp[] =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n"
    "   0: 0100007F:C383 0100007F:A112 01 00000000:00000000 00:00000000 00000000     0        0 "
    "424242 1 0000000000000000 20 4 30 10 -1\n"
    "   1: 0100007F:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "1111 1 0000000000000000 100 0 0 10 0\n";
constexpr char kTcp6[] =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0000000000000000FFFF00000A00000A:0016 0000000000000000FFFF00000200000A:D431 01 "
    "00000000:00000000 02:000A0000 00000000     0        0 5151 1 0000000000000000 20 4 1 10 "
    "-1\n";

TEST(ProcNetTest, ParsesIpv4Endpoints) {
  const auto sockets = ParseTcpTable(kTcp, AF_INET);
  ASSERT_EQ(sockets.size(), 2u);
  EXPECT_EQ(sockets[0].local.ToString(), "127.0.0.1:50051");
  EXPECT_EQ(sockets[0].remote.ToString(), "127.0.0.1:41234");
  EXPECT_EQ(sockets[0].state, TCP_ESTABLISHED);
  EXPECT_EQ(sockets[0].inode, 424242u);
  EXPECT_EQ(sockets[1].state, TCP_LISTEN);
}

TEST(ProcNetTest, MappedIpv6IsReportedAsIpv4) {
  const auto sockets = ParseTcpTable(kTcp6, AF_INET6);
  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].local.family, AF_INET);
  EXPECT_EQ(sockets[0].local.ToString(), "10.0.0.10:22");
  EXPECT_EQ(sockets[0].remote.ToString(), "10.0.0.2:54321");
}

TEST(ProcNetTest, SkipsMalformedLines) {
  EXPECT_TRUE(ParseTcpTable("header\n   0: zz:zz yy:yy 01 x x x 0 0 1\n", AF_INET).empty());
}

TEST(ProcNetTest, ReadsThisProcessesOwnListeningSocket) {
  // The real /proc: a socket this test opens must be found with its owner.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  bool found = false;
  for (const TcpSocket& s : ReadTcpSockets()) {
    found = found || (s.state == TCP_LISTEN && s.local.port == ntohs(address.sin_port));
  }
  close(fd);
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace capd::agent
