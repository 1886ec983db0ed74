#pragma once
// Changing a running session's capture on every agent at once (capd.v1 ChangeStream): what the
// Wireshark extcap's toolbar Apply does. RunStream attaches each agent's feed while the session
// runs and detaches them before the feeds go.
//
// Thread-safety: every method is thread-safe. Apply blocks for the agents' answers (each at most
// AgentFeed::kChangeTimeout, one agent after the other) and DetachAll waits for an Apply in
// progress, so no feed goes while it is asked.

#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::client {

class AgentFeed;

// One agent's answer to a change.
struct AgentChange {
  std::string agent;   // as the user named it (--agent)
  Status status;       // ok, or the agent's refusal / why it could not be asked
  std::string filter;  // ok: the kernel filter the agent now applies
};

class StreamChanger {
 public:
  void Attach(AgentFeed* feed);
  void DetachAll();
  // Sends `change` to every attached agent; one entry per agent, in the order attached. Empty
  // when no session runs.
  std::vector<AgentChange> Apply(const v1::ChangeStreamRequest& change);

 private:
  std::mutex mu_;
  std::vector<AgentFeed*> feeds_;  // guarded by mu_
};

}  // namespace capd::client
