#pragma once
// Agent addresses as users write them: HOST:PORT[/IFACE], [IPv6]:PORT[/IFACE],
// ssh://[user@]host[:port][/IFACE] and ssm://i-xxxx[/IFACE] (the last two are transports).

#include <string>
#include <string_view>

#include "common/status.h"

namespace capd::client {

struct AgentAddress {
  enum class Transport { kDirect, kSsh, kSsm };
  Transport transport = Transport::kDirect;
  std::string target;     // gRPC target for kDirect ("127.0.0.1:50051"), else the ssh/ssm host
  std::string interface;  // empty: the request names none (the agent's default interface)
  std::string text;       // as given, for messages
  // An instance of a selection (client/transport/fleet_selection.h): "i-0abc (web-1)", the name
  // its interfaces get in the capture ("i-0abc (web-1):ens5") instead of the agent's own. Empty
  // for an agent the user named.
  std::string label;
};

constexpr std::string_view kDefaultAgent = "127.0.0.1:50051";

// kInvalidArgument with a message naming the address when it cannot be parsed.
StatusOr<AgentAddress> ParseAgentAddress(std::string_view text);

// An ssh:// target, "[user@]host[:port]", as ssh takes it: the destination "[user@]host" with an
// IPv6 host unbracketed ("[::1]:2222" -> "::1", port "2222"; a bare "::1" has no port), and
// ssh's port ("" for ssh's own default).
struct SshDestination {
  std::string destination;
  std::string port;
};
SshDestination ParseSshTarget(std::string_view target);

}  // namespace capd::client
