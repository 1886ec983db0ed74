#pragma once
// A live libpcap capture on one interface: the agent's capture source (capture_source.h).
//
// Contract: Open() does all fallible set-up (pcap_create ... pcap_activate, datalink) and returns
// a ready source or a status naming the failing call and libpcap's text. Dispatch() lends packets
// to a callback for the duration of the call only (the bytes live in the kernel ring) and says why
// it returned (never kEndOfFile). The handle is non-blocking: waiting is done by the caller with
// poll() on fd(), so that it can also wait for a stop request and its own deadlines.
//
// "any" is opened as Linux cooked v2 (LINUX_SLL2, 276) where libpcap offers it, as tcpdump 4.99
// does: it names the interface of each packet.
//
// Thread-safety: one thread uses a LiveCapture; nothing here locks.

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "agent/capture/capture_source.h"
#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent {

using LiveCaptureConfig = CaptureConfig;

class LiveCapture final : public CaptureSource {
 public:
  static StatusOr<std::unique_ptr<LiveCapture>> Open(const LiveCaptureConfig& config);
  ~LiveCapture() override;
  LiveCapture(const LiveCapture&) = delete;
  LiveCapture& operator=(const LiveCapture&) = delete;

  // Installs the kernel filter composed (and compiled, within its budget) by filters/. Its program
  // must have been compiled for this capture's datalink() and snaplen().
  Status SetFilter(const filters::ComposedFilter& filter) override;
  // Replaces the kernel filter of a running capture. pcap_setfilter (libpcap 1.10) first attaches
  // a filter that rejects everything and drains the socket, and whatever arrives meanwhile is
  // lost without being counted; this attaches the new program in one SO_ATTACH_FILTER, which the
  // kernel swaps atomically, so no packet is lost. Packets already in the ring passed the old
  // filter. Linux cooked captures (-i any) need libpcap's offset rewriting: they go through
  // pcap_setfilter.
  Status ReplaceFilter(const filters::ComposedFilter& filter) override;

  // Delivers at most max_packets (-1: all that are ready) to callback.
  RecvStatus Dispatch(int max_packets, PacketCallback callback, void* context) override;

  // Counters since Open. libpcap's are 32-bit and wrap (every ~4 h at 300k packets/s): this takes
  // deltas modulo 2^32 into 64-bit totals, so call it at least once per wrap period.
  StatusOr<CaptureCounters> Stats() override;

  int fd() const override { return fd_; }
  int datalink() const override { return datalink_; }
  int snaplen() const override { return snaplen_; }
  uint32_t nanoseconds_per_tick() const override { return nanoseconds_per_tick_; }
  const std::string& interface() const override { return interface_; }
  const std::string& error() const override { return error_; }

 private:
  LiveCapture(pcap_t* handle, std::string interface);
  // `filter`'s program, or the same expression compiled for this live handle where libpcap's code
  // differs (see the .cc); `live` owns the latter.
  StatusOr<const bpf_program*> ProgramFor(const filters::ComposedFilter& filter,
                                          filters::CompiledFilter& live);

  pcap_t* handle_;
  std::string interface_;
  int fd_ = -1;
  int datalink_ = 0;
  int snaplen_ = 0;
  uint32_t nanoseconds_per_tick_ = 1;
  std::string error_;
  WrappingCounters counters_;
};

// Opens LiveCaptures: capd's factory.
class LiveCaptureFactory final : public CaptureSourceFactory {
 public:
  std::optional<int> ExpectedDatalink(const std::string& interface) const override;
  StatusOr<std::unique_ptr<CaptureSource>> Open(const CaptureConfig& config) override;
};

// The DLT_ value libpcap 1.10 gives a capture on `interface` without opening it (from its
// /sys/class/net type, as libpcap maps ARPHRD_ values), so that its filter can be compiled, and
// refused, before a ring is opened. nullopt for the types not mapped here: compile after opening.
std::optional<int> ExpectedDatalink(const std::string& interface);

}  // namespace capd::agent
