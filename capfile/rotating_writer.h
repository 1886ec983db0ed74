#pragma once
// A ring of pcapng files, like dumpcap -b and tcpdump -C/-G/-W/-z, used by `capctl stream
// --rotate-*` (client/output/rotation.h adds its post-rotate command) and by capd's recordings
// (agent/recording/). Nothing here starts a process: what happens to a finished file is the
// caller's (on_file_finished).
//
// How data flows: every call is encoded at once by a pcapng encoder for the current file (into
// memory), so the writer knows the exact size of each block before it reaches the disk; Flush
// writes what is pending with one write(). A packet that would take the file past max_bytes, or
// whose timestamp falls in a later time slot, first finishes the current file (its statistics
// blocks, close) and opens the next one (section header and every interface again).
//
// Files: PREFIX_NNNNN_YYYYmmddHHMMSS.pcapng, PREFIX = path without its extension, NNNNN from
// 00001, or after the highest number of PREFIX's files already in the folder (a second run with
// the same -w continues the numbering; the earlier files are not part of its ring unless adopted,
// so max_files never deletes them), the time in UTC: the start of its time slot for a file opened
// by time rotation, else the time it was opened (the packet's timestamp, or the wall clock).
//
// Time slots: every `seconds` since midnight UTC (a slot that would cross midnight ends there).
// Packets are filed by their own timestamps (the agent's kernel clock), so a file holds exactly
// the packets of its slot even when they arrive late; Tick(now) opens the next file when the wall
// clock passes a boundary and no packet did it first (a quiet link still gets a file per slot).
// Tick waits kTickGrace after the boundary so that packets of the old slot still in flight land
// in the old file. Slots never go backwards: a packet older than the current file's slot (clock
// skew between agent and client) goes into the current file.
//
// Decryption secrets (WriteDecryptionSecrets, a TLS key log): written where they come, and
// repeated after the interfaces at the start of every later file (the newest 4 MiB of them), so
// each file of the ring decrypts on its own.
//
// Crash safety: bytes reach the file at each Flush (one write per batch, no fsync: a kill -9
// loses nothing the kernel has; a power cut may). A finished file is closed and never opened
// again, so after kill -9 every finished file is complete and the current one is readable up to
// its last flushed block (it lacks only its statistics blocks). A write that fails part way
// (ENOSPC, EIO) is cut back: the file is truncated to the end of its last whole block, so every
// file of the ring reads to its end, and the writer stops. Adopted files (a resumed ring) are
// scanned once and a torn last block is cut off the same way.
//
// Files are created relative to the folder's descriptor, never through a path: O_TMPFILE then
// linkat, or (without O_TMPFILE) O_CREAT | O_EXCL | O_NOFOLLOW after removing any entry of that
// name, so a link planted in the folder is replaced, never followed. Adopted files are opened
// with O_NOFOLLOW; a link or anything but a regular file is left out of the ring.
//
// Thread-safety: none; one thread owns the writer (the same one that calls Tick).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "capfile/capture_writer.h"
#include "common/status.h"

namespace capd::capfile {

// What the ring knows of a file when it finishes it (RingOptions::on_file_details): enough to
// name and describe it elsewhere (an object key, its metadata) without reading it again.
struct FinishedFile {
  std::string path;                     // dir/PREFIX_NNNNN_YYYYmmddHHMMSS.pcapng
  uint32_t number = 0;                  // NNNNN
  uint64_t bytes = 0;                   // the file's size
  uint64_t packets = 0;                 // Enhanced Packet Blocks in it
  uint64_t first_ns = 0;                // the earliest packet timestamp (0: no packets)
  uint64_t last_ns = 0;                 // the latest packet timestamp (0: no packets)
  int64_t opened_seconds = 0;           // the time in its name (Unix seconds)
  std::vector<std::string> interfaces;  // the file's interfaces (IDBs), in order
  std::vector<std::string> agents;      // the agent of each (InterfaceInfo::agent)
  std::vector<uint16_t> link_types;     // their LINKTYPE_* values, distinct, in order
};

struct RingOptions {
  std::string path;             // e.g. /data/cap.pcapng -> /data/cap_00001_20240101120000.pcapng
  uint64_t max_bytes = 0;       // 0: no size rotation
  uint32_t seconds = 0;         // 0: no time rotation
  uint32_t max_files = 0;       // keep the newest N files (the current one included); 0: all
  // capctl --min-free: the free-space floor with kMinFreeFloorPolicy (capfile/free_space.h); 0:
  // none. Checked as keep_free_bytes is. Below it, the oldest files that may go (may_delete)
  // are deleted, even below max_files, each named in a log line with the free space that made it
  // necessary; when only held files are left and space is still short, writing stops: the
  // current file is closed as it is and the status is kResourceExhausted, its reason naming the
  // limit and the held files (a file that has not been handed off is never deleted to make
  // room). At most one of min_free_bytes and keep_free_bytes.
  uint64_t min_free_bytes = 0;
  // Resuming a ring (agent recordings): files PREFIX_NNNNN_*.pcapng already in the folder join
  // the ring, oldest first, and numbering continues after the highest.
  bool adopt_existing_files = false;
  // A section comment (shb_comment) for the first file only, e.g. the gap a resumed recording has.
  std::string first_file_comment;
  // The folder of `path`, already open (capd's recordings hold their folder open, so a renamed or
  // replaced folder name cannot redirect them); the writer keeps a duplicate. -1: the writer
  // opens path's folder itself.
  int dir_fd = -1;
  // The files' permissions: file_mode less the umask, as open(2) does; exactly file_mode with
  // exact_file_mode (capd's recordings are 0640 whatever umask capd was started with).
  mode_t file_mode = 0644;
  bool exact_file_mode = false;
  // Where the writer reports what it does on its own (a file deleted for --min-free, a torn block
  // cut off). Empty: one "capctl: ..." line on stderr.
  std::function<void(const std::string&)> log;
  // Called with the path of each file once it is complete and closed (at rotation and at Close,
  // or the destructor), on the writer's thread; not for a file a failed write stopped. It runs
  // inside WritePacket/Tick/Close: it must not block (capctl starts its command and returns).
  std::function<void(const std::string& path)> on_file_finished;
  // The same moment as on_file_finished, with what the ring knows of the file. Either or both.
  std::function<void(const FinishedFile& file)> on_file_details;
  // With adopt_existing_files: each file of an earlier run that joins the ring, described from
  // its own blocks (after a torn last block was cut off; agents left empty), on the thread that
  // opens the ring. Those files are never written again, so they are finished too, and a writer
  // that died before finishing one (kill -9, power cut) told nobody: capd's recordings write
  // the note capd-upload needs for such a file.
  std::function<void(const FinishedFile& file)> on_file_adopted;
  // Asked before the ring deletes a finished file (max_files, min_free_bytes), with its path, on
  // the writer's thread; false keeps the file for now (capctl: its hand-off has not succeeded).
  // Empty: every file may go (capd's recordings). A file held back is asked again at the next
  // Tick, Flush, rotation or Trim:
  // - max_files: held files stay, so the ring may hold more than max_files for a while; the
  //   oldest files that may go are deleted instead, and the held ones once they may. The first
  //   time the ring exceeds max_files this way it says so once through `log`.
  // - min_free_bytes: only files that may go are deleted (see there).
  std::function<bool(const std::string& path)> may_delete;
  // capd's recordings (capd --record-keep-free): the free-space floor with kRecordingFloorPolicy
  // (capfile/free_space.h), free space the ring leaves on its filesystem, 0: none. Checked (statvfs) when a file opens, at a Tick a
  // second after the last check, and at a Flush whose bytes since the last check could cross it;
  // never per packet. Below it, the files kept past max_files because may_delete holds them are
  // deleted, oldest first, only as many as needed (each logged, counted in
  // RingCounts::files_deleted_unhanded); if the ring is down to max_files and still below, the
  // current file is finished (on_file_finished too) and writing stops: kResourceExhausted,
  // "stopped: free space on DIR below the floor of N bytes (M left)". Before each write the ring
  // makes room for it the same way, so it goes below the floor by at most one write (a Flush's
  // batch, or up to a file at rotation) plus what others write within a second.
  uint64_t keep_free_bytes = 0;
};

// Packets of the old slot still arriving after its end (batching, network) are given this long
// before Tick closes the file; a packet of the new slot rotates at once.
inline constexpr uint64_t kTickGraceNs = 250'000'000;

// What the ring holds on disk, for callers that report counts (capd's recordings): packets are
// counted once their blocks are written whole, so the counts equal what a reader finds.
struct RingCounts {
  uint64_t packets_on_disk = 0;  // in the ring's files now, adopted files included
  uint64_t packets_removed = 0;  // in files this writer deleted (max_files, min_free_bytes)
  // Files deleted for keep_free_bytes although may_delete held them (not uploaded yet).
  uint64_t files_deleted_unhanded = 0;
};

class RingWriter : public CaptureWriter {
 public:
  virtual RingCounts Counts() const = 0;
  // Applies max_files again to files may_delete held back; also after Close (capctl settles its
  // hand-offs after the last file is finished, and only then may the ring shrink to max_files).
  virtual void Trim() = 0;
};

// Opens the first file at once, so a bad path is reported before any capture starts:
// kInvalidArgument for the path (missing folder, no permission) or for options that cannot work
// (empty path, "-"). The writer's statuses after that: kResourceExhausted when the floor cannot
// be kept (writing stopped: nothing more is written), kInternal for I/O errors.
// The returned writer's Close() (or its destructor) writes the kept statistics into the last file
// and reports it to on_file_finished too.
StatusOr<std::unique_ptr<CaptureWriter>> MakeRotatingWriter(const RingOptions& options,
                                                            std::string application);
// The same writer, with its counts.
StatusOr<std::unique_ptr<RingWriter>> MakeRing(const RingOptions& options, std::string application);

// The file name (without folder) of file `number` of the ring for `path`, opened at `unix_seconds`.
std::string RingFileName(const std::string& path, uint32_t number, int64_t unix_seconds);

}  // namespace capd::capfile
