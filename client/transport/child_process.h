#pragma once
// Starting the helper programs capctl relies on (ssh, aws, wireshark).

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace capd::client {

// Starts argv[0] (looked up on PATH) with stdin from /dev/null and stdout and stderr appended to
// `log_path`, with the default signal mask (capctl blocks SIGINT/SIGTERM for its own watcher).
StatusOr<pid_t> SpawnChild(const std::vector<std::string>& argv, const std::string& log_path);

}  // namespace capd::client
