#include "client/serve/fanout_writer.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "capfile/pcap_format.h"

namespace capd::client {
namespace {

// The records of one hand-over, built in place: one buffer per Flush, however many packets.
class RecordBuffer {
 public:
  std::string& bytes() { return bytes_; }
  // The record appended since the last End() is whole.
  void End() { ends_.push_back(static_cast<uint32_t>(bytes_.size())); }
  bool empty() const { return ends_.empty(); }
  PcapFanout::Records Take() {
    const size_t size = bytes_.size();
    PcapFanout::Records records{std::make_shared<const std::string>(std::move(bytes_)),
                                std::move(ends_)};
    bytes_ = std::string();
    bytes_.reserve(size);  // the next round is likely as large: grow once, not step by step
    ends_.clear();
    return records;
  }

 private:
  std::string bytes_;
  std::vector<uint32_t> ends_;
};

class PcapFanoutWriter final : public CaptureWriter {
 public:
  explicit PcapFanoutWriter(PcapFanout& fanout) : fanout_(fanout) {}

  Status AddInterface(const InterfaceInfo& info) override {
    if (interface_count_ == 0) {
      link_type_ = info.link_type;
      snaplen_ = info.snaplen;
      capfile::pcap::AppendFileHeader(header_, link_type_, snaplen_);
    } else {
      CAPD_RETURN_IF_ERROR(
          capfile::pcap::CheckOneLinkType(info.name, info.link_type, link_type_, "stream"));
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
    CAPD_RETURN_IF_ERROR(capfile::pcap::AppendRecord(records_.bytes(), timestamp_ns,
                                                     original_length, data, snaplen_));
    records_.End();
    return Status::Ok();
  }

  Status WriteStatistics(uint32_t, const InterfaceCounters&) override {
    return Status::Ok();  // pcap has no place for statistics
  }

  Status Flush() override {
    if (header_.empty() && records_.empty()) return Status::Ok();
    fanout_.Publish(std::move(header_), records_.empty() ? PcapFanout::Records{} : records_.Take());
    header_.clear();
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
  RecordBuffer records_;
  uint32_t interface_count_ = 0;
  uint16_t link_type_ = 0;
  uint32_t snaplen_ = 0;
};

// Collects what the pcapng writer flushes.
class StringSink final : public ByteSink {
 public:
  explicit StringSink(std::string& out) : out_(out) {}
  Status Write(std::string_view bytes) override {
    out_.append(bytes);
    return Status::Ok();
  }

 private:
  std::string& out_;
};

// capfile's pcapng writer, its output cut into blocks at each Flush: Enhanced Packet Blocks are
// records, the section header and interface descriptions are header. Its blocks are its own,
// well formed (type, total length, ..., total length), so the walk trusts their lengths.
class PcapngFanoutWriter final : public CaptureWriter {
 public:
  PcapngFanoutWriter(PcapFanout& fanout, const std::string& application)
      : fanout_(fanout),
        pcapng_(capfile::MakePcapngWriter(std::make_unique<StringSink>(flushed_), application)) {}

  Status AddInterface(const InterfaceInfo& info) override { return pcapng_->AddInterface(info); }

  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    return pcapng_->WritePacket(interface_index, timestamp_ns, original_length, data, comment);
  }

  Status WriteStatistics(uint32_t, const InterfaceCounters&) override { return Status::Ok(); }

  Status Flush() override {
    CAPD_RETURN_IF_ERROR(pcapng_->Flush());
    if (flushed_.empty()) return Status::Ok();
    constexpr uint32_t kEnhancedPacketBlock = 6;
    std::string header;
    std::vector<uint32_t> ends;
    bool only_packets = true;
    for (size_t at = 0; at + 8 <= flushed_.size();) {
      uint32_t type, length;
      std::memcpy(&type, flushed_.data() + at, sizeof type);
      std::memcpy(&length, flushed_.data() + at + 4, sizeof length);
      if (type != kEnhancedPacketBlock) only_packets = false;
      at += length;
      ends.push_back(static_cast<uint32_t>(at));
    }
    const size_t size = flushed_.size();
    PcapFanout::Records records;
    if (only_packets) {
      // The usual round: the flushed bytes are the records' buffer as they are.
      records = {std::make_shared<const std::string>(std::move(flushed_)), std::move(ends)};
    } else {
      // A new interface (or the section header) among packets: header blocks apart.
      std::string packets;
      std::vector<uint32_t> packet_ends;
      size_t begin = 0;
      for (const uint32_t end : ends) {
        uint32_t type;
        std::memcpy(&type, flushed_.data() + begin, sizeof type);
        std::string& to = type == kEnhancedPacketBlock ? packets : header;
        to.append(flushed_, begin, end - begin);
        if (type == kEnhancedPacketBlock)
          packet_ends.push_back(static_cast<uint32_t>(packets.size()));
        begin = end;
      }
      if (!packet_ends.empty()) {
        records = {std::make_shared<const std::string>(std::move(packets)), std::move(packet_ends)};
      }
    }
    flushed_ = std::string();
    flushed_.reserve(size);
    fanout_.Publish(std::move(header), std::move(records));
    return Status::Ok();
  }

  Status Close() override {
    Status flushed = Flush();
    fanout_.EndInput();
    return flushed;
  }

 private:
  PcapFanout& fanout_;
  std::string flushed_;  // what pcapng_ flushed, until this Flush hands it over
  std::unique_ptr<CaptureWriter> pcapng_;
};

}  // namespace

std::unique_ptr<CaptureWriter> MakePcapFanoutWriter(PcapFanout& fanout) {
  return std::make_unique<PcapFanoutWriter>(fanout);
}

std::unique_ptr<CaptureWriter> MakePcapngFanoutWriter(PcapFanout& fanout,
                                                      const std::string& application) {
  return std::make_unique<PcapngFanoutWriter>(fanout, application);
}

}  // namespace capd::client
