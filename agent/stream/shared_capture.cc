#include "agent/stream/shared_capture.h"

#include <poll.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "agent/capture/live_capture.h"
#include "agent/stream/capture_hub.h"
#include "agent/stream/descriptions.h"
#include "agent/stream/hold_policy.h"
#include "agent/stream/stream_request.h"

namespace capd::agent {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

// One client's view of a shared capture. Owned by the capture thread once admitted.

}  // namespace

SharedCapture::SharedCapture(CaptureHub& hub, const StopSignal& shutdown, std::string key,
                             const v1::StreamRequest& request, std::string interface,
                             const AgentIdentity& identity)
    : hub_(hub),
      shutdown_(shutdown),
      key_(std::move(key)),
      request_(request),
      interface_(std::move(interface)),
      identity_(identity),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

SharedCapture::~SharedCapture() {
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool SharedCapture::TryJoin(std::unique_ptr<Subscriber>& subscriber) {
  {
    std::lock_guard lock(mu_);
    if (closing_) return false;  // `subscriber` stays the caller's
    pending_.push_back(std::move(subscriber));
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof one);
  return true;
}

void SharedCapture::Main() {
  const Status opened = Open();
  if (!opened.ok()) {
    Finish(opened);
    return;
  }
  Loop();
  Finish(Status::Ok());
}

Status SharedCapture::Open() {
  CaptureConfig config;
  config.interface = interface_;
  config.snaplen = request_.has_snaplen() ? request_.snaplen() : kDefaultSnaplen;
  config.promiscuous = !request_.no_promiscuous();
  config.buffer_bytes = identity_.ring.buffer_bytes;
  config.block_timeout_ms = identity_.ring.block_timeout_ms;

  const bool mirror_mode = request_.decap().mode() != v1::Decapsulation::NONE;
  pipeline::MirrorOptions mirror_options;
  if (mirror_mode) {
    auto decap_config = DecapConfigFrom(request_.decap());
    if (!decap_config.ok()) return decap_config.status();
    mirror_options.decap = decap_config.value();
    mirror_options.vnis.assign(request_.decap().vnis().begin(), request_.decap().vnis().end());
    mirror_options.inner_filter = request_.decap().inner_filter();
    mirror_options.max_interfaces = identity_.max_decap_interfaces;
    scope_ = pipeline::MirrorStage::TunnelScope(mirror_options.decap);
    if (!mirror_options.inner_filter.empty() && identity_.filter_sandbox) {
      auto compiler = CompileInnerFilter(mirror_options.inner_filter);
      if (!compiler.ok()) return compiler.status();
      mirror_options.compile = std::move(compiler.value());
    }
  }
  // The filter is compiled, once, before the ring is opened: a filter that does not compile or
  // costs too much is refused without a 32 MiB ring having been set up for nothing. Only where
  // the link type cannot be known beforehand (or libpcap chose another) is it compiled after.
  // The first stream's relay is registered before it subscribes, so the first filter has it.
  LiveCaptureFactory live;
  CaptureSourceFactory& sources = identity_.sources ? *identity_.sources : live;
  std::optional<filters::ComposedFilter> composed;
  if (const std::optional<int> expected = sources.ExpectedDatalink(interface_)) {
    auto early = ComposeFilter(*expected, config.snaplen);
    if (!early.ok()) return early.status();
    composed = std::move(early.value());
  }

  auto opened = sources.Open(config);
  if (!opened.ok()) return opened.status();
  capture_ = std::move(opened.value());
  CaptureSource& capture = *capture_;
  if (!composed || composed->link_type != capture.datalink() ||
      composed->snaplen != capture.snaplen()) {
    auto late = ComposeFilter(capture.datalink(), capture.snaplen());
    if (!late.ok()) return late.status();
    composed = std::move(late.value());
  }
  if (mirror_mode) {
    auto stage = pipeline::MirrorStage::Create(mirror_options, capture.linktype(),
                                               capture.interface(), /*first_index=*/1);
    if (!stage.ok()) return stage.status();
    mirror_ = std::move(stage.value());
  }
  CAPD_RETURN_IF_ERROR(capture.SetFilter(*composed));
  opened_snaplen_ = capture.snaplen();
  opened_link_type_.store(capture.datalink(), std::memory_order_release);
  settings_ = fmt::format(
      "link type {}, snaplen {}, ring {} KiB, block timeout {} ms, filter '{}'{}",
      capture.linktype(), capture.snaplen(), config.buffer_bytes / 1024, config.block_timeout_ms,
      composed->expression, mirror_mode ? ", decapsulating" : "");

  // The capture interface is described first: the client writes its file header from it. In
  // mirror-target mode no packet is filed under it; its statistics carry the kernel's counters.
  capture_start_ns_ = NowNs();
  descriptions_.push_back(CaptureInterfaceDescription(capture, identity_, composed->expression,
                                                      mirror_mode, capture_start_ns_));
  auto announce = [this](const pipeline::InnerInterface& inner) {
    const v1::StreamResponse& message = descriptions_.emplace_back(InnerInterfaceDescription(
        inner, identity_, capture_->snaplen(), request_.decap().inner_filter(), capture_start_ns_));
    SendToAll(message);
  };
  path_ = std::make_unique<PacketPath>(
      mirror_.get(), capture.nanoseconds_per_tick(), announce, [this] { return NewMessage(); },
      [this](std::unique_ptr<v1::StreamResponse> batch, size_t packets) {
        FanOut(std::move(batch), packets);
      });
  return Status::Ok();
}

void SharedCapture::Loop() {
  constexpr std::chrono::milliseconds kStatisticsPeriod{1000};
  Clock::time_point next_statistics = Clock::now() + kStatisticsPeriod;
  CaptureSource& capture = *capture_;
  std::vector<pollfd> fds;
  // Whether a busy link's batch is waiting to fill, and when the loop last slept.
  bool holding = false;
  // Whether the last batch left because of its age while the link was busy (HoldPolicy::Decide):
  // the ring is read at the next check instead of at each retired block, and the next batch's
  // age counts from that departure.
  bool carried = false;
  PacketPath::ReadMark slept = path_->Mark(Clock::now());
  // The last ring check's wait during a busy spell (HoldPolicy::NextRingCheck).
  std::chrono::milliseconds ring_wait = HoldPolicy::kMaxRingWait;
  const RingGeometry ring{static_cast<uint64_t>(identity_.ring.buffer_bytes),
                          std::chrono::milliseconds(identity_.ring.block_timeout_ms)};
  while (true) {
    // Joins and leaves happen between batches: those leaving get everything captured up to now,
    // those joining (AdmitPending) nothing from before.
    const Clock::time_point now = Clock::now();
    // The batch so far goes out before any end is marked: FanOut skips a subscriber whose end
    // is set.
    auto leaves = [&](const Subscriber& s) {
      return s.end || shutdown_.requested() || s.stop->requested() || now >= s.deadline;
    };
    if (std::any_of(active_.begin(), active_.end(), [&](auto& s) { return leaves(*s); })) {
      path_->FlushBatch();
    }
    for (auto& s : active_) {
      if (s->end) continue;
      if (s->stop->requested()) {
        s->end.emplace();
        s->end->set_reason(s->stop->reason());
      } else if (shutdown_.requested()) {
        s->end.emplace();
        s->end->set_reason(v1::StreamEnd::AGENT_SHUTDOWN);
      } else if (now >= s->deadline) {
        s->end.emplace();
        s->end->set_reason(v1::StreamEnd::DURATION_REACHED);
        s->end->set_message("duration of " + std::to_string(s->duration_ms) + " ms reached");
      } else if (now >= s->trigger_quiet_end) {
        s->end.emplace();
        s->end->set_reason(v1::StreamEnd::STOP_ON_MATCHED);
        s->end->set_message(s->trigger->EndMessage());
      }
    }
    RetireEnded();
    if (!AdmitPending()) return;
    ApplyMoves();

    if (carriers_ && identity_.carriers->generation() != carriers_->generation) {
      // A stream with a relay started or ended (at most once per such event): the new
      // exclusion replaces the old in one step, without losing a packet.
      auto recomposed = ComposeFilter(capture.datalink(), capture.snaplen());
      const Status replaced =
          recomposed.ok() ? capture.ReplaceFilter(*recomposed) : recomposed.status();
      if (replaced.ok()) {
        spdlog::info("capture on {}: carriers changed, filter now '{}'", capture.interface(),
                     recomposed->expression);
      } else {
        spdlog::warn("capture on {}: could not update the carrier exclusion: {}",
                     capture.interface(), replaced.message());
      }
    }
    if (now >= next_statistics) {
      for (auto& s : active_) SendStatistics(*s);
      next_statistics = now + kStatisticsPeriod;
    }

    // Drain what the ring holds, then send the partial batch: the ring being empty is the
    // moment a lone packet should leave (its block was retired by the block timeout).
    RecvStatus status = source_ended_ ? RecvStatus::kEndOfFile
                                      : capture.Dispatch(-1, &PacketPath::OnPacket,
                                                         reinterpret_cast<u_char*>(path_.get()));
    if (status == RecvStatus::kOk) continue;  // maybe more is ready; the limits are at the top
    if (status == RecvStatus::kEndOfFile && !source_ended_) {
      // A savefile has no more packets: its subscribers stay until their own ends, as on a link
      // gone quiet (savefile_source.h).
      spdlog::info("capture on {}: end of file", capture.interface());
      source_ended_ = true;
    }
    if (status == RecvStatus::kWouldBlock || status == RecvStatus::kEndOfFile) {
      // The ring is drained. On a quiet link the batch leaves now: a lone packet's latency is
      // the block timeout. On a busy one it waits to fill for up to kMaxHold, and the ring is
      // read only when a batch could have filled or the ring half-filled instead of at each retired
      // block (agent/stream/hold_policy.h).
      Clock::time_point wake = next_statistics;
      const Clock::time_point drained_at = Clock::now();
      const Drain drain = path_->DrainSince(slept, drained_at);
      const HoldPolicy::Decision decision =
          HoldPolicy::Decide(drain, holding, !source_ended_ && path_->batch_packets() > 0,
                             std::chrono::duration_cast<std::chrono::microseconds>(
                                 drained_at - path_->batch_started()));
      holding = decision.hold;
      carried = decision.carry;
      ring_wait = HoldPolicy::NextRingCheck(drain, ring, ring_wait);
      const auto ring_check = drained_at + ring_wait;
      if (holding) {
        wake = std::min({wake, path_->batch_started() + HoldPolicy::kMaxHold, ring_check});
      } else {
        path_->FlushBatch();
        std::optional<Clock::time_point> next_since;
        if (carried) {
          next_since = Clock::now();
          wake = std::min({wake, *next_since + HoldPolicy::kMaxHold, ring_check});
        } else {
          ring_wait =
              HoldPolicy::kMaxRingWait;  // the ring is watched again: the busy spell is over
        }
        path_->AgeNextBatchFrom(next_since);
      }
      for (auto& s : active_) wake = std::min(wake, s->end ? now : s->deadline);
      slept = path_->Mark(Clock::now());  // after the flush: its time is not the ring's
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - slept.at);
      const int timeout_ms =
          wake == now ? 0 : static_cast<int>(std::max<int64_t>(0, wait.count() + 1));
      // (A held batch's wake-up is at most HoldPolicy::kMaxHold away; +1 ms rounds the wait up.)
      fds.clear();
      // While a batch is held the ring is not watched: the blocks that retire meanwhile are
      // read together at the next check (one wake-up instead of one per block; see
      // HoldPolicy::RingCheckAfter). POLLERR (the interface went away) still wakes.
      fds.push_back({source_ended_ ? -1 : capture.fd(),
                     static_cast<short>(holding || carried ? 0 : POLLIN), 0});
      fds.push_back({wake_fd_, POLLIN, 0});
      fds.push_back({shutdown_.fd(), POLLIN, 0});
      for (auto& s : active_) fds.push_back({s->stop->fd(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        EndAll(CaptureError(std::string("poll: ") + strerror(errno)));
        return;
      }
      if ((fds[1].revents & POLLIN) != 0) {
        uint64_t count;
        [[maybe_unused]] auto n = read(wake_fd_, &count, sizeof count);
      }
      if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) == 0) continue;
      // An interface that disappears (ip link del) reports POLLERR; dispatch gets the error text.
      status = capture.Dispatch(-1, &PacketPath::OnPacket, reinterpret_cast<u_char*>(path_.get()));
    }
    if (status == RecvStatus::kError) {
      spdlog::warn("capture on {} failed: {}", capture.interface(), capture.error());
      EndAll(CaptureError(capture.error()));
      return;
    }
  }
}

bool SharedCapture::AdmitPending() {
  std::vector<std::unique_ptr<Subscriber>> joining;
  {
    std::lock_guard lock(mu_);
    if (pending_.empty() && active_.empty() && compiling_.empty()) {
      closing_ = true;
      return false;
    }
    joining.swap(pending_);
  }
  if (joining.empty()) return true;
  // A trigger's filter is compiled beside the loop (up to the sandbox's budget): the streams
  // already on the capture keep receiving meanwhile. The subscriber joins once it is compiled.
  std::vector<std::unique_ptr<Subscriber>> ready;
  for (auto& s : joining) {
    if (s->trigger_request && !s->trigger) {
      StartTriggerCompile(std::move(s));
    } else {
      ready.push_back(std::move(s));
    }
  }
  if (ready.empty()) return true;
  path_->FlushBatch();  // what was captured before they joined is not theirs
  for (auto& s : ready) Admit(std::move(s));
  return true;
}

void SharedCapture::StartTriggerCompile(std::unique_ptr<Subscriber> s) {
  {
    std::lock_guard lock(mu_);
    compiling_.insert(s->id);
  }
  const int link_type = capture_->datalink();
  const int snaplen = capture_->snaplen();
  compilers_.emplace_back([this, link_type, snaplen, s = std::move(s)]() mutable {
    const int cancel_fd = s->stop->fd();
    auto made = trigger::StreamTrigger::Create(
        *s->trigger_request,
        [&](const std::string& text) {
          return CompileTrigger(text, link_type, snaplen, cancel_fd);
        },
        identity_.max_trigger_history_bytes);
    Status refused = made.ok() ? Status::Ok() : made.status();
    if (made.ok()) {
      s->trigger = std::move(made).value();
      s->trigger_request.reset();
    }
    {
      std::lock_guard lock(mu_);
      compiling_.erase(s->id);
      if (refused.ok() && closing_) {
        refused = Unavailable("the capture on " + interface_ + " ended as the stream joined it");
      }
      if (refused.ok()) pending_.push_back(std::move(s));
    }
    if (!refused.ok()) {
      if (s->on_admitted) s->on_admitted(refused);
      s->done(refused);
    }
    const uint64_t one = 1;  // to admit it, or to close if it was the last
    [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof one);
  });
}

void SharedCapture::Admit(std::unique_ptr<Subscriber> s) {
  if (!s->changed) {
    s->started_ns = NowNs();
    if (s->duration_ms != 0) {
      s->deadline = Clock::now() + std::chrono::milliseconds(s->duration_ms);
    }
  }
  s->MarkJoined(capture_->Stats(), path_->captured(), mirror_.get());
  // Logged before the client can see anything of the stream, so the log never trails it.
  spdlog::info("stream on {}: {}; {} stream(s) on this capture", capture_->interface(), settings_,
               active_.size() + 1);
  for (const v1::StreamResponse& description : descriptions_) SendCopy(*s, description);
  auto admitted = std::move(s->on_admitted);
  s->on_admitted = nullptr;
  active_.push_back(std::move(s));
  if (admitted) admitted(Status::Ok());
}

bool SharedCapture::RequestMove(uint64_t id, const v1::StreamRequest& request, MoveDoneFn done) {
  {
    std::lock_guard lock(mu_);
    if (closing_) return false;
    moves_.push_back({id, request, std::move(done)});
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof one);
  return true;
}

void SharedCapture::ApplyMoves() {
  std::vector<Move> moves;
  {
    std::lock_guard lock(mu_);
    std::vector<Move> waiting;
    for (Move& move : moves_) {
      // A stream whose triggers still compile has not joined yet: its change waits for it.
      (compiling_.count(move.id) != 0 ? waiting : moves).push_back(std::move(move));
    }
    moves_ = std::move(waiting);
  }
  for (Move& move : moves) {
    auto it = std::find_if(active_.begin(), active_.end(),
                           [&](const auto& s) { return s->id == move.id; });
    if (it != active_.end() && !(*it)->end) path_->FlushBatch();  // what it is owed, first
    if (it == active_.end() || (*it)->end) {  // (the flush may have reached its count)
      move.done(NotFound("the stream has ended"));
      continue;
    }
    std::unique_ptr<Subscriber> s = std::move(*it);
    active_.erase(it);
    // Its last statistics for the old interfaces; the new ones count from the new capture.
    SendStatistics(*s);
    const uint32_t first_index = s->index_base + static_cast<uint32_t>(descriptions_.size());
    spdlog::info(
        "stream on {} changed: filter {} (stream interfaces from {}); {} stream(s) left "
        "on this capture",
        capture_->interface(), filters::QuoteFilter(move.request.filter()), first_index,
        active_.size());
    s->index_base = first_index;
    s->changed = true;
    s->sent = 0;
    s->agent_drops = 0;
    s->outcomes_at_join.clear();
    s->inner_packets_at_join.clear();
    // Answered once the new capture has it: packets sent after the answer are in the stream.
    s->on_admitted = [done = std::move(move.done), first_index](Status admitted) {
      if (admitted.ok()) {
        done(first_index);
      } else {
        done(admitted);
      }
    };
    hub_.Rejoin(std::move(s), move.request, interface_, identity_);
  }
}

StatusOr<std::string> SharedCapture::CheckFilters(const v1::StreamRequest& request) {
  const int link_type = opened_link_type_.load(std::memory_order_acquire);
  if (link_type < 0) return Unavailable("the stream's capture is still opening; try again");
  ComposeRequest compose;
  compose.user_filter = request.filter();
  compose.own = identity_.own_traffic;
  if (identity_.carriers) compose.own.carriers = identity_.carriers->Snapshot()->expression;
  compose.scope = scope_;
  compose.link_type = link_type;
  compose.snaplen = opened_snaplen_;
  StatusOr<filters::ComposedFilter> composed =
      identity_.filter_sandbox
          ? identity_.filter_sandbox->Compose(compose)
          : filters::ComposeCaptureFilter(compose.user_filter, compose.own, link_type,
                                          compose.snaplen, compose.scope);
  if (!composed.ok()) return composed.status();
  const std::string& inner = request.decap().inner_filter();
  if (request.decap().mode() != v1::Decapsulation::NONE && !inner.empty() &&
      identity_.filter_sandbox) {
    auto compiled = CompileInnerFilter(inner);
    if (!compiled.ok()) return compiled.status();
  }
  return composed->expression;
}

void SharedCapture::OffsetIndices(const Subscriber& subscriber, v1::StreamResponse& message) {
  const uint32_t base = subscriber.index_base;
  if (base == 0) return;
  if (message.has_packets()) {
    for (uint32_t& index : *message.mutable_packets()->mutable_interface_index()) index += base;
  } else if (message.has_interface()) {
    v1::InterfaceDescription* d = message.mutable_interface();
    d->set_index(d->index() + base);
    if (!d->encapsulation().empty()) {
      d->set_capture_interface_index(d->capture_interface_index() + base);
    }
  } else if (message.has_statistics()) {
    for (v1::InterfaceStatistics& i : *message.mutable_statistics()->mutable_interfaces()) {
      i.set_interface_index(i.interface_index() + base);
    }
  }
}

void SharedCapture::RetireEnded() {
  for (auto it = active_.begin(); it != active_.end();) {
    Subscriber& s = **it;
    if (!s.end) {
      ++it;
      continue;
    }
    SendStatistics(s);
    spdlog::info("stream on {} ended ({}): {} captured, {} sent, {} agent drops, {:.1f} s",
                 capture_->interface(), v1::StreamEnd::Reason_Name(s.end->reason()),
                 path_->captured() - s.captured_at_join, s.sent, s.agent_drops,
                 (NowNs() - s.started_ns) / 1e9);
    finished_.push_back(std::move(*it));
    it = active_.erase(it);
  }
  if (active_.empty()) return;  // the last ones are told after the ring is closed (Finish)
  for (auto& s : finished_) s->done(*s->end);
  finished_.clear();
}

void SharedCapture::FanOut(std::unique_ptr<v1::StreamResponse> batch, size_t packets) {
  // Streams with triggers read the batch before it is handed on.
  for (auto& s : active_) {
    if (!s->end && s->trigger) SendTriggered(*s, batch->packets());
  }
  // The last receiver gets the batch itself, the others a copy.
  const Subscriber* last = nullptr;
  for (auto& s : active_) {
    if (!s->end && !s->trigger) last = s.get();
  }
  for (auto& s : active_) {
    if (s->end || s->trigger) continue;
    std::unique_ptr<v1::StreamResponse> message;
    if (s.get() == last) {
      message = std::move(batch);  // its last use: `last` is the final receiver
    } else {
      message = s->sink->NewMessage();
      *message = *batch;  // NOLINT(bugprone-use-after-move): moved only for `last`, after this
    }
    OffsetIndices(*s, *message);
    size_t n = packets;
    if (s->max_packets != 0 && s->max_packets - s->delivered < n) {
      n = s->max_packets - s->delivered;
      TruncateBatch(*message->mutable_packets(), static_cast<int>(n));
    }
    s->delivered += n;
    if (s->sink->Send(std::move(message), /*droppable=*/true)) {
      s->sent += n;
    } else {
      s->agent_drops += n;
    }
    if (s->max_packets != 0 && s->delivered >= s->max_packets) {
      s->end.emplace();
      s->end->set_reason(v1::StreamEnd::COUNT_REACHED);
      s->end->set_message(std::to_string(s->delivered) + " packets captured");
    }
  }
}

void SharedCapture::SendTriggered(Subscriber& s, const v1::PacketBatch& batch) {
  std::vector<trigger::StreamTrigger::Out> out;
  s.trigger->Pass(
      batch, [&s] { return s.sink->NewMessage(); }, out);
  for (trigger::StreamTrigger::Out& o : out) {
    OffsetIndices(s, *o.message);
    size_t n = o.packets;
    if (s.max_packets != 0 && s.max_packets - s.delivered < n) {
      n = s.max_packets - s.delivered;
      TruncateBatch(*o.message->mutable_packets(), static_cast<int>(n));
    }
    s.delivered += n;
    // The history is queued whole: its bytes were bounded while it was held.
    if (s.sink->Send(std::move(o.message), /*droppable=*/!o.history)) {
      s.sent += n;
    } else {
      s.agent_drops += n;
    }
    if (s.max_packets != 0 && s.delivered >= s.max_packets) {
      s.end.emplace();
      s.end->set_reason(v1::StreamEnd::COUNT_REACHED);
      s.end->set_message(std::to_string(s.delivered) + " packets captured");
      return;
    }
  }
  const trigger::TriggerGate& gate = s.trigger->gate();
  if (gate.stop_matched() && gate.config().after_ns != 0 &&
      s.trigger_quiet_end == Clock::time_point::max()) {
    // Packet time and the clock run together; the second covers the ring's block timeout and
    // the batch's hold, so a packet within the window is not cut off by the clock.
    s.trigger_quiet_end =
        Clock::now() + std::chrono::nanoseconds(gate.config().after_ns) + std::chrono::seconds(1);
  }
  if (s.trigger->ended()) {
    s.end.emplace();
    s.end->set_reason(v1::StreamEnd::STOP_ON_MATCHED);
    s.end->set_message(s.trigger->EndMessage());
  }
}

StatusOr<filters::CompiledFilter> SharedCapture::CompileTrigger(const std::string& text,
                                                                int link_type, int snaplen,
                                                                int cancel_fd) {
  ComposeRequest compose;
  compose.user_filter = text;
  compose.link_type = link_type;
  compose.snaplen = snaplen;
  auto composed = identity_.filter_sandbox
                      ? identity_.filter_sandbox->Compose(compose, cancel_fd)
                      : filters::ComposeCaptureFilter(text, {}, compose.link_type, compose.snaplen);
  if (!composed.ok()) return composed.status();
  return std::move(composed.value().program);
}

void SharedCapture::SendToAll(const v1::StreamResponse& message) {
  for (auto& s : active_) SendCopy(*s, message);
}

void SharedCapture::SendCopy(Subscriber& subscriber, const v1::StreamResponse& message) {
  auto copy = subscriber.sink->NewMessage();
  *copy = message;  // reuses the recycled message's capacity
  OffsetIndices(subscriber, *copy);
  subscriber.sink->Send(std::move(copy), /*droppable=*/false);
}

StatusOr<pipeline::InnerFilterCompiler> SharedCapture::CompileInnerFilter(
    const std::string& inner_filter) {
  // The stage wants a program per inner link type; each is compiled alone in the sandbox (a
  // composition of the filter with nothing else is the filter).
  auto programs = std::make_shared<std::map<int, StatusOr<filters::ComposedFilter>>>();
  for (int link_type : {DLT_EN10MB, DLT_RAW}) {
    ComposeRequest compose;
    compose.user_filter = inner_filter;
    compose.link_type = link_type;
    compose.snaplen = pipeline::kInnerSnaplen;
    auto compiled = identity_.filter_sandbox->Compose(compose, FirstSubscriberStop());
    // Too costly for either is a refusal, not "never matches frames of that kind".
    if (!compiled.ok() && (IsTooCostly(compiled.status()) ||
                           compiled.status().code() != StatusCode::kInvalidArgument)) {
      return Status(compiled.status().code(), "inner " + compiled.status().message());
    }
    programs->emplace(link_type, std::move(compiled));
  }
  return pipeline::InnerFilterCompiler(
      [programs](const std::string&, int link_type) -> StatusOr<filters::CompiledFilter> {
        const auto& compiled = programs->at(link_type);
        if (!compiled.ok()) return compiled.status();
        const bpf_program* p = compiled.value().program.program();
        return filters::CompiledFilter::FromInstructions(p->bf_insns, p->bf_len);
      });
}

int SharedCapture::FirstSubscriberStop() {
  std::lock_guard lock(mu_);
  return pending_.empty() ? -1 : pending_.front()->stop->fd();
}

StatusOr<filters::ComposedFilter> SharedCapture::ComposeFilter(int link_type, int snaplen) {
  ComposeRequest compose;
  compose.user_filter = request_.filter();
  compose.own = identity_.own_traffic;
  if (identity_.carriers) {
    carriers_ = identity_.carriers->Snapshot();
    compose.own.carriers = carriers_->expression;
  }
  compose.scope = scope_;
  compose.link_type = link_type;
  compose.snaplen = snaplen;
  if (!identity_.filter_sandbox) {
    return filters::ComposeCaptureFilter(compose.user_filter, compose.own, link_type, snaplen,
                                         compose.scope);
  }
  // Before the capture runs, the first subscriber's stop ends a costly compile early (its client
  // went away); later recompositions (carrier changes) run to their budget.
  return identity_.filter_sandbox->Compose(compose, capture_ ? -1 : FirstSubscriberStop());
}

v1::StreamEnd SharedCapture::CaptureError(const std::string& message) {
  v1::StreamEnd end;
  end.set_reason(v1::StreamEnd::CAPTURE_ERROR);
  end.set_message(message);
  return end;
}

void SharedCapture::SendStatistics(Subscriber& sub) {
  auto message = sub.sink->NewMessage();
  v1::Statistics* s = message->mutable_statistics();
  sub.FillStatistics(capture_->Stats(), path_->captured(), mirror_.get(), carriers_.get(), NowNs(),
                     *s);
  if (mirror_ && mirror_->interface_limit_drops() != 0) {
    const std::string warning = fmt::format(
        "capture on {}: {} decapsulated interfaces, capd's limit (--max-decap-interfaces), "
        "reached; inner frames of further sessions are dropped and counted as interface_limit "
        "(select sessions with --vni)",
        capture_->interface(), mirror_->interfaces().size());
    if (!interface_limit_logged_) {
      spdlog::warn("{}", warning);  // once per capture
      interface_limit_logged_ = true;
    }
    s->set_capture_warning(warning);
  }
  if (sub.trigger) sub.trigger->FillStatus(*s->mutable_trigger());
  OffsetIndices(sub, *message);
  sub.sink->Send(std::move(message), /*droppable=*/false);
}

void SharedCapture::EndAll(const v1::StreamEnd& end) {
  path_->FlushBatch();
  for (auto& s : active_) {
    if (!s->end) s->end = end;
  }
  RetireEnded();
  std::lock_guard lock(mu_);
  closing_ = true;  // those still pending are told in Finish
}

void SharedCapture::Finish(const Status& setup_error) {
  // closing_ is set: a compile that ends from now on tells its own subscriber.
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  for (std::thread& compiler : compilers_) compiler.join();
  std::vector<std::unique_ptr<Subscriber>> pending;
  std::vector<Move> moves;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    pending.swap(pending_);
    moves.swap(moves_);
  }
  for (Move& move : moves) move.done(NotFound("the stream has ended"));
  hub_.Forget(key_, this);
  path_.reset();
  mirror_.reset();
  capture_.reset();  // the ring is gone before anyone hears the capture ended
  for (auto& s : finished_) s->done(*s->end);
  for (auto& s : pending) {
    if (s->on_admitted) {
      s->on_admitted(setup_error.ok() ? Unavailable("the new capture ended as the stream joined it")
                                      : setup_error);
    }
    if (!setup_error.ok()) {
      s->done(setup_error);
    } else {
      // Joined as the capture failed: nothing was sent to it.
      s->done(Unavailable("the capture on " + interface_ + " ended as the stream joined it"));
    }
  }
}

}  // namespace capd::agent
