// libFuzzer target for the capture writers in capfile/ (pcapng and pcap).
//
// Input: a sequence of writer operations (FuzzedDataProvider): AddInterface with any link type,
// snaplen, name, description, filter and OS text; WritePacket with any interface index, length,
// original length, timestamp and comment; WriteStatistics; Flush; and a sink that may fail. The
// same operations go to a pcapng writer and a pcap writer, each writing into memory, next to a
// model of what each writer must accept and write.
// Checked on top of "no crash, no sanitizer report":
//   - every call returns what the contract in capture_writer.h says (an unknown interface, a
//     captured length above the original length, a second pcap link type are kInvalidArgument;
//     a failing sink's error comes back from Flush);
//   - the pcapng output is a well-formed block sequence (lengths agree at both ends, multiples
//     of 4) with one IDB per interface, one EPB per accepted packet, one ISB per statistics call;
//   - read back with libpcap (nanosecond precision), every packet comes back with the same bytes,
//     captured and original lengths and timestamp, in order, and nothing more.
// libpcap is the independent reader here, not the target: fuzzing its parsing of arbitrary bytes
// is libpcap's business. Its limits (see ReadableByLibpcap) decide when a read-back is possible.

#include <fuzzer/FuzzedDataProvider.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "capfile/capture_writer.h"

namespace {

using capd::Status;
using capd::StatusCode;
using capd::capfile::CaptureWriter;
using capd::capfile::InterfaceCounters;
using capd::capfile::InterfaceInfo;

// libpcap's DLT_USB_LINUX_MMAPPED (LINKTYPE 220): libpcap rewrites the original length of some
// packets on read ("fixup" for old libpcap captures, pcap-util.c fixup_pcap_pkthdr in 1.10.3).
constexpr uint16_t kLinkTypeUsbLinuxMmapped = 220;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "check failed: %s\n", what);
    std::abort();
  }
}

// A ByteSink in memory; it may be told to fail from its n-th write on.
class MemorySink final : public capd::capfile::ByteSink {
 public:
  MemorySink(std::string* bytes, int fail_at_write) : bytes_(bytes), fail_at_(fail_at_write) {}
  Status Write(std::string_view bytes) override {
    if (fail_at_ >= 0 && writes_++ >= fail_at_) return capd::Unavailable("sink: reader gone");
    bytes_->append(bytes);
    return Status::Ok();
  }

 private:
  std::string* bytes_;
  int fail_at_;
  int writes_ = 0;
};

struct Packet {
  uint64_t timestamp_ns;
  uint32_t captured;  // after the writer's snaplen cut
  uint32_t original;
  std::vector<uint8_t> data;  // the captured bytes
};

// What one writer must have written, built from the contract.
struct Model {
  bool pcap = false;  // pcap: one link type per file, snaplen of the first interface
  std::vector<InterfaceInfo> interfaces;
  std::vector<Packet> packets;
  size_t statistics = 0;
  bool sink_failed = false;
  std::string bytes;  // what reached the sink
};

uint32_t Cut(size_t size, uint32_t snaplen) {
  return snaplen != 0 && size > snaplen ? snaplen : static_cast<uint32_t>(size);
}

uint32_t ReadU32(const std::string& bytes, size_t offset) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + offset, sizeof(v));
  return v;
}

// Walks the pcapng blocks (host byte order, as the writer writes them) and counts them.
void CheckPcapngStructure(const Model& model) {
  const std::string& b = model.bytes;
  size_t offset = 0, sections = 0, idbs = 0, epbs = 0, isbs = 0;
  while (offset < b.size()) {
    Check(b.size() - offset >= 12, "a block header and trailer fit");
    const uint32_t type = ReadU32(b, offset);
    const uint32_t length = ReadU32(b, offset + 4);
    Check(length % 4 == 0 && length >= 12 && length <= b.size() - offset, "block length");
    Check(ReadU32(b, offset + length - 4) == length, "trailing block length");
    switch (type) {
      case 0x0A0D0D0A:
        Check(offset == 0 && ReadU32(b, offset + 8) == 0x1A2B3C4D, "one SHB, first");
        ++sections;
        break;
      case 1:
        ++idbs;
        break;
      case 5:
        ++isbs;
        break;
      case 6: {
        Check(length >= 32, "EPB size");
        const Packet& p = model.packets.at(epbs);
        Check(ReadU32(b, offset + 20) == p.captured, "EPB captured length");
        Check(ReadU32(b, offset + 24) == p.original, "EPB original length");
        Check(32 + p.captured <= length, "EPB data inside the block");
        Check(
            p.captured == 0 || std::memcmp(b.data() + offset + 28, p.data.data(), p.captured) == 0,
            "EPB data");
        ++epbs;
        break;
      }
      default:
        Check(false, "known block type");
    }
    offset += length;
  }
  Check(sections == 1, "one section");
  Check(idbs == model.interfaces.size(), "one IDB per interface");
  Check(epbs == model.packets.size(), "one EPB per packet");
  Check(isbs == model.statistics, "one ISB per statistics call");
}

// libpcap 1.10.3 reads a pcapng file only if every interface has the same link type and
// (adjusted) snaplen. It also compares a later IDB's LINKTYPE_ value with the first one's DLT_
// value (sf-pcapng.c, still so in 1.10.5), so two IDBs of a link type whose DLT_ differs
// (LINKTYPE_RAW 101 = DLT_RAW 12 on Linux) are refused: ReadBack checks that once it knows the
// DLT_.
bool ReadableByLibpcap(const Model& model) {
  if (model.sink_failed || model.interfaces.empty()) return false;
  const InterfaceInfo& first = model.interfaces.front();
  for (const InterfaceInfo& i : model.interfaces) {
    if (i.link_type != first.link_type || (!model.pcap && i.snaplen != first.snaplen)) {
      return false;
    }
  }
  return true;
}

// libpcap 1.10.3's max_snaplen_for_dlt() (pcap-common.c).
uint32_t MaxSnaplenForDlt(int dlt) {
  switch (dlt) {
    case DLT_DBUS:
      return 128 * 1024 * 1024;
    case DLT_EBHSCR:
      return 8 * 1024 * 1024;
    case DLT_USBPCAP:
      return 1024 * 1024;
    default:
      return 262144;
  }
}

void ReadBack(const Model& model) {
  if (!ReadableByLibpcap(model)) return;
  FILE* file = fmemopen(const_cast<char*>(model.bytes.data()), model.bytes.size(), "rb");
  Check(file != nullptr, "fmemopen");
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  // pcap_fopen_offline takes the FILE and closes it with the handle.
  pcap_t* p = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (p == nullptr) {
    std::fprintf(stderr, "libpcap cannot open the %s output: %s\n", model.pcap ? "pcap" : "pcapng",
                 errbuf);
    std::fclose(file);
    std::abort();
  }
  // The DLT_ libpcap made of the first LINKTYPE_: if they differ, a second IDB is refused.
  if (!model.pcap && model.interfaces.size() > 1 &&
      pcap_datalink(p) != model.interfaces.front().link_type) {
    pcap_close(p);
    return;
  }
  // Records libpcap 1.10.3 refuses (the writers cut packets at a non-zero snaplen only):
  // pcapng, a record longer than the snapshot length, which is the IDB's snaplen, or the link
  // type's maximum when that is 0 or above INT_MAX (savefile.c pcap_adjust_snapshot); pcap, a
  // record longer than the link type's maximum, whatever the header's snaplen (sf-pcap.c).
  const uint32_t limit =
      model.pcap ? MaxSnaplenForDlt(pcap_datalink(p)) : static_cast<uint32_t>(pcap_snapshot(p));
  const uint16_t link_type = model.interfaces.front().link_type;
  size_t index = 0;
  for (;;) {
    struct pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p, &header, &data);
    if (index < model.packets.size() && model.packets[index].captured > limit) {
      Check(rc == PCAP_ERROR, "libpcap refuses a record above its limit");
      break;
    }
    if (rc == PCAP_ERROR_BREAK) break;
    if (rc != 1) {
      std::fprintf(stderr, "libpcap read error at packet %zu: %s\n", index, pcap_geterr(p));
      std::abort();
    }
    Check(index < model.packets.size(), "no more packets than written");
    const Packet& expected = model.packets[index];
    Check(header->caplen == expected.captured, "captured length read back");
    if (link_type != kLinkTypeUsbLinuxMmapped) {
      Check(header->len == expected.original, "original length read back");
    }
    Check(expected.captured == 0 || std::memcmp(data, expected.data.data(), expected.captured) == 0,
          "packet bytes read back");
    if (model.pcap) {
      // pcap: 32-bit seconds (the writer keeps the low 32 bits; libpcap 1.10.3 reads them as a
      // signed 32-bit value), nanoseconds below 10^9.
      Check(static_cast<uint32_t>(header->ts.tv_sec) ==
                static_cast<uint32_t>(expected.timestamp_ns / 1'000'000'000),
            "pcap seconds read back");
    } else {
      Check(static_cast<uint64_t>(header->ts.tv_sec) == expected.timestamp_ns / 1'000'000'000,
            "pcapng seconds read back");
    }
    Check(static_cast<uint64_t>(header->ts.tv_usec) == expected.timestamp_ns % 1'000'000'000,
          "nanoseconds read back");
    ++index;
  }
  pcap_close(p);
}

// The packet's first bytes come from the input, the rest is a pattern that differs per step
// (memcpy in 256-byte pieces: a byte loop is slow under the fuzzer's instrumentation).
void FillPacket(std::vector<uint8_t>& data, const std::vector<uint8_t>& head, uint8_t step) {
  uint8_t pattern[256];
  for (size_t i = 0; i < sizeof(pattern); ++i) pattern[i] = static_cast<uint8_t>(i * 31 + step);
  for (size_t offset = 0; offset < data.size(); offset += sizeof(pattern)) {
    std::memcpy(data.data() + offset, pattern, std::min(sizeof(pattern), data.size() - offset));
  }
  if (!head.empty()) std::memcpy(data.data(), head.data(), head.size());
}

// Packet sizes: mostly small, sometimes around the usual snaplens and libpcap's maximum.
size_t PacketSize(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0:
      return in.ConsumeIntegralInRange<size_t>(262000, 262300);
    case 1:
      return in.ConsumeIntegralInRange<size_t>(65500, 65600);
    default:
      return in.ConsumeIntegralInRange<size_t>(0, 2000);
  }
}

// Mostly a few common values, so that several interfaces often agree and libpcap can read the
// file back; sometimes anything.
uint32_t Snaplen(FuzzedDataProvider& in) {
  static constexpr uint32_t kSnaplens[] = {262144, 262144, 0, 1, 64, 1514, 65535, 262145, 1u << 20};
  if (in.ConsumeIntegralInRange<int>(0, 7) != 0) return in.PickValueInArray(kSnaplens);
  return in.ConsumeIntegral<uint32_t>();
}

// Ethernet, raw IP, Linux cooked v1/v2, radiotap, USB mmapped (libpcap rewrites lengths), a
// user type, D-Bus and USBPcap (larger maximum snaplens), 0 (BSD loopback).
uint16_t LinkType(FuzzedDataProvider& in) {
  static constexpr uint16_t kLinkTypes[] = {1, 1, 101, 113, 276, 127, 220, 147, 231, 249, 0};
  if (in.ConsumeIntegralInRange<int>(0, 7) != 0) return in.PickValueInArray(kLinkTypes);
  return in.ConsumeIntegral<uint16_t>();
}

std::string Text(FuzzedDataProvider& in) {
  if (in.ConsumeIntegralInRange<int>(0, 15) == 0) {
    // Longer than a pcapng option can hold (16-bit length): the writer must cut it.
    return std::string(in.ConsumeIntegralInRange<size_t>(65530, 65600), 'x');
  }
  return in.ConsumeRandomLengthString(64);
}

void Apply(CaptureWriter& writer, Model& model, int op, const InterfaceInfo& info, uint32_t index,
           uint64_t timestamp_ns, uint32_t original, const std::vector<uint8_t>& data,
           const std::string& comment, const InterfaceCounters& counters) {
  switch (op) {
    case 0: {
      const Status s = writer.AddInterface(info);
      const bool other_link_type = model.pcap && !model.interfaces.empty() &&
                                   info.link_type != model.interfaces.front().link_type;
      if (other_link_type) {
        Check(s.code() == StatusCode::kInvalidArgument, "pcap refuses a second link type");
      } else {
        Check(s.ok(), "AddInterface");
        model.interfaces.push_back(info);
      }
      break;
    }
    case 1: {
      const Status s = writer.WritePacket(index, timestamp_ns, original, data, comment);
      if (index >= model.interfaces.size() || data.size() > original) {
        Check(s.code() == StatusCode::kInvalidArgument, "WritePacket refuses");
        break;
      }
      Check(s.ok(), "WritePacket");
      const uint32_t snaplen =
          model.pcap ? model.interfaces.front().snaplen : model.interfaces[index].snaplen;
      const uint32_t captured = Cut(data.size(), snaplen);
      model.packets.push_back(Packet{timestamp_ns, captured, original,
                                     std::vector<uint8_t>(data.begin(), data.begin() + captured)});
      break;
    }
    case 2: {
      const Status s = writer.WriteStatistics(index, counters);
      if (model.pcap) {
        Check(s.ok(), "pcap ignores statistics");
      } else if (index >= model.interfaces.size()) {
        Check(s.code() == StatusCode::kInvalidArgument, "WriteStatistics refuses");
      } else {
        Check(s.ok(), "WriteStatistics");
        ++model.statistics;
      }
      break;
    }
    default: {
      const Status s = writer.Flush();
      if (!s.ok()) {
        Check(s.code() == StatusCode::kUnavailable, "Flush returns the sink's error");
        model.sink_failed = true;
      }
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  FuzzedDataProvider in(input, size);
  // Now and then the sink fails from its n-th write on (a reader that went away).
  const int fail_at =
      in.ConsumeIntegralInRange<int>(0, 15) == 0 ? in.ConsumeIntegralInRange<int>(0, 6) : -1;
  Model pcapng_model, pcap_model;
  pcap_model.pcap = true;
  auto pcapng = capd::capfile::MakePcapngWriter(
      std::make_unique<MemorySink>(&pcapng_model.bytes, fail_at), in.ConsumeRandomLengthString(32));
  auto pcap =
      capd::capfile::MakePcapWriter(std::make_unique<MemorySink>(&pcap_model.bytes, fail_at));

  const uint16_t usual_link_type = LinkType(in);
  const uint32_t usual_snaplen = Snaplen(in);
  for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) {
    // Mostly packets; indices mostly of existing interfaces (the last one is unknown).
    // The first operation adds an interface, so that even short inputs write packets.
    static constexpr int kOps[] = {0, 1, 1, 1, 1, 2, 3, 3};
    const int op = step == 0 ? 0 : in.PickValueInArray(kOps);
    const auto interfaces = static_cast<uint32_t>(pcapng_model.interfaces.size());
    InterfaceInfo info;
    uint32_t index = 0, original = 0;
    uint64_t timestamp_ns = 0;
    std::vector<uint8_t> data;
    std::string comment;
    InterfaceCounters counters;
    switch (op) {
      case 0:
        // Mostly the input's usual link type and snaplen: libpcap reads a pcapng file back
        // only when all its interfaces agree on both.
        if (in.ConsumeIntegralInRange<int>(0, 7) != 0) {
          info.link_type = usual_link_type;
          info.snaplen = usual_snaplen;
        } else {
          info.link_type = LinkType(in);
          info.snaplen = Snaplen(in);
        }
        info.name = Text(in);
        info.description = Text(in);
        info.filter = in.ConsumeBool() ? Text(in) : std::string();
        info.os = in.ConsumeRandomLengthString(16);
        break;
      case 1: {
        index = in.ConsumeIntegralInRange<uint32_t>(0, interfaces);
        timestamp_ns = in.ConsumeIntegral<uint64_t>();
        data.resize(PacketSize(in));
        // Leading bytes from the input, the rest a pattern that differs per packet.
        const std::vector<uint8_t> head =
            in.ConsumeBytes<uint8_t>(data.size() < 64 ? data.size() : 64);
        FillPacket(data, head, static_cast<uint8_t>(step));
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
          case 0:
            original = static_cast<uint32_t>(data.size());
            break;
          case 1:
            original = static_cast<uint32_t>(data.size()) + in.ConsumeIntegral<uint16_t>();
            break;
          case 2:
            original = in.ConsumeIntegral<uint32_t>();  // may be below the captured length
            break;
          default:
            original = UINT32_MAX;
            break;
        }
        comment = in.ConsumeBool() ? Text(in) : std::string();
        break;
      }
      case 2:
        index = in.ConsumeIntegralInRange<uint32_t>(0, interfaces);
        counters.start_ns = in.ConsumeIntegral<uint64_t>();
        counters.end_ns = in.ConsumeIntegral<uint64_t>();
        counters.received = in.ConsumeIntegral<uint64_t>();
        counters.agent_drops = in.ConsumeIntegralInRange<uint64_t>(0, 3);
        counters.comment = in.ConsumeBool() ? Text(in) : std::string();
        break;
      default:
        break;
    }
    Apply(*pcapng, pcapng_model, op, info, index, timestamp_ns, original, data, comment, counters);
    Apply(*pcap, pcap_model, op, info, index, timestamp_ns, original, data, comment, counters);
  }
  if (!pcapng->Flush().ok()) pcapng_model.sink_failed = true;
  if (!pcap->Flush().ok()) pcap_model.sink_failed = true;
  if (!pcapng_model.sink_failed) CheckPcapngStructure(pcapng_model);
  ReadBack(pcapng_model);
  ReadBack(pcap_model);
  return 0;
}
