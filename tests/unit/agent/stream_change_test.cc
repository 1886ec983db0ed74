// Changing a running stream's filter without root: CaptureHub::Change with captures read from
// files (SavefileSource), and the handles that say who may change which stream. What a client
// would check: which packets it gets before and after, under which interface descriptions, and
// that others sharing the old capture see nothing of it.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/capture/savefile_source.h"
#include "agent/service/stream_handles.h"
#include "agent/stream/capture_hub.h"
#include "agent/stream/stream_request.h"
#include "tests/unit/agent/hub_test_support.h"

namespace capd::agent {
namespace {

using testing::DoneLatch;
using testing::RecordingSink;

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

v1::StreamRequest Request(const std::string& filter) {
  v1::StreamRequest request;  // a file as eth0
  request.set_interface("eth0");
  request.set_filter(filter);
  return request;
}

v1::ChangeStreamRequest Change(const std::string& filter) {
  v1::ChangeStreamRequest change;
  change.set_filter(filter);
  return change;
}

// Packets of `sink` filed under stream interface `index`.
uint64_t PacketsOn(const RecordingSink& sink, uint32_t index) {
  uint64_t n = 0;
  for (const v1::PacketBatch& batch : sink.batches()) {
    for (uint32_t i : batch.interface_index()) n += i == index ? 1 : 0;
  }
  return n;
}

class StreamChangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> frames;
    for (int i = 0; i < 10; ++i) frames.push_back(testing::UdpFrame(53, 32));
    for (int i = 0; i < 6; ++i) frames.push_back(testing::UdpFrame(80, 32));
    testing::WriteFrames(dir_.path() / "mixed.pcap", frames);
    files_ = std::make_shared<SavefileSourceFactory>(
        std::map<std::string, std::string>{{"eth0", dir_.path() / "mixed.pcap"}});
  }
  testing::TempDir dir_;
  std::shared_ptr<SavefileSourceFactory> files_;
};

TEST_F(StreamChangeTest, TheSubscriberMovesToTheNewFilterAndTheSharedCaptureGoesOn) {
  const AgentIdentity identity = Identity(files_);
  Client a, b;
  CaptureHub hub;
  const uint64_t id =
      hub.Subscribe(Request("udp port 53"), identity, a.sink, a.stop, a.done.Callback());
  hub.Subscribe(Request("udp port 53"), identity, b.sink, b.stop, b.done.Callback());
  ASSERT_NE(id, 0u);
  ASSERT_TRUE(a.sink.WaitForPackets(10));
  // b joined the same capture (it may have joined after the file's end: it counts from there).
  ASSERT_TRUE(b.sink.WaitForDescriptions(1));
  EXPECT_EQ(files_->opened(), 1);

  auto changed = hub.Change(id, Change("udp port 80"));
  ASSERT_TRUE(changed.ok()) << changed.status().message();
  EXPECT_EQ(changed->first_interface_index(), 1u) << "fresh stream-local indices";
  EXPECT_NE(changed->filter().find("udp port 80"), std::string::npos) << changed->filter();
  EXPECT_NE(changed->filter().find("50051"), std::string::npos)
      << "the own-traffic exclusion stays in front: " << changed->filter();

  // The new capture reads the file from its start: the 6 packets to port 80, on index 1.
  ASSERT_TRUE(a.sink.WaitForPackets(16));
  ASSERT_TRUE(a.sink.WaitForDescriptions(2));
  const auto described = a.sink.descriptions();
  EXPECT_EQ(described[0].index(), 0u);
  EXPECT_EQ(described[1].index(), 1u);
  EXPECT_EQ(described[1].filter(), changed->filter()) << "the new IDB names the new filter";
  EXPECT_EQ(PacketsOn(a.sink, 0), 10u);
  EXPECT_EQ(PacketsOn(a.sink, 1), 6u);
  // Before the move, the old interface's final statistics: everything it was sent.
  bool old_final = false;
  for (const v1::StreamResponse& m : a.sink.messages()) {
    if (m.has_interface() && m.interface().index() == 1) break;
    if (m.has_statistics() && m.statistics().interfaces(0).interface_index() == 0 &&
        m.statistics().interfaces(0).packets_sent() == 10) {
      old_final = true;
    }
  }
  EXPECT_TRUE(old_final) << "the old interface's statistics before the new interface";

  // b shares nothing of it: one interface, only the old capture's port-53 packets (as many as
  // reached the capture after b joined, which may still be arriving), its capture still open.
  EXPECT_EQ(files_->opened(), 2);
  EXPECT_EQ(b.sink.descriptions().size(), 1u);
  EXPECT_LE(PacketsOn(b.sink, 0), 10u);
  EXPECT_EQ(PacketsOn(b.sink, 1), 0u);
  EXPECT_EQ(hub.open_captures(), 2u);

  a.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(a.done.Wait().ok());
  const v1::Statistics last = a.sink.last_statistics();
  ASSERT_GE(last.interfaces_size(), 1);
  EXPECT_EQ(last.interfaces(0).interface_index(), 1u);
  EXPECT_EQ(last.interfaces(0).packets_sent(), 6u) << "counted from the move";
  b.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(b.done.Wait().ok());
}

TEST_F(StreamChangeTest, AFilterThatDoesNotCompileIsRefusedAndTheOldOneStays) {
  const AgentIdentity identity = Identity(files_);
  Client a;
  CaptureHub hub;
  const uint64_t id =
      hub.Subscribe(Request("udp port 53"), identity, a.sink, a.stop, a.done.Callback());
  ASSERT_TRUE(a.sink.WaitForPackets(10));
  auto refused = hub.Change(id, Change("udp port"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(refused.status().message().empty());
  auto too_long = hub.Change(id, Change(std::string(20000, ' ') + "udp"));
  EXPECT_EQ(too_long.status().code(), StatusCode::kInvalidArgument) << "the same limits";
  v1::ChangeStreamRequest vnis = Change("udp");
  vnis.mutable_vnis()->add_vnis(7);
  EXPECT_EQ(hub.Change(id, vnis).status().code(), StatusCode::kInvalidArgument)
      << "VNIs on a plain stream";
  EXPECT_EQ(files_->opened(), 1);
  EXPECT_EQ(a.sink.descriptions().size(), 1u);
  EXPECT_EQ(hub.Change(id + 1000, Change("udp")).status().code(), StatusCode::kNotFound);

  a.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(a.done.Wait().ok());
  EXPECT_EQ(hub.Change(id, Change("udp")).status().code(), StatusCode::kNotFound)
      << "an ended stream cannot be changed";
}

TEST_F(StreamChangeTest, MovingToAFilterAnotherClientUsesJoinsItsCapture) {
  const AgentIdentity identity = Identity(files_);
  Client a, b;
  CaptureHub hub;
  const uint64_t id =
      hub.Subscribe(Request("udp port 53"), identity, a.sink, a.stop, a.done.Callback());
  hub.Subscribe(Request("udp port 80"), identity, b.sink, b.stop, b.done.Callback());
  ASSERT_TRUE(a.sink.WaitForPackets(10));
  ASSERT_TRUE(b.sink.WaitForPackets(6));
  auto changed = hub.Change(id, Change("udp port 80"));
  ASSERT_TRUE(changed.ok()) << changed.status().message();
  ASSERT_TRUE(a.sink.WaitForDescriptions(2));
  EXPECT_EQ(files_->opened(), 2) << "joined b's capture rather than opening a third";
  // a's old capture had no one else: it closes (the hub then holds b's only).
  a.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(a.done.Wait().ok());
  EXPECT_EQ(PacketsOn(a.sink, 0), 10u);
  b.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(b.done.Wait().ok());
}

TEST(StreamChangeMirrorTest, NewVnisGetTheirOwnInterfacesAfterTheOldOnes) {
  auto files = std::make_shared<SavefileSourceFactory>(
      std::map<std::string, std::string>{{"eth0", testing::RealCapture("geneve.pcap").string()}});
  const AgentIdentity identity = Identity(files);
  v1::StreamRequest request = Request("");
  request.mutable_decap()->set_mode(v1::Decapsulation::GENEVE);
  Client a;
  CaptureHub hub;
  const uint64_t id = hub.Subscribe(request, identity, a.sink, a.stop, a.done.Callback());
  ASSERT_TRUE(a.sink.WaitForPackets(39));  // VNI 10 (19 packets) and 11 (20)
  ASSERT_EQ(a.sink.descriptions().size(), 3u);

  v1::ChangeStreamRequest change;
  change.mutable_vnis()->add_vnis(11);
  auto changed = hub.Change(id, change);
  ASSERT_TRUE(changed.ok()) << changed.status().message();
  EXPECT_EQ(changed->first_interface_index(), 3u);
  ASSERT_TRUE(a.sink.WaitForPackets(39 + 20));
  const auto described = a.sink.descriptions();
  ASSERT_EQ(described.size(), 5u);
  EXPECT_EQ(described[3].index(), 3u);
  EXPECT_TRUE(described[3].encapsulation().empty()) << "the new capture interface";
  EXPECT_EQ(described[4].index(), 4u);
  EXPECT_EQ(described[4].vni(), 11u);
  EXPECT_EQ(described[4].capture_interface_index(), 3u);
  EXPECT_EQ(PacketsOn(a.sink, 4), 20u) << "only VNI 11 after the change";
  a.stop.Request(v1::StreamEnd::CLIENT_CANCELLED);
  ASSERT_TRUE(a.done.Wait().ok());
  const v1::Statistics last = a.sink.last_statistics();
  ASSERT_EQ(last.interfaces_size(), 2);
  EXPECT_EQ(last.interfaces(0).interface_index(), 3u);
  EXPECT_EQ(last.interfaces(0).decap_outcomes().at("vni_not_selected"), 19u);
  EXPECT_EQ(last.interfaces(1).interface_index(), 4u);
  EXPECT_EQ(last.interfaces(1).packets_captured(), 20u);
}

TEST(ApplyChangeTest, AChangeIsValidatedAsANewStreamsRequest) {
  v1::StreamRequest plain = Request("udp");
  plain.set_max_packets(10);
  auto applied = ApplyChange(plain, Change("tcp port 80"));
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->filter(), "tcp port 80");
  EXPECT_EQ(applied->interface(), "eth0");
  EXPECT_EQ(applied->max_packets(), 10u) << "the rest of the request stays";

  EXPECT_EQ(ApplyChange(plain, Change("udp\xff")).status().code(), StatusCode::kInvalidArgument)
      << "text that is not UTF-8";
  EXPECT_EQ(ApplyChange(plain, Change(std::string(16 * 1024 + 1, 'x'))).status().code(),
            StatusCode::kInvalidArgument);
  v1::ChangeStreamRequest inner = Change("");
  inner.set_inner_filter("tcp");
  EXPECT_EQ(ApplyChange(plain, inner).status().code(), StatusCode::kInvalidArgument)
      << "an inner filter on a plain stream";

  v1::StreamRequest mirror = Request("");
  mirror.mutable_decap()->set_mode(v1::Decapsulation::VXLAN);
  mirror.mutable_decap()->add_vnis(5);
  mirror.mutable_decap()->set_inner_filter("icmp");
  auto kept = ApplyChange(mirror, Change("udp"));
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->decap().vnis_size(), 1) << "VNIs absent from the change stay";
  EXPECT_EQ(kept->decap().inner_filter(), "icmp");
  v1::ChangeStreamRequest all = Change("");
  all.mutable_vnis();  // present and empty: every session
  all.set_inner_filter("");
  auto cleared = ApplyChange(mirror, all);
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ(cleared->decap().vnis_size(), 0);
  EXPECT_EQ(cleared->decap().inner_filter(), "");
  v1::ChangeStreamRequest wide = Change("");
  wide.mutable_vnis()->add_vnis(1u << 24);
  EXPECT_EQ(ApplyChange(mirror, wide).status().code(), StatusCode::kInvalidArgument);
  v1::ChangeStreamRequest many = Change("");
  for (int i = 0; i < 4097; ++i) many.mutable_vnis()->add_vnis(i);
  EXPECT_EQ(ApplyChange(mirror, many).status().code(), StatusCode::kInvalidArgument);
}

TEST(StreamHandlesTest, OnlyTheOpenersPrincipalFindsTheStream) {
  StreamHandles handles;
  auto h1 = NewStreamHandle();
  auto h2 = NewStreamHandle();
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(h1->size(), 32u) << "128 bits as hex";
  EXPECT_NE(*h1, *h2);
  int owner = 0;
  handles.Add(*h1, "uid:1000", 7, &owner);
  auto mine = handles.BeginChange(*h1, "uid:1000");
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine.value(), 7u);
  handles.EndChange(*h1);
  const auto other = handles.BeginChange(*h1, "uid:1001");
  const auto unknown = handles.BeginChange(*h2, "uid:1000");
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(other.status().message(), unknown.status().message())
      << "another's stream looks like no stream";
  handles.RemoveOwner(&owner);
  EXPECT_EQ(handles.BeginChange(*h1, "uid:1000").status().code(), StatusCode::kNotFound);
}

TEST(StreamHandlesTest, ChangesAreBoundedPerStream) {
  StreamHandles handles({/*burst=*/3, std::chrono::milliseconds(2000)});
  int owner = 0;
  handles.Add("h", "token:x", 1, &owner);
  const auto t0 = StreamHandles::Clock::now() + std::chrono::seconds(1);
  int accepted = 0;
  for (int i = 0; i < 50; ++i) {
    auto begun = handles.BeginChange("h", "token:x", t0);
    if (begun.ok()) {
      ++accepted;
      handles.EndChange("h");
    } else {
      EXPECT_EQ(begun.status().code(), StatusCode::kResourceExhausted);
    }
  }
  EXPECT_EQ(accepted, 3) << "the burst, then nothing at the same instant";
  EXPECT_TRUE(handles.BeginChange("h", "token:x", t0 + std::chrono::milliseconds(2001)).ok())
      << "one more a period later";
  EXPECT_EQ(handles.BeginChange("h", "token:x", t0 + std::chrono::seconds(60)).status().code(),
            StatusCode::kResourceExhausted)
      << "one change at a time";
}

}  // namespace
}  // namespace capd::agent
