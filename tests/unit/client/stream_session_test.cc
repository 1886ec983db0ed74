// StreamSession and its merger without an agent: feeds filled by hand with capd.v1 messages (as
// an agent sends them), the session's output read back by a writer that records what it got, or
// by libpcap from a real pcapng file; the session's events by an observer that records them.
//
// Feeds that are already done when the session runs are merged without waiting (nothing more can
// come from them); the reorder window is tested on the Merger itself with a given clock.

#include "client/stream/stream_session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "capfile/stream_to_file.h"
#include "client/cli/options.h"
#include "client/output/capture_files.h"
#include "client/stream/feed.h"
#include "client/stream/merger.h"
#include "client/stream/session_observer.h"
#include "tests/unit/capfile/capture_file_test_util.h"

namespace capd::client {
namespace {

using capfile::testing::ReadWithLibpcap;
using capfile::testing::TempDir;

constexpr uint32_t kEthernet = 1;

class FakeFeed final : public Feed {
 public:
  using Feed::Feed;
  void Start() override { started_reading = true; }
  void Cancel() override { cancelled = true; }

  void Push(v1::StreamResponse message,
            std::chrono::steady_clock::time_point arrived = std::chrono::steady_clock::now()) {
    const size_t bytes = message.has_packets() ? message.packets().data().size() : 0;
    queued_bytes += bytes;
    queue.push_back(
        {std::make_unique<v1::StreamResponse>(std::move(message)), arrived, std::nullopt, {}});
  }
  // The call is over: the messages pushed are all there is.
  void Finish(grpc::Status final_status = grpc::Status::OK) {
    status = std::move(final_status);
    done = true;
  }

  bool started_reading = false;
  bool cancelled = false;
};

// A feed with a reader thread of its own that queues its messages as AgentFeed's does
// (Feed::QueueFromReader), each one once the merger has taken everything before it, so that a
// batch finds the queue empty (as on a link that is not backlogged). Then the call ends OK.
class ThreadedFeed final : public Feed {
 public:
  ThreadedFeed(size_t index, std::string address, FeedHub& hub,
               std::vector<v1::StreamResponse> messages)
      : Feed(index, std::move(address)), hub_(hub), messages_(std::move(messages)) {}
  ~ThreadedFeed() override {
    Cancel();
    {
      std::lock_guard lock(hub_.mu);  // a reader between its check and its wait is waiting now
    }
    hub_.changed.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Start() override {
    thread_ = std::thread([this] { Read(); });
    reader_id = thread_.get_id();
  }
  // Called with the hub's lock held (the merger's) or without (the destructor).
  void Cancel() override {
    cancelled_ = true;
    hub_.changed.notify_all();
  }

  std::thread::id reader_id;  // set by Start

 private:
  void Read() {
    for (v1::StreamResponse& message : messages_) {
      {
        std::unique_lock lock(hub_.mu);
        hub_.changed.wait(lock, [&] { return queue.empty() || cancelled_; });
        if (cancelled_) break;
      }
      const size_t wire_bytes = message.ByteSizeLong();
      QueueFromReader(hub_, std::make_shared<v1::StreamResponse>(std::move(message)), wire_bytes,
                      SIZE_MAX);
    }
    {
      std::lock_guard lock(hub_.mu);
      done = true;
      ++hub_.arrivals;
    }
    hub_.changed.notify_all();
  }

  FeedHub& hub_;
  std::vector<v1::StreamResponse> messages_;
  std::thread thread_;
  std::atomic<bool> cancelled_{false};
};

v1::StreamResponse Interface(uint32_t index, const std::string& name, const std::string& agent,
                             uint32_t link_type = kEthernet) {
  v1::StreamResponse m;
  v1::InterfaceDescription* d = m.mutable_interface();
  d->set_index(index);
  d->set_name(name);
  d->set_agent_name(agent);
  d->set_link_type(link_type);
  d->set_snaplen(262144);
  d->set_capture_start_ns(1'000);
  return m;
}

struct TestPacket {
  uint32_t interface_index;
  uint64_t timestamp_ns;
  std::string bytes;
  std::string comment;
};

v1::StreamResponse Batch(const std::vector<TestPacket>& packets) {
  v1::StreamResponse m;
  v1::PacketBatch* b = m.mutable_packets();
  for (size_t i = 0; i < packets.size(); ++i) {
    const TestPacket& p = packets[i];
    b->add_timestamp_ns(p.timestamp_ns);
    b->add_interface_index(p.interface_index);
    b->add_original_length(static_cast<uint32_t>(p.bytes.size()));
    b->add_captured_length(static_cast<uint32_t>(p.bytes.size()));
    b->mutable_data()->append(p.bytes);
    if (!p.comment.empty()) {
      b->add_comment_packet(static_cast<uint32_t>(i));
      b->add_comment(p.comment);
    }
  }
  return m;
}

v1::StreamResponse Statistics(uint32_t interface_index, uint64_t kernel_drops,
                              uint64_t agent_drops) {
  v1::StreamResponse m;
  v1::Statistics* s = m.mutable_statistics();
  s->set_timestamp_ns(9'000);
  v1::InterfaceStatistics* i = s->add_interfaces();
  i->set_interface_index(interface_index);
  i->set_kernel_drops(kernel_drops);
  i->set_agent_drops(agent_drops);
  return m;
}

v1::StreamResponse End(v1::StreamEnd::Reason reason, const std::string& message = "") {
  v1::StreamResponse m;
  m.mutable_end()->set_reason(reason);
  m.mutable_end()->set_message(message);
  return m;
}

// The test's own reader of the session's output: everything the writer was asked to do.
class RecordingWriter final : public CaptureWriter {
 public:
  struct Packet {
    uint32_t interface_index;
    uint64_t timestamp_ns;
    std::string bytes;
    std::string comment;
  };
  Status AddInterface(const InterfaceInfo& info) override {
    interfaces.push_back(info);
    return Status::Ok();
  }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t interface_index, uint64_t timestamp_ns, uint32_t /*original*/,
                     std::span<const uint8_t> data, std::string_view comment) override {
    EXPECT_LT(interface_index, interfaces.size()) << "a packet for an interface not added";
    packets.push_back({interface_index, timestamp_ns,
                       std::string(reinterpret_cast<const char*>(data.data()), data.size()),
                       std::string(comment)});
    packet_threads.push_back(std::this_thread::get_id());
    return Status::Ok();
  }
  Status WriteStatistics(uint32_t interface_index, const InterfaceCounters& counters) override {
    statistics.emplace_back(interface_index, counters);
    return Status::Ok();
  }
  Status Flush() override {
    ++flushes;
    if (flushes == slow_flush) std::this_thread::sleep_for(std::chrono::milliseconds(80));
    if (flushes == fail_flush) {
      failed_flush_thread = std::this_thread::get_id();
      return Internal("write(out.pcapng): No space left on device");
    }
    return Status::Ok();
  }
  Status Close() override {
    closed = true;
    return Status::Ok();
  }

  std::vector<InterfaceInfo> interfaces;
  std::vector<Packet> packets;
  std::vector<std::thread::id> packet_threads;  // the thread that wrote each packet
  std::vector<std::pair<uint32_t, InterfaceCounters>> statistics;
  int flushes = 0;
  int fail_flush = 0;  // this flush (counted from 1) fails; 0: none
  int slow_flush = 0;  // this flush takes 80 ms (a stalled disk); 0: none
  std::thread::id failed_flush_thread;
  bool closed = false;
};

class RecordingObserver final : public SessionObserver {
 public:
  void OnInterface(const InterfaceSeen& interface) override { interfaces.push_back(interface); }
  void OnCarriersExcluded(const AgentRef& agent, const std::string& carriers) override {
    carriers_excluded.emplace_back(agent.address, carriers);
  }
  void OnWarning(const AgentRef& agent, const std::string& warning) override {
    warnings.emplace_back(agent.address, warning);
  }
  void OnAgentEnded(const AgentRef& agent, const FeedOutcome& outcome) override {
    ended.emplace_back(agent.address, outcome);
  }
  void OnProgress(const Progress& progress) override { last_progress = progress; }
  void OnAgentDropping(const AgentDropping& d) override {
    dropping.push_back(d);
    dropping_before_summary = summaries == 0;
  }
  void OnMessage(const std::string& message) override { messages.push_back(message); }
  void OnSummary(const SessionSummary& s) override {
    ++summaries;
    summary = s;
  }

  std::vector<InterfaceSeen> interfaces;
  std::vector<std::pair<std::string, std::string>> carriers_excluded;
  std::vector<std::pair<std::string, std::string>> warnings;
  std::vector<std::pair<std::string, FeedOutcome>> ended;
  Progress last_progress;
  std::vector<AgentDropping> dropping;
  bool dropping_before_summary = false;
  std::vector<std::string> messages;
  int summaries = 0;
  SessionSummary summary;
};

StreamOptions DefaultOptions() {
  StreamOptions options;
  options.format = FileFormat::kPcapng;
  return options;
}

// Adds feeds named "agent-0", "agent-1", ... to `session`; returns them for filling.
std::vector<FakeFeed*> AddFeeds(StreamSession& session, size_t count) {
  std::vector<FakeFeed*> feeds;
  for (size_t i = 0; i < count; ++i) {
    auto feed = std::make_unique<FakeFeed>(i, "agent-" + std::to_string(i));
    feeds.push_back(feed.get());
    session.AddFeed(std::move(feed));
  }
  return feeds;
}

std::vector<uint64_t> Timestamps(const std::vector<RecordingWriter::Packet>& packets) {
  std::vector<uint64_t> out;
  for (const auto& p : packets) out.push_back(p.timestamp_ns);
  return out;
}

// Three agents whose batches interleave in time: one file in timestamp order, each packet under
// its own agent's interface, and each agent's end said the one way.
TEST(StreamSessionTest, MergesThreeAgentsInTimeOrderUnderTheirOwnInterfaces) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 3);
  // alpha: two batches; bravo: two interfaces; charlie: one batch, then the agent went away.
  feeds[0]->Push(Interface(0, "eth0", "alpha"));
  feeds[0]->Push(Batch({{0, 100, "a1", ""}, {0, 400, "a2", "note"}}));
  feeds[0]->Push(Batch({{0, 700, "a3", ""}}));
  feeds[0]->Push(End(v1::StreamEnd::DURATION_REACHED, "duration of 1000 ms reached"));
  feeds[0]->Finish();
  feeds[1]->Push(Interface(0, "eth0", "bravo"));
  feeds[1]->Push(Interface(1, "eth1", "bravo"));
  feeds[1]->Push(Batch({{1, 200, "b1", ""}, {0, 300, "b2", ""}}));
  feeds[1]->Push(Batch({{1, 800, "b3", ""}}));
  feeds[1]->Push(Statistics(1, 5, 2));
  feeds[1]->Push(End(v1::StreamEnd::DURATION_REACHED));
  feeds[1]->Finish();
  feeds[2]->Push(Interface(0, "ens5", "charlie"));
  feeds[2]->Push(Batch({{0, 50, "c1", ""}, {0, 500, "c2", ""}}));
  feeds[2]->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset"));

  const int code = session.Run();

  EXPECT_EQ(code, 1) << "an agent that went away is a failure";
  for (FakeFeed* feed : feeds) EXPECT_TRUE(feed->started_reading);
  EXPECT_EQ(Timestamps(writer.packets),
            (std::vector<uint64_t>{50, 100, 200, 300, 400, 500, 700, 800}));
  // Interfaces in the order their descriptions were taken, named AGENT:IFACE.
  ASSERT_EQ(writer.interfaces.size(), 4u);
  std::vector<std::string> names;
  for (const auto& i : writer.interfaces) names.push_back(i.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"alpha:eth0", "bravo:eth0", "bravo:eth1", "charlie:ens5"}));
  for (const auto& p : writer.packets) {
    const std::string& owner = writer.interfaces[p.interface_index].name;
    const char agent = p.bytes[0];
    EXPECT_EQ(owner[0], agent) << "packet " << p.bytes << " filed under " << owner;
  }
  const auto b1 = std::find_if(writer.packets.begin(), writer.packets.end(),
                               [](const auto& p) { return p.bytes == "b1"; });
  ASSERT_NE(b1, writer.packets.end());
  EXPECT_EQ(writer.interfaces[b1->interface_index].name, "bravo:eth1");
  const auto a2 = std::find_if(writer.packets.begin(), writer.packets.end(),
                               [](const auto& p) { return p.bytes == "a2"; });
  ASSERT_NE(a2, writer.packets.end());
  EXPECT_EQ(a2->comment, "note");
  EXPECT_TRUE(writer.closed);

  // Each feed's outcome, told once per agent, and in the summary.
  ASSERT_EQ(observer.ended.size(), 3u);
  EXPECT_EQ(observer.ended[0].second.kind, FeedEnd::kDurationReached);
  EXPECT_EQ(observer.ended[0].second.Full(), "duration reached: duration of 1000 ms reached");
  EXPECT_EQ(observer.ended[2].first, "agent-2");
  EXPECT_EQ(observer.ended[2].second.kind, FeedEnd::kWentAway);
  EXPECT_EQ(observer.ended[2].second.text, "agent went away: connection reset");
  EXPECT_EQ(observer.summaries, 1);
  const SessionSummary& s = observer.summary;
  EXPECT_EQ(s.kind, SessionSummary::Kind::kSummary);
  EXPECT_EQ(s.written, 8u);
  EXPECT_EQ(s.drops.kernel, 5u);
  EXPECT_EQ(s.drops.agent, 2u);
  EXPECT_EQ(s.exit_code, 1);
  // Each reason once: bravo's bare "duration reached" is already said by alpha's.
  EXPECT_EQ(s.ending,
            "duration reached: duration of 1000 ms reached; agent went away: connection reset");
  ASSERT_EQ(s.agents.size(), 3u);
  EXPECT_EQ(s.agents[0].agent.name, "alpha");
  EXPECT_EQ(s.agents[0].written, 3u);
  EXPECT_EQ(s.agents[1].written, 3u);
  EXPECT_EQ(s.agents[1].drops.kernel, 5u);
  EXPECT_EQ(s.agents[2].written, 2u);
  EXPECT_EQ(s.agents[2].outcome.kind, FeedEnd::kWentAway);
  EXPECT_EQ(s.out_of_order, 0u);
  // The statistics blocks of an agent that ended say why.
  bool charlie_block = false;
  for (const auto& [index, counters] : writer.statistics) {
    if (writer.interfaces[index].name != "charlie:ens5") continue;
    charlie_block = true;
    EXPECT_EQ(counters.comment, "ended: agent went away: connection reset");
    EXPECT_EQ(counters.delivered, 2u);
  }
  EXPECT_TRUE(charlie_block);
  EXPECT_EQ(observer.last_progress.written, 8u);
}

// A packet that arrives after its turn (its agent was quiet past the reorder window) is written
// at once, never dropped, and counted as out of order.
TEST(MergerTest, LatePacketIsWrittenAndCountedOutOfOrder) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  FakeFeed alpha(0, "alpha"), bravo(1, "bravo");
  RecordingWriter writer;
  RecordingObserver observer;
  capfile::StreamToFile file(writer);
  Merger merger({&alpha, &bravo}, file, writer, observer, {});
  alpha.Push(Interface(0, "eth0", "alpha"), t0);
  bravo.Push(Interface(0, "eth0", "bravo"), t0);
  alpha.Push(Batch({{0, 100, "a1", ""}}), t0);

  // bravo is live and has nothing queued: alpha's packet waits for the window.
  auto round = merger.RunRound(t0);
  ASSERT_TRUE(round.ok()) << round.status().message();
  EXPECT_TRUE(writer.packets.empty());
  EXPECT_EQ(round->reorder_deadline, t0 + Merger::kReorderWindow);

  round = merger.RunRound(t0 + Merger::kReorderWindow);
  ASSERT_TRUE(round.ok());
  ASSERT_EQ(writer.packets.size(), 1u);

  // bravo's packet is earlier than the one already written.
  const Clock::time_point t1 = t0 + Merger::kReorderWindow;
  bravo.Push(Batch({{0, 50, "b1", ""}}), t1);
  round = merger.RunRound(t1);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(writer.packets.size(), 1u) << "alpha is live and empty: bravo's packet waits too";
  round = merger.RunRound(t1 + Merger::kReorderWindow);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(Timestamps(writer.packets), (std::vector<uint64_t>{100, 50}));
  EXPECT_EQ(merger.out_of_order(), 1u);

  // With a packet queued on both sides nothing waits: the earlier goes first.
  alpha.Push(Batch({{0, 300, "a2", ""}}), t1);
  bravo.Push(Batch({{0, 200, "b2", ""}, {0, 400, "b3", ""}}), t1);
  round = merger.RunRound(t1);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(Timestamps(writer.packets), (std::vector<uint64_t>{100, 50, 200, 300}));
  EXPECT_EQ(merger.out_of_order(), 1u);
}

// capctl's own -c over several agents: exactly N packets, the earliest ones, then every feed is
// stopped and what they still queued is dropped.
TEST(StreamSessionTest, CountOverSeveralAgentsWritesExactlyN) {
  StreamOptions options = DefaultOptions();
  options.count = 3;
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 2);
  feeds[0]->Push(Interface(0, "eth0", "alpha"));
  feeds[0]->Push(Batch({{0, 10, "a", ""}, {0, 30, "a", ""}, {0, 50, "a", ""}}));
  feeds[0]->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  feeds[1]->Push(Interface(0, "eth0", "bravo"));
  feeds[1]->Push(Batch({{0, 20, "b", ""}, {0, 40, "b", ""}}));
  feeds[1]->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));

  EXPECT_EQ(session.Run(), 0);
  EXPECT_EQ(Timestamps(writer.packets), (std::vector<uint64_t>{10, 20, 30}));
  EXPECT_TRUE(feeds[0]->cancelled);
  EXPECT_TRUE(feeds[1]->cancelled);
  EXPECT_EQ(observer.summary.ending, "packet count reached");
  EXPECT_TRUE(observer.ended.empty()) << "capctl stopped them: no agent 'ended'";
  ASSERT_EQ(observer.summary.agents.size(), 2u);
  EXPECT_EQ(observer.summary.agents[0].outcome.kind, FeedEnd::kStopped);
  EXPECT_EQ(observer.summary.agents[0].outcome.text, "stopped");
}

// The only agent refuses: its reason is the whole story, and nothing reaches the output (a
// refused stream must not create or truncate -w FILE).
TEST(StreamSessionTest, RefusedSingleAgentWritesNothing) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 1);
  feeds[0]->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no such interface: eth9"));

  EXPECT_EQ(session.Run(), 2);
  EXPECT_EQ(writer.flushes, 0);
  EXPECT_FALSE(writer.closed);
  EXPECT_EQ(observer.summary.kind, SessionSummary::Kind::kRefused);
  EXPECT_EQ(observer.summary.refused_agent.address, "agent-0");
  EXPECT_NE(observer.summary.refusal.find("no such interface: eth9"), std::string::npos)
      << observer.summary.refusal;
  EXPECT_TRUE(observer.ended.empty());
}

// Carriers and warnings are told when they change, not with every Statistics message.
TEST(StreamSessionTest, CarriersAndWarningsAreToldOnceEach) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 1);
  feeds[0]->Push(Interface(0, "eth0", "alpha"));
  for (int i = 0; i < 3; ++i) {
    v1::StreamResponse m;
    m.mutable_statistics()->add_excluded_carriers("sshd[12] 10.0.0.1:22");
    m.mutable_statistics()->set_relay_warning("could not identify the relay");
    feeds[0]->Push(std::move(m));
  }
  feeds[0]->Push(End(v1::StreamEnd::COUNT_REACHED));
  feeds[0]->Finish();

  EXPECT_EQ(session.Run(), 0);
  ASSERT_EQ(observer.carriers_excluded.size(), 1u);
  EXPECT_EQ(observer.carriers_excluded[0].second, "sshd[12] 10.0.0.1:22");
  ASSERT_EQ(observer.warnings.size(), 1u);
  EXPECT_EQ(observer.warnings[0].second, "could not identify the relay");
  EXPECT_EQ(observer.summary.ending, "packet count reached");
  EXPECT_TRUE(observer.summary.agents.empty()) << "one agent: no per-agent lines";
}

// A batch whose arrays disagree stops the session as a local error, with the file completed.
TEST(StreamSessionTest, MalformedBatchStopsWithALocalError) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 1);
  feeds[0]->Push(Interface(0, "eth0", "alpha"));
  v1::StreamResponse bad = Batch({{0, 10, "x", ""}});
  bad.mutable_packets()->add_timestamp_ns(20);  // one timestamp too many
  feeds[0]->Push(std::move(bad));
  feeds[0]->Finish();

  EXPECT_EQ(session.Run(), 1);
  EXPECT_TRUE(writer.packets.empty());
  EXPECT_TRUE(writer.closed);
  EXPECT_EQ(observer.summary.ending,
            "stopped: agent sent a malformed batch (array lengths differ)");
}

// A pcap file with decapsulation holds the inner frames' link type: the capture interface is
// left out of the file (and said to be), the decapsulated session's interface holds the packets,
// and the summary carries the tunnel outcomes of both.
TEST(StreamSessionTest, PcapWithDecapLeavesTheCaptureInterfaceOut) {
  StreamOptions options = DefaultOptions();
  options.format = FileFormat::kPcap;
  options.decap.mode = DecapOptions::Mode::kVxlan;
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcap", false, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 1);
  feeds[0]->Push(Interface(0, "ens5", "alpha"));
  v1::StreamResponse inner = Interface(1, "vxlan-7", "alpha");
  inner.mutable_interface()->set_encapsulation("vxlan");
  inner.mutable_interface()->set_description("VXLAN VNI 7");
  feeds[0]->Push(std::move(inner));
  feeds[0]->Push(Batch({{1, 10, "i1", ""}, {1, 20, "i2", ""}}));
  v1::StreamResponse statistics;
  statistics.mutable_statistics()->set_timestamp_ns(30);
  v1::InterfaceStatistics* outer = statistics.mutable_statistics()->add_interfaces();
  outer->set_interface_index(0);
  (*outer->mutable_decap_outcomes())["decapsulated"] = 2;
  (*outer->mutable_decap_outcomes())["malformed"] = 1;
  feeds[0]->Push(std::move(statistics));
  feeds[0]->Push(End(v1::StreamEnd::COUNT_REACHED));
  feeds[0]->Finish();

  EXPECT_EQ(session.Run(), 0);
  ASSERT_EQ(writer.interfaces.size(), 1u);
  EXPECT_EQ(writer.interfaces[0].name, "vxlan-7");
  EXPECT_EQ(Timestamps(writer.packets), (std::vector<uint64_t>{10, 20}));
  ASSERT_EQ(observer.interfaces.size(), 2u);
  EXPECT_TRUE(observer.interfaces[0].left_out);
  EXPECT_TRUE(observer.interfaces[1].decapsulated);
  EXPECT_FALSE(observer.interfaces[1].left_out);
  EXPECT_EQ(observer.summary.written, 2u);
  EXPECT_EQ(observer.summary.decap_outcomes, "; tunnel packets: 2 decapsulated, 1 malformed");
}

// The one decision of why a feed ended.
TEST(OutcomeOfTest, EachWayAFeedEnds) {
  FakeFeed feed(0, "a");
  feed.end = v1::StreamEnd();
  feed.end->set_reason(v1::StreamEnd::COUNT_REACHED);
  EXPECT_EQ(OutcomeOf(feed, false).kind, FeedEnd::kCountReached);
  EXPECT_EQ(OutcomeOf(feed, false).exit_code, 0);
  feed.end->set_reason(v1::StreamEnd::CAPTURE_ERROR);
  feed.end->set_message("pcap_activate(eth0): down");
  EXPECT_EQ(OutcomeOf(feed, true).kind, FeedEnd::kCaptureError) << "the agent's word comes first";
  EXPECT_EQ(OutcomeOf(feed, false).Full(), "capture error: pcap_activate(eth0): down");
  EXPECT_EQ(OutcomeOf(feed, false).exit_code, 1);
  feed.end->set_reason(v1::StreamEnd::AGENT_SHUTDOWN);
  EXPECT_EQ(OutcomeOf(feed, false).text, "the agent is shutting down");

  feed.end.reset();
  feed.status = grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled");
  EXPECT_EQ(OutcomeOf(feed, true).kind, FeedEnd::kStopped);
  EXPECT_EQ(OutcomeOf(feed, true).exit_code, 0);
  feed.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  feed.started = true;
  EXPECT_EQ(OutcomeOf(feed, false).kind, FeedEnd::kWentAway);
  EXPECT_EQ(OutcomeOf(feed, false).exit_code, 1);
  feed.started = false;
  feed.status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "uid 1000");
  EXPECT_EQ(OutcomeOf(feed, false).kind, FeedEnd::kRefused);
  EXPECT_EQ(OutcomeOf(feed, false).text.rfind("refused: ", 0), 0u);
  feed.status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no interface eth9");
  EXPECT_EQ(OutcomeOf(feed, false).exit_code, 2);
  feed.status = grpc::Status::OK;
  EXPECT_EQ(OutcomeOf(feed, false).kind, FeedEnd::kNoReason);
  EXPECT_EQ(OutcomeOf(feed, false).exit_code, 1);
}

// capd killed after it opened the capture but before its first message reached capctl: the call
// fails with UNAVAILABLE ("Socket closed") and no message. That is the agent going away, never a
// refusal; the statuses the agent sends on purpose before the start are refusals.
TEST(OutcomeOfTest, TransportFailureBeforeTheFirstMessageIsWentAwayNotRefused) {
  FakeFeed feed(0, "a");
  ASSERT_FALSE(feed.started);
  for (const grpc::Status& failure :
       {grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed"),
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "Connection reset by peer"),
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "GOAWAY received"),
        grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled"),
        grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded")}) {
    feed.status = failure;
    EXPECT_TRUE(IsTransportFailure(failure)) << failure.error_message();
    const FeedOutcome outcome = OutcomeOf(feed, false);
    EXPECT_EQ(outcome.kind, FeedEnd::kWentAway) << failure.error_message();
    EXPECT_EQ(outcome.text, "agent went away: " + failure.error_message());
    EXPECT_EQ(outcome.exit_code, 1);
  }
  for (const grpc::StatusCode code :
       {grpc::StatusCode::INVALID_ARGUMENT, grpc::StatusCode::NOT_FOUND,
        grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::UNAUTHENTICATED,
        grpc::StatusCode::PERMISSION_DENIED, grpc::StatusCode::FAILED_PRECONDITION}) {
    feed.status = grpc::Status(code, "no");
    EXPECT_FALSE(IsTransportFailure(feed.status)) << code;
    const FeedOutcome outcome = OutcomeOf(feed, false);
    EXPECT_EQ(outcome.kind, FeedEnd::kRefused) << code;
    EXPECT_EQ(outcome.text.rfind("refused: ", 0), 0u) << outcome.text;
    EXPECT_NE(outcome.exit_code, 0) << code;
  }
}

// Through the real pcapng writer: libpcap reads back every packet, in time order, with its bytes.
TEST(StreamSessionTest, PcapngFileReadsBackWithLibpcapInTimeOrder) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("merged.pcapng");
  auto sink = FdSink::OpenFile(path);
  ASSERT_TRUE(sink.ok()) << sink.status().message();
  std::unique_ptr<CaptureWriter> writer = MakePcapngWriter(std::move(sink.value()), "test");
  StreamOptions options = DefaultOptions();
  RecordingObserver observer;
  {
    StreamSession session(options, *writer, observer, {path, false, -1});
    std::vector<FakeFeed*> feeds = AddFeeds(session, 2);
    const std::string frame_a(60, 'a'), frame_b(60, 'b');
    feeds[0]->Push(Interface(0, "eth0", "alpha"));
    feeds[0]->Push(Batch({{0, 1'000'000'001, frame_a, ""}, {0, 1'000'000'003, frame_a, ""}}));
    feeds[0]->Push(End(v1::StreamEnd::COUNT_REACHED));
    feeds[0]->Finish();
    feeds[1]->Push(Interface(0, "eth0", "bravo"));
    feeds[1]->Push(Batch({{0, 1'000'000'002, frame_b, ""}, {0, 1'000'000'004, frame_b, ""}}));
    feeds[1]->Push(End(v1::StreamEnd::COUNT_REACHED));
    feeds[1]->Finish();
    ASSERT_EQ(session.Run(), 0);
  }
  const capfile::testing::PcapContents contents = ReadWithLibpcap(path);
  ASSERT_EQ(contents.error, "");
  EXPECT_EQ(contents.datalink, 1);
  ASSERT_EQ(contents.records.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(contents.records[i].timestamp_ns, 1'000'000'001 + i);
    EXPECT_EQ(contents.records[i].data,
              std::vector<uint8_t>(60, i % 2 == 0 ? uint8_t{'a'} : uint8_t{'b'}));
  }
  EXPECT_EQ(observer.summary.written, 4u);
}

// The links' figures reach the observer: the wire bytes the feeds counted, and each agent that
// dropped with its cause (its reader waited for the output, or did not), told once before the
// summary and again in it.
TEST(StreamSessionTest, SummaryCarriesTheBytesReceivedAndWhoDroppedWhy) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"FIFO /tmp/f", true, -1});
  std::vector<FakeFeed*> feeds = AddFeeds(session, 3);
  for (size_t i = 0; i < feeds.size(); ++i) {
    feeds[i]->Push(Interface(0, "eth0", "host-" + std::to_string(i)));
    feeds[i]->Push(Batch({{0, 100 + i, "p", ""}}));
  }
  feeds[0]->Push(Statistics(0, 0, 7));  // dropped; its reader never waited: the link
  feeds[0]->received_bytes = 10'000;
  feeds[1]->Push(Statistics(0, 0, 3));  // dropped while its reader waited: capctl's output
  feeds[1]->received_bytes = 20'000;
  feeds[1]->output_wait = std::chrono::milliseconds(500);
  feeds[2]->received_bytes = 30'000;  // no drops
  for (FakeFeed* feed : feeds) {
    feed->Push(End(v1::StreamEnd::DURATION_REACHED));
    feed->Finish();
  }

  EXPECT_EQ(session.Run(), 0);

  EXPECT_EQ(observer.summary.received_bytes, 60'000u);
  EXPECT_GT(observer.summary.seconds, 0);
  ASSERT_EQ(observer.summary.agent_drops.size(), 2u);
  EXPECT_EQ(observer.summary.agent_drops[0].agent.address, "agent-0");
  EXPECT_EQ(observer.summary.agent_drops[0].dropped, 7u);
  EXPECT_EQ(observer.summary.agent_drops[0].cause, Bottleneck::kLink);
  EXPECT_EQ(observer.summary.agent_drops[1].agent.address, "agent-1");
  EXPECT_EQ(observer.summary.agent_drops[1].dropped, 3u);
  EXPECT_EQ(observer.summary.agent_drops[1].cause, Bottleneck::kOutput);
  EXPECT_EQ(observer.summary.agent_drops[1].output_name, "FIFO /tmp/f");
  ASSERT_EQ(observer.dropping.size(), 2u);
  EXPECT_TRUE(observer.dropping_before_summary);
  EXPECT_EQ(observer.dropping[0].cause, Bottleneck::kLink);
  EXPECT_EQ(observer.dropping[1].cause, Bottleneck::kOutput);
}

}  // namespace
}  // namespace capd::client

namespace capd::client {
namespace {

// One agent's messages as a reader thread queues them: an interface, `batches` batches of
// `per_batch` packets (every third one of 1500 bytes, which the pcapng writer writes from the
// lent batch, the others of 60), and the agent's end.
std::vector<v1::StreamResponse> OneAgentsMessages(int batches, int per_batch) {
  std::vector<v1::StreamResponse> messages;
  messages.push_back(Interface(0, "eth0", "alpha"));
  uint64_t ts = 1'000'000'000;
  for (int b = 0; b < batches; ++b) {
    std::vector<TestPacket> packets;
    for (int p = 0; p < per_batch; ++p, ++ts) {
      const size_t size = ts % 3 == 0 ? 1500 : 60;
      packets.push_back({0, ts, std::string(size, static_cast<char>('a' + ts % 26)), ""});
    }
    messages.push_back(Batch(packets));
  }
  messages.push_back(End(v1::StreamEnd::COUNT_REACHED));
  return messages;
}

// One agent into a regular file: its reader writes the batches itself, on its own thread (the
// merger's thread is not woken for them), in order and counted.
TEST(StreamSessionReaderWritesTest, OneAgentIntoAFileWritesItsBatchesOnTheReadersThread) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  auto feed = std::make_unique<ThreadedFeed>(0, "agent-0", session.hub(), OneAgentsMessages(4, 5));
  ThreadedFeed* reader = feed.get();
  session.AddFeed(std::move(feed));

  ASSERT_EQ(session.Run(), 0);
  ASSERT_EQ(writer.packets.size(), 20u);
  for (size_t i = 0; i < writer.packets.size(); ++i) {
    EXPECT_EQ(writer.packets[i].timestamp_ns, 1'000'000'000 + i);
    EXPECT_EQ(writer.packet_threads[i], reader->reader_id) << "packet " << i;
  }
  EXPECT_NE(reader->reader_id, std::this_thread::get_id());
  EXPECT_EQ(observer.summary.written, 20u);
  EXPECT_EQ(observer.summary.ending, "packet count reached");
  EXPECT_TRUE(writer.closed);
}

// Where the merger's order or hold matters, or where a reader that stops reading must not stall
// the gRPC read loop (a FIFO, stdout, clients), the merger's thread writes, as before.
TEST(StreamSessionReaderWritesTest, StreamsSeveralAgentsAndTheKeyHoldWriteOnTheMergersThread) {
  struct Case {
    const char* what;
    bool is_stream;
    int agents;
    bool tls_keylog;
  };
  for (const Case& c : {Case{"a FIFO", true, 1, false}, Case{"two agents", false, 2, false},
                        Case{"--tls-keylog", false, 1, true}}) {
    StreamOptions options = DefaultOptions();
    if (c.tls_keylog) options.tls_keylog = "keys.log";
    RecordingWriter writer;
    RecordingObserver observer;
    StreamSession session(options, writer, observer, {"out.pcapng", c.is_stream, -1});
    for (int i = 0; i < c.agents; ++i) {
      std::vector<v1::StreamResponse> messages = OneAgentsMessages(2, 3);
      session.AddFeed(std::make_unique<ThreadedFeed>(i, "agent-" + std::to_string(i), session.hub(),
                                                     std::move(messages)));
    }
    ASSERT_EQ(session.Run(), 0) << c.what;
    ASSERT_EQ(writer.packets.size(), 6u * c.agents) << c.what;
    for (const std::thread::id& id : writer.packet_threads) {
      EXPECT_EQ(id, std::this_thread::get_id()) << c.what;
    }
  }
}

// A flush that fails on the reader's thread stops the session as one on the merger's does.
TEST(StreamSessionReaderWritesTest, AFailedWriteOnTheReadersThreadStopsTheSession) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  writer.fail_flush = 4;  // the interface (twice), the first batch, then the second batch
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  auto feed = std::make_unique<ThreadedFeed>(0, "agent-0", session.hub(), OneAgentsMessages(4, 2));
  ThreadedFeed* reader = feed.get();
  session.AddFeed(std::move(feed));

  EXPECT_EQ(session.Run(), 1);
  EXPECT_EQ(writer.failed_flush_thread, reader->reader_id);
  EXPECT_EQ(observer.summary.ending, "stopped: write(out.pcapng): No space left on device");
  EXPECT_EQ(observer.summary.written, 2u) << "the first batch only";
}

// A file whose write held the reader once for longer than a stalled disk's bound: the merger's
// thread writes from then on (the reader only queues, as before), and the time counts as waiting
// for the output.
TEST(StreamSessionReaderWritesTest, AStalledWriteHandsWritingBackToTheMergersThread) {
  StreamOptions options = DefaultOptions();
  RecordingWriter writer;
  writer.slow_flush = 3;  // the interface (twice), then the first batch
  RecordingObserver observer;
  StreamSession session(options, writer, observer, {"out.pcapng", false, -1});
  auto feed = std::make_unique<ThreadedFeed>(0, "agent-0", session.hub(), OneAgentsMessages(4, 2));
  ThreadedFeed* reader = feed.get();
  session.AddFeed(std::move(feed));

  ASSERT_EQ(session.Run(), 0);
  ASSERT_EQ(writer.packets.size(), 8u);
  EXPECT_EQ(writer.packet_threads[0], reader->reader_id);
  EXPECT_EQ(writer.packet_threads[1], reader->reader_id);
  for (size_t i = 2; i < 8; ++i) EXPECT_EQ(writer.packet_threads[i], std::this_thread::get_id());
  EXPECT_GE(reader->output_wait, std::chrono::milliseconds(80));
  EXPECT_EQ(observer.summary.written, 8u);
}

// Through the real pcapng writer into a real file: what the reader's thread writes is byte for
// byte what the merger's thread writes for the same messages (large packets from the lent batch
// included), and libpcap reads every packet back with its bytes.
TEST(StreamSessionReaderWritesTest, TheReadersFileIsByteForByteTheMergersFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const auto write_file = [&](const std::string& name, bool on_reader) {
    const std::string path = dir.File(name);
    auto sink = FdSink::OpenFile(path);
    EXPECT_TRUE(sink.ok()) << sink.status().message();
    std::unique_ptr<CaptureWriter> writer = MakePcapngWriter(std::move(sink.value()), "test");
    StreamOptions options = DefaultOptions();
    RecordingObserver observer;
    StreamSession session(options, *writer, observer, {path, false, -1});
    std::vector<v1::StreamResponse> messages = OneAgentsMessages(40, 50);
    if (on_reader) {
      session.AddFeed(
          std::make_unique<ThreadedFeed>(0, "agent-0", session.hub(), std::move(messages)));
    } else {
      auto feed = std::make_unique<FakeFeed>(0, "agent-0");
      for (v1::StreamResponse& m : messages) feed->Push(std::move(m));
      feed->Finish();
      session.AddFeed(std::move(feed));
    }
    EXPECT_EQ(session.Run(), 0);
    EXPECT_EQ(observer.summary.written, 2000u);
    return path;
  };
  const std::string merger_file = write_file("merger.pcapng", false);
  const std::string reader_file = write_file("reader.pcapng", true);
  const std::string merger_bytes = capfile::testing::ReadFileBytes(merger_file);
  ASSERT_GT(merger_bytes.size(), 1'000'000u);
  EXPECT_TRUE(capfile::testing::ReadFileBytes(reader_file) == merger_bytes);

  const capfile::testing::PcapContents contents = ReadWithLibpcap(reader_file);
  ASSERT_EQ(contents.error, "");
  ASSERT_EQ(contents.records.size(), 2000u);
  for (size_t i = 0; i < contents.records.size(); ++i) {
    const uint64_t ts = 1'000'000'000 + i;
    ASSERT_EQ(contents.records[i].timestamp_ns, ts);
    ASSERT_EQ(contents.records[i].data,
              std::vector<uint8_t>(ts % 3 == 0 ? 1500 : 60, static_cast<uint8_t>('a' + ts % 26)));
  }
}

}  // namespace
}  // namespace capd::client
