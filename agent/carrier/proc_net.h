#pragma once
// Reading the kernel's TCP socket tables and the processes that own sockets, from /proc.
//
// /proc/net/tcp{,6} list every TCP socket of this network namespace with its endpoints and
// inode; /proc/PID/fd/N links to "socket:[inode]". Together they answer "which process holds
// this connection, and what other connections does it hold" without any tool. Reading another
// user's /proc/PID/fd needs root or CAP_SYS_PTRACE; what cannot be read is skipped.

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace capd::agent {

struct TcpEndpoint {
  int family = 0;                     // AF_INET or AF_INET6
  std::array<uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes
  uint16_t port = 0;
  bool operator==(const TcpEndpoint&) const = default;
  std::string ToString() const;  // "10.0.0.5:22", "[2001:db8::1]:22"
  std::string AddressText() const;
};

struct TcpSocket {
  TcpEndpoint local;
  TcpEndpoint remote;
  int state = 0;  // TCP_ESTABLISHED = 1, TCP_LISTEN = 10, ...
  uint64_t inode = 0;
};

// Every TCP socket of this namespace, IPv4 and IPv6. IPv4-mapped IPv6 addresses are returned as
// IPv4. Parses text from `tcp` and `tcp6` for tests when given.
std::vector<TcpSocket> ReadTcpSockets(const std::string& proc_root = "/proc");
std::vector<TcpSocket> ParseTcpTable(const std::string& text, int family);

struct SocketOwner {
  pid_t pid = 0;
  std::string command;                  // /proc/PID/comm
  std::vector<uint64_t> socket_inodes;  // every socket the process has open, sorted
};

// The socket inodes process `pid` has open, sorted; nullopt if it is gone or unreadable.
std::optional<std::vector<uint64_t>> ReadSocketInodes(pid_t pid,
                                                      const std::string& proc_root = "/proc");

// Processes holding any of `inodes`, with all their socket inodes. Unreadable processes are
// skipped; `unreadable` counts them (non-zero when capd lacks the privilege to look).
std::vector<SocketOwner> FindSocketOwners(const std::vector<uint64_t>& inodes, int& unreadable,
                                          const std::string& proc_root = "/proc");

}  // namespace capd::agent
