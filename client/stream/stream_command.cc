#include "client/stream/stream_command.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <utility>

#include "client/stream/agent_channel.h"
#include "client/stream/output_target.h"
#include "client/stream/signal_watcher.h"
#include "client/stream/wireshark_viewer.h"
#include "filters/bpf_filter.h"
#include "proto/capture.grpc.pb.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace capd::client {
namespace {

using Clock = std::chrono::steady_clock;

int ExitCodeFor(StatusCode code) {
  return code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ? 2 : 1;
}

int ExitCodeFor(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::NOT_FOUND ? 2 : 1;
}

int Fail(const Status& status) {
  std::fprintf(stderr, "capctl: %s\n", status.message().c_str());
  return ExitCodeFor(status.code());
}

std::string ReasonText(v1::StreamEnd::Reason reason) {
  switch (reason) {
    case v1::StreamEnd::COUNT_REACHED:
      return "packet count reached";
    case v1::StreamEnd::DURATION_REACHED:
      return "duration reached";
    case v1::StreamEnd::AGENT_SHUTDOWN:
      return "the agent is shutting down";
    case v1::StreamEnd::CAPTURE_ERROR:
      return "capture error";
    case v1::StreamEnd::CLIENT_CANCELLED:
      return "cancelled";
    default:
      return "unknown reason";
  }
}

// "tunnel packets: 120 decapsulated, 2 malformed, 5 vni_not_selected"; empty when none.
std::string DecapOutcomesText(const std::map<std::string, uint64_t>& outcomes) {
  std::string text;
  for (const auto& [reason, count] : outcomes) {
    text += (text.empty() ? "tunnel packets: " : ", ") + std::to_string(count) + " " + reason;
  }
  return text;
}

// Per interface of the stream: what goes into its statistics block and the summary.
struct InterfaceState {
  uint32_t file_index = 0;
  std::string name;
  uint64_t start_ns = 0;
  v1::InterfaceStatistics latest;  // the agent's last statistics for it
  uint64_t last_statistics_ns = 0;
  bool in_file = true;  // false: a mirror capture interface left out of a pcap file
  std::map<std::string, uint64_t> decap_outcomes;
  uint64_t written = 0;    // packets the sink accepted
  uint64_t unflushed = 0;  // packets encoded but not yet flushed
};

// dumpcap-like one-line progress on a terminal, rewritten in place at most twice a second.
class LiveStatusLine {
 public:
  explicit LiveStatusLine(bool enabled) : enabled_(enabled) {}
  void Update(uint64_t packets, uint64_t drops) {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(500)) return;
    const double seconds = std::chrono::duration<double>(now - last_).count();
    const double rate = last_packets_ <= packets ? (packets - last_packets_) / seconds : 0;
    std::fprintf(stderr, "\rPackets: %llu  dropped: %llu  rate: %.0f pkt/s   ",
                 static_cast<unsigned long long>(packets), static_cast<unsigned long long>(drops),
                 rate);
    last_ = now;
    last_packets_ = packets;
    shown_ = true;
  }
  void End() {
    if (shown_) std::fputc('\n', stderr);
  }

 private:
  bool enabled_;
  bool shown_ = false;
  Clock::time_point last_ = Clock::now();
  uint64_t last_packets_ = 0;
};

class StreamRun {
 public:
  StreamRun(const StreamOptions& options, OutputTarget output)
      : options_(options), output_(std::move(output)) {
    writer_ = options.format == FileFormat::kPcap
                  ? MakePcapWriter(std::move(output_.sink))
                  : MakePcapngWriter(std::move(output_.sink), "capctl " CAPD_VERSION);
  }

  int Run(const AgentConnection& connection);
  void Interrupt() {
    interrupted_.store(true);
    context_.TryCancel();
  }

 private:
  Status OnInterface(const v1::InterfaceDescription& description);
  Status OnPackets(const v1::PacketBatch& batch);
  void OnStatistics(const v1::Statistics& statistics);
  void WriteStatisticsBlocks();
  void PrintSummary(const std::string& ending);
  uint64_t TotalDrops() const;

  const StreamOptions& options_;
  OutputTarget output_;
  std::unique_ptr<CaptureWriter> writer_;
  grpc::ClientContext context_;
  std::atomic<bool> interrupted_{false};
  std::map<uint32_t, InterfaceState> interfaces_;  // by the stream's interface index
  uint32_t next_file_index_ = 0;
  std::string excluded_carriers_;
  uint64_t written_ = 0;
};

Status StreamRun::OnInterface(const v1::InterfaceDescription& d) {
  InterfaceState state;
  state.name = d.name();
  state.start_ns = d.capture_start_ns();
  // In mirror-target mode the capture interface carries no packets of its own; a pcap file
  // holds one link type, that of the inner frames, so it is left out there.
  if (options_.format == FileFormat::kPcap && options_.decap.mode != DecapOptions::Mode::kNone &&
      d.encapsulation().empty()) {
    state.in_file = false;
    interfaces_[d.index()] = state;
    std::fprintf(stderr, "capctl: capturing on %s (agent %s, decapsulating)\n", d.name().c_str(),
                 d.agent_name().c_str());
    return Status::Ok();
  }
  InterfaceInfo info;
  info.name = d.name();
  info.description = d.description();
  info.filter = d.filter();
  info.os = d.os();
  info.link_type = static_cast<uint16_t>(d.link_type());
  info.snaplen = d.snaplen();
  CAPD_RETURN_IF_ERROR(writer_->AddInterface(info));
  state.file_index = next_file_index_++;
  interfaces_[d.index()] = state;
  // The header reaches the reader before any packet: Wireshark shows the interface at once.
  CAPD_RETURN_IF_ERROR(writer_->Flush());
  if (d.encapsulation().empty()) {
    std::fprintf(stderr, "capctl: capturing on %s (agent %s, link type %u, snaplen %u)\n",
                 d.name().c_str(), d.agent_name().c_str(), d.link_type(), d.snaplen());
  } else {
    std::fprintf(stderr, "capctl: new interface %s: %s\n", d.name().c_str(),
                 d.description().c_str());
  }
  return Status::Ok();
}

Status StreamRun::OnPackets(const v1::PacketBatch& batch) {
  const int n = batch.timestamp_ns_size();
  if (batch.interface_index_size() != n || batch.original_length_size() != n ||
      batch.captured_length_size() != n) {
    return Internal("agent sent a malformed batch (array lengths differ)");
  }
  const auto* data = reinterpret_cast<const uint8_t*>(batch.data().data());
  const size_t size = batch.data().size();
  if (batch.comment_packet_size() != batch.comment_size()) {
    return Internal("agent sent a malformed batch (comment arrays differ)");
  }
  size_t offset = 0;
  int next_comment = 0;
  for (int i = 0; i < n; ++i) {
    const uint32_t caplen = batch.captured_length(i);
    std::string_view comment;
    if (next_comment < batch.comment_size() &&
        batch.comment_packet(next_comment) == static_cast<uint32_t>(i)) {
      comment = batch.comment(next_comment++);
    }
    if (caplen > size - offset) return Internal("agent sent a malformed batch (data too short)");
    auto it = interfaces_.find(batch.interface_index(i));
    if (it == interfaces_.end() || !it->second.in_file) {
      return Internal("agent sent a packet for an undeclared interface");
    }
    CAPD_RETURN_IF_ERROR(
        writer_->WritePacket(it->second.file_index, batch.timestamp_ns(i), batch.original_length(i),
                             std::span<const uint8_t>(data + offset, caplen), comment));
    offset += caplen;
    ++it->second.unflushed;
  }
  // Count only what reached the sink: after a failed write the summary must not overstate.
  CAPD_RETURN_IF_ERROR(writer_->Flush());
  for (auto& [index, state] : interfaces_) state.written += std::exchange(state.unflushed, 0);
  written_ += n;
  return Status::Ok();
}

void StreamRun::OnStatistics(const v1::Statistics& statistics) {
  // Say what the agent leaves out of the capture because it carries this very stream.
  std::string carriers;
  for (const std::string& c : statistics.excluded_carriers()) {
    carriers += (carriers.empty() ? "" : "; ") + c;
  }
  if (carriers != excluded_carriers_) {
    excluded_carriers_ = carriers;
    if (!carriers.empty()) {
      std::fprintf(stderr, "capctl: the agent excludes the connections carrying this stream: %s\n",
                   carriers.c_str());
    }
  }
  for (const v1::InterfaceStatistics& s : statistics.interfaces()) {
    auto it = interfaces_.find(s.interface_index());
    if (it == interfaces_.end()) continue;
    it->second.latest = s;
    it->second.last_statistics_ns = statistics.timestamp_ns();
    it->second.decap_outcomes.clear();
    for (const auto& [reason, count] : s.decap_outcomes())
      it->second.decap_outcomes[reason] = count;
  }
}

uint64_t StreamRun::TotalDrops() const {
  uint64_t drops = 0;
  for (const auto& [index, state] : interfaces_) {
    drops +=
        state.latest.kernel_drops() + state.latest.interface_drops() + state.latest.agent_drops();
  }
  return drops;
}

void StreamRun::WriteStatisticsBlocks() {
  for (const auto& [index, state] : interfaces_) {
    InterfaceCounters counters;
    counters.start_ns = state.start_ns;
    counters.end_ns = state.last_statistics_ns != 0 ? state.last_statistics_ns : state.start_ns;
    counters.received = state.latest.packets_received();
    counters.interface_drops = state.latest.interface_drops();
    counters.kernel_drops = state.latest.kernel_drops();
    counters.agent_drops = state.latest.agent_drops();
    counters.delivered = state.written;
    counters.comment = DecapOutcomesText(state.decap_outcomes);
    if (!state.in_file) continue;
    if (!writer_->WriteStatistics(state.file_index, counters).ok()) return;
  }
  (void)writer_->Flush();  // the reader may be gone already; the summary says what was written
}

void StreamRun::PrintSummary(const std::string& ending) {
  uint64_t kernel = 0, interface = 0, agent = 0;
  for (const auto& [index, state] : interfaces_) {
    kernel += state.latest.kernel_drops();
    interface += state.latest.interface_drops();
    agent += state.latest.agent_drops();
  }
  std::string decap;
  for (const auto& [index, state] : interfaces_) {
    if (!state.decap_outcomes.empty()) decap += "; " + DecapOutcomesText(state.decap_outcomes);
  }
  std::fprintf(stderr,
               "capctl: %llu packets written to %s; dropped: %llu by kernel, %llu by interface, "
               "%llu by agent%s (%s)\n",
               static_cast<unsigned long long>(written_), output_.name.c_str(),
               static_cast<unsigned long long>(kernel), static_cast<unsigned long long>(interface),
               static_cast<unsigned long long>(agent), decap.c_str(), ending.c_str());
}

int StreamRun::Run(const AgentConnection& connection) {
  v1::StreamRequest request;
  request.set_interface(options_.interface);
  request.set_filter(options_.filter);
  // tcpdump's -s 0 means the largest snaplen; the agent takes only 1..262144.
  if (options_.snaplen != 0) request.set_snaplen(options_.snaplen);
  request.set_max_packets(options_.count);
  request.set_duration_ms(options_.duration_ms);
  request.set_no_promiscuous(!options_.promiscuous);
  if (options_.decap.mode != DecapOptions::Mode::kNone) {
    v1::Decapsulation* d = request.mutable_decap();
    d->set_mode(options_.decap.mode == DecapOptions::Mode::kVxlan    ? v1::Decapsulation::VXLAN
                : options_.decap.mode == DecapOptions::Mode::kGeneve ? v1::Decapsulation::GENEVE
                                                                     : v1::Decapsulation::AUTO);
    d->set_vxlan_port(options_.decap.vxlan_port);
    d->set_geneve_port(options_.decap.geneve_port);
    for (uint32_t vni : options_.decap.vnis) d->add_vnis(vni);
    d->set_inner_filter(options_.decap.inner_filter);
  }

  auto stub = v1::Capture::NewStub(connection.channel());
  connection.Prepare(context_);
  auto reader = stub->Stream(&context_, request);
  LiveStatusLine status_line(!output_.is_stream && isatty(STDERR_FILENO));
  v1::StreamResponse response;
  std::optional<v1::StreamEnd> end;
  Status local_error;
  bool reader_gone = false;
  while (reader->Read(&response)) {
    Status step;
    switch (response.payload_case()) {
      case v1::StreamResponse::kInterface:
        step = OnInterface(response.interface());
        break;
      case v1::StreamResponse::kPackets:
        step = OnPackets(response.packets());
        break;
      case v1::StreamResponse::kStatistics:
        OnStatistics(response.statistics());
        break;
      case v1::StreamResponse::kEnd:
        end = response.end();
        break;
      default:
        break;  // a newer agent's message kind: ignore it
    }
    if (!step.ok()) {
      if (step.code() == StatusCode::kUnavailable && output_.is_stream) {
        reader_gone = true;  // Wireshark closed, `head` had enough: a normal way to stop
      } else {
        local_error = step;
      }
      context_.TryCancel();
      break;
    }
    status_line.Update(written_, TotalDrops());
  }
  const grpc::Status status = reader->Finish();
  status_line.End();

  if (!local_error.ok()) {
    WriteStatisticsBlocks();
    PrintSummary("stopped: " + local_error.message());
    return 1;
  }
  if (reader_gone) {
    PrintSummary("the reader of " + output_.name + " went away");
    return 0;
  }
  if (interrupted_.load()) {
    WriteStatisticsBlocks();
    PrintSummary("interrupted");
    return 0;
  }
  if (!status.ok()) {
    if (interfaces_.empty()) {  // refused before the capture started
      std::fprintf(stderr, "capctl: agent %s refused the stream: %s\n",
                   options_.agents[0].target.c_str(), DescribeRefusal(status).c_str());
      return ExitCodeFor(status.error_code());
    }
    WriteStatisticsBlocks();
    PrintSummary("agent went away: " + status.error_message());
    return 1;
  }
  WriteStatisticsBlocks();
  if (!end) {
    PrintSummary("the agent ended the stream without a reason");
    return 1;
  }
  std::string ending = ReasonText(end->reason());
  if (!end->message().empty()) ending += ": " + end->message();
  PrintSummary(ending);
  const bool normal = end->reason() == v1::StreamEnd::COUNT_REACHED ||
                      end->reason() == v1::StreamEnd::DURATION_REACHED;
  return normal ? 0 : 1;
}

}  // namespace

int RunStreamCommand(const StreamOptions& options) {
  // Fail before connecting on a filter that compiles for no usual link type; the agent checks
  // again against the capture's real one.
  if (Status filter = filters::PrecheckFilter(options.filter); !filter.ok()) return Fail(filter);

  std::mutex mu;
  StreamRun* active = nullptr;
  SignalWatcher watcher([&](int) {
    std::lock_guard lock(mu);
    if (active != nullptr) {
      active->Interrupt();
    } else {
      // Still connecting or waiting for a FIFO reader: nothing to complete.
      std::fputs("capctl: interrupted\n", stderr);
      std::_Exit(0);
    }
  });

  // Connect first: an unreachable agent should not leave an empty file behind.
  auto connection = AgentConnection::Connect(options.agents[0], options.connection);
  if (!connection.ok()) return Fail(connection.status());
  std::unique_ptr<WiresharkViewer> viewer;
  StreamOptions effective = options;
  if (options.wireshark) {
    auto started = WiresharkViewer::Start();
    if (!started.ok()) return Fail(started.status());
    viewer = std::move(started.value());
    effective.fifo_path = viewer->fifo_path();
  }
  auto output = OpenOutputTarget(effective, [&viewer] { return viewer && viewer->Exited(); });
  if (!output.ok()) return Fail(output.status());

  StreamRun run(options, std::move(output.value()));
  {
    std::lock_guard lock(mu);
    active = &run;
  }
  const int code = run.Run(connection.value());
  std::lock_guard lock(mu);
  active = nullptr;
  return code;
}

}  // namespace capd::client
