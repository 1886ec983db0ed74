#include "agent/capture/interfaces.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/utsname.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

namespace capd::agent {
namespace {

std::string AddressText(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address == nullptr) return {};
  if (address->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text, sizeof text);
  } else if (address->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
              sizeof text);
  }
  return text;
}

}  // namespace

StatusOr<std::vector<InterfaceSummary>> ListCaptureInterfaces() {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_if_t* devices = nullptr;
  if (pcap_findalldevs(&devices, errbuf) != 0) {
    return Internal(std::string("pcap_findalldevs: ") + errbuf);
  }
  std::vector<InterfaceSummary> result;
  for (pcap_if_t* d = devices; d != nullptr; d = d->next) {
    InterfaceSummary summary;
    summary.name = d->name;
    if (d->description != nullptr) summary.description = d->description;
    summary.up = (d->flags & PCAP_IF_UP) != 0;
    summary.running = (d->flags & PCAP_IF_RUNNING) != 0;
    summary.loopback = (d->flags & PCAP_IF_LOOPBACK) != 0;
    for (pcap_addr_t* a = d->addresses; a != nullptr; a = a->next) {
      std::string text = AddressText(a->addr);
      if (!text.empty()) summary.addresses.push_back(std::move(text));
    }
    result.push_back(std::move(summary));
  }
  pcap_freealldevs(devices);
  return result;
}

StatusOr<std::string> DefaultRouteInterface() {
  // /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, host order)
  std::ifstream route("/proc/net/route");
  std::string line;
  std::getline(route, line);  // header
  std::string best;
  uint64_t best_metric = std::numeric_limits<uint64_t>::max();
  while (std::getline(route, line)) {
    std::istringstream fields(line);
    std::string iface, destination, gateway, flags, refcnt, use, metric, mask;
    if (!(fields >> iface >> destination >> gateway >> flags >> refcnt >> use >> metric >> mask)) {
      continue;
    }
    const bool route_up = (std::stoul(flags, nullptr, 16) & 0x1) != 0;
    if (destination == "00000000" && mask == "00000000" && route_up) {
      const uint64_t m = std::stoull(metric);
      if (m < best_metric) best = iface, best_metric = m;
    }
  }
  if (!best.empty()) return best;
  // /proc/net/ipv6_route: dest dest_len src src_len next_hop metric refcnt use flags iface
  std::ifstream route6("/proc/net/ipv6_route");
  while (std::getline(route6, line)) {
    std::istringstream fields(line);
    std::string dest, dest_len, src, src_len, next_hop, metric, refcnt, use, flags, iface;
    if (!(fields >> dest >> dest_len >> src >> src_len >> next_hop >> metric >> refcnt >> use >>
          flags >> iface)) {
      continue;
    }
    if (dest == std::string(32, '0') && dest_len == "00" && iface != "lo") {
      const uint64_t m = std::stoull(metric, nullptr, 16);
      if (m < best_metric) best = iface, best_metric = m;
    }
  }
  if (!best.empty()) return best;
  return NotFound("this host has no default route: name an interface (capctl stream -i IFACE)");
}

std::string OperatingSystemDescription() {
  utsname u{};
  if (uname(&u) != 0) return "Linux";
  return std::string(u.sysname) + " " + u.release;
}

}  // namespace capd::agent
