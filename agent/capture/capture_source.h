#pragma once
// What CaptureHub needs from a capture: a source of packets on one interface, and the factory that
// opens one.
//
// How data flows: the factory opens a source for a CaptureConfig (all fallible set-up, one status
// naming the failing call); the capture loop installs the kernel filter, waits with poll() on
// fd(), and calls Dispatch(), which lends each packet to a callback for the duration of the call
// only and says why it returned. Stats() gives the source's counters since it opened, 64-bit.
//
// Implementations: LiveCapture (libpcap on a live interface, the agent's) and SavefileSource (a
// pcap/pcapng file read with libpcap: tests of the hub without root).
//
// Thread-safety: one thread uses a source; nothing here locks. A factory's Open and
// ExpectedDatalink may be called from several capture threads at once.

#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "filters/bpf_filter.h"

namespace capd::agent {

struct CaptureConfig {
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

// A source's counters since it opened, 64-bit (libpcap's are 32-bit: see WrappingCounters).
struct CaptureCounters {
  uint64_t received = 0;         // ps_recv: passed the filter, including the dropped ones
  uint64_t kernel_drops = 0;     // ps_drop: the ring was full
  uint64_t interface_drops = 0;  // ps_ifdrop
};

// Why Dispatch returned.
enum class RecvStatus {
  kOk,          // one or more packets delivered
  kWouldBlock,  // nothing ready: poll fd() and call again
  kEndOfFile,   // a savefile has no more packets; fd() stays quiet from now on
  kError,       // the capture failed (e.g. the interface went away): see error()
};

class CaptureSource {
 public:
  // libpcap's pcap_handler: called once per packet with the context given to Dispatch; the
  // header and bytes are valid only during the call.
  using PacketCallback = pcap_handler;

  virtual ~CaptureSource() = default;

  // Installs the kernel filter composed (and compiled, within its budget) by filters/. Its program
  // must have been compiled for this source's datalink() and snaplen().
  virtual Status SetFilter(const filters::ComposedFilter& filter) = 0;
  // Replaces the filter of a running capture without losing a packet that passes both.
  virtual Status ReplaceFilter(const filters::ComposedFilter& filter) = 0;

  // Delivers at most max_packets (-1: all that are ready) to callback. Never blocks.
  virtual RecvStatus Dispatch(int max_packets, PacketCallback callback, void* context) = 0;

  // Counters since the source opened. Call it at least once per wrap period of the underlying
  // counters (every ~4 h at 300k packets/s for libpcap's).
  virtual StatusOr<CaptureCounters> Stats() = 0;

  // Readable when Dispatch may have packets; POLLERR when the capture failed.
  virtual int fd() const = 0;
  virtual int datalink() const = 0;  // DLT_ value
  uint16_t linktype() const;         // LINKTYPE_ value, as written in files
  virtual int snaplen() const = 0;
  // What one unit of a packet header's tv_usec is, in nanoseconds: 1 (nanosecond timestamps),
  // or 1000 where the device gives microseconds only (nflog, usbmon, dbus).
  virtual uint32_t nanoseconds_per_tick() const = 0;
  virtual const std::string& interface() const = 0;
  virtual const std::string& error() const = 0;  // set when Dispatch returned kError
};

// Opens the sources of one kind. CaptureHub is given one (AgentIdentity::sources).
class CaptureSourceFactory {
 public:
  virtual ~CaptureSourceFactory() = default;
  // The DLT_ value Open would give for `interface`, found without opening it, so that a filter can
  // be compiled (and refused) before a ring is set up. nullopt: not known; compile after opening.
  virtual std::optional<int> ExpectedDatalink(const std::string& interface) const = 0;
  virtual StatusOr<std::unique_ptr<CaptureSource>> Open(const CaptureConfig& config) = 0;
};

// libpcap's 32-bit counters taken into 64-bit totals: deltas modulo 2^32 since the last call.
class WrappingCounters {
 public:
  const CaptureCounters& Add(const pcap_stat& now);

 private:
  pcap_stat last_raw_{};
  CaptureCounters totals_;
};

// DLT_ values that differ from the LINKTYPE_ values written in pcap/pcapng files.
uint16_t DatalinkToLinktype(int dlt);

}  // namespace capd::agent
