#include "agent/peers/carrier_registry.h"

#include <algorithm>
#include <tuple>

namespace capd::agent {
namespace {

std::string ConnectionExpression(const CarrierConnection& c) {
  const std::string a = c.local.AddressText(), b = c.remote.AddressText();
  return "(host " + a + " and host " + b + " and tcp port " + std::to_string(c.local.port) +
         " and tcp port " + std::to_string(c.remote.port) + ")";
}

auto Key(const CarrierConnection& c) {
  return std::tie(c.local.family, c.local.address, c.local.port, c.remote.family, c.remote.address,
                  c.remote.port);
}

std::string Process(const RelayAnswer& answer) {
  return EscapeProcessName(answer.command) + "[" + std::to_string(answer.pid) + "]";
}

constexpr char kNotExcluded[] =
    "its connections are NOT left out of captures of this host, so a capture of the interface "
    "they use holds the traffic that carries the capture itself";

}  // namespace

std::string CarrierConnection::Describe() const {
  return EscapeProcessName(command) + "[" + std::to_string(pid) + "] " + local.ToString() +
         " <-> " + remote.ToString();
}

CarrierRegistry::Registration& CarrierRegistry::Registration::operator=(
    Registration&& other) noexcept {
  if (this != &other) {
    Release();
    registry_ = std::move(other.registry_);
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

void CarrierRegistry::Registration::Release() {
  if (registry_ && id_ != 0) registry_->Remove(id_);
  registry_.reset();
  id_ = 0;
}

CarrierRegistry::Registration CarrierRegistry::Add(std::vector<CarrierConnection> connections) {
  if (connections.empty()) return {};
  std::lock_guard lock(mu_);
  const uint64_t id = next_id_++;
  by_stream_[id] = std::move(connections);
  PublishLocked();
  return Registration(shared_from_this(), id);
}

void CarrierRegistry::Remove(uint64_t id) {
  std::lock_guard lock(mu_);
  if (by_stream_.erase(id) != 0) PublishLocked();
}

void CarrierRegistry::PublishLocked() {
  auto next = std::make_shared<CarrierSnapshot>();
  for (const auto& [id, connections] : by_stream_) {
    next->connections.insert(next->connections.end(), connections.begin(), connections.end());
  }
  std::sort(next->connections.begin(), next->connections.end(),
            [](const CarrierConnection& x, const CarrierConnection& y) { return Key(x) < Key(y); });
  next->connections.erase(std::unique(next->connections.begin(), next->connections.end(),
                                      [](const CarrierConnection& x, const CarrierConnection& y) {
                                        return Key(x) == Key(y);
                                      }),
                          next->connections.end());
  const bool same =
      next->connections.size() == snapshot_->connections.size() &&
      std::equal(
          next->connections.begin(), next->connections.end(), snapshot_->connections.begin(),
          [](const CarrierConnection& x, const CarrierConnection& y) { return Key(x) == Key(y); });
  if (same) return;  // e.g. a second stream through the same SSH connection
  for (const CarrierConnection& c : next->connections) {
    if (!next->expression.empty()) next->expression += " or ";
    next->expression += ConnectionExpression(c);
  }
  next->generation = snapshot_->generation + 1;
  snapshot_ = std::move(next);
  generation_.store(snapshot_->generation, std::memory_order_release);
}

std::shared_ptr<const CarrierSnapshot> CarrierRegistry::Snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

RelayVerdict JudgeRelay(const StatusOr<RelayAnswer>& asked) {
  RelayVerdict verdict;
  if (!asked.ok()) {
    verdict.warning = "capd could not identify the process relaying this stream (" +
                      asked.status().message() + "): " + kNotExcluded;
    verdict.log = verdict.warning;
    return verdict;
  }
  const RelayAnswer& answer = asked.value();
  switch (answer.outcome) {
    case RelayOutcome::kNotLocal:
      return verdict;  // a client on another host: its connection is capd's port, excluded
    case RelayOutcome::kFound:
      break;
    case RelayOutcome::kOwnerUnknown:
      verdict.warning =
          "capd could not identify the process relaying this stream (its socket belongs to uid " +
          std::to_string(answer.uid) + "; " + std::to_string(answer.unreadable_processes) +
          " processes could not be examined: capd's peer helper lacks CAP_SYS_PTRACE and "
          "CAP_DAC_READ_SEARCH): " +
          kNotExcluded;
      verdict.log = verdict.warning;
      return verdict;
    case RelayOutcome::kNotAgentConnection:
    case RelayOutcome::kMalformed:
    case RelayOutcome::kFailed:
      verdict.warning =
          std::string(
              "capd could not identify the process relaying this stream (the peer "
              "helper answered: ") +
          (answer.outcome == RelayOutcome::kNotAgentConnection ? "no such connection to capd"
           : answer.outcome == RelayOutcome::kMalformed        ? "malformed query"
                                                        : "could not read the socket table") +
          "): " + kNotExcluded;
      verdict.log = verdict.warning;
      return verdict;
  }
  if (answer.total_connections == 0) return verdict;  // a client on this host, no relay
  if (answer.total_connections > kMaxRelayConnections) {
    verdict.warning = Process(answer) + " relays this stream but has " +
                      std::to_string(answer.total_connections) +
                      " other TCP connections, more than a relay has (" +
                      std::to_string(kMaxRelayConnections) + "): none of them is trusted, and " +
                      kNotExcluded;
    verdict.log = verdict.warning;
    return verdict;
  }
  for (const RelayConnection& c : answer.connections) {
    verdict.exclude.push_back({c.local, c.remote, answer.pid, answer.command});
  }
  verdict.log = Process(answer) + " (uid " + std::to_string(answer.uid) +
                ") relays this stream: " + std::to_string(verdict.exclude.size()) +
                " connection(s) left out of captures";
  return verdict;
}

}  // namespace capd::agent
