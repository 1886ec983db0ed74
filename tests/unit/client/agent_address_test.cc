#include "client/transport/agent_address.h"

#include <gtest/gtest.h>

namespace capd::client {
namespace {

TEST(AgentAddressTest, HostPortAndInterface) {
  auto a = ParseAgentAddress("10.0.0.5:50051/eth1");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->transport, AgentAddress::Transport::kDirect);
  EXPECT_EQ(a->target, "10.0.0.5:50051");
  EXPECT_EQ(a->interface, "eth1");
}

TEST(AgentAddressTest, BracketedIPv6) {
  auto a = ParseAgentAddress("[::1]:50051/lo");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->target, "[::1]:50051");
  EXPECT_EQ(a->interface, "lo");
  EXPECT_FALSE(ParseAgentAddress("::1:50051").ok());
}

TEST(AgentAddressTest, Transports) {
  auto ssh = ParseAgentAddress("ssh://ec2-user@bastion/eth0");
  ASSERT_TRUE(ssh.ok());
  EXPECT_EQ(ssh->transport, AgentAddress::Transport::kSsh);
  EXPECT_EQ(ssh->target, "ec2-user@bastion");
  EXPECT_EQ(ssh->interface, "eth0");
  auto ssm = ParseAgentAddress("ssm://i-0123456789abcdef0");
  ASSERT_TRUE(ssm.ok());
  EXPECT_EQ(ssm->transport, AgentAddress::Transport::kSsm);
}

TEST(AgentAddressTest, RefusesWithMessageNamingTheAddress) {
  for (const char* bad :
       {"", "host", "host:", "host:0", "host:70000", ":50051", "host:1/", "host:port"}) {
    auto a = ParseAgentAddress(bad);
    ASSERT_FALSE(a.ok()) << bad;
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(a.status().message().find(std::string("'") + bad + "'"), std::string::npos);
  }
}

TEST(SshTargetTest, IPv6HostsReachSshWithoutBrackets) {
  auto check = [](std::string_view target, const std::string& destination,
                  const std::string& port) {
    const SshDestination parsed = ParseSshTarget(target);
    EXPECT_EQ(parsed.destination, destination) << target;
    EXPECT_EQ(parsed.port, port) << target;
  };
  check("host", "host", "");
  check("host:2222", "host", "2222");
  check("ec2-user@10.0.0.5:22", "ec2-user@10.0.0.5", "22");
  check("[::1]:22", "::1", "22");
  check("[::1]", "::1", "");
  check("admin@[2001:db8::5]:2222", "admin@2001:db8::5", "2222");
  check("::1", "::1", "");
  check("user@fe80::1", "user@fe80::1", "");
}

}  // namespace
}  // namespace capd::client
