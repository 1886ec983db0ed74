// The note beside each finished recording file (capfile/finished_note.h): what capd writes is
// what capd-upload reads back, and text that is not a note is refused, never half read.

#include "capfile/finished_note.h"

#include <gtest/gtest.h>

namespace capd::capfile {
namespace {

FinishedFile Sample() {
  FinishedFile file;
  file.path = "/var/lib/capd/recordings/night/night_00003_20260101120000.pcapng";
  file.number = 3;
  file.bytes = 20480;
  file.packets = 17;
  file.first_ns = 1767268800123456789ULL;
  file.last_ns = 1767268801987654321ULL;
  file.opened_seconds = 1767268800;
  file.interfaces = {"eth0", "vxlan0\tvni 7"};
  file.agents = {"i-0abc", "i-0abc"};
  file.link_types = {1, 101};
  return file;
}

TEST(FinishedNoteTest, WhatCapdWritesCapdUploadReadsBack) {
  const FinishedFile file = Sample();
  auto back = ParseFinishedNote(FinishedNoteText(file), "elsewhere/x.pcapng");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->path, "elsewhere/x.pcapng");
  EXPECT_EQ(back->number, 3u);
  EXPECT_EQ(back->bytes, 20480u);
  EXPECT_EQ(back->packets, 17u);
  EXPECT_EQ(back->first_ns, file.first_ns);
  EXPECT_EQ(back->last_ns, file.last_ns);
  EXPECT_EQ(back->opened_seconds, file.opened_seconds);
  // A tab in a name would split the line: it becomes '_'.
  EXPECT_EQ(back->interfaces, (std::vector<std::string>{"eth0", "vxlan0_vni 7"}));
  EXPECT_EQ(back->agents, file.agents);
  EXPECT_EQ(back->link_types, file.link_types);
}

TEST(FinishedNoteTest, AFileWithoutPacketsOrInterfacesToo) {
  FinishedFile empty;
  empty.number = 1;
  auto back = ParseFinishedNote(FinishedNoteText(empty), "p");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->packets, 0u);
  EXPECT_TRUE(back->interfaces.empty());
  EXPECT_TRUE(back->link_types.empty());
}

TEST(FinishedNoteTest, TextThatIsNotANoteIsRefused) {
  EXPECT_FALSE(ParseFinishedNote("", "p").has_value());
  EXPECT_FALSE(ParseFinishedNote("number 1\npackets 2\n", "p").has_value());  // counts missing
  std::string text = FinishedNoteText(Sample());
  EXPECT_FALSE(ParseFinishedNote(text + "packets -1\n", "p").has_value());
  EXPECT_FALSE(ParseFinishedNote(text + "link_types 1,x\n", "p").has_value());
  EXPECT_FALSE(ParseFinishedNote(text + "interface no-tab\n", "p").has_value());
  // A key of a later version is skipped.
  EXPECT_TRUE(ParseFinishedNote(text + "compressed 1\n", "p").has_value());
}

}  // namespace
}  // namespace capd::capfile
