#include "agent/rewind/rewind.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "agent/rewind/recording_reader.h"
#include "agent/rewind/seam.h"
#include "filters/bpf_filter.h"

namespace capd::agent::rewind {
namespace {

using Clock = std::chrono::steady_clock;

// How long the first live packet is waited for before the seam is put at the capture's start
// (a quiet link), and how long the recording's writer may lag behind the seam.
constexpr auto kFirstPacketWait = std::chrono::seconds(1);
constexpr auto kWriterCatchUp = std::chrono::milliseconds(200);
constexpr auto kWriterMaxLag = std::chrono::seconds(3);
// Past packets per message: near a live batch's size (BatchBuilder).
constexpr size_t kPastBatchBytes = 1 << 20;
constexpr int kPastBatchPackets = 4096;

std::string IsoTime(uint64_t ns) {
  const time_t t = static_cast<time_t>(ns / 1'000'000'000ULL);
  struct tm utc;
  gmtime_r(&t, &utc);
  char text[40];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  char fraction[16];
  std::snprintf(fraction, sizeof fraction, ".%03uZ",
                static_cast<unsigned>((ns / 1'000'000ULL) % 1000));
  return std::string(text) + fraction;
}

// The time of the first packet of a recording's oldest readable file (0: none).
uint64_t ReachesBack(const RecordingSource& source, int link_type) {
  auto reader = RecordingReader::Open(source.files(), 0, nullptr, link_type);
  if (!reader.ok()) return 0;
  RecordedPacket packet;
  return (*reader)->Next(packet) ? packet.timestamp_ns : 0;
}

}  // namespace

std::string NoRecordingMessage(const std::string& interface,
                               const std::vector<std::pair<std::string, std::string>>& running) {
  std::string text = "--since needs a recording running on interface '" + interface +
                     "' (capctl record start --interface " + interface + " ...)";
  if (running.empty()) return text + "; no recording runs on this agent";
  text += "; recordings running:";
  for (size_t i = 0; i < running.size(); ++i) {
    text += (i == 0 ? " " : ", ") + running[i].first + " on '" + running[i].second + "'";
  }
  return text;
}

Rewind::Rewind(std::vector<RecordingSource> candidates, const v1::StreamRequest& request,
               std::string interface, std::shared_ptr<FilterSandbox> sandbox)
    : candidates_(std::move(candidates)),
      request_(request),
      interface_(std::move(interface)),
      sandbox_(std::move(sandbox)) {}

Rewind::~Rewind() = default;

bool Rewind::Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) {
  std::unique_lock lock(mu_);
  if (through_) {
    lock.unlock();
    return downstream_->Send(std::move(message), droppable);
  }
  const size_t size = message->ByteSizeLong();
  if (droppable && held_bytes_ + size > kMaxHeldBytes) {
    if (message->has_packets()) dropped_packets_ += message->packets().timestamp_ns_size();
    return false;  // counted by the capture as this stream's agent drops
  }
  held_bytes_ += size;
  held_.push_back({std::move(message), size});
  lock.unlock();
  cv_.notify_all();
  return true;
}

std::unique_ptr<v1::StreamResponse> Rewind::NewMessage() { return downstream_->NewMessage(); }

std::unique_ptr<v1::StreamResponse> Rewind::Close(std::unique_ptr<v1::StreamResponse> end) {
  std::lock_guard lock(mu_);
  if (through_) return end;
  end_ = std::move(end);
  cv_.notify_all();
  return nullptr;
}

void Rewind::Stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

template <typename Ready>
bool Rewind::WaitFor(std::unique_lock<std::mutex>& lock, Ready ready, Clock::time_point deadline) {
  cv_.wait_until(lock, deadline, [&] { return stopped_ || ready(); });
  return !stopped_;
}

bool Rewind::Offer(const OfferFn& offer, std::unique_ptr<v1::StreamResponse> message) {
  // The reactor's queue is bounded; the files wait for it (a slow client slows this read only).
  while (!offer(message)) {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::lock_guard lock(mu_);
  return !stopped_;
}

bool Rewind::FlushHeldBeforePackets(const OfferFn& offer) {
  while (true) {
    std::unique_ptr<v1::StreamResponse> next;
    {
      std::lock_guard lock(mu_);
      if (held_.empty() || held_.front().message->has_packets()) return true;
      next = std::move(held_.front().message);
      held_bytes_ -= held_.front().bytes;
      held_.pop_front();
    }
    if (!Offer(offer, std::move(next))) return false;
  }
}

std::unique_ptr<v1::StreamResponse> Rewind::RewindMessage(const std::string& recording,
                                                          uint64_t first_ns,
                                                          std::vector<std::string> warnings) {
  auto message = std::make_unique<v1::StreamResponse>();
  v1::Rewind* rewind = message->mutable_rewind();
  rewind->set_recording(recording);
  rewind->set_first_ns(first_ns);
  for (std::string& w : warnings) rewind->add_warnings(std::move(w));
  return message;
}

std::unique_ptr<v1::StreamResponse> Rewind::Run(const OfferFn& offer) {
  const uint64_t since = request_.since_ns();
  // Through, whatever happens below: the capture's messages stop being held, and an end that
  // Close held goes back to the caller.
  auto finish = [this]() -> std::unique_ptr<v1::StreamResponse> {
    std::lock_guard lock(mu_);
    through_ = true;
    held_.clear();
    held_bytes_ = 0;
    return std::move(end_);
  };

  // 1. The live capture's interface: the link type and index the past packets take.
  v1::InterfaceDescription live;
  {
    std::unique_lock lock(mu_);
    const auto described = [&] {
      for (const Held& h : held_) {
        if (h.message->has_interface()) return true;
      }
      return end_ != nullptr;
    };
    // No deadline of its own: the capture's end (Close) or the call's (Stop) wakes it.
    while (!described()) {
      if (!WaitFor(lock, described, Clock::now() + std::chrono::seconds(1))) return finish();
    }
    for (const Held& h : held_) {
      if (h.message->has_interface()) {
        live = h.message->interface();
        break;
      }
    }
  }
  if (live.link_type() == 0 && live.name().empty()) {
    // The capture ended before it described anything: nothing to rewind into.
    return finish();
  }
  const int link_type = static_cast<int>(live.link_type());

  // 2. The first live packet (the seam), or the capture's start on a quiet link.
  std::string first_live_bytes;
  PacketKey first_live;
  bool have_live = false;
  {
    std::unique_lock lock(mu_);
    const auto packet = [&] {
      for (const Held& h : held_) {
        if (h.message->has_packets() && h.message->packets().timestamp_ns_size() > 0) return true;
      }
      return end_ != nullptr;
    };
    if (!WaitFor(lock, packet, Clock::now() + kFirstPacketWait)) return finish();
    for (const Held& h : held_) {
      const v1::PacketBatch& b = h.message->packets();
      if (!h.message->has_packets() || b.timestamp_ns_size() == 0) continue;
      first_live_bytes.assign(b.data().data(), b.captured_length(0));
      first_live.timestamp_ns = b.timestamp_ns(0);
      first_live.original_length = b.original_length(0);
      have_live = true;
      break;
    }
  }
  first_live.bytes = first_live_bytes;
  const uint64_t t0 = have_live ? first_live.timestamp_ns : live.capture_start_ns();

  // 3. The recording reaching back furthest; its writer past the seam.
  const RecordingSource* source = &candidates_.front();
  if (candidates_.size() > 1) {
    uint64_t earliest = 0;
    for (const RecordingSource& c : candidates_) {
      const uint64_t back = ReachesBack(c, link_type);
      if (back != 0 && (earliest == 0 || back < earliest)) {
        earliest = back;
        source = &c;
      }
    }
  }
  std::vector<std::string> warnings;
  {
    const auto start = Clock::now();
    while (true) {
      const uint64_t written = source->written_through_ns();
      const auto waited = Clock::now() - start;
      if (written >= t0 + 20'000'000ULL || (written >= t0 && waited >= kWriterCatchUp)) break;
      if (waited >= kWriterMaxLag) {
        if (written < t0) {
          warnings.push_back("recording " + source->name + " has written its files only up to " +
                             (written != 0 ? IsoTime(written) : std::string("nothing")) +
                             ", before the live part starts at " + IsoTime(t0) +
                             ": packets in between are missing");
        }
        break;
      }
      std::unique_lock lock(mu_);
      if (!WaitFor(
              lock, [] { return false; }, Clock::now() + std::chrono::milliseconds(10))) {
        return finish();
      }
    }
  }

  // 4. The stream's filter for the recorded packets (compiled as the live one, in the sandbox).
  filters::CompiledFilter filter;
  if (!request_.filter().empty()) {
    StatusOr<filters::ComposedFilter> composed = [&]() -> StatusOr<filters::ComposedFilter> {
      if (!sandbox_) {
        return filters::ComposeCaptureFilter(request_.filter(), {}, link_type,
                                             static_cast<int>(live.snaplen()));
      }
      ComposeRequest compose;
      compose.user_filter = request_.filter();
      compose.link_type = link_type;
      compose.snaplen = static_cast<int>(live.snaplen());
      return sandbox_->Compose(compose);
    }();
    if (!composed.ok()) {
      warnings.push_back("the stream's filter does not apply to the recording (" +
                         composed.status().message() + "): no recorded packets sent");
      if (!Offer(offer, RewindMessage(source->name, 0, std::move(warnings)))) return finish();
      warnings.clear();
      goto live_part;
    }
    filter = std::move(composed->program);
  }
  {
    auto opened = RecordingReader::Open(source->files(), since, &filter, link_type);
    if (!opened.ok()) {
      warnings.push_back("recording " + source->name +
                         " could not be read: " + opened.status().message());
      if (!Offer(offer, RewindMessage(source->name, 0, std::move(warnings)))) return finish();
      warnings.clear();
      goto live_part;
    }
    RecordingReader& reader = **opened;
    RecordedPacket packet;
    bool more = reader.Next(packet);
    const uint32_t snaplen = live.snaplen() != 0 ? live.snaplen() : 262144;
    // The acknowledgement, first: where the past starts, and what the user should know.
    if (reader.earliest_ns() > since || reader.earliest_ns() == 0) {
      const uint64_t from = reader.earliest_ns() != 0 ? reader.earliest_ns() : t0;
      warnings.push_back("the recording on " + interface_ + " starts at " + IsoTime(from) +
                         "; streaming from there");
    }
    if (!source->filter.empty() && source->filter != request_.filter()) {
      warnings.push_back("recording " + source->name + " captures with its own filter '" +
                         source->filter +
                         "': the recorded part holds only the packets that filter kept");
    }
    for (const std::string& w : reader.warnings()) warnings.push_back(w);
    const size_t reader_warnings = reader.warnings().size();
    if (!Offer(offer, RewindMessage(source->name, more ? packet.timestamp_ns : 0, warnings)) ||
        !FlushHeldBeforePackets(offer)) {
      return finish();
    }

    std::unique_ptr<v1::StreamResponse> batch;
    auto add = [&](uint64_t ts, uint32_t original_length, std::string_view bytes) -> bool {
      if (!batch) batch = std::make_unique<v1::StreamResponse>();
      v1::PacketBatch* b = batch->mutable_packets();
      const std::string_view kept = bytes.substr(0, std::min<size_t>(bytes.size(), snaplen));
      b->mutable_data()->append(kept.data(), kept.size());
      b->add_interface_index(live.index());
      b->add_timestamp_ns(ts);
      b->add_original_length(original_length);
      b->add_captured_length(static_cast<uint32_t>(kept.size()));
      if (b->data().size() >= kPastBatchBytes || b->timestamp_ns_size() >= kPastBatchPackets) {
        return Offer(offer, std::move(batch));
      }
      return true;
    };
    // Before the seam's window: past for certain. Within it: candidates for the seam rule.
    struct Candidate {
      uint64_t ts;
      uint32_t original_length;
      std::string bytes;
    };
    std::vector<Candidate> window;
    size_t window_bytes = 0;
    uint64_t sent = 0;
    for (; more; more = reader.Next(packet)) {
      if (packet.timestamp_ns + kMatchWindowNs < t0) {
        if (!add(packet.timestamp_ns, packet.original_length, packet.bytes)) return finish();
        ++sent;
        continue;
      }
      if (packet.timestamp_ns > t0 + kMatchWindowNs || window_bytes >= kMaxSeamBytes) break;
      window.push_back({packet.timestamp_ns, packet.original_length, std::string(packet.bytes)});
      window_bytes += packet.bytes.size();
    }
    std::vector<PacketKey> keys;
    keys.reserve(window.size());
    for (const Candidate& c : window) keys.push_back({c.ts, c.original_length, c.bytes});
    const size_t past = PastCount(keys, have_live ? &first_live : nullptr, t0);
    for (size_t i = 0; i < past; ++i) {
      if (!add(window[i].ts, window[i].original_length, window[i].bytes)) return finish();
      ++sent;
    }
    if (batch && !Offer(offer, std::move(batch))) return finish();
    const bool by_copy = past < keys.size() && have_live && SamePacket(keys[past], first_live);
    spdlog::info("rewind on {} from recording {}: {} recorded packets from {}, seam {} at {}",
                 interface_, source->name, sent, IsoTime(since),
                 by_copy ? "at the recorded copy of the first live packet" : "by time",
                 IsoTime(t0));
    warnings.assign(reader.warnings().begin() + reader_warnings, reader.warnings().end());
  }

live_part:
  // 5. The held live messages, then straight through.
  {
    std::vector<std::string> late = std::move(warnings);  // those found after the first message
    uint64_t dropped;
    {
      std::lock_guard lock(mu_);
      dropped = dropped_packets_;
    }
    if (dropped != 0) {
      late.push_back(std::to_string(dropped) +
                     " live packets were dropped while the recorded part was sent (capd holds at "
                     "most " +
                     std::to_string(kMaxHeldBytes >> 20) + " MiB of live packets meanwhile)");
    }
    if (!late.empty() && !Offer(offer, RewindMessage(source->name, 0, late))) return finish();
  }
  while (true) {
    std::unique_ptr<v1::StreamResponse> next;
    {
      std::lock_guard lock(mu_);
      if (held_.empty()) {
        through_ = true;
        return std::move(end_);
      }
      next = std::move(held_.front().message);
      held_bytes_ -= held_.front().bytes;
      held_.pop_front();
    }
    if (!Offer(offer, std::move(next))) return finish();
  }
}

}  // namespace capd::agent::rewind
