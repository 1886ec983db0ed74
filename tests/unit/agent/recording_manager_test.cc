// RecordingManager without root: its captures come from files (SavefileSource), and what it wrote
// is read back with libpcap, as a user of `capctl record fetch` would.

#include "agent/recording/recording_manager.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "agent/capture/savefile_source.h"
#include "tests/support/capture_file.h"
#include "tests/unit/agent/hub_test_support.h"

namespace capd::agent {
namespace {

class RecordingManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteUdpCapture(files_.path() / "a.pcap", 20, 53, 100);
    sources_ = std::make_shared<SavefileSourceFactory>(
        std::map<std::string, std::string>{{"eth0", (files_.path() / "a.pcap").string()}});
    identity_.name = "unit-agent";
    identity_.own_traffic.tcp_ports = {50051};
    identity_.sources = sources_;
  }

  std::unique_ptr<RecordingManager> Open() {
    auto opened = RecordingManager::Open((records_.path() / "rec").string(), identity_);
    EXPECT_TRUE(opened.ok()) << opened.status().message();
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  static v1::StartRecordingRequest Request(const std::string& name, const std::string& interface) {
    v1::StartRecordingRequest request;
    request.set_name(name);
    request.set_interface(interface);
    request.set_filter("udp");
    return request;
  }

  // Every packet of every file a fetch of `name` would send.
  std::vector<test::CapturedPacket> Fetched(RecordingManager& manager, const std::string& name) {
    std::vector<test::CapturedPacket> all;
    auto paths = manager.FetchableFiles(name);
    EXPECT_TRUE(paths.ok()) << paths.status().message();
    if (!paths.ok()) return all;
    for (const std::string& path : *paths) {
      auto packets = test::ReadCapture(path);
      EXPECT_TRUE(packets.ok()) << packets.status().message();
      if (packets.ok()) all.insert(all.end(), packets->begin(), packets->end());
    }
    return all;
  }

  testing::TempDir files_;
  testing::TempDir records_;
  std::shared_ptr<SavefileSourceFactory> sources_;
  AgentIdentity identity_;
};

TEST_F(RecordingManagerTest, RecordsWhatTheCaptureReadAndStops) {
  auto manager = Open();
  ASSERT_NE(manager, nullptr);
  auto started = manager->Start(Request("dns", "eth0"));
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(started->state(), v1::RecordingInfo::RUNNING);
  // Start returns once the capture is open; the capture reads the whole file (20 packets, one
  // read) before it can see the stop.
  auto stopped = manager->Stop("dns");
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  EXPECT_EQ(stopped->state(), v1::RecordingInfo::STOPPED);
  EXPECT_EQ(stopped->packets(), 20u);
  EXPECT_EQ(stopped->interface(), "eth0");
  EXPECT_EQ(sources_->opened(), 1);

  auto expected = test::ReadCapture(files_.path() / "a.pcap");
  ASSERT_TRUE(expected.ok());
  const auto fetched = Fetched(*manager, "dns");
  ASSERT_EQ(fetched.size(), expected->size());
  for (size_t i = 0; i < fetched.size(); ++i) {
    EXPECT_EQ(fetched[i].bytes, (*expected)[i].bytes) << i;
    EXPECT_EQ(fetched[i].ts_ns, (*expected)[i].ts_ns) << i;
  }
}

TEST_F(RecordingManagerTest, UnknownInterfaceIsRefusedAndNothingRuns) {
  auto manager = Open();
  ASSERT_NE(manager, nullptr);
  auto started = manager->Start(Request("nowhere", "eth9"));
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.status().code(), StatusCode::kNotFound) << started.status().message();
  // The name is free again: a recording that never ran does not hold it as running.
  for (const v1::RecordingInfo& info : manager->List()) {
    EXPECT_NE(info.state(), v1::RecordingInfo::RUNNING) << info.name();
  }
}

TEST_F(RecordingManagerTest, ShutdownKeepsARecordingRunningToResumeAtTheNextStart) {
  {
    auto manager = Open();
    ASSERT_NE(manager, nullptr);
    ASSERT_TRUE(manager->Start(Request("dns", "eth0")).ok());
    manager->StopAll();  // capd is stopping
  }
  auto manager = Open();
  ASSERT_NE(manager, nullptr);
  auto listed = manager->List();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].state(), v1::RecordingInfo::RUNNING);
  manager->ResumeAll();
  auto stopped = manager->Stop("dns");
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  EXPECT_EQ(sources_->opened(), 2) << "the resumed recording opened its capture again";
  EXPECT_EQ(stopped->packets(), 40u) << "20 packets in each run";
  EXPECT_EQ(Fetched(*manager, "dns").size(), 40u);
}

}  // namespace
}  // namespace capd::agent
