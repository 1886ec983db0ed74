#pragma once
// Opens where a capture goes: a file, stdout or a FIFO (made if missing), as a ByteSink.

#include <functional>
#include <memory>
#include <string>

#include "client/cli/options.h"
#include "client/output/capture_files.h"
#include "common/status.h"

namespace capd::client {

struct OutputTarget {
  std::unique_ptr<ByteSink> sink;
  std::string name;        // for messages: the path, "stdout", or "FIFO <path>"
  bool is_stream = false;  // stdout or a FIFO: a reader may go away (not an error)
  int watch_fd = -1;       // for a stream: the fd to poll for the reader going away (POLLERR)
};

// For a FIFO this blocks until a reader opens it (Wireshark's "-k -i PATH"), or until give_up()
// (polled every 50 ms, may be empty) returns true.
// kInvalidArgument when stdout is a terminal and no -w/--fifo was given: a binary capture on a
// terminal helps nobody.
StatusOr<OutputTarget> OpenOutputTarget(const StreamOptions& options,
                                        const std::function<bool()>& give_up = {});

}  // namespace capd::client
