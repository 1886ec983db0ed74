#include "client/serve/serve_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "client/serve/pcap_fanout.h"
#include "client/stream/stream_command.h"
#include "filters/bpf_filter.h"

namespace capd::client {
namespace {

// After the stream ends, how long clients get to take what is queued for them.
constexpr std::chrono::seconds kDrainTimeout{5};

}  // namespace

int RunServeCommand(const ServeOptions& options) {
  // Before listening: a filter that cannot compile is one line, not a listener that serves
  // nothing (RunStreamCommand checks it too, for `capctl stream`).
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

  // RunStreamCommand writes to a path; /proc/self/fd/N of a pipe opens that pipe (Linux), so
  // the stream needs no file in the file system. The write end kept here is closed once the
  // stream is over: only then does the fan-out thread see the end of its input.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::fprintf(stderr, "capctl: pipe2: %s\n", std::strerror(errno));
    return 1;
  }
  server.Start(fds[0], kDrainTimeout);
  std::fprintf(stderr, "capctl: serving pcap on %s (Wireshark: -k -i TCP@%s)\n",
               server.address().c_str(), server.address().c_str());

  StreamOptions stream = options.stream;
  stream.format = FileFormat::kPcap;
  stream.fifo_path = "/proc/self/fd/" + std::to_string(fds[1]);
  const int code = RunStreamCommand(stream);
  close(fds[1]);
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
