#pragma once
// One link type for a classic pcap stream under --decap (`capctl stream --format pcap --decap`,
// `capctl serve --decap`), and for files uploaded for Arkime (`capctl stream --upload`, capd's
// recordings with an upload destination): a pcap file or PCAP-over-IP stream holds one link type,
// and strict readers (Arkime's PCAP-over-IP reader, libpcap) take nothing else. Decapsulated frames
// are Ethernet, except Geneve with an IP payload (protocol type 0x0800/0x86DD: GCP Packet
// Mirroring), which arrive as bare IP (LINKTYPE_RAW). Mixed, the second link type used to end the
// capture.
//
// The representation chosen: a bare-IP frame is given a fixed 14-byte Ethernet header, both
// addresses 00:00:00:00:00:00 (no real station has it, so the header is recognisably made up),
// the ethertype from the IP version (4: 0x0800, 6: 0x86DD; anything else, a malformed packet,
// 0x0800). Every decapsulated interface is then Ethernet; tcpdump/Wireshark dissect the inner
// IP packet as before. Bytes of the packet itself are never changed: only the header is added, and
// the original and captured lengths grow by 14.
//
// Contract: a CaptureWriter that forwards to `inner`; an interface of link type LINKTYPE_RAW
// (101), LINKTYPE_IPV4 (228) or LINKTYPE_IPV6 (229) is added to `inner` as LINKTYPE_ETHERNET (1)
// with its snaplen raised by 14, and its packets framed as above; other interfaces and packets
// pass unchanged. Thread-safety: none, as any CaptureWriter.

#include <memory>

#include "capfile/capture_writer.h"

namespace capd::capfile {

inline constexpr size_t kMadeUpEthernetHeaderLength = 14;

// Whose snaplen grows by the header's 14 bytes: the framed interfaces only (a pcap file or
// stream: one header, the first interface's), or every interface (pcapng files: libpcap 1.10
// refuses a pcapng file whose interfaces' snaplens differ, "an interface has a snapshot length
// ... different from the snapshot length of the first interface").
enum class SnaplenRaise { kFramedOnly, kEveryInterface };

std::unique_ptr<CaptureWriter> FrameBareIpAsEthernet(
    std::unique_ptr<CaptureWriter> inner, SnaplenRaise raise = SnaplenRaise::kFramedOnly);
// The same in front of a writer the caller keeps (capd's recordings hold their ring apart, for
// its counts): `inner` must outlive the returned writer.
std::unique_ptr<CaptureWriter> FrameBareIpAsEthernet(
    CaptureWriter& inner, SnaplenRaise raise = SnaplenRaise::kFramedOnly);

}  // namespace capd::capfile
