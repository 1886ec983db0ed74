#pragma once
// Reads a pcapng or pcap capture from a stream (a file or stdin, so that `capctl stream -w - |
// capctl paths -` works), one packet at a time, each named by its capture point: the pcapng
// interface's if_name ("AGENT:IFACE" in capctl's merged captures), or the name the caller gives
// for a pcap file (which has a single interface without a name).
//
// Either byte order; several pcapng sections (a new section starts its interfaces afresh; equal
// names are the same capture point); if_tsresol and if_tsoffset applied; timestamps in ns.
// Blocks larger than kMaxBlockBytes are refused as malformed, so a damaged length field cannot
// make the reader allocate without bound. A block cut short at the end of the input (a capture
// that was interrupted) ends the input as if it ended before it: Next reports kEnd and
// truncated() says so.

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::paths {

struct CapturedFrame {
  uint32_t interface = 0;  // index into CaptureReader::interfaces()
  uint64_t ts_ns = 0;
  uint32_t original_length = 0;
  std::span<const uint8_t> data;  // valid until the next call to Next
};

struct CaptureInterface {
  std::string name;
  int link_type = 0;
};

class CaptureReader {
 public:
  static constexpr uint32_t kMaxBlockBytes = 16u << 20;

  // Reads from `file` (not owned; the caller closes it). `pcap_name` names the one interface of a
  // pcap file.
  CaptureReader(std::FILE* file, std::string pcap_name);

  enum class Result { kPacket, kEnd, kError };
  // The next packet into `frame`; kError with error() saying what is wrong.
  Result Next(CapturedFrame& frame);

  const std::vector<CaptureInterface>& interfaces() const { return interfaces_; }
  const std::string& error() const { return error_; }
  bool truncated() const { return truncated_; }

 private:
  enum class Format { kUnknown, kPcap, kPcapng };
  // Fills buffer_ with exactly n bytes; false at the end of input (truncated_ set when some bytes
  // were read) or on a read error (error_ set).
  bool ReadExactly(size_t n, size_t at = 0);
  Result Fail(std::string message);
  Result Start();
  Result NextPcap(CapturedFrame& frame);
  Result NextPcapng(CapturedFrame& frame);
  Result ReadSectionHeader(uint32_t first_word_bytes);
  bool ParseInterface(std::span<const uint8_t> body);
  uint32_t Get32(const uint8_t* p) const;
  uint16_t Get16(const uint8_t* p) const;
  uint32_t PointFor(const std::string& name, int link_type);

  std::FILE* file_;
  std::string pcap_name_;
  Format format_ = Format::kUnknown;
  bool swapped_ = false;
  bool nanoseconds_ = false;  // pcap
  int pcap_link_type_ = 0;
  std::vector<uint8_t> buffer_;
  std::vector<CaptureInterface> interfaces_;
  struct SectionInterface {
    uint32_t point = 0;
    uint64_t units_per_second = 1'000'000;
    bool power_of_two = false;
    uint8_t resolution = 6;
    int64_t offset_seconds = 0;
  };
  std::vector<SectionInterface> section_;
  std::string error_;
  bool truncated_ = false;
};

}  // namespace capd::paths
