#include "client/stream/session_text.h"

#include <unistd.h>

#include <cstdio>
#include <utility>

namespace capd::client {
namespace {

std::string Format(const char* format, auto... args) {
  char text[512];
  std::snprintf(text, sizeof text, format, args...);
  return text;
}

// "dropped: K by kernel, I by interface, A by agent" and the decapsulation outcomes.
std::string DropsText(const DropCounts& drops, const std::string& decap) {
  return Format("dropped: %llu by kernel, %llu by interface, %llu by agent",
                static_cast<unsigned long long>(drops.kernel),
                static_cast<unsigned long long>(drops.interface),
                static_cast<unsigned long long>(drops.agent)) +
         decap;
}

// "; compressed 4.1:1 (52.3 MB sent as 12.8 MB)" when the agents compressed, else empty.
std::string CompressionText(const CompressionBytes& c) {
  if (c.compressed == 0) return "";
  return Format("; compressed %.1f:1 (%.1f MB sent as %.1f MB)",
                static_cast<double>(c.uncompressed) / static_cast<double>(c.compressed),
                static_cast<double>(c.uncompressed) / 1e6, static_cast<double>(c.compressed) / 1e6);
}

// What would help when the agent drops: less to send, or (over a link) fewer bytes for it.
constexpr char kLinkHelp[] = "a narrower filter, -s SNAPLEN or --compress would help";
constexpr char kOutputHelp[] = "a narrower filter or -s SNAPLEN would help";
constexpr char kCompressedLinkHelp[] =
    "a narrower filter or -s SNAPLEN would help (its batches are compressed already)";
const char* LinkHelp(const AgentDropping& d) {
  return d.compressed ? kCompressedLinkHelp : kLinkHelp;
}

std::string BytesText(uint64_t bytes) {
  if (bytes >= 1000 * 1000) return Format("%.2f MB", bytes / 1e6);
  if (bytes >= 1000) return Format("%.1f kB", bytes / 1e3);
  return Format("%llu B", static_cast<unsigned long long>(bytes));
}

}  // namespace

std::string SessionTextObserver::RateText(double bytes_per_second) {
  if (bytes_per_second >= 1e6) return Format("%.2f MB/s", bytes_per_second / 1e6);
  if (bytes_per_second >= 1e3) return Format("%.1f kB/s", bytes_per_second / 1e3);
  return Format("%.0f B/s", bytes_per_second);
}

std::string SessionTextObserver::ProgressText(const Progress& p) {
  std::string text =
      Format("%llu packets, %llu dropped; link ", static_cast<unsigned long long>(p.written),
             static_cast<unsigned long long>(p.drops.total())) +
      RateText(p.received_bytes_per_second);
  if (p.dropping == Bottleneck::kLink) text += "; agent dropping: the link is the bottleneck";
  if (p.dropping == Bottleneck::kOutput)
    text += "; agent dropping: capctl's output is the bottleneck";
  return text;
}

void SessionTextObserver::OnAgentDropping(const AgentDropping& d) {
  if (d.cause == Bottleneck::kOutput) {
    Emit(Line::kAgentDropping,
         "agent " + d.agent.address + " is dropping packets: capctl's output (" + d.output_name +
             ") is the bottleneck, not the link (" +
             Format("capctl waited for it %.0f %% of the time; ", 100 * d.output_wait_share) +
             RateText(d.received_bytes_per_second) + " received); " + kOutputHelp);
  } else {
    Emit(Line::kAgentDropping,
         "agent " + d.agent.address + " is dropping packets: the link to it is the bottleneck (" +
             RateText(d.received_bytes_per_second) + " received); " + LinkHelp(d));
  }
}

void SessionTextObserver::OnInterface(const InterfaceSeen& i) {
  if (i.left_out) {
    Emit(Line::kInterface,
         "capturing on " + i.name + " (agent " + i.agent.name + ", decapsulating)");
  } else if (i.decapsulated) {
    Emit(Line::kInterface, "new interface " + i.name + ": " + i.description);
  } else {
    Emit(Line::kInterface, "capturing on " + i.name + " (agent " + i.agent.name +
                               Format(", link type %u, snaplen %u)", i.link_type, i.snaplen));
  }
}

void SessionTextObserver::OnCarriersExcluded(const AgentRef& agent, const std::string& carriers) {
  if (carriers.empty()) return;
  Emit(Line::kCarriers,
       "agent " + agent.address + " excludes the connections carrying this stream: " + carriers);
}

void SessionTextObserver::OnWarning(const AgentRef& agent, const std::string& warning) {
  Emit(Line::kWarning, "warning: agent " + agent.address + ": " + warning);
}

void SessionTextObserver::OnAgentEnded(const AgentRef& agent, const FeedOutcome& outcome) {
  Emit(Line::kAgentEnded, "agent " + agent.address + " ended: " + outcome.Full());
}

void SessionTextObserver::OnMessage(const std::string& message) { Emit(Line::kMessage, message); }

void SessionTextObserver::OnSummary(const SessionSummary& s) {
  if (s.kind == SessionSummary::Kind::kRefused) {
    Emit(Line::kRefused, "agent " + s.refused_agent.address + " refused the stream: " + s.refusal);
    return;
  }
  // Before the summary line, which stays the last one with one agent (the extcap gives Wireshark
  // the last line as the reason).
  if (s.received_bytes > 0) {
    Emit(Line::kLinkSummary, "received " + BytesText(s.received_bytes) +
                                 (s.agents.empty() ? " from the agent" : " from the agents") +
                                 Format(" in %.1f s (", s.seconds) +
                                 RateText(s.seconds > 0 ? s.received_bytes / s.seconds : 0) + ")");
  }
  for (const AgentDropping& d : s.agent_drops) {
    const std::string dropped =
        "agent " + d.agent.address +
        Format(" dropped %llu packets: ", static_cast<unsigned long long>(d.dropped));
    if (d.cause == Bottleneck::kOutput) {
      Emit(Line::kLinkSummary, dropped + "capctl's output (" + d.output_name +
                                   ") was the bottleneck, not the link; " + kOutputHelp);
    } else if (d.cause == Bottleneck::kLink) {
      Emit(Line::kLinkSummary, dropped + "the link to it was the bottleneck; " + LinkHelp(d));
    } else {
      Emit(Line::kLinkSummary, dropped + "its stream did not keep up; " + LinkHelp(d));
    }
  }
  if (!s.trigger.empty()) Emit(Line::kLinkSummary, s.trigger);
  Emit(Line::kSummary,
       Format("%llu packets written to ", static_cast<unsigned long long>(s.written)) +
           s.output_name + "; " + DropsText(s.drops, s.decap_outcomes) +
           CompressionText(s.compression) + " (" + s.ending + ")");
  for (const AgentSummary& a : s.agents) {
    // The agent's short reason: its own words are in the "ended" line and the file.
    Emit(Line::kSummaryDetail,
         "  agent " + (a.agent.name.empty() ? std::string("?") : a.agent.name) + " (" +
             a.agent.address +
             "): " + Format("%llu packets; ", static_cast<unsigned long long>(a.written)) +
             DropsText(a.drops, a.decap_outcomes) + " (" + a.outcome.text + ")");
  }
  if (s.out_of_order > 0) {
    Emit(Line::kSummaryDetail,
         Format("  %llu packets arrived after the merge window and are out of order",
                static_cast<unsigned long long>(s.out_of_order)));
  }
}

void StderrSessionObserver::EnableLiveStatus(bool enabled) {
  live_ = enabled && isatty(STDERR_FILENO);
}

void StderrSessionObserver::OnProgress(const Progress& progress) {
  if (!live_) return;
  const Clock::time_point now = Clock::now();
  if (now - last_ < std::chrono::milliseconds(500)) return;
  const double seconds = std::chrono::duration<double>(now - last_).count();
  const double rate =
      last_packets_ <= progress.written ? (progress.written - last_packets_) / seconds : 0;
  const char* dropping = progress.dropping == Bottleneck::kLink     ? "  (agent dropping: link)"
                         : progress.dropping == Bottleneck::kOutput ? "  (agent dropping: output)"
                                                                    : "";
  if (!progress.trigger.empty()) {
    std::fprintf(stderr, "\r%s; link: %s   ", progress.trigger.c_str(),
                 RateText(progress.received_bytes_per_second).c_str());
  } else {
    std::fprintf(stderr, "\rPackets: %llu  dropped: %llu  rate: %.0f pkt/s  link: %s%s   ",
                 static_cast<unsigned long long>(progress.written),
                 static_cast<unsigned long long>(progress.drops.total()), rate,
                 RateText(progress.received_bytes_per_second).c_str(), dropping);
  }
  last_ = now;
  last_packets_ = progress.written;
  shown_ = true;
}

void StderrSessionObserver::OnSummary(const SessionSummary& summary) {
  if (std::exchange(shown_, false)) std::fputc('\n', stderr);  // below the progress line
  SessionTextObserver::OnSummary(summary);
}

void StderrSessionObserver::Emit(Line /*kind*/, const std::string& text) {
  if (std::exchange(shown_, false)) std::fputc('\n', stderr);  // below the progress line
  std::fprintf(stderr, "capctl: %s\n", text.c_str());
}

}  // namespace capd::client
