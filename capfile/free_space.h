#pragma once
// The free-space floor of a ring of files that must not fill its filesystem: pure functions, no
// I/O, so the policy is tested without a disk. One floor, two policies (FloorPolicy): capd's
// recordings (capd --record-keep-free) and capctl's rotating files (capctl --min-free).
//
// The floor is free space the ring leaves to everyone else on the filesystem (logs, other
// services), as journald's SystemKeepFree and Arkime's freeSpaceG do. The ring checks it
// (statvfs) when it opens a file, once a second, and whenever what it wrote since the last check
// could have crossed it; never per packet. Below the floor:
// 1. finished files are deleted, oldest first, until free space is back above the floor: the
//    newest packets are worth more than the oldest (flight-recorder semantics), and a full disk
//    breaks the host. Which files may go is the policy's: capd's recordings delete only the files
//    kept beyond the ring's normal size (max_files) because they are not handed off yet (not
//    uploaded); capctl deletes any file already handed off (its post-rotate command done), down
//    to none, and never one that is not;
// 2. if that is not enough (the disk was filled by something else, or the ring's normal size
//    does not fit), the ring stops writing: its files are kept.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace capd::capfile {

// --record-keep-free: a size, a percentage of the filesystem, or both (the larger wins); both
// zero: no floor.
struct FreeSpaceFloor {
  uint64_t bytes = 0;
  uint32_t percent = 0;  // 0..100 of the filesystem's size
  bool off() const { return bytes == 0 && percent == 0; }
};

// capd's default: the larger of 5 % of the filesystem and 1 GiB. 5 % is Arkime's freeSpaceG
// default; 1 GiB keeps room for logs and package updates on a small root disk, where 5 % is a
// few hundred MB (journald's own default is 15 % capped at 4 GiB for its files alone).
inline constexpr FreeSpaceFloor kDefaultRecordKeepFree{uint64_t{1} << 30, 5};

// "SIZE" (common/byte_size.h grammar), "PCT%" (an integer 0..100) or "0" (off); nullopt for
// anything else.
std::optional<FreeSpaceFloor> ParseFreeSpaceFloor(std::string_view text);
// The way a user writes it: "1GiB or 5%", "10%", "2000000000 bytes", "off".
std::string DescribeFloor(const FreeSpaceFloor& floor);
// The floor in bytes on a filesystem of `filesystem_bytes`.
uint64_t FloorBytes(const FreeSpaceFloor& floor, uint64_t filesystem_bytes);

// A finished file of the ring, oldest first.
struct FloorFile {
  uint64_t bytes = 0;
  bool handed_off = true;  // may_delete says yes (uploaded, or nothing to wait for)
};

struct FloorDecision {
  std::vector<size_t> remove;  // indices into the files, oldest first: delete these
  bool stop = false;           // and then, still below the floor: stop writing
  uint64_t free_after = 0;     // free space once those are deleted
};

// Which finished files the floor may delete (beyond those it may always delete: oldest first).
struct FloorPolicy {
  // Files not handed off yet (FloorFile::handed_off false) may go too.
  bool held_files_may_go = true;
  // The ring may shrink below its normal size (`keep` of DecideFloor) for the floor.
  bool below_ring_size = false;
};
// capd --record-keep-free: a recording deletes the files it keeps past max_files for their upload
// (their newest packets matter more than the backlog), never its normal ring.
inline constexpr FloorPolicy kRecordingFloorPolicy{.held_files_may_go = true,
                                                   .below_ring_size = false};
// capctl --min-free: any file already handed off may go, down to none; a file whose hand-off has
// not succeeded is never deleted to make room.
inline constexpr FloorPolicy kMinFreeFloorPolicy{.held_files_may_go = false,
                                                 .below_ring_size = true};

// free_bytes: free now (statvfs f_bavail); floor_bytes: 0 for none; keep: how many finished
// files the ring keeps normally (max_files less the open one; SIZE_MAX: no limit). Files are
// deleted oldest first, skipping those the policy keeps, until free space is back above the floor.
FloorDecision DecideFloor(uint64_t free_bytes, uint64_t floor_bytes,
                          std::span<const FloorFile> files,
                          size_t keep = std::numeric_limits<size_t>::max(),
                          FloorPolicy policy = kRecordingFloorPolicy);

// Whether a ring of `ring_bytes` (max_files x max_bytes) fits on the filesystem above the floor:
// free now, plus what files of the ring already take (they are part of it), less the floor.
bool RingFits(uint64_t ring_bytes, uint64_t free_bytes, uint64_t existing_ring_bytes,
              uint64_t floor_bytes);

}  // namespace capd::capfile
