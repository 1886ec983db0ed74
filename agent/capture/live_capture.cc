#include "agent/capture/live_capture.h"

#include <linux/filter.h>
#include <net/if_arp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <string_view>

namespace capd::agent {
namespace {

std::string Describe(const char* call, const std::string& interface, const std::string& text) {
  return std::string(call) + "(" + interface + "): " + text;
}

// pcap_activate's error codes to statuses a client can act on.
Status ActivateError(int rc, pcap_t* handle, const std::string& interface) {
  const std::string text = pcap_geterr(handle);
  switch (rc) {
    case PCAP_ERROR_NO_SUCH_DEVICE:
      return NotFound("no such interface: " + interface + " (" + text + ")");
    case PCAP_ERROR_PERM_DENIED:
      return {
          StatusCode::kFailedPrecondition,
          Describe("pcap_activate", interface,
                   "permission denied: " + text + " (capd needs CAP_NET_RAW and CAP_NET_ADMIN)")};
    case PCAP_ERROR_IFACE_NOT_UP:
      return {StatusCode::kFailedPrecondition, "interface " + interface + " is down"};
    default:
      return Internal(
          Describe("pcap_activate", interface, pcap_statustostr(rc) + std::string(": ") + text));
  }
}

// Whether libpcap offers `dlt` for the activated `handle` (pcap_list_datalinks).
bool Offers(pcap_t* handle, int dlt) {
  int* list = nullptr;
  const int n = pcap_list_datalinks(handle, &list);
  const bool offered = n > 0 && std::find(list, list + n, dlt) != list + n;
  if (list != nullptr) pcap_free_datalinks(list);
  return offered;
}

}  // namespace

std::optional<int> ExpectedDatalink(const std::string& interface) {
  // libpcap 1.10.3's "any" device is cooked v1 (DLT_LINUX_SLL, 113) unless asked otherwise
  // (measured: pcap_datalink() after pcap_activate("any")); it offers cooked v2 (276) too, which
  // LiveCapture::Open sets, as tcpdump 4.99 does. Were it not offered, Open's datalink differs
  // from this and the filter is compiled again after opening.
  if (interface == "any") return DLT_LINUX_SLL2;
  if (interface.empty() || interface.find('/') != std::string::npos || interface[0] == '.') {
    return std::nullopt;
  }
  std::ifstream in("/sys/class/net/" + interface + "/type");
  int arphrd = -1;
  if (!(in >> arphrd)) return std::nullopt;
  // pcap-linux.c map_arphrd_to_dlt, the common cases.
  switch (arphrd) {
    case ARPHRD_ETHER:
    case ARPHRD_LOOPBACK:
      return DLT_EN10MB;
    case ARPHRD_NONE:  // tun, WireGuard
      return DLT_RAW;
    case ARPHRD_IEEE80211_RADIOTAP:
      return DLT_IEEE802_11_RADIO;
    default:
      return std::nullopt;
  }
}

std::optional<int> LiveCaptureFactory::ExpectedDatalink(const std::string& interface) const {
  return agent::ExpectedDatalink(interface);
}

StatusOr<std::unique_ptr<CaptureSource>> LiveCaptureFactory::Open(const CaptureConfig& config) {
  auto opened = LiveCapture::Open(config);
  if (!opened.ok()) return opened.status();
  return std::unique_ptr<CaptureSource>(std::move(opened).value());
}

StatusOr<std::unique_ptr<LiveCapture>> LiveCapture::Open(const LiveCaptureConfig& config) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* raw = pcap_create(config.interface.c_str(), errbuf);
  if (raw == nullptr) return Internal(Describe("pcap_create", config.interface, errbuf));
  std::unique_ptr<LiveCapture> capture(new LiveCapture(raw, config.interface));

  // Some of libpcap's setters fail with a status code and no text (pcap_geterr is empty then).
  auto check = [&](int rc, const char* call) -> Status {
    if (rc == 0) return Status::Ok();
    const std::string text = pcap_geterr(raw);
    return Internal(Describe(call, config.interface, text.empty() ? pcap_statustostr(rc) : text));
  };
  CAPD_RETURN_IF_ERROR(check(pcap_set_snaplen(raw, config.snaplen), "pcap_set_snaplen"));
  CAPD_RETURN_IF_ERROR(
      check(pcap_set_promisc(raw, config.promiscuous ? 1 : 0), "pcap_set_promisc"));
  CAPD_RETURN_IF_ERROR(check(pcap_set_timeout(raw, config.block_timeout_ms), "pcap_set_timeout"));
  CAPD_RETURN_IF_ERROR(
      check(pcap_set_buffer_size(raw, config.buffer_bytes), "pcap_set_buffer_size"));
  // Not immediate mode: it falls back to fixed 64 KiB slots, a small ring and per-packet wakeups.
  CAPD_RETURN_IF_ERROR(check(pcap_set_immediate_mode(raw, 0), "pcap_set_immediate_mode"));
  // Nanoseconds where the device has them; nflog, usbmon and dbus have microseconds only.
  if (const int precision = pcap_set_tstamp_precision(raw, PCAP_TSTAMP_PRECISION_NANO);
      precision == PCAP_ERROR_TSTAMP_PRECISION_NOTSUP) {
    capture->nanoseconds_per_tick_ = 1000;
  } else {
    CAPD_RETURN_IF_ERROR(check(precision, "pcap_set_tstamp_precision"));
  }

  const int rc = pcap_activate(raw);
  if (rc < 0) return ActivateError(rc, raw, config.interface);
  if (rc > 0) {
    spdlog::warn("pcap_activate({}): {}: {}", config.interface, pcap_statustostr(rc),
                 pcap_geterr(raw));
  }
  if (pcap_setnonblock(raw, 1, errbuf) != 0) {
    return Internal(Describe("pcap_setnonblock", config.interface, errbuf));
  }
  capture->fd_ = pcap_get_selectable_fd(raw);
  if (capture->fd_ < 0) {
    return Internal(Describe("pcap_get_selectable_fd", config.interface, "no selectable fd"));
  }
  // Cooked v2 names the interface each packet came in on (tcpdump 4.99 sets it for "any" when
  // libpcap lists it; libpcap 1.10.3 opens "any" as cooked v1, which does not).
  if (pcap_datalink(raw) == DLT_LINUX_SLL && Offers(raw, DLT_LINUX_SLL2)) {
    CAPD_RETURN_IF_ERROR(check(pcap_set_datalink(raw, DLT_LINUX_SLL2), "pcap_set_datalink"));
  }
  capture->datalink_ = pcap_datalink(raw);
  capture->snaplen_ = pcap_snapshot(raw);
  return capture;
}

LiveCapture::LiveCapture(pcap_t* handle, std::string interface)
    : handle_(handle), interface_(std::move(interface)) {}

LiveCapture::~LiveCapture() { pcap_close(handle_); }

StatusOr<const bpf_program*> LiveCapture::ProgramFor(const filters::ComposedFilter& filter,
                                                     filters::CompiledFilter& live) {
  if (filter.link_type != datalink_ || filter.snaplen != snaplen_) {
    return Internal("filter compiled for link type " + std::to_string(filter.link_type) +
                    ", snaplen " + std::to_string(filter.snaplen) + ", capture has " +
                    std::to_string(datalink_) + ", " + std::to_string(snaplen_));
  }
  // libpcap 1.10.3 sets BPF_SPECIAL_VLAN_HANDLING on a live Linux handle whose kernel has
  // SKF_AD_VLAN_TAG_PRESENT (the kernel strips VLAN tags before the filter sees the frame), never
  // on a pcap_open_dead one; it changes only the code for the `vlan` keyword (gencode.c
  // gen_vlan). Such a filter is compiled again here, on the live handle: the sandbox has measured
  // its cost already.
  if (filter.expression.find("vlan") == std::string::npos) return filter.program.program();
  if (pcap_compile(handle_, live.mutable_program(), filter.expression.c_str(), 1,
                   PCAP_NETMASK_UNKNOWN) != 0) {
    return InvalidArgument("filter '" + filter.expression + "': " + pcap_geterr(handle_));
  }
  return static_cast<const bpf_program*>(live.program());
}

Status LiveCapture::SetFilter(const filters::ComposedFilter& filter) {
  filters::CompiledFilter live;
  auto program = ProgramFor(filter, live);
  if (!program.ok()) return program.status();
  // pcap_setfilter copies the program (and rewrites it for cooked captures).
  if (pcap_setfilter(handle_, const_cast<bpf_program*>(program.value())) != 0) {
    return Internal(Describe("pcap_setfilter", interface_, pcap_geterr(handle_)));
  }
  return Status::Ok();
}

Status LiveCapture::ReplaceFilter(const filters::ComposedFilter& filter) {
  if (datalink_ == DLT_LINUX_SLL || datalink_ == DLT_LINUX_SLL2) return SetFilter(filter);
  filters::CompiledFilter live;
  auto compiled = ProgramFor(filter, live);
  if (!compiled.ok()) return compiled.status();
  const bpf_program& program = *compiled.value();
  sock_fprog kernel{};
  kernel.len = static_cast<unsigned short>(program.bf_len);
  kernel.filter = reinterpret_cast<sock_filter*>(program.bf_insns);
  const bool fits = program.bf_len <= USHRT_MAX;
  const int rc = fits ? setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &kernel, sizeof kernel) : -1;
  const int error = fits ? errno : E2BIG;
  if (rc != 0) {
    return Internal(Describe("setsockopt(SO_ATTACH_FILTER)", interface_, std::strerror(error)));
  }
  return Status::Ok();
}

RecvStatus LiveCapture::Dispatch(int max_packets, PacketCallback callback, void* context) {
  const int n = pcap_dispatch(handle_, max_packets, callback, static_cast<u_char*>(context));
  if (n > 0) return RecvStatus::kOk;
  if (n == 0 || n == PCAP_ERROR_BREAK) return RecvStatus::kWouldBlock;
  // libpcap's netfilter devices (nflog, nfqueue) read a non-blocking socket without a ring and
  // report "nothing yet" as an error, with EAGAIN left in errno.
  if (n == PCAP_ERROR && errno == EAGAIN &&
      std::string_view(pcap_geterr(handle_)).ends_with(std::strerror(EAGAIN))) {
    return RecvStatus::kWouldBlock;
  }
  error_ = Describe("pcap_dispatch", interface_, pcap_geterr(handle_));
  return RecvStatus::kError;
}

StatusOr<CaptureCounters> LiveCapture::Stats() {
  pcap_stat now{};
  if (pcap_stats(handle_, &now) != 0) {
    return Internal(Describe("pcap_stats", interface_, pcap_geterr(handle_)));
  }
  return counters_.Add(now);
}

}  // namespace capd::agent
