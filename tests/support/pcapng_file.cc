#include "tests/support/pcapng_file.h"

#include <fstream>
#include <iterator>

namespace capd::test {
namespace {

constexpr uint32_t kSectionHeaderBlock = 0x0a0d0d0a;
constexpr uint32_t kInterfaceDescriptionBlock = 1;
constexpr uint32_t kInterfaceStatisticsBlock = 5;
constexpr uint32_t kEnhancedPacketBlock = 6;
constexpr uint32_t kByteOrderMagic = 0x1a2b3c4d;

constexpr uint16_t kOptEndOfOpt = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTsresol = 9;
constexpr uint16_t kIfFilter = 11;

constexpr int kLinkTypeRaw = 101;
constexpr int kDltRaw = 12;

// Reads little- or big-endian integers, as the section's byte-order magic says.
class Reader {
 public:
  Reader(const std::string& data, bool swapped) : data_(data), swapped_(swapped) {}
  uint16_t U16(size_t at) const {
    const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + at);
    return swapped_ ? static_cast<uint16_t>(p[0] << 8 | p[1])
                    : static_cast<uint16_t>(p[0] | p[1] << 8);
  }
  uint32_t U32(size_t at) const {
    const uint32_t a = U16(at), b = U16(at + 2);
    return swapped_ ? a << 16 | b : b << 16 | a;
  }
  uint64_t U64(size_t at) const {
    const uint64_t a = U32(at), b = U32(at + 4);
    return swapped_ ? a << 32 | b : b << 32 | a;
  }

 private:
  const std::string& data_;
  bool swapped_;
};

uint32_t Le32(const std::string& data, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + at);
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

struct Option {
  uint16_t code;
  std::string value;
  size_t offset;  // of the value in the file
};

// The options in [begin, end). Fails when one overruns `end`.
StatusOr<std::vector<Option>> ParseOptions(const std::string& data, const Reader& r, size_t begin,
                                           size_t end) {
  std::vector<Option> options;
  size_t at = begin;
  while (at + 4 <= end) {
    const uint16_t code = r.U16(at);
    const uint16_t length = r.U16(at + 2);
    if (code == kOptEndOfOpt) break;
    if (at + 4 + length > end) {
      return InvalidArgument("option " + std::to_string(code) + " at offset " + std::to_string(at) +
                             " overruns its block");
    }
    options.push_back({code, data.substr(at + 4, length), at + 4});
    at += 4 + ((length + 3u) & ~3u);
  }
  return options;
}

// 10^-resol or 2^-resol seconds per tick, as if_tsresol defines; to nanoseconds.
uint64_t TicksToNs(uint64_t ticks, uint8_t tsresol) {
  if (tsresol & 0x80) {
    const int shift = tsresol & 0x7f;
    return static_cast<uint64_t>(static_cast<long double>(ticks) * 1e9L /
                                 static_cast<long double>(uint64_t{1} << shift));
  }
  int exponent = tsresol;
  uint64_t ns = ticks;
  for (; exponent < 9; ++exponent) ns *= 10;
  for (; exponent > 9; --exponent) ns /= 10;
  return ns;
}

}  // namespace

StatusOr<PcapngFile> ReadPcapng(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Internal("cannot open " + path.string());
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string where = path.string() + ": ";
  if (data.size() < 28 || Le32(data, 0) != kSectionHeaderBlock) {
    return InvalidArgument(where + "not a pcapng file");
  }
  bool swapped;
  if (Le32(data, 8) == kByteOrderMagic) {
    swapped = false;
  } else if (Le32(data, 8) == 0x4d3c2b1a) {
    swapped = true;
  } else {
    return InvalidArgument(where + "bad byte-order magic");
  }
  const Reader r(data, swapped);
  PcapngFile file;
  size_t at = 0;
  bool section_seen = false;
  while (at < data.size()) {
    if (at + 12 > data.size()) return InvalidArgument(where + "truncated block header");
    const uint32_t type = r.U32(at);
    const uint32_t length = r.U32(at + 4);
    const std::string block =
        where + "block type " + std::to_string(type) + " at offset " + std::to_string(at) + ": ";
    if (length < 12 || length % 4 != 0 || at + length > data.size()) {
      return InvalidArgument(block + "bad length " + std::to_string(length));
    }
    if (r.U32(at + length - 4) != length) {
      return InvalidArgument(block + "trailing length differs");
    }
    const size_t body = at + 8;
    const size_t end = at + length - 4;
    switch (type) {
      case kSectionHeaderBlock:
        if (section_seen) return InvalidArgument(block + "a second section is not handled");
        section_seen = true;
        break;
      case kInterfaceDescriptionBlock: {
        if (end - body < 8) return InvalidArgument(block + "too short");
        PcapngInterface i;
        i.link_type = r.U16(body);
        i.snaplen = r.U32(body + 4);
        auto options = ParseOptions(data, r, body + 8, end);
        if (!options.ok()) return InvalidArgument(block + options.status().message());
        for (const Option& o : options.value()) {
          if (o.code == kIfName) i.name = o.value;
          if (o.code == kIfDescription) i.description = o.value;
          if (o.code == kIfTsresol && !o.value.empty())
            i.tsresol = static_cast<uint8_t>(o.value[0]);
          if (o.code == kIfFilter && !o.value.empty()) i.filter = o.value.substr(1);
        }
        file.interfaces.push_back(std::move(i));
        break;
      }
      case kEnhancedPacketBlock: {
        if (end - body < 20) return InvalidArgument(block + "too short");
        PcapngPacket p;
        p.interface_id = r.U32(body);
        if (p.interface_id >= file.interfaces.size()) {
          return InvalidArgument(block + "packet for undeclared interface " +
                                 std::to_string(p.interface_id));
        }
        const uint64_t ticks = static_cast<uint64_t>(r.U32(body + 4)) << 32 | r.U32(body + 8);
        p.ts_ns = TicksToNs(ticks, file.interfaces[p.interface_id].tsresol);
        p.caplen = r.U32(body + 12);
        p.len = r.U32(body + 16);
        const size_t packet_data = body + 20;
        if (p.caplen > end - packet_data) return InvalidArgument(block + "caplen overruns block");
        p.bytes = data.substr(packet_data, p.caplen);
        auto options = ParseOptions(data, r, packet_data + ((p.caplen + 3u) & ~3u), end);
        if (!options.ok()) return InvalidArgument(block + options.status().message());
        for (const Option& o : options.value()) {
          if (o.code == kOptComment) p.comments.push_back(o.value);
        }
        file.packets.push_back(std::move(p));
        break;
      }
      case kInterfaceStatisticsBlock: {
        if (end - body < 12) return InvalidArgument(block + "too short");
        PcapngStatistics s;
        s.interface_id = r.U32(body);
        if (s.interface_id >= file.interfaces.size()) {
          return InvalidArgument(block + "statistics for undeclared interface " +
                                 std::to_string(s.interface_id));
        }
        auto options = ParseOptions(data, r, body + 12, end);
        if (!options.ok()) return InvalidArgument(block + options.status().message());
        for (const Option& o : options.value()) {
          if (o.code == kOptComment) {
            s.comments.push_back(o.value);
          } else if (o.code >= 4 && o.code <= 8 && o.value.size() == 8) {
            s.counters[o.code] = r.U64(o.offset);
          }
        }
        file.statistics.push_back(std::move(s));
        break;
      }
      default:
        break;  // name resolution, simple packets, custom blocks: not written by capctl
    }
    at += length;
  }
  return file;
}

CapturedPacket ToCapturedPacket(const PcapngFile& file, const PcapngPacket& packet) {
  CapturedPacket p;
  p.ts_ns = packet.ts_ns;
  p.caplen = packet.caplen;
  p.len = packet.len;
  p.bytes = packet.bytes;
  const int link_type = file.interfaces.at(packet.interface_id).link_type;
  p.linktype = link_type == kLinkTypeRaw ? kDltRaw : link_type;
  return p;
}

}  // namespace capd::test
