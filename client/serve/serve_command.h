#pragma once
// `capctl serve --listen HOST:PORT [stream options]`: the capture of `capctl stream`, served as
// PCAP-over-IP to every TCP client that connects (Wireshark `-i TCP@HOST:PORT`, Arkime,
// NetworkMiner, Zeek).
//
// How data flows: one stream session (RunStream, with its transports, checks, signals and
// summary) writes classic pcap with nanosecond timestamps through a fan-out writer
// (fanout_writer.h) that hands the header and each record to PcapFanout, which queues them for
// the clients, each through its own bounded queue. The stream runs while `capctl serve` runs, with
// or without clients; it ends with -c/--duration, SIGINT/SIGTERM or the agent, and then the
// clients' connections close.
//
// The link type of a pcap stream is that of the first interface (with --decap, that of the
// decapsulated frames); other interfaces are refused as `capctl stream --format pcap` refuses
// them.

#include "client/cli/options.h"

namespace capd::client {

// Returns the exit code, as RunStreamCommand's (0 done, 1 failure, 2 bad arguments or a refused
// request).
int RunServeCommand(const ServeOptions& options);

}  // namespace capd::client
