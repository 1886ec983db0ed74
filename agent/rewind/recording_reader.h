#pragma once
// Reads a recording's ring of pcapng files (agent/recording) from a time on, with a filter: the
// past part of `capctl stream --since` (rewind.h).
//
// Contract: Open opens the first kMaxOpenFiles files it is given at once and holds the
// descriptors, so a file the ring deletes while the reader works stays readable to its end; each
// file is closed once read, and the next one opened then, so a reader holds at most
// kMaxOpenFiles descriptors however long the ring (up to 100,000 files): capd's descriptors stay
// bounded by --max-streams x kMaxOpenFiles. A file already gone when its turn comes (rotated
// away between the listing and the open) is skipped and named in warnings(). Next
// returns the packets in file order (the order they were captured), skipping those before
// `since` and those the filter rejects. A file whose link type is not the expected one is
// skipped (a warning). A damaged or partly written last block ends its file: the reader never
// waits for a writer. Not thread-safe; no root needed (tests read files they wrote).

#include <pcap/pcap.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent::rewind {

inline constexpr size_t kMaxOpenFiles = 64;

struct RecordedPacket {
  uint64_t timestamp_ns = 0;
  uint32_t original_length = 0;
  std::string_view bytes;  // valid until the next call of Next
};

class RecordingReader {
 public:
  // `paths` oldest first. `filter` may be null (every packet); it must outlive the reader.
  // `link_type`: the DLT_ value the packets must have (the live capture's).
  // `max_open`: the descriptors held at once (at least 1).
  static StatusOr<std::unique_ptr<RecordingReader>> Open(const std::vector<std::string>& paths,
                                                         uint64_t since_ns,
                                                         const filters::CompiledFilter* filter,
                                                         int link_type,
                                                         size_t max_open = kMaxOpenFiles);
  ~RecordingReader();
  RecordingReader(const RecordingReader&) = delete;
  RecordingReader& operator=(const RecordingReader&) = delete;

  // The next packet at or after since that passes the filter; false at the end of the files.
  bool Next(RecordedPacket& packet);

  // The time of the first packet of the first readable file (0 before any was read): when the
  // recording reaches back to.
  uint64_t earliest_ns() const { return earliest_ns_; }
  // Files skipped or cut short, each a sentence.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct File {
    std::string path;
    pcap_t* handle;  // owned
  };
  RecordingReader(std::vector<std::string> paths, uint64_t since_ns,
                  const filters::CompiledFilter* filter, int link_type, size_t max_open)
      : paths_(std::move(paths)),
        since_ns_(since_ns),
        filter_(filter),
        link_type_(link_type),
        max_open_(max_open < 1 ? 1 : max_open) {}
  // Opens files from paths_[next_path_] on until max_open_ are open or none are left; files
  // gone or unreadable become warnings. An error other than a file being gone is returned.
  Status Fill();

  const std::vector<std::string> paths_;
  size_t next_path_ = 0;
  std::deque<File> open_;  // oldest first; the front is being read
  const uint64_t since_ns_;
  const filters::CompiledFilter* const filter_;
  const int link_type_;
  const size_t max_open_;
  uint64_t earliest_ns_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace capd::agent::rewind
