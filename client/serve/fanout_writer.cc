#include "client/serve/fanout_writer.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace capd::client {
namespace {

// The nanosecond variant of the pcap magic (libpcap >= 1.5, Wireshark >= 1.8).
constexpr uint32_t kNanosecondMagic = 0xa1b23c4d;
constexpr uint64_t kNanosPerSecond = 1'000'000'000;

template <typename T>
void Append(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

class PcapFanoutWriter final : public CaptureWriter {
 public:
  explicit PcapFanoutWriter(PcapFanout& fanout) : fanout_(fanout) {}

  Status AddInterface(const InterfaceInfo& info) override {
    if (interface_count_ == 0) {
      link_type_ = info.link_type;
      snaplen_ = info.snaplen;
      // Host byte order, as the pcap writer: readers tell the order from the magic.
      Append<uint32_t>(header_, kNanosecondMagic);
      Append<uint16_t>(header_, 2);
      Append<uint16_t>(header_, 4);
      Append<int32_t>(header_, 0);   // thiszone: timestamps are UTC
      Append<uint32_t>(header_, 0);  // sigfigs
      Append<uint32_t>(header_, snaplen_);
      Append<uint32_t>(header_, link_type_);
    } else if (info.link_type != link_type_) {
      return InvalidArgument("interface " + info.name + " has link type " +
                             std::to_string(info.link_type) + " but this pcap stream has " +
                             std::to_string(link_type_) +
                             ": a pcap stream (PCAP-over-IP) holds one link type");
    }
    ++interface_count_;
    return Status::Ok();
  }

  using CaptureWriter::WritePacket;
  // pcap records have no options: a comment is not kept.
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view /*comment*/) override {
    if (interface_index >= interface_count_) {
      return InvalidArgument("unknown interface index " + std::to_string(interface_index));
    }
    if (data.size() > original_length) {
      return InvalidArgument("captured length " + std::to_string(data.size()) +
                             " exceeds the original length " + std::to_string(original_length));
    }
    // A later interface may have a larger snaplen than the header says: keep the first bytes.
    const uint32_t captured =
        snaplen_ != 0 && data.size() > snaplen_ ? snaplen_ : static_cast<uint32_t>(data.size());
    std::string record;
    record.reserve(16 + captured);
    // ts_sec is 32 bits unsigned: good until 2106.
    Append<uint32_t>(record, static_cast<uint32_t>(timestamp_ns / kNanosPerSecond));
    Append<uint32_t>(record, static_cast<uint32_t>(timestamp_ns % kNanosPerSecond));
    Append<uint32_t>(record, captured);
    Append<uint32_t>(record, original_length);
    record.append(reinterpret_cast<const char*>(data.data()), captured);
    pending_.push_back(std::make_shared<const std::string>(std::move(record)));
    return Status::Ok();
  }

  Status WriteStatistics(uint32_t, const InterfaceCounters&) override {
    return Status::Ok();  // pcap has no place for statistics
  }

  Status Flush() override {
    if (header_.empty() && pending_.empty()) return Status::Ok();
    fanout_.Publish(std::move(header_), std::move(pending_));
    header_.clear();
    pending_.clear();
    return Status::Ok();
  }

  Status Close() override {
    Status flushed = Flush();
    fanout_.EndInput();
    return flushed;
  }

 private:
  PcapFanout& fanout_;
  std::string header_;  // built at the first interface, handed over at the next Flush
  std::vector<PcapFanout::Record> pending_;
  uint32_t interface_count_ = 0;
  uint16_t link_type_ = 0;
  uint32_t snaplen_ = 0;
};

}  // namespace

std::unique_ptr<CaptureWriter> MakePcapFanoutWriter(PcapFanout& fanout) {
  return std::make_unique<PcapFanoutWriter>(fanout);
}

}  // namespace capd::client
