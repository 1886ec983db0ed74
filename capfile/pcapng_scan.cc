#include "capfile/pcapng_scan.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace capd::capfile {
namespace {

constexpr uint32_t kSectionHeaderBlock = 0x0A0D0D0A;
constexpr uint32_t kInterfaceDescriptionBlock = 1;
constexpr uint16_t kOptIfName = 2;
constexpr uint16_t kOptIfTsresol = 9;
constexpr uint16_t kOptEndOfOpt = 0;
constexpr uint64_t kIdbFixedBytes = 16;  // type, length, link type, reserved, snaplen
constexpr uint64_t kEpbFixedBytes = 28;  // type, length, interface, time high/low, two lengths
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

uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Ticks per second for an if_tsresol byte (pcapng: high bit clear, 10^-v s; set, 2^-v s); 0 when
// not representable in 64 bits (such packets get no time).
struct Resolution {
  uint64_t ticks_per_second = 1'000'000;  // the default: microseconds
};

Resolution ResolutionOf(uint8_t tsresol) {
  Resolution r;
  const unsigned exponent = tsresol & 0x7F;
  if ((tsresol & 0x80) != 0) {
    r.ticks_per_second = exponent < 64 ? (uint64_t{1} << exponent) : 0;
  } else {
    uint64_t v = 1;
    for (unsigned i = 0; i < exponent && v != 0; ++i) v = v > UINT64_MAX / 10 ? 0 : v * 10;
    r.ticks_per_second = v;
  }
  return r;
}

uint64_t TicksToNs(uint64_t ticks, const Resolution& r) {
  if (r.ticks_per_second == 0) return 0;
  const uint64_t seconds = ticks / r.ticks_per_second;
  const uint64_t rest = ticks % r.ticks_per_second;
  // Exact for the decimal resolutions up to a nanosecond (the divisor divides 10^9).
  if (1'000'000'000ULL % r.ticks_per_second == 0) {
    return seconds * 1'000'000'000ULL + rest * (1'000'000'000ULL / r.ticks_per_second);
  }
  return seconds * 1'000'000'000ULL +
         static_cast<uint64_t>(static_cast<long double>(rest) * 1e9L /
                               static_cast<long double>(r.ticks_per_second));
}

// The interface's name and resolution from an IDB's options (bytes [begin, end) of the block).
void ReadIdbOptions(const uint8_t* begin, const uint8_t* end, std::string& name,
                    Resolution& resolution) {
  const uint8_t* p = begin;
  while (end - p >= 4) {
    const uint16_t code = Load16(p);
    const uint16_t length = Load16(p + 2);
    if (code == kOptEndOfOpt || end - p - 4 < length) return;
    if (code == kOptIfName) name.assign(reinterpret_cast<const char*>(p + 4), length);
    if (code == kOptIfTsresol && length >= 1) resolution = ResolutionOf(p[4]);
    const size_t advance = 4 + length + ((4 - length % 4) % 4);
    if (static_cast<size_t>(end - p) < advance) return;
    p += advance;
  }
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
  std::vector<Resolution> resolutions;
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
    if (type == kInterfaceDescriptionBlock && length >= kIdbFixedBytes + 4) {
      std::string name;
      Resolution resolution;
      ReadIdbOptions(bytes + offset + kIdbFixedBytes, bytes + offset + length - 4, name,
                     resolution);
      scan.interface_names.push_back(std::move(name));
      scan.interface_link_types.push_back(Load16(bytes + offset + 8));
      resolutions.push_back(resolution);
    }
    if (type == kEnhancedPacketBlock && length >= kEpbFixedBytes + 4) {
      const uint32_t interface = Load32(bytes + offset + 8);
      if (interface < resolutions.size()) {
        const uint64_t ticks =
            (uint64_t{Load32(bytes + offset + 12)} << 32) | Load32(bytes + offset + 16);
        const uint64_t ns = TicksToNs(ticks, resolutions[interface]);
        if (scan.first_ns == 0 || ns < scan.first_ns) scan.first_ns = ns;
        if (ns > scan.last_ns) scan.last_ns = ns;
      }
    }
    offset += length;
  }
  ::munmap(map, size);
  if (!status.ok()) return status;
  scan.whole_bytes = offset;
  return scan;
}

}  // namespace capd::capfile
