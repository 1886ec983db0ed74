#pragma once
// `capctl serve --listen HOST:PORT [stream options]`: the capture of `capctl stream`, served as
// PCAP-over-IP to every TCP client that connects (Wireshark `-i TCP@HOST:PORT`, Arkime,
// NetworkMiner, Zeek).
//
// How data flows: one stream session (RunStream, with its transports, checks, signals and
// summary) writes through a fan-out writer (fanout_writer.h) that hands the header and each record
// to PcapFanout, which queues them for the clients, each through its own bounded queue. The
// stream runs while `capctl serve` runs, with or without clients; it ends with -c/--duration,
// SIGINT/SIGTERM or the agent, and then the clients' connections close.
//
// --format pcap (the default: PCAP-over-IP is classic pcap by convention, and some readers, such
// as Arkime, take nothing else): nanosecond timestamps, one link type, that of the first
// interface. With --decap it is the decapsulated frames', all Ethernet: bare-IP frames (Geneve
// with an IP payload) get a made-up Ethernet header (capfile/ethernet_framing.h), so that
// mixed mirror sessions never end the stream; the capture interface itself is left out, as
// `capctl stream --format pcap` leaves it.
//
// --format pcapng, for readers that take it (Wireshark, tshark): every interface with its own
// link type, frames as decapsulated (no made-up header), packet comments kept; a client that
// joins late gets the section header and every interface block so far before its first packet.

#include "client/cli/options.h"

namespace capd::client {

// Returns the exit code, as RunStreamCommand's (0 done, 1 failure, 2 bad arguments or a refused
// request).
int RunServeCommand(const ServeOptions& options);

}  // namespace capd::client
