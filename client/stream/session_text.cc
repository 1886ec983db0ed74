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

}  // namespace

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
  std::fprintf(stderr, "\rPackets: %llu  dropped: %llu  rate: %.0f pkt/s   ",
               static_cast<unsigned long long>(progress.written),
               static_cast<unsigned long long>(progress.drops.total()), rate);
  last_ = now;
  last_packets_ = progress.written;
  shown_ = true;
}

void StderrSessionObserver::OnSummary(const SessionSummary& summary) {
  if (std::exchange(shown_, false)) std::fputc('\n', stderr);  // below the progress line
  SessionTextObserver::OnSummary(summary);
}

void StderrSessionObserver::Emit(Line /*kind*/, const std::string& text) {
  std::fprintf(stderr, "capctl: %s\n", text.c_str());
}

}  // namespace capd::client
