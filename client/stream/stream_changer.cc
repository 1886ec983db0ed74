#include "client/stream/stream_changer.h"

#include "client/stream/agent_feed.h"

namespace capd::client {

void StreamChanger::Attach(AgentFeed* feed) {
  std::lock_guard lock(mu_);
  feeds_.push_back(feed);
}

void StreamChanger::DetachAll() {
  std::lock_guard lock(mu_);
  feeds_.clear();
}

std::vector<AgentChange> StreamChanger::Apply(const v1::ChangeStreamRequest& change) {
  std::lock_guard lock(mu_);
  std::vector<AgentChange> results;
  for (AgentFeed* feed : feeds_) {
    AgentChange result;
    result.agent = feed->address();
    auto answer = feed->Change(change);
    if (answer.ok()) {
      result.filter = answer->filter();
    } else {
      result.status = answer.status();
    }
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace capd::client
