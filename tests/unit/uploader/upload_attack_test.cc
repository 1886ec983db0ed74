// capd-upload (the program) attacked through its store and its neighbours, with a stand-in aws:
// a store that never answers (the aws takes the file and never exits): killed after
// --upload-timeout, the file failed, no upload mark (capd's ring keeps it); two capd-upload at
// once: each file uploaded once; folders and --recording names that are not capd's (pattern
// characters, "..", 65 characters): skipped or refused, never a crash. Real processes, no root.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "capfile/finished_note.h"
#include "upload/handoff_process.h"
#include "uploader/recording_files.h"

namespace capd::uploader {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// A recording "night" with an upload destination in a new temp folder; returns that folder.
fs::path RecordingsWithFinishedFiles(int count) {
  char pattern[] = "/tmp/capd-upload-attack-XXXXXX";
  EXPECT_NE(::mkdtemp(pattern), nullptr);
  const fs::path root = pattern;
  const fs::path record_dir = root / "recordings";
  fs::create_directories(record_dir / "night");
  std::ofstream(record_dir / "night" / "request.txtpb")
      << "name: \"night\"\nupload: \"s3://bucket/prefix\"\n";
  for (int number = 1; number <= count; ++number) {
    char name[64];
    std::snprintf(name, sizeof name, "night_%05d_20260101120000.pcapng", number);
    const fs::path file = record_dir / "night" / name;
    std::ofstream(file) << "pcapng bytes";
    capfile::FinishedFile note;
    note.number = static_cast<uint32_t>(number);
    note.interfaces = {"eth0"};
    note.agents = {"host"};
    note.link_types = {1};
    std::ofstream(file.string() + capfile::kFinishedSuffix) << capfile::FinishedNoteText(note);
  }
  return root;
}

TEST(UploadAttackTest, StoreThatNeverAnswersIsCutOffAndTheFileKept) {
  const fs::path root = RecordingsWithFinishedFiles(1);
  const fs::path record_dir = root / "recordings";
  const fs::path file = record_dir / "night" / "night_00001_20260101120000.pcapng";

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

// The service's round and an SSM `capd-upload --once` at the same moment: each aws run appends
// the file it was given to a log; every file appears there once, and every file is marked.
TEST(UploadAttackTest, TwoAtOnceUploadEachFileOnce) {
  const fs::path root = RecordingsWithFinishedFiles(4);
  const fs::path record_dir = root / "recordings";
  const fs::path aws = root / "aws";
  const fs::path log = root / "uploads.log";
  // $3 is the file (aws s3 cp FILE s3://...); the pause makes the two rounds overlap.
  std::ofstream(aws) << "#!/bin/sh\necho \"$3\" >> " << log.string() << "\nsleep 0.3\n";
  fs::permissions(aws, fs::perms::owner_all);
  const std::string one = "timeout 60 " + std::string(CAPD_UPLOAD_BIN) + " --once --record-dir " +
                          record_dir.string() + " --aws " + aws.string() + " > /dev/null 2>&1";
  const int status = std::system(("(" + one + ") & (" + one + "); wait").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  std::istringstream lines(ReadAll(log));
  std::vector<std::string> uploaded;
  for (std::string line; std::getline(lines, line);) uploaded.push_back(line);
  std::sort(uploaded.begin(), uploaded.end());
  EXPECT_EQ(uploaded.size(), 4u) << ReadAll(log);
  EXPECT_EQ(std::unique(uploaded.begin(), uploaded.end()), uploaded.end()) << ReadAll(log);
  for (const auto& entry : fs::directory_iterator(record_dir / "night")) {
    const std::string name = entry.path().string();
    if (name.ends_with(".pcapng")) {
      EXPECT_TRUE(fs::exists(name + capfile::kUploadedSuffix)) << name;
    }
  }
  fs::remove_all(root);
}

TEST(UploadAttackTest, RecordingNamesAreCapdsOnly) {
  for (const std::string& name :
       std::vector<std::string>{"night", "a", "night.1_x-2", std::string(64, 'n')}) {
    EXPECT_TRUE(IsRecordingName(name)) << name;
  }
  for (const std::string& name :
       std::vector<std::string>{"", ".", "..", "-x", ".hidden", "night[", "(a", "a+b", "a b", "a/b",
                                "a$(id)", "a\nb", std::string(65, 'n')}) {
    EXPECT_FALSE(IsRecordingName(name)) << name;
  }
}

// A folder in the record dir whose name holds pattern characters (a stray folder, a restore)
// made capd-upload abort on std::regex_error at every round: no recording was uploaded at all.
TEST(UploadAttackTest, StrayFoldersDoNotStopTheUploads) {
  const fs::path root = RecordingsWithFinishedFiles(1);
  const fs::path record_dir = root / "recordings";
  for (const char* stray : {"night[", "(a", "a+b", "-x", "a b"}) {
    fs::create_directories(record_dir / stray);
    std::ofstream(record_dir / stray / "request.txtpb") << "upload: \"s3://bucket/p\"\n";
  }
  const fs::path aws = root / "aws";
  std::ofstream(aws) << "#!/bin/sh\nexit 0\n";
  fs::permissions(aws, fs::perms::owner_all);
  const fs::path out = root / "out.txt";
  const std::string base = "timeout 60 " + std::string(CAPD_UPLOAD_BIN) + " --once --record-dir " +
                           record_dir.string() + " --aws " + aws.string();
  int status = std::system((base + " > " + out.string() + " 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(status)) << ReadAll(out);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadAll(out);
  EXPECT_NE(ReadAll(out).find("1 files uploaded"), std::string::npos) << ReadAll(out);
  for (const char* name : {"'night['", "..", "../recordings/night", "'$(touch /tmp/x)'"}) {
    status = std::system(
        (base + " --recording " + name + " --destination s3://bucket/p > " + out.string() + " 2>&1")
            .c_str());
    ASSERT_TRUE(WIFEXITED(status)) << name << ": " << ReadAll(out);
    EXPECT_EQ(WEXITSTATUS(status), 2) << name << ": " << ReadAll(out);
    EXPECT_NE(ReadAll(out).find("is no recording name"), std::string::npos) << ReadAll(out);
  }
  fs::remove_all(root);
}

// The memfd that keeps an upload's stderr, found among this process's descriptors.
std::string StderrMemfd() {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const fs::path target = fs::read_symlink(entry.path(), error);
    if (!error && target.string().find("capctl-handoff-stderr") != std::string::npos) {
      return entry.path().string();
    }
  }
  return "";
}

// An aws that writes 64 MiB of errors and stays: the kept stderr holds about 1 MiB, not 64
// (each Poll drops the older part), and its last line still ends the failure's text.
TEST(UploadAttackTest, EndlessStderrIsNotKeptInMemory) {
  auto child = client::ChildProcess::Spawn(
      {"/bin/sh", "-c",
       "head -c 67108864 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'the real reason' >&2; "
       "exec sleep 600"},
      {.quiet_stdout = true, .keep_stderr = true});
  ASSERT_TRUE(child.ok()) << child.status().message();
  const std::string memfd = StderrMemfd();
  ASSERT_FALSE(memfd.empty());
  struct stat st {};
  // Until all of it is written (the test's own timeout is the hang guard), polling as capd-upload
  // does.
  do {
    EXPECT_FALSE((*child)->Poll().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(::stat(memfd.c_str(), &st), 0);
  } while (st.st_size < 67108864 + 17);
  EXPECT_FALSE((*child)->Poll().has_value());
  ASSERT_EQ(::stat(memfd.c_str(), &st), 0);
  EXPECT_LE(static_cast<size_t>(st.st_blocks) * 512, client::kKeptStderrBytes + 65536);
  (*child)->Kill();
  std::optional<Status> outcome;
  while (!(outcome = (*child)->Poll())) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_NE(outcome->message().find("the real reason"), std::string::npos) << outcome->message();
}

}  // namespace
}  // namespace capd::uploader
