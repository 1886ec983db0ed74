// Recording files on disk (issue 16 items 6 and 8): capd follows no link planted in --record-dir
// or a recording folder (a root-only target keeps its bytes) and refuses folders other users may
// write; folders are 0750 and files 0640 under umask 000; capctl -w onto a link to a file is
// refused. A full disk (a 4 MiB tmpfs the test mounts) fails the recording with the reason,
// every file reads to its end with capinfos, the count equals the packets in the files, and the
// failed recording does not resume after a restart; after kill -9 and a restart the count
// equals the packets in the files again. The free-space floor (--record-keep-free, an 8 MiB
// tmpfs, as deployed and as root): a ring waiting for its upload deletes its oldest files not
// uploaded yet and records on; a disk filled by something else stops the recording at the floor
// with the reason; a ring that cannot fit is refused at start.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tests/integration/hardened_agent_fixture.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7200;
constexpr uid_t kNobody = 65534;
constexpr char kFilter[] = "udp port 7200";

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteText(const fs::path& path, const std::string& text, mode_t mode) {
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }
  ::chmod(path.c_str(), mode);
}

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

uid_t OwnerOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_uid;
}

// A tmpfs mounted for one test, detached when the test ends (whatever happened).
class TmpfsMount {
 public:
  TmpfsMount(const fs::path& where, const std::string& options) : where_(where) {
    fs::create_directories(where_);
    mounted_ = ::mount("tmpfs", where_.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path where_;
  bool mounted_ = false;
};

class RecordingFilesTest : public HardenedAgentTest {
 protected:
  // A folder for capd's records; with `user` it belongs to nobody, inside a test folder nobody
  // may pass through.
  fs::path RecordDir(bool as_nobody) {
    fs::permissions(dir_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    const fs::path records = File("records");
    fs::create_directories(records);
    fs::permissions(records, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
    if (as_nobody) {
      EXPECT_EQ(::chown(records.c_str(), kNobody, kNobody), 0);
    }
    return records;
  }

  void StartRecorder(const fs::path& records, bool as_nobody,
                     const std::vector<std::string>& more = {}) {
    std::vector<std::string> flags = {"--no-metadata", "--record-dir", records.string()};
    flags.insert(flags.end(), more.begin(), more.end());
    if (as_nobody) flags.insert(flags.begin(), {"--user", "nobody"});
    ASSERT_NO_FATAL_FAILURE(StartAgentWith(flags));
  }

  // `capctl record ARGS... --agent A`, expecting exit `code`; returns its stdout.
  std::string Record(const std::vector<std::string>& args, int code = 0) {
    const std::string name = "record-" + std::to_string(runs_++);
    std::vector<std::string> argv = {"record"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--agent", kAgentTarget});
    RunCapctl(name, argv, code);
    return ReadText(File(name + ".out"));
  }

  // The line `capctl record list` prints for `recording` ("" when it is not listed) and the
  // line after it (the message, when there is one).
  struct Listed {
    std::string line;
    std::string next;
    std::string state;
    uint64_t packets = 0;
  };
  Listed List(const std::string& recording) {
    const std::string text = Record({"list"});
    Listed listed;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(recording + ": ", 0) != 0) continue;
      listed.line = line;
      std::getline(in, listed.next);
      std::smatch m;
      if (std::regex_search(line, m, std::regex(R"(^[^:]+: (\w+) on .*, (\d+) packets,)"))) {
        listed.state = m[1].str();
        listed.packets = std::stoull(m[2].str());
      }
      break;
    }
    return listed;
  }

  // The ring files of `recording`, oldest first.
  static std::vector<fs::path> RingFiles(const fs::path& folder, const std::string& recording) {
    std::vector<fs::path> files;
    const std::regex pattern(recording + R"(_\d{5}_\d{14}\.pcapng)");
    for (const auto& e : fs::directory_iterator(folder)) {
      if (std::regex_match(e.path().filename().string(), pattern)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  // Packets in the files, each read to its end by capinfos (a file cut short fails) and by
  // libpcap; both must agree.
  static uint64_t PacketsInFiles(const std::vector<fs::path>& files) {
    uint64_t total = 0;
    for (const fs::path& f : files) {
      const CommandResult r = RunCommand({"capinfos", "-M", "-c", f.string()});
      EXPECT_TRUE(r.status.Exited(0)) << "capinfos " << f << ": " << r.status << "\n" << r.output;
      EXPECT_EQ(r.output.find("cut short"), std::string::npos) << r.output;
      std::smatch m;
      uint64_t counted = 0;
      if (std::regex_search(r.output, m, std::regex(R"(Number of packets:\s+(\d+))"))) {
        counted = std::stoull(m[1].str());
      } else {
        ADD_FAILURE() << r.output;
      }
      auto read = ReadCapture(f);
      EXPECT_TRUE(read.ok()) << f << ": " << read.status().message();
      if (read.ok()) {
        EXPECT_EQ(read->size(), counted) << f;
      }
      total += counted;
    }
    return total;
  }

  // Sends `count` packets from the peer in rounds of 500.
  void Send(int count, const std::string& tag) {
    const UniqueFd peer = PeerSocket();
    for (int sent = 0; sent < count; sent += 500) {
      ASSERT_NO_FATAL_FAILURE(
          SendAll(peer.get(), kDst, kPort,
                  MakePayloads(std::min(500, count - sent), tag + std::to_string(sent))));
    }
  }

  // Polls `capctl record list` until `done` holds for the recording (20 s at most).
  Listed WaitForListed(const std::string& recording,
                       const std::function<bool(const Listed&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    Listed listed;
    while (std::chrono::steady_clock::now() < deadline) {
      listed = List(recording);
      if (done(listed)) return listed;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ADD_FAILURE() << "recording " << recording << " never got there: " << listed.line << " / "
                  << listed.next;
    return listed;
  }

  int runs_ = 0;
};

// capd as root (where a followed link does harm): links planted in an adopted recording folder
// (the temporaries of both state files, a ring file's name) and in the record dir (a folder
// elsewhere) are not followed; the root-only targets keep their bytes; the refusals say why.
// `capctl record delete`, as deployed: refused while the recording runs (exit 2, saying to
// stop it first); once stopped, its folder and every file in it are gone (a link planted there
// is removed, its target untouched), the list no longer has it, a second delete is "no
// recording", and the name starts a new recording.
TEST_F(RecordingFilesTest, DeleteRemovesAStoppedRecordingAndFreesItsName) {
  const fs::path records = RecordDir(true);
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, true));
  Record({"start", "--name", "old", "-i", "veth0", "-f", "udp port 7200"});
  const std::string running =
      RunCapctl("delete-running", {"record", "delete", "old", "--agent", kAgentTarget}, 2);
  EXPECT_NE(running.find("is running: stop it first"), std::string::npos) << running;
  EXPECT_EQ(List("old").state, "running");
  Record({"stop", "old"});
  const fs::path folder = records / "old";
  ASSERT_TRUE(fs::exists(folder / "request.txtpb"));
  const fs::path victim = File("victim");
  WriteText(victim, "not capd's\n", 0600);
  fs::create_symlink(victim, folder / "old_99999_20240101000000.pcapng");

  const std::string deleted =
      RunCapctl("delete", {"record", "delete", "old", "--agent", kAgentTarget}, 0);
  EXPECT_NE(deleted.find("recording old deleted"), std::string::npos) << deleted;
  EXPECT_FALSE(fs::exists(fs::symlink_status(folder))) << folder << " is still there";
  EXPECT_EQ(ReadText(victim), "not capd's\n");
  EXPECT_EQ(List("old").line, "");
  const std::string again =
      RunCapctl("delete-again", {"record", "delete", "old", "--agent", kAgentTarget}, 2);
  EXPECT_NE(again.find("no recording named 'old'"), std::string::npos) << again;

  Record({"start", "--name", "old", "-i", "veth0", "-f", "udp port 7200"});
  EXPECT_EQ(List("old").state, "running");
  ExpectAgentAlive();
}

TEST_F(RecordingFilesTest, PlantedLinksAreNotFollowed) {
  const fs::path records = RecordDir(false);
  const fs::path victims = File("root-only");
  fs::create_directories(victims);
  const std::vector<std::string> targets = {"request-target", "state-target", "ring-target"};
  for (const std::string& t : targets) WriteText(victims / t, "secret " + t + "\n", 0600);
  // A recording folder left as if capd had made it, with links where capd writes.
  const fs::path planted = records / "planted";
  fs::create_directories(planted);
  ::chmod(planted.c_str(), 0750);
  WriteText(planted / "request.txtpb",
            "name: \"planted\"\ninterface: \"veth0\"\nfilter: \"udp port 7200\"\n", 0640);
  WriteText(planted / "recording.state", "state RUNNING\n", 0640);
  fs::create_symlink(victims / "request-target", planted / "request.txtpb.tmp");
  fs::create_symlink(victims / "state-target", planted / "recording.state.tmp");
  fs::create_symlink(victims / "ring-target", planted / "planted_00001_20240101000000.pcapng");
  // A link in the record dir to a folder elsewhere holding a valid recording.
  const fs::path elsewhere = File("elsewhere");
  fs::create_directories(elsewhere);
  WriteText(elsewhere / "request.txtpb", "name: \"linked\"\ninterface: \"veth0\"\n", 0640);
  WriteText(elsewhere / "recording.state", "state RUNNING\n", 0640);
  fs::create_directory_symlink(elsewhere, records / "linked");
  // And one under the name a client then asks for.
  const fs::path asked = File("asked");
  fs::create_directories(asked);
  fs::create_directory_symlink(asked, records / "asked");

  const UniqueFd sink = AgentSocket(kDst, kPort);
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, false));
  ASSERT_TRUE(agent().WaitForStderr("recording planted resumed", kStartTimeout))
      << agent().Describe();
  ASSERT_NO_FATAL_FAILURE(Send(100, "planted"));
  WaitForListed("planted", [](const Listed& l) { return l.packets == 100; });
  Record({"stop", "planted"});
  const std::string refused =
      RunCapctl("start-asked",
                {"record", "start", "--name", "asked", "-i", kIface, "--agent", kAgentTarget}, 2);
  EXPECT_NE(refused.find("is a symbolic link: refused"), std::string::npos) << refused;
  ASSERT_NO_FATAL_FAILURE(StopAgent());

  for (const std::string& t : targets) {
    EXPECT_EQ(ReadText(victims / t), "secret " + t + "\n") << t;
    EXPECT_EQ(ModeOf(victims / t), 0600u) << t;
  }
  EXPECT_TRUE(fs::is_empty(asked));
  EXPECT_EQ(ReadText(elsewhere / "recording.state"), "state RUNNING\n");
  EXPECT_NE(agent().Stderr().find("recording folder " + (records / "linked").string() +
                                  " is a symbolic link: refused"),
            std::string::npos)
      << agent().Stderr();
  EXPECT_NE(
      agent().Stderr().find("left " + (planted / "planted_00001_20240101000000.pcapng").string() +
                            " out of the ring"),
      std::string::npos)
      << agent().Stderr();
  // The state files are capd's own files now; the planted ring link is not a recording file.
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(planted / "recording.state")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(planted / "recording.state.tmp")));
  const auto files = RingFiles(planted, "planted");
  uint64_t in_files = 0;
  std::vector<fs::path> regular;
  for (const auto& f : files) {
    if (fs::is_regular_file(fs::symlink_status(f))) regular.push_back(f);
  }
  in_files = PacketsInFiles(regular);
  EXPECT_EQ(in_files, 100u);
}

// An existing record dir that another user owns, or that group or others may write, is refused
// at start with the reason (capd exits 2).
TEST_F(RecordingFilesTest, RecordDirOthersCouldWriteIsRefused) {
  const fs::path records = RecordDir(false);
  ::chmod(records.c_str(), 0777);
  ASSERT_NO_FATAL_FAILURE(
      Spawn("capd-writable",
            {kCapdPath, "--listen", kAgentTarget, "--record-dir", records.string()}, &agent_));
  ExpectExit(*agent_, 2);
  EXPECT_NE(agent_->Stderr().find("--record-dir " + records.string() +
                                  " is writable by its group or by others (mode 0777): refused"),
            std::string::npos)
      << agent_->Stderr();
  ::chmod(records.c_str(), 0755);  // root's, readable, but capd runs as nobody
  ASSERT_NO_FATAL_FAILURE(Spawn("capd-owner",
                                {kCapdPath, "--listen", kAgentTarget, "--user", "nobody",
                                 "--no-metadata", "--record-dir", records.string()},
                                &agent_));
  ExpectExit(*agent_, 2);
  EXPECT_NE(agent_->Stderr().find("belongs to uid 0, not to capd's user (uid 65534): refused"),
            std::string::npos)
      << agent_->Stderr();
  agent_.reset();
}

// Folders 0750, files 0640, owned by capd's user, even when capd starts under umask 000.
void ExpectModes(const fs::path& records, uid_t owner) {
  EXPECT_EQ(ModeOf(records), 0750u);
  EXPECT_EQ(OwnerOf(records), owner);
  const fs::path folder = records / "modes";
  EXPECT_EQ(ModeOf(folder), 0750u);
  EXPECT_EQ(OwnerOf(folder), owner);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(folder)) {
    EXPECT_EQ(ModeOf(e.path()), 0640u) << e.path();
    EXPECT_EQ(OwnerOf(e.path()), owner) << e.path();
    ++files;
  }
  EXPECT_GE(files, 3u);  // request, state, at least one ring file
}

class RecordingModesTest : public RecordingFilesTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RecordingModesTest, FoldersAre0750AndFiles0640UnderUmask000) {
  const bool as_nobody = GetParam();
  fs::permissions(dir_->path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const fs::path parent = File("state");
  fs::create_directories(parent);
  if (as_nobody) {
    ASSERT_EQ(::chown(parent.c_str(), kNobody, kNobody), 0);
  }
  const fs::path records = parent / "records";  // capd makes it
  const mode_t old_umask = ::umask(0);
  StartRecorder(records, as_nobody);
  ::umask(old_umask);
  ASSERT_FALSE(HasFatalFailure());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  Record({"start", "--name", "modes", "-i", kIface, "-f", kFilter, "--rotate-size", "20k"});
  ASSERT_NO_FATAL_FAILURE(Send(200, "modes"));
  WaitForListed("modes", [](const Listed& l) { return l.packets == 200; });
  Record({"stop", "modes"});
  ExpectModes(records, as_nobody ? kNobody : 0);
  EXPECT_EQ(PacketsInFiles(RingFiles(records / "modes", "modes")), 200u);
}

INSTANTIATE_TEST_SUITE_P(AsNobodyAndAsRoot, RecordingModesTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("AsNobody") : std::string("AsRoot");
                         });

// capctl -w onto a link to a (root-only) file: refused with the reason, the target unchanged.
TEST_F(RecordingFilesTest, CapctlWriteOntoALinkToAFileIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartAgentWith({"--no-metadata"}));
  const fs::path target = File("root-only");
  WriteText(target, "keep\n", 0600);
  const fs::path link = File("out.pcapng");
  fs::create_symlink(target, link);
  const std::string err = RunCapctl(
      "stream", {"stream", "--agent", kAgentTarget, "-i", kIface, "-c", "1", "-w", link.string()},
      2);
  EXPECT_NE(err.find("refusing to write through symbolic link " + link.string()), std::string::npos)
      << err;
  EXPECT_EQ(ReadText(target), "keep\n");
}

// capd as deployed, its record dir a 4 MiB tmpfs and its free-space floor off: the recording
// fills it and fails with the writer's reason; every file reads to its end; the count is what the
// files hold; the state file says failed and a restarted capd does not resume it.
TEST_F(RecordingFilesTest, FullDiskFailsTheRecordingWithWholeFilesAndTrueCounts) {
  fs::permissions(dir_->path(),
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  const fs::path records = File("records");
  TmpfsMount tmpfs(records, "size=4m,mode=0750,uid=65534,gid=65534");
  ASSERT_TRUE(tmpfs.mounted()) << "mount tmpfs: " << std::strerror(errno);
  const UniqueFd sink = AgentSocket(kDst, kPort);
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, true, {"--record-keep-free", "0"}));
  Record({"start", "--name", "full", "-i", kIface, "-f", kFilter, "--rotate-size", "1M",
          "--rotate-files", "100"});
  Listed listed;
  for (int round = 0; round < 40; ++round) {
    ASSERT_NO_FATAL_FAILURE(Send(1000, "full" + std::to_string(round) + "-"));
    listed = List("full");
    if (listed.state == "failed") break;
  }
  listed = WaitForListed("full", [](const Listed& l) { return l.state == "failed"; });
  EXPECT_NE(listed.next.find("No space left on device"), std::string::npos) << listed.line << "\n"
                                                                            << listed.next;
  EXPECT_EQ(listed.next.find("capture failed: "), std::string::npos) << listed.next;
  const auto files = RingFiles(records / "full", "full");
  ASSERT_GE(files.size(), 3u);
  const uint64_t in_files = PacketsInFiles(files);
  EXPECT_GT(in_files, 0u);
  EXPECT_EQ(listed.packets, in_files) << listed.line;
  EXPECT_NE(ReadText(records / "full" / "recording.state").find("state FAILED"), std::string::npos)
      << ReadText(records / "full" / "recording.state");
  std::printf("full disk: %zu files, %llu packets listed, %llu in the files; %s\n", files.size(),
              static_cast<unsigned long long>(listed.packets),
              static_cast<unsigned long long>(in_files), listed.next.c_str());

  ASSERT_NO_FATAL_FAILURE(StopAgent());
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, true, {"--record-keep-free", "0"}));
  const Listed after = List("full");
  EXPECT_EQ(after.state, "failed") << after.line;
  EXPECT_EQ(after.packets, in_files) << after.line;
  EXPECT_EQ(agent().Stderr().find("recording full resumed"), std::string::npos) << agent().Stderr();
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// kill -9 of capd mid-recording, then a restart: the resumed recording's count is what its
// files hold (the state file, written every few seconds, lags them).
TEST_F(RecordingFilesTest, KillNineThenRestartCountsWhatTheFilesHold) {
  const fs::path records = RecordDir(true);
  const UniqueFd sink = AgentSocket(kDst, kPort);
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, true));
  Record({"start", "--name", "crash", "-i", kIface, "-f", kFilter, "--rotate-size", "200k",
          "--rotate-files", "100"});
  // Two rounds, then kill -9 as soon as the files hold them all: the state file is rewritten
  // every two seconds, so it lags them.
  ASSERT_NO_FATAL_FAILURE(Send(2000, "a"));
  WaitForListed("crash", [](const Listed& l) { return l.packets == 2000; });
  ASSERT_NO_FATAL_FAILURE(Send(2000, "b"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  uint64_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = 0;
    for (const auto& f : RingFiles(records / "crash", "crash")) {
      auto packets = ReadCapture(f);  // the current file may end mid-block while being written
      if (packets.ok()) seen += packets->size();
    }
    if (seen >= 4000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(seen, 4000u);
  ASSERT_TRUE(agent().Signal(SIGKILL));
  ASSERT_TRUE(agent().WaitFor(kExitTimeout).has_value());
  const std::string state_before = ReadText(records / "crash" / "recording.state");

  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, true));
  ASSERT_TRUE(agent().WaitForStderr("recording crash resumed", kStartTimeout))
      << agent().Describe();
  const Listed resumed = List("crash");
  EXPECT_EQ(resumed.state, "running") << resumed.line;
  Record({"stop", "crash"});
  const Listed stopped = List("crash");
  const uint64_t in_files = PacketsInFiles(RingFiles(records / "crash", "crash"));
  EXPECT_EQ(in_files, 4000u);
  EXPECT_EQ(resumed.packets, in_files) << resumed.line << "\nstate file before:\n" << state_before;
  EXPECT_EQ(stopped.packets, in_files) << stopped.line;
  std::printf("kill -9: state file said %s; resumed count %llu, files %llu\n",
              LineWith(state_before, "packets ").c_str(),
              static_cast<unsigned long long>(resumed.packets),
              static_cast<unsigned long long>(in_files));
}

// The lowest free space seen on a filesystem, sampled every few milliseconds on a thread of its
// own while the test runs traffic (a sample between two writes would miss nothing larger than
// one batch).
class FreeSpaceSampler {
 public:
  explicit FreeSpaceSampler(const fs::path& where) : where_(where) {
    thread_ = std::thread([this] {
      while (!done_.load()) {
        struct statvfs fs {};
        if (::statvfs(where_.c_str(), &fs) == 0) {
          const uint64_t free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
          uint64_t low = lowest_.load();
          while (free < low && !lowest_.compare_exchange_weak(low, free)) {
          }
          samples_.fetch_add(1);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  ~FreeSpaceSampler() { Stop(); }
  void Stop() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t lowest() const { return lowest_.load(); }
  uint64_t samples() const { return samples_.load(); }

 private:
  fs::path where_;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> lowest_{UINT64_MAX};
  std::atomic<uint64_t> samples_{0};
  std::thread thread_;
};

uint64_t FreeBytesOn(const fs::path& where) {
  struct statvfs fs {};
  EXPECT_EQ(::statvfs(where.c_str(), &fs), 0) << where;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

// The free-space floor (capd --record-keep-free) on an 8 MiB tmpfs: 3 MiB, files of 500 kB.
constexpr uint64_t kFloor = 3 << 20;
constexpr uint64_t kFileBytes = 500'000;

class RecordingFloorTest : public RecordingFilesTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool as_nobody() const { return GetParam(); }

  // An 8 MiB tmpfs as --record-dir (capd's user's own) and capd with the floor.
  void SetUpDisk() {
    fs::permissions(dir_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    records_ = File("records");
    const std::string owner = as_nobody() ? "uid=65534,gid=65534" : "uid=0,gid=0";
    tmpfs_ = std::make_unique<TmpfsMount>(records_, "size=8m,mode=0750," + owner);
    ASSERT_TRUE(tmpfs_->mounted()) << "mount tmpfs: " << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(
        StartRecorder(records_, as_nobody(), {"--record-keep-free", std::to_string(kFloor)}));
  }

  fs::path records_;
  std::unique_ptr<TmpfsMount> tmpfs_;
};

// A recording that uploads, its store away (no capd-upload runs): the ring keeps every file
// waiting for its upload until free space reaches the floor, then deletes its oldest files not
// uploaded yet, down to its normal size, counts them, and records on with the newest packets.
// The filesystem never goes below the floor by more than one file, no write fails, `record list`
// and capd's log say so, and every file left reads whole with capinfos and libpcap.
TEST_P(RecordingFloorTest, ARingWaitingForItsUploadDeletesItsOldestFilesAtTheFloor) {
  ASSERT_NO_FATAL_FAILURE(SetUpDisk());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  Record({"start", "--name", "up", "-i", kIface, "-f", kFilter, "--rotate-size", "500k",
          "--rotate-files", "2", "--upload", "s3://caps/away/"});
  FreeSpaceSampler sampler(records_);
  std::string last_tag;
  int deleting_rounds = 0;
  uint64_t sent = 0;
  for (int round = 0; round < 60 && deleting_rounds < 4; ++round) {
    last_tag = "up" + std::to_string(round) + "x";
    ASSERT_NO_FATAL_FAILURE(Send(1000, last_tag));
    sent += 1000;
    const std::string list = Record({"list"});
    ASSERT_NE(list.find("up: running on "), std::string::npos) << list;
    if (list.find("files deleted before their upload") != std::string::npos) ++deleting_rounds;
  }
  ASSERT_EQ(deleting_rounds, 4) << Record({"list"});
  // Every packet sent is in the files (those deleted count), the last round's too.
  WaitForListed("up", [&](const Listed& l) { return l.packets == sent; });
  sampler.Stop();
  const std::string list = Record({"list"});
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(list, m, std::regex(R"(  (\d+) files deleted before their upload)")))
      << list;
  const uint64_t deleted = std::stoull(m[1].str());
  EXPECT_GE(deleted, 2u) << list;
  EXPECT_NE(list.find("running"), std::string::npos) << list;
  EXPECT_GE(sampler.lowest() + kFileBytes, kFloor)
      << "free space went to " << sampler.lowest() << " bytes, the floor is " << kFloor;
  EXPECT_EQ(agent().Stderr().find("No space left"), std::string::npos) << agent().Stderr();
  EXPECT_NE(agent().Stderr().find(", not uploaded yet ("), std::string::npos) << agent().Stderr();

  Record({"stop", "up"});
  const auto files = RingFiles(records_ / "up", "up");
  ASSERT_GE(files.size(), 2u);
  // The oldest files went: numbering starts past 00001, and the newest packets are kept.
  EXPECT_EQ(files.front().filename().string().find("up_00001_"), std::string::npos);
  EXPECT_GT(PacketsInFiles(files), 0u);
  bool newest_kept = false;
  for (const CapturedPacket& p : ReadOrFail(files.back())) {
    newest_kept = newest_kept || p.bytes.find(last_tag) != std::string::npos;
  }
  if (!newest_kept) {  // the last round may end in the file before the last one
    for (const CapturedPacket& p : ReadOrFail(files[files.size() - 2])) {
      newest_kept = newest_kept || p.bytes.find(last_tag) != std::string::npos;
    }
  }
  EXPECT_TRUE(newest_kept) << "no packet of the last round " << last_tag << " in the files";
  EXPECT_NE(ReadText(records_ / "up" / "recording.state")
                .find("deleted_before_upload " + std::to_string(deleted)),
            std::string::npos)
      << ReadText(records_ / "up" / "recording.state");
  std::printf(
      "floor %llu: lowest free %llu bytes over %llu samples; %llu files deleted before "
      "upload, %zu left\n",
      static_cast<unsigned long long>(kFloor), static_cast<unsigned long long>(sampler.lowest()),
      static_cast<unsigned long long>(sampler.samples()), static_cast<unsigned long long>(deleted),
      files.size());
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

// The disk filled by something else: the recording (no upload, within its ring) stops at the
// floor with the reason, before any write fails; its files are kept and read whole; a restarted
// capd does not resume it. A start whose ring cannot fit above the floor is refused, saying so.
TEST_P(RecordingFloorTest, SomethingElseFillingTheDiskStopsTheRecordingAtTheFloor) {
  ASSERT_NO_FATAL_FAILURE(SetUpDisk());
  const std::string refused =
      RunCapctl("too-big",
                {"record", "start", "--name", "big", "-i", kIface, "--rotate-size", "1M",
                 "--rotate-files", "100", "--agent", kAgentTarget},
                2);
  EXPECT_NE(refused.find("recording big does not fit: its ring of 100 files of 1000000 bytes"),
            std::string::npos)
      << refused;
  EXPECT_EQ(List("big").line, "");

  const UniqueFd sink = AgentSocket(kDst, kPort);
  Record({"start", "--name", "fill", "-i", kIface, "-f", kFilter, "--rotate-size", "500k",
          "--rotate-files", "4"});
  // Another writer leaves 1 MiB above the floor: less than the ring's 2 MB.
  const uint64_t free = FreeBytesOn(records_);
  ASSERT_GT(free, kFloor + (1 << 20));
  WriteText(records_ / "other-service.log", std::string(free - kFloor - (1 << 20), 'x'), 0600);
  FreeSpaceSampler sampler(records_);
  Listed listed;
  for (int round = 0; round < 40; ++round) {
    ASSERT_NO_FATAL_FAILURE(Send(1000, "fill" + std::to_string(round) + "x"));
    listed = List("fill");
    if (listed.state != "running") break;
  }
  listed = WaitForListed("fill", [](const Listed& l) { return l.state == "stopped"; });
  sampler.Stop();
  const std::string reason = "stopped: free space on " + (records_ / "fill").string() +
                             " below the floor of " + std::to_string(kFloor) + " bytes (";
  EXPECT_NE(listed.next.find(reason), std::string::npos) << listed.line << "\n" << listed.next;
  EXPECT_GE(sampler.lowest() + kFileBytes, kFloor)
      << "free space went to " << sampler.lowest() << " bytes, the floor is " << kFloor;
  EXPECT_EQ(agent().Stderr().find("No space left"), std::string::npos) << agent().Stderr();
  const auto files = RingFiles(records_ / "fill", "fill");
  ASSERT_GE(files.size(), 1u);
  const uint64_t in_files = PacketsInFiles(files);
  EXPECT_GT(in_files, 0u);
  EXPECT_EQ(listed.packets, in_files) << listed.line;
  EXPECT_NE(ReadText(records_ / "fill" / "recording.state").find("state STOPPED"),
            std::string::npos);
  std::printf(
      "stopped at the floor %llu: lowest free %llu bytes over %llu samples; %zu files, "
      "%llu packets; %s\n",
      static_cast<unsigned long long>(kFloor), static_cast<unsigned long long>(sampler.lowest()),
      static_cast<unsigned long long>(sampler.samples()), files.size(),
      static_cast<unsigned long long>(in_files), listed.next.c_str());

  ASSERT_NO_FATAL_FAILURE(StopAgent());
  ASSERT_NO_FATAL_FAILURE(
      StartRecorder(records_, as_nobody(), {"--record-keep-free", std::to_string(kFloor)}));
  EXPECT_EQ(List("fill").state, "stopped");
  EXPECT_EQ(agent().Stderr().find("recording fill resumed"), std::string::npos) << agent().Stderr();
  ASSERT_NO_FATAL_FAILURE(StopAgent());
}

INSTANTIATE_TEST_SUITE_P(AsDeployedAndAsRoot, RecordingFloorTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Nobody" : "Root";
                         });

// capd paused (SIGSTOP) for one test, resumed when the test ends (whatever happened), so that
// the fixture can still stop it.
class PausedAgent {
 public:
  explicit PausedAgent(pid_t pid) : pid_(pid), paused_(::kill(pid, SIGSTOP) == 0) {}
  ~PausedAgent() {
    if (paused_) ::kill(pid_, SIGCONT);
  }
  bool paused() const { return paused_; }

 private:
  pid_t pid_;
  bool paused_;
};

// capctl record fetch, then Ctrl-C (or kill's SIGTERM) while the agent is sending: the call is
// cancelled, capctl exits 1 saying so, and the file it was fetching is left out (neither its .part
// nor a file under its real name). capd is paused after the first chunk came, so the fetch cannot
// end on its own: a capctl that did not cancel would wait for ever (it waited for the call).
class RecordFetchSignalTest : public RecordingFilesTest,
                              public ::testing::WithParamInterface<std::tuple<int, bool>> {};

TEST_P(RecordFetchSignalTest, ASignalCancelsTheFetchAndLeavesNoPartialFile) {
  const auto [signal_number, as_nobody] = GetParam();
  const fs::path records = RecordDir(as_nobody);
  // A stopped recording as capd leaves one, of two sparse 1 GiB files: no disk here, and far more
  // than reaches capctl before capd is paused (a fetch sends files as they are).
  const fs::path recording = records / "big";
  fs::create_directories(recording);
  WriteText(recording / "request.txtpb", "name: \"big\"\ninterface: \"" + std::string(kIface) +
                                             "\"\n",
            0640);
  WriteText(recording / "recording.state", "state STOPPED\nstarted_ns 1\n", 0640);
  const std::string first = "big_00001_20260101000000.pcapng";
  for (const std::string& name : {first, std::string("big_00002_20260101000100.pcapng")}) {
    WriteText(recording / name, "", 0640);
    fs::resize_file(recording / name, uint64_t{1} << 30);
  }
  if (as_nobody) {
    for (const auto& entry : fs::recursive_directory_iterator(records)) {
      ASSERT_EQ(::chown(entry.path().c_str(), kNobody, kNobody), 0) << entry.path();
    }
  }
  ASSERT_NO_FATAL_FAILURE(StartRecorder(records, as_nobody));

  const fs::path out = File("fetched");
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(Spawn("fetch",
                                {kCapctlPath, "record", "fetch", "big", "--out", out.string(),
                                 "--agent", kAgentTarget},
                                &capctl));
  // capctl opens the .part with the first chunk.
  const fs::path part = out / (first + ".part");
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!fs::exists(part) && capctl->Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(fs::exists(part)) << capctl->Describe();
  const PausedAgent paused(AgentPid());
  ASSERT_TRUE(paused.paused());
  ASSERT_TRUE(capctl->Running()) << "the fetch ended before capd was paused; "
                                 << capctl->Describe();

  ASSERT_TRUE(capctl->Signal(signal_number));
  const auto exited = capctl->WaitFor(kExitTimeout);
  ASSERT_TRUE(exited.has_value()) << "capctl did not end after the signal; " << capctl->Describe();
  EXPECT_TRUE(exited->Exited(1)) << exited->ToString() << "\n" << capctl->Describe();
  EXPECT_NE(capctl->Stderr().find("capctl: fetch of recording big interrupted: 0 whole files in " +
                                  out.string() + ", the one it was fetching left out"),
            std::string::npos)
      << capctl->Stderr();
  EXPECT_FALSE(fs::exists(part));
  EXPECT_FALSE(fs::exists(out / first));
}

INSTANTIATE_TEST_SUITE_P(
    SignalsAsDeployedAndAsRoot, RecordFetchSignalTest,
    ::testing::Combine(::testing::Values(SIGINT, SIGTERM), ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<int, bool>>& info) {
      return std::string(std::get<0>(info.param) == SIGINT ? "Sigint" : "Sigterm") +
             (std::get<1>(info.param) ? "Nobody" : "Root");
    });

}  // namespace
}  // namespace capd::test
