#pragma once
// A live libpcap capture on one interface: the agent's capture source.
//
// Contract: Open() does all fallible set-up (pcap_create ... pcap_activate, filter) and returns a
// ready source or a status naming the failing call and libpcap's text. Dispatch() lends packets to
// a callback for the duration of the call only (the bytes live in the kernel ring) and says why
// it returned. The handle is non-blocking: waiting is done by the caller with poll() on fd(), so
// that it can also wait for a stop request and its own deadlines.
//
// Thread-safety: one thread uses a LiveCapture; nothing here locks.

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent {

struct LiveCaptureConfig {
  std::string interface;
  int snaplen = 262144;
  bool promiscuous = true;
  // A 32 MiB ring absorbs a 100 ms stall at ~165k packets/s without loss (ARCHITECTURE.md).
  int buffer_bytes = 32 * 1024 * 1024;
  // TPACKET_V3 hands a block to user space when it is full or this old: it bounds the latency of
  // a lone packet. libpcap's and tcpdump's 1000 ms default would delay it by up to a second;
  // 3 ms keeps a FIFO reader's p99 under 5 ms (bench/run.sh latency) while a block at full
  // rate still holds hundreds of packets.
  int block_timeout_ms = 3;
};

// libpcap's counters widened to 64 bits (see LiveCapture::Stats).
struct CaptureCounters {
  uint64_t received = 0;         // ps_recv: passed the filter, including the dropped ones
  uint64_t kernel_drops = 0;     // ps_drop: the ring was full
  uint64_t interface_drops = 0;  // ps_ifdrop
};

enum class RecvStatus {
  kOk,          // one or more packets delivered
  kWouldBlock,  // nothing ready: poll fd() and call again
  kError,       // the capture failed (e.g. the interface went away): see error()
};

class LiveCapture {
 public:
  // libpcap's pcap_handler: called once per packet with the context given to Dispatch; the
  // header and bytes are valid only during the call.
  using PacketCallback = pcap_handler;

  static StatusOr<std::unique_ptr<LiveCapture>> Open(const LiveCaptureConfig& config);
  ~LiveCapture();
  LiveCapture(const LiveCapture&) = delete;
  LiveCapture& operator=(const LiveCapture&) = delete;

  // Installs the kernel filter composed (and compiled, within its budget) by filters/. Its program
  // must have been compiled for this capture's datalink() and snaplen().
  Status SetFilter(const filters::ComposedFilter& filter);
  // Replaces the kernel filter of a running capture. pcap_setfilter (libpcap 1.10) first attaches
  // a filter that rejects everything and drains the socket, and whatever arrives meanwhile is
  // lost without being counted; this attaches the new program in one SO_ATTACH_FILTER, which the
  // kernel swaps atomically, so no packet is lost. Packets already in the ring passed the old
  // filter. Linux cooked captures (-i any) need libpcap's offset rewriting: they go through
  // pcap_setfilter.
  Status ReplaceFilter(const filters::ComposedFilter& filter);

  // Delivers at most max_packets (-1: all that are ready) to callback.
  RecvStatus Dispatch(int max_packets, PacketCallback callback, void* context);

  // Counters since Open. libpcap's are 32-bit and wrap (every ~4 h at 300k packets/s): this takes
  // deltas modulo 2^32 into 64-bit totals, so call it at least once per wrap period.
  StatusOr<CaptureCounters> Stats();

  int fd() const { return fd_; }
  int datalink() const { return datalink_; }  // DLT_ value
  uint16_t linktype() const;                  // LINKTYPE_ value, as written in files
  int snaplen() const { return snaplen_; }
  // What one unit of a packet header's tv_usec is, in nanoseconds: 1 (nanosecond timestamps),
  // or 1000 where the device gives microseconds only (nflog, usbmon, dbus).
  uint32_t nanoseconds_per_tick() const { return nanoseconds_per_tick_; }
  const std::string& interface() const { return interface_; }
  const std::string& error() const { return error_; }

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
  pcap_stat last_raw_{};
  CaptureCounters totals_;
};

// The DLT_ value libpcap 1.10 gives a capture on `interface` without opening it (from its
// /sys/class/net type, as libpcap maps ARPHRD_ values), so that its filter can be compiled, and
// refused, before a ring is opened. nullopt for the types not mapped here: compile after opening.
std::optional<int> ExpectedDatalink(const std::string& interface);

// DLT_ values that differ from the LINKTYPE_ values written in pcap/pcapng files.
uint16_t DatalinkToLinktype(int dlt);

}  // namespace capd::agent
