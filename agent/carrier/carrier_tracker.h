#pragma once
// Carrier exclusion: the connections that carry capd's own streams across the host's network.
//
// A client usually reaches the agent's loopback port through a relay on the same host: sshd for
// `ssh -L`, the SSM session worker for Session Manager port forwarding, socat, kubectl
// port-forward. A capture of the interface those relays talk over would capture the stream that
// carries it, which grows without end. For every accepted connection whose peer socket is on this
// host, the tracker finds the process that owns the peer socket and lists every other TCP
// connection of that process: those are excluded from all captures, whatever their addresses
// (so NAT and SSM work, unlike excluding "host <laptop> and port 22").
//
// Thread-safety: Refresh() and Snapshot() may be called from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/carrier/proc_net.h"

namespace capd::agent {

struct CarrierConnection {
  TcpEndpoint local;
  TcpEndpoint remote;
  pid_t pid = 0;
  std::string command;
  std::string Describe() const;  // "sshd[1234] 10.0.0.5:22 <-> 203.0.113.9:51234"
};

struct CarrierSnapshot {
  uint64_t generation = 0;  // changes whenever the set changes
  std::vector<CarrierConnection> connections;
  int unreadable_processes = 0;  // > 0: some owners could not be examined (privileges)
  // BPF for the set: "(host A and host B and tcp port a and tcp port b) or ..."; empty if none.
  std::string expression;
};

class CarrierTracker {
 public:
  explicit CarrierTracker(std::string proc_root = "/proc") : proc_root_(std::move(proc_root)) {}

  // Re-reads /proc for the relays of connections to `agent_port`: the TCP tables and every
  // process's fds. Costs milliseconds (the tables walk the kernel's whole connection hash), so
  // it runs when a stream starts, and from Poll only when something changed.
  void Refresh(uint16_t agent_port);
  // The periodic check: re-reads only the fds of the relays found last time (none: nothing to
  // do) and calls Refresh if one of them is gone or its sockets changed. New relays appear with
  // new streams, which call Refresh themselves.
  void Poll(uint16_t agent_port);
  std::shared_ptr<const CarrierSnapshot> Snapshot() const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  const std::string proc_root_;
  mutable std::mutex mu_;
  std::shared_ptr<const CarrierSnapshot> snapshot_ = std::make_shared<CarrierSnapshot>();
  std::atomic<uint64_t> generation_{0};
  std::vector<SocketOwner> relays_;  // guarded by mu_; what Poll watches
};

}  // namespace capd::agent
