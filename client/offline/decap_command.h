#pragma once
// `capctl decap IN -w OUT`: mirror-target decapsulation of a capture file someone already has,
// through the same pipeline stage the agent runs live (pipeline/mirror_stage.h).

#include "client/cli/options.h"

namespace capd::client {

// Returns the exit code after one summary line (or one error line) on stderr.
int RunDecapFileCommand(const DecapFileOptions& options);

}  // namespace capd::client
