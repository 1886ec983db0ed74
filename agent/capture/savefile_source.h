#pragma once
// A pcap or pcapng file read with libpcap as a capture source (capture_source.h): what the hub's
// unit tests capture from, without root or an interface.
//
// Contract: packets come out as a live capture's would, with the file's nanosecond timestamps,
// the capture's snaplen applied (caplen cut to it, the original length kept) and the filter run
// by libpcap on each packet. fd() is readable until the file ends, then stays quiet: Dispatch
// returns kEndOfFile and the capture goes on like a link with no traffic until its subscribers
// end (by count, duration or stop), so a test decides when a stream ends, never the file.
// Stats(): received counts the packets that passed the filter; a file has no drops.
//
// Thread-safety: one thread uses a SavefileSource; the factory's methods may be called from any.

#include <pcap/pcap.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/capture/capture_source.h"

namespace capd::agent {

class SavefileSource final : public CaptureSource {
 public:
  // A live ring hands over one block at a time; a file is read this many packets per Dispatch
  // (-1) so that the capture loop sees stops and joins between them as it would live.
  static constexpr int kPacketsPerDispatch = 256;

  // Opens `path` as the capture on config.interface (the name its packets are described under).
  static StatusOr<std::unique_ptr<SavefileSource>> Open(const std::string& path,
                                                        const CaptureConfig& config);
  ~SavefileSource() override;
  SavefileSource(const SavefileSource&) = delete;
  SavefileSource& operator=(const SavefileSource&) = delete;

  Status SetFilter(const filters::ComposedFilter& filter) override;
  // libpcap filters a file's packets in user space: replacing the program loses nothing.
  Status ReplaceFilter(const filters::ComposedFilter& filter) override { return SetFilter(filter); }
  RecvStatus Dispatch(int max_packets, PacketCallback callback, void* context) override;
  StatusOr<CaptureCounters> Stats() override { return counters_; }

  int fd() const override { return fd_; }
  int datalink() const override { return datalink_; }
  int snaplen() const override { return snaplen_; }
  uint32_t nanoseconds_per_tick() const override { return 1; }
  const std::string& interface() const override { return interface_; }
  const std::string& error() const override { return error_; }

 private:
  SavefileSource(pcap_t* handle, std::string interface, int fd);
  static void OnPacket(u_char* user, const pcap_pkthdr* header, const u_char* data);

  pcap_t* handle_;
  std::string interface_;
  int fd_;  // an eventfd: readable (count 1) until the end of the file
  int datalink_ = 0;
  int snaplen_ = 0;
  std::string error_;
  CaptureCounters counters_;
  // The callback of the Dispatch in progress.
  PacketCallback callback_ = nullptr;
  u_char* context_ = nullptr;
};

// Opens the file named for an interface; an interface not named is NotFound, like a missing
// device. Counts the sources it opened (captures sharing one source count once).
class SavefileSourceFactory final : public CaptureSourceFactory {
 public:
  explicit SavefileSourceFactory(std::map<std::string, std::string> files_by_interface)
      : files_(std::move(files_by_interface)) {}

  // The file's link type, read from its header.
  std::optional<int> ExpectedDatalink(const std::string& interface) const override;
  StatusOr<std::unique_ptr<CaptureSource>> Open(const CaptureConfig& config) override;

  int opened() const { return opened_.load(); }

 private:
  const std::map<std::string, std::string> files_;
  std::atomic<int> opened_{0};
};

}  // namespace capd::agent
