// capd-upload's view of capd's recordings folder (uploader/recording_files.h), on files laid out
// as capd lays them out: only files with capd's note are uploaded (never the one being written),
// none twice once marked, oldest first; the destination comes from the recording's request.

#include "uploader/recording_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "capfile/finished_note.h"

namespace capd::uploader {
namespace {

namespace fs = std::filesystem;

class UploadableFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/capd-upload-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    fs::create_directories(root_ / "night");
  }
  void TearDown() override { fs::remove_all(root_); }

  // A ring file NAME_0000N_...pcapng; with its note when `finished`.
  fs::path RingFile(int number, bool finished) {
    char name[64];
    std::snprintf(name, sizeof name, "night_%05d_20260101120000.pcapng", number);
    const fs::path path = root_ / "night" / name;
    std::ofstream(path) << "pcapng bytes";
    if (finished) {
      capfile::FinishedFile file;
      file.number = static_cast<uint32_t>(number);
      file.packets = 10u * static_cast<uint64_t>(number);
      file.interfaces = {"eth0"};
      file.agents = {"i-0abc"};
      file.link_types = {1};
      std::ofstream(path.string() + capfile::kFinishedSuffix) << capfile::FinishedNoteText(file);
    }
    return path;
  }

  std::vector<uint32_t> Numbers() {
    std::vector<uint32_t> numbers;
    for (const auto& f : FilesToUpload(root_.string(), "night", [](const std::string&) {})) {
      numbers.push_back(f.number);
    }
    return numbers;
  }

  fs::path root_;
};

TEST_F(UploadableFilesTest, OnlyFinishedFilesNotYetUploadedOldestFirst) {
  RingFile(10, true);
  const fs::path second = RingFile(9, true);
  RingFile(11, false);  // being written: no note yet
  EXPECT_EQ(Numbers(), (std::vector<uint32_t>{9, 10}));
  auto files = FilesToUpload(root_.string(), "night", [](const std::string&) {});
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].path, second.string());
  EXPECT_EQ(files[0].packets, 90u);
  EXPECT_EQ(files[0].agents, std::vector<std::string>{"i-0abc"});
  ASSERT_TRUE(MarkUploaded(second.string()).ok());
  EXPECT_TRUE(fs::is_regular_file(second.string() + capfile::kUploadedSuffix));
  struct stat st {};
  ASSERT_EQ(::stat((second.string() + capfile::kUploadedSuffix).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(Numbers(), (std::vector<uint32_t>{10}));
}

TEST_F(UploadableFilesTest, LinksAndDamagedNotesAreLeftOut) {
  const fs::path real = RingFile(1, true);
  fs::create_symlink(real, root_ / "night" / "night_00002_20260101120000.pcapng");
  fs::copy_file(real.string() + capfile::kFinishedSuffix,
                root_ / "night" / "night_00002_20260101120000.pcapng.finished");
  const fs::path damaged = RingFile(3, false);
  std::ofstream(damaged.string() + capfile::kFinishedSuffix) << "number x\n";
  std::vector<std::string> logged;
  auto files = FilesToUpload(root_.string(), "night",
                             [&](const std::string& line) { logged.push_back(line); });
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].number, 1u);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_NE(logged[0].find("night_00003"), std::string::npos) << logged[0];
}

TEST_F(UploadableFilesTest, TheDestinationComesFromTheRecordingsRequest) {
  std::ofstream(root_ / "night" / "request.txtpb")
      << "name: \"night\"\ninterface: \"eth0\"\nupload: \"s3://caps/fleet\"\n";
  auto destination = RecordingDestination(root_.string(), "night");
  ASSERT_TRUE(destination.ok()) << destination.status().message();
  EXPECT_EQ(*destination, "s3://caps/fleet");
  // A newer capd's request, with a field this program does not know, still gives it.
  std::ofstream(root_ / "night" / "request.txtpb")
      << "name: \"night\"\nupload: \"s3://caps/x\"\nsome_later_field: 3\n";
  destination = RecordingDestination(root_.string(), "night");
  ASSERT_TRUE(destination.ok()) << destination.status().message();
  EXPECT_EQ(*destination, "s3://caps/x");
  EXPECT_EQ(RecordingDestination(root_.string(), "nothing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(RecordingNames(root_.string()), std::vector<std::string>{"night"});
}

}  // namespace
}  // namespace capd::uploader
