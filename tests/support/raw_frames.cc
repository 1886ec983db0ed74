#include "tests/support/raw_frames.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/support/test_network.h"

namespace capd::test {
namespace {

void Put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

StatusOr<std::string> Ipv4Bytes(const std::string& text) {
  in_addr addr{};
  if (::inet_pton(AF_INET, text.c_str(), &addr) != 1) {
    return InvalidArgument("not an IPv4 address: " + text);
  }
  return std::string(reinterpret_cast<const char*>(&addr), 4);
}

// The interface's index as the socket's namespace knows it.
StatusOr<int> InterfaceIndex(int fd, const std::string& interface) {
  ifreq request{};
  if (interface.size() >= sizeof request.ifr_name)
    return InvalidArgument("interface name too long");
  std::memcpy(request.ifr_name, interface.c_str(), interface.size() + 1);
  if (::ioctl(fd, SIOCGIFINDEX, &request) != 0) {
    return Internal("ioctl(SIOCGIFINDEX, " + interface + "): " + strerror(errno));
  }
  return request.ifr_ifindex;
}

}  // namespace

StatusOr<MacAddress> ParseMac(std::string_view text) {
  unsigned b[6];
  const std::string s(text);
  if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) !=
      6) {
    return InvalidArgument("not a MAC address: " + s);
  }
  MacAddress mac;
  for (unsigned byte : b) mac.push_back(static_cast<char>(byte));
  return mac;
}

std::string EthernetHeader(const MacAddress& dst, const MacAddress& src, uint16_t ether_type) {
  std::string out = dst + src;
  Put16(out, ether_type);
  return out;
}

std::string Ipv4Packet(const Ipv4Fields& fields, std::string_view payload) {
  std::string h;
  h.push_back(0x45);
  h.push_back(0);
  Put16(h, static_cast<uint16_t>(fields.total_length >= 0 ? fields.total_length
                                                          : 20 + payload.size()));
  Put16(h, fields.id);
  Put16(h, fields.flags_fragment);
  h.push_back(static_cast<char>(fields.ttl));
  h.push_back(static_cast<char>(fields.protocol));
  Put16(h, 0);  // checksum, below
  auto src = Ipv4Bytes(fields.src);
  auto dst = Ipv4Bytes(fields.dst);
  // A test passes literal addresses; a typo should be loud, not a 0.0.0.0 packet.
  if (!src.ok() || !dst.ok()) std::abort();
  h += src.value() + dst.value();
  uint32_t sum = 0;
  for (size_t i = 0; i < h.size(); i += 2) {
    sum += static_cast<uint32_t>(static_cast<uint8_t>(h[i]) << 8 | static_cast<uint8_t>(h[i + 1]));
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  const uint16_t checksum = static_cast<uint16_t>(~sum);
  h[10] = static_cast<char>(checksum >> 8);
  h[11] = static_cast<char>(checksum & 0xff);
  return h + std::string(payload);
}

std::string UdpDatagram(uint16_t src_port, uint16_t dst_port, std::string_view payload,
                        int length) {
  std::string h;
  Put16(h, src_port);
  Put16(h, dst_port);
  Put16(h, static_cast<uint16_t>(length >= 0 ? length : 8 + payload.size()));
  Put16(h, 0);
  return h + std::string(payload);
}

std::string VxlanHeader(uint32_t vni, uint8_t flags, uint8_t next_protocol) {
  std::string h(8, '\0');
  h[0] = static_cast<char>(flags);
  h[3] = static_cast<char>(next_protocol);
  h[4] = static_cast<char>(vni >> 16);
  h[5] = static_cast<char>(vni >> 8);
  h[6] = static_cast<char>(vni);
  return h;
}

std::string GeneveHeader(uint32_t vni, uint16_t protocol_type,
                         const std::vector<GeneveOption>& options, uint8_t version) {
  std::string body;
  for (const GeneveOption& o : options) {
    Put16(body, o.option_class);
    body.push_back(static_cast<char>(o.type));
    body.push_back(static_cast<char>(o.data.size() / 4));  // length in 4-byte words
    body += o.data;
  }
  std::string h;
  h.push_back(static_cast<char>(version << 6 | (body.size() / 4)));
  h.push_back(0);
  Put16(h, protocol_type);
  h.push_back(static_cast<char>(vni >> 16));
  h.push_back(static_cast<char>(vni >> 8));
  h.push_back(static_cast<char>(vni));
  h.push_back(0);
  return h + body;
}

std::string BigEndian(uint64_t value, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>(value >> (8 * i)));
  return out;
}

StatusOr<UniqueFd> OpenPacketSocketIn(const std::string& netns, const std::string& interface) {
  auto opened = OpenSocketIn(netns, AF_PACKET, SOCK_RAW);
  if (!opened.ok()) return opened.status();
  UniqueFd fd = std::move(opened).value();
  auto index = InterfaceIndex(fd.get(), interface);
  if (!index.ok()) return index.status();
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_ifindex = index.value();
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return Internal("bind(AF_PACKET, " + interface + "): " + strerror(errno));
  }
  return fd;
}

Status SendFrame(int fd, std::string_view frame) {
  const ssize_t n = ::send(fd, frame.data(), frame.size(), 0);
  if (n != static_cast<ssize_t>(frame.size())) {
    return Internal("send(AF_PACKET, " + std::to_string(frame.size()) +
                    " bytes): " + (n < 0 ? strerror(errno) : "short write"));
  }
  return Status::Ok();
}

StatusOr<MacAddress> InterfaceMac(const std::string& netns, const std::string& interface) {
  auto opened = OpenSocketIn(netns, AF_INET, SOCK_DGRAM);
  if (!opened.ok()) return opened.status();
  ifreq request{};
  if (interface.size() >= sizeof request.ifr_name)
    return InvalidArgument("interface name too long");
  std::memcpy(request.ifr_name, interface.c_str(), interface.size() + 1);
  if (::ioctl(opened.value().get(), SIOCGIFHWADDR, &request) != 0) {
    return Internal("ioctl(SIOCGIFHWADDR, " + interface + "): " + strerror(errno));
  }
  return MacAddress(request.ifr_hwaddr.sa_data, 6);
}

}  // namespace capd::test
