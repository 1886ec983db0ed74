#pragma once
// The merger: several agents' feeds into one capture file, in timestamp order.
//
// Merge rule: the packet with the smallest timestamp among the feeds' queue heads is written
// once every other live feed has a packet queued too (so nothing earlier can still come from
// it), or once it has waited kReorderWindow. Agents send within ~10 ms of capture, so the window
// only matters when a feed is quiet or slow; a packet that still arrives later than its turn is
// written at once (never dropped) and counted as out of order.
//
// The translation of each message into the file is capfile::StreamToFile's (interfaces keyed by
// feed, batches checked once, statistics blocks); the merger decides the order and counts what
// was written: a packet counts as written once the writer's Flush took it (CommitFlushed).
// Non-packet messages at a feed's head are handled as they come: interface descriptions and
// carriers and warnings also go to the observer, a StreamEnd is kept for OutcomeOf.
//
// Thread-safety: every call with the feeds' FeedHub mutex held, from one thread at a time (the
// session's, or a reader's while it runs the session's round: see stream_session.h).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "capfile/stream_to_file.h"
#include "client/output/capture_files.h"
#include "client/stream/feed.h"
#include "client/stream/session_observer.h"
#include "common/status.h"

namespace capd::client {

// A call that failed on the way rather than by the agent's answer: the connection closed or was
// reset, a GOAWAY, the agent shutting down (UNAVAILABLE), or the call cancelled or timed out
// without capctl asking. Such a feed "went away", whenever it failed; a refusal is a status the
// agent sends on purpose (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNAUTHENTICATED,
// PERMISSION_DENIED, FAILED_PRECONDITION, ...) before the capture starts.
bool IsTransportFailure(const grpc::Status& status);

// Why a feed ended: the one place that decides it. `stopped_by_capctl`: capctl ended the feed
// itself (an interrupt, its own -c over several agents, a local error or the reader going away),
// so an error status from the cancelled call is not the agent's doing.
FeedOutcome OutcomeOf(const Feed& feed, bool stopped_by_capctl);

class Merger {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kReorderWindow{500};
  // A round writes at most about this much before flushing: the bytes are still in the CPU's
  // cache when write() copies them into the page cache. Writing several queued 512 KiB messages
  // in one go made that copy cold and slow enough (1500 B at full rate) that capctl fell further
  // behind, so the next round was larger still.
  static constexpr size_t kRoundBytes = 256 * 1024;
  // Any feed: the totals over all of them.
  static constexpr size_t kAllFeeds = SIZE_MAX;

  struct Settings {
    // capctl's own packet limit over all feeds (0: none; with one agent the agent counts).
    uint64_t count = 0;
    // A pcap file with decapsulation holds the inner frames' link type only: the capture
    // interface (no encapsulation) is left out of the file.
    bool leave_out_capture_interfaces = false;
    // A ring of files ends each file with statistics blocks: each Statistics message writes
    // them (a single file gets its blocks once, when the feed ends).
    bool statistics_in_every_file = false;
    // --tls-keylog: TLS secrets are written when the client of a connection has them, which is
    // after the server's first encrypted packets crossed the wire (TLS 1.3: its ServerHello
    // flight), while Wireshark needs them BEFORE those packets to follow the connection at all.
    // So a packet batch waits kReorderWindow after its arrival, and the key-log messages queued
    // behind it meanwhile are written ahead of it (keys early are harmless).
    bool hold_for_keys = false;
    // --start-on was asked for: the summary says whether it matched.
    bool start_on = false;
  };

  // `file` is the adapter in front of `writer` (which the merger flushes after a new interface,
  // so that a reader sees it at once).
  Merger(std::vector<Feed*> feeds, capfile::StreamToFile& file, CaptureWriter& writer,
         SessionObserver& observer, Settings settings);

  struct Round {
    bool full = false;  // stopped at kRoundBytes: more is queued, write on at once
    // When the head packet waits for the other agents' (kReorderWindow), the time to look again.
    Clock::time_point reorder_deadline = Clock::time_point::max();
  };
  // Takes what is queued: control messages, then packets in merge order, until nothing can be
  // written before `now` or the round holds kRoundBytes. Writes into the adapter's writer
  // without flushing. Once the count is reached, cancels every feed and drops what they queued.
  // kInternal for a malformed batch or a packet of an undeclared interface; the writer's errors.
  StatusOr<Round> RunRound(Clock::time_point now);
  // The writer flushed: what the rounds wrote since is written. Or it could not: it is not.
  void CommitFlushed();
  void DiscardUnflushed();

  // The feed is over: reports its outcome (with several feeds) and writes its interfaces'
  // statistics blocks, once per feed.
  void EndFeed(Feed& feed, bool stopped_by_capctl);

  bool count_reached() const { return count_reached_; }
  // An agent has sent its first interface description: it accepted the stream.
  bool AnyFeedStarted() const;

  // Packets written (flushed), for one feed or all.
  uint64_t written(size_t feed = kAllFeeds) const;
  // The agents' latest drop counters, summed over the feed's interfaces (or all).
  DropCounts drops(size_t feed = kAllFeeds) const;
  // "; tunnel packets: 120 decapsulated, 2 malformed" per interface, or empty.
  std::string decap_outcomes(size_t feed = kAllFeeds) const;
  // The agents' latest compression counters (Statistics), for one feed or all.
  CompressionBytes compression(size_t feed = kAllFeeds) const;
  // Packets whose timestamp was earlier than one already written.
  uint64_t out_of_order() const { return out_of_order_; }
  // --start-on: "waiting for --start-on: ... history held" while an agent waits, else empty.
  std::string trigger_progress() const;
  // --start-on/--stop-on: whether and when the start trigger matched, and the history dropped
  // by the agent's bound ("start-on never matched ..."); empty without triggers.
  std::string trigger_summary() const;
  // TLS key-log messages written as Decryption Secrets Blocks.
  uint64_t tls_key_messages() const { return tls_key_messages_; }

 private:
  Status DrainControl(Feed& feed, bool& progressed);
  // hold_for_keys: writes every TlsKeyLog message queued in `feed` now, ahead of the packets
  // before it (each is then left empty in the queue and skipped).
  Status WriteQueuedKeys(Feed& feed);
  Status OnInterface(Feed& feed, const v1::InterfaceDescription& description);
  void OnStatistics(Feed& feed, const v1::Statistics& statistics);
  // A stream with triggers: says when one waits and when its start trigger matched.
  void OnTrigger(Feed& feed, const v1::TriggerStatus& status);
  // Writes the head batch's packets from its cursor on, in order, while their timestamps are at
  // most `until_ns` (the first one always), fewer than `budget` are written and the round is
  // not full.
  Status WriteRun(Feed& feed, Arrival& arrival, uint64_t until_ns, uint64_t budget);
  AgentRef RefOf(const Feed& feed) const { return {feed.address(), feed.agent_name}; }

  std::vector<Feed*> feeds_;
  capfile::StreamToFile& file_;
  CaptureWriter& writer_;
  SessionObserver& observer_;
  const Settings settings_;
  uint64_t counted_ = 0;  // packets written towards settings_.count
  bool count_reached_ = false;
  std::vector<uint64_t> written_;    // per feed: flushed
  std::vector<uint64_t> unflushed_;  // per feed: written to the writer since the last flush
  size_t unflushed_bytes_ = 0;       // packet bytes written this round (see kRoundBytes)
  uint64_t out_of_order_ = 0;
  uint64_t tls_key_messages_ = 0;
  uint64_t last_timestamp_ns_ = 0;
  std::map<size_t, std::string> excluded_carriers_;
  std::map<size_t, CompressionBytes> compression_;  // per feed: from its latest statistics
  std::map<size_t, std::string> relay_warnings_;
  std::map<size_t, std::string> capture_warnings_;
  std::map<size_t, v1::TriggerStatus> triggers_;  // per feed: from its latest statistics
};

}  // namespace capd::client
