#pragma once
// What the agent can capture on: libpcap's device list and the default-route interface.

#include <string>
#include <vector>

#include "common/status.h"

namespace capd::agent {

struct InterfaceSummary {
  std::string name;
  std::string description;
  std::vector<std::string> addresses;
  bool up = false;
  bool running = false;
  bool loopback = false;
};

StatusOr<std::vector<InterfaceSummary>> ListCaptureInterfaces();

// The interface of the IPv4 default route with the lowest metric (from /proc/net/route), else
// of the IPv6 default route (/proc/net/ipv6_route). kNotFound when the host has no default route.
StatusOr<std::string> DefaultRouteInterface();

// "Linux <release>" from uname(2), for the files' os options.
std::string OperatingSystemDescription();

}  // namespace capd::agent
