// Decapsulation of real captures (tcpdump's test suite, see tests/data/real/README.md), checked
// against Wireshark's own dissection.
//
// The independent check: `tshark -T pdml` prints every protocol layer of every packet with its
// byte position and size in the frame (`<proto name="vxlan" ... size="8" pos="42">`). The inner
// frame, as Wireshark sees it, starts at the layer that follows the (last) vxlan/geneve layer and
// ends where the UDP datagram carrying that tunnel ends (the UDP dissector hands on only
// udp.length bytes). So for every packet the expected inner frame is
// [pos(layer after tunnel), pos(udp) + udp.length), the expected link type follows from that
// layer's name (eth -> Ethernet, ip/ipv6 -> raw IP), and the expected VNI is the tunnel layer's
// vni field. Positions are compared, not text, so tshark's display formats do not matter.
// A second check writes our inner frames to a pcap file with our inner link type and has tshark
// dissect that file: its layers must be the original's layers after the tunnel, at the same
// positions relative to the inner frame.
//
// tshark 4.0 does not dissect the BIG TCP captures' tunnels (IPv4 total length 0 / IPv6 payload
// length 0 stop it at UDP), so those files are checked against their known layout instead.

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "decap/decapsulator.h"
#include "tests/support/tshark_dissection.h"

namespace capd::decap {
namespace {

namespace fs = std::filesystem;

const fs::path kDataDir = CAPD_TESTDATA_DIR;

struct Packet {
  std::vector<uint8_t> bytes;
  uint32_t original_length = 0;
};

struct Capture {
  int link_type = -1;
  std::vector<Packet> packets;
};

Capture ReadCapture(const fs::path& path) {
  Capture capture;
  char error[PCAP_ERRBUF_SIZE] = {};
  pcap_t* handle = pcap_open_offline(path.c_str(), error);
  EXPECT_NE(handle, nullptr) << path << ": " << error;
  if (handle == nullptr) return capture;
  capture.link_type = pcap_datalink(handle);
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(handle, &header, &data) == 1) {
    capture.packets.push_back({{data, data + header->caplen}, header->len});
  }
  pcap_close(handle);
  return capture;
}

Result Decap(const Config& config, const Capture& capture, const Packet& packet) {
  return Decapsulate(config, static_cast<uint16_t>(capture.link_type), packet.bytes.data(),
                     static_cast<uint32_t>(packet.bytes.size()), packet.original_length);
}

using Layer = test::TsharkLayer;
using Dissection = test::TsharkPacket;  // one per packet: the layers in order

// tshark's dissection of `file`; `tshark_options` are words such as "-d udp.port==8472,vxlan".
std::vector<Dissection> Dissect(const fs::path& file, const std::string& tshark_options = "") {
  std::vector<std::string> args;
  std::istringstream words(tshark_options);
  for (std::string word; words >> word;) args.push_back(word);
  auto packets = test::TsharkDissect(file, args);
  EXPECT_TRUE(packets.ok()) << packets.status().message();
  return packets.ok() ? std::move(packets).value() : std::vector<Dissection>{};
}

// What tshark says the inner frame of one packet is.
struct Expected {
  bool decapsulated = false;
  std::string tunnel;      // "vxlan" or "geneve"
  std::string inner_name;  // the first inner layer
  uint32_t offset = 0;
  uint32_t end = 0;
  uint32_t vni = 0;
  Dissection inner_layers;  // positions relative to the inner frame
};

Expected ExpectedInner(const Dissection& layers) {
  Expected expected;
  int tunnel = -1;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].name == "vxlan" || layers[i].name == "geneve") tunnel = static_cast<int>(i);
  }
  if (tunnel < 0 || tunnel + 1 >= static_cast<int>(layers.size())) return expected;
  const Layer* udp = nullptr;
  for (int i = 0; i < tunnel; ++i) {
    if (layers[i].name == "udp") udp = &layers[i];
  }
  if (udp == nullptr || udp->udp_length <= 0) return expected;
  expected.decapsulated = true;
  expected.tunnel = layers[tunnel].name;
  expected.vni = static_cast<uint32_t>(layers[tunnel].vni);
  expected.inner_name = layers[tunnel + 1].name;
  expected.offset = static_cast<uint32_t>(layers[tunnel + 1].pos);
  expected.end = static_cast<uint32_t>(udp->pos + udp->udp_length);
  for (size_t i = tunnel + 1; i < layers.size(); ++i) {
    Layer layer = layers[i];
    layer.pos -= expected.offset;
    expected.inner_layers.push_back(layer);
  }
  return expected;
}

uint16_t LinkTypeOfLayer(const std::string& name) {
  if (name == "eth") return kLinkTypeEthernet;
  if (name == "ip" || name == "ipv6") return kLinkTypeRaw;
  return 0;
}

fs::path TempFile(const std::string& name) {
  return fs::path(::testing::TempDir()) / ("capd_decap_" + std::to_string(::getpid()) + "_" + name);
}

struct OracleCase {
  std::string file;
  uint16_t vxlan_port = 4789;
  std::string tshark_options;    // to make tshark see the same tunnels
  bool all_decapsulated = true;  // every packet is an Ethernet/IP tunnel packet
};

OracleCase Case(std::string file, uint16_t vxlan_port = 4789, std::string tshark_options = "") {
  OracleCase c;
  c.file = std::move(file);
  c.vxlan_port = vxlan_port;
  c.tshark_options = std::move(tshark_options);
  c.all_decapsulated = c.file.find("nsh") == std::string::npos;
  return c;
}

void PrintTo(const OracleCase& c, std::ostream* os) { *os << c.file; }

class TsharkOracleTest : public ::testing::TestWithParam<OracleCase> {};

TEST_P(TsharkOracleTest, InnerFramesAreTheOnesTsharkDecodes) {
  if (!test::HaveTshark()) GTEST_SKIP() << "tshark is not installed: no independent dissection";
  const OracleCase& param = GetParam();
  const fs::path path = kDataDir / param.file;
  const Capture capture = ReadCapture(path);
  ASSERT_FALSE(capture.packets.empty());
  const std::vector<Dissection> dissections = Dissect(path, param.tshark_options);
  ASSERT_EQ(dissections.size(), capture.packets.size());

  const Config config{.vxlan_port = param.vxlan_port};
  std::vector<std::pair<Result, Expected>> decapsulated;
  for (size_t i = 0; i < capture.packets.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i + 1));
    const Packet& packet = capture.packets[i];
    const Expected expected = ExpectedInner(dissections[i]);
    const Result result = Decap(config, capture, packet);
    if (!expected.decapsulated || LinkTypeOfLayer(expected.inner_name) == 0) {
      // Not a tunnel for tshark, or a tunnel carrying neither Ethernet nor IP (NSH).
      EXPECT_NE(result.outcome, Outcome::kDecapsulated) << expected.inner_name;
      continue;
    }
    ASSERT_EQ(result.outcome, Outcome::kDecapsulated) << OutcomeName(result.outcome);
    EXPECT_EQ(result.inner_offset, expected.offset);
    EXPECT_EQ(result.inner_offset + result.inner_length, expected.end);
    EXPECT_EQ(result.inner_link_type, LinkTypeOfLayer(expected.inner_name));
    EXPECT_EQ(result.vni, expected.vni);
    EXPECT_EQ(EncapsulationName(result.encapsulation), expected.tunnel);
    EXPECT_GE(result.inner_original_length, result.inner_length);
    if (packet.bytes.size() == packet.original_length) {
      EXPECT_EQ(result.inner_original_length, result.inner_length);
    }
    decapsulated.emplace_back(result, expected);
  }
  // Guards against a vacuous pass (tshark output not parsed, wrong port, ...).
  EXPECT_EQ(decapsulated.size(), param.all_decapsulated ? capture.packets.size() : 0u);
  if (decapsulated.empty()) return;

  // Second check: tshark on our inner frames sees the original's inner layers.
  for (uint16_t link_type : {kLinkTypeEthernet, kLinkTypeRaw}) {
    const fs::path out = TempFile(param.file + "." + std::to_string(link_type) + ".pcap");
    pcap_t* dead = pcap_open_dead(DltForLinkType(link_type), 262144);
    ASSERT_NE(dead, nullptr);
    pcap_dumper_t* dumper = pcap_dump_open(dead, out.c_str());
    ASSERT_NE(dumper, nullptr) << pcap_geterr(dead);
    std::vector<const Expected*> written;
    size_t index = 0;
    for (size_t i = 0; i < capture.packets.size(); ++i) {
      const Result result = Decap(config, capture, capture.packets[i]);
      if (result.outcome != Outcome::kDecapsulated) continue;
      const Expected& expected = decapsulated[index++].second;
      if (result.inner_link_type != link_type) continue;
      pcap_pkthdr header{};
      header.caplen = result.inner_length;
      header.len = result.inner_original_length;
      pcap_dump(reinterpret_cast<u_char*>(dumper), &header,
                capture.packets[i].bytes.data() + result.inner_offset);
      written.push_back(&expected);
    }
    pcap_dump_close(dumper);
    pcap_close(dead);
    if (!written.empty()) {
      const std::vector<Dissection> inner = Dissect(out);
      ASSERT_EQ(inner.size(), written.size());
      for (size_t i = 0; i < inner.size(); ++i) {
        SCOPED_TRACE("inner frame " + std::to_string(i + 1));
        Dissection layers = inner[i];
        if (!layers.empty() && layers.front().name == "raw") layers.erase(layers.begin());
        const Dissection& want = written[i]->inner_layers;
        ASSERT_EQ(layers.size(), want.size());
        for (size_t l = 0; l < layers.size(); ++l) {
          EXPECT_EQ(layers[l].name, want[l].name);
          EXPECT_EQ(layers[l].pos, want[l].pos) << want[l].name;
          EXPECT_EQ(layers[l].size, want[l].size) << want[l].name;
        }
      }
    }
    fs::remove(out);
  }
}

INSTANTIATE_TEST_SUITE_P(
    RealCaptures, TsharkOracleTest,
    ::testing::Values(Case("vxlan.pcap"), Case("geneve.pcap"), Case("geneve-gcp.pcap"),
                      Case("vxlan_port_8472.pcap", 8472, "-d udp.port==8472,vxlan"),
                      Case("nsh-over-vxlan-gpe.pcap", 4790), Case("gso-ipv4-geneve-ipv4.pcap"),
                      Case("gso-ipv4-geneve-ipv6.pcap"), Case("gso-ipv4-vxlan-ipv4.pcap"),
                      Case("gso-ipv4-vxlan-ipv6.pcap"), Case("gso-ipv6-geneve-ipv4.pcap"),
                      Case("gso-ipv6-geneve-ipv6.pcap"), Case("gso-ipv6-vxlan-ipv4.pcap"),
                      Case("gso-ipv6-vxlan-ipv6.pcap")),
    [](const ::testing::TestParamInfo<OracleCase>& info) {
      std::string name = info.param.file.substr(0, info.param.file.find(".pcap"));
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

// --- Facts about individual files, independent of tshark
// ------------------------------------------

std::vector<Result> RunAll(const std::string& file, const Config& config = {}) {
  const Capture capture = ReadCapture(kDataDir / file);
  EXPECT_EQ(capture.link_type, DLT_EN10MB);
  std::vector<Result> results;
  for (const Packet& packet : capture.packets) results.push_back(Decap(config, capture, packet));
  return results;
}

TEST(RealCaptureTest, VxlanVni100) {
  const std::vector<Result> results = RunAll("vxlan.pcap");
  ASSERT_EQ(results.size(), 10u);
  for (const Result& result : results) {
    ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
    EXPECT_EQ(result.encapsulation, Encapsulation::kVxlan);
    EXPECT_EQ(result.vni, 100u);
    EXPECT_EQ(result.inner_offset, 50u);
    EXPECT_EQ(result.outer_source_family, AF_INET);
    const std::string source = OuterSourceText(result);
    EXPECT_TRUE(source == "192.168.203.1" || source == "192.168.202.1") << source;
  }
}

TEST(RealCaptureTest, VxlanOnPort8472OnlyWhenConfigured) {
  for (const Result& result : RunAll("vxlan_port_8472.pcap")) {
    EXPECT_EQ(result.outcome, Outcome::kNotTunnel);
  }
  const std::vector<Result> results = RunAll("vxlan_port_8472.pcap", {.vxlan_port = 8472});
  ASSERT_EQ(results.size(), 10u);
  for (const Result& result : results) {
    ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
    EXPECT_EQ(result.vni, 100u);
  }
}

TEST(RealCaptureTest, GeneveVnis10And11) {
  const std::vector<Result> results = RunAll("geneve.pcap");
  ASSERT_EQ(results.size(), 39u);
  std::set<uint32_t> vnis;
  for (const Result& result : results) {
    ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
    EXPECT_EQ(result.encapsulation, Encapsulation::kGeneve);
    EXPECT_EQ(result.inner_link_type, kLinkTypeEthernet);
    EXPECT_FALSE(result.aws.has_eni_id);  // its options are class 0x0000, not AWS
    vnis.insert(result.vni);
  }
  EXPECT_EQ(vnis, (std::set<uint32_t>{10, 11}));
}

TEST(RealCaptureTest, GeneveGcpIsBareIpv4) {
  const Capture capture = ReadCapture(kDataDir / "geneve-gcp.pcap");
  ASSERT_EQ(capture.packets.size(), 1u);
  const Packet& packet = capture.packets[0];
  const Result result = Decap({}, capture, packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated);
  EXPECT_EQ(result.encapsulation, Encapsulation::kGeneve);
  EXPECT_EQ(result.inner_link_type, kLinkTypeRaw);
  EXPECT_EQ(result.vni, 0u);
  EXPECT_EQ(result.inner_offset, 14u + 20 + 8 + 8 + 40);  // 40 bytes of Google options
  ASSERT_GE(result.inner_length, 20u);
  EXPECT_EQ(packet.bytes[result.inner_offset] >> 4, 4);
  EXPECT_FALSE(result.aws.has_eni_id || result.aws.has_attachment_id || result.aws.has_flow_cookie);
}

TEST(RealCaptureTest, VxlanGpeWithNshIsNeverEthernet) {
  for (const Result& result : RunAll("nsh-over-vxlan-gpe.pcap")) {
    EXPECT_EQ(result.outcome, Outcome::kNotTunnel);  // UDP 4790 is not the VXLAN port
  }
  for (Mode mode : {Mode::kAuto, Mode::kVxlan}) {
    const std::vector<Result> results =
        RunAll("nsh-over-vxlan-gpe.pcap", {.mode = mode, .vxlan_port = 4790});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].outcome, Outcome::kUnsupportedPayload);
  }
}

// GSO (~7 KB) and BIG TCP (~80 KB, IPv4 total length 0, IPv6 payload length 0 without a jumbo
// option) tunnel packets: the whole rest of the packet is the inner frame.
class LargePacketTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LargePacketTest, WholeRestIsTheInnerFrame) {
  const std::string& file = GetParam();
  const bool outer_ipv6 = file.find("-ipv6-") != std::string::npos;
  const bool geneve = file.find("geneve") != std::string::npos;
  const bool inner_ipv6 = file.rfind("ipv6.pcap") != std::string::npos;
  const Capture capture = ReadCapture(kDataDir / file);
  ASSERT_EQ(capture.packets.size(), 1u);
  const Packet& packet = capture.packets[0];
  const Result result = Decap({}, capture, packet);
  ASSERT_EQ(result.outcome, Outcome::kDecapsulated) << OutcomeName(result.outcome);
  EXPECT_EQ(result.encapsulation, geneve ? Encapsulation::kGeneve : Encapsulation::kVxlan);
  EXPECT_EQ(result.vni, 5001u);
  EXPECT_EQ(result.outer_source_family, outer_ipv6 ? AF_INET6 : AF_INET);
  const uint32_t offset = 14 + (outer_ipv6 ? 40 : 20) + 8 + 8;  // these Geneve have no options
  EXPECT_EQ(result.inner_offset, offset);
  EXPECT_EQ(result.inner_length, packet.bytes.size() - offset);
  EXPECT_GE(result.inner_original_length, result.inner_length);
  EXPECT_EQ(result.inner_original_length, packet.original_length - offset);
  ASSERT_GE(result.inner_length, 15u);
  const uint8_t* inner = packet.bytes.data() + result.inner_offset;
  EXPECT_EQ(inner[12] << 8 | inner[13], inner_ipv6 ? 0x86dd : 0x0800);
  EXPECT_EQ(inner[14] >> 4, inner_ipv6 ? 6 : 4);
}

INSTANTIATE_TEST_SUITE_P(
    RealCaptures, LargePacketTest,
    ::testing::Values("gso-ipv4-geneve-ipv4.pcap", "gso-ipv4-geneve-ipv6.pcap",
                      "gso-ipv4-vxlan-ipv4.pcap", "gso-ipv4-vxlan-ipv6.pcap",
                      "gso-ipv6-geneve-ipv4.pcap", "gso-ipv6-geneve-ipv6.pcap",
                      "gso-ipv6-vxlan-ipv4.pcap", "gso-ipv6-vxlan-ipv6.pcap",
                      "bigtcp-ipv4-geneve-ipv4.pcap", "bigtcp-ipv4-geneve-ipv6.pcap",
                      "bigtcp-ipv4-vxlan-ipv4.pcap", "bigtcp-ipv4-vxlan-ipv6.pcap",
                      "bigtcp-ipv6-geneve-ipv4.pcap", "bigtcp-ipv6-geneve-ipv6.pcap",
                      "bigtcp-ipv6-vxlan-ipv4.pcap", "bigtcp-ipv6-vxlan-ipv6.pcap"),
    [](const ::testing::TestParamInfo<std::string>& info) {
      std::string name = info.param.substr(0, info.param.find(".pcap"));
      for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

// Every packet of every file, cut at every length up to its headers plus a few bytes, with a
// few configurations: never a crash, never an inner frame outside the captured bytes.
TEST(RealCaptureTest, EveryFileCutAnywhereIsSafe) {
  size_t files = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(kDataDir)) {
    if (entry.path().extension() != ".pcap") continue;
    ++files;
    const Capture capture = ReadCapture(entry.path());
    for (const Packet& packet : capture.packets) {
      const auto limit = static_cast<uint32_t>(std::min<size_t>(packet.bytes.size(), 160));
      for (uint32_t cut = 0; cut <= limit; ++cut) {
        const std::vector<uint8_t> bytes(packet.bytes.begin(), packet.bytes.begin() + cut);
        for (const Config& config :
             {Config{}, Config{.vxlan_port = 8472}, Config{.vxlan_port = 4790}}) {
          const Result result = Decapsulate(config, static_cast<uint16_t>(capture.link_type),
                                            bytes.data(), cut, packet.original_length);
          if (result.outcome != Outcome::kDecapsulated) continue;
          EXPECT_LE(result.inner_offset + static_cast<uint64_t>(result.inner_length), cut);
          EXPECT_GE(result.inner_original_length, result.inner_length);
        }
      }
    }
  }
  EXPECT_EQ(files, 21u);
}

}  // namespace
}  // namespace capd::decap
