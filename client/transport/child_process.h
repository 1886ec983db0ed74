#pragma once
// Starting the helper programs capctl relies on (ssh, aws, wireshark).

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::client {

// Starts argv[0] (looked up on PATH) with stdin from /dev/null and stdout and stderr appended to
// `log_path`, with the default signal mask (capctl blocks SIGINT/SIGTERM for its own watcher).
// With `stderr_path`, stderr goes to that file instead (truncated). With `own_process_group`, the
// child leads a process group of its own (pgid = its pid), so kill(-pid, ...) also reaches what it
// started.
StatusOr<pid_t> SpawnChild(const std::vector<std::string>& argv, const std::string& log_path,
                           const std::string& stderr_path = "", bool own_process_group = false);

// Runs argv to completion and returns its standard output. kUnavailable "<argv[0]> <argv[1]>
// <argv[2]> failed: <its last stderr line>" when it exits non-zero or is killed; the child is
// killed (SIGKILL, with every process it started: it runs in a process group of its own, so
// a script's `yes` does not go on filling the disk after its shell is killed) once `timeout` has
// passed, or once its stdout and stderr together hold more than `max_output_bytes` (kUnavailable
// "... printed more than N bytes"): a stuck or hostile program neither fills the disk its output is
// kept on nor capctl's memory. The stderr line in a message is cut to kMaxReasonChars. Blocks the
// calling thread for as long.
constexpr size_t kDefaultMaxOutputBytes = size_t{64} << 20;
constexpr size_t kMaxReasonChars = 512;
StatusOr<std::string> RunForOutput(const std::vector<std::string>& argv,
                                   std::chrono::seconds timeout,
                                   size_t max_output_bytes = kDefaultMaxOutputBytes);

}  // namespace capd::client
