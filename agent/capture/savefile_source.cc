#include "agent/capture/savefile_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace capd::agent {
namespace {

struct PcapCloser {
  void operator()(pcap_t* handle) const { pcap_close(handle); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

StatusOr<PcapHandle> OpenFile(const std::string& path) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  PcapHandle handle(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!handle) return NotFound("pcap_open_offline(" + path + "): " + errbuf);
  return handle;
}

}  // namespace

StatusOr<std::unique_ptr<SavefileSource>> SavefileSource::Open(const std::string& path,
                                                               const CaptureConfig& config) {
  auto opened = OpenFile(path);
  if (!opened.ok()) return opened.status();
  const int fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return Internal("eventfd: " + std::string(strerror(errno)));
  PcapHandle handle = std::move(opened).value();
  std::unique_ptr<SavefileSource> source(
      new SavefileSource(handle.release(), config.interface, fd));
  source->datalink_ = pcap_datalink(source->handle_);
  // As a live capture: the file's snapshot length, or the request's if it is smaller.
  const int file_snaplen = pcap_snapshot(source->handle_);
  source->snaplen_ = file_snaplen > 0 ? std::min(file_snaplen, config.snaplen) : config.snaplen;
  return source;
}

SavefileSource::SavefileSource(pcap_t* handle, std::string interface, int fd)
    : handle_(handle), interface_(std::move(interface)), fd_(fd) {}

SavefileSource::~SavefileSource() {
  pcap_close(handle_);
  close(fd_);
}

Status SavefileSource::SetFilter(const filters::ComposedFilter& filter) {
  if (filter.link_type != datalink_ || filter.snaplen != snaplen_) {
    return Internal("filter compiled for link type " + std::to_string(filter.link_type) +
                    ", snaplen " + std::to_string(filter.snaplen) + ", capture has " +
                    std::to_string(datalink_) + ", " + std::to_string(snaplen_));
  }
  if (pcap_setfilter(handle_, const_cast<bpf_program*>(filter.program.program())) != 0) {
    return Internal("pcap_setfilter(" + interface_ + "): " + pcap_geterr(handle_));
  }
  return Status::Ok();
}

void SavefileSource::OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data) {
  auto* self = reinterpret_cast<SavefileSource*>(user);
  ++self->counters_.received;
  pcap_pkthdr cut = *header;
  cut.caplen = std::min<bpf_u_int32>(cut.caplen, static_cast<bpf_u_int32>(self->snaplen_));
  self->callback_(self->context_, &cut, data);
}

RecvStatus SavefileSource::Dispatch(int max_packets, PacketCallback callback, void* context) {
  callback_ = callback;
  context_ = static_cast<u_char*>(context);
  const int n = pcap_dispatch(handle_, max_packets < 0 ? kPacketsPerDispatch : max_packets,
                              &SavefileSource::OnPacket, reinterpret_cast<u_char*>(this));
  if (n > 0) return RecvStatus::kOk;
  if (n == PCAP_ERROR_BREAK) return RecvStatus::kWouldBlock;
  if (n == 0) {
    // The end of the file (libpcap reads on past packets the filter rejects): quiet from now on.
    uint64_t count;
    [[maybe_unused]] auto drained = read(fd_, &count, sizeof count);
    return RecvStatus::kEndOfFile;
  }
  error_ = "pcap_dispatch(" + interface_ + "): " + pcap_geterr(handle_);
  return RecvStatus::kError;
}

std::optional<int> SavefileSourceFactory::ExpectedDatalink(const std::string& interface) const {
  auto found = files_.find(interface);
  if (found == files_.end()) return std::nullopt;
  auto opened = OpenFile(found->second);
  if (!opened.ok()) return std::nullopt;
  return pcap_datalink(opened.value().get());
}

StatusOr<std::unique_ptr<CaptureSource>> SavefileSourceFactory::Open(const CaptureConfig& config) {
  auto found = files_.find(config.interface);
  if (found == files_.end()) return NotFound("no such interface: " + config.interface);
  auto opened = SavefileSource::Open(found->second, config);
  if (!opened.ok()) return opened.status();
  ++opened_;
  return std::unique_ptr<CaptureSource>(std::move(opened).value());
}

}  // namespace capd::agent
