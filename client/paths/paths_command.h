#pragma once
// `capctl paths FILE|-`: where each flow of a capture (merged from several agents by `capctl
// stream --agent A --agent B`, or one agent's) was seen, with a verdict per flow (paths/).
// Reads the whole input (a file, or stdin until EOF so that it can follow a live stream through a
// pipe), then prints the report on stdout: text, or JSON lines with --json (one object per flow;
// the summary and clock estimates then go to stderr).

#include "client/cli/options.h"

namespace capd::client {

// 0 done, 1 when the input cannot be opened or read (what was read before a damaged block is
// still reported).
int RunPathsCommand(const PathsOptions& options);

}  // namespace capd::client
