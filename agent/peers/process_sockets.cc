#include "agent/peers/process_sockets.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace capd::agent {
namespace {

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The socket inodes among the fds in `fd_dir` (/proc/PID/fd), sorted; nullopt if unreadable.
std::optional<std::vector<uint64_t>> SocketInodesIn(const std::string& fd_dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> fds(opendir(fd_dir.c_str()), closedir);
  if (!fds) return std::nullopt;
  std::vector<uint64_t> inodes;
  while (dirent* fd = readdir(fds.get())) {
    if (fd->d_name[0] == '.') continue;
    char target[64] = {};
    const ssize_t n = readlink((fd_dir + "/" + fd->d_name).c_str(), target, sizeof target - 1);
    // The folder may be listable (CAP_DAC_READ_SEARCH) while its links are not (no
    // CAP_SYS_PTRACE): that is "unreadable", not "holds no sockets".
    if (n < 0 && (errno == EACCES || errno == EPERM)) return std::nullopt;
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
                                          pid_t skip, const std::string& proc_root,
                                          std::optional<uid_t> first_uid, size_t limit) {
  unreadable = 0;
  std::vector<SocketOwner> owners;
  std::vector<pid_t> pids;
  {
    std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir(proc_root.c_str()), closedir);
    if (!proc) return owners;
    const pid_t self = getpid();
    while (dirent* entry = readdir(proc.get())) {
      char* end = nullptr;
      const long pid = std::strtol(entry->d_name, &end, 10);
      if (*end != '\0' || pid <= 0 || pid == self || pid == skip) continue;
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  std::sort(pids.begin(), pids.end());  // /proc lists in pid order; a copy of it may not
  if (first_uid) {
    std::stable_partition(pids.begin(), pids.end(), [&](pid_t pid) {
      struct stat entry {};
      return stat((proc_root + "/" + std::to_string(pid)).c_str(), &entry) == 0 &&
             entry.st_uid == *first_uid;
    });
  }
  for (const pid_t pid : pids) {
    const std::string dir = proc_root + "/" + std::to_string(pid);
    auto socket_inodes = SocketInodesIn(dir + "/fd");
    if (!socket_inodes) {
      ++unreadable;
      continue;
    }
    const bool holds_one = std::any_of(inodes.begin(), inodes.end(), [&](uint64_t inode) {
      return std::binary_search(socket_inodes->begin(), socket_inodes->end(), inode);
    });
    if (!holds_one) continue;
    SocketOwner owner;
    owner.pid = pid;
    owner.socket_inodes = std::move(*socket_inodes);
    owner.command = ReadWhole(dir + "/comm");
    while (!owner.command.empty() && owner.command.back() == '\n') owner.command.pop_back();
    owners.push_back(std::move(owner));
    if (limit != 0 && owners.size() >= limit) break;
  }
  return owners;
}

}  // namespace capd::agent
