#pragma once
// Carrier exclusion: the connections that carry capd's own streams across the host's network.
//
// A client usually reaches the agent's loopback port through a relay on the same host: sshd for
// `ssh -L`, the SSM session worker for Session Manager port forwarding, socat, kubectl
// port-forward. A capture of the interface the relay talks over would capture the stream that
// carries it, which grows without end. When an authorized stream starts, the peer helper names
// the process on the other end of its connection and that process's other TCP connections
// (JudgeRelay decides whether to trust them); the stream registers them here for as long as it
// runs, and every capture leaves the registered connections out, whatever their addresses (so
// NAT and SSM work, unlike excluding "host <laptop> and port 22").
//
// The set changes only when a stream with a relay starts or ends: an idle connection to capd
// changes nothing, so captures recompile their filter at most once per such event.
//
// Thread-safety: every member may be called from any thread.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/peers/relay_protocol.h"
#include "agent/peers/socket_table.h"
#include "common/status.h"

namespace capd::agent {

struct CarrierConnection {
  TcpEndpoint local;
  TcpEndpoint remote;
  pid_t pid = 0;
  std::string command;           // raw; Describe escapes it
  std::string Describe() const;  // "sshd[1234] 10.0.0.5:22 <-> 203.0.113.9:51234"
};

struct CarrierSnapshot {
  uint64_t generation = 0;  // changes whenever the set changes
  std::vector<CarrierConnection> connections;
  // BPF for the set: "(host A and host B and tcp port a and tcp port b) or ..."; empty if none.
  std::string expression;
};

class CarrierRegistry : public std::enable_shared_from_this<CarrierRegistry> {
 public:
  // Keeps its connections in the set until destroyed.
  class Registration {
   public:
    Registration() = default;
    Registration(std::shared_ptr<CarrierRegistry> registry, uint64_t id)
        : registry_(std::move(registry)), id_(id) {}
    Registration(Registration&& other) noexcept { *this = std::move(other); }
    Registration& operator=(Registration&& other) noexcept;
    ~Registration() { Release(); }

   private:
    void Release();
    std::shared_ptr<CarrierRegistry> registry_;
    uint64_t id_ = 0;
  };

  // Make it with std::make_shared. `connections` empty: nothing changes.
  Registration Add(std::vector<CarrierConnection> connections);
  std::shared_ptr<const CarrierSnapshot> Snapshot() const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  void Remove(uint64_t id);
  void PublishLocked();

  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::vector<CarrierConnection>> by_stream_;  // guarded by mu_
  std::shared_ptr<const CarrierSnapshot> snapshot_ = std::make_shared<CarrierSnapshot>();
  std::atomic<uint64_t> generation_{0};
};

// What to do about one stream's relay, from the peer helper's answer.
struct RelayVerdict {
  std::vector<CarrierConnection> exclude;  // to register for the stream's lifetime
  std::string warning;  // non-empty: the relay's traffic is NOT left out; told to the client
  std::string log;      // one line for capd's log; empty when there is nothing to say
};

// Trusts at most kMaxRelayConnections connections of a found process; any other outcome (the
// helper could not be asked, the process could not be read, too many connections) is a warning
// saying what is not excluded. A client on this host with no other connection, or one on
// another host, needs nothing.
RelayVerdict JudgeRelay(const StatusOr<RelayAnswer>& answer);

}  // namespace capd::agent
