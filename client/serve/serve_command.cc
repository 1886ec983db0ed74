#include "client/serve/serve_command.h"

#include <cstdio>

#include "client/serve/fanout_writer.h"
#include "client/serve/pcap_fanout.h"
#include "client/stream/session_text.h"
#include "client/stream/stream_command.h"
#include "filters/bpf_filter.h"

namespace capd::client {
namespace {

// After the stream ends, how long clients get to take what is queued for them.
constexpr std::chrono::seconds kDrainTimeout{5};

}  // namespace

int RunServeCommand(const ServeOptions& options) {
  // Before listening: a filter that cannot compile is one line, not a listener that serves
  // nothing (RunStream checks it too, for `capctl stream`).
  if (Status filter = filters::PrecheckFilter(options.stream.filter); !filter.ok()) {
    std::fprintf(stderr, "capctl: %s\n", filter.message().c_str());
    return 2;
  }
  auto fanout = PcapFanout::Listen(options.listen, options.client_queue_bytes);
  if (!fanout.ok()) {
    std::fprintf(stderr, "capctl: %s\n", fanout.status().message().c_str());
    return ExitCodeFor(fanout.status().code());
  }
  PcapFanout& server = *fanout.value();
  if (!server.loopback()) {
    std::fprintf(stderr,
                 "capctl: warning: %s is not a loopback address: anyone who can connect gets the "
                 "packets, unencrypted (prefer 127.0.0.1 and an SSH forward)\n",
                 server.address().c_str());
  }

  const StreamOptions& stream = options.stream;
  const bool pcapng = stream.format == FileFormat::kPcapng;
  server.Start(kDrainTimeout);
  std::fprintf(stderr, "capctl: serving %s on %s (Wireshark: -k -i TCP@%s)\n",
               pcapng ? "pcapng" : "pcap", server.address().c_str(), server.address().c_str());

  StderrSessionObserver observer;
  const int code = RunStream(stream, observer, [&]() -> StatusOr<OpenedOutput> {
    OpenedOutput opened;
    opened.writer = pcapng ? MakePcapngFanoutWriter(server, "capctl " CAPD_VERSION)
                           : WithPcapLinkType(stream, MakePcapFanoutWriter(server));
    // Clients come and go: none of them is the reader whose leaving ends the capture.
    opened.output.name = "the clients of " + server.address();
    opened.output.is_stream = true;
    return opened;
  });
  server.EndInput();  // also when no agent accepted the stream (the writer was never closed)
  const PcapFanout::Totals totals = server.Wait();
  std::fprintf(stderr,
               "capctl: served %llu packets to %llu clients: %llu sent in all, %llu dropped for "
               "slow clients\n",
               static_cast<unsigned long long>(totals.packets_in),
               static_cast<unsigned long long>(totals.clients),
               static_cast<unsigned long long>(totals.packets_sent),
               static_cast<unsigned long long>(totals.packets_dropped));
  return code;
}

}  // namespace capd::client
