#include "agent/peers/relay_protocol.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "common/printable.h"

namespace capd::agent {
namespace {

constexpr size_t kEndpointSize = 19;
constexpr size_t kAnswerHeaderSize = 39;

void PutU16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}
void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}
void PutEndpoint(std::string& out, const TcpEndpoint& e) {
  out += static_cast<char>(e.family == AF_INET6 ? AF_INET6 : AF_INET);
  out.append(reinterpret_cast<const char*>(e.address.data()), e.address.size());
  PutU16(out, e.port);
}

// Reads from a view that has been checked to be long enough.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  uint8_t U8() { return static_cast<uint8_t>(bytes_[at_++]); }
  uint16_t U16() {
    const uint16_t hi = U8();
    return static_cast<uint16_t>((hi << 8) | U8());
  }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | U8();
    return v;
  }
  std::string_view Take(size_t n) {
    const std::string_view part = bytes_.substr(at_, n);
    at_ += n;
    return part;
  }
  // A valid endpoint: a known family, IPv4's unused bytes zero, a port.
  std::optional<TcpEndpoint> Endpoint() {
    TcpEndpoint e;
    e.family = U8();
    const std::string_view address = Take(16);
    std::memcpy(e.address.data(), address.data(), 16);
    e.port = U16();
    if (e.family != AF_INET && e.family != AF_INET6) return std::nullopt;
    if (e.family == AF_INET &&
        std::any_of(e.address.begin() + 4, e.address.end(), [](uint8_t b) { return b != 0; })) {
      return std::nullopt;
    }
    if (e.port == 0) return std::nullopt;
    return e;
  }

 private:
  std::string_view bytes_;
  size_t at_ = 0;
};

}  // namespace

std::string EncodeQuery(const RelayQuery& query) {
  std::string out = "CPQ1";
  PutEndpoint(out, query.peer);
  PutU16(out, query.agent_port);
  return out;
}

std::optional<RelayQuery> DecodeQuery(std::string_view bytes) {
  if (bytes.size() != kQuerySize || bytes.substr(0, 4) != "CPQ1") return std::nullopt;
  Reader in(bytes.substr(4));
  RelayQuery query;
  auto peer = in.Endpoint();
  if (!peer) return std::nullopt;
  query.peer = *peer;
  query.agent_port = in.U16();
  if (query.agent_port == 0) return std::nullopt;
  return query;
}

std::string EncodeAnswer(const RelayAnswer& answer) {
  std::string out = "CPA1";
  out += static_cast<char>(answer.outcome);
  PutU32(out, answer.uid);
  PutU32(out, static_cast<uint32_t>(answer.pid));
  const size_t command_length = std::min<size_t>(answer.command.size(), 16);
  out += static_cast<char>(command_length);
  std::string command = answer.command.substr(0, command_length);
  command.resize(16, '\0');
  out += command;
  PutU32(out, answer.total_connections);
  PutU32(out, answer.unreadable_processes);
  const size_t count = std::min(answer.connections.size(), kMaxRelayConnections);
  out += static_cast<char>(count);
  for (size_t i = 0; i < count; ++i) {
    PutEndpoint(out, answer.connections[i].local);
    PutEndpoint(out, answer.connections[i].remote);
  }
  return out;
}

std::optional<RelayAnswer> DecodeAnswer(std::string_view bytes) {
  if (bytes.size() < kAnswerHeaderSize || bytes.substr(0, 4) != "CPA1") return std::nullopt;
  Reader in(bytes.substr(4));
  RelayAnswer answer;
  const uint8_t outcome = in.U8();
  if (outcome < static_cast<uint8_t>(RelayOutcome::kFound) ||
      outcome > static_cast<uint8_t>(RelayOutcome::kFailed)) {
    return std::nullopt;
  }
  answer.outcome = static_cast<RelayOutcome>(outcome);
  answer.uid = in.U32();
  answer.pid = static_cast<pid_t>(in.U32());
  const uint8_t command_length = in.U8();
  if (command_length > 16) return std::nullopt;
  const std::string_view command = in.Take(16);
  // Its unused bytes are zero, as EncodeAnswer writes them: no two byte strings mean one answer.
  if (command.find_first_not_of('\0', command_length) != command.npos) return std::nullopt;
  answer.command = std::string(command.substr(0, command_length));
  answer.total_connections = in.U32();
  answer.unreadable_processes = in.U32();
  const uint8_t count = in.U8();
  if (count > kMaxRelayConnections || count > answer.total_connections ||
      bytes.size() != kAnswerHeaderSize + kEndpointSize * 2 * count) {
    return std::nullopt;
  }
  for (uint8_t i = 0; i < count; ++i) {
    auto local = in.Endpoint();
    auto remote = in.Endpoint();
    if (!local || !remote) return std::nullopt;
    answer.connections.push_back({*local, *remote});
  }
  return answer;
}

std::string EncodeReady(uint8_t capability_bits) {
  std::string out = "CPR1";
  out += static_cast<char>(capability_bits);
  return out;
}

std::optional<uint8_t> DecodeReady(std::string_view bytes) {
  if (bytes.size() != 5 || bytes.substr(0, 4) != "CPR1") return std::nullopt;
  const auto bits = static_cast<uint8_t>(bytes[4]);
  if ((bits & ~(kHelperHasPtrace | kHelperHasDacReadSearch)) != 0) return std::nullopt;
  return bits;
}

std::string EscapeProcessName(std::string_view name) {
  return PrintableText(name, /*escape_backslash=*/true);
}

}  // namespace capd::agent
