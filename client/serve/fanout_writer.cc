#include "client/serve/fanout_writer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "capfile/pcap_format.h"

namespace capd::client {
namespace {

class PcapFanoutWriter final : public CaptureWriter {
 public:
  explicit PcapFanoutWriter(PcapFanout& fanout) : fanout_(fanout) {}

  Status AddInterface(const InterfaceInfo& info) override {
    if (interface_count_ == 0) {
      link_type_ = info.link_type;
      snaplen_ = info.snaplen;
      capfile::pcap::AppendFileHeader(header_, link_type_, snaplen_);
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
    std::string record;
    record.reserve(capfile::pcap::kRecordHeaderBytes + data.size());
    CAPD_RETURN_IF_ERROR(
        capfile::pcap::AppendRecord(record, timestamp_ns, original_length, data, snaplen_));
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
