#pragma once
// Real processes for integration tests: fork/exec, optionally inside a named network namespace,
// with stdout/stderr sent to files the test can poll. Every process is killed and reaped when its
// Subprocess goes away, and (PR_SET_PDEATHSIG) when the test process dies without cleaning up.
//
// Thread-safety: a Subprocess is used from one thread. Start() forks, so it must be called from
// the thread that should own the child (PR_SET_PDEATHSIG fires when *that thread* exits; gtest
// runs tests on the main thread).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace capd::test {

using namespace std::chrono_literals;

// A move-only owner of a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// How a process ended.
struct ExitStatus {
  bool exited = false;  // true: exit(code); false: killed by `signal`
  int code = -1;
  int signal = 0;

  bool Exited(int expected_code) const { return exited && code == expected_code; }
  std::string ToString() const;
};
std::ostream& operator<<(std::ostream& os, const ExitStatus& status);

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  // Non-empty: run inside /run/netns/<netns>, like `ip netns exec` (setns, plus a private mount
  // namespace with /sys remounted so /sys/class/net lists the namespace's interfaces).
  std::string netns;
  // Where stdout/stderr go. An fd >= 0 wins over a path; neither: /dev/null. Paths are truncated.
  std::filesystem::path stdout_path;
  std::filesystem::path stderr_path;
  int stdout_fd = -1;  // duplicated onto the child's stdout; the caller keeps ownership
  int stderr_fd = -1;
  // Duplicated onto the child's stdin (e.g. a pipe's read end); -1: /dev/null.
  int stdin_fd = -1;
};

class Subprocess {
 public:
  // Forks and execs. Fails when the fork fails or a path cannot be opened; a failing exec shows up
  // as exit code 127 with a line on the child's stderr.
  static StatusOr<std::unique_ptr<Subprocess>> Start(SubprocessOptions options);

  // SIGKILL and reap when still running.
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  const SubprocessOptions& options() const { return options_; }

  // Sends `signal` to the process (not its children). False when it has already been reaped.
  bool Signal(int signal);

  // Waits up to `timeout` for the process to end (polls every 10 ms). nullopt on timeout. Once
  // the process has ended, returns the same status on every later call.
  std::optional<ExitStatus> WaitFor(std::chrono::milliseconds timeout);
  // True while the process has not ended (reaps it when it has).
  bool Running();

  // The whole stdout/stderr file so far ("" when not redirected to a path).
  std::string Stdout() const;
  std::string Stderr() const;

  // Polls the stderr file every 10 ms until it contains `text`. False on timeout, or as soon as
  // the process has ended without writing it (then the caller's message can show Stderr()).
  bool WaitForStderr(std::string_view text, std::chrono::milliseconds timeout);

  // A printable description for assertion messages: the command line, status and stderr tail.
  std::string Describe() const;

 private:
  Subprocess(SubprocessOptions options, pid_t pid) : options_(std::move(options)), pid_(pid) {}

  SubprocessOptions options_;
  pid_t pid_;
  std::optional<ExitStatus> status_;
};

// Polls `path` every 10 ms until it contains `text`; false after `timeout`, or as soon as
// `keep_waiting` (when given) returns false.
bool WaitForFileContains(const std::filesystem::path& path, std::string_view text,
                         std::chrono::milliseconds timeout,
                         const std::function<bool()>& keep_waiting = {});

std::string ReadFileToString(const std::filesystem::path& path);

// Runs a short command to completion, stdout and stderr merged into `output`. Killed after
// `timeout` (then status.exited is false).
struct CommandResult {
  ExitStatus status;
  std::string output;
};
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& netns = "",
                         std::chrono::milliseconds timeout = 30s);

// Joins argv for messages.
std::string JoinArgs(const std::vector<std::string>& argv);

// RunCommand that must exit 0: kInternal naming the command line, how it ended and its output.
Status RunToSuccess(const std::vector<std::string>& argv);

// A per-test directory under $TMPDIR (or /tmp), named after the running test. Removed with its
// contents at destruction unless the test failed or CAPD_TEST_KEEP=1 is set: then it is kept and
// its path printed, so the capture files and stderr logs can be inspected.
class TestDir {
 public:
  TestDir();
  ~TestDir();
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path File(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace capd::test
