#pragma once
// The fixture of the tests that send capd filters costing its whole compile budget
// (filter_cost_test.cc: capture and inner filters; trigger_attack_test.cc: trigger filters):
// capd hardened, as deployed (--user nobody, the test's parameter true) or as root, a channel to
// it from its namespace, and its capd-filters helper, whose children are the compiles.
// Header-only: each test executable that uses it includes it.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"
#include "tests/support/agent_client.h"

namespace capd::test {

// `port 1 or port 2 or ... or port 1344`: 16,361 bytes, under the 16 KiB request limit, and
// over the compile budget (libpcap's optimizer).
inline std::string OptimizerHeavyFilter() {
  std::string text;
  for (int port = 1; port <= 1344; ++port) {
    text += (port > 1 ? " or port " : "port ") + std::to_string(port);
  }
  return text;
}

// The children of `pid` (/proc/PID/task/PID/children), as pids.
inline std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> children;
  for (pid_t child; in >> child;) children.push_back(child);
  return children;
}

// The process's name (/proc/PID/comm), "" when it has ended.
inline std::string CommandOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

// GetParam(): capd --user nobody (true) or as root (false).
class CostlyFilterTest : public HardenedAgentTest, public ::testing::WithParamInterface<bool> {
 protected:
  void TearDown() override {
    channel_.reset();  // before capd stops: an open connection holds up its shutdown
    HardenedAgentTest::TearDown();
  }

  // capd --no-metadata FLAGS... (and --user nobody when deployed), and channel_ to it.
  void StartAgentAsDeployed(std::vector<std::string> flags = {}) {
    flags.push_back("--no-metadata");
    if (GetParam()) {
      flags.push_back("--user");
      flags.push_back("nobody");
    }
    ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
    auto channel = ConnectInsecureIn(network().agent_ns(), "127.0.0.1", kAgentPort);
    ASSERT_TRUE(channel.ok()) << channel.status().message();
    channel_ = std::move(channel).value();
  }

  // capd's helper that compiles filters.
  pid_t FiltersHelper() {
    for (pid_t child : ChildrenOf(AgentPid())) {
      if (CommandOf(child) == "capd-filters") return child;
    }
    ADD_FAILURE() << "capd has no capd-filters child";
    return 0;
  }

  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace capd::test
