#pragma once
// A real OpenSSH server (Debian's openssh-server) for one test, and the client configuration
// that reaches it with host-key checking strict:
//
//   <dir>/ssh/host_key, client_key       ed25519 keys made with ssh-keygen
//   <dir>/ssh/sshd_config                listens on <address>:22, root by key only, forwarding on
//   <dir>/ssh/ssh_config                 for `ssh -F`: that key, known_hosts holding the host's
//   <dir>/ssh/known_hosts                key, StrictHostKeyChecking yes, BatchMode yes
//
// The server runs as `sshd -D -e -f <sshd_config>` (SshdCommand) inside the test's namespace and
// prints "Server listening on <address> port 22." on stderr when it accepts connections.
// capctl reaches it with CAPCTL_SSH_COMMAND="ssh -F <ssh_config>".

#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::test {

struct TestSshd {
  std::string address;
  std::filesystem::path sshd_config;
  std::filesystem::path client_config;
};

// Writes the keys and configurations under `dir`/ssh and checks the server's configuration
// (`sshd -t`). kFailedPrecondition when sshd, ssh or ssh-keygen is not installed (tests skip);
// kInternal with the failing command's output otherwise.
StatusOr<TestSshd> MakeTestSshd(const std::filesystem::path& dir, const std::string& address);

// {"/usr/sbin/sshd", "-D", "-e", "-f", <sshd_config>}: in the foreground, logging to stderr.
std::vector<std::string> SshdCommand(const TestSshd& sshd);

// The line sshd prints once it listens.
std::string SshdReadyLine(const TestSshd& sshd);

}  // namespace capd::test
