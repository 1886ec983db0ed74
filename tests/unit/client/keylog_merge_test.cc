// The merger with --tls-keylog (Merger::Settings::hold_for_keys): TlsKeyLog messages become
// Decryption Secrets Blocks, and key-log lines that arrive shortly after the packets they
// decrypt (a TLS client writes them after the server's first encrypted flight crossed the wire)
// still go into the file before those packets. A feed filled by hand, a writer that records the
// order of what it was asked to write, and a given clock.

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "capfile/stream_to_file.h"
#include "client/stream/feed.h"
#include "client/stream/merger.h"
#include "client/stream/session_observer.h"

namespace capd::client {
namespace {

using Clock = std::chrono::steady_clock;

class HandFeed final : public Feed {
 public:
  using Feed::Feed;
  void Start() override {}
  void Cancel() override {}
  void Push(v1::StreamResponse message, Clock::time_point arrived) {
    queued_bytes += message.has_packets() ? message.packets().data().size() : 0;
    queue.push_back(
        {std::make_unique<v1::StreamResponse>(std::move(message)), arrived, std::nullopt, {}});
  }
};

// What the writer was asked to do, in order: "packet <ts>" or "secrets <type> <text>".
class OrderWriter final : public CaptureWriter {
 public:
  Status AddInterface(const InterfaceInfo&) override { return Status::Ok(); }
  using CaptureWriter::WritePacket;
  Status WritePacket(uint32_t, uint64_t timestamp_ns, uint32_t, std::span<const uint8_t>,
                     std::string_view) override {
    events.push_back("packet " + std::to_string(timestamp_ns));
    return Status::Ok();
  }
  Status WriteStatistics(uint32_t, const InterfaceCounters&) override { return Status::Ok(); }
  Status WriteDecryptionSecrets(uint32_t type, std::string_view secrets) override {
    events.push_back("secrets " + std::to_string(type) + " " + std::string(secrets));
    return Status::Ok();
  }
  Status Flush() override { return Status::Ok(); }
  std::vector<std::string> events;
};

class QuietObserver final : public SessionObserver {
 public:
  void OnInterface(const InterfaceSeen&) override {}
  void OnCarriersExcluded(const AgentRef&, const std::string&) override {}
  void OnWarning(const AgentRef&, const std::string& warning) override {
    warnings.push_back(warning);
  }
  void OnAgentEnded(const AgentRef&, const FeedOutcome&) override {}
  void OnProgress(const Progress&) override {}
  void OnMessage(const std::string&) override {}
  void OnSummary(const SessionSummary&) override {}
  std::vector<std::string> warnings;
};

v1::StreamResponse Interface() {
  v1::StreamResponse m;
  m.mutable_interface()->set_name("eth0");
  m.mutable_interface()->set_link_type(1);
  m.mutable_interface()->set_snaplen(262144);
  return m;
}

v1::StreamResponse Batch(uint64_t timestamp_ns) {
  v1::StreamResponse m;
  v1::PacketBatch* b = m.mutable_packets();
  b->add_timestamp_ns(timestamp_ns);
  b->add_interface_index(0);
  b->add_original_length(4);
  b->add_captured_length(4);
  b->set_data("abcd");
  return m;
}

v1::StreamResponse Keys(const std::string& lines) {
  v1::StreamResponse m;
  m.mutable_tls_keys()->set_lines(lines);
  return m;
}

const std::string kTlsk = std::to_string(capfile::kTlsKeyLogSecrets);

TEST(KeyLogMergeTest, KeysQueuedBehindABatchWithinTheWindowAreWrittenBeforeIt) {
  const Clock::time_point t0 = Clock::now();
  HandFeed feed(0, "alpha");
  OrderWriter writer;
  QuietObserver observer;
  capfile::StreamToFile file(writer);
  Merger::Settings settings;
  settings.hold_for_keys = true;
  Merger merger({&feed}, file, writer, observer, settings);
  feed.Push(Interface(), t0);
  feed.Push(Batch(100), t0);  // the server's encrypted flight

  auto round = merger.RunRound(t0);
  ASSERT_TRUE(round.ok()) << round.status().message();
  EXPECT_TRUE(writer.events.empty()) << "the batch waits for keys that may follow it";
  EXPECT_EQ(round->reorder_deadline, t0 + Merger::kReorderWindow);

  // The client's keys come 10 ms later, then its request.
  const Clock::time_point t1 = t0 + std::chrono::milliseconds(10);
  feed.Push(Keys("SERVER_HANDSHAKE_TRAFFIC_SECRET a b\n"), t1);
  feed.Push(Batch(200), t1);
  round = merger.RunRound(t1);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(writer.events, (std::vector<std::string>{"secrets " + kTlsk +
                                                     " SERVER_HANDSHAKE_TRAFFIC_SECRET a b\n"}));

  round = merger.RunRound(t0 + Merger::kReorderWindow);
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(writer.events,
            (std::vector<std::string>{"secrets " + kTlsk + " SERVER_HANDSHAKE_TRAFFIC_SECRET a b\n",
                                      "packet 100"}));
  round = merger.RunRound(t1 + Merger::kReorderWindow);
  ASSERT_TRUE(round.ok());
  ASSERT_EQ(writer.events.size(), 3u);
  EXPECT_EQ(writer.events[2], "packet 200");
  EXPECT_EQ(merger.tls_key_messages(), 1u);
}

// Without --tls-keylog nothing waits, and keys (from an agent that sends them anyway) are
// written where they are in the stream.
TEST(KeyLogMergeTest, WithoutTheHoldKeysAreWrittenInStreamOrder) {
  const Clock::time_point t0 = Clock::now();
  HandFeed feed(0, "alpha");
  OrderWriter writer;
  QuietObserver observer;
  capfile::StreamToFile file(writer);
  Merger merger({&feed}, file, writer, observer, {});
  feed.Push(Interface(), t0);
  feed.Push(Batch(100), t0);
  feed.Push(Keys("CLIENT_RANDOM a b\n"), t0);
  feed.Push(Batch(200), t0);
  auto round = merger.RunRound(t0);
  ASSERT_TRUE(round.ok()) << round.status().message();
  EXPECT_EQ(writer.events,
            (std::vector<std::string>{"packet 100", "secrets " + kTlsk + " CLIENT_RANDOM a b\n",
                                      "packet 200"}));
}

// A message with no payload known to this client (a newer agent's) is skipped, as an old
// capctl skips TlsKeyLog.
TEST(KeyLogMergeTest, AnUnknownPayloadIsSkipped) {
  v1::StreamResponse newer = Keys("CLIENT_RANDOM a b\n");
  std::string wire;
  ASSERT_TRUE(newer.SerializeToString(&wire));
  // Field 5 renumbered to 15, a payload this build does not know.
  ASSERT_EQ(static_cast<uint8_t>(wire[0]), (5u << 3) | 2u);
  wire[0] = static_cast<char>((15u << 3) | 2u);
  v1::StreamResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.payload_case(), v1::StreamResponse::PAYLOAD_NOT_SET);

  const Clock::time_point t0 = Clock::now();
  HandFeed feed(0, "alpha");
  OrderWriter writer;
  QuietObserver observer;
  capfile::StreamToFile file(writer);
  Merger merger({&feed}, file, writer, observer, {});
  feed.Push(Interface(), t0);
  feed.Push(parsed, t0);
  feed.Push(Batch(100), t0);
  auto round = merger.RunRound(t0);
  ASSERT_TRUE(round.ok()) << round.status().message();
  EXPECT_EQ(writer.events, (std::vector<std::string>{"packet 100"}));
}

// An agent that did not acknowledge the key log (an older capd ignores the field): said once,
// when its capture starts.
TEST(KeyLogMergeTest, AnAgentThatIgnoredTheKeyLogIsReported) {
  const Clock::time_point t0 = Clock::now();
  HandFeed feed(0, "alpha");
  feed.keylog_ignored = true;
  OrderWriter writer;
  QuietObserver observer;
  capfile::StreamToFile file(writer);
  Merger::Settings settings;
  settings.hold_for_keys = true;
  Merger merger({&feed}, file, writer, observer, settings);
  feed.Push(Interface(), t0);
  feed.Push(Interface(), t0);
  ASSERT_TRUE(merger.RunRound(t0).ok());
  ASSERT_EQ(observer.warnings.size(), 1u);
  EXPECT_EQ(observer.warnings[0],
            "it ignored --tls-keylog (a capd that predates it): the capture has no TLS keys");
}

}  // namespace
}  // namespace capd::client
