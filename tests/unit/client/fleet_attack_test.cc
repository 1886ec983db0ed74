// Hostile cloud data against the selection of agents by tag (client/transport/fleet_selection.h):
// what the AWS CLI's output may carry into capctl's argv and labels is checked and bounded.

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "client/transport/fleet_selection.h"

namespace capd::client {
namespace {

std::string OneInstance(const std::string& id, const std::string& name_json) {
  return R"({"Reservations":[{"Instances":[{"InstanceId":")" + id +
         R"(","Tags":[{"Key":"Name","Value":")" + name_json + R"("}]}]}]})";
}

// An id from describe-instances reaches `aws ssm start-session --target ID` and the
// Values=i-1,i-2 shorthand of describe-instance-information: a ',' there adds a value, a leading
// '-' reads as an option, a space or escape is no id at all.
TEST(FleetAttackTest, InstanceIdsThatAreNotEc2IdsAreRefused) {
  for (const std::string& id : std::vector<std::string>{
           "i-1,i-2", "--profile=evil", "-i", "i-0abc --region x", "i-0ABC", "i-", "mi-0abc",
           "i-0abc\\u001b[2J", "i-" + std::string(40, 'a'), "i-0abc]"}) {
    SCOPED_TRACE(id);
    auto parsed = ParseDescribeInstances(OneInstance(id, "web-1"));
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInternal);
    EXPECT_NE(parsed.status().message().find("not i-<hex>"), std::string::npos);
    for (const char c : parsed.status().message()) EXPECT_GE(static_cast<unsigned char>(c), 0x20);
  }
  auto fine = ParseDescribeInstances(OneInstance("i-0a1b2c3d4e5f60001", "web-1"));
  ASSERT_TRUE(fine.ok()) << fine.status().message();
  EXPECT_EQ((*fine)[0].id, "i-0a1b2c3d4e5f60001");
}

TEST(FleetAttackTest, NoHostileIdReachesAnSsmCall) {
  std::vector<std::vector<std::string>> calls;
  const AwsRunner run = [&](const std::vector<std::string>& argv) -> StatusOr<std::string> {
    calls.push_back(argv);
    return OneInstance("i-1,i-2", "web");
  };
  auto parsed = ParseAgentAddress("ssm://tag:Env=prod");
  ASSERT_TRUE(parsed.ok());
  auto expanded = ExpandFleetAgents({*parsed}, 20, run);
  ASSERT_FALSE(expanded.ok());
  ASSERT_EQ(calls.size(), 1u);  // describe-instances only
  EXPECT_EQ(calls[0][2], "describe-instances");
}

// A Name tag of 10 kB with newlines and terminal escapes: the label stays one printable line of
// bounded length (an EC2 tag value holds at most 256 characters).
TEST(FleetAttackTest, HugeNameTagWithEscapesIsCutAndPrintable) {
  std::string name;
  while (name.size() < 10 * 1024) name += "web\\n\\u001b]0;owned\\u0007\\r";
  auto parsed = ParseDescribeInstances(OneInstance("i-0a1b2c3d4e5f60001", name));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  const std::string label = (*parsed)[0].Label();
  EXPECT_LE((*parsed)[0].name.size(), kMaxNameChars + 3);
  EXPECT_LE(label.size(), 19u + 3u + kMaxNameChars + 3u);
  for (const char c : label) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20);
    EXPECT_LT(static_cast<unsigned char>(c), 0x7f);
  }
}

// Thousands of instances: refused by the cap before any SSM call, and the parse itself copes.
TEST(FleetAttackTest, FiveThousandInstancesAreCappedBeforeAnySsmCall) {
  std::string json = R"({"Reservations":[{"Instances":[)";
  for (int i = 0; i < 5000; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "i-%017x", i + 1);
    json += std::string(i == 0 ? "" : ",") + R"({"InstanceId":")" + id + R"("})";
  }
  json += "]}]}";
  std::vector<std::vector<std::string>> calls;
  const AwsRunner run = [&](const std::vector<std::string>& argv) -> StatusOr<std::string> {
    calls.push_back(argv);
    return json;
  };
  auto parsed = ParseAgentAddress("ssm://asg:web");
  ASSERT_TRUE(parsed.ok());
  auto expanded = ExpandFleetAgents({*parsed}, kDefaultMaxAgents, run);
  ASSERT_FALSE(expanded.ok());
  EXPECT_EQ(expanded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(expanded.status().message().find("5000 instances"), std::string::npos);
  EXPECT_EQ(calls.size(), 1u);
}

TEST(FleetAttackTest, TruncatedJsonIsRefused) {
  const std::string whole = OneInstance("i-0a1b2c3d4e5f60001", "web-1");
  for (size_t cut : {size_t{1}, whole.size() / 3, whole.size() / 2, whole.size() - 1}) {
    SCOPED_TRACE(cut);
    auto parsed = ParseDescribeInstances(whole.substr(0, cut));
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInternal);
  }
}

}  // namespace
}  // namespace capd::client
