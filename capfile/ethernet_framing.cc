#include "capfile/ethernet_framing.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace capd::capfile {
namespace {

constexpr uint16_t kLinkTypeEthernet = 1;
constexpr uint16_t kLinkTypeRaw = 101;
constexpr uint16_t kLinkTypeIpv4 = 228;
constexpr uint16_t kLinkTypeIpv6 = 229;

class EthernetFraming final : public CaptureWriter {
 public:
  EthernetFraming(std::unique_ptr<CaptureWriter> inner, SnaplenRaise raise)
      : owned_(std::move(inner)), inner_(owned_.get()), raise_(raise) {}
  EthernetFraming(CaptureWriter& inner, SnaplenRaise raise) : inner_(&inner), raise_(raise) {}

  Status AddInterface(const InterfaceInfo& info) override {
    const bool bare_ip = info.link_type == kLinkTypeRaw || info.link_type == kLinkTypeIpv4 ||
                         info.link_type == kLinkTypeIpv6;
    if (!bare_ip) {
      InterfaceInfo same = info;
      if (raise_ == SnaplenRaise::kEveryInterface && same.snaplen != 0) {
        same.snaplen += kMadeUpEthernetHeaderLength;
      }
      CAPD_RETURN_IF_ERROR(inner_->AddInterface(same));
      framed_.push_back(false);
      return Status::Ok();
    }
    InterfaceInfo ethernet = info;
    ethernet.link_type = kLinkTypeEthernet;
    if (ethernet.snaplen != 0) ethernet.snaplen += kMadeUpEthernetHeaderLength;
    CAPD_RETURN_IF_ERROR(inner_->AddInterface(ethernet));
    framed_.push_back(true);
    return Status::Ok();
  }

  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    if (interface_index >= framed_.size() || !framed_[interface_index]) {
      return inner_->WritePacket(interface_index, timestamp_ns, original_length, data, comment);
    }
    const uint8_t version = data.empty() ? 0 : data[0] >> 4;
    const uint16_t ethertype = version == 6 ? 0x86DD : 0x0800;
    frame_.assign(kMadeUpEthernetHeaderLength, 0);  // both addresses 00:00:00:00:00:00
    frame_[12] = static_cast<uint8_t>(ethertype >> 8);
    frame_[13] = static_cast<uint8_t>(ethertype & 0xff);
    frame_.insert(frame_.end(), data.begin(), data.end());
    return inner_->WritePacket(interface_index, timestamp_ns,
                               original_length + static_cast<uint32_t>(kMadeUpEthernetHeaderLength),
                               frame_, comment);
  }

  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    return inner_->WriteStatistics(interface_index, counters);
  }
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    return inner_->WriteDecryptionSecrets(secrets_type, secrets);
  }
  Status Flush() override { return inner_->Flush(); }
  Status Tick(uint64_t now_ns) override { return inner_->Tick(now_ns); }
  Status Close() override { return inner_->Close(); }

 private:
  std::unique_ptr<CaptureWriter> owned_;  // null when the caller keeps the inner writer
  CaptureWriter* inner_;
  const SnaplenRaise raise_;
  std::vector<bool> framed_;    // by interface index: its packets get the made-up header
  std::vector<uint8_t> frame_;  // reused: header and packet, handed to inner_ at once
};

}  // namespace

std::unique_ptr<CaptureWriter> FrameBareIpAsEthernet(std::unique_ptr<CaptureWriter> inner,
                                                     SnaplenRaise raise) {
  return std::make_unique<EthernetFraming>(std::move(inner), raise);
}

std::unique_ptr<CaptureWriter> FrameBareIpAsEthernet(CaptureWriter& inner, SnaplenRaise raise) {
  return std::make_unique<EthernetFraming>(inner, raise);
}

}  // namespace capd::capfile
