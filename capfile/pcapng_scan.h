#pragma once
// Reading back a pcapng file this project wrote (host byte order, one section): how many packets
// it holds and where its last whole block ends. capd's recordings use it when they adopt the
// files of an earlier run (a kill -9 or a power cut may have left a block half written, and the
// recording's counters lag the files), so the counts they report are the files' own, and so a
// file whose writer died before finishing it can still be described (and uploaded) like one the
// ring finished.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::capfile {

struct PcapngScan {
  uint64_t packets = 0;      // Enhanced, Simple and obsolete Packet Blocks among the whole blocks
  uint64_t whole_bytes = 0;  // the end of the last whole block (0: not even a section header)
  uint64_t file_bytes = 0;   // the file's size; more than whole_bytes after a torn write
  // From the whole blocks: Enhanced Packet Blocks' earliest and latest time (ns since the Unix
  // epoch, by their interface's if_tsresol; 0: no such packet), and the interfaces (IDBs), in
  // order, with their if_name ("" when absent) and link type.
  uint64_t first_ns = 0;
  uint64_t last_ns = 0;
  std::vector<std::string> interface_names;
  std::vector<uint16_t> interface_link_types;
};

// Scans the regular file open for reading as `fd` (it is not moved: pread/mmap). A block counts
// as whole when its two length fields agree and it lies within the file. kInvalidArgument when
// the file does not start with a pcapng section header in host byte order; `name` is for
// messages.
StatusOr<PcapngScan> ScanPcapng(int fd, const std::string& name);

}  // namespace capd::capfile
