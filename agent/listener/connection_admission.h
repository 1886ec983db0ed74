#pragma once
// Which new connections capd takes: at most `max_connections` open at once, kept below the
// descriptor limit so that gRPC never meets EMFILE, and at most `max_per_client` from one client,
// so that one client's flood of connections cannot take the places of the others. Local users
// whom the local access policy allows (root, the group capd) have a reserve of `max_per_client`
// places beyond `max_connections`: strangers who fill every place (a few local users, or a
// remote network) still leave room for the administrator.
//
// A client is what a flood cannot multiply cheaply: the uid that owns the other end of a local
// connection (SSH and SSM relays arrive on loopback: each relay runs as its own user), the
// address of a remote IPv4 client, or the /64 of a remote IPv6 one (one host holds a /64).
//
// Pure bookkeeping, no I/O: the listener reports each connection it admits and, from the
// kernel's socket table, which sockets are still open.
//
// Thread-safety: none; the listener's accept thread owns it.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace capd::agent {

struct ConnectionLimits {
  size_t max_connections = 512;
  size_t max_per_client = 64;
};

class ConnectionAdmission {
 public:
  explicit ConnectionAdmission(ConnectionLimits limits) : limits_(limits) {}

  enum class Verdict {
    kAdmit,
    kClientFull,  // this client has max_per_client open: refuse it, keep serving the others
    kFull,        // every place it may take is taken: refuse it
  };
  // `trusted`: a local user the access policy allows, who may use the reserve.
  Verdict Judge(const std::string& client, bool trusted = false) const;
  // Every place, the reserve included, is taken: stop accepting until some close.
  bool Exhausted() const { return open() >= limits_.max_connections + limits_.max_per_client; }

  // A connection taken from `client`; `socket_inode` identifies it in the socket table.
  void Admitted(uint64_t socket_inode, const std::string& client);

  // Forgets the admitted connections whose socket is not among `open_inodes`.
  void Reconcile(const std::unordered_set<uint64_t>& open_inodes);

  size_t open() const { return clients_of_.size(); }
  size_t OpenFrom(const std::string& client) const;
  const ConnectionLimits& limits() const { return limits_; }

 private:
  const ConnectionLimits limits_;
  std::unordered_map<uint64_t, std::string> clients_of_;  // socket inode -> client
  std::map<std::string, size_t> open_per_client_;
};

// The client key of a local peer owned by `uid`, or of a remote peer at `address` (family and
// network-order bytes as in TcpEndpoint; IPv6 keyed by its /64).
std::string LocalClient(uid_t uid);
std::string RemoteClient(int family, const uint8_t* address);

}  // namespace capd::agent
