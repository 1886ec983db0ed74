#pragma once
// TcpEndpoint values for the agent/peers tests, from address text (the test fails on bad text).

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "agent/peers/socket_table.h"

namespace capd::agent::peers_testing {

inline TcpEndpoint Endpoint(int family, const char* address, uint16_t port) {
  TcpEndpoint endpoint;
  endpoint.family = family;
  endpoint.port = port;
  EXPECT_EQ(inet_pton(family, address, endpoint.address.data()), 1) << address;
  return endpoint;
}
inline TcpEndpoint V4(const char* address, uint16_t port) {
  return Endpoint(AF_INET, address, port);
}
inline TcpEndpoint V6(const char* address, uint16_t port) {
  return Endpoint(AF_INET6, address, port);
}

}  // namespace capd::agent::peers_testing
