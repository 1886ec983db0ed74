#pragma once
// `capctl stream`: a capture from one or more agents written to a capture file, stdout, a FIFO,
// a ring of files or a Wireshark started for it. The same run serves the Wireshark extcap and
// `capctl serve`, which bring their own observer (and serve its own writer).
//
// How data flows: connect to every agent -> open the output -> a StreamSession (one AgentFeed per
// agent, the merger, the writer) -> its events to a SessionObserver. A signal thread turns
// SIGINT/SIGTERM into StreamSession::Interrupt, after which the file is completed (statistics
// blocks) and closed. Once the session has ended, a signal keeps the run's exit code: the first
// lets the teardown (tunnels, channels) finish, a second exits at once with that code.

#include <functional>
#include <memory>

#include "client/cli/options.h"
#include "client/output/capture_files.h"
#include "client/stream/session_observer.h"
#include "client/stream/stream_changer.h"
#include "client/stream/stream_session.h"
#include "common/status.h"

namespace capd::client {

struct OpenedOutput {
  std::unique_ptr<CaptureWriter> writer;
  SessionOutput output;
  // Set when finished files are handed off (client/output/rotation.h): stop_waiting ends the
  // wait at the writer's Close (a second Ctrl-C); all_handed_off, after Close, is false when a
  // file was not handed off (capctl then exits 1).
  std::function<void()> stop_waiting;
  std::function<bool()> all_handed_off;
};
// Called once, after at least one agent was reached (an unreachable agent leaves no empty file).
using OutputOpener = std::function<StatusOr<OpenedOutput>()>;

// `writer` as the pcap representation under --decap needs it: with --format pcap, or --upload
// (files for Arkime, which takes one link type per file), and decapsulation, bare-IP frames are
// framed as Ethernet (capfile/ethernet_framing.h), so the stream keeps one link type; otherwise
// `writer` itself.
std::unique_ptr<CaptureWriter> WithPcapLinkType(const StreamOptions& options,
                                                std::unique_ptr<CaptureWriter> writer);

// The output `options` name: -W ring, else -w FILE, --fifo PATH (waits for a reader, or until
// give_up() says so) or stdout; pcapng or pcap per --format.
StatusOr<OpenedOutput> OpenCaptureOutput(const StreamOptions& options,
                                         const std::function<bool()>& give_up = {});

// Checks the filter, connects, opens the output and runs the session; every message goes to
// `observer` (an error before the session: OnMessage). Returns the process exit code (0 done, 1
// failure, 2 bad arguments or a refused request). `changer`, if given, reaches the session's
// agents while it runs (stream_changer.h).
int RunStream(const StreamOptions& options, SessionObserver& observer,
              const OutputOpener& open_output, StreamChanger* changer = nullptr);

// `capctl stream`: RunStream with the output of the options (or a Wireshark, -k) and its lines
// on stderr (client/stream/session_text.h).
int RunStreamCommand(const StreamOptions& options);

// `capctl interfaces`
int RunInterfacesCommand(const InterfacesOptions& options);

}  // namespace capd::client
