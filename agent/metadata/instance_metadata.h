#pragma once
// EC2 instance metadata (IMDSv2), for naming the agent and describing its interfaces: instance
// id, region, availability zone, and per network interface (by MAC) the ENI, VPC and subnet.
//
// IMDSv2 is token based: PUT /latest/api/token, then GETs with the token header. Off EC2 the
// endpoint does not answer; the caller runs this in the background with a short timeout so that
// nothing waits for it. The endpoint is configurable so tests can use a local stand-in.

#include <chrono>
#include <map>
#include <string>

#include "common/status.h"

namespace capd::agent {

struct NetworkInterfaceMetadata {
  std::string eni_id;
  std::string vpc_id;
  std::string subnet_id;
};

struct InstanceMetadata {
  std::string instance_id;
  std::string region;
  std::string availability_zone;
  std::map<std::string, NetworkInterfaceMetadata> interfaces_by_mac;  // "0e:12:..:ff" lower-case

  // "i-0abc (us-east-1a, vpc-1, subnet-2, eni-3)" for the interface with `mac`, or without the
  // network part when the MAC is unknown.
  std::string Describe(const std::string& mac) const;
};

constexpr char kDefaultMetadataEndpoint[] = "http://169.254.169.254";

// endpoint: "http://HOST[:PORT]". kUnavailable when it does not answer within `timeout` (each
// request); kInternal for an unexpected answer.
StatusOr<InstanceMetadata> FetchInstanceMetadata(const std::string& endpoint,
                                                 std::chrono::milliseconds timeout);

// The MAC address of a local interface from /sys/class/net/IFACE/address, lower-case; empty if
// unknown.
std::string InterfaceMac(const std::string& interface);

}  // namespace capd::agent
