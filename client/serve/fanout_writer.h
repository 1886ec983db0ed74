#pragma once
// CaptureWriters whose output is PcapFanout's clients, each record handed to the fan-out whole
// (with no byte stream to cut back into records), the records of one Flush in one shared buffer.
//
// - pcap (MakePcapFanoutWriter): classic pcap with nanosecond timestamps, as MakePcapWriter
//   writes it. One link type, from the first interface, as for a pcap file; a second interface
//   with another link type is kInvalidArgument (capfile::pcap::CheckOneLinkType).
// - pcapng (MakePcapngFanoutWriter): as MakePcapngWriter writes it, for readers that take pcapng
//   (Wireshark and tshark -i TCP@HOST:PORT): any number of link types. The section header and
//   the interface description blocks are the fan-out's header (every client gets all of them,
//   including one that joins late); each Enhanced Packet Block is a record. No statistics blocks:
//   a client that joined late would get counts for packets it never saw (capctl's summary says
//   them).
//
// Records are built as they are written and handed over at Flush (one hand-over per round of the
// session); Close flushes and ends the fan-out's input, so the clients get the end of the capture.
//
// Thread-safety: none; one thread owns the writer (PcapFanout's side is thread-safe).

#include <memory>
#include <string>

#include "client/output/capture_files.h"
#include "client/serve/pcap_fanout.h"

namespace capd::client {

// `fanout` must outlive the writer.
std::unique_ptr<CaptureWriter> MakePcapFanoutWriter(PcapFanout& fanout);
// application: the section header's shb_userappl, e.g. "capctl 0.1.0".
std::unique_ptr<CaptureWriter> MakePcapngFanoutWriter(PcapFanout& fanout,
                                                      const std::string& application);

}  // namespace capd::client
