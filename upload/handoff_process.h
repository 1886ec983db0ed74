#pragma once
// The processes capctl starts to hand a finished capture file off (file_handoff.h): the
// --post-rotate command (PostRotateAction) and the aws CLI of --upload (s3_upload.h) both run as
// a ChildProcess, which the hand-off polls without waiting. Processes are started here, on the
// client's side: capd links capfile/ and must not be able to start processes through it.
//
// Thread-safety: none; the hand-off's thread owns its jobs.

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "upload/file_handoff.h"

namespace capd::client {

// Where a hand-off process's output goes.
struct ChildOutput {
  bool quiet_stdout = false;  // stdout to /dev/null (else capctl's)
  // stderr kept in memory (memfd) instead of capctl's, and the last line of it that is not
  // empty ends the failure's text ("exit status 1: Could not connect to ..."): one line per
  // failure, with its reason. At most about kKeptStderrBytes of it are held at a time (each Poll
  // drops what is older).
  bool keep_stderr = false;
};
constexpr size_t kKeptStderrBytes = size_t{1} << 20;

// A process started for a hand-off: its own process group (Ctrl-C on capctl does not cut an
// upload short), stdin /dev/null, the default signal dispositions and mask. Poll reaps it without
// waiting; a process left running when capctl stops waiting goes on on its own.
class ChildProcess final : public HandoffJob {
 public:
  // argv[0] is found in PATH when it has no '/'.
  static StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                       ChildOutput output = {});
  ~ChildProcess() override;
  std::optional<Status> Poll() override;
  std::string Abandon() override;
  void Kill() override;

 private:
  ChildProcess(pid_t pid, int stderr_fd) : pid_(pid), stderr_fd_(stderr_fd) {}
  std::string LastStderrLine() const;
  void DropOldStderr() const;
  pid_t pid_;
  int stderr_fd_;  // owned; -1 without keep_stderr
  bool reaped_ = false;
};

// --post-rotate CMD: `sh -c 'CMD "$1"' sh FILE`. CMD may carry its own arguments, and the file
// name reaches it as one word whatever it contains.
class PostRotateAction final : public HandoffAction {
 public:
  explicit PostRotateAction(std::string command) : command_(std::move(command)) {}
  std::string Name() const override { return "post-rotate command"; }
  StatusOr<std::unique_ptr<HandoffJob>> Start(const FinishedFile& file) override;

 private:
  const std::string command_;
};

}  // namespace capd::client
