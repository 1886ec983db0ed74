// capd-upload (the program) against a store that never answers: the stand-in aws takes the file
// and never exits, as an aws talking to a store that accepts the connection and then says
// nothing. capd-upload kills it after --upload-timeout, counts the file as failed, leaves no
// upload mark (so capd's ring keeps the file) and goes on: real processes, no root.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "capfile/finished_note.h"

namespace capd::uploader {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

TEST(UploadAttackTest, StoreThatNeverAnswersIsCutOffAndTheFileKept) {
  char pattern[] = "/tmp/capd-upload-attack-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const fs::path root = pattern;
  const fs::path record_dir = root / "recordings";
  fs::create_directories(record_dir / "night");
  std::ofstream(record_dir / "night" / "request.txtpb")
      << "name: \"night\"\nupload: \"s3://bucket/prefix\"\n";
  const fs::path file = record_dir / "night" / "night_00001_20260101120000.pcapng";
  std::ofstream(file) << "pcapng bytes";
  capfile::FinishedFile note;
  note.number = 1;
  note.interfaces = {"eth0"};
  note.agents = {"host"};
  note.link_types = {1};
  std::ofstream(file.string() + capfile::kFinishedSuffix) << capfile::FinishedNoteText(note);

  const fs::path aws = root / "aws";
  const fs::path pid_file = root / "aws.pid";
  std::ofstream(aws) << "#!/bin/sh\necho $$ > " << pid_file.string() << "\nexec sleep 600\n";
  fs::permissions(aws, fs::perms::owner_all);

  const fs::path err = root / "err.txt";
  // `timeout 60` is a hang guard only: without the bound capd-upload waits for the 600 s sleep.
  const std::string command = "timeout 60 " + std::string(CAPD_UPLOAD_BIN) + " --once" +
                              " --record-dir " + record_dir.string() + " --aws " + aws.string() +
                              " --upload-timeout 1 > /dev/null 2> " + err.string();
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << ReadAll(err);  // 1: some failed (124 would be the guard)
  EXPECT_NE(ReadAll(err).find("did not finish within 1 s"), std::string::npos) << ReadAll(err);
  EXPECT_FALSE(fs::exists(file.string() + capfile::kUploadedSuffix));
  EXPECT_TRUE(fs::exists(file));
  // The stand-in was killed, not left behind.
  const pid_t pid = std::atoi(ReadAll(pid_file).c_str());
  ASSERT_GT(pid, 0);
  EXPECT_NE(::kill(pid, 0), 0);
  EXPECT_EQ(errno, ESRCH);
  fs::remove_all(root);
}

}  // namespace
}  // namespace capd::uploader
