#pragma once
// The fixture of the tests about running capd safely (access control, least privilege, request
// limits, bounded memory, faults): AgentTest (see agent_fixture.h) plus capd started with any
// flags, capctl run to completion, and capd's health checked from /proc.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {

class HardenedAgentTest : public AgentTest {
 protected:
  // `capd --listen LISTEN --name capd-it FLAGS...` in the agent namespace, behind `launcher`
  // (e.g. {"prlimit", "--nofile=1024:1024"}, which execs capd); waits for its "listening on
  // LISTEN" line.
  void StartAgentWith(const std::vector<std::string>& flags,
                      const std::string& listen = kAgentTarget,
                      const std::vector<std::string>& launcher = {});

  // `capctl ARGS...` in `netns` ("" = the agent namespace), run to its end; expects exit code
  // `code` within `timeout` and returns its stderr. Outputs go to <dir>/<name>.out/.err.
  std::string RunCapctl(const std::string& name, const std::vector<std::string>& args, int code,
                        const std::string& netns = "",
                        std::chrono::milliseconds timeout = kExitTimeout);

  // A record folder (--record-dir) owned by nobody, for capd run as deployed (--user nobody),
  // inside a test folder that nobody may pass through.
  std::filesystem::path RecordFolderForNobody();

  // capd's pid (the test fails when capd is not running).
  pid_t AgentPid();

  // Expects capd still running (after refusals, faults, a deleted interface).
  void ExpectAgentAlive();
};

// The line of `text` that contains `needle` ("" if none), for messages about one line.
std::string LineWith(const std::string& text, const std::string& needle);

}  // namespace capd::test
