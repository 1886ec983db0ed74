#include "capfile/pcapng_scan.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace capd::capfile {
namespace {

constexpr uint32_t kSectionHeaderBlock = 0x0A0D0D0A;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint32_t kPacketBlock = 2;  // obsolete, still read by Wireshark
constexpr uint32_t kSimplePacketBlock = 3;
constexpr uint32_t kEnhancedPacketBlock = 6;
constexpr uint64_t kMinBlockBytes = 12;  // type, length, length

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

StatusOr<PcapngScan> ScanPcapng(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Internal("stat(" + name + "): " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument(name + " is not a regular file");
  PcapngScan scan;
  scan.file_bytes = static_cast<uint64_t>(st.st_size);
  if (scan.file_bytes == 0) return scan;
  // One read-only mapping: the headers are a few bytes spread over the whole file.
  void* map = ::mmap(nullptr, scan.file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return Internal("mmap(" + name + "): " + std::strerror(errno));
  const auto* bytes = static_cast<const uint8_t*>(map);
  const uint64_t size = scan.file_bytes;
  Status status;
  if (size < 28 || Load32(bytes) != kSectionHeaderBlock || Load32(bytes + 8) != kByteOrderMagic) {
    status = InvalidArgument(name + " does not start with a pcapng section header");
  }
  uint64_t offset = 0;
  while (status.ok() && size - offset >= kMinBlockBytes) {
    const uint32_t type = Load32(bytes + offset);
    const uint64_t length = Load32(bytes + offset + 4);
    if (length < kMinBlockBytes || length % 4 != 0 || length > size - offset ||
        Load32(bytes + offset + length - 4) != length) {
      break;  // torn, or not a block: the file is whole up to here
    }
    if (type == kSectionHeaderBlock && offset != 0) break;  // one section only: ours
    if (type == kEnhancedPacketBlock || type == kSimplePacketBlock || type == kPacketBlock) {
      ++scan.packets;
    }
    offset += length;
  }
  ::munmap(map, size);
  if (!status.ok()) return status;
  scan.whole_bytes = offset;
  return scan;
}

}  // namespace capd::capfile
