#include "client/stream/stream_command.h"

#include <malloc.h>

#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "capfile/ethernet_framing.h"
#include "client/output/rotation.h"
#include "client/stream/agent_channel.h"
#include "client/stream/agent_feed.h"
#include "client/stream/output_target.h"
#include "client/stream/session_text.h"
#include "client/stream/signal_watcher.h"
#include "client/stream/stream_session.h"
#include "client/stream/trigger_fields.h"
#include "client/stream/wireshark_viewer.h"
#include "client/transport/fleet_selection.h"
#include "filters/bpf_filter.h"
#include "proto/capture.grpc.pb.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace capd::client {
namespace {

int Fail(SessionObserver& observer, const Status& status) {
  observer.OnMessage(status.message());
  return ExitCodeFor(status.code());
}

}  // namespace

StatusOr<OpenedOutput> OpenCaptureOutput(const StreamOptions& options,
                                         const std::function<bool()>& give_up) {
  OpenedOutput opened;
  if (options.rotation) {
    // A ring of files named after -w PATH; the first is opened now so a bad path fails early.
    auto ring = OpenRing(*options.rotation, "capctl " CAPD_VERSION);
    if (!ring.ok()) return ring.status();
    opened.writer = std::move(ring->writer);
    opened.stop_waiting = std::move(ring->stop_waiting);
    opened.all_handed_off = std::move(ring->all_handed_off);
    opened.output.name = "the ring of files " + options.rotation->path;
    return opened;
  }
  auto target = OpenOutputTarget(options, give_up);
  if (!target.ok()) return target.status();
  opened.output = {target->name, target->is_stream, target->watch_fd};
  opened.writer = options.format == FileFormat::kPcap
                      ? MakePcapWriter(std::move(target->sink))
                      : MakePcapngWriter(std::move(target->sink), "capctl " CAPD_VERSION);
  opened.writer = WithPcapLinkType(options, std::move(opened.writer));
  if (options.single_file_handoff) {
    // --upload without rotation: the file is uploaded once complete, at the end.
    auto handed = WithHandoffAtClose(*options.single_file_handoff, std::move(opened.writer));
    if (!handed.ok()) return handed.status();
    opened.writer = std::move(handed->writer);
    opened.stop_waiting = std::move(handed->stop_waiting);
    opened.all_handed_off = std::move(handed->all_handed_off);
  }
  return opened;
}

std::unique_ptr<CaptureWriter> WithPcapLinkType(const StreamOptions& options,
                                                std::unique_ptr<CaptureWriter> writer) {
  // --upload: one link type per file as well, the form Arkime's reader takes (README, "Arkime").
  const bool uploading =
      (options.rotation && !options.rotation->upload_url.empty()) ||
      (options.single_file_handoff && !options.single_file_handoff->upload_url.empty());
  if ((options.format != FileFormat::kPcap && !uploading) ||
      options.decap.mode == DecapOptions::Mode::kNone) {
    return writer;
  }
  return capfile::FrameBareIpAsEthernet(std::move(writer),
                                        options.format == FileFormat::kPcap
                                            ? capfile::SnaplenRaise::kFramedOnly
                                            : capfile::SnaplenRaise::kEveryInterface);
}

int RunStream(const StreamOptions& options, SessionObserver& observer,
              const OutputOpener& open_output, StreamChanger* changer) {
  // A busy stream brings messages of up to ~256 KiB several hundred times a second, each parsed
  // into a fresh buffer and freed once written. By default glibc gives such chunks back to the
  // kernel on free (mmap, or trimming the heap's top) and the next message faults the pages in
  // again: 7 % of capctl's CPU at 64 B full rate (perf). Keep them in the heap instead; capctl's
  // memory is bounded by its queue (AgentFeed::kMaxQueuedBytes) either way.
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
  // Fail before connecting on a filter that compiles for no usual link type; the agent checks
  // again against the capture's real one.
  if (Status filter = filters::PrecheckFilter(options.filter); !filter.ok())
    return Fail(observer, filter);
  for (const auto& [flag, text] :
       {std::pair{"--start-on", &options.start_on}, std::pair{"--stop-on", &options.stop_on}}) {
    if (text->empty()) continue;
    if (Status filter = filters::PrecheckFilter(*text); !filter.ok()) {
      return Fail(observer, Status(filter.code(), std::string(flag) + ": " + filter.message()));
    }
  }

  std::mutex mu;
  StreamSession* active = nullptr;
  std::function<void()> stop_waiting;  // the output's hand-off wait at Close
  int signals = 0;
  // Set once the session has ended: what is left (closing tunnels and channels) cannot change
  // how the run went, so a Ctrl-C then must not turn a failed run into a success.
  std::optional<int> ended_with;
  SignalWatcher watcher([&](int) {
    std::lock_guard lock(mu);
    ++signals;
    if (ended_with) {
      // The first Ctrl-C lets the teardown finish; another leaves at once, with the same code.
      if (signals >= 2) std::_Exit(*ended_with);
      return;
    }
    // The first Ctrl-C ends the stream; the second also ends the wait for the hand-off of the
    // finished files (uploads, post-rotate commands) that may follow it.
    if (signals >= 2 && stop_waiting) stop_waiting();
    if (active != nullptr) {
      active->Interrupt();
    } else {
      // Still connecting or waiting for a FIFO reader: nothing to complete.
      observer.OnMessage("interrupted");
      std::_Exit(0);
    }
  });
  // Every return from here on: the run's code, kept through the teardown that follows (tunnels
  // of agents already connected, the session's feeds).
  const auto ended = [&](int code) {
    std::lock_guard lock(mu);
    active = nullptr;
    stop_waiting = nullptr;
    ended_with = code;
    return code;
  };

  v1::StreamRequest request;
  request.set_filter(options.filter);
  // tcpdump's -s 0 means the largest snaplen; the agent takes only 1..262144.
  if (options.snaplen != 0) request.set_snaplen(options.snaplen);
  request.set_max_packets(options.count);
  request.set_duration_ms(options.duration_ms);
  request.set_no_promiscuous(!options.promiscuous);
  request.set_tls_keylog(options.tls_keylog);
  SetTriggerFields(options, request);
  request.set_since_ns(options.since_ns);
  if (options.decap.mode != DecapOptions::Mode::kNone) {
    v1::Decapsulation* d = request.mutable_decap();
    d->set_mode(options.decap.mode == DecapOptions::Mode::kVxlan    ? v1::Decapsulation::VXLAN
                : options.decap.mode == DecapOptions::Mode::kGeneve ? v1::Decapsulation::GENEVE
                                                                    : v1::Decapsulation::AUTO);
    d->set_vxlan_port(options.decap.vxlan_port);
    d->set_geneve_port(options.decap.geneve_port);
    for (uint32_t vni : options.decap.vnis) d->add_vnis(vni);
    d->set_inner_filter(options.decap.inner_filter);
  }

  // Selections of instances (ssm://tag:, ssm://asg:) become one ssm:// agent each, before
  // anything is opened: a selection that matches nothing, or more than --max-agents, opens
  // nothing.
  auto expanded = ExpandFleetAgents(options.agents, options.max_agents, RunAwsCli);
  if (!expanded.ok()) return ended(Fail(observer, expanded.status()));
  const std::vector<AgentAddress>& agents = expanded->agents;

  // Connect first: an unreachable agent should not leave an empty file behind. With several
  // agents, one that cannot be reached is reported and the others still stream.
  std::vector<std::pair<const AgentAddress*, AgentConnection>> connections;
  Status first_failure;
  std::vector<std::string> failures;  // an instance of a selection: "LABEL: why"
  for (const std::string& line : expanded->left_out) {
    failures.push_back(line);
    if (first_failure.ok()) first_failure = Unavailable(line);
  }
  auto connected = ConnectAll(agents, options.connection);
  for (size_t i = 0; i < agents.size(); ++i) {
    auto& connection = connected[i];
    if (!connection.ok()) {
      if (!agents[i].label.empty()) {
        failures.push_back(agents[i].label + ": " + connection.status().message());
      } else if (agents.size() > 1) {
        observer.OnMessage(connection.status().message());
      }
      if (first_failure.ok()) first_failure = connection.status();
      continue;
    }
    connections.emplace_back(&agents[i], std::move(connection.value()));
  }
  // One line per instance that is not part of the capture.
  for (const std::string& line : failures) {
    observer.OnMessage(line + (connections.empty() ? "" : "; the others go on"));
  }
  if (connections.empty() && !failures.empty()) {
    observer.OnMessage("none of the selected instances could be captured");
    return ended(ExitCodeFor(first_failure.code()));
  }
  if (connections.empty()) return ended(Fail(observer, first_failure));

  auto opened = open_output();
  if (!opened.ok()) return ended(Fail(observer, opened.status()));
  StreamSession run(options, *opened->writer, observer, opened->output);
  size_t feed_index = 0;
  std::vector<const Feed*> instances;  // the feeds of selected instances (ssm://tag:, asg:)
  for (auto& [agent, connection] : connections) {
    v1::StreamRequest agent_request = request;
    // -i wins; else the interface named in the agent address; else the agent's default.
    agent_request.set_interface(!options.interface.empty() ? options.interface : agent->interface);
    if (CompressionFor(options, *agent)) agent_request.set_compression(v1::COMPRESSION_ZSTD);
    auto feed = std::make_unique<AgentFeed>(feed_index++, agent->text, std::move(connection),
                                            agent_request, run.hub());
    feed->label = agent->label;
    if (!feed->label.empty()) instances.push_back(feed.get());
    if (changer != nullptr) changer->Attach(feed.get());
    run.AddFeed(std::move(feed));
  }
  {
    std::lock_guard lock(mu);
    active = &run;
    stop_waiting = opened->stop_waiting;
    if (signals >= 2 && stop_waiting) stop_waiting();
  }
  int code = run.Run();
  // Every finished file not handed off (failed after its retries, or still pending when capctl
  // stopped waiting) is a failure of the run.
  if (code == 0 && opened->all_handed_off && !opened->all_handed_off()) code = 1;
  if (changer != nullptr) changer->DetachAll();    // before `run` and its feeds go
  if (code == 0 && !first_failure.ok()) code = 1;  // an agent could not be reached at all
  {
    // A selected instance whose agent refused the stream was not captured, even when the others
    // ended well (Ctrl-C): the exit status says whether every selected instance was.
    std::lock_guard lock(run.hub().mu);
    for (const Feed* feed : instances) {
      if (code == 0 && !feed->started) code = 1;
    }
  }
  return ended(code);
}

int RunStreamCommand(const StreamOptions& options) {
  StderrSessionObserver observer;
  std::unique_ptr<WiresharkViewer> viewer;
  StreamOptions effective = options;
  return RunStream(options, observer, [&]() -> StatusOr<OpenedOutput> {
    if (options.wireshark) {
      auto started = WiresharkViewer::Start();
      if (!started.ok()) return started.status();
      viewer = std::move(started.value());
      effective.fifo_path = viewer->fifo_path();
    }
    auto opened = OpenCaptureOutput(effective, [&viewer] { return viewer && viewer->Exited(); });
    if (opened.ok()) observer.EnableLiveStatus(!opened->output.is_stream);
    return opened;
  });
}

}  // namespace capd::client
