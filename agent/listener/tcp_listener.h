#pragma once
// capd's listening sockets and its accept loop, in front of gRPC. gRPC (1.51) accepts on its own
// listeners with no limit, and the first accept4 that fails with EMFILE ends its accept loop for
// good while the process stays up; so capd accepts itself, admits connections by
// ConnectionAdmission's rules, and hands each admitted one to gRPC's external-connection
// acceptor (which does TLS and HTTP/2 on it as on its own).
//
// A connection over its client's limit, or over max_connections when its client is not an allowed
// local user, is accepted and closed at once, so that it does not hold the kernel's queue for the
// others (who may be allowed users, for whom a reserve is kept). Only when the reserve is taken
// too do new connections wait in the kernel's queue (they cost no descriptor there) while the
// loop re-reads the socket table every kFullRecheck to see which closed. An accept that fails
// for want of descriptors or memory is retried kAcceptRetry later. Repeated refusals are logged a
// few times a minute.
//
// Contract: Bind, then Start once the gRPC server has started (its acceptor drops connections
// before); Stop (or the destructor) before the server shuts down.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/listener/connection_admission.h"
#include "common/status.h"

namespace capd::agent {

class TcpListener {
 public:
  static constexpr std::chrono::milliseconds kFullRecheck{200};
  static constexpr std::chrono::milliseconds kAcceptRetry{100};

  // Whether a local uid is allowed to capture (LocalAccessPolicy): such clients may use the
  // reserve. Null: nobody may.
  using TrustedLocal = std::function<bool(uid_t)>;

  // Binds and listens on every address HOST resolves to ("127.0.0.1:50051", "[::]:0",
  // "localhost:50051"); port 0 picks one port for all of them.
  static StatusOr<std::unique_ptr<TcpListener>> Bind(const std::string& host_and_port,
                                                     ConnectionLimits limits,
                                                     TrustedLocal trusted_local = nullptr);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  uint16_t port() const { return port_; }

  // Takes ownership of `connection_fd` (non-blocking, close-on-exec, TCP_NODELAY).
  using HandOff = std::function<void(int listener_fd, int connection_fd)>;
  void Start(HandOff hand_off);
  void Stop();

 private:
  TcpListener(std::vector<int> listening_fds, uint16_t port, ConnectionLimits limits,
              TrustedLocal trusted_local, int wake_fd);
  void AcceptLoop();
  // Accepts what waits on `listener_fd` while admission allows; false when capd is full.
  bool AcceptReady(int listener_fd);
  void Admit(int listener_fd, int connection_fd);
  // Forgets the admitted connections no longer in the socket table, reading it at most once
  // per kFullRecheck (a dump of a busy host's table is milliseconds).
  void ReadSocketTableIfStale();

  const std::vector<int> listening_fds_;
  const uint16_t port_;
  ConnectionAdmission admission_;
  const TrustedLocal trusted_local_;
  const int wake_fd_;  // eventfd: Stop() wakes the loop
  HandOff hand_off_;
  std::chrono::steady_clock::time_point last_table_read_{};
  std::thread thread_;
};

}  // namespace capd::agent
