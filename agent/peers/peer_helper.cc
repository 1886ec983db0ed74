#include "agent/peers/peer_helper.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/peers/process_sockets.h"
#include "agent/security/privileges.h"

namespace capd::agent {
namespace {

RelayAnswer Outcome(RelayOutcome outcome) {
  RelayAnswer answer;
  answer.outcome = outcome;
  return answer;
}

}  // namespace

RelayAnswer AnswerRelayQuery(const RelayQuery& query, pid_t agent_pid,
                             const std::string& proc_root) {
  auto sockets = DumpTcpSockets(1u << TCP_ESTABLISHED);
  if (!sockets.ok()) return Outcome(RelayOutcome::kFailed);
  const TcpEndpoint peer = Normalized(query.peer);
  // The agent's end: a socket on its port whose remote end is the peer, held by the agent.
  const auto agent_inodes = ReadSocketInodes(agent_pid, proc_root);
  if (!agent_inodes) return Outcome(RelayOutcome::kNotAgentConnection);
  const TcpSocket* agent_end = nullptr;
  for (const TcpSocket& s : *sockets) {
    if (s.local.port == query.agent_port && s.remote == peer &&
        std::binary_search(agent_inodes->begin(), agent_inodes->end(), s.inode)) {
      agent_end = &s;
      break;
    }
  }
  if (agent_end == nullptr) return Outcome(RelayOutcome::kNotAgentConnection);
  const TcpSocket* peer_end = FindSocket(*sockets, peer, agent_end->local);
  if (peer_end == nullptr) return Outcome(RelayOutcome::kNotLocal);

  RelayAnswer answer;
  answer.uid = peer_end->uid;
  int unreadable = 0;
  const std::vector<SocketOwner> owners =
      FindSocketOwners({peer_end->inode}, unreadable, agent_pid, proc_root,
                       /*first_uid=*/peer_end->uid, /*limit=*/1);
  answer.unreadable_processes = static_cast<uint32_t>(unreadable);
  if (owners.empty()) {
    answer.outcome = RelayOutcome::kOwnerUnknown;
    return answer;
  }
  const SocketOwner& owner = owners.front();
  answer.outcome = RelayOutcome::kFound;
  answer.pid = owner.pid;
  answer.command = owner.command.substr(0, 16);
  for (const TcpSocket& s : *sockets) {
    // The process's connections to the agent are left out of captures by port already.
    if (s.local.port == query.agent_port || s.remote.port == query.agent_port) continue;
    if (!std::binary_search(owner.socket_inodes.begin(), owner.socket_inodes.end(), s.inode)) {
      continue;
    }
    ++answer.total_connections;
    if (answer.connections.size() < kMaxRelayConnections) {
      answer.connections.push_back({s.local, s.remote});
    }
  }
  return answer;
}

void ServeRelayQueries(int fd, pid_t agent_pid) {
  // One byte more than a query: a longer datagram is seen as such (MSG_TRUNC) and refused.
  char buffer[kQuerySize + 1];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    if (n == 0) {
      // An empty datagram also reads as 0 bytes: only a hang-up means the agent is gone.
      pollfd hangup{fd, POLLRDHUP, 0};
      if (poll(&hangup, 1, 0) != 0 && (hangup.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0) {
        return;
      }
    }
    std::optional<RelayQuery> query;
    if (static_cast<size_t>(n) == kQuerySize) query = DecodeQuery({buffer, kQuerySize});
    const RelayAnswer answer =
        query ? AnswerRelayQuery(*query, agent_pid) : Outcome(RelayOutcome::kMalformed);
    const std::string bytes = EncodeAnswer(answer);
    if (send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0 && errno != EINTR) return;
  }
}

namespace {

// In the child, before anything else: descriptors other than stderr and `keep` closed, dies with
// the parent, privileges dropped. Exits on any failure (the parent sees no ready message).
[[noreturn]] void RunChild(int fd, pid_t parent, const std::string& user) {
  BecomeHelper(fd, parent, "capd-peers", user, KeptCapabilities::kPeerLookup);
  uint8_t bits = 0;
  if (HasEffectiveCapability(CAP_SYS_PTRACE)) bits |= kHelperHasPtrace;
  if (HasEffectiveCapability(CAP_DAC_READ_SEARCH)) bits |= kHelperHasDacReadSearch;
  const std::string ready = EncodeReady(bits);
  if (send(3, ready.data(), ready.size(), MSG_NOSIGNAL) < 0) _exit(1);
  ServeRelayQueries(3, parent);
  _exit(0);
}

// Waits for one datagram of at most `size` bytes; false on timeout, EOF or error.
bool ReceiveWithin(int fd, char* buffer, size_t size, std::chrono::milliseconds timeout,
                   ssize_t& received) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    received = recv(fd, buffer, size, MSG_DONTWAIT | MSG_TRUNC);
    if (received < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return received > 0;
  }
}

}  // namespace

StatusOr<std::unique_ptr<PeerHelper>> PeerHelper::Start(const std::string& user) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Internal(std::string("socketpair(AF_UNIX, SOCK_SEQPACKET): ") + std::strerror(errno));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close(pair[0]);
    close(pair[1]);
    return Internal(std::string("fork (peer helper): ") + std::strerror(error));
  }
  if (pid == 0) {
    close(pair[0]);
    RunChild(pair[1], parent, user);
  }
  close(pair[1]);
  char buffer[16];
  ssize_t n = 0;
  std::optional<uint8_t> bits;
  if (ReceiveWithin(pair[0], buffer, sizeof buffer, std::chrono::seconds(1), n)) {
    bits = DecodeReady({buffer, static_cast<size_t>(std::min<ssize_t>(n, sizeof buffer))});
  }
  if (!bits) {
    close(pair[0]);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Internal("the peer helper did not start (see the line before)");
  }
  return std::make_unique<PeerHelper>(pair[0], pid, *bits);
}

PeerHelper::~PeerHelper() {
  if (fd_ >= 0) close(fd_);  // the helper's recv returns 0 and it exits
  if (pid_ > 0) {
    for (int i = 0; i < 100 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) usleep(10000);
    if (kill(pid_, SIGKILL) == 0) waitpid(pid_, nullptr, 0);
  }
}

StatusOr<RelayAnswer> PeerHelper::Ask(const RelayQuery& query, std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (fd_ < 0) return Unavailable("the peer helper is gone");
  // An answer to an earlier query that timed out would be taken for this one's: drop it.
  char stale[kMaxAnswerSize + 1];
  while (recv(fd_, stale, sizeof stale, MSG_DONTWAIT) > 0) {
  }
  const std::string bytes = EncodeQuery(query);
  if (send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    return Unavailable(std::string("the peer helper is gone: ") + std::strerror(errno));
  }
  char buffer[kMaxAnswerSize + 1];
  ssize_t n = 0;
  if (!ReceiveWithin(fd_, buffer, sizeof buffer, timeout, n)) {
    return Unavailable("the peer helper did not answer within " + std::to_string(timeout.count()) +
                       " ms");
  }
  auto answer = static_cast<size_t>(n) <= kMaxAnswerSize
                    ? DecodeAnswer({buffer, static_cast<size_t>(n)})
                    : std::nullopt;
  if (!answer) return Internal("the peer helper's answer is malformed");
  return *answer;
}

bool PeerHelper::CanReadEveryProcess() const {
  return capability_bits_ == (kHelperHasPtrace | kHelperHasDacReadSearch);
}

std::string PeerHelper::Describe() const {
  std::string has;
  if (capability_bits_ & kHelperHasPtrace) has = "CAP_SYS_PTRACE";
  if (capability_bits_ & kHelperHasDacReadSearch) {
    has += (has.empty() ? "" : " and ") + std::string("CAP_DAC_READ_SEARCH");
  }
  return "pid " + std::to_string(pid_) + ", " + (has.empty() ? "no capabilities" : has);
}

}  // namespace capd::agent
