#include "paths/capture_reader.h"

#include <cstring>

namespace capd::paths {
namespace {

constexpr uint32_t kPcapngSectionHeader = 0x0A0D0D0A;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint32_t kInterfaceDescription = 1;
constexpr uint32_t kObsoletePacket = 2;
constexpr uint32_t kEnhancedPacket = 6;

uint32_t Swap32(uint32_t v) { return __builtin_bswap32(v); }

}  // namespace

CaptureReader::CaptureReader(std::FILE* file, std::string pcap_name)
    : file_(file), pcap_name_(std::move(pcap_name)) {}

bool CaptureReader::ReadExactly(size_t n, size_t at) {
  if (buffer_.size() < at + n) buffer_.resize(at + n);
  const size_t got = std::fread(buffer_.data() + at, 1, n, file_);
  if (got == n) return true;
  if (std::ferror(file_)) {
    error_ = std::string("read: ") + std::strerror(errno);
  } else if (got > 0 || at > 0) {
    truncated_ = true;
  }
  return false;
}

CaptureReader::Result CaptureReader::Fail(std::string message) {
  error_ = std::move(message);
  return Result::kError;
}

uint32_t CaptureReader::Get32(const uint8_t* p) const {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swapped_ ? Swap32(v) : v;
}

uint16_t CaptureReader::Get16(const uint8_t* p) const {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return swapped_ ? __builtin_bswap16(v) : v;
}

uint32_t CaptureReader::PointFor(const std::string& name, int link_type) {
  for (size_t i = 0; i < interfaces_.size(); ++i) {
    if (interfaces_[i].name == name && interfaces_[i].link_type == link_type) {
      return static_cast<uint32_t>(i);
    }
  }
  interfaces_.push_back({name, link_type});
  return static_cast<uint32_t>(interfaces_.size() - 1);
}

CaptureReader::Result CaptureReader::Start() {
  if (!ReadExactly(4)) {
    if (!error_.empty()) return Result::kError;
    return Fail("empty input: not a pcap or pcapng capture");
  }
  uint32_t magic;
  std::memcpy(&magic, buffer_.data(), 4);
  if (magic == kPcapngSectionHeader) {
    format_ = Format::kPcapng;
    return ReadSectionHeader(4);
  }
  switch (magic) {
    case 0xA1B2C3D4:
      break;
    case 0xA1B23C4D:
      nanoseconds_ = true;
      break;
    case 0xD4C3B2A1:
      swapped_ = true;
      break;
    case 0x4D3CB2A1:
      swapped_ = nanoseconds_ = true;
      break;
    default:
      return Fail("not a pcap or pcapng capture (unknown magic number)");
  }
  format_ = Format::kPcap;
  if (!ReadExactly(20, 4))
    return error_.empty() ? Fail("pcap file header cut short") : Result::kError;
  // The link type's upper bits carry the FCS length (pcap's LINKTYPE_ field layout).
  pcap_link_type_ = static_cast<int>(Get32(&buffer_[20]) & 0x03FFFFFF);
  PointFor(pcap_name_, pcap_link_type_);
  return Result::kPacket;
}

CaptureReader::Result CaptureReader::ReadSectionHeader(uint32_t have) {
  // Block type, block length, byte-order magic: the first `have` bytes are read already.
  if (!ReadExactly(12 - have, have))
    return error_.empty() ? Fail("section header cut short") : Result::kError;
  uint32_t bom;
  std::memcpy(&bom, &buffer_[8], 4);
  if (bom == kByteOrderMagic) {
    swapped_ = false;
  } else if (bom == Swap32(kByteOrderMagic)) {
    swapped_ = true;
  } else {
    return Fail("pcapng section header with an unknown byte-order magic");
  }
  const uint32_t length = Get32(&buffer_[4]);
  if (length < 28 || length % 4 != 0 || length > kMaxBlockBytes) {
    return Fail("pcapng section header with a bad length (" + std::to_string(length) + ")");
  }
  if (!ReadExactly(length - 12, 12)) return error_.empty() ? Result::kEnd : Result::kError;
  section_.clear();
  return Result::kPacket;
}

bool CaptureReader::ParseInterface(std::span<const uint8_t> body) {
  if (body.size() < 8) return false;
  SectionInterface s;
  const int link_type = Get16(&body[0]);
  std::string name;
  size_t at = 8;
  while (at + 4 <= body.size()) {
    const uint16_t code = Get16(&body[at]);
    const uint16_t length = Get16(&body[at + 2]);
    at += 4;
    if (code == 0) break;
    if (at + length > body.size()) return false;
    const uint8_t* value = &body[at];
    if (code == 2) {
      name.assign(reinterpret_cast<const char*>(value), length);
      // Some writers include the terminating NUL.
      if (const size_t nul = name.find('\0'); nul != std::string::npos) name.resize(nul);
    } else if (code == 9 && length >= 1) {
      s.power_of_two = (value[0] & 0x80) != 0;
      s.resolution = value[0] & 0x7F;
    } else if (code == 14 && length >= 8) {
      uint64_t v;
      std::memcpy(&v, value, 8);
      if (swapped_) v = __builtin_bswap64(v);
      s.offset_seconds = static_cast<int64_t>(v);
    }
    at += (length + 3u) & ~3u;
  }
  if (name.empty()) name = "interface " + std::to_string(section_.size());
  if ((s.power_of_two && s.resolution > 63) || (!s.power_of_two && s.resolution > 19)) return false;
  s.point = PointFor(name, link_type);
  section_.push_back(s);
  return true;
}

CaptureReader::Result CaptureReader::NextPcap(CapturedFrame& frame) {
  if (!ReadExactly(16)) return error_.empty() ? Result::kEnd : Result::kError;
  const uint32_t seconds = Get32(&buffer_[0]);
  const uint32_t fraction = Get32(&buffer_[4]);
  const uint32_t caplen = Get32(&buffer_[8]);
  const uint32_t len = Get32(&buffer_[12]);
  if (caplen > kMaxBlockBytes)
    return Fail("pcap record with a bad length (" + std::to_string(caplen) + ")");
  if (!ReadExactly(caplen, 16)) return error_.empty() ? Result::kEnd : Result::kError;
  frame.interface = 0;
  frame.ts_ns = static_cast<uint64_t>(seconds) * 1'000'000'000ULL +
                (nanoseconds_ ? fraction : static_cast<uint64_t>(fraction) * 1000);
  frame.original_length = len;
  frame.data = std::span<const uint8_t>(buffer_.data() + 16, caplen);
  return Result::kPacket;
}

CaptureReader::Result CaptureReader::NextPcapng(CapturedFrame& frame) {
  while (true) {
    if (!ReadExactly(8)) return error_.empty() ? Result::kEnd : Result::kError;
    uint32_t type_raw;
    std::memcpy(&type_raw, buffer_.data(), 4);
    if (type_raw == kPcapngSectionHeader) {
      if (const Result r = ReadSectionHeader(8); r != Result::kPacket) return r;
      continue;
    }
    const uint32_t type = Get32(&buffer_[0]);
    const uint32_t length = Get32(&buffer_[4]);
    if (length < 12 || length % 4 != 0 || length > kMaxBlockBytes) {
      return Fail("pcapng block of type " + std::to_string(type) + " with a bad length (" +
                  std::to_string(length) + ")");
    }
    if (!ReadExactly(length - 8, 8)) return error_.empty() ? Result::kEnd : Result::kError;
    if (Get32(&buffer_[length - 4]) != length) {
      return Fail("pcapng block whose two length fields differ");
    }
    const std::span<const uint8_t> body(buffer_.data() + 8, length - 12);
    if (type == kInterfaceDescription) {
      if (!ParseInterface(body)) return Fail("malformed pcapng interface description");
      continue;
    }
    if (type != kEnhancedPacket && type != kObsoletePacket) continue;  // statistics, names, ...
    if (body.size() < 20) return Fail("pcapng packet block too short");
    uint32_t interface;
    size_t header = 20;
    if (type == kEnhancedPacket) {
      interface = Get32(&body[0]);
    } else {
      interface = Get16(&body[0]);
    }
    const uint64_t ts = static_cast<uint64_t>(Get32(&body[4])) << 32 | Get32(&body[8]);
    const uint32_t caplen = Get32(&body[12]);
    const uint32_t len = Get32(&body[16]);
    if (interface >= section_.size()) {
      return Fail("pcapng packet for interface " + std::to_string(interface) +
                  ", which the section does not declare");
    }
    if (caplen > body.size() - header) return Fail("pcapng packet longer than its block");
    const SectionInterface& s = section_[interface];
    uint64_t ns;
    if (s.power_of_two) {
      const uint64_t whole = s.resolution >= 64 ? 0 : ts >> s.resolution;
      const uint64_t fraction = ts & ((uint64_t{1} << s.resolution) - 1);
      // fraction * 1e9 fits in 64 bits while the resolution is at most 34 bits.
      const uint64_t fraction_ns =
          s.resolution <= 34 ? (fraction * 1'000'000'000ULL) >> s.resolution
                             : ((fraction >> (s.resolution - 30)) * 1'000'000'000ULL) >> 30;
      ns = whole * 1'000'000'000ULL + fraction_ns;
    } else if (s.resolution <= 9) {
      uint64_t scale = 1;
      for (int i = s.resolution; i < 9; ++i) scale *= 10;
      ns = ts * scale;
    } else {
      uint64_t scale = 1;
      for (int i = 9; i < s.resolution; ++i) scale *= 10;
      ns = ts / scale;
    }
    ns += static_cast<uint64_t>(s.offset_seconds) * 1'000'000'000ULL;  // modulo 2^64, as intended
    frame.interface = s.point;
    frame.ts_ns = ns;
    frame.original_length = len;
    frame.data = body.subspan(header, caplen);
    return Result::kPacket;
  }
}

CaptureReader::Result CaptureReader::Next(CapturedFrame& frame) {
  if (format_ == Format::kUnknown) {
    if (const Result r = Start(); r != Result::kPacket) return r;
  }
  return format_ == Format::kPcap ? NextPcap(frame) : NextPcapng(frame);
}

}  // namespace capd::paths
