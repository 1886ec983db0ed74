// Agents selected by tag or Auto Scaling group (client/transport/fleet_selection.h): the selector
// grammar, the AWS CLI commands built from it, the CLI's JSON as the real one prints it (the
// recorded answers in tests/data/aws/), the cap, and what is left out, with a runner that answers
// from those files instead of AWS.

#include "client/transport/fleet_selection.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace capd::client {
namespace {

std::string Fixture(const std::string& name) {
  std::ifstream in(std::filesystem::path(CAPD_AWS_FIXTURES_DIR) / name);
  std::ostringstream content;
  content << in.rdbuf();
  EXPECT_FALSE(content.str().empty()) << name;
  return content.str();
}

AgentAddress Address(const std::string& text) {
  auto parsed = ParseAgentAddress(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status().message();
  return parsed.ok() ? parsed.value() : AgentAddress{};
}

// Answers describe-instances with `instances` and describe-instance-information with
// `information` (fixture names), and records every command.
struct FakeAws {
  std::string instances = "describe-instances-web.json";
  std::string information = "describe-instance-information.json";
  std::vector<std::vector<std::string>> calls;

  AwsRunner Runner() {
    return [this](const std::vector<std::string>& argv) -> StatusOr<std::string> {
      calls.push_back(argv);
      if (argv.size() > 2 && argv[2] == "describe-instances") return Fixture(instances);
      if (argv.size() > 2 && argv[2] == "describe-instance-information") {
        return Fixture(information);
      }
      return Internal("unexpected call");
    };
  }
};

TEST(FleetSelectorTest, RecognisesSelectionsOnly) {
  EXPECT_TRUE(IsFleetSelector("ssm://tag:Env=prod"));
  EXPECT_TRUE(IsFleetSelector("ssm://asg:web"));
  EXPECT_FALSE(IsFleetSelector("ssm://i-0123456789abcdef0"));
  EXPECT_FALSE(IsFleetSelector("127.0.0.1:50051"));
  EXPECT_FALSE(IsFleetSelector("ssh://tag:x"));
}

TEST(FleetSelectorTest, ParsesTagsGroupAndInterface) {
  auto one = ParseFleetSelector("ssm://tag:Env=prod");
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->tags, (std::vector<std::pair<std::string, std::string>>{{"Env", "prod"}}));
  EXPECT_EQ(one->interface, "");

  auto two = ParseFleetSelector("ssm://tag:Env=prod,tag:Role=web*/ens5");
  ASSERT_TRUE(two.ok()) << two.status().message();
  EXPECT_EQ(two->tags,
            (std::vector<std::pair<std::string, std::string>>{{"Env", "prod"}, {"Role", "web*"}}));
  EXPECT_EQ(two->interface, "ens5");

  auto spaced = ParseFleetSelector("ssm://tag:Team Name=Blue team");
  ASSERT_TRUE(spaced.ok()) << spaced.status().message();
  EXPECT_EQ(spaced->tags[0].first, "Team Name");

  auto group = ParseFleetSelector("ssm://asg:capd-workers/eth0");
  ASSERT_TRUE(group.ok()) << group.status().message();
  EXPECT_EQ(group->auto_scaling_group, "capd-workers");
  EXPECT_TRUE(group->tags.empty());
  EXPECT_EQ(group->interface, "eth0");
}

TEST(FleetSelectorTest, RefusesWhatTheCliWouldMisreadWithOneLine) {
  for (const char* text :
       {"ssm://tag:", "ssm://tag:Env", "ssm://tag:=prod", "ssm://tag:Env=", "ssm://tag:Env=prod,",
        "ssm://tag:Env=prod,Role=web", "ssm://tag:Env=prod/", "ssm://asg:", "ssm://asg:a,b",
        "ssm://tag:Env=[prod]", "ssm://tag:Env=\"prod\"", "ssm://tag:a/b=c/eth0"}) {
    SCOPED_TRACE(text);
    auto parsed = ParseFleetSelector(text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("ssm://tag:KEY=VALUE"), std::string::npos)
        << parsed.status().message();
    EXPECT_EQ(parsed.status().message().find('\n'), std::string::npos);
  }
}

TEST(FleetSelectorTest, BuildsTheDocumentedAwsCommands) {
  auto selector = ParseFleetSelector("ssm://tag:Env=prod,tag:Role=web");
  ASSERT_TRUE(selector.ok());
  EXPECT_EQ(
      DescribeInstancesCommand(*selector),
      (std::vector<std::string>{"aws", "ec2", "describe-instances", "--filters",
                                "Name=tag:Env,Values=prod", "Name=tag:Role,Values=web",
                                "Name=instance-state-name,Values=running", "--output", "json"}));
  auto group = ParseFleetSelector("ssm://asg:capd-workers");
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(
      DescribeInstancesCommand(*group),
      (std::vector<std::string>{"aws", "ec2", "describe-instances", "--filters",
                                "Name=tag:aws:autoscaling:groupName,Values=capd-workers",
                                "Name=instance-state-name,Values=running", "--output", "json"}));
  EXPECT_EQ(DescribeInstanceInformationCommand({"i-1", "i-2"}),
            (std::vector<std::string>{"aws", "ssm", "describe-instance-information", "--filters",
                                      "Key=InstanceIds,Values=i-1,i-2", "--output", "json"}));
}

TEST(FleetJsonTest, ReadsInstancesAndNameTagsFromRecordedOutput) {
  auto instances = ParseDescribeInstances(Fixture("describe-instances-web.json"));
  ASSERT_TRUE(instances.ok()) << instances.status().message();
  ASSERT_EQ(instances->size(), 3u);  // two reservations
  EXPECT_EQ((*instances)[0].id, "i-0a1b2c3d4e5f60001");
  EXPECT_EQ((*instances)[0].Label(), "i-0a1b2c3d4e5f60001 (web-1)");
  EXPECT_EQ((*instances)[2].Label(), "i-0a1b2c3d4e5f60003 (web-3)");

  auto unnamed = ParseDescribeInstances(Fixture("describe-instances-asg.json"));
  ASSERT_TRUE(unnamed.ok()) << unnamed.status().message();
  ASSERT_EQ(unnamed->size(), 2u);
  EXPECT_EQ((*unnamed)[0].Label(), "i-0a1b2c3d4e5f60021") << "no Name tag: the id alone";

  auto none = ParseDescribeInstances(Fixture("describe-instances-none.json"));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(FleetJsonTest, NameTagsAreMadePrintable) {
  auto instances = ParseDescribeInstances(
      R"({"Reservations":[{"Instances":[{"InstanceId":"i-1","Tags":[{"Key":"Name",)"
      R"("Value":"web\u001b[2J"}]}]}]})");
  ASSERT_TRUE(instances.ok()) << instances.status().message();
  EXPECT_EQ((*instances)[0].Label(), "i-1 (web\\x1b[2J)");
}

TEST(FleetJsonTest, RefusesOtherShapes) {
  for (const char* json : {"", "not json", "[]", R"({"Instances":[]})",
                           R"({"Reservations":[{"Instances":[{"State":{}}]}]})"}) {
    SCOPED_TRACE(json);
    auto parsed = ParseDescribeInstances(json);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInternal);
  }
  EXPECT_FALSE(ParseInstanceInformation(R"({"Reservations":[]})").ok());
}

TEST(FleetJsonTest, ReadsPingStatus) {
  auto information = ParseInstanceInformation(Fixture("describe-instance-information.json"));
  ASSERT_TRUE(information.ok()) << information.status().message();
  ASSERT_EQ(information->size(), 6u);
  EXPECT_EQ((*information)[0],
            (std::pair<std::string, std::string>{"i-0a1b2c3d4e5f60001", "Online"}));
}

TEST(ExpandFleetTest, EachOnlineInstanceBecomesAnSsmAgentNamedAfterIt) {
  FakeAws aws;
  auto expanded =
      ExpandFleetAgents({Address("127.0.0.1:50051"), Address("ssm://tag:Env=prod/ens5")},
                        kDefaultMaxAgents, aws.Runner());
  ASSERT_TRUE(expanded.ok()) << expanded.status().message();
  ASSERT_EQ(expanded->agents.size(), 4u);
  EXPECT_EQ(expanded->agents[0].text, "127.0.0.1:50051") << "a named agent passes untouched";
  EXPECT_TRUE(expanded->agents[0].label.empty());
  const AgentAddress& web1 = expanded->agents[1];
  EXPECT_EQ(web1.transport, AgentAddress::Transport::kSsm);
  EXPECT_EQ(web1.target, "i-0a1b2c3d4e5f60001");
  EXPECT_EQ(web1.interface, "ens5");
  EXPECT_EQ(web1.label, "i-0a1b2c3d4e5f60001 (web-1)");
  EXPECT_TRUE(expanded->left_out.empty());
  ASSERT_EQ(aws.calls.size(), 2u);
  EXPECT_EQ(aws.calls[1][4],
            "Key=InstanceIds,Values=i-0a1b2c3d4e5f60001,i-0a1b2c3d4e5f60002,i-0a1b2c3d4e5f60003");
}

TEST(ExpandFleetTest, InstancesNotOnlineInSsmAreLeftOutWithTheReason) {
  FakeAws aws;
  aws.information = "describe-instance-information-web2-lost.json";
  auto expanded =
      ExpandFleetAgents({Address("ssm://tag:Env=prod")}, kDefaultMaxAgents, aws.Runner());
  ASSERT_TRUE(expanded.ok()) << expanded.status().message();
  ASSERT_EQ(expanded->agents.size(), 1u);
  EXPECT_EQ(expanded->agents[0].target, "i-0a1b2c3d4e5f60001");
  EXPECT_EQ(expanded->left_out,
            (std::vector<std::string>{
                "i-0a1b2c3d4e5f60002 (web-2): not online in SSM (PingStatus ConnectionLost)",
                "i-0a1b2c3d4e5f60003 (web-3): not managed by SSM (no SSM Agent registered it: is "
                "the agent running, and does the instance profile allow it, e.g. "
                "AmazonSSMManagedInstanceCore?)"}));
}

TEST(ExpandFleetTest, NoMatchIsNotFound) {
  FakeAws aws;
  aws.instances = "describe-instances-none.json";
  auto expanded =
      ExpandFleetAgents({Address("ssm://tag:Env=nowhere")}, kDefaultMaxAgents, aws.Runner());
  ASSERT_FALSE(expanded.ok());
  EXPECT_EQ(expanded.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ExitCodeFor(expanded.status().code()), 2);
  EXPECT_NE(expanded.status().message().find("ssm://tag:Env=nowhere: no running instance matches"),
            std::string::npos)
      << expanded.status().message();
  EXPECT_EQ(aws.calls.size(), 1u) << "SSM asked about nothing";
}

TEST(ExpandFleetTest, OverTheCapIsRefusedWithTheCountBeforeSsmIsAsked) {
  FakeAws aws;
  aws.instances = "describe-instances-web4.json";
  auto refused = ExpandFleetAgents({Address("ssm://tag:Role=web")}, 3, aws.Runner());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "4 instances match the selection, more than --max-agents 3 allows; give "
            "--max-agents 4 to open them all, or narrow the selection");
  EXPECT_EQ(aws.calls.size(), 1u);

  FakeAws raised;
  raised.instances = "describe-instances-web4.json";
  auto opened = ExpandFleetAgents({Address("ssm://tag:Role=web")}, 4, raised.Runner());
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_EQ(opened->agents.size(), 4u);
}

TEST(ExpandFleetTest, TheCapCountsEveryInstanceOnceAcrossSelections) {
  FakeAws aws;
  auto expanded = ExpandFleetAgents({Address("ssm://tag:Env=prod"), Address("ssm://tag:Role=web")},
                                    3, aws.Runner());
  ASSERT_TRUE(expanded.ok()) << expanded.status().message();
  EXPECT_EQ(expanded->agents.size(), 3u) << "the same three instances, opened once";
}

TEST(ExpandFleetTest, NoSelectionRunsNothingAndTheCliFailureIsPassedOn) {
  bool ran = false;
  auto plain = ExpandFleetAgents({Address("ssm://i-0123456789abcdef0")}, 1,
                                 [&](const std::vector<std::string>&) -> StatusOr<std::string> {
                                   ran = true;
                                   return std::string();
                                 });
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(ran);
  auto failed = ExpandFleetAgents(
      {Address("ssm://asg:web")}, 1, [](const std::vector<std::string>&) -> StatusOr<std::string> {
        return Unavailable("aws ec2 describe-instances failed: Unable to locate credentials.");
      });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(),
            "aws ec2 describe-instances failed: Unable to locate credentials.");
}

}  // namespace
}  // namespace capd::client
