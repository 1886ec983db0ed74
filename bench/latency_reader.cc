// latency_reader: how long a captured packet takes to reach the reader of a capture stream.
//
// How data flows: a capturer (capctl, tcpdump -U) writes a capture file into a pipe or FIFO; this
// program reads it incrementally, and for every packet record takes `now` (CLOCK_REALTIME, read
// right after the read() that completed the record) minus the packet's kernel timestamp. On end of
// file it prints one `key=value` line that bench/run.sh parses:
//
//   packets=200 p50_ms=1.234 p99_ms=2.345 min_ms=0.456 max_ms=3.456 mean_ms=1.300 format=pcapng
//
// Input is pcapng (SHB, IDB with if_tsresol, EPB; other blocks skipped) or classic pcap (micro- or
// nanosecond magic, either byte order), detected from the first four bytes. Every length read from
// the stream is bounds-checked before use; a malformed stream ends the run with exit code 1 and a
// message naming the offset, never a crash. Only for benchmarks: the clock difference is meaningful
// because the capturer runs on the same host (kernel timestamps are CLOCK_REALTIME).
//
// Usage: latency_reader [--skip N] [--raw FILE] [INPUT]   (INPUT defaults to stdin; "-" = stdin)
//   --skip N    ignore the first N packets (warm-up)
//   --raw FILE  also write every latency in ms, one per line

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr uint32_t kPcapngShb = 0x0A0D0D0A;
constexpr uint32_t kPcapngIdb = 0x00000001;
constexpr uint32_t kPcapngEpb = 0x00000006;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint32_t kPcapMagicUsec = 0xA1B2C3D4;
constexpr uint32_t kPcapMagicNsec = 0xA1B23C4D;
constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptIfTsresol = 9;
// Largest block or record accepted; pcapng blocks beyond this are treated as malformed.
constexpr size_t kMaxBlock = 16u << 20;
constexpr size_t kReadChunk = 1u << 20;

// GCC/Clang extension; __extension__ keeps -Wpedantic quiet.
__extension__ typedef unsigned __int128 Uint128;

uint32_t Swap32(uint32_t v) { return __builtin_bswap32(v); }
uint16_t Swap16(uint16_t v) { return __builtin_bswap16(v); }

int64_t NowRealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Timestamp resolution of one pcapng interface: units are 10^-exp or 2^-exp seconds.
struct TsResolution {
  bool binary = false;
  uint8_t exp = 6;  // pcapng default: microseconds

  // Converts a raw timestamp in these units to nanoseconds since the epoch.
  int64_t ToNs(uint64_t units) const {
    if (binary) {
      const Uint128 ns = static_cast<Uint128>(units) * 1'000'000'000u;
      return exp >= 128 ? 0 : static_cast<int64_t>(ns >> exp);
    }
    if (exp <= 9) {
      uint64_t mul = 1;
      for (int i = exp; i < 9; ++i) mul *= 10;
      return static_cast<int64_t>(units * mul);
    }
    uint64_t div = 1;
    for (int i = 9; i < exp && i < 28; ++i) div *= 10;
    return static_cast<int64_t>(units / div);
  }
};

// Incremental parser: Feed() is given the unconsumed bytes and returns how many it consumed (whole
// blocks/records only); it calls on_packet(ts_ns) for each packet. Not thread-safe.
class CaptureParser {
 public:
  enum class Format { kUnknown, kPcapng, kPcap };

  // Returns bytes consumed, or -1 on a malformed stream (error() says why).
  template <typename OnPacket>
  long Feed(const uint8_t* data, size_t len, OnPacket&& on_packet) {
    size_t pos = 0;
    for (;;) {
      const size_t left = len - pos;
      const uint8_t* p = data + pos;
      if (format_ == Format::kUnknown) {
        if (left < 4) break;
        const uint32_t magic = Load32Raw(p);
        if (magic == kPcapngShb) {
          format_ = Format::kPcapng;
        } else if (magic == kPcapMagicUsec || magic == kPcapMagicNsec ||
                   Swap32(magic) == kPcapMagicUsec || Swap32(magic) == kPcapMagicNsec) {
          format_ = Format::kPcap;
        } else {
          return Fail(pos, "unknown file magic");
        }
      }
      const long used = format_ == Format::kPcapng ? PcapngBlock(p, left, on_packet)
                                                   : PcapRecord(p, left, on_packet);
      if (used < 0) return Fail(pos, error_);
      if (used == 0) break;  // need more bytes
      pos += static_cast<size_t>(used);
      offset_ += static_cast<uint64_t>(used);
    }
    return static_cast<long>(pos);
  }

  const std::string& error() const { return error_; }
  Format format() const { return format_; }

 private:
  static uint32_t Load32Raw(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  uint32_t Load32(const uint8_t* p) const { return swap_ ? Swap32(Load32Raw(p)) : Load32Raw(p); }
  uint16_t Load16(const uint8_t* p) const {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return swap_ ? Swap16(v) : v;
  }

  long Fail(size_t pos, std::string why) {
    error_ = "offset " + std::to_string(offset_ + pos) + ": " + why;
    return -1;
  }

  // One pcapng block: returns its length, 0 if incomplete, -1 if malformed.
  template <typename OnPacket>
  long PcapngBlock(const uint8_t* p, size_t left, OnPacket& on_packet) {
    if (left < 12) return 0;
    const uint32_t type = Load32Raw(p);  // SHB type is a palindrome; others need swap_
    if (type == kPcapngShb) {
      const uint32_t bom = Load32Raw(p + 8);
      if (bom == kByteOrderMagic) {
        swap_ = false;
      } else if (Swap32(bom) == kByteOrderMagic) {
        swap_ = true;
      } else {
        error_ = "bad byte-order magic";
        return -1;
      }
      interfaces_.clear();  // a new section starts a new interface list
    }
    const uint32_t total = Load32(p + 4);
    if (total < 12 || total % 4 != 0 || total > kMaxBlock) {
      error_ = "bad block length " + std::to_string(total);
      return -1;
    }
    if (left < total) return 0;
    const uint8_t* body = p + 8;
    const size_t body_len = total - 12;
    switch (swap_ ? Swap32(type) : type) {
      case kPcapngIdb: {
        if (body_len < 8) {
          error_ = "short IDB";
          return -1;
        }
        TsResolution res;
        size_t opt = 8;
        while (opt + 4 <= body_len) {
          const uint16_t code = Load16(body + opt);
          const uint16_t olen = Load16(body + opt + 2);
          if (code == kOptEnd) break;
          const size_t padded = (static_cast<size_t>(olen) + 3) & ~size_t{3};
          if (opt + 4 + padded > body_len) {
            error_ = "IDB option overruns block";
            return -1;
          }
          if (code == kOptIfTsresol && olen >= 1) {
            const uint8_t v = body[opt + 4];
            res.binary = (v & 0x80) != 0;
            res.exp = v & 0x7F;
          }
          opt += 4 + padded;
        }
        interfaces_.push_back(res);
        break;
      }
      case kPcapngEpb: {
        if (body_len < 20) {
          error_ = "short EPB";
          return -1;
        }
        const uint32_t if_id = Load32(body);
        const uint32_t caplen = Load32(body + 12);
        if (if_id >= interfaces_.size()) {
          error_ = "EPB names unknown interface " + std::to_string(if_id);
          return -1;
        }
        if (caplen > body_len - 20) {
          error_ = "EPB captured length overruns block";
          return -1;
        }
        const uint64_t units = (static_cast<uint64_t>(Load32(body + 4)) << 32) | Load32(body + 8);
        on_packet(interfaces_[if_id].ToNs(units));
        break;
      }
      default:
        break;  // SHB handled above; ISB, NRB, DSB, SPB and custom blocks carry no latency
    }
    if (Load32(p + total - 4) != total) {
      error_ = "trailing block length mismatch";
      return -1;
    }
    return static_cast<long>(total);
  }

  // The pcap file header (first call) or one record: its length, 0 if incomplete, -1 if bad.
  template <typename OnPacket>
  long PcapRecord(const uint8_t* p, size_t left, OnPacket& on_packet) {
    if (!pcap_header_seen_) {
      if (left < 24) return 0;
      const uint32_t magic = Load32Raw(p);
      swap_ = magic != kPcapMagicUsec && magic != kPcapMagicNsec;
      const uint32_t host = swap_ ? Swap32(magic) : magic;
      pcap_nsec_ = host == kPcapMagicNsec;
      pcap_header_seen_ = true;
      return 24;
    }
    if (left < 16) return 0;
    const uint32_t sec = Load32(p);
    const uint32_t frac = Load32(p + 4);
    const uint32_t caplen = Load32(p + 8);
    if (caplen > kMaxBlock) {
      error_ = "bad pcap captured length " + std::to_string(caplen);
      return -1;
    }
    if (left < 16 + static_cast<size_t>(caplen)) return 0;
    const int64_t ns = static_cast<int64_t>(sec) * 1'000'000'000 +
                       (pcap_nsec_ ? frac : static_cast<int64_t>(frac) * 1000);
    on_packet(ns);
    return 16 + static_cast<long>(caplen);
  }

  Format format_ = Format::kUnknown;
  bool swap_ = false;
  bool pcap_header_seen_ = false;
  bool pcap_nsec_ = false;
  uint64_t offset_ = 0;
  std::vector<TsResolution> interfaces_;
  std::string error_;
};

double Percentile(const std::vector<double>& sorted, double q) {
  // Nearest-rank: the smallest value with at least q of the samples at or below it.
  if (sorted.empty()) return 0.0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

int Usage() {
  std::fprintf(stderr, "usage: latency_reader [--skip N] [--raw FILE] [INPUT|-]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  long skip = 0;
  const char* raw_path = nullptr;
  const char* input = "-";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--skip" && i + 1 < argc) {
      skip = std::strtol(argv[++i], nullptr, 10);
    } else if (arg == "--raw" && i + 1 < argc) {
      raw_path = argv[++i];
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return Usage();
    } else {
      input = argv[i];
    }
  }

  int fd = STDIN_FILENO;
  if (std::string_view(input) != "-") {
    fd = open(input, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "latency_reader: open(%s): %s\n", input, std::strerror(errno));
      return 1;
    }
  }

  CaptureParser parser;
  std::vector<double> latencies_ms;
  latencies_ms.reserve(4096);
  long seen = 0;
  std::vector<uint8_t> buf(kReadChunk * 2);
  size_t have = 0;
  for (;;) {
    if (buf.size() - have < kReadChunk) buf.resize(buf.size() * 2);
    if (buf.size() > kMaxBlock * 4) {
      std::fprintf(stderr, "latency_reader: buffer limit reached\n");
      return 1;
    }
    const ssize_t n = read(fd, buf.data() + have, buf.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "latency_reader: read: %s\n", std::strerror(errno));
      return 1;
    }
    if (n == 0) break;
    const int64_t now_ns = NowRealtimeNs();  // arrival of every record this read completed
    have += static_cast<size_t>(n);
    const long used = parser.Feed(buf.data(), have, [&](int64_t ts_ns) {
      if (seen++ < skip) return;
      latencies_ms.push_back(static_cast<double>(now_ns - ts_ns) / 1e6);
    });
    if (used < 0) {
      std::fprintf(stderr, "latency_reader: malformed input at %s\n", parser.error().c_str());
      return 1;
    }
    std::memmove(buf.data(), buf.data() + used, have - static_cast<size_t>(used));
    have -= static_cast<size_t>(used);
  }

  if (raw_path != nullptr) {
    if (FILE* raw = std::fopen(raw_path, "w")) {
      for (double v : latencies_ms) std::fprintf(raw, "%.6f\n", v);
      std::fclose(raw);
    }
  }
  std::vector<double> sorted = latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double v : sorted) sum += v;
  const char* format = parser.format() == CaptureParser::Format::kPcapng ? "pcapng"
                       : parser.format() == CaptureParser::Format::kPcap ? "pcap"
                                                                         : "none";
  std::printf(
      "packets=%zu p50_ms=%.3f p99_ms=%.3f min_ms=%.3f max_ms=%.3f mean_ms=%.3f format=%s\n",
      sorted.size(), Percentile(sorted, 0.50), Percentile(sorted, 0.99),
      sorted.empty() ? 0.0 : sorted.front(), sorted.empty() ? 0.0 : sorted.back(),
      sorted.empty() ? 0.0 : sum / static_cast<double>(sorted.size()), format);
  if (have != 0) std::fprintf(stderr, "latency_reader: %zu trailing bytes ignored\n", have);
  return 0;
}
