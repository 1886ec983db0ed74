#pragma once
// Where each flow was seen, from packets captured at several points (capd agents' interfaces
// merged by `capctl stream --agent A --agent B`, each interface named "AGENT:IFACE" in the file).
//
// How data flows: the caller declares the capture points (DeclarePoint, e.g. one per pcapng
// interface) and feeds every packet (Add); the analyzer parses it (packet_parser.h), keys it by
// the flow's 5-tuple taken over both directions, and counts per flow, direction and capture point
// (first/last time, packets, TCP flags, data, sizes). ICMP errors are filed under the flow their
// quoted packet belongs to. Finish() turns the counts into verdicts in plain words and estimates
// how far apart the points' clocks are.
//
// Clocks: every capture point stamps packets with its own host's clock. The same packet seen at
// points A then B gives tB - tA = offset(B - A) + transit >= offset; a packet going the other way
// bounds the offset from below; the tightest bounds over all packets seen at both points make
// the estimate ("agree within X ms as far as packets show").
//
// End of capture: a packet seen at A shortly before the capture ended may still have been on its
// way to B. No verdict says "seen at A, never at B" about packets that A saw only within the grace
// window (Options::grace_ns, plus the clock uncertainty) before the last packet of the capture.
//
// Memory: at most Options::max_flows flows are tracked; packets of further flows are only counted
// (Report::packets_beyond_flow_cap). Packet signatures for matching across points (clock
// estimate) are kept up to Options::max_signatures, then no more are recorded
// (Report::signatures_dropped); TCP segments remembered to notice retransmissions up to
// Options::max_segments in all (then only those already remembered are recognised). With the
// defaults that is some 100 MB at most, whatever the capture's size.
//
// Not thread-safe; no I/O; never fails on bad input (packets it cannot parse are counted by
// reason).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "paths/packet_parser.h"

namespace capd::paths {

// Per flow, direction and capture point.
struct DirectionStats {
  uint64_t packets = 0;
  uint64_t bytes = 0;  // IP lengths
  uint64_t first_ns = 0, last_ns = 0;
  uint64_t syn = 0;     // SYN without ACK
  uint64_t synack = 0;  // SYN with ACK
  uint64_t rst = 0, fin = 0;
  uint64_t data = 0;           // packets with transport payload
  uint64_t first_data_ns = 0;  // when data > 0
  uint64_t first_syn_ns = 0;   // when syn or synack > 0
  uint32_t max_ip_length = 0;
  // TCP: segments of max_ip_length sent again with the same sequence number at this point.
  uint64_t large_retransmits = 0;
};

// Index 0: from the flow's client (who sent the first SYN, else the first packet) to the server;
// index 1: back.
enum Direction : int { kToServer = 0, kToClient = 1 };

struct PointStats {
  std::string point;
  DirectionStats dir[2];
  bool Seen() const { return dir[0].packets + dir[1].packets > 0; }
};

struct IcmpReport {
  IcmpError::Kind kind = IcmpError::Kind::kNone;
  uint8_t type = 0, code = 0;
  uint32_t mtu = 0;
  Address from;                 // the router (or host) that sent the error
  Direction about = kToServer;  // the direction of the packet it quotes
  std::string point;            // where the error was first seen
  uint64_t ts_ns = 0;
  uint64_t count = 0;
};

struct Verdict {
  std::string kind;  // machine-readable, documented in the README: "handshake_complete", ...
  std::string text;  // plain words
  bool problem = false;
};

struct FlowReport {
  Endpoints client_to_server;  // the client's address and port first
  uint64_t first_ns = 0, last_ns = 0;
  std::vector<PointStats> points;  // every declared point; seen ones first, by first sighting
  std::vector<IcmpReport> icmp;
  std::vector<Verdict> verdicts;
  bool problem = false;
};

struct ClockEstimate {
  std::string a, b;
  uint64_t matched = 0;  // packets seen once at each point
  // Bounds on clock(b) - clock(a) in ns; nullopt when no packet bounds that side.
  std::optional<int64_t> lower_ns, upper_ns;
  bool one_way = false;  // only packets in one direction: the bounds assume travel in time order
  // max(|lower|, |upper|) when both exist, else the one that exists.
  int64_t AgreeWithinNs() const;
};

struct Report {
  std::vector<FlowReport> flows;  // problems first, then by first time
  std::vector<ClockEstimate> clocks;
  std::vector<std::string> points;
  uint64_t packets = 0;
  uint64_t packets_in_flows = 0;
  uint64_t packets_beyond_flow_cap = 0;
  uint64_t signatures_dropped = 0;
  std::map<std::string, uint64_t> skipped;  // by ParseResultName
  uint64_t end_ns = 0;                      // the last packet's time
  uint64_t grace_ns = 0;  // the grace window used, including the clock uncertainty
};

struct Options {
  size_t max_flows = 100000;
  size_t max_signatures = 500000;
  size_t max_segments = 1000000;
  uint64_t grace_ns = 1'000'000'000;
};

std::string FormatAddress(const Address& address);
// "10.0.0.1:80", "[fd00::1]:80"; no port for ICMP.
std::string FormatEndpoint(const Address& address, uint8_t protocol, uint16_t port);
std::string ProtocolName(uint8_t protocol);

class PathAnalyzer {
 public:
  explicit PathAnalyzer(Options options = {});
  ~PathAnalyzer();
  PathAnalyzer(const PathAnalyzer&) = delete;
  PathAnalyzer& operator=(const PathAnalyzer&) = delete;

  // A capture point by name (idempotent): its id for Add. Points declared but never seeing a
  // packet still count as places a flow was not seen.
  uint32_t DeclarePoint(std::string_view name);

  // One captured packet at `point` (from DeclarePoint). `data` is the captured bytes; never
  // kept after the call.
  void Add(uint32_t point, int link_type, uint64_t ts_ns, std::span<const uint8_t> data);

  // The report over everything added so far.
  Report Finish() const;

 private:
  struct Flow;
  struct FlowKey;
  struct FlowKeyHash {
    size_t operator()(const FlowKey& key) const;
  };
  struct Sighting {
    uint32_t point;
    uint32_t count;
    uint64_t ts_ns;
  };
  struct SignatureEntry {
    uint32_t flow;
    uint8_t direction;
    std::vector<Sighting> sightings;
  };

  Flow* FindOrAddFlow(const Endpoints& e, const ParsedPacket& p, Direction* direction);
  void AddIcmpError(uint32_t point, uint64_t ts_ns, const ParsedPacket& p);
  std::vector<ClockEstimate> EstimateClocks() const;
  void Judge(const Flow& flow, uint64_t end_ns, uint64_t grace_ns, FlowReport& out) const;

  Options options_;
  std::vector<std::string> points_;
  std::unordered_map<std::string, uint32_t> point_ids_;
  std::vector<std::unique_ptr<Flow>> flows_;
  std::unique_ptr<std::unordered_map<FlowKey, uint32_t, FlowKeyHash>> flow_ids_;
  std::unordered_map<uint64_t, SignatureEntry> signatures_;
  size_t segments_ = 0;  // remembered in all flows' sets
  Report counters_;      // packets, skipped, beyond cap, end_ns
};

}  // namespace capd::paths
