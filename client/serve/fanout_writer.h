#pragma once
// A CaptureWriter whose output is PcapFanout's clients: classic pcap with nanosecond timestamps
// (as MakePcapWriter writes it), each record handed to the fan-out whole, with no byte stream to
// cut back into records. One link type, from the first interface, as for a pcap file; a second
// interface with another link type is kInvalidArgument.
//
// Records are built as they are written and handed over at Flush (one hand-over per round of the
// session); Close flushes and ends the fan-out's input, so the clients get the end of the capture.
//
// Thread-safety: none; one thread owns the writer (PcapFanout's side is thread-safe).

#include <memory>

#include "client/output/capture_files.h"
#include "client/serve/pcap_fanout.h"

namespace capd::client {

// `fanout` must outlive the writer.
std::unique_ptr<CaptureWriter> MakePcapFanoutWriter(PcapFanout& fanout);

}  // namespace capd::client
