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
  kStopOnMatched,  // the agent's --stop-on matched and its --after/--after-count passed
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

// What limited an agent's stream when the agent dropped packets from its queue for this client
// (its "dropped by agent" count: the agent captured faster than capctl took the stream).
enum class Bottleneck {
  kNone,
  // capctl read everything the link delivered (its reader never waited for its output): the
  // link to the agent (a tunnel, a WAN) carries less than the capture.
  kLink,
  // capctl's reader waited for its own output (a slow FIFO or pipe reader, a slow disk), so it
  // stopped reading the link: capctl's output is the bottleneck, not the link.
  kOutput,
};

// Packets written and drops so far; at most a few times a second (after each written round).
struct Progress {
  uint64_t written = 0;
  DropCounts drops;
  // Wire bytes received from all agents so far (the size of each message as it arrived).
  uint64_t received_bytes = 0;
  // Received bytes per second over the last interval of about a second; 0 until one has passed.
  double received_bytes_per_second = 0;
  // The figure above is new since the previous Progress (about once a second).
  bool rate_updated = false;
  // While an agent is dropping (an episode, see AgentDropping): why; kNone otherwise.
  Bottleneck dropping = Bottleneck::kNone;
  // --start-on while an agent waits: "waiting for --start-on: N packets (M MB) of history held,
  // D dropped"; empty otherwise.
  std::string trigger = {};
};

// An agent began dropping packets for this stream (an episode: it ends once the agent has dropped
// nothing new for a while, see client/stream/link_monitor.h). Told once per episode.
struct AgentDropping {
  AgentRef agent;
  Bottleneck cause = Bottleneck::kLink;
  uint64_t dropped = 0;                  // the agent's drop count for this stream so far
  double received_bytes_per_second = 0;  // from this agent, over the last interval
  // The share of the last interval(s) capctl's reader spent waiting for its output, 0..1.
  double output_wait_share = 0;
  std::string output_name;  // as in SessionSummary: "/tmp/x.pcapng", "FIFO /tmp/f", ...
  // The agent already compresses its batches (its statistics count compressed bytes), so
  // --compress is no remedy.
  bool compressed = false;
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
  // Wire bytes received from all agents, over `seconds` (from the start of the session to its
  // end); 0 when nothing was received.
  uint64_t received_bytes = 0;
  double seconds = 0;
  // One entry per agent that dropped packets from its queue (drops.agent > 0), in the order the
  // agents were given: the cause seen (kOutput if capctl's output held it back at any time;
  // kNone if no measurement saw the count grow).
  std::vector<AgentDropping> agent_drops;
  // --start-on/--stop-on: "start-on matched at T; N packets of history sent[; D ... dropped by
  // the agent's bound]" or "start-on never matched ..."; empty without triggers.
  std::string trigger = {};
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
  // An agent began dropping packets for this stream (once per episode). Optional.
  virtual void OnAgentDropping(const AgentDropping& /*dropping*/) {}
  // A message that is not one of the above (a connection that failed, an output that would not
  // close). May come before the session runs, or from the signal thread while connecting.
  virtual void OnMessage(const std::string& message) = 0;
  // Last: what was written and why the session ended.
  virtual void OnSummary(const SessionSummary& summary) = 0;
};

}  // namespace capd::client
