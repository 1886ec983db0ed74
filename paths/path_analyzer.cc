#include "paths/path_analyzer.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <tuple>
#include <unordered_set>

namespace capd::paths {

namespace {

// Sequence numbers remembered per flow, direction and point to notice a large segment sent again;
// beyond this the memory starts over (a retransmission is then missed, never invented).
constexpr size_t kMaxRememberedSeqs = 4096;
constexpr uint64_t kMaxClockSpanNs = uint64_t{1} << 61;

bool EndpointLess(const Address& a, uint16_t ap, const Address& b, uint16_t bp) {
  return std::tie(a, ap) < std::tie(b, bp);
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

}  // namespace

std::string FormatAddress(const Address& address) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(address.version == 6 ? AF_INET6 : AF_INET, address.bytes.data(), text, sizeof(text));
  return text;
}

std::string FormatEndpoint(const Address& address, uint8_t protocol, uint16_t port) {
  const std::string host = FormatAddress(address);
  if (protocol != kProtoTcp && protocol != kProtoUdp) return host;
  return (address.version == 6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case kProtoTcp:
      return "tcp";
    case kProtoUdp:
      return "udp";
    case kProtoIcmp:
      return "icmp";
    case kProtoIcmpv6:
      return "icmpv6";
  }
  return "ip proto " + std::to_string(protocol);
}

int64_t ClockEstimate::AgreeWithinNs() const {
  int64_t within = 0;
  if (lower_ns) within = std::max(within, *lower_ns < 0 ? -*lower_ns : *lower_ns);
  if (upper_ns) within = std::max(within, *upper_ns < 0 ? -*upper_ns : *upper_ns);
  return within;
}

struct PathAnalyzer::FlowKey {
  // The two ends in a fixed order, so both directions find the same flow.
  Address a, b;
  uint16_t a_port = 0, b_port = 0;
  uint8_t protocol = 0;
  bool operator==(const FlowKey&) const = default;
};

size_t PathAnalyzer::FlowKeyHash::operator()(const FlowKey& key) const {
  uint64_t h = 1469598103934665603ULL;
  auto add = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  };
  add(key.a.bytes.data(), 16);
  add(key.b.bytes.data(), 16);
  const uint8_t rest[5] = {static_cast<uint8_t>(key.a_port >> 8), static_cast<uint8_t>(key.a_port),
                           static_cast<uint8_t>(key.b_port >> 8), static_cast<uint8_t>(key.b_port),
                           key.protocol};
  add(rest, 5);
  return h;
}

struct PathAnalyzer::Flow {
  uint32_t id = 0;
  Endpoints c2s;              // client first
  bool client_fixed = false;  // set by a SYN, SYN-ACK or echo request: no more swapping
  uint64_t first_ns = 0, last_ns = 0;
  std::vector<PointStats> points;  // by point id
  // By point id * 2 + direction: sequence number << 16 | IP length of TCP data segments.
  std::vector<std::unordered_set<uint64_t>> seqs;
  std::vector<uint32_t> max_retransmit_length;  // by point id * 2 + direction
  std::vector<uint64_t> max_length_first_ns;    // by point id * 2 + direction
  std::vector<IcmpReport> icmp;

  void Grow(size_t n) {
    if (points.size() >= n) return;
    points.resize(n);
    seqs.resize(n * 2);
    max_retransmit_length.resize(n * 2);
    max_length_first_ns.resize(n * 2);
  }
  void Swap() {
    std::swap(c2s.src, c2s.dst);
    std::swap(c2s.src_port, c2s.dst_port);
    for (size_t i = 0; i < points.size(); ++i) {
      std::swap(points[i].dir[0], points[i].dir[1]);
      std::swap(seqs[2 * i], seqs[2 * i + 1]);
      std::swap(max_retransmit_length[2 * i], max_retransmit_length[2 * i + 1]);
      std::swap(max_length_first_ns[2 * i], max_length_first_ns[2 * i + 1]);
    }
    for (IcmpReport& r : icmp) r.about = r.about == kToServer ? kToClient : kToServer;
  }
};

PathAnalyzer::PathAnalyzer(Options options)
    : options_(options),
      flow_ids_(std::make_unique<std::unordered_map<FlowKey, uint32_t, FlowKeyHash>>()) {}

PathAnalyzer::~PathAnalyzer() = default;

uint32_t PathAnalyzer::DeclarePoint(std::string_view name) {
  auto it = point_ids_.find(std::string(name));
  if (it != point_ids_.end()) return it->second;
  const uint32_t id = static_cast<uint32_t>(points_.size());
  points_.emplace_back(name);
  point_ids_.emplace(std::string(name), id);
  return id;
}

PathAnalyzer::Flow* PathAnalyzer::FindOrAddFlow(const Endpoints& e, const ParsedPacket& p,
                                                Direction* direction) {
  FlowKey key;
  const bool forward = !EndpointLess(e.dst, e.dst_port, e.src, e.src_port);
  key.a = forward ? e.src : e.dst;
  key.b = forward ? e.dst : e.src;
  key.a_port = forward ? e.src_port : e.dst_port;
  key.b_port = forward ? e.dst_port : e.src_port;
  key.protocol = e.protocol;
  Flow* flow;
  if (auto it = flow_ids_->find(key); it != flow_ids_->end()) {
    flow = flows_[it->second].get();
  } else {
    if (flows_.size() >= options_.max_flows) return nullptr;
    auto added = std::make_unique<Flow>();
    added->id = static_cast<uint32_t>(flows_.size());
    added->c2s = e;
    // Whoever answers a SYN or an echo request is the server: a capture that starts with the
    // answer still names the client.
    const bool answer =
        (e.protocol == kProtoTcp && (p.tcp_flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) ||
        p.icmp_echo_reply;
    if (answer) {
      std::swap(added->c2s.src, added->c2s.dst);
      std::swap(added->c2s.src_port, added->c2s.dst_port);
      added->client_fixed = true;
    }
    flow_ids_->emplace(key, added->id);
    flows_.push_back(std::move(added));
    flow = flows_.back().get();
  }
  flow->Grow(points_.size());
  *direction = (flow->c2s.src == e.src && flow->c2s.src_port == e.src_port) ? kToServer : kToClient;
  return flow;
}

void PathAnalyzer::AddIcmpError(uint32_t point, uint64_t ts_ns, const ParsedPacket& p) {
  const IcmpError& e = p.icmp_error;
  ParsedPacket quoted;
  quoted.flow = e.quoted;
  Direction direction;
  Flow* flow = FindOrAddFlow(e.quoted, quoted, &direction);
  if (flow == nullptr) {
    ++counters_.packets_beyond_flow_cap;
    return;
  }
  if (flow->first_ns == 0) flow->first_ns = flow->last_ns = ts_ns;
  for (IcmpReport& r : flow->icmp) {
    if (r.kind == e.kind && r.code == e.code && r.mtu == e.mtu && r.from == p.flow.src &&
        r.about == direction) {
      ++r.count;
      return;
    }
  }
  if (flow->icmp.size() >= 16) return;  // the first kinds are what a reader needs
  IcmpReport r;
  r.kind = e.kind;
  r.type = e.type;
  r.code = e.code;
  r.mtu = e.mtu;
  r.from = p.flow.src;
  r.about = direction;
  r.point = points_[point];
  r.ts_ns = ts_ns;
  r.count = 1;
  flow->icmp.push_back(r);
}

void PathAnalyzer::Add(uint32_t point, int link_type, uint64_t ts_ns,
                       std::span<const uint8_t> data) {
  if (point >= points_.size()) return;
  ++counters_.packets;
  counters_.end_ns = std::max(counters_.end_ns, ts_ns);
  ParsedPacket p;
  const ParseResult result = ParsePacket(link_type, data, p);
  if (result != ParseResult::kOk) {
    ++counters_.skipped[ParseResultName(result)];
    return;
  }
  if (p.icmp_error.kind != IcmpError::Kind::kNone) {
    ++counters_.packets_in_flows;
    AddIcmpError(point, ts_ns, p);
    return;
  }
  if ((p.flow.protocol == kProtoIcmp || p.flow.protocol == kProtoIcmpv6) && !p.icmp_echo) {
    ++counters_.skipped["other icmp"];  // neighbour discovery, router advertisements, ...
    return;
  }
  Direction direction;
  Flow* flow = FindOrAddFlow(p.flow, p, &direction);
  if (flow == nullptr) {
    ++counters_.packets_beyond_flow_cap;
    return;
  }
  ++counters_.packets_in_flows;
  const bool syn = (p.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
  const bool synack = (p.tcp_flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck);
  // The first SYN names the client, even when other packets of the flow came first.
  // The first echo request names the client as well.
  if (!flow->client_fixed && p.icmp_echo) {
    if (p.icmp_echo_reply == (direction == kToServer)) {
      flow->Swap();
      direction = direction == kToServer ? kToClient : kToServer;
    }
    flow->client_fixed = true;
  }
  if (!flow->client_fixed && (syn || synack)) {
    if ((syn && direction == kToClient) || (synack && direction == kToServer)) {
      flow->Swap();
      direction = direction == kToServer ? kToClient : kToServer;
    }
    flow->client_fixed = true;
  }
  if (flow->first_ns == 0 || ts_ns < flow->first_ns) flow->first_ns = ts_ns;
  flow->last_ns = std::max(flow->last_ns, ts_ns);
  PointStats& ps = flow->points[point];
  DirectionStats& d = ps.dir[direction];
  if (d.packets == 0 || ts_ns < d.first_ns) d.first_ns = ts_ns;
  d.last_ns = std::max(d.last_ns, ts_ns);
  ++d.packets;
  d.bytes += p.ip_length;
  const size_t slot = static_cast<size_t>(point) * 2 + direction;
  if (p.ip_length > d.max_ip_length) {
    d.max_ip_length = p.ip_length;
    flow->max_length_first_ns[slot] = ts_ns;
  }
  if (syn) ++d.syn;
  if (synack) ++d.synack;
  if ((syn || synack) && d.first_syn_ns == 0) d.first_syn_ns = ts_ns;
  if (p.tcp_flags & kTcpRst) ++d.rst;
  if (p.tcp_flags & kTcpFin) ++d.fin;
  if (p.payload_length > 0 && !(p.tcp_flags & kTcpRst)) {
    if (d.data == 0) d.first_data_ns = ts_ns;
    ++d.data;
    if (p.flow.protocol == kProtoTcp) {
      // The same sequence number with the same length again: a retransmission (a first
      // transmission may have been one large offloaded segment of another length).
      auto& seqs = flow->seqs[slot];
      const uint64_t segment = static_cast<uint64_t>(p.tcp_seq) << 16 | p.ip_length;
      const bool seen = seqs.count(segment) > 0;
      if (!seen && segments_ < options_.max_segments) {
        seqs.insert(segment);
        ++segments_;
      }
      if (seen) {
        if (p.ip_length > flow->max_retransmit_length[slot]) {
          flow->max_retransmit_length[slot] = p.ip_length;
          d.large_retransmits = 0;
        }
        if (p.ip_length == flow->max_retransmit_length[slot]) ++d.large_retransmits;
      }
      if (seqs.size() > kMaxRememberedSeqs) {
        segments_ -= seqs.size();
        seqs.clear();
      }
    }
  }
  // The signature, for matching this packet with its sighting at another point.
  auto it = signatures_.find(p.signature);
  if (it == signatures_.end()) {
    if (signatures_.size() >= options_.max_signatures) {
      ++counters_.signatures_dropped;
      return;
    }
    SignatureEntry entry{flow->id, static_cast<uint8_t>(direction), {{point, 1, ts_ns}}};
    signatures_.emplace(p.signature, std::move(entry));
    return;
  }
  for (Sighting& s : it->second.sightings) {
    if (s.point == point) {
      ++s.count;
      return;
    }
  }
  if (it->second.sightings.size() < 8) it->second.sightings.push_back({point, 1, ts_ns});
}

std::vector<ClockEstimate> PathAnalyzer::EstimateClocks() const {
  // Per (a, b, flow): min and max of tb - ta for packets of each direction seen once at each.
  struct MinMax {
    bool any = false;
    int64_t min = 0, max = 0;
    uint64_t n = 0;
    void Add(int64_t v) {
      min = any ? std::min(min, v) : v;
      max = any ? std::max(max, v) : v;
      any = true;
      ++n;
    }
  };
  std::map<std::tuple<uint32_t, uint32_t, uint32_t>, std::array<MinMax, 2>> spans;
  for (const auto& [signature, entry] : signatures_) {
    const auto& s = entry.sightings;
    for (size_t i = 0; i < s.size(); ++i) {
      for (size_t j = 0; j < s.size(); ++j) {
        if (s[i].point >= s[j].point || s[i].count != 1 || s[j].count != 1) continue;
        // Sightings further apart than 2^61 ns (73 years) are damaged timestamps, not clocks:
        // left out, which also keeps every sum and difference below within int64_t.
        const uint64_t ta = s[i].ts_ns, tb = s[j].ts_ns;
        if ((tb >= ta ? tb - ta : ta - tb) > kMaxClockSpanNs) continue;
        const int64_t d = tb >= ta ? static_cast<int64_t>(tb - ta) : -static_cast<int64_t>(ta - tb);
        spans[{s[i].point, s[j].point, entry.flow}][entry.direction].Add(d);
      }
    }
  }
  std::map<std::pair<uint32_t, uint32_t>, ClockEstimate> by_pair;
  std::map<std::pair<uint32_t, uint32_t>, std::vector<std::array<MinMax, 2>>> one_way;
  for (const auto& [key, dirs] : spans) {
    const auto pair = std::make_pair(std::get<0>(key), std::get<1>(key));
    ClockEstimate& c = by_pair[pair];
    c.a = points_[pair.first];
    c.b = points_[pair.second];
    c.matched += dirs[0].n + dirs[1].n;
    if (!(dirs[0].any && dirs[1].any)) {
      one_way[pair].push_back(dirs);
      continue;
    }
    // Either direction 0 went a -> b (offset <= its min, >= direction 1's max) or b -> a.
    const int64_t lo0 = dirs[1].max, hi0 = dirs[0].min;
    const int64_t lo1 = dirs[0].max, hi1 = dirs[1].min;
    const bool first = (lo0 <= hi0) || (lo1 > hi1 && lo0 - hi0 <= lo1 - hi1);
    const int64_t lo = first ? lo0 : lo1, hi = first ? hi0 : hi1;
    c.lower_ns = c.lower_ns ? std::max(*c.lower_ns, lo) : lo;
    c.upper_ns = c.upper_ns ? std::min(*c.upper_ns, hi) : hi;
  }
  std::vector<ClockEstimate> out;
  for (auto& [pair, c] : by_pair) {
    if (!c.lower_ns && !c.upper_ns) {
      // Packets in one direction only: assume they travelled in the order of their timestamps.
      c.one_way = true;
      for (const auto& dirs : one_way[pair]) {
        const MinMax& m = dirs[0].any ? dirs[0] : dirs[1];
        if (m.min >= 0) {
          c.upper_ns = c.upper_ns ? std::min(*c.upper_ns, m.min) : m.min;
        } else if (m.max <= 0) {
          c.lower_ns = c.lower_ns ? std::max(*c.lower_ns, m.max) : m.max;
        }
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

const char* DirectionWords(Direction d) {
  return d == kToServer ? "client→server" : "server→client";
}

std::string IcmpText(const IcmpReport& r, bool v6) {
  std::string what;
  switch (r.kind) {
    case IcmpError::Kind::kFragNeeded:
      what = v6 ? "ICMPv6 packet too big (MTU " + std::to_string(r.mtu) + ")"
                : "ICMP fragmentation needed (MTU " + std::to_string(r.mtu) + ")";
      break;
    case IcmpError::Kind::kUnreachable:
      what = std::string(v6 ? "ICMPv6" : "ICMP") + " destination unreachable (code " +
             std::to_string(r.code) + ")";
      break;
    case IcmpError::Kind::kTimeExceeded:
      what = std::string(v6 ? "ICMPv6" : "ICMP") + " time exceeded (code " +
             std::to_string(r.code) + ")";
      break;
    case IcmpError::Kind::kNone:
      break;
  }
  return what + " from " + FormatAddress(r.from) + " about " + DirectionWords(r.about) +
         " packets, seen at " + r.point +
         (r.count > 1 ? " (" + std::to_string(r.count) + " times)" : "");
}

const char* IcmpKind(IcmpError::Kind kind) {
  switch (kind) {
    case IcmpError::Kind::kFragNeeded:
      return "icmp_frag_needed";
    case IcmpError::Kind::kUnreachable:
      return "icmp_unreachable";
    case IcmpError::Kind::kTimeExceeded:
      return "icmp_time_exceeded";
    case IcmpError::Kind::kNone:
      break;
  }
  return "icmp";
}

}  // namespace

void PathAnalyzer::Judge(const Flow& flow, uint64_t end_ns, uint64_t grace_ns,
                         FlowReport& out) const {
  const uint64_t cutoff = end_ns > grace_ns ? end_ns - grace_ns : 0;
  const std::vector<PointStats>& points = out.points;
  using Count = uint64_t DirectionStats::*;
  using Since = uint64_t DirectionStats::*;
  // Points where direction d had a nonzero `count`, and the earliest `since` among them.
  auto at = [&](Direction d, Count count, Since since, uint64_t* earliest) {
    std::vector<std::string> names;
    uint64_t first = std::numeric_limits<uint64_t>::max();
    for (const PointStats& p : points) {
      if (p.dir[d].*count == 0) continue;
      names.push_back(p.point);
      first = std::min(first, p.dir[d].*since);
    }
    if (earliest) *earliest = first;
    return names;
  };
  // Points where direction d had none, when the points that had some saw it before the grace
  // window (otherwise it may still have been on its way).
  auto missing = [&](Direction d, Count count, Since since) {
    uint64_t first;
    std::vector<std::string> seen = at(d, count, since, &first);
    std::vector<std::string> names;
    if (seen.empty() || first >= cutoff) return names;
    for (const PointStats& p : points) {
      if (p.dir[d].*count == 0) names.push_back(p.point);
    }
    return names;
  };
  auto add = [&out](std::string kind, std::string text, bool problem) {
    out.verdicts.push_back({std::move(kind), std::move(text), problem});
    if (problem) out.problem = true;
  };
  const bool v6 = flow.c2s.src.version == 6;
  for (const IcmpReport& r : out.icmp) add(IcmpKind(r.kind), IcmpText(r, v6), true);

  const std::string client = FormatEndpoint(flow.c2s.src, flow.c2s.protocol, flow.c2s.src_port);
  const std::string server = FormatEndpoint(flow.c2s.dst, flow.c2s.protocol, flow.c2s.dst_port);
  bool path_reported = false;  // a verdict already says where packets stopped

  // Large packets seen at one point, none that large at another that saw the same direction.
  auto large_missing = [&](Direction d, bool tcp) {
    for (size_t i = 0; i < points.size(); ++i) {
      const PointStats& x = points[i];
      // A point declared after the flow's last packet has no slot: it saw nothing of it.
      const size_t slot = static_cast<size_t>(point_ids_.at(x.point)) * 2 + d;
      if (slot >= flow.max_retransmit_length.size()) continue;
      const uint32_t large = tcp ? flow.max_retransmit_length[slot] : x.dir[d].max_ip_length;
      if (large == 0 || flow.max_length_first_ns[slot] >= cutoff) continue;
      for (const PointStats& y : points) {
        if (&y == &x || y.dir[d].packets == 0 || y.dir[d].max_ip_length >= large) continue;
        std::string text =
            std::string("large ") + (tcp ? "segments " : "datagrams ") + DirectionWords(d) + " (" +
            std::to_string(large) + " bytes" +
            (tcp ? ", sent " + std::to_string(x.dir[d].large_retransmits + 1) + " times" : "") +
            ") seen at " + x.point + ", none larger than " +
            std::to_string(y.dir[d].max_ip_length) + " bytes at " + y.point +
            ": an MTU black hole? (look for ICMP fragmentation needed being "
            "dropped)";
        add("mtu_black_hole", text, true);
        return;
      }
    }
  };

  if (flow.c2s.protocol == kProtoTcp) {
    uint64_t syn_first = 0;
    const auto syn = at(kToServer, &DirectionStats::syn, &DirectionStats::first_syn_ns, &syn_first);
    const auto synack =
        at(kToClient, &DirectionStats::synack, &DirectionStats::first_syn_ns, nullptr);
    const auto rst_s = at(kToClient, &DirectionStats::rst, &DirectionStats::first_ns, nullptr);
    const auto rst_c = at(kToServer, &DirectionStats::rst, &DirectionStats::first_ns, nullptr);
    bool refused = false;
    if (!syn.empty()) {
      if (synack.empty()) {
        const auto syn_missing =
            missing(kToServer, &DirectionStats::syn, &DirectionStats::first_syn_ns);
        if (!rst_s.empty()) {
          refused = true;
          add("reset_by_server",
              "connection refused: the SYN was answered by RST from the server " + server +
                  ", seen at " + Join(rst_s),
              true);
        } else if (!syn_missing.empty()) {
          add("syn_not_arrived",
              "SYN seen at " + Join(syn) + ", never at " + Join(syn_missing) +
                  " (no SYN-ACK anywhere)",
              true);
        } else if (syn_first < cutoff) {
          add("no_synack",
              "SYN reached " + Join(syn) + ", no SYN-ACK came back from the server " + server,
              true);
        } else {
          add("in_flight", "SYN at the end of the capture (within the grace window)", false);
        }
        path_reported = true;
      } else {
        const auto synack_missing =
            missing(kToClient, &DirectionStats::synack, &DirectionStats::first_syn_ns);
        if (!synack_missing.empty()) {
          add("synack_not_returned",
              "SYN-ACK seen at " + Join(synack) + ", never at " + Join(synack_missing) +
                  " (lost on the way back to the client)",
              true);
          path_reported = true;
        } else {
          add("handshake_complete", "TCP handshake complete, seen at " + Join(synack), false);
        }
      }
    } else if (!synack.empty()) {
      add("midstream", "no SYN in the capture (it started after the client's SYN)", false);
    } else {
      add("midstream", "no handshake in the capture (the connection was already open)", false);
    }
    if (!refused && !rst_s.empty()) {
      add("reset_by_server", "reset by the server " + server + ", RST seen at " + Join(rst_s),
          true);
    }
    if (!rst_c.empty()) {
      add("reset_by_client", "reset by the client " + client + ", RST seen at " + Join(rst_c),
          true);
    }
    if (!path_reported) {
      const auto request_missing =
          missing(kToServer, &DirectionStats::data, &DirectionStats::first_data_ns);
      const auto reply_missing =
          missing(kToClient, &DirectionStats::data, &DirectionStats::first_data_ns);
      uint64_t request_first = 0;
      const auto request =
          at(kToServer, &DirectionStats::data, &DirectionStats::first_data_ns, &request_first);
      const auto reply =
          at(kToClient, &DirectionStats::data, &DirectionStats::first_data_ns, nullptr);
      if (!request_missing.empty()) {
        add("request_lost",
            "client→server data seen at " + Join(request) + ", never at " + Join(request_missing),
            true);
      }
      if (!reply_missing.empty()) {
        add("reply_lost",
            "reply (server→client data) seen at " + Join(reply) + ", never at " +
                Join(reply_missing),
            true);
      }
      if (!request.empty() && reply.empty() && rst_s.empty() && request_first < cutoff) {
        add("request_without_reply",
            "request without reply: client→server data seen at " + Join(request) +
                ", no data came back from the server " + server,
            true);
      }
      large_missing(kToServer, true);
      large_missing(kToClient, true);
    }
  } else {
    uint64_t request_first = 0;
    const auto request =
        at(kToServer, &DirectionStats::packets, &DirectionStats::first_ns, &request_first);
    const auto reply = at(kToClient, &DirectionStats::packets, &DirectionStats::first_ns, nullptr);
    const auto request_missing =
        missing(kToServer, &DirectionStats::packets, &DirectionStats::first_ns);
    const auto reply_missing =
        missing(kToClient, &DirectionStats::packets, &DirectionStats::first_ns);
    const bool udp = flow.c2s.protocol == kProtoUdp;
    const std::string noun = udp ? "datagrams" : "echo requests";
    if (!request_missing.empty()) {
      add("request_lost",
          "client→server " + noun + " seen at " + Join(request) + ", never at " +
              Join(request_missing),
          true);
    }
    if (!reply_missing.empty()) {
      add("reply_lost",
          "reply (server→client) seen at " + Join(reply) + ", never at " + Join(reply_missing),
          true);
    }
    if (!request.empty() && reply.empty() && request_first < cutoff) {
      if (udp) {
        add("one_way_udp",
            "one-way UDP: client→server seen at " + Join(request) + ", nothing came back from " +
                server,
            true);
      } else {
        add("request_without_reply",
            "echo requests seen at " + Join(request) + ", no reply from " + server, true);
      }
    }
    if (udp) {
      large_missing(kToServer, false);
      large_missing(kToClient, false);
    }
    if (!out.problem) {
      std::vector<std::string> both;
      for (const PointStats& p : points) {
        if (p.dir[0].packets > 0 && p.dir[1].packets > 0) both.push_back(p.point);
      }
      if (!both.empty()) {
        add("both_ways", "both directions seen at " + Join(both), false);
      } else {
        add("in_flight", "seen only at the end of the capture (within the grace window)", false);
      }
    }
  }
}

Report PathAnalyzer::Finish() const {
  Report report = counters_;
  report.points = points_;
  report.clocks = EstimateClocks();
  int64_t uncertainty = 0;
  for (const ClockEstimate& c : report.clocks)
    uncertainty = std::max(uncertainty, c.AgreeWithinNs());
  report.grace_ns = options_.grace_ns + static_cast<uint64_t>(uncertainty);
  for (const auto& flow : flows_) {
    FlowReport f;
    f.client_to_server = flow->c2s;
    f.first_ns = flow->first_ns;
    f.last_ns = flow->last_ns;
    f.icmp = flow->icmp;
    for (size_t i = 0; i < points_.size(); ++i) {
      PointStats p = i < flow->points.size() ? flow->points[i] : PointStats{};
      p.point = points_[i];
      f.points.push_back(std::move(p));
    }
    auto first_seen = [](const PointStats& p) {
      uint64_t t = std::numeric_limits<uint64_t>::max();
      for (const DirectionStats& d : p.dir) {
        if (d.packets > 0) t = std::min(t, d.first_ns);
      }
      return t;
    };
    std::stable_sort(
        f.points.begin(), f.points.end(),
        [&](const PointStats& a, const PointStats& b) { return first_seen(a) < first_seen(b); });
    Judge(*flow, report.end_ns, report.grace_ns, f);
    report.flows.push_back(std::move(f));
  }
  std::stable_sort(report.flows.begin(), report.flows.end(),
                   [](const FlowReport& a, const FlowReport& b) {
                     return std::tie(b.problem, a.first_ns) < std::tie(a.problem, b.first_ns);
                   });
  return report;
}

}  // namespace capd::paths
