#pragma once
// What a StreamSession tells its front end (capctl stream's stderr, the Wireshark extcap's
// control pipes, capctl serve): events, never text to parse. Every call comes from the thread
// that runs the session (StreamSession::Run), except where noted; an observer must not block for
// long (the merger waits meanwhile) and must not call back into the session.

#include <cstdint>
#include <string>
#include <vector>

namespace capd::client {

// Which agent an event is about.
struct AgentRef {
  std::string address;  // as the user gave it (--agent)
  std::string name;     // as the agent names itself; empty until its first interface
};

// A new interface of the stream.
struct InterfaceSeen {
  AgentRef agent;
  std::string name;  // as written to the file: IFACE, or AGENT:IFACE with several agents
  std::string description;
  uint32_t link_type = 0;  // LINKTYPE_*
  uint32_t snaplen = 0;
  // An interface made by decapsulation (one per mirror session), not the capture's own.
  bool decapsulated = false;
  // A mirror capture interface left out of a pcap file (a pcap file has one link type, that of
  // the decapsulated frames).
  bool left_out = false;
};

// Why one agent's stream ended: one kind, one text, one exit-status contribution.
enum class FeedEnd {
  kCountReached,     // the agent's -c was reached
  kDurationReached,  // the agent's --duration was reached
  kAgentShutdown,    // the agent is shutting down
  kCaptureError,     // the agent's capture failed
  kCancelled,        // the agent says the stream was cancelled
  kUnknownReason,    // a StreamEnd with a reason this capctl does not know
  kStopped,   // capctl stopped it (interrupt, its own -c, a local error), or it ended cleanly
  kWentAway,  // the call failed after the capture had started, or on the way before it
  kRefused,   // the agent refused the stream
  kNoReason,  // the call ended without a StreamEnd and without an error
};

struct FeedOutcome {
  FeedEnd kind = FeedEnd::kStopped;
  // For messages: "duration reached", "agent went away: <why>", "refused: <why>", "stopped"...
  std::string text;
  // The agent's own words in its StreamEnd ("duration of 3000 ms reached"), may be empty.
  std::string detail;
  // text, then ": detail" when there is one.
  std::string Full() const { return detail.empty() ? text : text + ": " + detail; }
  // What this feed asks of the process's exit code: 0 done, 1 failure, 2 refused as asked.
  int exit_code = 0;
};

struct DropCounts {
  uint64_t kernel = 0;
  uint64_t interface = 0;
  uint64_t agent = 0;
  uint64_t total() const { return kernel + interface + agent; }
};

// The packet batches' bytes before and after the agents compressed them (their Statistics);
// both 0 when no agent compressed.
struct CompressionBytes {
  uint64_t uncompressed = 0;
  uint64_t compressed = 0;
};

// Packets written and drops so far; at most a few times a second (after each written round).
struct Progress {
  uint64_t written = 0;
  DropCounts drops;
};

// One agent's share of the summary.
struct AgentSummary {
  AgentRef agent;
  uint64_t written = 0;
  DropCounts drops;
  std::string decap_outcomes;  // "; tunnel packets: 120 decapsulated, ..." or empty
  FeedOutcome outcome;
};

struct SessionSummary {
  enum class Kind {
    kSummary,  // the capture ran (or several agents were asked): the counts below
    kRefused,  // the only agent refused the stream before it started: `refusal` says why
  };
  Kind kind = Kind::kSummary;
  std::string refusal;      // kRefused: DescribeRefusal of the agent's status
  AgentRef refused_agent;   // kRefused
  std::string output_name;  // "/tmp/x.pcapng", "stdout", "FIFO /tmp/f", ...
  uint64_t written = 0;
  DropCounts drops;
  std::string decap_outcomes;    // as in AgentSummary, for all agents
  CompressionBytes compression;  // for all agents
  // Why the session ended: "interrupted", "packet count reached", the agents' outcomes joined
  // with "; ", "the reader of stdout went away", "stopped: <local error>".
  std::string ending;
  // With several agents: one entry per agent, in the order given; empty with one agent.
  std::vector<AgentSummary> agents;
  uint64_t out_of_order = 0;  // packets written after the merge window (several agents)
  int exit_code = 0;
};

class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  virtual void OnInterface(const InterfaceSeen& interface) = 0;
  // The agent leaves the connections that carry this stream out of the capture: `carriers` says
  // which ("sshd[123] 10.0.0.1:22 ..."; several joined with "; "). Only when it changes; empty
  // when it no longer excludes any.
  virtual void OnCarriersExcluded(const AgentRef& agent, const std::string& carriers) = 0;
  // A relay or capture warning from the agent (printable text), once each time it changes.
  virtual void OnWarning(const AgentRef& agent, const std::string& warning) = 0;
  // One agent's stream is over (with several agents; with one the summary says it).
  virtual void OnAgentEnded(const AgentRef& agent, const FeedOutcome& outcome) = 0;
  virtual void OnProgress(const Progress& progress) = 0;
  // A message that is not one of the above (a connection that failed, an output that would not
  // close). May come before the session runs, or from the signal thread while connecting.
  virtual void OnMessage(const std::string& message) = 0;
  // Last: what was written and why the session ended.
  virtual void OnSummary(const SessionSummary& summary) = 0;
};

}  // namespace capd::client
