#include "agent/carrier/carrier_tracker.h"

#include <netinet/tcp.h>

#include <algorithm>

namespace capd::agent {
namespace {

std::string ConnectionExpression(const CarrierConnection& c) {
  const std::string a = c.local.AddressText(), b = c.remote.AddressText();
  return "(host " + a + " and host " + b + " and tcp port " + std::to_string(c.local.port) +
         " and tcp port " + std::to_string(c.remote.port) + ")";
}

bool SameSet(const std::vector<CarrierConnection>& a, const std::vector<CarrierConnection>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i].local == b[i].local && a[i].remote == b[i].remote)) return false;
  }
  return true;
}

}  // namespace

std::string CarrierConnection::Describe() const {
  return command + "[" + std::to_string(pid) + "] " + local.ToString() + " <-> " +
         remote.ToString();
}

void CarrierTracker::Refresh(uint16_t agent_port) {
  const std::vector<TcpSocket> sockets = ReadTcpSockets(proc_root_);
  // The agent's accepted connections, seen from their peers: sockets whose remote end is the
  // agent's port and which are themselves in this namespace's table (the peer is on this host).
  std::vector<uint64_t> peer_inodes;
  for (const TcpSocket& s : sockets) {
    if (s.state == TCP_ESTABLISHED && s.remote.port == agent_port && s.local.port != agent_port &&
        s.inode != 0) {
      peer_inodes.push_back(s.inode);
    }
  }
  auto next = std::make_shared<CarrierSnapshot>();
  std::vector<SocketOwner> owners;
  if (!peer_inodes.empty()) {
    owners = FindSocketOwners(peer_inodes, next->unreadable_processes, proc_root_);
    for (const SocketOwner& owner : owners) {
      for (const TcpSocket& s : sockets) {
        if (s.state != TCP_ESTABLISHED || s.local.port == agent_port ||
            s.remote.port == agent_port) {
          continue;  // the agent's own connections are excluded by port already
        }
        if (!std::binary_search(owner.socket_inodes.begin(), owner.socket_inodes.end(), s.inode)) {
          continue;
        }
        next->connections.push_back({s.local, s.remote, owner.pid, owner.command});
      }
    }
  }
  std::sort(next->connections.begin(), next->connections.end(),
            [](const CarrierConnection& x, const CarrierConnection& y) {
              return std::tie(x.local.address, x.local.port, x.remote.address, x.remote.port) <
                     std::tie(y.local.address, y.local.port, y.remote.address, y.remote.port);
            });
  for (const CarrierConnection& c : next->connections) {
    if (!next->expression.empty()) next->expression += " or ";
    next->expression += ConnectionExpression(c);
  }
  std::lock_guard lock(mu_);
  relays_ = std::move(owners);
  // Processes come and go between refreshes, so the unreadable count alone is no change.
  if (SameSet(snapshot_->connections, next->connections)) return;
  next->generation = snapshot_->generation + 1;
  snapshot_ = std::move(next);
  generation_.store(snapshot_->generation, std::memory_order_release);
}

void CarrierTracker::Poll(uint16_t agent_port) {
  std::vector<SocketOwner> relays;
  {
    std::lock_guard lock(mu_);
    relays = relays_;
  }
  for (const SocketOwner& relay : relays) {
    const auto now = ReadSocketInodes(relay.pid, proc_root_);
    if (!now || *now != relay.socket_inodes) {
      Refresh(agent_port);
      return;
    }
  }
}

std::shared_ptr<const CarrierSnapshot> CarrierTracker::Snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

}  // namespace capd::agent
