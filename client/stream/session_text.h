#pragma once
// The words capctl says about a stream session: each SessionObserver event as the line users,
// scripts and tests read ("capturing on IFACE (agent A, link type 1, snaplen 262144)", "N packets
// written to F; dropped: ...", ...). One place for them; where the line goes is a subclass's
// choice: stderr for `capctl stream` and `capctl serve` (StderrSessionObserver), Wireshark's
// control pipes for the extcap.
//
// Thread-safety: as SessionObserver; the subclass's Emit is called from the event's thread.

#include <chrono>
#include <string>

#include "client/stream/session_observer.h"

namespace capd::client {

class SessionTextObserver : public SessionObserver {
 public:
  // What a line is about, so that a front end can pick some out (the extcap's status bar).
  enum class Line {
    kInterface,      // "capturing on ...", "new interface ..."
    kCarriers,       // "agent A excludes the connections carrying this stream: ..."
    kWarning,        // "warning: agent A: ..."
    kAgentEnded,     // "agent A ended: ..."
    kMessage,        // OnMessage's text
    kRefused,        // "agent A refused the stream: ..."
    kSummary,        // "N packets written to F; dropped: ... (why)"
    kSummaryDetail,  // the per-agent lines and the out-of-order line after it
    kAgentDropping,  // "agent A is dropping packets: the link to it is the bottleneck (...)"
    kLinkSummary,    // "received N MB from the agent ...", "agent A dropped N packets: ..."
                     // (before kSummary)
  };

  void OnInterface(const InterfaceSeen& interface) override;
  void OnCarriersExcluded(const AgentRef& agent, const std::string& carriers) override;
  void OnWarning(const AgentRef& agent, const std::string& warning) override;
  void OnAgentEnded(const AgentRef& agent, const FeedOutcome& outcome) override;
  void OnProgress(const Progress& /*progress*/) override {}
  void OnAgentDropping(const AgentDropping& dropping) override;
  void OnMessage(const std::string& message) override;
  void OnSummary(const SessionSummary& summary) override;

  // "850 B/s", "12.3 kB/s", "2.45 MB/s" (decimal units, as link speeds are sold).
  static std::string RateText(double bytes_per_second);
  // The progress as one short line for a status bar: "1200 packets, 30 dropped; link 2.45
  // MB/s", and while an agent drops, why ("; agent dropping: the link is the bottleneck").
  static std::string ProgressText(const Progress& progress);

 protected:
  // One line, without "capctl: " and without a newline.
  virtual void Emit(Line kind, const std::string& text) = 0;
};

// `capctl stream`'s reporter: every line on stderr as "capctl: TEXT", and on a terminal (when
// the capture does not go to stdout or a FIFO) a dumpcap-like progress line rewritten in place
// at most twice a second, with the link's throughput and, while an agent drops, its cause.
class StderrSessionObserver : public SessionTextObserver {
 public:
  // Call once the output is known: the progress line is shown only if `enabled` and stderr is a
  // terminal.
  void EnableLiveStatus(bool enabled);
  void OnProgress(const Progress& progress) override;
  void OnSummary(const SessionSummary& summary) override;

 protected:
  void Emit(Line kind, const std::string& text) override;

 private:
  using Clock = std::chrono::steady_clock;
  bool live_ = false;
  bool shown_ = false;
  Clock::time_point last_ = Clock::now();
  uint64_t last_packets_ = 0;
};

}  // namespace capd::client
