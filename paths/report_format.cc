#include "paths/report_format.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>

namespace capd::paths {
namespace {

std::string Ms(int64_t ns) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f", static_cast<double>(ns) / 1e6);
  return text;
}

void JsonString(std::string& out, const std::string& s) {
  out += '"';
  for (const unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (c < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\u%04x", c);
          out += esc;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void JsonDirection(std::string& out, const DirectionStats& d) {
  out += "{\"packets\":" + std::to_string(d.packets) + ",\"bytes\":" + std::to_string(d.bytes);
  if (d.packets > 0) {
    out +=
        ",\"first_ns\":" + std::to_string(d.first_ns) + ",\"last_ns\":" + std::to_string(d.last_ns);
  }
  out += ",\"syn\":" + std::to_string(d.syn) + ",\"synack\":" + std::to_string(d.synack) +
         ",\"rst\":" + std::to_string(d.rst) + ",\"fin\":" + std::to_string(d.fin) +
         ",\"data\":" + std::to_string(d.data) +
         ",\"max_ip_length\":" + std::to_string(d.max_ip_length) + "}";
}

std::string DirectionSummary(const DirectionStats& d) {
  if (d.packets == 0) return "0";
  std::string s = std::to_string(d.packets);
  std::string flags;
  auto flag = [&flags](uint64_t n, const char* name) {
    if (n == 0) return;
    // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a known false positive in
    // char_traits' memcpy) about inlined `"literal" + std::string` temporaries.
    if (!flags.empty()) flags += ' ';
    flags += name;
    if (n > 1) {
      flags += 'x';
      flags += std::to_string(n);
    }
  };
  flag(d.syn, "SYN");
  flag(d.synack, "SYN-ACK");
  flag(d.rst, "RST");
  flag(d.fin, "FIN");
  flag(d.data, "data");
  if (!flags.empty()) s += " (" + flags + ")";
  return s;
}

}  // namespace

std::string FormatTime(uint64_t ts_ns) {
  const time_t seconds = static_cast<time_t>(ts_ns / 1'000'000'000ULL);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[40];
  std::snprintf(text, sizeof(text), "%02d:%02d:%02d.%06" PRIu64, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<uint64_t>((ts_ns % 1'000'000'000ULL) / 1000));
  return text;
}

std::string DescribeClock(const ClockEstimate& c) {
  std::string s;
  if (c.lower_ns && c.upper_ns) {
    s = "clocks of " + c.a + " and " + c.b + " agree within " + Ms(c.AgreeWithinNs()) +
        " ms as far as packets show (" + c.b + " minus " + c.a + " between " + Ms(*c.lower_ns) +
        " and " + Ms(*c.upper_ns) + " ms";
  } else if (c.upper_ns) {
    s = "clock of " + c.b + " is at most " + Ms(*c.upper_ns) + " ms ahead of " + c.a +
        "'s, no bound the other way (";
  } else if (c.lower_ns) {
    s = "clock of " + c.b + " is at most " + Ms(-*c.lower_ns) + " ms behind " + c.a +
        "'s, no bound the other way (";
  } else {
    return "clocks of " + c.a + " and " + c.b + ": no packet bounds their offset";
  }
  s += (c.lower_ns && c.upper_ns ? ", " : "") + std::to_string(c.matched) + " packets seen at both";
  if (c.one_way) s += ", in one direction only: assuming they travelled in timestamp order";
  return s + ")";
}

std::string FormatJsonLine(const FlowReport& f) {
  const Endpoints& e = f.client_to_server;
  std::string out = "{\"protocol\":";
  JsonString(out, ProtocolName(e.protocol));
  out += ",\"client\":";
  JsonString(out, FormatAddress(e.src));
  out += ",\"server\":";
  JsonString(out, FormatAddress(e.dst));
  if (e.protocol == kProtoTcp || e.protocol == kProtoUdp) {
    out += ",\"client_port\":" + std::to_string(e.src_port) +
           ",\"server_port\":" + std::to_string(e.dst_port);
  } else {
    out += ",\"echo_id\":" + std::to_string(e.src_port);
  }
  out +=
      ",\"first_ns\":" + std::to_string(f.first_ns) + ",\"last_ns\":" + std::to_string(f.last_ns);
  out += std::string(",\"problem\":") + (f.problem ? "true" : "false");
  out += ",\"verdicts\":[";
  for (size_t i = 0; i < f.verdicts.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"kind\":";
    JsonString(out, f.verdicts[i].kind);
    out += ",\"text\":";
    JsonString(out, f.verdicts[i].text);
    out += std::string(",\"problem\":") + (f.verdicts[i].problem ? "true" : "false") + "}";
  }
  out += "],\"points\":[";
  for (size_t i = 0; i < f.points.size(); ++i) {
    const PointStats& p = f.points[i];
    if (i > 0) out += ',';
    out += "{\"point\":";
    JsonString(out, p.point);
    out += std::string(",\"seen\":") + (p.Seen() ? "true" : "false") + ",\"to_server\":";
    JsonDirection(out, p.dir[kToServer]);
    out += ",\"to_client\":";
    JsonDirection(out, p.dir[kToClient]);
    out += '}';
  }
  out += "],\"icmp\":[";
  for (size_t i = 0; i < f.icmp.size(); ++i) {
    const IcmpReport& r = f.icmp[i];
    if (i > 0) out += ',';
    out += "{\"type\":" + std::to_string(r.type) + ",\"code\":" + std::to_string(r.code);
    if (r.kind == IcmpError::Kind::kFragNeeded) out += ",\"mtu\":" + std::to_string(r.mtu);
    out += ",\"from\":";
    JsonString(out, FormatAddress(r.from));
    out += ",\"about\":";
    JsonString(out, r.about == kToServer ? "to_server" : "to_client");
    out += ",\"point\":";
    JsonString(out, r.point);
    out += ",\"ts_ns\":" + std::to_string(r.ts_ns) + ",\"count\":" + std::to_string(r.count) + "}";
  }
  out += "]}\n";
  return out;
}

std::string FormatSummary(const Report& r) {
  size_t problems = 0;
  for (const FlowReport& f : r.flows) problems += f.problem ? 1 : 0;
  std::string out = std::to_string(r.flows.size()) + " flows (" + std::to_string(problems) +
                    " with a problem) from " + std::to_string(r.packets) + " packets at " +
                    std::to_string(r.points.size()) + " capture points";
  std::string names;
  for (const std::string& p : r.points) names += (names.empty() ? "" : ", ") + p;
  out += names.empty() ? "\n" : ": " + names + "\n";
  for (const ClockEstimate& c : r.clocks) out += DescribeClock(c) + "\n";
  out += "packets seen within " + Ms(static_cast<int64_t>(r.grace_ns)) +
         " ms of the capture's end are not called lost (they may still have been on their way)\n";
  if (r.packets_beyond_flow_cap > 0) {
    out += std::to_string(r.packets_beyond_flow_cap) +
           " packets of flows beyond the flow cap were not analysed\n";
  }
  if (!r.skipped.empty()) {
    std::string skipped;
    for (const auto& [reason, count] : r.skipped) {
      skipped += (skipped.empty() ? "" : ", ") + std::to_string(count) + " " + reason;
    }
    out += "not part of a flow: " + skipped + "\n";
  }
  if (r.signatures_dropped > 0) {
    out += "clock estimate from the first packets only: " + std::to_string(r.signatures_dropped) +
           " packets beyond the signature cap were not matched across points\n";
  }
  return out;
}

std::string FormatText(const Report& r) {
  std::string out = FormatSummary(r);
  for (const FlowReport& f : r.flows) {
    const Endpoints& e = f.client_to_server;
    // Appended piece by piece, as in DirectionSummary (GCC 12's false -Wrestrict).
    out += '\n';
    out += ProtocolName(e.protocol);
    out += ' ';
    out += FormatEndpoint(e.src, e.protocol, e.src_port);
    out += " -> ";
    out += FormatEndpoint(e.dst, e.protocol, e.dst_port);
    if (f.problem) out += "  PROBLEM";
    out += '\n';
    for (const Verdict& v : f.verdicts) out += "  " + v.text + "\n";
    for (const PointStats& p : f.points) {
      if (!p.Seen()) {
        out += "    " + p.point + ": not seen\n";
        continue;
      }
      uint64_t first = UINT64_MAX, last = 0;
      for (const DirectionStats& d : p.dir) {
        if (d.packets == 0) continue;
        first = std::min(first, d.first_ns);
        last = std::max(last, d.last_ns);
      }
      out += "    " + p.point + ": " + FormatTime(first) + " .. " + FormatTime(last) +
             "  to server " + DirectionSummary(p.dir[kToServer]) + ", to client " +
             DirectionSummary(p.dir[kToClient]) + "\n";
    }
  }
  return out;
}

}  // namespace capd::paths
