// Classic pcap encoder with nanosecond timestamps, for tools that do not read pcapng. The
// format has one link type and snaplen per file and no statistics.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "capfile/capture_writer.h"
#include "capfile/encoding.h"
#include "capfile/pcap_format.h"

namespace capd::capfile {
namespace {

class PcapWriter final : public CaptureWriter {
 public:
  explicit PcapWriter(std::unique_ptr<ByteSink> sink) : sink_(std::move(sink)) {
    buffer_.reserve(internal::kInitialBufferBytes);
  }

  // The first interface fixes the file's link type and snaplen. A rejected interface takes no
  // index, so the caller should stop rather than carry on with shifted indices.
  Status AddInterface(const InterfaceInfo& info) override {
    if (interface_count_ == 0) {
      link_type_ = info.link_type;
      snaplen_ = info.snaplen;
      pcap::AppendFileHeader(buffer_, link_type_, snaplen_);
    } else {
      CAPD_RETURN_IF_ERROR(pcap::CheckOneLinkType(info.name, info.link_type, link_type_, "file"));
    }
    ++interface_count_;
    return Status::Ok();
  }

  using CaptureWriter::WritePacket;
  // pcap records have no options: a comment is not kept.
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view /*comment*/) override {
    if (interface_index >= interface_count_) {
      return InvalidArgument("unknown interface index " + std::to_string(interface_index) + " (" +
                             std::to_string(interface_count_) + " interfaces added)");
    }
    // A later interface may have a larger snaplen than the file header says: the header's wins.
    return pcap::AppendRecord(buffer_, timestamp_ns, original_length, data, snaplen_);
  }

  Status WriteStatistics(uint32_t /*interface_index*/,
                         const InterfaceCounters& /*counters*/) override {
    return Status::Ok();  // pcap has no place for statistics
  }

  Status Flush() override {
    if (buffer_.empty()) return Status::Ok();
    Status status = sink_->Write(buffer_);
    // Cleared even on failure: the sink may have taken part of the bytes (see pcapng_writer.cc).
    buffer_.clear();
    return status;
  }

 private:
  std::unique_ptr<ByteSink> sink_;
  std::string buffer_;
  uint32_t interface_count_ = 0;
  uint16_t link_type_ = 0;
  uint32_t snaplen_ = 0;
};

}  // namespace

std::unique_ptr<CaptureWriter> MakePcapWriter(std::unique_ptr<ByteSink> sink) {
  return std::make_unique<PcapWriter>(std::move(sink));
}

}  // namespace capd::capfile
