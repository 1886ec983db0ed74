#include "agent/carrier/proc_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace capd::agent {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "0100007F:1F90" (IPv4) or 32 hex digits ":" port (IPv6). The kernel prints the address as
// 32-bit words in host byte order, so each word's bytes are reversed on little-endian hosts.
bool ParseEndpoint(const std::string& text, int family, TcpEndpoint& out) {
  const size_t colon = text.find(':');
  const size_t address_digits = family == AF_INET ? 8 : 32;
  if (colon != address_digits || text.size() != colon + 5) return false;
  uint8_t raw[16] = {};
  for (size_t i = 0; i < address_digits / 2; ++i) {
    const int hi = HexDigit(text[2 * i]), lo = HexDigit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  for (size_t word = 0; word < address_digits / 8; ++word) {
    // The text is the word's value in hex, most significant digit first; storing that value in
    // host order gives back the bytes the kernel holds (network order).
    const uint32_t value = (static_cast<uint32_t>(raw[4 * word]) << 24) |
                           (raw[4 * word + 1] << 16) | (raw[4 * word + 2] << 8) | raw[4 * word + 3];
    std::memcpy(out.address.data() + 4 * word, &value, 4);
  }
  int port = 0;
  for (size_t i = colon + 1; i < text.size(); ++i) {
    const int d = HexDigit(text[i]);
    if (d < 0) return false;
    port = port * 16 + d;
  }
  out.port = static_cast<uint16_t>(port);
  out.family = family;
  // ::ffff:a.b.c.d (an IPv4 peer of a dual-stack socket) is reported as IPv4.
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET6 && std::memcmp(out.address.data(), kMapped, 12) == 0) {
    std::memmove(out.address.data(), out.address.data() + 12, 4);
    std::fill(out.address.begin() + 4, out.address.end(), 0);
    out.family = AF_INET;
  }
  return true;
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string TcpEndpoint::AddressText() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, address.data(), text, sizeof text);
  return text;
}

std::string TcpEndpoint::ToString() const {
  std::string text;
  if (family == AF_INET6) text += '[';
  text += AddressText();
  if (family == AF_INET6) text += ']';
  text += ':';
  text += std::to_string(port);
  return text;
}

std::vector<TcpSocket> ParseTcpTable(const std::string& text, int family) {
  std::vector<TcpSocket> sockets;
  std::istringstream lines(text);
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::istringstream fields(line);
    std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    if (!(fields >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode)) {
      continue;
    }
    TcpSocket socket;
    if (!ParseEndpoint(local, family, socket.local) ||
        !ParseEndpoint(remote, family, socket.remote)) {
      continue;
    }
    socket.state = static_cast<int>(std::strtol(state.c_str(), nullptr, 16));
    socket.inode = std::strtoull(inode.c_str(), nullptr, 10);
    sockets.push_back(socket);
  }
  return sockets;
}

std::vector<TcpSocket> ReadTcpSockets(const std::string& proc_root) {
  std::vector<TcpSocket> sockets = ParseTcpTable(ReadWhole(proc_root + "/net/tcp"), AF_INET);
  std::vector<TcpSocket> v6 = ParseTcpTable(ReadWhole(proc_root + "/net/tcp6"), AF_INET6);
  sockets.insert(sockets.end(), v6.begin(), v6.end());
  return sockets;
}

namespace {

// The socket inodes among the fds in `fd_dir` (/proc/PID/fd), sorted; nullopt if unreadable.
std::optional<std::vector<uint64_t>> SocketInodesIn(const std::string& fd_dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> fds(opendir(fd_dir.c_str()), closedir);
  if (!fds) return std::nullopt;
  std::vector<uint64_t> inodes;
  while (dirent* fd = readdir(fds.get())) {
    if (fd->d_name[0] == '.') continue;
    char target[64] = {};
    const ssize_t n = readlink((fd_dir + "/" + fd->d_name).c_str(), target, sizeof target - 1);
    if (n <= 0 || std::strncmp(target, "socket:[", 8) != 0) continue;
    inodes.push_back(std::strtoull(target + 8, nullptr, 10));
  }
  std::sort(inodes.begin(), inodes.end());
  return inodes;
}

}  // namespace

std::optional<std::vector<uint64_t>> ReadSocketInodes(pid_t pid, const std::string& proc_root) {
  return SocketInodesIn(proc_root + "/" + std::to_string(pid) + "/fd");
}

std::vector<SocketOwner> FindSocketOwners(const std::vector<uint64_t>& inodes, int& unreadable,
                                          const std::string& proc_root) {
  unreadable = 0;
  std::vector<SocketOwner> owners;
  std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir(proc_root.c_str()), closedir);
  if (!proc) return owners;
  const pid_t self = getpid();
  while (dirent* entry = readdir(proc.get())) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self) continue;
    auto socket_inodes = SocketInodesIn(proc_root + "/" + entry->d_name + "/fd");
    if (!socket_inodes) {
      ++unreadable;
      continue;
    }
    const bool holds_one = std::any_of(inodes.begin(), inodes.end(), [&](uint64_t inode) {
      return std::binary_search(socket_inodes->begin(), socket_inodes->end(), inode);
    });
    if (!holds_one) continue;
    SocketOwner owner;
    owner.pid = static_cast<pid_t>(pid);
    owner.socket_inodes = std::move(*socket_inodes);
    owner.command = ReadWhole(proc_root + "/" + entry->d_name + "/comm");
    while (!owner.command.empty() && owner.command.back() == '\n') owner.command.pop_back();
    owners.push_back(std::move(owner));
  }
  return owners;
}

}  // namespace capd::agent
