#pragma once
// `capctl record start|stop|list|fetch`: recordings the agent keeps on its own (capd
// --record-dir). Each is one call to the agent; fetch streams the files into --out DIR.

#include "client/cli/options.h"

namespace capd::client {

// Returns the exit code: 0 done, 2 bad arguments or a request the agent refused as invalid
// (bad name, a name in use, an unknown recording or interface, recordings not enabled), 1
// anything else; one clear line on stderr when it is not 0. Ctrl-C or SIGTERM cancels the call in
// flight (1, "interrupted"); an interrupted fetch keeps the files it completed and removes the
// .part of the one it was in.
int RunRecordCommand(const RecordOptions& options);

}  // namespace capd::client
