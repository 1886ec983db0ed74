#include "tests/support/capture_file.h"

#include <pcap/pcap.h>

#include <cstring>
#include <fstream>
#include <memory>

namespace capd::test {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

uint32_t Le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}
uint16_t Le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint16_t Be16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

StatusOr<std::vector<CapturedPacket>> ReadCapture(const std::filesystem::path& path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle handle(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!handle) return Internal("pcap_open_offline(" + path.string() + "): " + errbuf);
  const int linktype = pcap_datalink(handle.get());
  std::vector<CapturedPacket> packets;
  while (true) {
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    const int r = pcap_next_ex(handle.get(), &header, &data);
    if (r == PCAP_ERROR_BREAK) break;  // end of file
    if (r != 1) {
      return Internal("pcap_next_ex(" + path.string() + ") after " +
                      std::to_string(packets.size()) + " packets: " + pcap_geterr(handle.get()));
    }
    CapturedPacket p;
    p.ts_ns = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
              static_cast<uint64_t>(header->ts.tv_usec);  // nanoseconds at NANO precision
    p.caplen = header->caplen;
    p.len = header->len;
    p.bytes.assign(reinterpret_cast<const char*>(data), header->caplen);
    p.linktype = linktype;
    packets.push_back(std::move(p));
  }
  return packets;
}

StatusOr<bool> MatchesFilter(const CapturedPacket& packet, const std::string& filter) {
  PcapHandle dead(pcap_open_dead(packet.linktype, 262144));
  if (!dead) return Internal("pcap_open_dead failed");
  bpf_program program{};
  if (pcap_compile(dead.get(), &program, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return InvalidArgument("pcap_compile(" + filter + "): " + pcap_geterr(dead.get()));
  }
  pcap_pkthdr header{};
  header.caplen = packet.caplen;
  header.len = packet.len;
  const bool match = pcap_offline_filter(&program, &header,
                                         reinterpret_cast<const u_char*>(packet.bytes.data())) != 0;
  pcap_freecode(&program);
  return match;
}

std::optional<uint32_t> FileMagic(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[4];
  if (!in.read(reinterpret_cast<char*>(b), 4)) return std::nullopt;
  return Le32(b);
}

StatusOr<std::vector<uint8_t>> PcapngTsresols(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto* data = reinterpret_cast<const unsigned char*>(file.data());
  constexpr uint32_t kShb = 0x0a0d0d0a;
  constexpr uint32_t kIdb = 1;
  if (file.size() < 12 || Le32(data) != kShb)
    return InvalidArgument(path.string() + ": not pcapng");
  if (Le32(data + 8) != 0x1a2b3c4d) {
    return InvalidArgument(path.string() + ": big-endian pcapng is not handled here");
  }
  std::vector<uint8_t> resolutions;
  size_t offset = 0;
  while (offset + 12 <= file.size()) {
    const uint32_t type = Le32(data + offset);
    const uint32_t length = Le32(data + offset + 4);
    if (length < 12 || length % 4 != 0 || offset + length > file.size()) {
      return InvalidArgument(path.string() + ": bad block length at offset " +
                             std::to_string(offset));
    }
    if (type == kIdb) {
      // type, length, linktype(2), reserved(2), snaplen(4), options..., length.
      uint8_t tsresol = 6;
      size_t opt = offset + 16;
      const size_t end = offset + length - 4;
      while (opt + 4 <= end) {
        const uint16_t code = Le16(data + opt);
        const uint16_t opt_len = Le16(data + opt + 2);
        if (code == 0) break;  // opt_endofopt
        if (opt + 4 + opt_len > end) return InvalidArgument(path.string() + ": bad IDB option");
        if (code == 9 && opt_len >= 1) tsresol = data[opt + 4];
        opt += 4 + ((opt_len + 3u) & ~3u);
      }
      resolutions.push_back(tsresol);
    }
    offset += length;
  }
  return resolutions;
}

std::optional<std::string_view> UdpPayload(const CapturedPacket& packet, uint16_t* dst_port) {
  if (packet.linktype != DLT_EN10MB) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(packet.bytes.data());
  const size_t n = packet.bytes.size();
  constexpr size_t kEthernet = 14;
  if (n < kEthernet + 20 || Be16(p + 12) != 0x0800) return std::nullopt;
  const unsigned char* ip = p + kEthernet;
  const size_t ihl = (ip[0] & 0x0f) * 4u;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || n < kEthernet + ihl + 8) return std::nullopt;
  const unsigned char* udp = ip + ihl;
  if (dst_port != nullptr) *dst_port = Be16(udp + 2);
  const size_t start = kEthernet + ihl + 8;
  return std::string_view(packet.bytes).substr(start);
}

}  // namespace capd::test
