#pragma once
// Rewind into live: `capctl stream --since T` on an agent where a recording runs on the stream's
// interface (agent/recording): the recorded packets from T on, then the live ones, as one stream.
//
// How data flows: the stream subscribes to its live capture as any stream does, but with a
// Rewind in front of its StreamReactor as the capture's StreamSink. Until the past is sent, the
// Rewind holds every live message (bounded in bytes, below). Run, on a thread of the stream's
// own (never the capture thread, never a gRPC reaction), waits for the live capture's interface
// description and first packet, waits until the recording has written its files past that
// packet's time, reads the recording's files (recording_reader.h) from T with the stream's
// filter, and sends, in this order: a Rewind message (the acknowledgement, with warnings), the
// held descriptions, the past packets up to the seam (seam.h states the rule), every held live
// message, and from then on the capture's messages go straight through.
//
// Which recording: one running on the stream's interface without decapsulation (its packets have
// the live capture's link type); of several, the one whose files reach back furthest. Its own
// filter may be narrower than the stream's: the past then holds only what the recording kept,
// and the Rewind message says so.
//
// Bounds: live messages held while the past is sent take at most kMaxHeldBytes; a batch beyond
// that is dropped whole and the capture counts it as the stream's agent drops (its statistics),
// and the Rewind message sent at the seam says how many live packets were lost. Candidates for
// the seam (the recorded packets within kMatchWindowNs of it) take at most kMaxSeamBytes; beyond
// that the seam falls back to time. Past packets are counted neither in the stream's statistics
// nor against its --count; they go to the reactor's queue only when it has room, so a slow
// client slows the read of the files, never the capture.
//
// Thread-safety: Send and NewMessage from the capture thread; Close from the capture's done
// call; Run on its own thread; Stop from any thread.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/capture/filter_sandbox.h"
#include "agent/stream/stream_sink.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::agent::rewind {

inline constexpr size_t kMaxHeldBytes = 64 << 20;
inline constexpr size_t kMaxSeamBytes = 64 << 20;

// A running recording as the rewind reads it (RecordingManager::Running).
struct RecordingSource {
  std::string name;
  std::string filter;
  std::function<std::vector<std::string>()> files;  // its ring's files now, oldest first
  // The time of the newest packet its writer has flushed to the files (0: none yet).
  std::function<uint64_t()> written_through_ns;
};

class Rewind final : public StreamSink {
 public:
  // `candidates`: the running recordings on the stream's interface (at least one).
  // `sandbox` compiles the stream's filter for the recorded packets (null: compiled in-process).
  Rewind(std::vector<RecordingSource> candidates, const v1::StreamRequest& request,
         std::string interface, std::shared_ptr<FilterSandbox> sandbox);
  ~Rewind() override;

  // Where messages go once they may (the reactor). Set once, before the capture starts.
  void SetDownstream(StreamSink* downstream) { downstream_ = downstream; }

  // StreamSink (capture thread): held until the past is sent, then passed on.
  bool Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) override;
  std::unique_ptr<v1::StreamResponse> NewMessage() override;

  // The capture's StreamEnd: held behind everything held (Run returns it), or given back when
  // messages go straight through already (the caller sends it).
  std::unique_ptr<v1::StreamResponse> Close(std::unique_ptr<v1::StreamResponse> end);

  // Offers a message to the client's queue: false when it has no room now (the message stays
  // in the argument; Run tries again shortly); true once sent or once the call is finishing.
  using OfferFn = std::function<bool(std::unique_ptr<v1::StreamResponse>& message)>;
  // Sends the past and the held messages (above). Returns the held StreamEnd, if Close gave
  // one before the switch to straight through, for the caller to send and finish with.
  std::unique_ptr<v1::StreamResponse> Run(const OfferFn& offer);
  // The call is finishing: Run returns soon, dropping what it holds.
  void Stop();

 private:
  struct Held {
    std::unique_ptr<v1::StreamResponse> message;
    size_t bytes;
  };
  // Waits on cv_ for `ready` (under mu_), stop or `deadline`; false when stopped.
  template <typename Ready>
  bool WaitFor(std::unique_lock<std::mutex>& lock, Ready ready,
               std::chrono::steady_clock::time_point deadline);
  bool Offer(const OfferFn& offer, std::unique_ptr<v1::StreamResponse> message);
  // Sends the held messages before the first packet batch (descriptions, early statistics).
  bool FlushHeldBeforePackets(const OfferFn& offer);
  std::unique_ptr<v1::StreamResponse> RewindMessage(const std::string& recording, uint64_t first_ns,
                                                    std::vector<std::string> warnings);

  const std::vector<RecordingSource> candidates_;
  const v1::StreamRequest request_;
  const std::string interface_;
  const std::shared_ptr<FilterSandbox> sandbox_;
  StreamSink* downstream_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Held> held_;                    // guarded by mu_
  size_t held_bytes_ = 0;                    // guarded by mu_
  uint64_t dropped_packets_ = 0;             // guarded by mu_: live packets beyond kMaxHeldBytes
  bool through_ = false;                     // guarded by mu_: messages go straight to downstream_
  bool stopped_ = false;                     // guarded by mu_
  std::unique_ptr<v1::StreamResponse> end_;  // guarded by mu_: held by Close
};

// Parses nothing: the choice of recordings for `interface` (exposed for tests). Exit-2 text for
// none: "no recording runs on interface 'X' (recordings running: a on eth0, b on eth1)".
std::string NoRecordingMessage(const std::string& interface,
                               const std::vector<std::pair<std::string, std::string>>& running);

}  // namespace capd::agent::rewind
