// capd-upload: puts the finished files of capd's recordings into S3 with the upload code capctl
// uses (upload/s3_upload.h: the same object keys and metadata), and marks each one uploaded so
// that capd's ring may delete it (uploader/recording_files.h).
//
// How data flows: every --interval seconds (or once, with --once) it lists the recordings in
// --record-dir, takes each one's destination (its StartRecordingRequest.upload, or --destination
// for one --recording), and uploads its finished files oldest first, one at a time, with `aws s3
// cp`; after `aws` exited 0 it writes FILE.uploaded. A failed upload ends that recording's round
// (one line on stderr); the next round tries again, so a store that is down for a while only
// delays the files, which capd keeps meanwhile.
//
// It needs no capability: it runs as capd's user (deploy/systemd/capd-upload.service), reads
// the recordings and writes only the marks. capd itself never starts a process.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "common/printable.h"
#include "upload/s3_upload.h"
#include "uploader/recording_files.h"

namespace {

using capd::Status;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

struct Options {
  std::string record_dir = "/var/lib/capd/recordings";
  std::string recording;    // empty: every recording with a destination
  std::string destination;  // overrides the recording's own (needs --recording)
  std::string endpoint_url;
  std::string aws = "aws";
  bool once = false;
  double interval_seconds = 5;
  // One file's upload: a store that takes the connection but never answers would otherwise hold
  // capd-upload (and every later file, which capd's ring then keeps) for good.
  double upload_timeout_seconds = 3600;
};

void Log(const std::string& line) { std::fprintf(stderr, "capd-upload: %s\n", line.c_str()); }

struct Tally {
  size_t uploaded = 0;
  size_t failed = 0;
};

// Runs `aws` for one file and waits for it; a SIGTERM lets the upload finish (it is one file),
// so no object is left half written by this program. After `timeout` the aws is killed and the
// file counts as not uploaded: S3 publishes an object only when its upload completes, so nothing
// partial is left, and the file gets no mark.
Status UploadOne(capd::client::S3UploadAction& action, const capd::capfile::FinishedFile& file,
                 std::chrono::milliseconds timeout) {
  auto job = action.Start(file);
  if (!job.ok()) return job.status();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  while (true) {
    std::optional<Status> outcome = (*job)->Poll();
    if (outcome) {
      if (!killed) return *outcome;
      return capd::Unavailable("aws did not finish within " +
                               std::to_string(timeout.count() / 1000) +
                               " s (--upload-timeout): killed");
    }
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      (*job)->Kill();
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void UploadRecording(const Options& options, const std::string& name, Tally& tally) {
  std::string destination = options.destination;
  if (destination.empty()) {
    auto own = capd::uploader::RecordingDestination(options.record_dir, name);
    if (!own.ok()) {
      if (!options.recording.empty()) {
        Log(own.status().message());
        ++tally.failed;
      }
      return;
    }
    destination = *own;
  }
  if (destination.empty()) {
    if (!options.recording.empty()) {
      Log("recording " + name + " has no upload destination: give --destination s3://...");
      ++tally.failed;
    }
    return;
  }
  auto location = capd::client::ParseS3Url(destination);
  if (!location.ok()) {
    Log("recording " + name + ": " + location.status().message());
    ++tally.failed;
    return;
  }
  capd::client::S3UploadAction action(*location, options.endpoint_url, options.aws);
  for (const auto& file : capd::uploader::FilesToUpload(options.record_dir, name, Log)) {
    if (g_stop.load()) return;
    const Status uploaded = UploadOne(
        action, file,
        std::chrono::milliseconds(static_cast<int64_t>(options.upload_timeout_seconds * 1000)));
    if (!uploaded.ok()) {
      Log("recording " + name + ": " + file.path + " not uploaded to " + destination + ": " +
          uploaded.message() + (options.once ? "" : " (tried again next round)"));
      ++tally.failed;
      return;  // the store is likely down: the next round starts from this file again
    }
    const Status marked = capd::uploader::MarkUploaded(file.path);
    if (!marked.ok()) {
      Log("recording " + name + ": " + file.path + " uploaded, but " + marked.message() +
          " (capd keeps the file)");
      ++tally.failed;
      return;
    }
    ++tally.uploaded;
  }
}

// Held for a round: two capd-upload at once (the service and an SSM `--once`, say) would both
// take the same unmarked file and upload it twice, and race on its mark. The lock is flock(2) on
// the --record-dir folder itself, so it needs no file of its own there and goes with the process.
class RoundLock {
 public:
  explicit RoundLock(const std::string& record_dir)
      : fd_(::open(record_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~RoundLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  RoundLock(const RoundLock&) = delete;
  RoundLock& operator=(const RoundLock&) = delete;
  // Waits (until a stop is asked) while another capd-upload holds it; true without a folder to
  // lock (nothing to upload either way).
  bool Acquire() {
    if (fd_ < 0) return true;
    bool said = false;
    while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) return true;
      if (!said) Log("another capd-upload is uploading from this folder: waiting for its round");
      said = true;
      if (g_stop.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
  }

 private:
  int fd_;
};

Tally Round(const Options& options) {
  Tally tally;
  RoundLock lock(options.record_dir);
  if (!lock.Acquire()) return tally;
  if (!options.recording.empty()) {
    UploadRecording(options, options.recording, tally);
    return tally;
  }
  for (const std::string& name : capd::uploader::RecordingNames(options.record_dir)) {
    if (g_stop.load()) break;
    UploadRecording(options, name, tally);
  }
  return tally;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{
      "capd-upload: uploads the finished files of capd's recordings to S3 (object keys and "
      "metadata as capctl stream --upload), and marks them so capd's ring may delete them"};
  app.add_option("--record-dir", options.record_dir, "capd's --record-dir")
      ->capture_default_str()
      ->type_name("DIR");
  app.add_option("--recording", options.recording, "only this recording")->type_name("NAME");
  app.add_option("--destination", options.destination,
                 "upload to this instead of the recording's own destination (needs --recording)")
      ->type_name("s3://BUCKET[/PREFIX]");
  app.add_option("--endpoint-url", options.endpoint_url,
                 "an S3-compatible store's URL (aws --endpoint-url)")
      ->type_name("URL");
  app.add_option("--aws", options.aws, "the AWS CLI to run")->capture_default_str();
  app.add_flag("--once", options.once,
               "one pass: upload the finished files there are now, print the count, exit "
               "(0: all uploaded, 1: some failed)");
  app.add_option("--interval", options.interval_seconds, "seconds between passes")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--upload-timeout", options.upload_timeout_seconds,
                 "seconds one file's upload may take before aws is killed (the file is tried "
                 "again next round)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!options.recording.empty() && !capd::uploader::IsRecordingName(options.recording)) {
    Log("--recording '" + capd::PrintableText(options.recording) +
        "' is no recording name (capd's names: [A-Za-z0-9][A-Za-z0-9._-]{0,63})");
    return 2;
  }
  if (!options.destination.empty()) {
    if (options.recording.empty()) {
      Log("--destination needs --recording NAME");
      return 2;
    }
    auto location = capd::client::ParseS3Url(options.destination);
    if (!location.ok()) {
      Log(location.status().message());
      return 2;
    }
  }
  const bool readable = access(options.record_dir.c_str(), R_OK | X_OK) == 0;
  if (!readable && options.once) {
    Log("cannot read --record-dir " + options.record_dir);
    return 2;
  }
  // The service runs whether or not capd records yet: an absent folder holds no recording.
  if (!readable) Log("no readable --record-dir " + options.record_dir + " yet: waiting for it");
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  if (options.once) {
    const Tally tally = Round(options);
    std::printf("%zu files uploaded%s\n", tally.uploaded,
                tally.failed ? (", " + std::to_string(tally.failed) + " failed").c_str() : "");
    return tally.failed == 0 ? 0 : 1;
  }
  Log("watching " + options.record_dir + " every " + std::to_string(options.interval_seconds) +
      " s");
  const auto interval =
      std::chrono::milliseconds(static_cast<int64_t>(options.interval_seconds * 1000));
  while (!g_stop.load()) {
    const Tally tally = Round(options);
    if (tally.uploaded > 0) Log(std::to_string(tally.uploaded) + " files uploaded");
    const auto next = std::chrono::steady_clock::now() + interval;
    while (!g_stop.load() && std::chrono::steady_clock::now() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return 0;
}
