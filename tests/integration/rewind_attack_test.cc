// Rewind into live (capctl stream --since) attacked by a hostile client, on capd as deployed
// (--user nobody) and as root: requests whose meaning is undefined are refused with the reason.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface

class RewindAttackTest : public HardenedAgentTest, public ::testing::WithParamInterface<bool> {
 protected:
  void StartRecordingAgent() {
    const bool as_nobody = GetParam();
    const std::filesystem::path records = as_nobody ? RecordFolderForNobody() : File("records");
    std::vector<std::string> flags = {"--no-metadata", "--record-dir", records.string()};
    if (as_nobody) flags.insert(flags.end(), {"--user", "nobody"});
    ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
    RunCapctl("record-start",
              {"record", "start", "--name", "ring", "-i", kIface, "-f", "udp", "--rotate-size",
               "20k", "--rotate-files", "20", "--agent", kAgentTarget},
              0);
  }
};

// --since with --start-on or --stop-on: the recorded part is read from files, past the trigger
// gate, so the triggers would apply to the live part only. Refused (exit 2) with the reason,
// nothing streamed.
TEST_P(RewindAttackTest, SinceWithATriggerIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartRecordingAgent());
  for (const char* flag : {"--start-on", "--stop-on"}) {
    SCOPED_TRACE(flag);
    const std::string err =
        RunCapctl(std::string("since") + flag,
                  {"stream", "--agent", kAgentTarget, "-i", kIface, "--since", "5m", flag,
                   "udp port 9", "-w", File("since.pcapng").string()},
                  2);
    EXPECT_NE(err.find("--since does not combine with --start-on or --stop-on"), std::string::npos)
        << err;
  }
  ExpectAgentAlive();
}

INSTANTIATE_TEST_SUITE_P(AsDeployedAndAsRoot, RewindAttackTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "UserNobody" : "Root";
                         });

}  // namespace
}  // namespace capd::test
