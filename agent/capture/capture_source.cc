#include "agent/capture/capture_source.h"

namespace capd::agent {
namespace {

uint64_t WrappingDelta(u_int now, u_int before) {
  return static_cast<uint32_t>(static_cast<uint32_t>(now) - static_cast<uint32_t>(before));
}

}  // namespace

uint16_t CaptureSource::linktype() const { return DatalinkToLinktype(datalink()); }

const CaptureCounters& WrappingCounters::Add(const pcap_stat& now) {
  totals_.received += WrappingDelta(now.ps_recv, last_raw_.ps_recv);
  totals_.kernel_drops += WrappingDelta(now.ps_drop, last_raw_.ps_drop);
  totals_.interface_drops += WrappingDelta(now.ps_ifdrop, last_raw_.ps_ifdrop);
  last_raw_ = now;
  return totals_;
}

uint16_t DatalinkToLinktype(int dlt) {
  // pcap/dlt.h: on Linux DLT_RAW is 12 (14 on OpenBSD) but files carry LINKTYPE_RAW (101).
  // Values 104 and up, and 0-10, are the same in both spaces.
  if (dlt == DLT_RAW) return 101;
  return static_cast<uint16_t>(dlt);
}

}  // namespace capd::agent
