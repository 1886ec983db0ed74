#include "agent/capture/savefile_source.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <string>
#include <vector>

#include "tests/unit/agent/hub_test_support.h"

namespace capd::agent {
namespace {

struct Seen {
  std::vector<pcap_pkthdr> headers;
};

void Record(u_char* user, const pcap_pkthdr* header, const u_char*) {
  reinterpret_cast<Seen*>(user)->headers.push_back(*header);
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

class SavefileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> frames;
    for (int i = 0; i < 300; ++i) frames.push_back(testing::UdpFrame(i % 3 == 0 ? 53 : 80, 200));
    testing::WriteFrames(path_, frames);
  }
  testing::TempDir dir_;
  std::filesystem::path path_ = dir_.path() / "mixed.pcap";
};

TEST_F(SavefileSourceTest, ReadsLikeARingThenSaysEndOfFileAndGoesQuiet) {
  CaptureConfig config;
  config.interface = "eth0";
  auto opened = SavefileSource::Open(path_, config);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  SavefileSource& source = *opened.value();
  EXPECT_EQ(source.interface(), "eth0");
  EXPECT_EQ(source.datalink(), DLT_EN10MB);
  EXPECT_EQ(source.nanoseconds_per_tick(), 1u);
  EXPECT_TRUE(Readable(source.fd()));

  Seen seen;
  EXPECT_EQ(source.Dispatch(-1, &Record, &seen), RecvStatus::kOk);
  EXPECT_EQ(seen.headers.size(), static_cast<size_t>(SavefileSource::kPacketsPerDispatch));
  EXPECT_EQ(source.Dispatch(-1, &Record, &seen), RecvStatus::kOk);
  EXPECT_EQ(seen.headers.size(), 300u);
  EXPECT_EQ(source.Dispatch(-1, &Record, &seen), RecvStatus::kEndOfFile);
  EXPECT_FALSE(Readable(source.fd())) << "quiet after the end, like a link without traffic";
  EXPECT_EQ(seen.headers[1].ts.tv_usec, 1000) << "nanoseconds, as written";
  auto stats = source.Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->received, 300u);
  EXPECT_EQ(stats->kernel_drops, 0u);
}

TEST_F(SavefileSourceTest, AppliesTheSnaplenAndTheFilter) {
  CaptureConfig config;
  config.interface = "eth0";
  config.snaplen = 96;
  auto opened = SavefileSource::Open(path_, config);
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  SavefileSource& source = *opened.value();
  EXPECT_EQ(source.snaplen(), 96);
  auto filter =
      filters::ComposeCaptureFilter("udp port 53", {}, source.datalink(), source.snaplen(), "");
  ASSERT_TRUE(filter.ok()) << filter.status().message();
  ASSERT_TRUE(source.SetFilter(*filter).ok());
  Seen seen;
  while (source.Dispatch(-1, &Record, &seen) == RecvStatus::kOk) {
  }
  ASSERT_EQ(seen.headers.size(), 100u);
  for (const pcap_pkthdr& h : seen.headers) {
    EXPECT_EQ(h.caplen, 96u);
    EXPECT_EQ(h.len, testing::UdpFrame(53, 200).size());
  }
  EXPECT_EQ(source.Stats()->received, 100u) << "received counts what passed the filter";

  auto wrong = filters::ComposeCaptureFilter("", {}, DLT_RAW, source.snaplen(), "");
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(source.SetFilter(*wrong).ok()) << "a program compiled for another link type";
}

TEST_F(SavefileSourceTest, FactoryOpensTheFileNamedForAnInterfaceOnly) {
  SavefileSourceFactory factory({{"eth0", path_.string()}});
  EXPECT_EQ(factory.ExpectedDatalink("eth0"), DLT_EN10MB);
  EXPECT_EQ(factory.ExpectedDatalink("eth1"), std::nullopt);
  CaptureConfig config;
  config.interface = "eth1";
  auto missing = factory.Open(config);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  config.interface = "eth0";
  ASSERT_TRUE(factory.Open(config).ok());
  EXPECT_EQ(factory.opened(), 1);
}

}  // namespace
}  // namespace capd::agent
