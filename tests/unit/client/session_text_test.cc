// The words capctl says about a session (client/stream/session_text.h): users, scripts and the
// integration tests read these lines, so each event's line is checked word for word. And the
// extcap's observer (client/extcap/extcap_observer.h) through real FIFOs, read as Wireshark reads
// its control pipe.

#include "client/stream/session_text.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "client/extcap/control_pipe.h"
#include "client/extcap/extcap_observer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::client {
namespace {

class Lines final : public SessionTextObserver {
 public:
  std::vector<std::string> lines;

 protected:
  void Emit(Line /*kind*/, const std::string& text) override { lines.push_back(text); }
};

SessionSummary TwoAgentSummary() {
  SessionSummary s;
  s.output_name = "/tmp/x.pcapng";
  s.written = 30;
  s.drops = {1, 2, 3};
  s.ending = "duration reached: duration of 1000 ms reached; agent went away: reset";
  s.exit_code = 1;
  AgentSummary alpha;
  alpha.agent = {"10.0.0.1:50051", "alpha"};
  alpha.written = 20;
  alpha.drops = {1, 0, 3};
  alpha.decap_outcomes = "; tunnel packets: 20 decapsulated";
  alpha.outcome = {FeedEnd::kDurationReached, "duration reached", "duration of 1000 ms reached", 0};
  AgentSummary bravo;
  bravo.agent = {"10.0.0.2:50051", ""};
  bravo.written = 10;
  bravo.drops = {0, 2, 0};
  bravo.outcome = {FeedEnd::kWentAway, "agent went away: reset", "", 1};
  s.agents = {alpha, bravo};
  s.out_of_order = 4;
  return s;
}

TEST(SessionTextTest, EachEventSaysTodaysWords) {
  Lines out;
  InterfaceSeen eth0;
  eth0.agent = {"127.0.0.1:50051", "host-a"};
  eth0.name = "eth0";
  eth0.link_type = 1;
  eth0.snaplen = 262144;
  out.OnInterface(eth0);
  InterfaceSeen mirror = eth0;
  mirror.left_out = true;
  out.OnInterface(mirror);
  InterfaceSeen session = eth0;
  session.name = "vxlan-7";
  session.description = "VXLAN VNI 7 from 10.0.0.9";
  session.decapsulated = true;
  out.OnInterface(session);
  out.OnCarriersExcluded({"127.0.0.1:50051", "host-a"}, "");  // nothing excluded: nothing said
  out.OnCarriersExcluded({"127.0.0.1:50051", "host-a"}, "sshd[12] 10.0.0.1:22");
  out.OnWarning({"127.0.0.1:50051", "host-a"}, "could not identify the relay");
  out.OnAgentEnded({"10.0.0.2:50051", ""},
                   {FeedEnd::kRefused, "refused: permission denied: uid 1000", "", 2});
  out.OnMessage("cannot reach agent at 10.0.0.3:50051: timeout");
  out.OnSummary(TwoAgentSummary());
  EXPECT_EQ(
      out.lines,
      (std::vector<std::string>{
          "capturing on eth0 (agent host-a, link type 1, snaplen 262144)",
          "capturing on eth0 (agent host-a, decapsulating)",
          "new interface vxlan-7: VXLAN VNI 7 from 10.0.0.9",
          "agent 127.0.0.1:50051 excludes the connections carrying this stream: sshd[12] "
          "10.0.0.1:22",
          "warning: agent 127.0.0.1:50051: could not identify the relay",
          "agent 10.0.0.2:50051 ended: refused: permission denied: uid 1000",
          "cannot reach agent at 10.0.0.3:50051: timeout",
          "30 packets written to /tmp/x.pcapng; dropped: 1 by kernel, 2 by interface, 3 by "
          "agent (duration reached: duration of 1000 ms reached; agent went away: reset)",
          "  agent alpha (10.0.0.1:50051): 20 packets; dropped: 1 by kernel, 0 by interface, "
          "3 by agent; tunnel packets: 20 decapsulated (duration reached)",
          "  agent ? (10.0.0.2:50051): 10 packets; dropped: 0 by kernel, 2 by interface, 0 by "
          "agent (agent went away: reset)",
          "  4 packets arrived after the merge window and are out of order",
      }));
}

TEST(SessionTextTest, RefusedSingleAgentIsOneLine) {
  Lines out;
  SessionSummary s;
  s.kind = SessionSummary::Kind::kRefused;
  s.refused_agent = {"127.0.0.1:50051", ""};
  s.refusal = "too busy: 16 streams";
  out.OnSummary(s);
  EXPECT_EQ(
      out.lines,
      (std::vector<std::string>{"agent 127.0.0.1:50051 refused the stream: too busy: 16 streams"}));
}

// The link's throughput and the agents' drops: the episode lines (link, output) and the summary's
// lines after the counts, word for word.
TEST(SessionTextTest, AgentDropsNameTheBottleneckAndWhatWouldHelp) {
  Lines out;
  AgentDropping link;
  link.agent = {"ssh://ops@10.0.0.1", "host-a"};
  link.cause = Bottleneck::kLink;
  link.dropped = 120;
  link.received_bytes_per_second = 2'456'000;
  link.output_name = "FIFO /tmp/f";
  out.OnAgentDropping(link);
  AgentDropping output = link;
  output.cause = Bottleneck::kOutput;
  output.output_wait_share = 0.854;
  out.OnAgentDropping(output);

  SessionSummary s;
  s.output_name = "FIFO /tmp/f";
  s.written = 9000;
  s.drops = {0, 0, 4000};
  s.ending = "interrupted";
  s.received_bytes = 24'560'000;
  s.seconds = 10.04;
  AgentDropping unknown = link;
  unknown.cause = Bottleneck::kNone;
  s.agent_drops = {link, output, unknown};
  s.agent_drops[0].dropped = 4000;
  out.OnSummary(s);
  EXPECT_EQ(out.lines,
            (std::vector<std::string>{
                "agent ssh://ops@10.0.0.1 is dropping packets: the link to it is the bottleneck "
                "(2.46 MB/s received); a narrower filter, -s SNAPLEN or --compress would help",
                "agent ssh://ops@10.0.0.1 is dropping packets: capctl's output (FIFO /tmp/f) is "
                "the bottleneck, not the link (capctl waited for it 85 % of the time; 2.46 MB/s "
                "received); a narrower filter or -s SNAPLEN would help",
                "received 24.56 MB from the agent in 10.0 s (2.45 MB/s)",
                "agent ssh://ops@10.0.0.1 dropped 4000 packets: the link to it was the "
                "bottleneck; a narrower filter, -s SNAPLEN or --compress would help",
                "agent ssh://ops@10.0.0.1 dropped 120 packets: capctl's output (FIFO /tmp/f) was "
                "the bottleneck, not the link; a narrower filter or -s SNAPLEN would help",
                "agent ssh://ops@10.0.0.1 dropped 120 packets: its stream did not keep up; a "
                "narrower filter, -s SNAPLEN or --compress would help",
                // Last: the extcap gives Wireshark the last line as the reason the capture ended.
                "9000 packets written to FIFO /tmp/f; dropped: 0 by kernel, 0 by interface, 4000 "
                "by agent (interrupted)",
            }));
}

// An agent that compresses already: --compress is no remedy, so it is not offered.
TEST(SessionTextTest, CompressedAgentsAreNotToldToCompress) {
  Lines out;
  AgentDropping d;
  d.agent = {"ssh://ops@10.0.0.1", "host-a"};
  d.cause = Bottleneck::kLink;
  d.dropped = 50;
  d.received_bytes_per_second = 2'456'000;
  d.compressed = true;
  out.OnAgentDropping(d);
  SessionSummary s;
  s.output_name = "stdout";
  s.ending = "interrupted";
  s.drops.agent = 50;
  s.agent_drops = {d};
  out.OnSummary(s);
  EXPECT_EQ(out.lines,
            (std::vector<std::string>{
                "agent ssh://ops@10.0.0.1 is dropping packets: the link to it is the bottleneck "
                "(2.46 MB/s received); a narrower filter or -s SNAPLEN would help (its batches "
                "are compressed already)",
                "agent ssh://ops@10.0.0.1 dropped 50 packets: the link to it was the bottleneck; "
                "a narrower filter or -s SNAPLEN would help (its batches are compressed already)",
                "0 packets written to stdout; dropped: 0 by kernel, 0 by interface, 50 by agent "
                "(interrupted)",
            }));
}

// Several agents: "from the agents"; nothing received: no line at all.
TEST(SessionTextTest, ReceivedLineOnlyWhenSomethingArrived) {
  Lines several;
  SessionSummary s = TwoAgentSummary();
  s.received_bytes = 1500;
  s.seconds = 2;
  several.OnSummary(s);
  EXPECT_EQ(several.lines.front(), "received 1.5 kB from the agents in 2.0 s (750 B/s)");
  Lines none;
  none.OnSummary(TwoAgentSummary());
  EXPECT_EQ(none.lines, std::vector<std::string>(several.lines.begin() + 1, several.lines.end()));
}

TEST(SessionTextTest, RatesAndProgressInDecimalUnits) {
  EXPECT_EQ(SessionTextObserver::RateText(0), "0 B/s");
  EXPECT_EQ(SessionTextObserver::RateText(999), "999 B/s");
  EXPECT_EQ(SessionTextObserver::RateText(12'345), "12.3 kB/s");
  EXPECT_EQ(SessionTextObserver::RateText(2'500'000), "2.50 MB/s");
  Progress p;
  p.written = 1200;
  p.drops = {1, 2, 27};
  p.received_bytes_per_second = 2'450'000;
  EXPECT_EQ(SessionTextObserver::ProgressText(p), "1200 packets, 30 dropped; link 2.45 MB/s");
  p.dropping = Bottleneck::kLink;
  EXPECT_EQ(SessionTextObserver::ProgressText(p),
            "1200 packets, 30 dropped; link 2.45 MB/s; agent dropping: the link is the bottleneck");
  p.dropping = Bottleneck::kOutput;
  EXPECT_EQ(SessionTextObserver::ProgressText(p),
            "1200 packets, 30 dropped; link 2.45 MB/s; agent dropping: capctl's output is the "
            "bottleneck");
}

// The framed packets on control-out: (control, command, payload) each.
struct ControlPacket {
  int control;
  int command;
  std::string payload;
};

std::vector<ControlPacket> ParseControl(const std::string& bytes) {
  std::vector<ControlPacket> packets;
  size_t at = 0;
  while (at + 6 <= bytes.size() && bytes[at] == 'T') {
    const size_t length = (static_cast<uint8_t>(bytes[at + 1]) << 16) |
                          (static_cast<uint8_t>(bytes[at + 2]) << 8) |
                          static_cast<uint8_t>(bytes[at + 3]);
    if (length < 2 || at + 4 + length > bytes.size()) break;
    packets.push_back({static_cast<uint8_t>(bytes[at + 4]), static_cast<uint8_t>(bytes[at + 5]),
                       bytes.substr(at + 6, length - 2)});
    at += 4 + length;
  }
  return packets;
}

// The extcap's log gets every line as capctl stream prints it; the status bar the capture's
// interface, warnings, the progress once a second, an agent's drops and the summary, as
// "capd: ..."; stderr nothing (the lines are kept for a
// failure).
TEST(ExtcapObserverTest, LogGetsEveryLineStatusBarTheImportantOnes) {
  capfile::testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string in = dir.File("control-in"), out = dir.File("control-out");
  ASSERT_EQ(mkfifo(in.c_str(), 0600), 0);
  ASSERT_EQ(mkfifo(out.c_str(), 0600), 0);
  capfile::testing::UniqueFd reader(open(out.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_GE(reader.get(), 0);
  std::vector<std::string> lines;
  {
    ControlPipes pipes(in, out);
    ExtcapObserver observer(pipes);
    InterfaceSeen eth0;
    eth0.agent = {"127.0.0.1:50051", "host-a"};
    eth0.name = "eth0";
    eth0.link_type = 1;
    eth0.snaplen = 262144;
    observer.OnInterface(eth0);
    InterfaceSeen session = eth0;
    session.name = "vxlan-7";
    session.description = "VXLAN VNI 7";
    session.decapsulated = true;
    observer.OnInterface(session);
    observer.OnCarriersExcluded(eth0.agent, "sshd[12] 10.0.0.1:22");
    observer.OnWarning(eth0.agent, "could not identify the relay");
    // Progress reaches the status bar only with a new rate (about once a second).
    Progress progress;
    progress.written = 3;
    progress.received_bytes_per_second = 1'000'000;
    observer.OnProgress(progress);
    progress.rate_updated = true;
    observer.OnProgress(progress);
    AgentDropping dropping;
    dropping.agent = eth0.agent;
    dropping.received_bytes_per_second = 1'000'000;
    observer.OnAgentDropping(dropping);
    SessionSummary s;
    s.output_name = "FIFO /tmp/wireshark.fifo";
    s.written = 5;
    s.ending = "interrupted";
    observer.OnSummary(s);
    lines = observer.lines();
  }
  std::string bytes;
  char buffer[65536];
  for (ssize_t n; (n = read(reader.get(), buffer, sizeof buffer)) > 0;) bytes.append(buffer, n);

  const std::string summary =
      "5 packets written to FIFO /tmp/wireshark.fifo; dropped: 0 by kernel, 0 by interface, 0 by "
      "agent (interrupted)";
  const std::string dropped =
      "agent 127.0.0.1:50051 is dropping packets: the link to it is the bottleneck (1.00 MB/s "
      "received); a narrower filter, -s SNAPLEN or --compress would help";
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "capctl: capturing on eth0 (agent host-a, link type 1, snaplen 262144)",
                       "capctl: new interface vxlan-7: VXLAN VNI 7",
                       "capctl: agent 127.0.0.1:50051 excludes the connections carrying this "
                       "stream: sshd[12] 10.0.0.1:22",
                       "capctl: warning: agent 127.0.0.1:50051: could not identify the relay",
                       "capctl: " + dropped,
                       "capctl: " + summary,
                   }));
  std::vector<std::string> log, status;
  for (const ControlPacket& p : ParseControl(bytes)) {
    if (p.command == ControlPipes::kCommandAdd) {
      EXPECT_EQ(p.control, ControlPipes::kLoggerControl);
      log.push_back(p.payload);
    } else if (p.command == ControlPipes::kCommandStatusbar) {
      status.push_back(p.payload);
    }
  }
  std::vector<std::string> expected_log;
  for (const std::string& line : lines) expected_log.push_back(line + "\n");
  EXPECT_EQ(log, expected_log);
  EXPECT_EQ(status, (std::vector<std::string>{
                        "capd: capturing on eth0 (agent host-a, link type 1, snaplen 262144)",
                        "capd: warning: agent 127.0.0.1:50051: could not identify the relay",
                        "capd: 3 packets, 0 dropped; link 1.00 MB/s",
                        "capd: " + dropped,
                        "capd: " + summary,
                    }));
}

}  // namespace
}  // namespace capd::client
