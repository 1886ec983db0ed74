#include "tests/integration/hardened_agent_fixture.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

namespace capd::test {

void HardenedAgentTest::StartAgentWith(const std::vector<std::string>& flags,
                                       const std::string& listen,
                                       const std::vector<std::string>& launcher) {
  std::vector<std::string> argv = launcher;
  argv.insert(argv.end(), {kCapdPath, "--listen", listen, "--name", "capd-it"});
  argv.insert(argv.end(), flags.begin(), flags.end());
  ASSERT_NO_FATAL_FAILURE(Spawn("capd", std::move(argv), &agent_));
  ASSERT_TRUE(agent_->WaitForStderr("listening on " + listen, kStartTimeout)) << agent_->Describe();
}

std::string HardenedAgentTest::RunCapctl(const std::string& name,
                                         const std::vector<std::string>& args, int code,
                                         const std::string& netns,
                                         std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {kCapctlPath};
  argv.insert(argv.end(), args.begin(), args.end());
  std::unique_ptr<Subprocess> capctl;
  Spawn(name, std::move(argv), &capctl, netns);
  if (HasFatalFailure()) return "";
  ExpectExit(*capctl, code, timeout);
  return capctl->Stderr();
}

std::filesystem::path HardenedAgentTest::RecordFolderForNobody() {
  namespace fs = std::filesystem;
  fs::permissions(dir_->path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const fs::path records = File("records");
  fs::create_directories(records);
  EXPECT_EQ(::chown(records.c_str(), 65534, 65534), 0) << std::strerror(errno);
  return records;
}

pid_t HardenedAgentTest::AgentPid() {
  EXPECT_TRUE(agent_ && agent_->Running()) << (agent_ ? agent_->Describe() : "capd not started");
  return agent_ ? agent_->pid() : 0;
}

void HardenedAgentTest::ExpectAgentAlive() {
  ASSERT_TRUE(agent_);
  EXPECT_TRUE(agent_->Running()) << "capd ended: " << agent_->Describe();
}

std::string LineWith(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return "";
}

}  // namespace capd::test
