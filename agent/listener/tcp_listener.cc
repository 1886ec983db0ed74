#include "agent/listener/tcp_listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>

#include "agent/peers/socket_table.h"
#include "common/log_throttle.h"

namespace capd::agent {
namespace {

// The states in which an accepted socket may still hold a descriptor (TIME_WAIT has none; a
// socket in CLOSE is not in the table, and gRPC closes those at once).
constexpr uint32_t kOpenStates = (1u << TCP_ESTABLISHED) | (1u << TCP_FIN_WAIT1) |
                                 (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE_WAIT) |
                                 (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING);
constexpr int kBacklog = 4096;

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

std::optional<TcpEndpoint> EndpointOf(const sockaddr_storage& address) {
  TcpEndpoint endpoint;
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    endpoint.family = AF_INET;
    std::memcpy(endpoint.address.data(), &in.sin_addr, 4);
    endpoint.port = ntohs(in.sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    endpoint.family = AF_INET6;
    std::memcpy(endpoint.address.data(), &in6.sin6_addr, 16);
    endpoint.port = ntohs(in6.sin6_port);
  } else {
    return std::nullopt;
  }
  return Normalized(endpoint);
}

// One throttle per kind of line, so that a flood of one kind cannot hide the others.
LogThrottle& RefusedConnectionLog() {
  static LogThrottle throttle(5, std::chrono::minutes(1));
  return throttle;
}
LogThrottle& AcceptErrorLog() {
  static LogThrottle throttle(5, std::chrono::minutes(1));
  return throttle;
}

}  // namespace

StatusOr<std::unique_ptr<TcpListener>> TcpListener::Bind(const std::string& host_and_port,
                                                         ConnectionLimits limits,
                                                         TrustedLocal trusted_local) {
  const size_t colon = host_and_port.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument("--listen takes ADDRESS:PORT, not '" + host_and_port + "'");
  }
  std::string host = host_and_port.substr(0, colon);
  const std::string port_text = host_and_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &resolved); rc != 0) {
    return InvalidArgument("cannot listen on " + host_and_port + ": " + gai_strerror(rc));
  }
  std::vector<int> fds;
  uint16_t port = 0;
  auto close_all = [&fds] {
    for (int fd : fds) close(fd);
  };
  Status failure;
  for (addrinfo* ai = resolved; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, ai->ai_addr, ai->ai_addrlen);
    if (port != 0) {  // port 0 resolved: the others take the port the first one got
      if (address.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in&>(address).sin_port = htons(port);
      } else {
        reinterpret_cast<sockaddr_in6&>(address).sin6_port = htons(port);
      }
    }
    const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      failure = Unavailable(ErrnoText("cannot listen on " + host_and_port + ": socket"));
      break;
    }
    fds.push_back(fd);
    // SO_REUSEADDR lets a restarted capd bind while old connections sit in TIME_WAIT; no
    // SO_REUSEPORT, so that a second capd on the same address fails instead of sharing it.
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), ai->ai_addrlen) != 0) {
      failure = Unavailable(errno == EADDRINUSE
                                ? "cannot listen on " + host_and_port +
                                      ": address already in use (another capd?)"
                                : ErrnoText("cannot listen on " + host_and_port + ": bind"));
      break;
    }
    if (listen(fd, kBacklog) != 0) {
      failure = Unavailable(ErrnoText("cannot listen on " + host_and_port + ": listen"));
      break;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    if (auto endpoint = EndpointOf(bound)) port = endpoint->port;
  }
  freeaddrinfo(resolved);
  if (failure.ok() && fds.empty()) {
    failure = InvalidArgument("cannot listen on " + host_and_port + ": no address");
  }
  if (!failure.ok()) {
    close_all();
    return failure;
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    close_all();
    return Internal(ErrnoText("eventfd"));
  }
  return std::unique_ptr<TcpListener>(
      new TcpListener(std::move(fds), port, limits, std::move(trusted_local), wake_fd));
}

TcpListener::TcpListener(std::vector<int> listening_fds, uint16_t port, ConnectionLimits limits,
                         TrustedLocal trusted_local, int wake_fd)
    : listening_fds_(std::move(listening_fds)),
      port_(port),
      admission_(limits),
      trusted_local_(std::move(trusted_local)),
      wake_fd_(wake_fd) {}

TcpListener::~TcpListener() {
  Stop();
  for (int fd : listening_fds_) close(fd);
  close(wake_fd_);
}

void TcpListener::Start(HandOff hand_off) {
  hand_off_ = std::move(hand_off);
  thread_ = std::thread([this] { AcceptLoop(); });
}

void TcpListener::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  thread_.join();
}

void TcpListener::AcceptLoop() {
  bool full = false;
  bool logged_full = false;
  while (true) {
    // While full, the listening sockets are not polled (they stay readable and would spin).
    std::vector<pollfd> polled = {{wake_fd_, POLLIN, 0}};
    if (!full) {
      for (int fd : listening_fds_) polled.push_back({fd, POLLIN, 0});
    }
    const int timeout_ms = full ? static_cast<int>(kFullRecheck.count()) : -1;
    if (poll(polled.data(), polled.size(), timeout_ms) < 0) {
      if (errno != EINTR) {  // ENOMEM: try again shortly rather than stop accepting for good
        spdlog::warn("{}; retrying", ErrnoText("poll"));
        std::this_thread::sleep_for(kAcceptRetry);
      }
      continue;
    }
    if (polled[0].revents & POLLIN) return;
    if (full) {
      ReadSocketTableIfStale();
      full = admission_.Exhausted();
      if (full && !logged_full) {
        spdlog::warn(
            "{} connections open (--max-connections and the reserve of allowed local users): "
            "new ones wait until some close",
            admission_.open());
        logged_full = true;
      } else if (!full && logged_full) {
        spdlog::info("{} connections open: accepting again", admission_.open());
        logged_full = false;
      }
      continue;
    }
    for (size_t i = 1; i < polled.size(); ++i) {
      if ((polled[i].revents & (POLLIN | POLLERR)) && !AcceptReady(polled[i].fd)) full = true;
    }
  }
}

bool TcpListener::AcceptReady(int listener_fd) {
  while (true) {
    if (admission_.Exhausted()) {
      ReadSocketTableIfStale();
      if (admission_.Exhausted()) return false;
    }
    const int fd = accept4(listener_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Admit(listener_fd, fd);
      continue;
    }
    switch (errno) {
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        continue;
      case EAGAIN:
        return true;
      default:
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued; try again shortly.
        if (auto held_back = AcceptErrorLog().Admit()) {
          spdlog::warn("{}; retrying in {} ms{}", ErrnoText("cannot accept a connection"),
                       kAcceptRetry.count(), HeldBackNote(*held_back));
        }
        std::this_thread::sleep_for(kAcceptRetry);
        return true;
    }
  }
}

void TcpListener::Admit(int listener_fd, int connection_fd) {
  sockaddr_storage peer_address{}, local_address{};
  socklen_t peer_length = sizeof peer_address, local_length = sizeof local_address;
  struct stat socket_file {};
  std::optional<TcpEndpoint> peer, local;
  if (getpeername(connection_fd, reinterpret_cast<sockaddr*>(&peer_address), &peer_length) == 0 &&
      getsockname(connection_fd, reinterpret_cast<sockaddr*>(&local_address), &local_length) == 0 &&
      fstat(connection_fd, &socket_file) == 0) {
    peer = EndpointOf(peer_address);
    local = EndpointOf(local_address);
  }
  if (!peer || !local) {
    close(connection_fd);  // reset before we looked: nothing to serve
    return;
  }
  // A local client's end of the connection is in this namespace's socket table, with its owner.
  std::string client = RemoteClient(peer->family, peer->address.data());
  bool trusted = false;
  if (auto peer_end = LookupTcpSocket(*peer, *local); peer_end.ok() && peer_end->has_value()) {
    client = LocalClient((*peer_end)->uid);
    trusted = trusted_local_ && trusted_local_((*peer_end)->uid);
  }
  auto verdict = admission_.Judge(client, trusted);
  if (verdict != ConnectionAdmission::Verdict::kAdmit) {
    ReadSocketTableIfStale();
    verdict = admission_.Judge(client, trusted);
  }
  if (verdict != ConnectionAdmission::Verdict::kAdmit) {
    close(connection_fd);
    if (auto held_back = RefusedConnectionLog().Admit()) {
      const bool client_full = verdict == ConnectionAdmission::Verdict::kClientFull;
      spdlog::warn(
          "refused a connection from {} ({}): {}{}", peer->ToString(), client,
          client_full ? std::to_string(admission_.OpenFrom(client)) +
                            " open from it (--max-connections-per-client)"
                      : std::to_string(admission_.open()) + " connections open (--max-connections)",
          HeldBackNote(*held_back));
    }
    return;
  }
  const int one = 1;
  setsockopt(connection_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  admission_.Admitted(socket_file.st_ino, client);
  hand_off_(listener_fd, connection_fd);
}

void TcpListener::ReadSocketTableIfStale() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_table_read_ < kFullRecheck) return;
  last_table_read_ = now;
  auto sockets = DumpTcpSockets(kOpenStates);
  if (!sockets.ok()) {
    spdlog::debug("cannot read the socket table: {}", sockets.status().message());
    return;
  }
  std::unordered_set<uint64_t> open_inodes;
  for (const TcpSocket& socket : *sockets) {
    if (socket.local.port == port_ && socket.inode != 0) open_inodes.insert(socket.inode);
  }
  admission_.Reconcile(open_inodes);
}

}  // namespace capd::agent
