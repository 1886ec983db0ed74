#pragma once
// Reads a recording's ring of pcapng files (agent/recording) from a time on, with a filter: the
// past part of `capctl stream --since` (rewind.h).
//
// Contract: Open opens every file it is given at once and holds the descriptors, so a file the
// ring deletes while the reader works stays readable to its end; a file already gone when Open
// runs (rotated away between the listing and the open) is skipped and named in warnings(). Next
// returns the packets in file order (the order they were captured), skipping those before
// `since` and those the filter rejects. A file whose link type is not the expected one is
// skipped (a warning). A damaged or partly written last block ends its file: the reader never
// waits for a writer. Not thread-safe; no root needed (tests read files they wrote).

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent::rewind {

struct RecordedPacket {
  uint64_t timestamp_ns = 0;
  uint32_t original_length = 0;
  std::string_view bytes;  // valid until the next call of Next
};

class RecordingReader {
 public:
  // `paths` oldest first. `filter` may be null (every packet); it must outlive the reader.
  // `link_type`: the DLT_ value the packets must have (the live capture's).
  static StatusOr<std::unique_ptr<RecordingReader>> Open(const std::vector<std::string>& paths,
                                                         uint64_t since_ns,
                                                         const filters::CompiledFilter* filter,
                                                         int link_type);
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
  RecordingReader(std::vector<File> files, uint64_t since_ns, const filters::CompiledFilter* filter,
                  int link_type, std::vector<std::string> warnings)
      : files_(std::move(files)),
        since_ns_(since_ns),
        filter_(filter),
        link_type_(link_type),
        warnings_(std::move(warnings)) {}

  std::vector<File> files_;
  size_t current_ = 0;
  const uint64_t since_ns_;
  const filters::CompiledFilter* const filter_;
  const int link_type_;
  uint64_t earliest_ns_ = 0;
  std::vector<std::string> warnings_;
};

}  // namespace capd::agent::rewind
