#pragma once
// From the capd.v1 stream (proto/capture.proto) to a capture file: the one translation that
// capctl (client/stream, one file from one or more agents) and capd's recordings
// (agent/recording, a ring of files from one capture) share.
//
// How data flows, per message of a feed (one agent's stream):
//   InterfaceDescription -> AddInterface (or LeaveOut): the writer gets the next file interface;
//                           the (feed, agent interface index) -> file interface map grows.
//   PacketBatch          -> View checks the batch once (array lengths, comment positions,
//                           lengths against the data blob, every interface described), then
//                           WriteBatch writes all of it, or WriteUntil/WritePacket a part of it
//                           from a BatchCursor (capctl's merger interleaves feeds by time).
//   Statistics           -> WriteStatistics: the counters become each interface's latest and an
//                           Interface Statistics Block each (a ring keeps them and ends every
//                           file with them); KeepStatistics only keeps them, for a single file
//                           that gets its blocks once, from WriteFinalStatistics at the feed's
//                           end.
// The adapter never flushes: the caller flushes once per batch or round (one write() each).
//
// Errors: a malformed batch is kInternal naming what is wrong ("agent sent a malformed batch
// (...)"), from View, before anything of it is written; a packet of an interface that its feed
// never described (or that the file leaves out) is the same. The writer's own statuses are passed
// on unchanged (kUnavailable: the reader went away). Nothing here aborts on input.
//
// Thread-safety: none; the writer's thread owns the adapter. Borrowed: the writer (outlives the
// adapter) and each batch (outlives its BatchView and the packets read from it).

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "capfile/capture_writer.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::capfile {

// Which stream a message came from: capctl's merger numbers its agents' feeds 0, 1, ...; a
// single stream (a recording) is feed 0. Agent interface indexes are unique within a feed only,
// so two agents' "eth0" become two file interfaces.
using FeedId = size_t;

// One packet of a batch; data and comment point into the batch's message.
struct BatchPacket {
  uint32_t interface_index = 0;  // the agent's (InterfaceDescription.index)
  uint64_t timestamp_ns = 0;
  uint32_t original_length = 0;
  std::span<const uint8_t> data;  // the captured bytes
  std::string_view comment;       // pcapng opt_comment; empty: none
};

// Where a walk through a batch has got to. Starts at the first packet; a caller that writes a
// batch in several runs keeps one cursor per batch.
struct BatchCursor {
  int next_packet = 0;
  size_t data_offset = 0;  // where next_packet's bytes start in the data blob
  int next_comment = 0;    // comments are sorted by packet: one cursor walks them with packets
};

// A PacketBatch whose packed arrays were checked once (BatchView::Check), so walking it needs
// no further check per packet. Copyable; borrows the batch.
class BatchView {
 public:
  // kInternal when: the per-packet arrays differ in length; comment_packet and comment differ in
  // length, or comment_packet is not ascending below the packet count; the captured
  // lengths add up to more than the data blob; a captured length is over its original length.
  static StatusOr<BatchView> Check(const v1::PacketBatch& batch);

  int size() const { return batch_->timestamp_ns_size(); }
  const v1::PacketBatch& batch() const { return *batch_; }
  bool AtEnd(const BatchCursor& cursor) const { return cursor.next_packet >= size(); }
  // The timestamp of the packet at the cursor (not AtEnd).
  uint64_t PeekTimestamp(const BatchCursor& cursor) const {
    return batch_->timestamp_ns(cursor.next_packet);
  }
  // The packet at the cursor (not AtEnd); the cursor moves past it. With several comments for
  // one packet, the first.
  BatchPacket Next(BatchCursor& cursor) const;

 private:
  explicit BatchView(const v1::PacketBatch& batch) : batch_(&batch) {}
  const v1::PacketBatch* batch_;
};

// What the adapter knows of one interface of one feed.
struct StreamInterface {
  uint32_t file_index = 0;         // the writer's interface index (meaningless when !in_file)
  bool in_file = true;             // false: LeaveOut (its packets are refused, its statistics kept)
  std::string name;                // as written into the file (if_name)
  uint64_t start_ns = 0;           // capture_start_ns: isb_starttime
  v1::InterfaceStatistics latest;  // the agent's last statistics for it
  uint64_t last_statistics_ns = 0;  // their timestamp; 0: none yet
  uint64_t delivered = 0;           // packets handed to the writer for it (isb_usrdeliv)
};

// "tunnel packets: 120 decapsulated, 2 malformed"; empty when there are none.
std::string DecapOutcomesText(const v1::InterfaceStatistics& statistics);

// The Interface Statistics Block of `interface`: its latest counters, isb_endtime = the time of
// its last statistics (its start when none came), the decapsulation outcomes as the comment with
// `extra_comment` after them ("; " between).
InterfaceCounters CountersOf(const StreamInterface& interface, std::string_view extra_comment);

class StreamToFile {
 public:
  explicit StreamToFile(CaptureWriter& writer) : writer_(writer) {}

  // Adds the described interface to the writer as its next interface, named `file_name` (capctl
  // names them AGENT:IFACE when it merges several agents), with the description's
  // description, filter, os, link type and snaplen. A second description of the same (feed,
  // index) adds another file interface, used from then on. Returns the file interface index.
  StatusOr<uint32_t> AddInterface(FeedId feed, const v1::InterfaceDescription& description,
                                  std::string file_name);
  StatusOr<uint32_t> AddInterface(FeedId feed, const v1::InterfaceDescription& description) {
    return AddInterface(feed, description, description.name());
  }
  // An interface the file does not hold (a pcap file has one link type: capctl leaves a mirror
  // capture interface out of it). Its statistics are kept; a packet of it is an error.
  void LeaveOut(FeedId feed, const v1::InterfaceDescription& description, std::string name);

  // BatchView::Check, and every packet's interface described by `feed` and in the file.
  StatusOr<BatchView> View(FeedId feed, const v1::PacketBatch& batch) const;

  // One packet of a batch View accepted for `feed`.
  Status WritePacket(FeedId feed, const BatchPacket& packet);

  // Writes from `cursor` on, in order: the first packet always, then while the next one's
  // timestamp is at most until_ns and fewer than max_packets are written, and while fewer than
  // max_bytes of packet data are written (capctl flushes per round of about 256 KiB). Adds what
  // it wrote to *packets and *bytes when given.
  struct RunLimits {
    uint64_t until_ns = std::numeric_limits<uint64_t>::max();
    uint64_t max_packets = std::numeric_limits<uint64_t>::max();
    size_t max_bytes = std::numeric_limits<size_t>::max();
    // The batch's owner, when the caller can lend it: the writer may then keep it until its
    // next Flush and write large packets from the batch itself (PacketRun::data_owner).
    std::shared_ptr<const void> data_owner;
  };
  Status WriteUntil(FeedId feed, const BatchView& view, BatchCursor& cursor,
                    const RunLimits& limits, uint64_t* packets = nullptr, size_t* bytes = nullptr);

  // View, then every packet. Nothing is written of a batch View refuses.
  Status WriteBatch(FeedId feed, const v1::PacketBatch& batch);

  // The counters of `statistics` become the latest of each interface `feed` described
  // (interfaces it did not describe are skipped).
  void KeepStatistics(FeedId feed, const v1::Statistics& statistics);
  // KeepStatistics, then an Interface Statistics Block for each interface of `statistics` in the
  // file, in the message's order, with no extra comment: what a ring of files needs (it keeps the
  // latest blocks, sets isb_usrdeliv per file, and ends every file with them).
  Status WriteStatistics(FeedId feed, const v1::Statistics& statistics);
  // A block for every interface of `feed` in the file, by agent interface index, with its latest
  // counters and `extra_comment` (capctl: "ended: WHY" when several agents share the file): the
  // end of a feed. Stops at the first writer error.
  Status WriteFinalStatistics(FeedId feed, std::string_view extra_comment = {});

  // The interface `feed` described as `index`; nullptr when none.
  const StreamInterface* Find(FeedId feed, uint32_t index) const;
  // Every interface, by (feed, agent interface index).
  const std::map<std::pair<FeedId, uint32_t>, StreamInterface>& interfaces() const {
    return interfaces_;
  }

 private:
  StreamInterface* Lookup(FeedId feed, uint32_t index);

  CaptureWriter& writer_;
  std::map<std::pair<FeedId, uint32_t>, StreamInterface> interfaces_;
  uint32_t next_file_index_ = 0;
  // The interface of the last packet written: a batch usually holds one, so one map lookup per
  // change of interface, not per packet. Map nodes stay put; reset when the map changes.
  std::pair<FeedId, uint32_t> last_key_{};
  StreamInterface* last_ = nullptr;
};

}  // namespace capd::capfile
