#pragma once
// Live captures, one per distinct request, shared by every client that asks for the same packets.
//
// How data flows: a CaptureSource (LiveCapture: kernel ring, kernel filter) -> PacketPath appends
// each packet to a BatchBuilder -> a full batch, or the ring drained, goes to every subscriber's
// StreamSink (the last one gets the batch itself, the others a copy). About once a second, and at
// each subscriber's end, a Statistics message.
//
// Sharing: requests that select the same packets (interface, snaplen, promiscuous mode, filter,
// decapsulation) share one capture: one kernel ring, one filter, one pass over each packet, so N
// clients of the same traffic cost one capture plus N copies of each batch. Each subscriber keeps
// its own count, duration, stop, queue and counters; its statistics count from the moment it
// joined, and a subscriber that joins a running capture first receives the interface descriptions
// sent so far. A capture ends when its last subscriber leaves.
//
// Threading: each capture has its own thread, owned by the hub: Shutdown() (or the destructor)
// ends every subscription with AGENT_SHUTDOWN and joins them all. A capture thread takes no locks
// per packet, does no disk I/O and logs nothing per packet; the cross-thread calls are
// StreamSink::Send once per batch and subscriber, and one mutex per loop pass to admit new
// subscribers.
//
// The parts, each in its own file: stream_request (what a request may ask), packet_path (ring to
// batch), subscriber (one client's counts and statistics), descriptions (the interfaces
// described to clients), shared_capture (opening a capture and its loop), this (sharing).

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/stream/agent_identity.h"
#include "agent/stream/owned_threads.h"
#include "agent/stream/stop_signal.h"
#include "agent/stream/stream_request.h"  // ValidateStreamRequest
#include "agent/stream/stream_sink.h"
#include "common/status.h"
#include "filters/bpf_filter.h"
#include "proto/capture.pb.h"

namespace capd::agent {

class SharedCapture;
struct Subscriber;

class CaptureHub {
 public:
  // How a subscription ended: the StreamEnd (the caller sends it), or a set-up failure (unknown
  // interface, filter that does not compile, no permission) after which nothing was sent.
  using DoneFn = std::function<void(StatusOr<v1::StreamEnd>)>;

  CaptureHub() = default;
  ~CaptureHub() { Shutdown(); }
  CaptureHub(const CaptureHub&) = delete;
  CaptureHub& operator=(const CaptureHub&) = delete;

  // Starts a capture for `request`, or joins a running one that selects the same packets.
  // `sink` receives the interface descriptions, packet batches and statistics; a request on
  // `stop` ends this subscription (with stop's reason). `done` is called exactly once, after the
  // last message to `sink`: from Subscribe itself for a request that fails validation, otherwise
  // on the capture's thread. `sink` and `stop` must stay valid until then. Never blocks on the
  // capture (opening it happens on its thread). After Shutdown, `done` gets UNAVAILABLE at once.
  // Returns the subscription's id for Change (0 when it was refused at once).
  uint64_t Subscribe(const v1::StreamRequest& request, const AgentIdentity& identity,
                     StreamSink& sink, StopSignal& stop, DoneFn done);

  // Changes what subscription `id` captures without ending it: its filter, and for a
  // mirror-target stream its VNIs and inner filter (the rest of its request stays). The new
  // request is validated as Subscribe's and its filters compiled first, for the capture's link
  // type, in the identity's sandbox (own-traffic exclusion in front): a refusal
  // (kInvalidArgument with the reason) leaves the subscription untouched. Then, at the capture
  // thread's next pass, the subscriber leaves its capture (which goes on for the others, or
  // closes) with everything read so far and its final statistics for the old interfaces, and
  // joins (or opens) the capture of the new request, with fresh stream-local interface indices
  // (Subscriber::index_base). Its count, duration, stop and sink stay. Returns once the new
  // capture has admitted it: a packet that reaches the interface after the answer is the new
  // filter's. Packets that arrive between the old capture's last read and the new one's start
  // are in neither (a subscriber is in one capture at a time, so none is sent twice).
  // kNotFound for an unknown or ended subscription; the new capture's own failure to open
  // (rare: the filter compiled a moment before) ends the stream with it and is returned. Blocks
  // for the compile (capd-filters' budget), a pass of each capture loop and, when no other
  // stream has the new selection, a capture's opening: not on a gRPC reaction thread.
  StatusOr<v1::ChangeStreamResponse> Change(uint64_t id, const v1::ChangeStreamRequest& change);

  // Captures open now (each shared by one or more subscribers).
  size_t open_captures() const;

  // Refuses new subscriptions, ends every running one with AGENT_SHUTDOWN (each gets what was
  // captured, its statistics and its `done`), and blocks until every capture thread has returned.
  // A capture being opened finishes opening first (a filter compile is bounded by capd-filters'
  // budget). Idempotent; not to be called from a `done` or a sink.
  void Shutdown();

 private:
  friend class SharedCapture;
  void Forget(const std::string& key, const SharedCapture* capture);
  // Puts `subscriber` (which left another capture) into the capture for `request`: joins it
  // or opens it, as Subscribe does. Called from the capture thread it left.
  void Rejoin(std::unique_ptr<Subscriber> subscriber, const v1::StreamRequest& request,
              const std::string& interface, const AgentIdentity& identity);
  // Requires mu_: joins `subscriber` to the capture for `request` or opens one.
  void JoinLocked(std::unique_ptr<Subscriber> subscriber, const v1::StreamRequest& request,
                  const std::string& interface, const AgentIdentity& identity);

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<SharedCapture>> captures_;  // by SharingKey
  // Where each subscription is, until its `done` (Change finds it here).
  std::map<uint64_t, std::weak_ptr<SharedCapture>> subscriptions_;
  uint64_t next_id_ = 1;
  StopSignal shutdown_;   // every capture polls it
  OwnedThreads threads_;  // last: joined before the rest goes
};

// Subscribes and waits for the end (recordings, which have a thread of their own to block).
StatusOr<v1::StreamEnd> RunCapture(CaptureHub& hub, const v1::StreamRequest& request,
                                   const AgentIdentity& identity, StreamSink& sink,
                                   StopSignal& stop);

}  // namespace capd::agent
