#pragma once
// The peer helper's one question and its answer, as fixed-layout bytes (one datagram each on a
// SOCK_SEQPACKET socket pair). The helper holds privileges the network-facing capd does not, so
// its side parses nothing but this: a query is exactly kQuerySize bytes with a known magic, a
// valid address family and non-zero ports, or it is refused.
//
// Query:  "CPQ1" | family u8 | address 16 | port u16 BE | agent port u16 BE          (25 bytes)
// Answer: "CPA1" | outcome u8 | uid u32 | pid u32 | command length u8 | command 16 |
//         total connections u32 | unreadable processes u32 | count u8 |
//         count x (local endpoint 19 | remote endpoint 19)                  (39 + 38 x count bytes)
// Ready:  "CPR1" | capability bits u8 (1: CAP_SYS_PTRACE, 2: CAP_DAC_READ_SEARCH)      (5 bytes)
// Integers are big-endian; an endpoint is family u8 | address 16 | port u16.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/peers/socket_table.h"

namespace capd::agent {

// A relay (sshd's session process, the SSM session worker, socat) has one connection that
// carries a stream, or a few; more than this is not a relay, and none of them is trusted.
constexpr size_t kMaxRelayConnections = 4;

// "Who is the local process on the other end of capd's connection from `peer`, and which other
// TCP connections does it have?"
struct RelayQuery {
  TcpEndpoint peer;         // the client's end, as gRPC reports it
  uint16_t agent_port = 0;  // capd's listening port, the connection's other end
  bool operator==(const RelayQuery&) const = default;
};

enum class RelayOutcome : uint8_t {
  kFound = 1,               // pid, uid, command and the process's other connections
  kNotLocal = 2,            // no socket of this network namespace is the peer
  kNotAgentConnection = 3,  // refused: capd holds no connection from that peer on that port
  kOwnerUnknown = 4,        // the peer socket exists, no process the helper can read holds it
  kMalformed = 5,           // refused: not a well-formed query
  kFailed = 6,              // the helper could not read the socket table
};

struct RelayConnection {
  TcpEndpoint local;
  TcpEndpoint remote;
  bool operator==(const RelayConnection&) const = default;
};

struct RelayAnswer {
  RelayOutcome outcome = RelayOutcome::kFailed;
  uid_t uid = 0;                             // the peer socket's uid (kFound, kOwnerUnknown)
  pid_t pid = 0;                             // the process holding it (kFound)
  std::string command;                       // its /proc/PID/comm, raw, at most 16 bytes
  uint32_t total_connections = 0;            // its TCP connections other than to capd's port
  uint32_t unreadable_processes = 0;         // processes the helper could not examine
  std::vector<RelayConnection> connections;  // the first kMaxRelayConnections of them
  bool operator==(const RelayAnswer&) const = default;
};

constexpr size_t kQuerySize = 25;
constexpr size_t kMaxAnswerSize = 39 + 38 * kMaxRelayConnections;
constexpr uint8_t kHelperHasPtrace = 1;
constexpr uint8_t kHelperHasDacReadSearch = 2;

std::string EncodeQuery(const RelayQuery& query);
// nullopt unless `bytes` is exactly a well-formed query.
std::optional<RelayQuery> DecodeQuery(std::string_view bytes);

// Connections beyond kMaxRelayConnections and a command beyond 16 bytes are cut.
std::string EncodeAnswer(const RelayAnswer& answer);
std::optional<RelayAnswer> DecodeAnswer(std::string_view bytes);

std::string EncodeReady(uint8_t capability_bits);
std::optional<uint8_t> DecodeReady(std::string_view bytes);

// A process name as it may be shown on a terminal or in a log: printable ASCII kept, everything
// else (control characters, escapes, bytes >= 0x7f) as \xNN, and a backslash as \\.
std::string EscapeProcessName(std::string_view name);

}  // namespace capd::agent
