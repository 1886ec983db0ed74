#include "client/transport/tunnel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "client/transport/child_process.h"

namespace capd::client {
namespace {

// A free local port, found by letting the kernel pick one. Another process could take it before
// the child binds it; ssh's ExitOnForwardFailure then turns that into a clear error.
StatusOr<uint16_t> PickLocalPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Internal(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return Internal(std::string("bind(127.0.0.1:0): ") + std::strerror(errno));
  }
  close(fd);
  return ntohs(address.sin_port);
}

bool Accepts(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return ok;
}

// The last non-empty line the child wrote: ssh and aws put their reason there.
std::string LastLine(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) last = line;
  }
  return last;
}

// ssh://[user@]host[:port] -> ssh arguments (the port is ssh's, not the agent's).
std::vector<std::string> SshCommand(const std::string& target, uint16_t local_port,
                                    uint16_t remote_port) {
  const auto [destination, port] = ParseSshTarget(target);
  // $CAPCTL_SSH_COMMAND replaces "ssh" (words split on spaces), like git's GIT_SSH_COMMAND:
  // e.g. "ssh -F ~/.ssh/work_config" or a wrapper.
  std::vector<std::string> argv;
  const char* custom = std::getenv("CAPCTL_SSH_COMMAND");
  std::string words = custom != nullptr && *custom != '\0' ? custom : "ssh";
  for (size_t start = 0; start < words.size();) {
    const size_t end = std::min(words.find(' ', start), words.size());
    if (end > start) argv.push_back(words.substr(start, end - start));
    start = end + 1;
  }
  argv.insert(
      argv.end(),
      {"-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15", "-L",
       "127.0.0.1:" + std::to_string(local_port) + ":127.0.0.1:" + std::to_string(remote_port)});
  // Without a terminal ssh cannot ask for a password or a new host key: fail fast instead.
  if (!isatty(STDIN_FILENO)) argv.insert(argv.end(), {"-o", "BatchMode=yes"});
  if (!port.empty()) argv.insert(argv.end(), {"-p", port});
  argv.push_back("--");
  argv.push_back(destination);
  return argv;
}

std::vector<std::string> SsmCommand(const std::string& instance, uint16_t local_port,
                                    uint16_t remote_port) {
  return {"aws",
          "ssm",
          "start-session",
          "--target",
          instance,
          "--document-name",
          "AWS-StartPortForwardingSession",
          "--parameters",
          "{\"portNumber\":[\"" + std::to_string(remote_port) + "\"],\"localPortNumber\":[\"" +
              std::to_string(local_port) + "\"]}"};
}

}  // namespace

bool OnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string folders = path;
  size_t start = 0;
  while (start <= folders.size()) {
    const size_t end = std::min(folders.find(':', start), folders.size());
    const std::string candidate = folders.substr(start, end - start) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

StatusOr<std::unique_ptr<Tunnel>> Tunnel::Open(const AgentAddress& agent, uint16_t remote_port,
                                               std::chrono::seconds timeout) {
  const bool ssh = agent.transport == AgentAddress::Transport::kSsh;
  if (ssh && std::getenv("CAPCTL_SSH_COMMAND") == nullptr && !OnPath("ssh")) {
    return Status(StatusCode::kFailedPrecondition, "ssh:// needs the ssh client on PATH");
  }
  if (!ssh) {
    if (agent.target.rfind("i-", 0) != 0 && agent.target.rfind("mi-", 0) != 0) {
      return InvalidArgument("ssm://" + agent.target + ": expected an instance id (i-...)");
    }
    if (!OnPath("aws")) {
      return Status(StatusCode::kFailedPrecondition, "ssm:// needs the AWS CLI (aws) on PATH");
    }
    if (!OnPath("session-manager-plugin")) {
      return Status(StatusCode::kFailedPrecondition,
                    "ssm:// needs the Session Manager plugin (session-manager-plugin) on PATH");
    }
  }
  auto local_port = PickLocalPort();
  if (!local_port.ok()) return local_port.status();
  char log_template[] = "/tmp/capctl-tunnel-XXXXXX";
  const int log_fd = mkstemp(log_template);
  if (log_fd < 0) return Internal(std::string("mkstemp: ") + std::strerror(errno));
  close(log_fd);
  const std::string log_path = log_template;
  const std::vector<std::string> argv =
      ssh ? SshCommand(agent.target, local_port.value(), remote_port)
          : SsmCommand(agent.target, local_port.value(), remote_port);
  auto pid = SpawnChild(argv, log_path);
  if (!pid.ok()) {
    unlink(log_path.c_str());
    return pid.status();
  }
  std::unique_ptr<Tunnel> tunnel(
      new Tunnel(pid.value(), "127.0.0.1:" + std::to_string(local_port.value()), log_path));
  const std::string via = ssh ? "ssh to " + agent.target : "SSM session to " + agent.target;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Accepts(local_port.value())) {
    int status = 0;
    if (waitpid(tunnel->child_, &status, WNOHANG) == tunnel->child_) {
      tunnel->child_ = 0;  // reaped
      const std::string reason = LastLine(log_path);
      return Unavailable(via + " failed" + (reason.empty() ? "" : ": " + reason));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Unavailable(via + ": the port forward did not come up within " +
                         std::to_string(timeout.count()) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return tunnel;
}

Tunnel::~Tunnel() {
  if (child_ > 0) {
    kill(child_, SIGTERM);
    for (int i = 0; i < 20; ++i) {
      if (waitpid(child_, nullptr, WNOHANG) == child_) {
        child_ = 0;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (child_ > 0) {
      kill(child_, SIGKILL);
      waitpid(child_, nullptr, 0);
    }
  }
  unlink(log_path_.c_str());
}

}  // namespace capd::client
