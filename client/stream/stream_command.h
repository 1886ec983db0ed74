#pragma once
// `capctl stream`: one Stream call written to a capture file, stdout or a FIFO.
//
// How data flows: gRPC reader (this thread) -> CaptureWriter (pcapng/pcap, in memory) -> one
// write() per received batch to the ByteSink. A signal thread turns SIGINT/SIGTERM into a
// cancellation of the call, after which the file is completed (statistics blocks) and closed.

#include "client/cli/options.h"

namespace capd::client {

// Returns the process exit code (0 done, 1 failure, 2 bad arguments or a refused request) after
// printing the summary line, or one error line, on stderr.
int RunStreamCommand(const StreamOptions& options);

// `capctl interfaces`
int RunInterfacesCommand(const InterfacesOptions& options);

}  // namespace capd::client
