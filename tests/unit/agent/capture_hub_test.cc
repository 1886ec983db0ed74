// CaptureHub without root: captures read from files (SavefileSource) and sinks that record what
// they got. What a client would check: which packets reach which subscriber, with which
// descriptions and statistics, and why each subscription ended.

#include "agent/stream/capture_hub.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/capture/savefile_source.h"
#include "agent/stream/hold_policy.h"
#include "tests/support/capture_file.h"
#include "tests/unit/agent/hub_test_support.h"

namespace capd::agent {
namespace {

using testing::DoneLatch;
using testing::RecordingSink;

// One client: what it receives, its stop, its end. Declared before the hub in each test, so the
// hub (whose destructor ends and joins every capture) goes first.
struct Client {
  RecordingSink sink;
  StopSignal stop;
  DoneLatch done;
};

AgentIdentity Identity(std::shared_ptr<CaptureSourceFactory> sources) {
  AgentIdentity identity;
  identity.name = "unit-agent";
  identity.os = "Linux";
  identity.own_traffic.tcp_ports = {50051};
  identity.sources = std::move(sources);
  return identity;
}

v1::StreamRequest Request(const std::string& interface, const std::string& filter = "") {
  v1::StreamRequest request;
  request.set_interface(interface);
  request.set_filter(filter);
  return request;
}

void Subscribe(CaptureHub& hub, const v1::StreamRequest& request, const AgentIdentity& identity,
               Client& client) {
  hub.Subscribe(request, identity, client.sink, client.stop, client.done.Callback());
}

// Stops a client and returns how its subscription ended.
v1::StreamEnd::Reason StopAndWait(Client& client) {
  client.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  auto ended = client.done.Wait();
  EXPECT_TRUE(ended.ok()) << ended.status().message();
  return ended.ok() ? ended->reason() : v1::StreamEnd::REASON_UNSPECIFIED;
}

class CaptureHubTest : public ::testing::Test {
 protected:
  std::filesystem::path File(const std::string& name) const { return dir_.path() / name; }
  testing::TempDir dir_;
};

TEST_F(CaptureHubTest, TwoClientsOfTheSameRequestShareOneSource) {
  testing::WriteUdpCapture(File("a.pcap"), 20, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  const AgentIdentity identity = Identity(files);
  Client a, b;
  CaptureHub hub;
  Subscribe(hub, Request("eth0", "udp"), identity, a);
  Subscribe(hub, Request("eth0", "udp"), identity, b);
  ASSERT_TRUE(a.sink.WaitForPackets(20));
  ASSERT_TRUE(b.sink.WaitForDescriptions(1));
  EXPECT_EQ(files->opened(), 1);
  EXPECT_EQ(hub.open_captures(), 1u);
  EXPECT_EQ(StopAndWait(a), v1::StreamEnd::CLIENT_CANCELLED);
  EXPECT_EQ(hub.open_captures(), 1u) << "b still uses the capture";
  EXPECT_EQ(StopAndWait(b), v1::StreamEnd::CLIENT_CANCELLED);
  EXPECT_EQ(hub.open_captures(), 0u) << "a capture ends with its last client";
  EXPECT_EQ(a.sink.packets(), 20u);
}

TEST_F(CaptureHubTest, DifferentFiltersOpenTwoSourcesEachWithItsOwnPackets) {
  std::vector<std::string> frames;
  for (int i = 0; i < 10; ++i) frames.push_back(testing::UdpFrame(53, 32));
  for (int i = 0; i < 5; ++i) frames.push_back(testing::UdpFrame(80, 32));
  testing::WriteFrames(File("mixed.pcap"), frames);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("mixed.pcap")}});
  const AgentIdentity identity = Identity(files);
  Client dns, web;
  CaptureHub hub;
  Subscribe(hub, Request("eth0", "udp port 53"), identity, dns);
  Subscribe(hub, Request("eth0", "udp port 80"), identity, web);
  ASSERT_TRUE(dns.sink.WaitForPackets(10));
  ASSERT_TRUE(web.sink.WaitForPackets(5));
  EXPECT_EQ(files->opened(), 2);
  EXPECT_EQ(hub.open_captures(), 2u);
  StopAndWait(dns);
  StopAndWait(web);
  EXPECT_EQ(dns.sink.packets(), 10u);
  EXPECT_EQ(web.sink.packets(), 5u);
  // The kernel filter leaves capd's own traffic out before the user's filter.
  ASSERT_EQ(dns.sink.descriptions().size(), 1u);
  const std::string filter = dns.sink.descriptions()[0].filter();
  EXPECT_NE(filter.find("50051"), std::string::npos) << filter;
  EXPECT_NE(filter.find("udp port 53"), std::string::npos) << filter;
}

TEST_F(CaptureHubTest, ClientSeesTheFileAsCapturedWithNanosecondTimestamps) {
  auto expected = test::ReadCapture(testing::RealCapture("vxlan.pcap"));
  ASSERT_TRUE(expected.ok()) << expected.status().message();
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", testing::RealCapture("vxlan.pcap").string()}});
  const AgentIdentity identity = Identity(files);
  Client a;
  CaptureHub hub;
  Subscribe(hub, Request("eth0"), identity, a);
  ASSERT_TRUE(a.sink.WaitForPackets(expected->size()));
  StopAndWait(a);

  const auto descriptions = a.sink.descriptions();
  ASSERT_EQ(descriptions.size(), 1u);
  EXPECT_EQ(descriptions[0].index(), 0u);
  EXPECT_EQ(descriptions[0].name(), "eth0");
  EXPECT_EQ(descriptions[0].link_type(), 1u);  // LINKTYPE_ETHERNET
  EXPECT_EQ(descriptions[0].agent_name(), "unit-agent");
  std::vector<uint64_t> timestamps;
  std::string data;
  for (const v1::PacketBatch& batch : a.sink.batches()) {
    timestamps.insert(timestamps.end(), batch.timestamp_ns().begin(), batch.timestamp_ns().end());
    data += batch.data();
  }
  std::string expected_data;
  ASSERT_EQ(timestamps.size(), expected->size());
  for (size_t i = 0; i < expected->size(); ++i) {
    EXPECT_EQ(timestamps[i], (*expected)[i].ts_ns);
    expected_data += (*expected)[i].bytes;
  }
  EXPECT_EQ(data, expected_data);
}

TEST_F(CaptureHubTest, LateJoinerGetsTheDescriptionsSoFarAndCountsFromJoining) {
  const std::string geneve = testing::RealCapture("geneve.pcap").string();
  auto files =
      std::make_shared<SavefileSourceFactory>(std::map<std::string, std::string>{{"eth0", geneve}});
  const AgentIdentity identity = Identity(files);
  v1::StreamRequest request = Request("eth0");
  request.mutable_decap()->set_mode(v1::Decapsulation::GENEVE);
  Client first, late;
  CaptureHub hub;
  Subscribe(hub, request, identity, first);
  ASSERT_TRUE(first.sink.WaitForPackets(39));  // every packet of the file, decapsulated
  const auto described = first.sink.descriptions();
  ASSERT_GE(described.size(), 3u) << "the capture interface and one per VNI (10, 11)";

  Subscribe(hub, request, identity, late);
  ASSERT_TRUE(late.sink.WaitForDescriptions(described.size()));
  EXPECT_EQ(StopAndWait(late), v1::StreamEnd::CLIENT_CANCELLED);
  EXPECT_EQ(StopAndWait(first), v1::StreamEnd::CLIENT_CANCELLED);
  EXPECT_EQ(files->opened(), 1);

  const auto replayed = late.sink.descriptions();
  ASSERT_EQ(replayed.size(), described.size());
  for (size_t i = 0; i < described.size(); ++i) {
    EXPECT_EQ(replayed[i].SerializeAsString(), described[i].SerializeAsString()) << i;
  }
  EXPECT_EQ(late.sink.packets(), 0u);
  const v1::Statistics late_stats = late.sink.last_statistics();
  ASSERT_EQ(late_stats.interfaces_size(), static_cast<int>(described.size()));
  for (const auto& i : late_stats.interfaces()) {
    EXPECT_EQ(i.packets_captured(), 0u) << "interface " << i.interface_index();
    EXPECT_EQ(i.packets_received(), 0u) << "interface " << i.interface_index();
  }
  const v1::Statistics first_stats = first.sink.last_statistics();
  EXPECT_EQ(first_stats.interfaces(0).packets_captured(), 39u);
  EXPECT_EQ(first_stats.interfaces(0).packets_received(), 39u);
  EXPECT_EQ(first_stats.interfaces(0).packets_sent(), 39u);
  EXPECT_EQ(first_stats.interfaces(0).decap_outcomes().at("decapsulated"), 39u);
  uint64_t inner = 0;
  for (int k = 1; k < first_stats.interfaces_size(); ++k) {
    inner += first_stats.interfaces(k).packets_captured();
  }
  EXPECT_EQ(inner, 39u);
}

TEST_F(CaptureHubTest, CountEndsOneClientWithExactlyItsPackets) {
  testing::WriteUdpCapture(File("a.pcap"), 20, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  const AgentIdentity identity = Identity(files);
  v1::StreamRequest request = Request("eth0");
  request.set_max_packets(5);
  Client a;
  CaptureHub hub;
  Subscribe(hub, request, identity, a);
  auto ended = a.done.Wait();
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->reason(), v1::StreamEnd::COUNT_REACHED);
  EXPECT_EQ(ended->message(), "5 packets captured");
  EXPECT_EQ(a.sink.packets(), 5u);
  EXPECT_EQ(a.sink.last_statistics().interfaces(0).packets_sent(), 5u);
}

TEST_F(CaptureHubTest, DurationEndsTheSubscription) {
  testing::WriteUdpCapture(File("a.pcap"), 3, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  v1::StreamRequest request = Request("eth0");
  request.set_duration_ms(1);
  Client a;
  CaptureHub hub;
  Subscribe(hub, request, Identity(files), a);
  auto ended = a.done.Wait();
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->reason(), v1::StreamEnd::DURATION_REACHED);
  EXPECT_EQ(ended->message(), "duration of 1 ms reached");
}

TEST_F(CaptureHubTest, SnaplenCutsPacketsAndKeepsTheirLength) {
  testing::WriteUdpCapture(File("a.pcap"), 10, 53, 500);
  const size_t frame = testing::UdpFrame(53, 500).size();
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  v1::StreamRequest request = Request("eth0");
  request.set_snaplen(64);
  Client a;
  CaptureHub hub;
  Subscribe(hub, request, Identity(files), a);
  ASSERT_TRUE(a.sink.WaitForPackets(10));
  StopAndWait(a);
  ASSERT_EQ(a.sink.descriptions().size(), 1u);
  EXPECT_EQ(a.sink.descriptions()[0].snaplen(), 64u);
  size_t bytes = 0;
  for (const v1::PacketBatch& batch : a.sink.batches()) {
    for (uint32_t length : batch.captured_length()) EXPECT_EQ(length, 64u);
    for (uint32_t length : batch.original_length()) EXPECT_EQ(length, frame);
    bytes += batch.data().size();
  }
  EXPECT_EQ(bytes, 10u * 64);
}

TEST_F(CaptureHubTest, ALonePacketLeavesAloneAndABurstThenQuietLeavesAsOneBatch) {
  testing::WriteUdpCapture(File("a.pcap"), 1000, 53, 18);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  auto gate = std::make_shared<testing::GatedFactory>(files);
  Client a;
  CaptureHub hub;
  Subscribe(hub, Request("eth0"), Identity(gate), a);
  ASSERT_TRUE(a.sink.WaitForDescriptions(1));
  // A quiet link: the batch leaves as soon as the ring is drained.
  gate->Release(1);
  ASSERT_TRUE(a.sink.WaitForPackets(1));
  // A busy drain (HoldPolicy::kMinPackets or more) is held to fill; when nothing follows, it
  // still leaves (by HoldPolicy::kMaxHold), whole.
  gate->Release(HoldPolicy::kMinPackets + 44);
  ASSERT_TRUE(a.sink.WaitForPackets(1 + HoldPolicy::kMinPackets + 44));
  StopAndWait(a);
  const auto batches = a.sink.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].timestamp_ns_size(), 1);
  EXPECT_EQ(batches[1].timestamp_ns_size(), static_cast<int>(HoldPolicy::kMinPackets + 44));
  EXPECT_EQ(a.sink.last_statistics().interfaces(0).packets_sent(), 301u);
}

TEST_F(CaptureHubTest, StatisticsCarryTheSourceDropsAndTheClientsOwn) {
  testing::WriteUdpCapture(File("a.pcap"), 20, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  // The ring "dropped" one packet for every four delivered.
  auto lossy = std::make_shared<testing::LossyFactory>(files, 4);
  Client full_queue;
  full_queue.sink.set_refuse_batches(true);
  CaptureHub hub;
  Subscribe(hub, Request("eth0"), Identity(lossy), full_queue);
  // Every batch is refused; the descriptions and statistics are not droppable.
  ASSERT_TRUE(full_queue.sink.WaitForDescriptions(1));
  // The statistics at the end count what the capture read by then. The first client was admitted
  // before the capture's first read, which takes the whole file (20 < one read's 256); a second
  // client's description shows that pass is over, and a stop is seen only at the next one.
  Client reader;
  Subscribe(hub, Request("eth0"), Identity(lossy), reader);
  ASSERT_TRUE(reader.sink.WaitForDescriptions(1));
  StopAndWait(reader);
  EXPECT_EQ(StopAndWait(full_queue), v1::StreamEnd::CLIENT_CANCELLED);
  const v1::InterfaceStatistics s = full_queue.sink.last_statistics().interfaces(0);
  EXPECT_EQ(s.packets_captured(), 20u);
  EXPECT_EQ(s.agent_drops(), 20u) << "its queue refused every batch";
  EXPECT_EQ(s.packets_sent(), 0u);
  EXPECT_EQ(s.kernel_drops(), 5u);
  EXPECT_EQ(s.interface_drops(), 5u);
  EXPECT_EQ(s.packets_received(), 25u) << "received counts the dropped ones too";
  EXPECT_EQ(full_queue.sink.packets(), 0u);
}

TEST_F(CaptureHubTest, SourceFailureEndsEveryClientWithItsError) {
  testing::WriteUdpCapture(File("a.pcap"), 20, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  auto failing = std::make_shared<testing::LossyFactory>(
      files, 1000, "pcap_dispatch(eth0): The interface disappeared");
  Client a;
  CaptureHub hub;
  Subscribe(hub, Request("eth0"), Identity(failing), a);
  auto ended = a.done.Wait();
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->reason(), v1::StreamEnd::CAPTURE_ERROR);
  EXPECT_EQ(ended->message(), "pcap_dispatch(eth0): The interface disappeared");
  EXPECT_EQ(a.sink.packets(), 20u) << "what was read before the failure is delivered";
}

TEST_F(CaptureHubTest, SetupFailuresReachDoneWithoutAnyMessage) {
  testing::WriteUdpCapture(File("a.pcap"), 3, 53, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}});
  const AgentIdentity identity = Identity(files);
  Client unknown, bad_filter, bad_request;
  CaptureHub hub;
  Subscribe(hub, Request("eth9"), identity, unknown);
  Subscribe(hub, Request("eth0", "udp port"), identity, bad_filter);
  // A filter over 16 KiB fails validation, before any capture.
  Subscribe(hub, Request("eth0", std::string(20000, 'x')), identity, bad_request);

  auto a = unknown.done.Wait();
  EXPECT_EQ(a.status().code(), StatusCode::kNotFound) << a.status().message();
  auto b = bad_filter.done.Wait();
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument) << b.status().message();
  auto c = bad_request.done.Wait();
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << c.status().message();
  EXPECT_TRUE(unknown.sink.messages().empty());
  EXPECT_TRUE(bad_filter.sink.messages().empty());
  EXPECT_TRUE(bad_request.sink.messages().empty());
  EXPECT_EQ(files->opened(), 0) << "a filter that does not compile is refused before opening";
}

TEST_F(CaptureHubTest, ShutdownEndsEveryCaptureJoinsItsThreadAndRefusesNewClients) {
  testing::WriteUdpCapture(File("a.pcap"), 5, 53, 32);
  testing::WriteUdpCapture(File("b.pcap"), 5, 80, 32);
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", File("a.pcap")}, {"eth1", File("b.pcap")}});
  const AgentIdentity identity = Identity(files);
  Client a, b, after;
  CaptureHub hub;
  Subscribe(hub, Request("eth0"), identity, a);
  Subscribe(hub, Request("eth1"), identity, b);
  ASSERT_TRUE(a.sink.WaitForPackets(5));
  ASSERT_TRUE(b.sink.WaitForPackets(5));
  hub.Shutdown();
  // Shutdown returned: every thread is joined, so every client has been told already.
  ASSERT_TRUE(a.done.called());
  ASSERT_TRUE(b.done.called());
  EXPECT_EQ(a.done.Wait()->reason(), v1::StreamEnd::AGENT_SHUTDOWN);
  EXPECT_EQ(b.done.Wait()->reason(), v1::StreamEnd::AGENT_SHUTDOWN);
  EXPECT_EQ(a.sink.last_statistics().interfaces(0).packets_sent(), 5u);
  EXPECT_EQ(hub.open_captures(), 0u);

  Subscribe(hub, Request("eth0"), identity, after);
  ASSERT_TRUE(after.done.called());
  EXPECT_EQ(after.done.Wait().status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace capd::agent
