// The extcap's control toolbar without Wireshark: control-in frames as Wireshark writes them
// (whole, in pieces, mixed with what is not a frame), the values a capture keeps, and the change
// Apply sends.

#include "client/extcap/toolbar.h"

#include <gtest/gtest.h>

#include <string>

#include "client/extcap/control_frames.h"
#include "client/extcap/control_pipe.h"

namespace capd::client {
namespace {

TEST(ControlFrameParserTest, WholeFramesAsWiresharkWritesThem) {
  ControlFrameParser parser;
  const std::string bytes = FrameControlPacket(1, kControlSet, "udp port 53") +
                            FrameControlPacket(0, kControlInitialized, "") +
                            FrameControlPacket(4, kControlSet, "");
  const auto frames = parser.Feed(bytes);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].control, 1);
  EXPECT_EQ(frames[0].command, kControlSet);
  EXPECT_EQ(frames[0].payload, "udp port 53");
  EXPECT_EQ(frames[1].command, kControlInitialized);
  EXPECT_EQ(frames[2].control, 4);
  EXPECT_TRUE(frames[2].payload.empty());
}

TEST(ControlFrameParserTest, FramesSplitAnywhereComeOutWhole) {
  const std::string bytes =
      FrameControlPacket(1, kControlSet, "tcp") + FrameControlPacket(3, kControlSet, "icmp");
  ControlFrameParser parser;
  std::vector<ControlFrame> frames;
  for (char c : bytes) {
    for (ControlFrame& f : parser.Feed(std::string(1, c))) frames.push_back(std::move(f));
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, "tcp");
  EXPECT_EQ(frames[1].control, 3);
  EXPECT_EQ(frames[1].payload, "icmp");
}

TEST(ControlFrameParserTest, OversizeAndGarbageAreSkippedAndTheNextFrameStillParses) {
  ControlFrameParser parser;
  const size_t big = ControlFrameParser::kMaxPayload + 100;
  std::string oversize = {'T',
                          static_cast<char>(((big + 2) >> 16) & 0xff),
                          static_cast<char>(((big + 2) >> 8) & 0xff),
                          static_cast<char>((big + 2) & 0xff),
                          1,
                          kControlSet};
  oversize += std::string(big, 'T');  // 'T's inside must not be taken for frames
  const std::string after = FrameControlPacket(1, kControlSet, "arp");
  std::vector<ControlFrame> frames;
  // In pieces, so the skipping spans reads.
  const std::string bytes = "xyz" + oversize + after;
  for (size_t at = 0; at < bytes.size(); at += 1000) {
    for (ControlFrame& f : parser.Feed(std::string_view(bytes).substr(at, 1000))) {
      frames.push_back(std::move(f));
    }
  }
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, "arp");
  EXPECT_EQ(parser.oversize_frames(), 1u);
  EXPECT_EQ(parser.skipped_bytes(), 3u);
  // A length with no room for the control number and command is not a frame.
  const auto more =
      parser.Feed(std::string("T\0\0\1", 4) + FrameControlPacket(2, kControlSet, "5"));
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].payload, "5");
}

TEST(ToolbarTest, ValuesAsTypedAndApplySendsThem) {
  Toolbar toolbar({"udp port 53", false, {}, ""});
  EXPECT_EQ(toolbar.value(kToolbarFilter), "udp port 53");
  // Wireshark sends what it remembered, then Initialized: the toolbar shows what runs.
  EXPECT_EQ(toolbar.OnFrame({kToolbarFilter, kControlSet, "old text"}), Toolbar::Event::kNone);
  EXPECT_EQ(toolbar.OnFrame({0, kControlInitialized, ""}), Toolbar::Event::kInitialized);
  EXPECT_EQ(toolbar.value(kToolbarFilter), "udp port 53");
  const auto initial = toolbar.InitialFrames();
  ASSERT_FALSE(initial.empty());
  EXPECT_EQ(initial[0].control, kToolbarFilter);
  EXPECT_EQ(initial[0].payload, "udp port 53");
  bool vnis_disabled = false;
  for (const ControlFrame& f : initial) {
    vnis_disabled |= f.control == kToolbarVnis && f.command == kControlDisable;
  }
  EXPECT_TRUE(vnis_disabled) << "a plain capture has no VNIs to choose";

  EXPECT_EQ(toolbar.OnFrame({kToolbarFilter, kControlSet, " udp port 80 "}), Toolbar::Event::kNone);
  EXPECT_EQ(toolbar.OnFrame({42, kControlSet, "a newer Wireshark's"}), Toolbar::Event::kNone);
  EXPECT_EQ(toolbar.OnFrame({kToolbarApply, kControlSet, ""}), Toolbar::Event::kApply);
  auto change = toolbar.ChangeRequest();
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->filter(), "udp port 80");
  EXPECT_FALSE(change->has_vnis());
  EXPECT_FALSE(change->has_inner_filter());
}

TEST(ToolbarTest, MirrorCapturesSendVnisAndInnerFilter) {
  Toolbar toolbar({"", true, {7, 9}, "tcp"});
  EXPECT_EQ(toolbar.value(kToolbarVnis), "7,9");
  toolbar.OnFrame({kToolbarVnis, kControlSet, "1, 2,3"});
  toolbar.OnFrame({kToolbarInnerFilter, kControlSet, "udp"});
  auto change = toolbar.ChangeRequest();
  ASSERT_TRUE(change.ok());
  ASSERT_TRUE(change->has_vnis());
  EXPECT_EQ(change->vnis().vnis_size(), 3);
  EXPECT_EQ(change->vnis().vnis(2), 3u);
  EXPECT_EQ(change->inner_filter(), "udp");
  toolbar.OnFrame({kToolbarVnis, kControlSet, "1,x"});
  EXPECT_EQ(toolbar.ChangeRequest().status().code(), StatusCode::kInvalidArgument);
}

TEST(ToolbarTest, VniListsAndAnswers) {
  EXPECT_TRUE(ParseVniList(" ").value().empty());
  EXPECT_EQ(ParseVniList("16777215").value().at(0), 16777215u);
  EXPECT_FALSE(ParseVniList("16777216").ok());
  EXPECT_FALSE(ParseVniList("1,,2").ok());
  EXPECT_FALSE(ParseVniList("-1").ok());
  std::vector<AgentChange> results = {{"a:50051", Status::Ok(), "udp"},
                                      {"b:50051", InvalidArgument("bad filter"), ""}};
  EXPECT_EQ(DescribeChange(results),
            "filter applied on a:50051: 'udp'; b:50051 refused the filter: bad filter; the old "
            "filter is kept");
  EXPECT_EQ(DescribeDrops({1, 2, 3}), "6 (kernel 1, interface 2, capd queue 3)");
}

}  // namespace
}  // namespace capd::client
