#include "tests/support/test_sshd.h"

#include <unistd.h>

#include <fstream>
#include <system_error>

#include "tests/support/subprocess.h"

namespace capd::test {
namespace {

constexpr char kSshd[] = "/usr/sbin/sshd";

Status WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  out.close();
  return out ? Status::Ok() : Internal("cannot write " + path.string());
}

bool OnPath(const std::string& program) {
  return RunCommand({"sh", "-c", "command -v " + program}).status.Exited(0);
}

}  // namespace

StatusOr<TestSshd> MakeTestSshd(const std::filesystem::path& dir, const std::string& address) {
  if (::access(kSshd, X_OK) != 0 || !OnPath("ssh") || !OnPath("ssh-keygen")) {
    return Status(StatusCode::kFailedPrecondition,
                  "needs OpenSSH's sshd, ssh and ssh-keygen (apt-get install openssh-server "
                  "openssh-client)");
  }
  const std::filesystem::path ssh = dir / "ssh";
  std::error_code error;
  std::filesystem::create_directories(ssh, error);
  // sshd's privilege separation directory (Debian creates it in its service unit).
  std::filesystem::create_directories("/run/sshd", error);
  if (error) return Internal("mkdir /run/sshd: " + error.message());

  const auto host_key = ssh / "host_key";
  const auto client_key = ssh / "client_key";
  CAPD_RETURN_IF_ERROR(RunToSuccess({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                     "capd test host", "-f", host_key.string()}));
  CAPD_RETURN_IF_ERROR(RunToSuccess({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                     "capd test client", "-f", client_key.string()}));
  const std::string host_public = ReadFileToString(host_key.string() + ".pub");
  const std::string client_public = ReadFileToString(client_key.string() + ".pub");
  if (host_public.empty() || client_public.empty()) return Internal("ssh-keygen wrote no key");

  TestSshd sshd;
  sshd.address = address;
  sshd.sshd_config = ssh / "sshd_config";
  sshd.client_config = ssh / "ssh_config";
  const auto known_hosts = ssh / "known_hosts";
  const auto authorized_keys = ssh / "authorized_keys";
  CAPD_RETURN_IF_ERROR(WriteFile(authorized_keys, client_public));
  CAPD_RETURN_IF_ERROR(WriteFile(known_hosts, address + " " + host_public));
  // StrictModes no: the test's directory is not owned and moded as sshd wants a home to be.
  CAPD_RETURN_IF_ERROR(WriteFile(sshd.sshd_config,
                                 "Port 22\n"
                                 "ListenAddress " +
                                     address +
                                     "\n"
                                     "HostKey " +
                                     host_key.string() +
                                     "\n"
                                     "AuthorizedKeysFile " +
                                     authorized_keys.string() +
                                     "\n"
                                     "PermitRootLogin prohibit-password\n"
                                     "PasswordAuthentication no\n"
                                     "KbdInteractiveAuthentication no\n"
                                     "StrictModes no\n"
                                     "UsePAM no\n"
                                     "PidFile " +
                                     (ssh / "sshd.pid").string() +
                                     "\n"
                                     "AllowTcpForwarding yes\n"));
  CAPD_RETURN_IF_ERROR(WriteFile(sshd.client_config, "Host " + address +
                                                         "\n"
                                                         "  User root\n"
                                                         "  IdentityFile " +
                                                         client_key.string() +
                                                         "\n"
                                                         "  IdentitiesOnly yes\n"
                                                         "  UserKnownHostsFile " +
                                                         known_hosts.string() +
                                                         "\n"
                                                         "  GlobalKnownHostsFile /dev/null\n"
                                                         "  StrictHostKeyChecking yes\n"
                                                         "  BatchMode yes\n"));
  CAPD_RETURN_IF_ERROR(RunToSuccess({kSshd, "-t", "-f", sshd.sshd_config.string()}));
  return sshd;
}

std::vector<std::string> SshdCommand(const TestSshd& sshd) {
  return {kSshd, "-D", "-e", "-f", sshd.sshd_config.string()};
}

std::string SshdReadyLine(const TestSshd& sshd) {
  return "Server listening on " + sshd.address + " port 22.";
}

}  // namespace capd::test
