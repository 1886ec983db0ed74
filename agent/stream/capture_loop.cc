#include "agent/stream/capture_loop.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>

#include "agent/capture/interfaces.h"
#include "agent/capture/live_capture.h"
#include "agent/stream/batch_builder.h"
#include "pipeline/mirror_stage.h"

namespace capd::agent {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kDefaultSnaplen = 262144;  // tcpdump's default since 4.99
constexpr size_t kMaxVnis = 4096;
constexpr size_t kMaxFilterBytes = 16 * 1024;
constexpr size_t kInterfaceNameBytes = 16;  // IFNAMSIZ, with its terminating NUL
constexpr uint64_t kMaxDurationMs = 30ULL * 24 * 3600 * 1000;
constexpr uint64_t kMaxPackets = 1ULL << 48;

using AnnounceFn = std::function<void(const pipeline::InnerInterface&)>;

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The per-packet path and its counters; lives on the capture thread's stack.
class PacketPath {
 public:
  PacketPath(StreamSink& sink, pipeline::MirrorStage* mirror, AnnounceFn announce)
      : sink_(sink), mirror_(mirror), announce_(std::move(announce)) {}

  static void OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data) {
    reinterpret_cast<PacketPath*>(user)->Handle(*header, data);
  }

  void FlushBatch() {
    if (!batch_.started() || batch_.empty()) return;
    const size_t n = batch_.packet_count();
    if (sink_.Send(batch_.Finish(), /*droppable=*/true)) {
      sent_ += n;
    } else {
      agent_drops_ += n;
    }
  }

  uint64_t captured() const { return captured_; }        // packets read from the ring
  uint64_t delivered() const { return delivered_; }      // packets put into batches
  uint64_t sent() const { return sent_; }                // in batches the sink accepted
  uint64_t agent_drops() const { return agent_drops_; }  // in batches the sink refused

 private:
  void Handle(const pcap_pkthdr& header, const uint8_t* data) {
    ++captured_;
    // PCAP_TSTAMP_PRECISION_NANO: tv_usec carries nanoseconds.
    const uint64_t ts = static_cast<uint64_t>(header.ts.tv_sec) * 1'000'000'000ULL +
                        static_cast<uint64_t>(header.ts.tv_usec);
    if (mirror_ == nullptr) {
      Append(0, ts, header.len, data, header.caplen, {});
      return;
    }
    pipeline::InnerPacket inner;
    if (mirror_->Process(data, header.caplen, header.len, inner) != pipeline::Verdict::kContinue) {
      return;
    }
    if (inner.new_interface) {
      // The description must reach the client before the first packet filed under it.
      FlushBatch();
      announce_(*inner.interface);
    }
    // The inner frame keeps the outer packet's kernel timestamp.
    Append(inner.interface->index, ts, inner.original_length, inner.data, inner.captured_length,
           inner.comment);
  }

  void Append(uint32_t interface_index, uint64_t ts, uint32_t original_length, const uint8_t* data,
              uint32_t captured_length, std::string_view comment) {
    if (!batch_.started()) batch_.Start(sink_.NewMessage());
    batch_.Append(interface_index, ts, original_length, data, captured_length);
    batch_.CommentLast(comment);
    ++delivered_;
    if (batch_.full()) FlushBatch();
  }

  StreamSink& sink_;
  pipeline::MirrorStage* mirror_;
  AnnounceFn announce_;
  BatchBuilder batch_;
  uint64_t captured_ = 0;
  uint64_t delivered_ = 0;
  uint64_t sent_ = 0;
  uint64_t agent_drops_ = 0;
};

StatusOr<decap::Config> DecapConfigFrom(const v1::Decapsulation& d) {
  decap::Config config;
  switch (d.mode()) {
    case v1::Decapsulation::VXLAN:
      config.mode = decap::Mode::kVxlan;
      break;
    case v1::Decapsulation::GENEVE:
      config.mode = decap::Mode::kGeneve;
      break;
    case v1::Decapsulation::AUTO:
      config.mode = decap::Mode::kAuto;
      break;
    default:
      return InvalidArgument("unknown decapsulation mode " + std::to_string(d.mode()));
  }
  if (d.vxlan_port() > 65535 || d.geneve_port() > 65535) {
    return InvalidArgument("tunnel ports must be 1..65535");
  }
  if (d.vxlan_port() != 0) config.vxlan_port = static_cast<uint16_t>(d.vxlan_port());
  if (d.geneve_port() != 0) config.geneve_port = static_cast<uint16_t>(d.geneve_port());
  return config;
}

}  // namespace

Status ValidateStreamRequest(const v1::StreamRequest& request) {
  if (request.has_snaplen() && (request.snaplen() == 0 || request.snaplen() > kDefaultSnaplen)) {
    return InvalidArgument("snaplen " + std::to_string(request.snaplen()) +
                           " is out of range: 1..262144");
  }
  if (request.filter().size() > kMaxFilterBytes) {
    return InvalidArgument("filter is " + std::to_string(request.filter().size()) +
                           " bytes: at most 16 KiB");
  }
  if (request.decap().inner_filter().size() > kMaxFilterBytes) {
    return InvalidArgument("inner filter is over 16 KiB");
  }
  if (request.duration_ms() > kMaxDurationMs) {
    return InvalidArgument("duration " + std::to_string(request.duration_ms() / 1000) +
                           " s is over the limit of 30 days");
  }
  if (request.max_packets() > kMaxPackets) {
    return InvalidArgument("count " + std::to_string(request.max_packets()) + " is over 2^48");
  }
  const std::string& name = request.interface();
  const bool name_ok =
      name.size() < kInterfaceNameBytes && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
               c == ':' || c == '@';
      });
  if (!name_ok) {
    return InvalidArgument(
        "interface name is not valid: at most 15 characters of A-Z a-z 0-9 - _ . : @");
  }
  if (request.decap().vnis_size() > static_cast<int>(kMaxVnis)) {
    return InvalidArgument("at most " + std::to_string(kMaxVnis) + " VNIs can be selected");
  }
  for (uint32_t vni : request.decap().vnis()) {
    if (vni > 0xFFFFFF) return InvalidArgument("VNI " + std::to_string(vni) + " is not 24-bit");
  }
  return Status::Ok();
}

CaptureLoop::CaptureLoop(const v1::StreamRequest& request, const AgentIdentity& identity,
                         StreamSink& sink, StopSignal& stop)
    : request_(request), identity_(identity), sink_(sink), stop_(stop) {}

StatusOr<v1::StreamEnd> CaptureLoop::Run() {
  CAPD_RETURN_IF_ERROR(ValidateStreamRequest(request_));
  LiveCaptureConfig config;
  config.interface = request_.interface();
  if (config.interface.empty()) {
    auto default_interface = DefaultRouteInterface();
    if (!default_interface.ok()) return default_interface.status();
    config.interface = default_interface.value();
  }
  config.snaplen = request_.has_snaplen() ? request_.snaplen() : kDefaultSnaplen;
  config.promiscuous = !request_.no_promiscuous();
  config.buffer_bytes = identity_.ring.buffer_bytes;
  config.block_timeout_ms = identity_.ring.block_timeout_ms;

  auto opened = LiveCapture::Open(config);
  if (!opened.ok()) return opened.status();
  LiveCapture& capture = *opened.value();
  const bool mirror_mode = request_.decap().mode() != v1::Decapsulation::NONE;
  std::unique_ptr<pipeline::MirrorStage> mirror;
  std::string scope;
  if (mirror_mode) {
    auto decap_config = DecapConfigFrom(request_.decap());
    if (!decap_config.ok()) return decap_config.status();
    pipeline::MirrorOptions mirror_options;
    mirror_options.decap = decap_config.value();
    mirror_options.vnis.assign(request_.decap().vnis().begin(), request_.decap().vnis().end());
    mirror_options.inner_filter = request_.decap().inner_filter();
    auto stage = pipeline::MirrorStage::Create(mirror_options, capture.linktype(),
                                               capture.interface(), /*first_index=*/1);
    if (!stage.ok()) return stage.status();
    mirror = std::move(stage.value());
    scope = pipeline::MirrorStage::TunnelScope(mirror_options.decap);
  }
  // The own-traffic exclusion includes the carriers of capd's streams, which change as clients
  // come and go: the kernel filter is recomposed whenever the tracker's set changes.
  std::shared_ptr<const CarrierSnapshot> carriers;
  auto compose = [&]() {
    filters::OwnTraffic own = identity_.own_traffic;
    if (identity_.carriers) {
      carriers = identity_.carriers->Snapshot();
      own.carriers = carriers->expression;
    }
    return filters::ComposeCaptureFilter(request_.filter(), own, capture.datalink(),
                                         capture.snaplen(), scope);
  };
  if (identity_.carriers) {
    // This stream's own relay (sshd, the SSM worker) is known only now that it has connected.
    identity_.carriers->Refresh(
        identity_.own_traffic.tcp_ports.empty() ? 0 : identity_.own_traffic.tcp_ports.front());
  }
  auto composed = compose();
  if (!composed.ok()) return composed.status();
  CAPD_RETURN_IF_ERROR(capture.SetFilter(composed->expression));
  spdlog::info(
      "stream on {}: link type {}, snaplen {}, ring {} KiB, block timeout {} ms, "
      "filter '{}'{}",
      capture.interface(), capture.linktype(), capture.snaplen(), config.buffer_bytes / 1024,
      config.block_timeout_ms, composed->expression, mirror_mode ? ", decapsulating" : "");

  // The capture interface is described first: the client writes its file header from it. In
  // mirror-target mode no packet is filed under it; its statistics carry the kernel's counters.
  const uint64_t capture_start_ns = NowNs();
  {
    auto message = sink_.NewMessage();
    v1::InterfaceDescription* d = message->mutable_interface();
    d->set_index(0);
    d->set_name(capture.interface());
    d->set_description(
        capture.interface() + " on capd agent " + identity_.name +
        (identity_.metadata ? " " + identity_.metadata->Describe(InterfaceMac(capture.interface()))
                            : "") +
        (mirror_mode ? " (tunnel packets; inner frames on the decap interfaces)" : ""));
    d->set_link_type(capture.linktype());
    d->set_snaplen(static_cast<uint32_t>(capture.snaplen()));
    d->set_filter(composed->expression);
    d->set_agent_name(identity_.name);
    d->set_os(identity_.os);
    d->set_capture_start_ns(capture_start_ns);
    sink_.Send(std::move(message), /*droppable=*/false);
  }
  auto announce = [&](const pipeline::InnerInterface& inner) {
    auto message = sink_.NewMessage();
    v1::InterfaceDescription* d = message->mutable_interface();
    d->set_index(inner.index);
    d->set_name(inner.name);
    d->set_description(inner.description + " (capd agent " + identity_.name + ")");
    d->set_link_type(inner.link_type);
    d->set_snaplen(static_cast<uint32_t>(capture.snaplen()));
    d->set_filter(request_.decap().inner_filter());
    d->set_agent_name(identity_.name);
    d->set_os(identity_.os);
    d->set_capture_start_ns(capture_start_ns);
    d->set_encapsulation(decap::EncapsulationName(inner.encapsulation));
    d->set_vni(inner.vni);
    d->set_capture_interface_index(0);
    sink_.Send(std::move(message), /*droppable=*/false);
  };

  PacketPath path(sink_, mirror.get(), announce);
  CaptureLimits limits;
  limits.max_packets = request_.max_packets();
  limits.duration = std::chrono::milliseconds(request_.duration_ms());
  const Clock::time_point started = Clock::now();
  const uint64_t started_ns = NowNs();
  const Clock::time_point deadline =
      limits.duration.count() > 0 ? started + limits.duration : Clock::time_point::max();
  Clock::time_point next_statistics = started + limits.statistics_period;

  auto send_statistics = [&]() {
    auto counters = capture.Stats();
    auto message = sink_.NewMessage();
    v1::Statistics* s = message->mutable_statistics();
    s->set_timestamp_ns(NowNs());
    v1::InterfaceStatistics* i = s->add_interfaces();
    i->set_interface_index(0);
    if (counters.ok()) {
      i->set_packets_received(counters->received);
      i->set_kernel_drops(counters->kernel_drops);
      i->set_interface_drops(counters->interface_drops);
    }
    if (carriers) {
      for (const CarrierConnection& c : carriers->connections)
        s->add_excluded_carriers(c.Describe());
      s->set_carrier_unreadable_processes(carriers->unreadable_processes);
    }
    i->set_packets_captured(path.captured());
    i->set_agent_drops(path.agent_drops());
    i->set_packets_sent(path.sent());
    if (mirror) {
      for (const auto& [reason, count] : mirror->Counters())
        (*i->mutable_decap_outcomes())[reason] = count;
      for (const auto& inner : mirror->interfaces()) {
        v1::InterfaceStatistics* v = s->add_interfaces();
        v->set_interface_index(inner->index);
        v->set_packets_received(inner->packets);
        v->set_packets_captured(inner->packets);
      }
    }
    sink_.Send(std::move(message), /*droppable=*/false);
  };

  v1::StreamEnd end;
  while (true) {
    if (stop_.requested()) {
      end.set_reason(stop_.reason());
      break;
    }
    if (limits.max_packets != 0 && path.delivered() >= limits.max_packets) {
      end.set_reason(v1::StreamEnd::COUNT_REACHED);
      end.set_message(std::to_string(path.delivered()) + " packets captured");
      break;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      end.set_reason(v1::StreamEnd::DURATION_REACHED);
      end.set_message("duration of " + std::to_string(limits.duration.count()) + " ms reached");
      break;
    }
    if (carriers && identity_.carriers->generation() != carriers->generation) {
      auto recomposed = compose();
      if (recomposed.ok() && capture.SetFilter(recomposed->expression).ok()) {
        spdlog::info("stream on {}: carriers changed, filter now '{}'", capture.interface(),
                     recomposed->expression);
      } else {
        spdlog::warn("stream on {}: could not update the carrier exclusion: {}",
                     capture.interface(),
                     recomposed.ok() ? capture.error() : recomposed.status().message());
      }
    }
    if (now >= next_statistics) {
      send_statistics();
      next_statistics = now + limits.statistics_period;
    }

    // Drain what the ring holds, then send the partial batch: the ring being empty is the
    // moment a lone packet should leave (its block was retired by the 10 ms block timeout).
    const int remaining =
        limits.max_packets == 0
            ? -1
            : static_cast<int>(std::min<uint64_t>(limits.max_packets - path.delivered(), 1 << 20));
    const RecvStatus status =
        capture.Dispatch(remaining, &PacketPath::OnPacket, reinterpret_cast<u_char*>(&path));
    if (status == RecvStatus::kError) {
      end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
      end.set_message(capture.error());
      spdlog::warn("stream on {} failed: {}", capture.interface(), capture.error());
      break;
    }
    if (status == RecvStatus::kOk) {
      continue;  // maybe more is ready; the limits are checked at the top
    }
    path.FlushBatch();

    const Clock::time_point wake = std::min(next_statistics, deadline);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now());
    pollfd fds[2] = {{capture.fd(), POLLIN, 0}, {stop_.fd(), POLLIN, 0}};
    const int timeout_ms = static_cast<int>(std::max<int64_t>(0, wait.count() + 1));
    if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
      end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
      end.set_message(std::string("poll: ") + strerror(errno));
      break;
    }
    if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      // An interface that disappears (ip link del) reports POLLERR; dispatch gets the error text.
      if (capture.Dispatch(-1, &PacketPath::OnPacket, reinterpret_cast<u_char*>(&path)) ==
          RecvStatus::kError) {
        end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
        end.set_message(capture.error());
        break;
      }
    }
  }
  path.FlushBatch();
  send_statistics();
  spdlog::info("stream on {} ended ({}): {} captured, {} sent, {} agent drops, {:.1f} s",
               capture.interface(), v1::StreamEnd::Reason_Name(end.reason()), path.captured(),
               path.sent(), path.agent_drops(), (NowNs() - started_ns) / 1e9);
  return end;
}

}  // namespace capd::agent
