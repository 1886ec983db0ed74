// A broken or hostile AWS CLI against the runner capctl uses for it (RunForOutput in
// client/transport/child_process.h): endless output, a huge error line and a hang end with a
// clear message, within bounds, on real processes.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "client/transport/child_process.h"

namespace capd::client {
namespace {

// A program (standing for a broken or hostile aws) in a private folder.
class ScriptFolder {
 public:
  ScriptFolder() {
    char name[] = "/tmp/capd-fleet-attack-XXXXXX";
    dir_ = mkdtemp(name);
  }
  ~ScriptFolder() {
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string Write(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    chmod(path.c_str(), 0755);
    return path;
  }

 private:
  std::string dir_;
};

// An aws that prints without end: stopped at the bound instead of filling /tmp until the
// timeout (60 s of `yes` is gigabytes). The 120 s timeout is a hang guard only.
TEST(FleetAttackTest, EndlessOutputIsStoppedAtTheBound) {
  ScriptFolder folder;
  const std::string aws = folder.Write("aws", "exec yes");
  auto output =
      RunForOutput({aws, "ec2", "describe-instances"}, std::chrono::seconds(120), size_t{1} << 20);
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(output.status().message().find("printed more than 1048576 bytes"), std::string::npos)
      << output.status().message();
}

// The writer is the script's child, not the script: killing only the shell left `yes` writing to
// the (unlinked) output file until the disk was full. The whole process group goes.
TEST(FleetAttackTest, EndlessErrorOutputIsStoppedAtTheBoundWithWhatTheCliStarted) {
  ScriptFolder folder;
  const std::string pid_file = folder.Path("writer.pid");
  // The child writes its own pid before it writes anything else, so the bound cannot stop the
  // CLI before the test knows which process to look for.
  const std::string aws = folder.Write(
      "aws", "sh -c 'echo $$ > " + pid_file + "; exec yes 1>&2' &\nwait");
  auto output =
      RunForOutput({aws, "ec2", "describe-instances"}, std::chrono::seconds(120), size_t{1} << 20);
  ASSERT_FALSE(output.ok());
  EXPECT_NE(output.status().message().find("printed more than"), std::string::npos)
      << output.status().message();
  std::ifstream in(pid_file);
  pid_t writer = 0;
  ASSERT_TRUE(in >> writer) << "the script did not say which process writes";
  // Gone, or a zombie waiting for its new parent: either way it writes nothing more. 10 s is a
  // hang guard: SIGKILL takes effect at once.
  const auto running = [writer] {
    std::ifstream stat("/proc/" + std::to_string(writer) + "/stat");
    std::string pid, comm, state;
    return static_cast<bool>(stat >> pid >> comm >> state) && state != "Z";
  };
  for (int i = 0; i < 1000 && running(); ++i) usleep(10'000);
  EXPECT_FALSE(running()) << "the CLI's child " << writer
                          << " still runs after the CLI was stopped";
}

// A failing aws whose one error line is 2 MB: the message quotes only its start.
TEST(FleetAttackTest, LongErrorLineIsCut) {
  ScriptFolder folder;
  const std::string aws =
      folder.Write("aws", "head -c 2000000 /dev/zero | tr '\\0' x 1>&2; exit 255");
  auto output = RunForOutput({aws, "ec2", "describe-instances"}, std::chrono::seconds(120));
  ASSERT_FALSE(output.ok());
  EXPECT_LE(output.status().message().size(), kMaxReasonChars + 200);
}

// An aws that hangs: killed at the timeout with a message that says so.
TEST(FleetAttackTest, HangingCliIsKilledWithAClearMessage) {
  ScriptFolder folder;
  const std::string aws = folder.Write("aws", "exec sleep 600");
  auto output = RunForOutput({aws, "ec2", "describe-instances"}, std::chrono::seconds(1));
  ASSERT_FALSE(output.ok());
  EXPECT_NE(output.status().message().find("did not finish within 1 s"), std::string::npos)
      << output.status().message();
}

}  // namespace
}  // namespace capd::client
