#pragma once
// The fixture of the upload tests (upload_test.cc: capctl --upload; recording_upload_test.cc:
// capd-upload): an AgentTest with a real S3-compatible server, s3rver (npm), on loopback in the
// agent's namespace, and the real AWS CLI (Debian's awscli) to read the bucket back.
//
// SetUp skips without s3rver or the CLI, points the CLI at dummy credentials s3rver takes (no
// instance metadata look-up, Debian's awscli first on PATH: the process's environment, which
// capctl, capd and capd-upload inherit), and starts s3rver over <test dir>/s3 with the bucket
// kBucket. The derived fixture then starts capd as its tests need. Header-only: each test
// executable that uses it includes it.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/programs.h"

namespace capd::test {

class S3Test : public AgentTest {
 protected:
  static constexpr char kBucket[] = "caps";

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AgentTest::SetUp());
    if (IsSkipped()) return;
    if (!HaveProgram("s3rver")) GTEST_SKIP() << "needs s3rver (npm install -g s3rver@3)";
    if (!HaveProgram("aws")) GTEST_SKIP() << "needs the AWS CLI (apt-get install awscli)";
    const char* path = getenv("PATH");
    setenv("PATH", ("/usr/bin:" + std::string(path ? path : "/bin")).c_str(), 1);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_DEFAULT_REGION", "us-east-1", 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_ENDPOINT_URL");
    std::filesystem::create_directories(File("s3"));
    ASSERT_NO_FATAL_FAILURE(StartS3(0));
  }

  void TearDown() override {
    if (s3_ && s3_->Running()) {
      s3_->Signal(SIGKILL);
      (void)s3_->WaitFor(kExitTimeout);
    }
    AgentTest::TearDown();
  }

  // s3rver on 127.0.0.1:port (0: any free port, then remembered) over the folder s3/, with the
  // bucket; waits until it listens.
  void StartS3(uint16_t port) {
    const std::string name = "s3rver" + std::to_string(s3_starts_++);
    ASSERT_NO_FATAL_FAILURE(Spawn(name,
                                  {"s3rver", "-d", File("s3").string(), "-a", "127.0.0.1", "-p",
                                   std::to_string(port), "--configure-bucket", kBucket},
                                  &s3_));
    ASSERT_TRUE(WaitForFileContains(File(name + ".out"), "listening on 127.0.0.1:", kStartTimeout))
        << s3_->Describe() << ReadFileToString(File(name + ".out"));
    std::smatch m;
    const std::string out = ReadFileToString(File(name + ".out"));
    ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(listening on 127\.0\.0\.1:(\d+))"))) << out;
    s3_port_ = static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  void StopS3() {
    s3_->Signal(SIGKILL);
    ASSERT_TRUE(s3_->WaitFor(kExitTimeout).has_value());
  }
  uint16_t s3_port() const { return s3_port_; }
  std::string Endpoint() const { return "http://127.0.0.1:" + std::to_string(s3_port_); }

  // `aws ARGS... --endpoint-url ENDPOINT` in the agent's namespace.
  CommandResult Aws(std::vector<std::string> args) {
    args.insert(args.begin(), "aws");
    args.push_back("--endpoint-url");
    args.push_back(Endpoint());
    return RunCommand(args, network().agent_ns());
  }

  // The bucket's keys, sorted.
  std::vector<std::string> Keys() {
    const CommandResult r = Aws({"s3api", "list-objects-v2", "--bucket", kBucket, "--query",
                                 "Contents[].Key", "--output", "text"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::vector<std::string> keys;
    std::istringstream in(r.output);
    for (std::string key; in >> key;) {
      if (key != "None") keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  // An object's user metadata; expects the 6 fields upload/s3_upload.h documents.
  std::map<std::string, std::string> Metadata(const std::string& key) {
    const CommandResult r = Aws({"s3api", "head-object", "--bucket", kBucket, "--key", key,
                                 "--query", "Metadata", "--output", "json"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::map<std::string, std::string> meta;
    const std::regex pair(R"re("([a-z-]+)":\s*"([^"]*)")re");
    for (auto it = std::sregex_iterator(r.output.begin(), r.output.end(), pair);
         it != std::sregex_iterator(); ++it) {
      meta[(*it)[1].str()] = (*it)[2].str();
    }
    EXPECT_EQ(meta.size(), 6u) << r.output;
    return meta;
  }

 private:
  std::unique_ptr<Subprocess> s3_;
  uint16_t s3_port_ = 0;
  int s3_starts_ = 0;
};

}  // namespace capd::test
