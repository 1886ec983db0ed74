#pragma once
// One capture shared by the subscribers of the same packets: opening it (filters, decapsulation,
// the source), and its loop on the thread CaptureHub gives it. Internal to CaptureHub.
//
// The loop, each pass: subscribers whose stop, duration or count came leave (with everything
// captured up to then, their statistics and their end); pending ones join (the descriptions sent
// so far, counts from now; one with triggers first has them compiled on a thread of its own); a
// changed carrier set replaces the kernel filter; statistics once a second; then the source is
// drained, and on a quiet link the batch leaves at once, on a busy one it is held to fill
// (hold_policy.h) while the loop sleeps in poll() on the source, its wake-up fd, every subscriber's
// stop and the hub's shutdown.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/capture/capture_source.h"
#include "agent/stream/agent_identity.h"
#include "agent/stream/packet_path.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/subscriber.h"
#include "common/status.h"
#include "pipeline/mirror_stage.h"
#include "proto/capture.pb.h"

namespace capd::agent {

class CaptureHub;

class SharedCapture {
 public:
  // `hub` outlives the capture's thread (it joins it); `shutdown`: the hub's, polled by the loop.
  SharedCapture(CaptureHub& hub, const StopSignal& shutdown, std::string key,
                const v1::StreamRequest& request, std::string interface,
                const AgentIdentity& identity);
  ~SharedCapture();
  SharedCapture(const SharedCapture&) = delete;
  SharedCapture& operator=(const SharedCapture&) = delete;

  // Hands a subscriber to the capture thread; false once the capture is closing (its last
  // subscriber left), so the caller starts a new one.
  bool TryJoin(std::unique_ptr<Subscriber>& subscriber);

  // The capture thread's whole work: open, loop until the last subscriber leaves, tell everyone.
  void Main();

  // The request the capture was opened for. Any thread.
  const v1::StreamRequest& request() const { return request_; }
  // Compiles `request`'s filter (and inner filter) as this capture's would be, for its link
  // type and snaplen, with the own-traffic exclusion in front, in the identity's sandbox.
  // Returns the composed kernel filter's text; kUnavailable while the capture is still opening.
  // Any thread; blocks for the compile.
  StatusOr<std::string> CheckFilters(const v1::StreamRequest& request);
  // Asks the capture thread to move subscription `id` to the capture for `request`
  // (CaptureHub::Change); `done` gets, once, the first stream-local index of its new interfaces
  // or kNotFound (it has ended, or is not here). False once the capture is closing (`done` is
  // then not called).
  using MoveDoneFn = std::function<void(StatusOr<uint32_t>)>;
  bool RequestMove(uint64_t id, const v1::StreamRequest& request, MoveDoneFn done);

 private:
  Status Open();
  void Loop();
  // Admits pending subscribers; false when none is left and the capture closes.
  bool AdmitPending();
  void Admit(std::unique_ptr<Subscriber> subscriber);
  // Moves the subscribers RequestMove asked for to their new captures.
  void ApplyMoves();
  // A subscriber's interface indices: the capture's plus its index_base.
  static void OffsetIndices(const Subscriber& subscriber, v1::StreamResponse& message);
  // Sends the final statistics to those that are to leave and moves them to finished_.
  void RetireEnded();
  void FanOut(std::unique_ptr<v1::StreamResponse> batch, size_t packets);
  // A stream with triggers: what its gate lets through of `batch`, and its end at the stop.
  void SendTriggered(Subscriber& subscriber, const v1::PacketBatch& batch);
  // A trigger's filter compiled for this capture (no own-traffic exclusion: the capture's
  // kernel filter has left that out already), in identity_'s sandbox; `cancel_fd`: the
  // subscriber's stop.
  // Any thread.
  StatusOr<filters::CompiledFilter> CompileTrigger(const std::string& text, int link_type,
                                                   int snaplen, int cancel_fd);
  // Compiles `s`'s triggers on a thread of their own (compilers_), then puts it back in pending_
  // to be admitted; a refusal is told to it from that thread. The capture stays open meanwhile.
  void StartTriggerCompile(std::unique_ptr<Subscriber> s);
  void SendToAll(const v1::StreamResponse& message);
  // A non-droppable copy of `message` for one subscriber (descriptions, replays).
  void SendCopy(Subscriber& subscriber, const v1::StreamResponse& message);
  // The kernel filter: own traffic (with the carriers' current snapshot), scope, the request's;
  // compiled for `link_type` and `snaplen` in identity_'s sandbox.
  StatusOr<filters::ComposedFilter> ComposeFilter(int link_type, int snaplen);
  // The decapsulation's inner filter compiled in identity_'s sandbox, for MirrorOptions.
  StatusOr<pipeline::InnerFilterCompiler> CompileInnerFilter(const std::string& inner_filter);
  // The stop of the subscriber that started the capture (-1: none left): while the capture is
  // being set up, it cancels a compile whose client went away.
  int FirstSubscriberStop();
  static v1::StreamEnd CaptureError(const std::string& message);
  void SendStatistics(Subscriber& subscriber);
  void EndAll(const v1::StreamEnd& end);
  // Leaves the hub (no one can join any more), closes the source, then tells everyone.
  void Finish(const Status& setup_error);
  std::unique_ptr<v1::StreamResponse> NewMessage() {
    return active_.empty() ? std::make_unique<v1::StreamResponse>()
                           : active_.front()->sink->NewMessage();
  }

  CaptureHub& hub_;
  const StopSignal& shutdown_;
  const std::string key_;
  const v1::StreamRequest request_;
  const std::string interface_;
  const AgentIdentity identity_;
  const int wake_fd_;

  std::mutex mu_;
  std::vector<std::unique_ptr<Subscriber>> pending_;  // guarded by mu_
  bool closing_ = false;                              // guarded by mu_
  struct Move {
    uint64_t id;
    v1::StreamRequest request;
    MoveDoneFn done;
  };
  std::vector<Move> moves_;       // guarded by mu_
  std::set<uint64_t> compiling_;  // streams whose triggers compile; guarded by mu_
  // Set once the source is open (the link type and snaplen CheckFilters compiles for); -1 before.
  std::atomic<int> opened_link_type_{-1};
  int opened_snaplen_ = 0;  // written before opened_link_type_ (release), read after it

  // The capture thread's own state.
  std::vector<std::unique_ptr<Subscriber>> active_;
  std::vector<std::unique_ptr<Subscriber>> finished_;  // told at the next safe point
  std::vector<std::thread> compilers_;                 // joined by Finish
  std::unique_ptr<CaptureSource> capture_;
  std::unique_ptr<pipeline::MirrorStage> mirror_;
  std::unique_ptr<PacketPath> path_;
  std::string scope_;
  std::shared_ptr<const CarrierSnapshot> carriers_;
  std::vector<v1::StreamResponse> descriptions_;  // every interface described so far, in order
  uint64_t capture_start_ns_ = 0;
  std::string settings_;  // for the log
  bool interface_limit_logged_ = false;
  bool source_ended_ = false;  // a savefile's end: the source is not watched any more
};

}  // namespace capd::agent
