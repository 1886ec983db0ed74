#pragma once
// A private network for several agents on one capture host, each agent capturing a link of its
// own (as agents on separate hosts each capture their own NIC):
//
//   netns "<prefix>a" (capture host)                 netns "<prefix>b" (senders)
//   lo up                                            lo up
//   cap0 10.210.0.1/24  <──── veth pair 0 ────>      snd0 10.210.0.2/24
//   cap1 10.210.1.1/24  <──── veth pair 1 ────>      snd1 10.210.1.2/24
//   ...                                              ...
//
// Each link has its own subnet, so a datagram sent from the senders' namespace to 10.210.N.1
// leaves through sndN and crosses capN only. Neighbour entries are permanent on both sides (fixed
// MAC addresses), so no ARP exchange races the first datagrams of a test (an unresolved neighbour
// queues, and beyond unres_qlen_bytes drops, what is sent meanwhile). IPv6 is off on every veth,
// so captures hold no neighbour discovery or MLD.
//
// Names are "capdt-<pid>-m<counter>-a|b": TestNetwork::RemoveStaleNamespaces() also deletes these
// when their test process is gone (a ctest timeout kills with SIGKILL, so no destructor runs).

#include <memory>
#include <string>

#include "common/status.h"

namespace capd::test {

class MultiLinkNetwork {
 public:
  static constexpr int kMaxLinks = 8;

  // `links` veth pairs (1..kMaxLinks) between two new namespaces. kFailedPrecondition when
  // `ip netns add` fails (not root, no iproute2): the environment cannot run such tests. Whatever
  // was created is deleted again on failure.
  static StatusOr<std::unique_ptr<MultiLinkNetwork>> Create(int links);

  // Kills any process still inside the namespaces, then deletes them (and so the veth pairs).
  ~MultiLinkNetwork();
  MultiLinkNetwork(const MultiLinkNetwork&) = delete;
  MultiLinkNetwork& operator=(const MultiLinkNetwork&) = delete;

  const std::string& capture_ns() const { return capture_ns_; }
  const std::string& sender_ns() const { return sender_ns_; }
  int links() const { return links_; }

  // Link N's ends: "capN" 10.210.N.1 in the capture namespace, "sndN" 10.210.N.2 in the senders'.
  static std::string CaptureInterface(int link);
  static std::string CaptureAddress(int link);
  static std::string SenderInterface(int link);
  static std::string SenderAddress(int link);

 private:
  MultiLinkNetwork(std::string capture_ns, std::string sender_ns, int links)
      : capture_ns_(std::move(capture_ns)), sender_ns_(std::move(sender_ns)), links_(links) {}
  Status SetupLink(int link);

  std::string capture_ns_;
  std::string sender_ns_;
  int links_;
};

}  // namespace capd::test
