// Classic pcap encoder with nanosecond timestamps, for tools that do not read pcapng. The
// format has one link type and snaplen per file and no statistics.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "capfile/capture_writer.h"
#include "capfile/encoding.h"

namespace capd::capfile {
namespace {

using internal::AppendHost;

// The nanosecond variant of the pcap magic (libpcap >= 1.5, Wireshark >= 1.8).
constexpr uint32_t kNanosecondMagic = 0xa1b23c4d;
constexpr uint16_t kVersionMajor = 2;
constexpr uint16_t kVersionMinor = 4;
constexpr uint64_t kNanosPerSecond = 1'000'000'000;

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
      AppendFileHeader();
    } else if (info.link_type != link_type_) {
      return InvalidArgument("interface " + info.name + " has link type " +
                             std::to_string(info.link_type) + " but this pcap file has " +
                             std::to_string(link_type_) +
                             ": a pcap file holds one link type; use pcapng for several");
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
    CAPD_RETURN_IF_ERROR(internal::CheckPacketLengths(original_length, data.size()));
    // A later interface may have a larger snaplen than the file header says.
    const uint32_t captured = internal::CapturedLength(data.size(), snaplen_);
    // ts_sec is 32 bits unsigned: good until 2106.
    AppendHost<uint32_t>(buffer_, static_cast<uint32_t>(timestamp_ns / kNanosPerSecond));
    AppendHost<uint32_t>(buffer_, static_cast<uint32_t>(timestamp_ns % kNanosPerSecond));
    AppendHost<uint32_t>(buffer_, captured);
    AppendHost<uint32_t>(buffer_, original_length);
    internal::AppendBytes(buffer_, data.first(captured));
    return Status::Ok();
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
  void AppendFileHeader() {
    AppendHost<uint32_t>(buffer_, kNanosecondMagic);
    AppendHost<uint16_t>(buffer_, kVersionMajor);
    AppendHost<uint16_t>(buffer_, kVersionMinor);
    AppendHost<int32_t>(buffer_, 0);   // thiszone: timestamps are UTC
    AppendHost<uint32_t>(buffer_, 0);  // sigfigs
    AppendHost<uint32_t>(buffer_, snaplen_);
    AppendHost<uint32_t>(buffer_, link_type_);
  }

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
