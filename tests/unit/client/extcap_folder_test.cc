// `capctl extcap install`'s choice of folder from what tshark says, for Wireshark 4.0 to 4.6
// (tests/data/wireshark: 4.0 captured from Debian 12's tshark, the others built from Wireshark's
// sources; its README says how).

#include "client/extcap/extcap_folder.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace capd::client {
namespace {

std::string Data(const std::string& name) {
  std::ifstream in(std::string(CAPD_WIRESHARK_DATA_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

ExtcapFolderChoice ChooseFor(const std::string& version) {
  return ChooseExtcapFolder(Data("tshark-" + version + "-folders.txt"),
                            Data("tshark-" + version + "-version.txt"), "/home/alice", "");
}

TEST(ExtcapFolderTest, Wireshark40ReadsThePersonalConfigurationsExtcapFolder) {
  const ExtcapFolderChoice choice = ChooseFor("4.0.17");
  EXPECT_EQ(choice.folder, "/home/alice/.config/wireshark/extcap");
  EXPECT_TRUE(choice.named_by_wireshark);
  EXPECT_NE(choice.why.find("Wireshark 4.0 "), std::string::npos) << choice.why;
  // Not the global "Extcap path:", which a user cannot write.
  EXPECT_EQ(choice.folder.find("/usr/"), std::string::npos);
}

TEST(ExtcapFolderTest, Wireshark42To46NameTheirPersonalExtcapFolder) {
  for (const char* version : {"4.2", "4.4", "4.6"}) {
    const ExtcapFolderChoice choice = ChooseFor(version);
    EXPECT_EQ(choice.folder, "/home/alice/.local/lib/wireshark/extcap") << version;
    EXPECT_TRUE(choice.named_by_wireshark) << version;
    // The version is not needed when the report names the folder.
    EXPECT_EQ(ChooseExtcapFolder(Data(std::string("tshark-") + version + "-folders.txt"), "",
                                 "/home/alice", "")
                  .folder,
              choice.folder)
        << version;
  }
}

// Whatever folder the report names is followed, a versioned one included.
TEST(ExtcapFolderTest, TheNamedFolderWinsOverTheVersion) {
  const std::string report =
      "Personal configuration:\t/home/bob/.config/wireshark\n"
      "Personal Extcap path:\t/home/bob/.local/lib/wireshark/extcap/4.8\r\n";
  EXPECT_EQ(ChooseExtcapFolder(report, "TShark (Wireshark) 4.0.1.", "/home/alice", "").folder,
            "/home/bob/.local/lib/wireshark/extcap/4.8");
}

// A 4.2 or later tshark whose report names no personal extcap folder: the 4.2 folder under HOME.
TEST(ExtcapFolderTest, ALaterVersionWithoutTheLineGetsTheLocalLibFolder) {
  const ExtcapFolderChoice choice = ChooseExtcapFolder(
      Data("tshark-4.0.17-folders.txt"), "TShark (Wireshark) 4.4.2 (v4.4.2)", "/home/alice", "");
  EXPECT_EQ(choice.folder, "/home/alice/.local/lib/wireshark/extcap");
  EXPECT_FALSE(choice.named_by_wireshark);
  EXPECT_NE(choice.why.find("4.4"), std::string::npos) << choice.why;
}

// No tshark: the folder capctl chose before it asked the version (Wireshark 4.0's), and the
// reason says which folder 4.2 and later read.
TEST(ExtcapFolderTest, WithoutTsharkFallsBackAndSaysWhy) {
  ExtcapFolderChoice choice = ChooseExtcapFolder("", "", "/home/alice", "");
  EXPECT_EQ(choice.folder, "/home/alice/.config/wireshark/extcap");
  EXPECT_FALSE(choice.named_by_wireshark);
  EXPECT_NE(choice.why.find("tshark is not installed"), std::string::npos) << choice.why;
  EXPECT_NE(choice.why.find("/home/alice/.local/lib/wireshark/extcap"), std::string::npos)
      << choice.why;
  EXPECT_NE(choice.why.find("--dir"), std::string::npos) << choice.why;
  choice = ChooseExtcapFolder("", "", "/home/alice", "/srv/alice-config");
  EXPECT_EQ(choice.folder, "/srv/alice-config/wireshark/extcap");
}

TEST(ExtcapFolderTest, VersionFromTsharksFirstLine) {
  int major = 0, minor = 0;
  ASSERT_TRUE(ParseWiresharkVersion(Data("tshark-4.0.17-version.txt"), &major, &minor));
  EXPECT_EQ(major, 4);
  EXPECT_EQ(minor, 0);
  ASSERT_TRUE(ParseWiresharkVersion(Data("tshark-4.6-version.txt"), &major, &minor));
  EXPECT_EQ(major, 4);
  EXPECT_EQ(minor, 6);
  EXPECT_FALSE(ParseWiresharkVersion("tshark: command not found", &major, &minor));
  EXPECT_FALSE(ParseWiresharkVersion("", &major, &minor));
}

}  // namespace
}  // namespace capd::client
