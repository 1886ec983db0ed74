#include "client/transport/agent_address.h"

#include <charconv>

namespace capd::client {
namespace {

bool ValidPort(std::string_view port) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  return error == std::errc() && end == port.data() + port.size() && value > 0 && value < 65536;
}

}  // namespace

StatusOr<AgentAddress> ParseAgentAddress(std::string_view text) {
  AgentAddress address;
  address.text = std::string(text);
  std::string_view rest = text;
  auto bad = [&](const std::string& why) {
    return InvalidArgument("agent address '" + address.text + "': " + why +
                           " (expected HOST:PORT[/IFACE], ssh://[user@]host[/IFACE] or "
                           "ssm://i-xxxx[/IFACE])");
  };
  // Any other scheme (http://, grpc://, tcp://) would otherwise read as a host named "http".
  if (const size_t scheme = rest.find("://"); scheme != std::string_view::npos &&
                                              !rest.starts_with("ssh://") &&
                                              !rest.starts_with("ssm://")) {
    return InvalidArgument("agent address '" + address.text + "': the scheme " +
                           std::string(rest.substr(0, scheme)) +
                           ":// is not supported; give HOST:PORT (gRPC, TLS with --tls-ca), "
                           "[IPv6]:PORT, ssh://[user@]host[:port] or ssm://i-xxxx, each with an "
                           "optional /IFACE");
  }
  if (rest.starts_with("ssh://")) {
    address.transport = AgentAddress::Transport::kSsh;
    rest.remove_prefix(6);
  } else if (rest.starts_with("ssm://")) {
    address.transport = AgentAddress::Transport::kSsm;
    rest.remove_prefix(6);
  }
  // The interface follows the first '/' after the host part (IPv6 literals are bracketed).
  const size_t slash = rest.find('/', rest.starts_with("[") ? rest.find(']') : 0);
  if (slash != std::string_view::npos) {
    address.interface = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
    if (address.interface.empty()) return bad("empty interface after '/'");
  }
  if (rest.empty()) return bad("no host");
  address.target = std::string(rest);
  if (address.transport != AgentAddress::Transport::kDirect) return address;

  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  const std::string_view host = rest.substr(0, colon);
  if (host.empty()) return bad("no host");
  if (host.find(':') != std::string_view::npos && !(host.starts_with("[") && host.ends_with("]"))) {
    return bad("write IPv6 addresses in brackets, e.g. [::1]:50051");
  }
  if (!ValidPort(rest.substr(colon + 1))) return bad("port must be 1..65535");
  return address;
}

SshDestination ParseSshTarget(std::string_view target) {
  const size_t at = target.rfind('@');
  const std::string user =
      at == std::string_view::npos ? "" : std::string(target.substr(0, at + 1));
  std::string_view host = at == std::string_view::npos ? target : target.substr(at + 1);
  std::string port;
  if (host.starts_with("[")) {
    const size_t close = host.find(']');
    if (close != std::string_view::npos) {
      if (host.substr(close + 1).starts_with(":")) port = std::string(host.substr(close + 2));
      host = host.substr(1, close - 1);
    }
  } else if (const size_t colon = host.find(':');
             colon != std::string_view::npos &&
             host.find(':', colon + 1) == std::string_view::npos) {
    port = std::string(host.substr(colon + 1));  // one colon: host:port; more: a bare IPv6 address
    host = host.substr(0, colon);
  }
  return {user + std::string(host), port};
}

}  // namespace capd::client
