#pragma once
// Which process holds a socket, from /proc: /proc/PID/fd/N links to "socket:[inode]".
//
// Reading another user's /proc/PID/fd needs CAP_DAC_READ_SEARCH (to list the folder) and
// CAP_SYS_PTRACE (to read the links): only the peer helper (peer_helper.h) has them; what cannot
// be read is skipped and counted.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace capd::agent {

struct SocketOwner {
  pid_t pid = 0;
  std::string command;                  // /proc/PID/comm, raw (may hold any byte but NUL)
  std::vector<uint64_t> socket_inodes;  // every socket the process has open, sorted
};

// The socket inodes process `pid` has open, sorted; nullopt if it is gone or unreadable.
std::optional<std::vector<uint64_t>> ReadSocketInodes(pid_t pid,
                                                      const std::string& proc_root = "/proc");

// Processes holding any of `inodes`, with all their socket inodes, in pid order; this process
// and `skip` are never examined. Unreadable processes are skipped; `unreadable` counts them
// (non-zero when the caller lacks the privilege to look). With `first_uid`, the processes whose
// /proc entry that user owns are examined first (the likely owners of a socket that user made:
// other users' processes, however many sockets they hold, are read only if those hold none);
// with `limit` > 0 the search stops once it found that many.
std::vector<SocketOwner> FindSocketOwners(const std::vector<uint64_t>& inodes, int& unreadable,
                                          pid_t skip = 0, const std::string& proc_root = "/proc",
                                          std::optional<uid_t> first_uid = std::nullopt,
                                          size_t limit = 0);

}  // namespace capd::agent
