// --upload's object keys, metadata and command line (upload/s3_upload.h), pure.

#include "upload/s3_upload.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace capd::client {
namespace {

FinishedFile OneAgentFile() {
  FinishedFile file;
  file.path = "/data/cap_00042_20261207121400.pcapng";
  file.number = 42;
  file.packets = 1000;
  file.first_ns = 1'796'645'640'123'456'789ULL;  // 2026-12-07 12:14:00.123456789 UTC
  file.last_ns = 1'796'645'701'000'000'001ULL;   // 2026-12-07 12:15:01.000000001 UTC
  file.opened_seconds = 1'796'645'640;
  file.interfaces = {"eth0"};
  file.agents = {"i-0abc123"};
  file.link_types = {1};
  return file;
}

TEST(S3UploadTest, ParsesBucketAndPrefix) {
  auto location = ParseS3Url("s3://my-caps/fleet/eu/");
  ASSERT_TRUE(location.ok()) << location.status().message();
  EXPECT_EQ(location->bucket, "my-caps");
  EXPECT_EQ(location->prefix, "fleet/eu");
  auto bare = ParseS3Url("s3://my-caps");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->prefix, "");
  for (const char* bad : {"my-caps/x", "https://my-caps/x", "s3://", "s3://UPPER/x", "s3://ab",
                          "s3:///x", "s3://-caps/x"}) {
    auto refused = ParseS3Url(bad);
    EXPECT_FALSE(refused.ok()) << bad;
    if (!refused.ok()) {
      EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(S3UploadTest, KeysCarryAgentInterfaceAndTimeRange) {
  const S3Location location{"my-caps", "fleet"};
  EXPECT_EQ(ObjectKey(location, OneAgentFile()),
            "fleet/i-0abc123/eth0/2026/12/07/20261207T121400.123456789Z_20261207T121501."
            "000000001Z_00042.pcapng");
  // No prefix; several agents (interfaces named AGENT:IFACE by the merger); odd characters.
  FinishedFile two = OneAgentFile();
  two.interfaces = {"a 1:eth/0", "b:eth0"};
  two.agents = {"a 1", "b"};
  EXPECT_EQ(ObjectKey({"my-caps", ""}, two),
            "a_1+b/eth_0/2026/12/07/20261207T121400.123456789Z_20261207T121501.000000001Z_00042."
            "pcapng");
  // A file without packets (a quiet time slot): its opening time, twice.
  FinishedFile empty = OneAgentFile();
  empty.packets = 0;
  empty.first_ns = empty.last_ns = 0;
  EXPECT_EQ(ObjectKey(location, empty),
            "fleet/i-0abc123/eth0/2026/12/07/20261207T121400.000000000Z_20261207T121400."
            "000000000Z_00042.pcapng");
}

// Keys of one agent and interface sort as their files' times do, across days and numbers.
TEST(S3UploadTest, KeysSortByTime) {
  const S3Location location{"my-caps", "p"};
  std::vector<std::string> keys;
  FinishedFile file = OneAgentFile();
  for (uint32_t i = 0; i < 5; ++i) {
    file.number = 99998 + i;                 // past 99999 the number grows a digit
    file.first_ns += 43'000'000'000'000ULL;  // ~12 h
    file.last_ns = file.first_ns + 1;
    keys.push_back(ObjectKey(location, file));
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

TEST(S3UploadTest, MetadataAndCommand) {
  FinishedFile file = OneAgentFile();
  file.link_types = {1, 113};
  file.interfaces = {"eth0", "vxlan0"};
  file.agents = {"i-0abc123", "i-0abc123"};
  EXPECT_EQ(ObjectMetadataJson(file),
            "{\"packets\":\"1000\",\"first-ns\":\"1796645640123456789\",\"last-ns\":"
            "\"1796645701000000001\",\"link-types\":\"1,113\",\"interfaces\":\"eth0,vxlan0\","
            "\"agent\":\"i-0abc123\"}");
  S3UploadAction action({"my-caps", "fleet"}, "http://127.0.0.1:4568");
  EXPECT_EQ(action.Name(), "upload to s3://my-caps/fleet");
  const std::vector<std::string> argv = action.Command(OneAgentFile());
  ASSERT_GE(argv.size(), 7u);
  EXPECT_EQ(argv[0], "aws");
  EXPECT_EQ(argv[1], "s3");
  EXPECT_EQ(argv[2], "cp");
  EXPECT_EQ(argv[3], "/data/cap_00042_20261207121400.pcapng");
  EXPECT_EQ(argv[4], "s3://my-caps/" + ObjectKey({"my-caps", "fleet"}, OneAgentFile()));
  EXPECT_EQ(argv[argv.size() - 2], "--endpoint-url");
  EXPECT_EQ(argv.back(), "http://127.0.0.1:4568");
}

}  // namespace
}  // namespace capd::client
