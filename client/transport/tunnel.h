#pragma once
// Reaching an agent that listens on an instance's loopback: a local port forward through the
// system's ssh (ssh://[user@]host[:port]) or AWS Systems Manager (ssm://i-xxxx), started before
// the stream and torn down after it.
//
// The forward runs as a child process with the user's own configuration (~/.ssh/config, keys,
// known_hosts; the AWS CLI's region and profile environment); capctl never weakens host-key
// checking. Open() waits until the local end accepts connections, or fails with one line taken
// from the child's own error output.

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "client/transport/agent_address.h"
#include "common/status.h"

namespace capd::client {

class Tunnel {
 public:
  // remote_port: the agent's port on the instance's loopback (capd --listen, default 50051).
  // kUnavailable with the reason when the forward cannot be set up within `timeout`;
  // kFailedPrecondition when a needed program (ssh, aws, session-manager-plugin) is missing.
  static StatusOr<std::unique_ptr<Tunnel>> Open(const AgentAddress& agent, uint16_t remote_port,
                                                std::chrono::seconds timeout);
  ~Tunnel();  // stops the child (SIGTERM, then SIGKILL after a second) and reaps it
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // "127.0.0.1:PORT": where to connect instead of the agent's own address.
  const std::string& local_target() const { return local_target_; }

 private:
  Tunnel(pid_t child, std::string local_target, std::string log_path)
      : child_(child), local_target_(std::move(local_target)), log_path_(std::move(log_path)) {}
  pid_t child_;
  std::string local_target_;
  std::string log_path_;  // the child's stdout/stderr, removed on destruction
};

// True if `program` is an executable file in one of $PATH's folders.
bool OnPath(const std::string& program);

}  // namespace capd::client
