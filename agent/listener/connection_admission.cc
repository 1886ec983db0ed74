#include "agent/listener/connection_admission.h"

#include <arpa/inet.h>

#include <cstring>
#include <vector>

namespace capd::agent {

ConnectionAdmission::Verdict ConnectionAdmission::Judge(const std::string& client,
                                                        bool trusted) const {
  if (OpenFrom(client) >= limits_.max_per_client) return Verdict::kClientFull;
  const size_t places = limits_.max_connections + (trusted ? limits_.max_per_client : 0);
  if (open() >= places) return Verdict::kFull;
  return Verdict::kAdmit;
}

void ConnectionAdmission::Admitted(uint64_t socket_inode, const std::string& client) {
  auto [it, inserted] = clients_of_.emplace(socket_inode, client);
  if (!inserted) {
    // An inode is reused only after its socket closed: the old connection is gone.
    if (--open_per_client_[it->second] == 0) open_per_client_.erase(it->second);
    it->second = client;
  }
  ++open_per_client_[client];
}

void ConnectionAdmission::Reconcile(const std::unordered_set<uint64_t>& open_inodes) {
  std::vector<uint64_t> closed;
  for (const auto& [inode, client] : clients_of_) {
    if (!open_inodes.contains(inode)) closed.push_back(inode);
  }
  for (uint64_t inode : closed) {
    auto it = clients_of_.find(inode);
    if (--open_per_client_[it->second] == 0) open_per_client_.erase(it->second);
    clients_of_.erase(it);
  }
}

size_t ConnectionAdmission::OpenFrom(const std::string& client) const {
  auto it = open_per_client_.find(client);
  return it == open_per_client_.end() ? 0 : it->second;
}

std::string LocalClient(uid_t uid) { return "local uid " + std::to_string(uid); }

std::string RemoteClient(int family, const uint8_t* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET6) {
    uint8_t prefix[16] = {};
    std::memcpy(prefix, address, 8);
    inet_ntop(AF_INET6, prefix, text, sizeof text);
    return std::string("remote ") + text + "/64";
  }
  inet_ntop(AF_INET, address, text, sizeof text);
  return std::string("remote ") + text;
}

}  // namespace capd::agent
