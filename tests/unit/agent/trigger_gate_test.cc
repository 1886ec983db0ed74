// The trigger gate (agent/trigger): what it holds, sends and drops, fed packets by hand; and a
// stream's batches through it with real BPF programs. No root, no network.

#include "agent/trigger/trigger_gate.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "agent/trigger/stream_trigger.h"
#include "filters/bpf_filter.h"

namespace capd::agent::trigger {
namespace {

constexpr uint64_t kMs = 1'000'000;

struct Sent {
  uint64_t ts;
  std::string bytes;
  std::string comment;
};

// Packets whose first byte says what they are: 'M' start marker, 'S' stop marker, else plain.
class GateTest : public ::testing::Test {
 protected:
  void Offer(TriggerGate& gate, uint64_t ts, std::string bytes, std::string own_comment = "") {
    Packet p;
    p.timestamp_ns = ts;
    p.data = reinterpret_cast<const uint8_t*>(bytes.data());
    p.captured_length = static_cast<uint32_t>(bytes.size());
    p.original_length = p.captured_length;
    p.comment = own_comment;
    gate.Offer(p, [&](const Packet& out, std::string_view comment) {
      sent.push_back({out.timestamp_ns,
                      std::string(reinterpret_cast<const char*>(out.data), out.captured_length),
                      std::string(comment)});
    });
  }
  static Matcher FirstByte(char c) {
    return [c](const Packet& p) { return p.captured_length > 0 && p.data[0] == c; };
  }
  std::vector<Sent> sent;
};

TEST_F(GateTest, HoldsUntilTheStartThenSendsTheWindowBeforeItAndLive) {
  TriggerConfig config;
  config.start_on = FirstByte('M');
  config.start_text = "udp port 1";
  config.before_ns = 100 * kMs;
  TriggerGate gate(config);
  for (int i = 0; i < 50; ++i) Offer(gate, 1000 * kMs + i * 10 * kMs, "p" + std::to_string(i));
  EXPECT_TRUE(sent.empty());
  EXPECT_TRUE(gate.waiting());
  // Only what is within 100 ms of the newest is held (time eviction is not a drop).
  EXPECT_EQ(gate.held_packets(), 11u);
  EXPECT_EQ(gate.dropped_packets(), 0u);
  Offer(gate, 1000 * kMs + 495 * kMs, "M");  // packets at 400..490 ms are within 100 ms
  ASSERT_EQ(sent.size(), 11u);
  EXPECT_EQ(sent.front().bytes, "p40");
  EXPECT_EQ(sent.front().ts, 1400 * kMs);
  EXPECT_EQ(sent.back().bytes, "M");
  EXPECT_EQ(sent.back().comment, "capd: start-on matched: udp port 1");
  EXPECT_EQ(gate.history_sent(), 10u);
  EXPECT_EQ(gate.start_matched_ns(), 1495 * kMs);
  EXPECT_EQ(gate.held_bytes(), 0u);
  Offer(gate, 2000 * kMs, "live");
  ASSERT_EQ(sent.size(), 12u);
  EXPECT_EQ(sent.back().comment, "");
  EXPECT_FALSE(gate.ended());
}

TEST_F(GateTest, ByteBoundDropsTheOldestAndCountsThem) {
  TriggerConfig config;
  config.start_on = FirstByte('M');
  config.before_ns = 3600'000 * kMs;
  config.max_history_bytes = 10 * (100 + TriggerGate::kPacketOverhead);
  TriggerGate gate(config);
  for (int i = 0; i < 25; ++i) Offer(gate, (i + 1) * kMs, std::string(100, 'a' + i % 26));
  EXPECT_EQ(gate.held_packets(), 10u);
  EXPECT_LE(gate.held_bytes(), config.max_history_bytes);
  EXPECT_EQ(gate.dropped_packets(), 15u);
  EXPECT_EQ(gate.dropped_bytes(), 1500u);
  Offer(gate, 100 * kMs, "M");
  ASSERT_EQ(sent.size(), 11u);
  EXPECT_EQ(sent.front().ts, 16 * kMs);  // the 16th packet: the oldest kept
}

TEST_F(GateTest, StopEndsExactlyCountPacketsAfterTheMatch) {
  TriggerConfig config;
  config.stop_on = FirstByte('S');
  config.stop_text = "tcp";
  config.after_count = 3;
  TriggerGate gate(config);
  EXPECT_FALSE(gate.waiting());
  for (int i = 0; i < 5; ++i) Offer(gate, i * kMs, "x");
  Offer(gate, 10 * kMs, "S", "own");
  for (int i = 0; i < 5; ++i) Offer(gate, (20 + i) * kMs, "y" + std::to_string(i));
  ASSERT_EQ(sent.size(), 5u + 1 + 3);
  EXPECT_EQ(sent[5].comment, "own; capd: stop-on matched: tcp");
  EXPECT_EQ(sent.back().bytes, "y2");
  EXPECT_TRUE(gate.ended());
  EXPECT_EQ(gate.stop_matched_ns(), 10 * kMs);
}

TEST_F(GateTest, StopWithoutAfterEndsAtTheMatch) {
  TriggerConfig config;
  config.stop_on = FirstByte('S');
  TriggerGate gate(config);
  Offer(gate, 1, "S");
  Offer(gate, 2, "x");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_TRUE(gate.ended());
}

TEST_F(GateTest, StopAfterTimeSendsThePacketsWithinIt) {
  TriggerConfig config;
  config.stop_on = FirstByte('S');
  config.after_ns = 50 * kMs;
  TriggerGate gate(config);
  Offer(gate, 100 * kMs, "S");
  for (int i = 1; i <= 10; ++i) Offer(gate, (100 + i * 10) * kMs, "x" + std::to_string(i));
  ASSERT_EQ(sent.size(), 6u);  // the match and the packets at +10..+50 ms
  EXPECT_EQ(sent.back().bytes, "x5");
  EXPECT_TRUE(gate.ended());
}

TEST_F(GateTest, OnePacketMatchingBothTriggersCarriesBothComments) {
  TriggerConfig config;
  config.start_on = FirstByte('M');
  config.start_text = "a";
  config.stop_on = FirstByte('M');
  config.stop_text = "b";
  config.after_count = 1;
  config.before_ns = 10;
  TriggerGate gate(config);
  Offer(gate, 1, "x");
  Offer(gate, 2, "M");
  Offer(gate, 3, "y");
  Offer(gate, 4, "z");
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[1].comment, "capd: start-on matched: a; capd: stop-on matched: b");
  EXPECT_TRUE(gate.ended());
}

// A stream's batches: real BPF on Ethernet/IPv4/UDP frames, the history released in batches of
// at most BatchBuilder's size and marked as history, the live batch after it not.
TEST(StreamTriggerTest, PassesBatchesThroughTheGateWithRealFilters) {
  auto frame = [](uint16_t port, size_t payload) {
    std::string f(14 + 20 + 8 + payload, '\0');
    f[12] = 0x08;  // IPv4
    f[14] = 0x45;  // version 4, 20-byte header
    const size_t total = 20 + 8 + payload;
    f[16] = static_cast<char>(total >> 8), f[17] = static_cast<char>(total & 0xff);
    f[23] = 17;  // UDP
    f[36] = static_cast<char>(port >> 8), f[37] = static_cast<char>(port & 0xff);
    return f;
  };
  v1::StreamRequest request;
  request.set_start_on("udp dst port 7001");
  request.set_before_ms(60'000);
  auto made = StreamTrigger::Create(
      request, [](const std::string& text) { return filters::Compile(text, DLT_EN10MB, 262144); },
      64ULL << 20);
  ASSERT_TRUE(made.ok()) << made.status().message();
  StreamTrigger& trigger = *made.value();

  auto batch_of = [&](const std::vector<std::string>& frames, uint64_t first_ts) {
    BatchBuilder builder;
    builder.Start(std::make_unique<v1::StreamResponse>());
    for (size_t i = 0; i < frames.size(); ++i) {
      builder.Append(0, first_ts + i, static_cast<uint32_t>(frames[i].size()),
                     reinterpret_cast<const uint8_t*>(frames[i].data()),
                     static_cast<uint32_t>(frames[i].size()));
    }
    return builder.Finish();
  };
  std::vector<StreamTrigger::Out> out;
  const auto new_message = [] { return std::make_unique<v1::StreamResponse>(); };
  // 3000 packets of 1000 bytes: 3 MB held, more than one batch's 2 MiB.
  for (int b = 0; b < 10; ++b) {
    auto batch = batch_of(std::vector<std::string>(300, frame(7000, 958)), 1000 + b * 300);
    trigger.Pass(batch->packets(), new_message, out);
  }
  EXPECT_TRUE(out.empty());
  v1::TriggerStatus status;
  trigger.FillStatus(status);
  EXPECT_TRUE(status.waiting());
  EXPECT_EQ(status.held_packets(), 3000u);

  auto marked = batch_of({frame(7000, 10), frame(7001, 10), frame(7000, 10)}, 10'000);
  trigger.Pass(marked->packets(), new_message, out);
  size_t packets = 0, history_packets = 0;
  for (const auto& o : out) {
    packets += o.packets;
    if (o.history) history_packets += o.packets;
    EXPECT_LE(o.message->packets().data().size(), BatchBuilder::kMaxBytes + 1000);
  }
  EXPECT_GT(out.size(), 1u);
  EXPECT_EQ(packets, 3000u + 3);
  // The batches of the release, up to and with the one carrying the match (and so the live
  // packet after it, in the same batch), are queued whole.
  EXPECT_EQ(history_packets, 3000u + 3);
  const v1::PacketBatch& last = out.back().message->packets();
  ASSERT_EQ(last.comment_size(), 1);
  EXPECT_EQ(last.comment(0), "capd: start-on matched: udp dst port 7001");

  out.clear();
  auto live = batch_of({frame(7000, 10)}, 20'000);
  trigger.Pass(live->packets(), new_message, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].history);
  trigger.FillStatus(status);
  EXPECT_FALSE(status.waiting());
  EXPECT_EQ(status.history_sent(), 3001u);
}

TEST(StreamTriggerTest, ValidationNamesTheField) {
  v1::StreamRequest r;
  r.set_before_ms(1000);
  EXPECT_NE(ValidateTriggers(r, 16384, 1, 1).message().find("--before needs --start-on"),
            std::string::npos);
  r.set_start_on("udp");
  r.set_stop_on("tcp");
  r.set_after_ms(5);
  r.set_after_count(5);
  EXPECT_FALSE(ValidateTriggers(r, 16384, 100, 100).ok());
  r.set_after_count(0);
  EXPECT_TRUE(ValidateTriggers(r, 16384, 100, 100).ok());
  r.mutable_decap()->set_mode(v1::Decapsulation::VXLAN);
  EXPECT_FALSE(ValidateTriggers(r, 16384, 100, 100).ok());
}

}  // namespace
}  // namespace capd::agent::trigger
