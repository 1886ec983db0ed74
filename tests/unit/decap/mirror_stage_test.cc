// MirrorStage's interfaces: one per (encapsulation, VNI, inner link type), found in constant
// time, and at most MirrorOptions::max_interfaces of them (issue 16 item 7: a flood of invented
// VNIs made 91,047 interfaces).

#include "pipeline/mirror_stage.h"

#include <gtest/gtest.h>

#include <chrono>

#include "tests/unit/decap/tunnel_packets.h"

namespace capd::pipeline {
namespace {

using decap::fixtures::Bytes;
using decap::fixtures::Cat;
using decap::fixtures::EthernetIpv4Udp;
using decap::fixtures::GeneveHeader;
using decap::fixtures::InnerEthernetIpv4;
using decap::fixtures::InnerIpv4;
using decap::fixtures::VxlanHeader;

constexpr uint16_t kEthernet = 1;

Bytes VxlanPacket(uint32_t vni) {
  return EthernetIpv4Udp(4789, Cat({VxlanHeader(vni), InnerEthernetIpv4()}));
}

std::unique_ptr<MirrorStage> Stage(size_t max_interfaces, std::vector<uint32_t> vnis = {}) {
  MirrorOptions options;
  options.decap.mode = decap::Mode::kAuto;
  options.max_interfaces = max_interfaces;
  options.vnis = std::move(vnis);
  auto stage = MirrorStage::Create(options, kEthernet, "eth0", 1);
  EXPECT_TRUE(stage.ok());
  return std::move(stage).value();
}

Verdict Process(MirrorStage& stage, const Bytes& packet, InnerPacket& out) {
  return stage.Process(packet.data(), static_cast<uint32_t>(packet.size()),
                       static_cast<uint32_t>(packet.size()), out);
}

TEST(MirrorStageTest, SessionsBeyondTheCapAreDroppedAndCounted) {
  auto stage = Stage(3);
  InnerPacket out;
  for (uint32_t vni = 1; vni <= 3; ++vni) {
    ASSERT_EQ(Process(*stage, VxlanPacket(vni), out), Verdict::kContinue);
    EXPECT_TRUE(out.new_interface);
    EXPECT_EQ(out.interface->index, vni);
  }
  for (uint32_t vni = 4; vni <= 10; ++vni) {
    EXPECT_EQ(Process(*stage, VxlanPacket(vni), out), Verdict::kDrop);
  }
  // Known sessions still pass, and announce nothing new.
  ASSERT_EQ(Process(*stage, VxlanPacket(2), out), Verdict::kContinue);
  EXPECT_FALSE(out.new_interface);
  EXPECT_EQ(out.interface->vni, 2u);
  EXPECT_EQ(stage->interfaces().size(), 3u);
  EXPECT_EQ(stage->interface_limit_drops(), 7u);
  const auto counters = stage->Counters();
  EXPECT_EQ(counters.at("interface_limit"), 7u);
  EXPECT_EQ(counters.at("decapsulated"), 11u);
}

// The selection comes first: frames of unselected VNIs never take a place.
TEST(MirrorStageTest, UnselectedVnisTakeNoPlace) {
  auto stage = Stage(1, {7});
  InnerPacket out;
  for (uint32_t vni = 100; vni < 200; ++vni) {
    EXPECT_EQ(Process(*stage, VxlanPacket(vni), out), Verdict::kDrop);
  }
  ASSERT_EQ(Process(*stage, VxlanPacket(7), out), Verdict::kContinue);
  EXPECT_EQ(out.interface->name, "vxlan-7");
  EXPECT_EQ(stage->interface_limit_drops(), 0u);
  EXPECT_EQ(stage->Counters().at("vni_not_selected"), 100u);
}

// The same Geneve VNI with an Ethernet and a raw IP payload: two interfaces, told apart by name.
TEST(MirrorStageTest, SameVniWithTwoLinkTypesGetsTwoNames) {
  auto stage = Stage(0);
  InnerPacket out;
  ASSERT_EQ(
      Process(*stage, EthernetIpv4Udp(6081, Cat({GeneveHeader(0x6558, 5), InnerEthernetIpv4()})),
              out),
      Verdict::kContinue);
  EXPECT_EQ(out.interface->name, "geneve-5");
  ASSERT_EQ(
      Process(*stage, EthernetIpv4Udp(6081, Cat({GeneveHeader(0x0800, 5), InnerIpv4()})), out),
      Verdict::kContinue);
  EXPECT_EQ(out.interface->name, "geneve-5-raw");
  EXPECT_EQ(stage->interfaces().size(), 2u);
}

// No cap (capctl decap on a file): 100,000 sessions, each found again in constant time. The
// linear lookup this replaced took minutes for as many.
TEST(MirrorStageTest, HundredThousandSessionsStayFast) {
  auto stage = Stage(0);
  InnerPacket out;
  Bytes packet = VxlanPacket(0);
  const size_t vni_at = packet.size() - InnerEthernetIpv4().size() - 4;  // VXLAN's VNI bytes
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 2; ++round) {
    for (uint32_t vni = 0; vni < 100'000; ++vni) {
      packet[vni_at] = static_cast<uint8_t>(vni >> 16);
      packet[vni_at + 1] = static_cast<uint8_t>(vni >> 8);
      packet[vni_at + 2] = static_cast<uint8_t>(vni);
      ASSERT_EQ(Process(*stage, packet, out), Verdict::kContinue);
      ASSERT_EQ(out.interface->vni, vni);
      ASSERT_EQ(out.new_interface, round == 0);
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(stage->interfaces().size(), 100'000u);
  EXPECT_LT(seconds, 10.0);  // ~0.1 s; a quadratic lookup would be minutes
}

}  // namespace
}  // namespace capd::pipeline
