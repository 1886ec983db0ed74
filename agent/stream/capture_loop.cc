#include "agent/stream/capture_loop.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/capture/interfaces.h"
#include "agent/capture/live_capture.h"
#include "agent/stream/batch_builder.h"

namespace capd::agent {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kDefaultSnaplen = 262144;  // tcpdump's default since 4.99

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// State the per-packet callback needs; lives on the capture thread's stack.
struct PacketContext {
  BatchBuilder batch;
  StreamSink* sink = nullptr;
  uint64_t captured = 0;     // packets read from the ring
  uint64_t sent = 0;         // packets in batches the sink accepted
  uint64_t agent_drops = 0;  // packets in batches the sink refused (its queue was full)

  void FlushBatch() {
    if (!batch.started() || batch.empty()) return;
    const size_t n = batch.packet_count();
    if (sink->Send(batch.Finish(), /*droppable=*/true)) {
      sent += n;
    } else {
      agent_drops += n;
    }
  }

  static void OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data) {
    auto* self = reinterpret_cast<PacketContext*>(user);
    if (!self->batch.started()) self->batch.Start(self->sink->NewMessage());
    // PCAP_TSTAMP_PRECISION_NANO: tv_usec carries nanoseconds.
    const uint64_t ts = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
                        static_cast<uint64_t>(header->ts.tv_usec);
    self->batch.Append(0, ts, header->len, data, header->caplen);
    ++self->captured;
    if (self->batch.full()) self->FlushBatch();
  }
};

}  // namespace

Status ValidateStreamRequest(const v1::StreamRequest& request) {
  if (request.snaplen() > kDefaultSnaplen) {
    return InvalidArgument("snaplen " + std::to_string(request.snaplen()) +
                           " is out of range: 1..262144 (0 means 262144)");
  }
  if (request.interface().find('/') != std::string::npos || request.interface().size() > 64) {
    return InvalidArgument("interface name '" + request.interface() + "' is not valid");
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
  config.snaplen = request_.snaplen() == 0 ? kDefaultSnaplen : request_.snaplen();
  config.promiscuous = !request_.no_promiscuous();

  auto opened = LiveCapture::Open(config);
  if (!opened.ok()) return opened.status();
  LiveCapture& capture = *opened.value();
  auto composed = filters::ComposeCaptureFilter(request_.filter(), identity_.own_traffic,
                                                capture.datalink(), capture.snaplen());
  if (!composed.ok()) return composed.status();
  CAPD_RETURN_IF_ERROR(capture.SetFilter(composed->expression));
  spdlog::info("stream on {}: link type {}, snaplen {}, filter '{}'", capture.interface(),
               capture.linktype(), capture.snaplen(), composed->expression);

  // The interface description goes first: the client writes its file header from it.
  {
    auto message = sink_.NewMessage();
    v1::InterfaceDescription* d = message->mutable_interface();
    d->set_index(0);
    d->set_name(capture.interface());
    d->set_description(capture.interface() + " on capd agent " + identity_.name);
    d->set_link_type(capture.linktype());
    d->set_snaplen(static_cast<uint32_t>(capture.snaplen()));
    d->set_filter(composed->expression);
    d->set_agent_name(identity_.name);
    d->set_os(identity_.os);
    d->set_capture_start_ns(NowNs());
    sink_.Send(std::move(message), /*droppable=*/false);
  }

  PacketContext context;
  context.sink = &sink_;
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
    i->set_packets_captured(context.captured);
    i->set_agent_drops(context.agent_drops);
    i->set_packets_sent(context.sent);
    sink_.Send(std::move(message), /*droppable=*/false);
  };

  v1::StreamEnd end;
  while (true) {
    if (stop_.requested()) {
      end.set_reason(stop_.reason());
      break;
    }
    if (limits.max_packets != 0 && context.captured >= limits.max_packets) {
      end.set_reason(v1::StreamEnd::COUNT_REACHED);
      end.set_message(std::to_string(context.captured) + " packets captured");
      break;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      end.set_reason(v1::StreamEnd::DURATION_REACHED);
      end.set_message("duration of " + std::to_string(limits.duration.count()) + " ms reached");
      break;
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
            : static_cast<int>(std::min<uint64_t>(limits.max_packets - context.captured, 1 << 20));
    const RecvStatus status =
        capture.Dispatch(remaining, &PacketContext::OnPacket, reinterpret_cast<u_char*>(&context));
    if (status == RecvStatus::kError) {
      end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
      end.set_message(capture.error());
      spdlog::warn("stream on {} failed: {}", capture.interface(), capture.error());
      break;
    }
    if (status == RecvStatus::kOk) {
      continue;  // maybe more is ready; the limits are checked at the top
    }
    context.FlushBatch();

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
      if (capture.Dispatch(-1, &PacketContext::OnPacket, reinterpret_cast<u_char*>(&context)) ==
          RecvStatus::kError) {
        end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
        end.set_message(capture.error());
        break;
      }
    }
  }
  context.FlushBatch();
  send_statistics();
  spdlog::info("stream on {} ended ({}): {} captured, {} sent, {} agent drops, {:.1f} s",
               capture.interface(), v1::StreamEnd::Reason_Name(end.reason()), context.captured,
               context.sent, context.agent_drops, (NowNs() - started_ns) / 1e9);
  return end;
}

}  // namespace capd::agent
