#include "client/output/rotation.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

extern char** environ;

namespace capd::client {
namespace {

// Forwards every call to the ring and reaps the post-rotate commands at Tick and Close. The ring
// is destroyed before the runner (member order), so the last file's command is started before
// the runner's final reap.
class RingWithPostRotate final : public CaptureWriter {
 public:
  RingWithPostRotate(std::unique_ptr<PostRotateRunner> runner, std::unique_ptr<CaptureWriter> ring)
      : runner_(std::move(runner)), ring_(std::move(ring)) {}

  Status AddInterface(const InterfaceInfo& info) override { return ring_->AddInterface(info); }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    return ring_->WritePacket(interface_index, timestamp_ns, original_length, data, comment);
  }
  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    return ring_->WriteStatistics(interface_index, counters);
  }
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    return ring_->WriteDecryptionSecrets(secrets_type, secrets);
  }
  Status Flush() override { return ring_->Flush(); }
  Status Tick(uint64_t now_ns) override {
    runner_->Reap();
    return ring_->Tick(now_ns);
  }
  Status Close() override {
    Status status = ring_->Close();
    runner_->Reap();
    return status;
  }

 private:
  std::unique_ptr<PostRotateRunner> runner_;  // the ring's on_file_finished points here
  std::unique_ptr<CaptureWriter> ring_;
};

}  // namespace

void PostRotateRunner::Run(const std::string& file) {
  // CMD may carry its own arguments (aws s3 cp ... --quiet), and the file name reaches it as one
  // word whatever it contains.
  const std::string script = command_ + " \"$1\"";
  const char* argv[] = {"sh", "-c", script.c_str(), "sh", file.c_str(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_init(&attr);
  // capctl blocks SIGINT/SIGTERM for its signal thread and ignores SIGPIPE; the child gets the
  // defaults back. Its own process group: Ctrl-C on capctl does not cut an upload short.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int error =
      posix_spawn(&pid, "/bin/sh", &actions, &attr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (error != 0) {
    log_("post-rotate command for " + file + " could not start: " + std::strerror(error));
    return;
  }
  children_.emplace_back(pid, file);
}

void PostRotateRunner::Reap() {
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    const pid_t done = ::waitpid(it->first, &status, WNOHANG);
    if (done == 0) {
      ++it;
      continue;
    }
    if (done == it->first) {
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        log_("post-rotate command for " + it->second + " failed: exit status " +
             std::to_string(WEXITSTATUS(status)));
      } else if (WIFSIGNALED(status)) {
        log_("post-rotate command for " + it->second + " was killed by signal " +
             std::to_string(WTERMSIG(status)));
      }
    }
    it = children_.erase(it);  // reaped, or not ours to wait for any more (ECHILD)
  }
}

StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RotationOptions& options,
                                                            std::string application) {
  if (options.post_rotate_command.empty()) {
    return capfile::MakeRotatingWriter(options, std::move(application));
  }
  capfile::RingOptions ring = options;
  std::function<void(const std::string&)> log = options.log;
  if (!log) {
    log = [](const std::string& message) { std::fprintf(stderr, "capctl: %s\n", message.c_str()); };
  }
  auto runner = std::make_unique<PostRotateRunner>(options.post_rotate_command, log);
  ring.on_file_finished = [runner = runner.get()](const std::string& file) { runner->Run(file); };
  auto writer = capfile::MakeRotatingWriter(ring, std::move(application));
  if (!writer.ok()) return writer.status();
  return std::unique_ptr<CaptureWriter>(
      std::make_unique<RingWithPostRotate>(std::move(runner), std::move(writer).value()));
}

}  // namespace capd::client
