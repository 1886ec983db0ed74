#pragma once
// Reading back a pcapng file this project wrote (host byte order, one section): how many packets
// it holds and where its last whole block ends. capd's recordings use it when they adopt the
// files of an earlier run (a kill -9 or a power cut may have left a block half written, and the
// recording's counters lag the files), so the counts they report are the files' own.

#include <cstdint>

#include "common/status.h"

namespace capd::capfile {

struct PcapngScan {
  uint64_t packets = 0;      // Enhanced, Simple and obsolete Packet Blocks among the whole blocks
  uint64_t whole_bytes = 0;  // the end of the last whole block (0: not even a section header)
  uint64_t file_bytes = 0;   // the file's size; more than whole_bytes after a torn write
};

// Scans the regular file open for reading as `fd` (it is not moved: pread/mmap). A block counts
// as whole when its two length fields agree and it lies within the file. kInvalidArgument when
// the file does not start with a pcapng section header in host byte order; `name` is for
// messages.
StatusOr<PcapngScan> ScanPcapng(int fd, const std::string& name);

}  // namespace capd::capfile
