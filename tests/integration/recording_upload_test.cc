// Agent recordings uploaded to S3 end to end: a real capd (as root and as deployed, --user
// nobody) recording a real veth into a small ring (`capctl record start --upload`), capd-upload
// running beside it as capd's user, the real AWS CLI (Debian's awscli) and a real S3-compatible
// server (s3rver) started by the test on loopback. The bucket is read back with the same CLI and
// checked with libpcap, capinfos and tshark: every packet the recording wrote is there exactly
// once, keys and metadata as upload/s3_upload.h documents; with the server stopped the ring
// keeps every file that is not uploaded and `record list` shows them awaiting upload, and they
// are uploaded once it is back; `capd-upload --once` never uploads the file being written; a bad
// destination is refused with exit 2.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/integration/s3_fixture.h"
#include "tests/support/programs.h"

namespace capd::test {
namespace {

namespace fs = std::filesystem;

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7600;
constexpr char kUploadPath[] = CAPD_UPLOAD_PATH;
constexpr uid_t kNobody = 65534;

class RecordingUploadTest : public S3Test, public ::testing::WithParamInterface<bool> {
 protected:
  bool as_nobody() const { return GetParam(); }
  fs::path RecordDir() const { return File("records"); }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(S3Test::SetUp());
    if (IsSkipped()) return;
    if (!HaveProgram("tshark")) GTEST_SKIP() << "needs tshark (apt-get install tshark)";
    fs::create_directories(RecordDir());
    if (as_nobody()) {
      // capd's user owns the recordings (as the unit's StateDirectory), and capd-upload runs as
      // that user too; the test folder is traversable for it.
      fs::permissions(dir_->path(),
                      fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
      ASSERT_EQ(::chown(RecordDir().c_str(), kNobody, kNobody), 0);
      // The CLI's home: nobody's own (/nonexistent) cannot be written.
      fs::create_directories(File("home"));
      ASSERT_EQ(::chown(File("home").c_str(), kNobody, kNobody), 0);
      setenv("HOME", File("home").c_str(), 1);
    }
    std::vector<std::string> argv = {kCapdPath,      "--listen",          kAgentTarget,
                                     "--name",       "capd-it",           "--no-metadata",
                                     "--record-dir", RecordDir().string()};
    if (as_nobody()) argv.insert(argv.end(), {"--user", "nobody"});
    ASSERT_NO_FATAL_FAILURE(Spawn("capd", argv, &agent_));
    ASSERT_TRUE(agent_->WaitForStderr(std::string("listening on ") + kAgentTarget, kStartTimeout))
        << agent_->Describe();
    sink_ = AgentSocket(kDst, kPort);
  }

  void TearDown() override {
    if (uploader_ && uploader_->Running()) {
      uploader_->Signal(SIGKILL);
      (void)uploader_->WaitFor(kExitTimeout);
    }
    S3Test::TearDown();
  }

  // capd-upload ARGS..., as capd's user: root, or nobody with no capability (as its unit runs it).
  std::vector<std::string> UploaderArgv(std::vector<std::string> args) const {
    std::vector<std::string> argv;
    if (as_nobody()) {
      argv = {"setpriv",         "--reuid=65534",       "--regid=65534",  "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"};
    }
    argv.push_back(kUploadPath);
    argv.insert(argv.end(), {"--record-dir", RecordDir().string(), "--endpoint-url", Endpoint()});
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // The sequence numbers of the test's payloads ("TAG-N-...") in `file`, as tshark reads them.
  std::vector<int> TsharkSequence(const fs::path& file, const std::string& tag) {
    const CommandResult r =
        RunCommand({"tshark", "-n", "-r", file.string(), "-T", "fields", "-e", "udp.payload"});
    EXPECT_TRUE(r.status.Exited(0)) << r.output;
    std::vector<int> sequence;
    std::istringstream in(r.output);
    for (std::string hex; std::getline(in, hex);) {
      std::string text;
      const auto digit = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      };
      for (size_t i = 0; i + 1 < hex.size() && text.size() < 24; i += 2) {
        if (digit(hex[i]) < 0 || digit(hex[i + 1]) < 0) break;
        text += static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1]));
      }
      std::smatch m;
      if (std::regex_search(text, m, std::regex("^" + tag + "-(\\d+)-"))) {
        sequence.push_back(std::stoi(m[1].str()));
      }
    }
    return sequence;
  }

  // Downloads the bucket under `prefix`; checks every key's form and metadata against the
  // object; returns the packets of all objects in key order, and their tshark sequence numbers.
  std::vector<CapturedPacket> DownloadAndCheck(const std::vector<std::string>& keys,
                                               const std::string& prefix, const std::string& tag,
                                               std::vector<int>* sequence) {
    const std::regex form(prefix +
                          "/capd-it/veth0/(\\d{4})/(\\d{2})/(\\d{2})/(\\d{8})T\\d{6}\\.\\d{9}Z_"
                          "\\d{8}T\\d{6}\\.\\d{9}Z_(\\d{5})\\.pcapng");
    const CommandResult down = Aws({"s3", "cp", "--recursive", "--only-show-errors",
                                    std::string("s3://") + kBucket + "/", File("down").string()});
    EXPECT_TRUE(down.status.Exited(0)) << down.output;
    std::vector<CapturedPacket> all;
    for (const std::string& key : keys) {
      std::smatch m;
      EXPECT_TRUE(std::regex_match(key, m, form)) << key;
      if (m.size() == 6) {
        EXPECT_EQ(m[1].str() + m[2].str() + m[3].str(), m[4].str()) << key;
      }
      const fs::path local = File("down") / key;
      const auto packets = ReadOrFail(local);
      EXPECT_NO_FATAL_FAILURE(ExpectCapinfos(local, packets.size()));
      auto meta = Metadata(key);
      EXPECT_EQ(meta["packets"], std::to_string(packets.size())) << key;
      EXPECT_EQ(meta["agent"], "capd-it");
      EXPECT_EQ(meta["interfaces"], "veth0");
      EXPECT_EQ(meta["link-types"], "1");
      if (!packets.empty()) {
        EXPECT_EQ(meta["first-ns"], std::to_string(packets.front().ts_ns)) << key;
        EXPECT_EQ(meta["last-ns"], std::to_string(packets.back().ts_ns)) << key;
      }
      all.insert(all.end(), packets.begin(), packets.end());
      const std::vector<int> numbers = TsharkSequence(local, tag);
      sequence->insert(sequence->end(), numbers.begin(), numbers.end());
    }
    return all;
  }

  // `capctl record ARGS... --agent ...` to its end: its exit code, its output in `out`.
  int Record(std::vector<std::string> args, std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> argv = {kCapctlPath, "record"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--agent", kAgentTarget});
    Spawn("record" + std::to_string(records_++), argv, out);
    auto status = (*out)->WaitFor(kExitTimeout);
    if (!status || !status->exited) return -1;
    return status->code;
  }

  // Polls `record list` until `done` holds for its output (a hang guard, not a timing check).
  std::string ListUntil(const std::function<bool(const std::string&)>& done,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      std::unique_ptr<Subprocess> list;
      if (Record({"list"}, &list) == 0) {
        last = list->Stdout();
        if (done(last)) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    ADD_FAILURE() << "record list never showed what was waited for: " << last;
    return last;
  }

  static bool Has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  }

  std::vector<fs::path> RingFiles(const std::string& name) const {
    std::vector<fs::path> files;
    const std::regex pattern(name + R"(_\d{5}_\d{14}\.pcapng)");
    for (const auto& e : fs::directory_iterator(RecordDir() / name)) {
      if (std::regex_match(e.path().filename().string(), pattern)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  void Send(const std::vector<std::string>& payloads) {
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  }

  std::unique_ptr<Subprocess> uploader_;
  int records_ = 0;
  UniqueFd sink_;
};

// The sequence numbers the payloads carry (those long enough to hold "TAG-N-"), in order.
std::vector<int> Numbered(const std::vector<std::string>& payloads, const std::string& tag) {
  std::vector<int> numbers;
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (payloads[i].rfind(tag + "-" + std::to_string(i) + "-", 0) == 0) {
      numbers.push_back(static_cast<int>(i));
    }
  }
  return numbers;
}

// The whole path with a store that goes away for a while: every packet the recording wrote is in
// the bucket exactly once; while the store is down the ring keeps every file not uploaded (over
// its 2 files) and `record list` says how many await upload; once it is back they are uploaded
// and the ring shrinks back to 2 files.
TEST_P(RecordingUploadTest, EveryRecordedPacketReachesTheBucketOnceAndNoneIsDeletedBefore) {
  constexpr int kFirst = 100;
  constexpr int kSecond = 200;
  ASSERT_NO_FATAL_FAILURE(Spawn("capd-upload", UploaderArgv({"--interval", "0.5"}), &uploader_));
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record({"start", "--name", "up", "-i", kIface, "-f", "udp port 7600", "--rotate-size",
                    "20k", "--rotate-files", "2", "--upload", "s3://caps/fleet/"},
                   &start),
            0)
      << start->Describe();
  EXPECT_TRUE(Has(start->Stdout(), "upload to s3://caps/fleet/")) << start->Stdout();
  auto payloads = MakePayloads(kFirst + kSecond, "rup");
  ASSERT_NO_FATAL_FAILURE(
      Send(std::vector<std::string>(payloads.begin(), payloads.begin() + kFirst)));
  ListUntil([&](const std::string& out) {
    return Has(out, ", " + std::to_string(kFirst) + " packets") &&
           Has(out, " 0 files awaiting upload") && !Keys().empty();
  });

  // The store goes away: nothing more is uploaded, and nothing more is deleted.
  const uint16_t port = s3_port();
  const size_t uploaded_before = Keys().size();
  ASSERT_NO_FATAL_FAILURE(StopS3());
  ASSERT_NO_FATAL_FAILURE(
      Send(std::vector<std::string>(payloads.begin() + kFirst, payloads.end())));
  const std::string held = ListUntil([&](const std::string& out) {
    return Has(out, ", " + std::to_string(kFirst + kSecond) + " packets") &&
           std::regex_search(out, std::regex(R"(\b([3-9]|\d\d+) files awaiting upload)"));
  });
  EXPECT_TRUE(Has(held, "(kept: the ring is over its 2 files until they are uploaded)")) << held;
  ASSERT_TRUE(uploader_->WaitForStderr("not uploaded to s3://caps/fleet/", kStartTimeout))
      << uploader_->Describe();
  // Every file not marked uploaded is still there: the ring's numbers run on without a gap
  // from the oldest file kept.
  const auto files = RingFiles("up");
  ASSERT_GT(files.size(), 3u);
  for (size_t i = 1; i < files.size(); ++i) {
    EXPECT_EQ(std::stoi(files[i].filename().string().substr(3, 5)),
              std::stoi(files[i - 1].filename().string().substr(3, 5)) + 1)
        << files[i];
  }
  for (const auto& file : files) {
    if (!fs::exists(file.string() + ".uploaded")) continue;
    // Only files uploaded before the store went away may be marked.
    EXPECT_LE(std::stoi(file.filename().string().substr(3, 5)), static_cast<int>(uploaded_before))
        << file;
  }

  // The store is back: the files are uploaded and the ring shrinks back to its 2 files.
  ASSERT_NO_FATAL_FAILURE(StartS3(port));
  ListUntil([&](const std::string& out) {
    return Has(out, "up: running") && Has(out, ", 2 files,") &&
           Has(out, " 0 files awaiting upload");
  });
  // Stopping finishes the last file, which is uploaded too.
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record({"stop", "up"}, &stop), 0) << stop->Describe();
  ListUntil([&](const std::string& out) { return Has(out, " 0 files awaiting upload"); });

  const auto keys = Keys();
  ASSERT_GE(keys.size(), 4u);
  std::vector<int> sequence;
  const auto all = DownloadAndCheck(keys, "fleet", "rup", &sequence);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  // tshark agrees: the sequence numbers the payloads carry, each once, in order.
  EXPECT_EQ(sequence, Numbered(payloads, "rup"));
  // One object per ring file number, none twice.
  std::vector<std::string> numbers;
  for (const auto& key : keys) numbers.push_back(key.substr(key.size() - 12, 5));
  EXPECT_EQ(std::adjacent_find(numbers.begin(), numbers.end()), numbers.end());
  uploader_->Signal(SIGTERM);
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*uploader_, 0));
}

// SSM's collect: `capd-upload --once` for a running recording and a destination uploads the
// finished files only, never the one being written, and says how many; after the recording
// stops, the last one too.
TEST_P(RecordingUploadTest, OnceUploadsFinishedFilesNeverTheOneBeingWritten) {
  constexpr int kCount = 150;
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record({"start", "--name", "col", "-i", kIface, "-f", "udp port 7600", "--rotate-size",
                    "20k", "--rotate-files", "100"},
                   &start),
            0)
      << start->Describe();
  const auto payloads = MakePayloads(kCount, "col");
  ASSERT_NO_FATAL_FAILURE(Send(payloads));
  ListUntil(
      [&](const std::string& out) { return Has(out, ", " + std::to_string(kCount) + " packets"); });
  const auto files = RingFiles("col");
  ASSERT_GE(files.size(), 3u);
  const fs::path current = files.back();

  std::unique_ptr<Subprocess> once;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "once1", UploaderArgv({"--once", "--recording", "col", "--destination", "s3://caps/collect"}),
      &once));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*once, 0, std::chrono::seconds(90)));
  EXPECT_EQ(once->Stdout(), std::to_string(files.size() - 1) + " files uploaded\n")
      << once->Describe();
  EXPECT_FALSE(fs::exists(current.string() + ".uploaded"));
  auto keys = Keys();
  ASSERT_EQ(keys.size(), files.size() - 1);
  const std::string current_number = current.filename().string().substr(4, 5);
  for (const auto& key : keys) {
    EXPECT_NE(key.substr(key.size() - 12, 5), current_number) << key;
  }
  // A second pass finds nothing new while the same file is still being written.
  std::unique_ptr<Subprocess> again;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "once2", UploaderArgv({"--once", "--recording", "col", "--destination", "s3://caps/collect"}),
      &again));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*again, 0, std::chrono::seconds(90)));
  EXPECT_EQ(again->Stdout(), "0 files uploaded\n") << again->Describe();

  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record({"stop", "col"}, &stop), 0) << stop->Describe();
  std::unique_ptr<Subprocess> last;
  ASSERT_NO_FATAL_FAILURE(Spawn(
      "once3", UploaderArgv({"--once", "--recording", "col", "--destination", "s3://caps/collect"}),
      &last));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*last, 0, std::chrono::seconds(90)));
  EXPECT_EQ(last->Stdout(), "1 files uploaded\n") << last->Describe();
  keys = Keys();
  std::vector<int> sequence;
  const auto all = DownloadAndCheck(keys, "collect", "col", &sequence);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  EXPECT_EQ(sequence, Numbered(payloads, "col"));
}

// Arkime takes one link type per file: a recording with --decap auto and --upload, fed Geneve
// with a bare-IP payload (geneve-gcp.pcap) and Geneve with Ethernet (geneve.pcap), uploads files
// that are Ethernet throughout (capinfos: one encapsulation for the file), every frame there.
TEST_P(RecordingUploadTest, DecapsulatedUploadsHoldOneLinkTypePerFile) {
  if (!RunCommand({"tcpreplay", "--version"}).status.Exited(0)) {
    GTEST_SKIP() << "tcpreplay is not installed (apt-get install tcpreplay)";
  }
  constexpr size_t kFrames = 1 + 39;
  std::unique_ptr<Subprocess> start;
  ASSERT_EQ(Record({"start", "--name", "ark", "-i", kIface, "--decap", "auto", "--upload",
                    "s3://caps/arkime"},
                   &start),
            0)
      << start->Describe();
  const fs::path real = CAPD_REAL_CAPTURES_DIR;
  for (const char* file : {"geneve-gcp.pcap", "geneve.pcap"}) {
    const CommandResult r = RunCommand(
        {"tcpreplay", "-q", "-t", "-i", "veth1", (real / file).string()}, network().peer_ns());
    ASSERT_TRUE(r.status.Exited(0)) << file << ": " << r.output;
  }
  ListUntil([&](const std::string& out) {
    return Has(out, ", " + std::to_string(kFrames) + " packets");
  });
  std::unique_ptr<Subprocess> stop;
  ASSERT_EQ(Record({"stop", "ark"}, &stop), 0) << stop->Describe();
  std::unique_ptr<Subprocess> once;
  ASSERT_NO_FATAL_FAILURE(Spawn("once", UploaderArgv({"--once", "--recording", "ark"}), &once));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*once, 0, std::chrono::seconds(90)));
  const auto keys = Keys();
  ASSERT_FALSE(keys.empty()) << once->Describe();
  const CommandResult down = Aws({"s3", "cp", "--recursive", "--only-show-errors",
                                  std::string("s3://") + kBucket + "/", File("down").string()});
  ASSERT_TRUE(down.status.Exited(0)) << down.output;
  size_t frames = 0;
  for (const auto& key : keys) {
    const fs::path local = File("down") / key;
    const auto packets = ReadOrFail(local);
    frames += packets.size();
    if (packets.empty()) continue;
    const CommandResult info = RunCommand({"capinfos", "-E", local.string()});
    EXPECT_TRUE(info.status.Exited(0)) << info.output;
    EXPECT_NE(info.output.find("File encapsulation:  Ethernet"), std::string::npos)
        << key << ": " << info.output;
    EXPECT_EQ(Metadata(key)["link-types"], "1") << key;
  }
  EXPECT_EQ(frames, kFrames);
}

// A destination that is not s3://BUCKET[/PREFIX]: exit 2 and the reason, no recording.
TEST_P(RecordingUploadTest, ABadDestinationIsRefused) {
  for (const std::string bad : {"ftp://caps/x", "s3://Caps_Bad/x", "s3://"}) {
    std::unique_ptr<Subprocess> start;
    EXPECT_EQ(Record({"start", "--name", "bad", "-i", kIface, "--upload", bad}, &start), 2)
        << start->Describe();
    EXPECT_TRUE(Has(start->Stderr(), "s3://BUCKET") || Has(start->Stderr(), "bucket name"))
        << start->Stderr();
  }
  std::unique_ptr<Subprocess> list;
  ASSERT_EQ(Record({"list"}, &list), 0);
  EXPECT_FALSE(Has(list->Stdout(), "bad:")) << list->Stdout();
}

INSTANTIATE_TEST_SUITE_P(AsRootAndAsNobody, RecordingUploadTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "AsNobody" : "AsRoot";
                         });

}  // namespace
}  // namespace capd::test
