#include "agent/peers/socket_table.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace capd::agent {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status Errno(const std::string& call) { return Internal(call + ": " + std::strerror(errno)); }

TcpEndpoint FromDiag(int family, const __be32 address[4], __be16 port) {
  TcpEndpoint endpoint;
  endpoint.family = family;
  std::memcpy(endpoint.address.data(), address, family == AF_INET ? 4 : 16);
  endpoint.port = ntohs(port);
  return Normalized(endpoint);
}

// Sends `request` for TCP sockets of `family` and appends the answers to `out`. A dump ends with
// NLMSG_DONE; a lookup of one socket gets that socket, or ENOENT (not an error: nothing added).
Status Query(int family, inet_diag_req_v2 request, bool dump, std::vector<TcpSocket>& out) {
  Fd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd.get() < 0) return Errno("socket(AF_NETLINK, NETLINK_SOCK_DIAG)");
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0);
  message.request = request;
  message.request.sdiag_family = static_cast<uint8_t>(family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd.get(), &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) != static_cast<ssize_t>(sizeof message)) {
    return Errno("sendto(NETLINK_SOCK_DIAG)");
  }
  alignas(nlmsghdr) static thread_local char buffer[64 * 1024];
  while (true) {
    const ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("recv(NETLINK_SOCK_DIAG)");
    }
    if (n == 0) return Internal("recv(NETLINK_SOCK_DIAG): end of data before NLMSG_DONE");
    int length = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, length);
         h = NLMSG_NEXT(h, length)) {
      if (h->nlmsg_type == NLMSG_DONE) return Status::Ok();
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (!dump && (error->error == -ENOENT || error->error == 0)) return Status::Ok();
        errno = -error->error;
        return Errno(dump ? "NETLINK_SOCK_DIAG dump" : "NETLINK_SOCK_DIAG lookup");
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        continue;
      }
      const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      TcpSocket socket;
      socket.local = FromDiag(diag->idiag_family, diag->id.idiag_src, diag->id.idiag_sport);
      socket.remote = FromDiag(diag->idiag_family, diag->id.idiag_dst, diag->id.idiag_dport);
      socket.state = diag->idiag_state;
      socket.uid = diag->idiag_uid;
      socket.inode = diag->idiag_inode;
      out.push_back(socket);
      if (!dump) return Status::Ok();
    }
  }
}

// The kernel's form of `endpoint` for a socket of `family` (an IPv4 endpoint in an IPv6 socket
// is IPv4-mapped).
void ToDiag(const TcpEndpoint& endpoint, int family, __be32 address[4], __be16& port) {
  std::memset(address, 0, 16);
  if (family == AF_INET6 && endpoint.family == AF_INET) {
    auto* bytes = reinterpret_cast<uint8_t*>(address);
    bytes[10] = bytes[11] = 0xff;
    std::memcpy(bytes + 12, endpoint.address.data(), 4);
  } else {
    std::memcpy(address, endpoint.address.data(), family == AF_INET ? 4 : 16);
  }
  port = htons(endpoint.port);
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

bool TcpEndpoint::IsLoopback() const {
  if (family == AF_INET) return address[0] == 127;
  static const std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 1};
  return family == AF_INET6 && address == kLoopback6;
}

TcpEndpoint Normalized(TcpEndpoint endpoint) {
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (endpoint.family == AF_INET6 && std::memcmp(endpoint.address.data(), kMapped, 12) == 0) {
    std::memmove(endpoint.address.data(), endpoint.address.data() + 12, 4);
    std::fill(endpoint.address.begin() + 4, endpoint.address.end(), 0);
    endpoint.family = AF_INET;
  }
  if (endpoint.family == AF_INET)
    std::fill(endpoint.address.begin() + 4, endpoint.address.end(), 0);
  return endpoint;
}

StatusOr<std::vector<TcpSocket>> DumpTcpSockets(uint32_t state_mask) {
  std::vector<TcpSocket> sockets;
  inet_diag_req_v2 request{};
  request.idiag_states = state_mask;
  CAPD_RETURN_IF_ERROR(Query(AF_INET, request, /*dump=*/true, sockets));
  CAPD_RETURN_IF_ERROR(Query(AF_INET6, request, /*dump=*/true, sockets));
  return sockets;
}

StatusOr<std::optional<TcpSocket>> LookupTcpSocket(const TcpEndpoint& local,
                                                   const TcpEndpoint& remote) {
  const TcpEndpoint l = Normalized(local), r = Normalized(remote);
  // An IPv4 connection may belong to an IPv4 socket or to a dual-stack IPv6 one.
  const std::vector<int> families =
      l.family == AF_INET ? std::vector<int>{AF_INET, AF_INET6} : std::vector<int>{AF_INET6};
  for (int family : families) {
    inet_diag_req_v2 request{};
    request.idiag_states = ~0u;
    request.id.idiag_cookie[0] = request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    ToDiag(l, family, request.id.idiag_src, request.id.idiag_sport);
    ToDiag(r, family, request.id.idiag_dst, request.id.idiag_dport);
    std::vector<TcpSocket> found;
    CAPD_RETURN_IF_ERROR(Query(family, request, /*dump=*/false, found));
    // The kernel's lookup falls back to a listener on the local port: only an exact match counts.
    if (!found.empty() && found[0].local == l && found[0].remote == r) {
      return std::optional<TcpSocket>(found[0]);
    }
  }
  return std::optional<TcpSocket>();
}

const TcpSocket* FindSocket(const std::vector<TcpSocket>& sockets, const TcpEndpoint& local,
                            const TcpEndpoint& remote) {
  const TcpEndpoint l = Normalized(local), r = Normalized(remote);
  for (const TcpSocket& s : sockets) {
    if (s.local == l && s.remote == r) return &s;
  }
  return nullptr;
}

LocalPeer FindLocalPeer(const std::vector<TcpSocket>& sockets, const TcpEndpoint& peer,
                        uint16_t port) {
  const TcpEndpoint client = Normalized(peer);
  LocalPeer found;
  for (const TcpSocket& agent_end : sockets) {
    if (agent_end.local.port != port || !(agent_end.remote == client)) continue;
    const TcpSocket* peer_end = FindSocket(sockets, client, agent_end.local);
    if (peer_end == nullptr) continue;
    if (found.place == LocalPeer::Place::kLocal && found.uid != peer_end->uid) {
      return {LocalPeer::Place::kUnknown, 0};
    }
    found = {LocalPeer::Place::kLocal, peer_end->uid};
  }
  return found;
}

std::optional<TcpEndpoint> ParseGrpcPeer(std::string_view peer) {
  std::string text;
  // gRPC percent-encodes some peers ("ipv6:%5B::1%5D:41234").
  for (size_t i = 0; i < peer.size(); ++i) {
    if (peer[i] == '%' && i + 2 < peer.size()) {
      const std::string hex(peer.substr(i + 1, 2));
      if (!std::all_of(hex.begin(), hex.end(), [](char c) { return std::isxdigit(c) != 0; })) {
        return std::nullopt;
      }
      const long value = std::strtol(hex.c_str(), nullptr, 16);
      if (value == 0) return std::nullopt;  // a NUL would end the address early
      text += static_cast<char>(value);
      i += 2;
    } else {
      text += peer[i];
    }
  }
  int family = 0;
  std::string host, port;
  if (text.rfind("ipv4:", 0) == 0) {
    family = AF_INET;
    const std::string rest = text.substr(5);
    const size_t colon = rest.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  } else if (text.rfind("ipv6:[", 0) == 0) {
    family = AF_INET6;
    const std::string rest = text.substr(6);
    const size_t close = rest.find("]:");
    if (close == std::string::npos) return std::nullopt;
    host = rest.substr(0, close);
    port = rest.substr(close + 2);
  } else {
    return std::nullopt;
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const unsigned long number = std::stoul(port);
  if (number == 0 || number > 65535) return std::nullopt;
  TcpEndpoint endpoint;
  endpoint.family = family;
  endpoint.port = static_cast<uint16_t>(number);
  if (inet_pton(family, host.c_str(), endpoint.address.data()) != 1) return std::nullopt;
  return Normalized(endpoint);
}

}  // namespace capd::agent
