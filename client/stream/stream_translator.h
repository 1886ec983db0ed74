#pragma once
// The capd.v1 stream turned into a capture file: interface descriptions -> the writer's
// interfaces, packet batches -> packets (with their sparse comments), statistics -> the
// counters of the Interface Statistics Blocks and the summary. Only translation and counting
// live here; which packet goes next is the merger's choice (merger.h).
//
// Interfaces are keyed by (feed index, the stream's interface index) and numbered in the file in
// the order they are added. Packets written are counted in two steps: WriteRun counts them as
// unflushed, CommitFlushed (after the writer's Flush succeeded) as written.
//
// Thread-safety: none; the merger's thread owns it.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "client/output/capture_files.h"
#include "client/stream/feed.h"
#include "client/stream/session_observer.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::client {

class StreamTranslator {
 public:
  // Any feed: the totals over all of them.
  static constexpr size_t kAllFeeds = SIZE_MAX;

  // leave_out_capture_interfaces: a pcap file with decapsulation holds the inner frames' link
  // type only, so the capture interface (no encapsulation) is not added to the file.
  // statistics_in_every_file: a ring of files ends each file with statistics blocks, so each
  // Statistics message updates them (a single file gets its blocks once, at the end).
  StreamTranslator(CaptureWriter& writer, bool leave_out_capture_interfaces,
                   bool statistics_in_every_file)
      : writer_(writer),
        leave_out_capture_interfaces_(leave_out_capture_interfaces),
        statistics_in_every_file_(statistics_in_every_file) {}

  // Adds the described interface (under `name`) to the writer and flushes, so that the header
  // reaches the reader before any packet. Returns what the observer is told.
  StatusOr<InterfaceSeen> AddInterface(size_t feed, const std::string& name,
                                       const v1::InterfaceDescription& description);
  // Takes the per-interface counters of an agent's Statistics.
  void UpdateStatistics(size_t feed, const v1::Statistics& statistics);

  // kInternal when the batch's arrays disagree in length (checked once per batch, before any
  // packet of it is written).
  static Status ValidateBatch(const v1::PacketBatch& batch);
  // Writes the head batch's packets from the arrival's cursor on, in order, while their
  // timestamps are at most `until_ns` (the first one always), fewer than `budget` are written
  // and fewer than `round_bytes_limit` bytes were encoded since the last CommitFlushed. Returns
  // the number written; kInternal for a malformed batch or an undeclared interface.
  StatusOr<uint64_t> WriteRun(size_t feed, Arrival& arrival, uint64_t until_ns, uint64_t budget,
                              size_t round_bytes_limit);
  // Bytes of packet data encoded since the last CommitFlushed/DiscardUnflushed.
  size_t unflushed_bytes() const { return unflushed_bytes_; }
  uint64_t unflushed() const { return unflushed_; }
  // The writer flushed: what was encoded is written. Or it could not: it is not.
  void CommitFlushed();
  void DiscardUnflushed();

  // Statistics blocks for the feed's interfaces, each with `comment` added.
  void WriteStatisticsBlocks(size_t feed, const std::string& comment);

  uint64_t written(size_t feed = kAllFeeds) const;
  DropCounts drops(size_t feed = kAllFeeds) const;
  // "; tunnel packets: 120 decapsulated, 2 malformed" per interface, or empty.
  std::string decap_outcomes(size_t feed = kAllFeeds) const;
  // Packets whose timestamp was earlier than one already written.
  uint64_t out_of_order() const { return out_of_order_; }

 private:
  struct InterfaceState {
    uint32_t file_index = 0;
    std::string name;
    uint64_t start_ns = 0;
    v1::InterfaceStatistics latest;  // the agent's last statistics for it
    uint64_t last_statistics_ns = 0;
    bool in_file = true;  // false: a capture interface left out of a pcap file
    std::map<std::string, uint64_t> decap_outcomes;
    uint64_t written = 0;    // packets the sink accepted
    uint64_t unflushed = 0;  // packets encoded but not yet flushed
  };
  using InterfaceKey = std::pair<size_t, uint32_t>;

  static InterfaceCounters CountersFor(const InterfaceState& state, const std::string& comment);

  CaptureWriter& writer_;
  const bool leave_out_capture_interfaces_;
  const bool statistics_in_every_file_;
  std::map<InterfaceKey, InterfaceState> interfaces_;
  uint32_t next_file_index_ = 0;
  uint64_t unflushed_ = 0;
  size_t unflushed_bytes_ = 0;
  uint64_t out_of_order_ = 0;
  uint64_t last_timestamp_ns_ = 0;
};

}  // namespace capd::client
