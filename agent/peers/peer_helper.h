#pragma once
// The peer helper: a small process, forked from capd before it drops privileges, that answers
// one question about a connection to capd: which local process holds its other end, and which
// other TCP connections that process has (relay_protocol.h).
//
// Why a process of its own: finding a socket's process means reading /proc/PID/fd of processes
// of other users (sshd's session process runs as the SSH user, the SSM session worker and socat
// as root), which needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH. The process that parses network
// input (gRPC, packets) must not hold those, so, as OpenSSH's privilege-separation monitor and
// tcpdump -Z do, the privileges live in a process that parses only fixed-size queries from its
// parent over a socket pair. It keeps only those two capabilities (none other, no_new_privs),
// runs as capd's --user, dies with its parent (PR_SET_PDEATHSIG) and refuses any query that does
// not name a connection capd itself holds (the parent's /proc/PID/fd is checked each time).
//
// Thread-safety: PeerHelper::Ask may be called from any thread; queries are answered one at a
// time.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "agent/peers/relay_protocol.h"
#include "common/status.h"

namespace capd::agent {

// The helper's side, a pure function of the query and the system's state (no fork), so tests
// can ask it directly: `agent_pid` is the process whose connections may be asked about.
RelayAnswer AnswerRelayQuery(const RelayQuery& query, pid_t agent_pid,
                             const std::string& proc_root = "/proc");

// The helper's loop: answers each datagram on `fd` until the other end closes it. A datagram
// that is not a well-formed query (wrong size, truncated, unknown magic or family) is answered
// with kMalformed. Returns when the peer is gone.
void ServeRelayQueries(int fd, pid_t agent_pid);

class PeerHelper {
 public:
  // Forks the helper. Call before any thread starts and before the caller drops its own
  // privileges: the child keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH of what the caller has,
  // switches to `user` ("" stays) and closes every other descriptor. Waits for its ready
  // message (at most a second).
  static StatusOr<std::unique_ptr<PeerHelper>> Start(const std::string& user);
  // Wraps an already connected socket (tests: a thread serving the other end).
  PeerHelper(int fd, pid_t pid, uint8_t capability_bits)
      : fd_(fd), pid_(pid), capability_bits_(capability_bits) {}
  ~PeerHelper();
  PeerHelper(const PeerHelper&) = delete;
  PeerHelper& operator=(const PeerHelper&) = delete;

  // One query, answered within `timeout`; kUnavailable when the helper is gone or silent.
  StatusOr<RelayAnswer> Ask(const RelayQuery& query,
                            std::chrono::milliseconds timeout = std::chrono::seconds(2));

  pid_t pid() const { return pid_; }
  // Whether it can read every process (both capabilities), and what it lacks if not.
  bool CanReadEveryProcess() const;
  std::string Describe() const;  // "pid 123, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"

 private:
  std::mutex mu_;
  int fd_;
  const pid_t pid_;
  const uint8_t capability_bits_;
};

}  // namespace capd::agent
