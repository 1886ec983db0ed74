#pragma once
// The TCP sockets of capd's network namespace, from the kernel's NETLINK_SOCK_DIAG interface
// (what `ss` reads): both endpoints, the state, the uid that created the socket and its inode.
// It needs no privilege and no /proc, so the unprivileged capd can learn which uid is on the
// other end of a local connection; which *process* holds a socket is the peer helper's question
// (peer_helper.h), since that needs another user's /proc/PID/fd.
//
// Thread-safety: the functions keep no state; each call opens its own netlink socket.

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace capd::agent {

struct TcpEndpoint {
  int family = 0;                     // AF_INET or AF_INET6
  std::array<uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes, rest zero
  uint16_t port = 0;
  bool operator==(const TcpEndpoint&) const = default;
  std::string ToString() const;  // "10.0.0.5:22", "[2001:db8::1]:22"
  std::string AddressText() const;
  bool IsLoopback() const;  // 127.0.0.0/8 or ::1
};

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d, the IPv4 peer of a dual-stack socket) becomes
// the IPv4 endpoint, so that both ends of one connection compare equal whatever their family.
TcpEndpoint Normalized(TcpEndpoint endpoint);

struct TcpSocket {
  TcpEndpoint local;
  TcpEndpoint remote;
  int state = 0;  // TCP_ESTABLISHED = 1, ...
  uid_t uid = 0;  // who created it (the kernel's sk_uid)
  uint64_t inode = 0;
};

// Every TCP socket of this network namespace in one of the states of `state_mask` (bit
// 1 << TCP_STATE), IPv4 and IPv6, endpoints normalized. Errors name the failing call.
StatusOr<std::vector<TcpSocket>> DumpTcpSockets(uint32_t state_mask);

// The one TCP socket with exactly these endpoints, asked of the kernel without a dump (what a
// busy accept loop can afford per connection); nullopt if there is none.
StatusOr<std::optional<TcpSocket>> LookupTcpSocket(const TcpEndpoint& local,
                                                   const TcpEndpoint& remote);

// The socket among `sockets` with exactly these endpoints (normalized), or null.
const TcpSocket* FindSocket(const std::vector<TcpSocket>& sockets, const TcpEndpoint& local,
                            const TcpEndpoint& remote);

// Where the client at `peer`, connected to capd's `port`, runs.
struct LocalPeer {
  enum class Place {
    kLocal,    // its socket is in this network namespace: `uid` is its owner
    kRemote,   // no socket here is that peer: another host (or namespace)
    kUnknown,  // two local sockets claim to be that peer (with different owners): trust neither
  };
  Place place = Place::kRemote;
  uid_t uid = 0;
};
LocalPeer FindLocalPeer(const std::vector<TcpSocket>& sockets, const TcpEndpoint& peer,
                        uint16_t port);

// gRPC's peer text, "ipv4:127.0.0.1:41234" or "ipv6:[::1]:41234" (percent-encoded or not);
// nullopt for anything else (unix:, malformed).
std::optional<TcpEndpoint> ParseGrpcPeer(std::string_view peer);

}  // namespace capd::agent
