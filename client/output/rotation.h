#pragma once
// capctl's ring of files (`capctl stream -w PATH --rotate-*`): capfile/'s rotating writer with
// capctl's post-rotate command plugged in. The command runner lives here, on the client's side:
// capd links capfile/ and must not be able to start processes through it.
//
// How data flows: the ring reports each finished file (capfile::RingOptions::on_file_finished);
// PostRotateRunner starts `sh -c 'CMD "$1"' sh FILE` for it without waiting, and reaps the
// commands that ended at each Tick, at Close and when the writer goes away, reporting a failure
// through the ring's log (a "capctl: ..." line on stderr by default). Writing never waits for a
// command, and a failing command never stops the ring.
//
// Thread-safety: none; the writer's thread owns the writer and its runner.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "capfile/capture_writer.h"
#include "client/cli/rotation_options.h"
#include "client/output/capture_files.h"
#include "common/status.h"

namespace capd::client {

// Starts post-rotate commands and reaps them. The destructor reaps what has ended and leaves
// the others running (an upload outlives capctl, as with tcpdump -z).
class PostRotateRunner {
 public:
  // command: as --post-rotate (never empty); log: where failures are reported.
  PostRotateRunner(std::string command, std::function<void(const std::string&)> log)
      : command_(std::move(command)), log_(std::move(log)) {}
  PostRotateRunner(const PostRotateRunner&) = delete;
  PostRotateRunner& operator=(const PostRotateRunner&) = delete;
  ~PostRotateRunner() { Reap(); }

  // `sh -c 'CMD "$1"' sh FILE` in its own process group, stdin /dev/null, default signals.
  void Run(const std::string& file);
  // Collects the commands that ended; reports a non-zero exit or a signal.
  void Reap();

 private:
  const std::string command_;
  const std::function<void(const std::string&)> log_;
  std::vector<std::pair<pid_t, std::string>> children_;  // pid, the file it was given
};

// capfile::MakeRotatingWriter for capctl: the same ring, with options.post_rotate_command run
// for each finished file (the last one at Close or destruction too). Statuses as there.
StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RotationOptions& options,
                                                            std::string application);

}  // namespace capd::client
