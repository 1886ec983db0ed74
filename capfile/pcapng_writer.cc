// pcapng encoder (draft-ietf-opsawg-pcapng): one section (SHB), one IDB per interface, an EPB
// per packet and an ISB per statistics report, all built in one reusable buffer and handed to
// the sink on Flush.

#include <sys/utsname.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "capfile/capture_writer.h"
#include "capfile/encode_buffer.h"
#include "capfile/encoding.h"

namespace capd::capfile {
namespace {

using internal::AppendHost;

constexpr uint32_t kSectionHeaderBlock = 0x0A0D0D0A;
constexpr uint32_t kInterfaceDescriptionBlock = 1;
constexpr uint32_t kInterfaceStatisticsBlock = 5;
constexpr uint32_t kEnhancedPacketBlock = 6;
constexpr uint32_t kDecryptionSecretsBlock = 0x0000000A;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;

// The 28 bytes before an option-less EPB's packet bytes: type, total length, interface,
// timestamp (high, low), captured and original length.
using EnhancedPacketHeader = std::array<uint32_t, 7>;
EnhancedPacketHeader MakeEnhancedPacketHeader(uint32_t total, uint32_t interface_index,
                                              uint64_t timestamp_ns, uint32_t captured,
                                              uint32_t original_length) {
  return {kEnhancedPacketBlock,
          total,
          interface_index,
          static_cast<uint32_t>(timestamp_ns >> 32),
          static_cast<uint32_t>(timestamp_ns),
          captured,
          original_length};
}

constexpr uint16_t kOptEndOfOpt = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kShbOs = 3;
constexpr uint16_t kShbUserAppl = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTsResol = 9;
constexpr uint16_t kIfFilter = 11;
constexpr uint16_t kIfOs = 12;
constexpr uint16_t kIsbStartTime = 2;
constexpr uint16_t kIsbEndTime = 3;
constexpr uint16_t kIsbIfRecv = 4;
constexpr uint16_t kIsbIfDrop = 5;
constexpr uint16_t kIsbOsDrop = 7;
constexpr uint16_t kIsbUsrDeliv = 8;

// if_tsresol: a value below 128 is a power of ten; 9 = nanoseconds, the agent's timestamps.
constexpr uint8_t kNanosecondResolution = 9;
// if_filter: the first octet says what follows; 0 = a libpcap filter string.
constexpr char kLibpcapFilter = 0;

std::string OsDescription() {
  struct utsname u;
  if (::uname(&u) != 0) return {};
  return std::string(u.sysname) + " " + u.release;
}

class PcapngWriter final : public CaptureWriter {
 public:
  PcapngWriter(std::unique_ptr<ByteSink> sink, std::string_view application)
      : sink_(std::move(sink)) {
    buffer_.reserve(internal::kInitialBufferBytes);
    AppendSectionHeader(application);
  }

  Status AddInterface(const InterfaceInfo& info) override {
    const size_t start = BeginBlock(kInterfaceDescriptionBlock);
    AppendHost<uint16_t>(buffer_, info.link_type);
    AppendHost<uint16_t>(buffer_, 0);  // reserved
    AppendHost<uint32_t>(buffer_, info.snaplen);
    AppendStringOption(kIfName, info.name);
    AppendStringOption(kIfDescription, info.description);
    const char resolution = static_cast<char>(kNanosecondResolution);
    AppendOption(kIfTsResol, std::string_view(&resolution, 1));
    if (!info.filter.empty()) {
      std::string filter;
      filter.reserve(info.filter.size() + 1);
      filter.push_back(kLibpcapFilter);
      filter += info.filter;
      AppendOption(kIfFilter, filter);
    }
    AppendStringOption(kIfOs, info.os);
    AppendEndOfOptions();  // if_tsresol is always there
    EndBlock(start);
    snaplens_.push_back(info.snaplen);
    return Status::Ok();
  }

  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t original_length,
                     std::span<const uint8_t> data, std::string_view comment) override {
    CAPD_RETURN_IF_ERROR(CheckInterface(interface_index));
    CAPD_RETURN_IF_ERROR(internal::CheckPacketLengths(original_length, data.size()));
    const uint32_t captured = internal::CapturedLength(data.size(), snaplens_[interface_index]);
    if (comment.empty()) {
      AppendBareEnhancedPacket(interface_index, timestamp_ns, original_length,
                               data.first(captured));
      return Status::Ok();
    }
    const size_t start = BeginBlock(kEnhancedPacketBlock);
    AppendHost<uint32_t>(buffer_, interface_index);
    AppendTimestamp(timestamp_ns);
    AppendHost<uint32_t>(buffer_, captured);
    AppendHost<uint32_t>(buffer_, original_length);
    internal::AppendBytes(buffer_, data.first(captured));
    buffer_.append(internal::PaddingTo4(captured), '\0');
    if (!comment.empty()) {
      AppendOption(kOptComment, comment);
      AppendEndOfOptions();
    }
    EndBlock(start);
    return Status::Ok();
  }

  // One check pass, then one buffer growth for the whole run and the blocks copied in; unless
  // the run is lent (data_owner) and has packets over kReferredMinBytes, which are then written
  // by reference, block by block. BM_BatchToPcapng measures this.
  Status WritePackets(uint32_t interface_index, const PacketRun& run) override {
    CAPD_RETURN_IF_ERROR(CheckInterface(interface_index));
    const uint32_t snaplen = snaplens_[interface_index];
    size_t total = 0;
    bool small = true;
    for (size_t k = 0; k < run.count; ++k) {
      CAPD_RETURN_IF_ERROR(
          internal::CheckPacketLengths(run.original_length[k], run.captured_length[k]));
      const uint32_t captured = internal::CapturedLength(run.captured_length[k], snaplen);
      total += kEnhancedPacketOverhead + captured + internal::PaddingTo4(captured);
      small = small && captured <= kReferredMinBytes;
    }
    const uint8_t* data = run.data;
    if (!small && run.data_owner != nullptr) {
      bool referred = false;
      for (size_t k = 0; k < run.count; ++k) {
        const uint32_t captured = internal::CapturedLength(run.captured_length[k], snaplen);
        if (captured > kReferredMinBytes) {
          AppendReferredEnhancedPacket(interface_index, run.timestamp_ns[k], run.original_length[k],
                                       {data, captured});
          referred = true;
        } else {
          AppendBareEnhancedPacket(interface_index, run.timestamp_ns[k], run.original_length[k],
                                   {data, captured});
        }
        data += run.captured_length[k];
      }
      if (referred) owners_.push_back(run.data_owner);
      return Status::Ok();
    }
    char* block = buffer_.GrowUninitialized(total);
    for (size_t k = 0; k < run.count; ++k) {
      const uint32_t captured = internal::CapturedLength(run.captured_length[k], snaplen);
      const auto length = static_cast<uint32_t>(kEnhancedPacketOverhead + captured +
                                                internal::PaddingTo4(captured));
      const uint64_t timestamp_ns = run.timestamp_ns[k];
      const EnhancedPacketHeader header = MakeEnhancedPacketHeader(
          length, interface_index, timestamp_ns, captured, run.original_length[k]);
      WriteEnhancedPacket(block, header, {data, captured});
      block += length;
      data += run.captured_length[k];
    }
    return Status::Ok();
  }

  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    CAPD_RETURN_IF_ERROR(CheckInterface(interface_index));
    const size_t start = BeginBlock(kInterfaceStatisticsBlock);
    AppendHost<uint32_t>(buffer_, interface_index);
    AppendTimestamp(counters.end_ns);
    AppendTimestampOption(kIsbStartTime, counters.start_ns);
    AppendTimestampOption(kIsbEndTime, counters.end_ns);
    AppendU64Option(kIsbIfRecv, counters.received);
    AppendU64Option(kIsbIfDrop, counters.interface_drops);
    AppendU64Option(kIsbOsDrop, counters.kernel_drops);
    AppendU64Option(kIsbUsrDeliv, counters.delivered);
    if (counters.agent_drops > 0) {
      // pcapng has no option for drops between the capture and this file (the agent's queue),
      // so they go where Wireshark shows them to a person: a comment.
      AppendOption(kOptComment, "agent queue drops: " + std::to_string(counters.agent_drops));
    }
    AppendStringOption(kOptComment, counters.comment);
    AppendEndOfOptions();
    EndBlock(start);
    return Status::Ok();
  }

  // Block type, length, secrets type, secrets length, the secrets padded to 4, no options,
  // length (draft-ietf-opsawg-pcapng, "Decryption Secrets Block").
  Status WriteDecryptionSecrets(uint32_t secrets_type, std::string_view secrets) override {
    // Kept well below the 32-bit block length; a key log chunk from the agent is KiB.
    if (secrets.size() > (64u << 20)) return InvalidArgument("decryption secrets over 64 MiB");
    const size_t start = BeginBlock(kDecryptionSecretsBlock);
    AppendHost<uint32_t>(buffer_, secrets_type);
    AppendHost<uint32_t>(buffer_, static_cast<uint32_t>(secrets.size()));
    buffer_.append(secrets);
    buffer_.append(internal::PaddingTo4(secrets.size()), '\0');
    EndBlock(start);
    return Status::Ok();
  }

  Status Flush() override {
    if (buffer_.empty()) return Status::Ok();
    Status status;
    if (referred_.empty()) {
      status = sink_->Write(buffer_);
    } else {
      // The buffer up to each referred packet, the packet's own bytes, ..., the buffer's rest.
      pieces_.clear();
      size_t from = 0;
      for (const Referred& r : referred_) {
        pieces_.emplace_back(buffer_.data() + from, r.buffer_offset - from);
        pieces_.emplace_back(reinterpret_cast<const char*>(r.data.data()), r.data.size());
        from = r.buffer_offset;
      }
      pieces_.emplace_back(buffer_.data() + from, buffer_.size() - from);
      status = sink_->WriteGather(pieces_);
    }
    // Cleared even on failure: the sink may have taken part of the bytes, so writing them again
    // would corrupt the file; after a failed Flush the output is incomplete either way.
    buffer_.clear();
    referred_.clear();
    owners_.clear();
    return status;
  }

 private:
  void AppendSectionHeader(std::string_view application) {
    const size_t start = BeginBlock(kSectionHeaderBlock);
    AppendHost<uint32_t>(buffer_, kByteOrderMagic);
    AppendHost<uint16_t>(buffer_, 1);  // major version
    AppendHost<uint16_t>(buffer_, 0);  // minor version
    // Section length -1: not known up front, and the output may be a pipe that cannot seek back.
    AppendHost<int64_t>(buffer_, -1);
    const size_t options_start = buffer_.size();
    AppendStringOption(kShbOs, OsDescription());
    AppendStringOption(kShbUserAppl, application);
    if (buffer_.size() != options_start) AppendEndOfOptions();
    EndBlock(start);
  }

  Status CheckInterface(uint32_t interface_index) const {
    if (interface_index < snaplens_.size()) [[likely]]
      return Status::Ok();
    return UnknownInterface(interface_index);
  }
  [[gnu::cold, gnu::noinline]] Status UnknownInterface(uint32_t interface_index) const {
    return InvalidArgument("unknown interface index " + std::to_string(interface_index) + " (" +
                           std::to_string(snaplens_.size()) + " interfaces added)");
  }

  // A lent packet longer than this is written by reference (AppendReferredEnhancedPacket):
  // below it, copying it into the buffer costs less than a piece of its own in the sink's
  // gather write.
  static constexpr uint32_t kReferredMinBytes = 1024;
  // An EPB without options: a 28-byte header (type, length, interface, timestamp, lengths) and
  // the 4-byte trailing length around the padded packet bytes.
  static constexpr size_t kEnhancedPacketOverhead = 32;
  void AppendBareEnhancedPacket(uint32_t interface_index, uint64_t timestamp_ns,
                                uint32_t original_length, std::span<const uint8_t> data) {
    const auto captured = static_cast<uint32_t>(data.size());
    const size_t padding = internal::PaddingTo4(captured);
    const auto total = static_cast<uint32_t>(32 + captured + padding);
    const EnhancedPacketHeader header =
        MakeEnhancedPacketHeader(total, interface_index, timestamp_ns, captured, original_length);
    // The common EPB, without options: the buffer grows once, uninitialized, and the pieces
    // are copied in. BM_PcapngWrite, ns per packet, three appends -> a zero-filled growth
    // (session 10): 64 B 19.4 -> 12.1, 512 B 24.7 -> 22.4, 1500 B 40.9 -> 46.
    WriteEnhancedPacket(buffer_.GrowUninitialized(total), header, data);
  }

  // Fills an option-less EPB's `header[1]` bytes at `block`, which may hold anything: the
  // header, the packet's bytes, zeros for the padding, the trailing length. Every byte is
  // written once but the padding's (a zero word first, which the rest partly overwrites).
  static void WriteEnhancedPacket(char* block, const EnhancedPacketHeader& header,
                                  std::span<const uint8_t> data) {
    const uint32_t total = header[1];
    const uint32_t zero = 0;
    // The last 4 bytes before the trailer hold the padding (and the packet's last bytes, or
    // for an empty packet the header's, both written after it).
    std::memcpy(block + total - 2 * sizeof(uint32_t), &zero, sizeof(zero));
    std::memcpy(block, header.data(), sizeof(header));
    if (!data.empty()) std::memcpy(block + sizeof(header), data.data(), data.size());
    std::memcpy(block + total - sizeof(total), &total, sizeof(total));
  }

  // The same block as AppendBareEnhancedPacket, but the packet's bytes stay where they are
  // (PacketRun::data_owner keeps them) and go to the sink from there at Flush: one copy less
  // per byte of a large packet (the kernel's copy into the page cache reads them directly).
  void AppendReferredEnhancedPacket(uint32_t interface_index, uint64_t timestamp_ns,
                                    uint32_t original_length, std::span<const uint8_t> data) {
    const auto captured = static_cast<uint32_t>(data.size());
    const size_t padding = internal::PaddingTo4(captured);
    const auto total = static_cast<uint32_t>(kEnhancedPacketOverhead + captured + padding);
    const EnhancedPacketHeader header =
        MakeEnhancedPacketHeader(total, interface_index, timestamp_ns, captured, original_length);
    buffer_.append(reinterpret_cast<const char*>(header.data()), sizeof(header));
    referred_.push_back({buffer_.size(), data});
    char trailer[3 + sizeof(uint32_t)] = {};
    std::memcpy(trailer + padding, &total, sizeof(total));
    buffer_.append(trailer, padding + sizeof(total));
  }

  // A block is type, total length, body, total length. The length is patched in by EndBlock,
  // so a body can be appended piece by piece without being measured first.
  size_t BeginBlock(uint32_t type) {
    const size_t start = buffer_.size();
    AppendHost<uint32_t>(buffer_, type);
    AppendHost<uint32_t>(buffer_, 0);
    return start;
  }

  void EndBlock(size_t start) {
    const auto total = static_cast<uint32_t>(buffer_.size() + sizeof(uint32_t) - start);
    internal::PutHost<uint32_t>(buffer_, start + sizeof(uint32_t), total);
    AppendHost<uint32_t>(buffer_, total);
  }

  void AppendTimestamp(uint64_t timestamp_ns) {
    AppendHost<uint32_t>(buffer_, static_cast<uint32_t>(timestamp_ns >> 32));
    AppendHost<uint32_t>(buffer_, static_cast<uint32_t>(timestamp_ns));
  }

  void AppendOption(uint16_t code, std::string_view value) {
    // The length field is 16 bits; a longer text (only a pathological filter) is cut.
    if (value.size() > UINT16_MAX) value = value.substr(0, UINT16_MAX);
    AppendHost<uint16_t>(buffer_, code);
    AppendHost<uint16_t>(buffer_, static_cast<uint16_t>(value.size()));
    buffer_.append(value);
    buffer_.append(internal::PaddingTo4(value.size()), '\0');
  }

  // Empty texts are left out rather than written as zero-length options.
  void AppendStringOption(uint16_t code, std::string_view value) {
    if (!value.empty()) AppendOption(code, value);
  }

  void AppendU64Option(uint16_t code, uint64_t value) {
    AppendHost<uint16_t>(buffer_, code);
    AppendHost<uint16_t>(buffer_, sizeof(uint64_t));
    AppendHost<uint64_t>(buffer_, value);
  }

  // isb_starttime/isb_endtime use the EPB layout: high 32 bits, then low 32 bits.
  void AppendTimestampOption(uint16_t code, uint64_t timestamp_ns) {
    AppendHost<uint16_t>(buffer_, code);
    AppendHost<uint16_t>(buffer_, sizeof(uint64_t));
    AppendTimestamp(timestamp_ns);
  }

  void AppendEndOfOptions() {
    AppendHost<uint16_t>(buffer_, kOptEndOfOpt);
    AppendHost<uint16_t>(buffer_, 0);
  }

  std::unique_ptr<ByteSink> sink_;
  internal::EncodeBuffer buffer_;
  // Packets written by reference since the last Flush: their bytes belong in the output at
  // `buffer_offset` (between their EPB's header and trailer), in order.
  struct Referred {
    size_t buffer_offset;
    std::span<const uint8_t> data;
  };
  std::vector<Referred> referred_;
  std::vector<std::shared_ptr<const void>> owners_;  // keep referred_'s bytes alive until Flush
  std::vector<std::string_view> pieces_;             // Flush's, kept for its capacity
  std::vector<uint32_t> snaplens_;  // by interface index; its size is the interface count
};

}  // namespace

std::unique_ptr<CaptureWriter> MakePcapngWriter(std::unique_ptr<ByteSink> sink,
                                                std::string application) {
  return std::make_unique<PcapngWriter>(std::move(sink), application);
}

}  // namespace capd::capfile
