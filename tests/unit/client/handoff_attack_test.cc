// The hand-off's commands given a file whose relative name starts with '-' (`-w -cap.pcapng`):
// the post-rotate command and the aws CLI get "./-cap..." and never read it as an option (before,
// `--post-rotate cat` failed on "-cap_00001_...": "invalid option", and aws took it for a flag).

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "upload/handoff_process.h"
#include "client/output/rotation.h"
#include "upload/s3_upload.h"

namespace capd::client {
namespace {

namespace fs = std::filesystem;

TEST(HandoffAttackTest, ARelativeNameStartingWithADashIsNeverAnOption) {
  EXPECT_EQ(CommandArgument("-cap_00001.pcapng"), "./-cap_00001.pcapng");
  EXPECT_EQ(CommandArgument("--endpoint-url=x_00001.pcapng"), "./--endpoint-url=x_00001.pcapng");
  EXPECT_EQ(CommandArgument("/data/-cap_00001.pcapng"), "/data/-cap_00001.pcapng");
  EXPECT_EQ(CommandArgument("cap_00001.pcapng"), "cap_00001.pcapng");

  FinishedFile file;
  file.path = "--recursive_00001_20261207121400.pcapng";
  S3UploadAction upload({"my-caps", ""}, "");
  EXPECT_EQ(upload.Command(file)[3], "./--recursive_00001_20261207121400.pcapng");
}

TEST(HandoffAttackTest, APostRotateCommandGetsADashNameAsAFile) {
  std::string templ = (fs::temp_directory_path() / "capctl-dash-XXXXXX").string();
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  const fs::path dir = templ;
  const fs::path was = fs::current_path();
  fs::current_path(dir);
  std::ofstream("-n_00001_20261207121400.pcapng") << "pcap";
  FinishedFile file;
  file.path = "-n_00001_20261207121400.pcapng";
  PostRotateAction action("cat > " + (dir / "copy").string());
  auto job = action.Start(file);
  ASSERT_TRUE(job.ok()) << job.status().message();
  std::optional<Status> done;
  // A hang guard: cat ends at once.
  for (int i = 0; i < 2000 && !done; ++i) {
    done = (*job)->Poll();
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  fs::current_path(was);
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->ok()) << done->message();
  std::ifstream in(dir / "copy");
  std::string copied((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(copied, "pcap");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace capd::client
