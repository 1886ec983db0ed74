// capctl stream end to end on a real veth: what it writes is what tcpdump writes, in both file
// formats, with concurrent streams, a snaplen, and the agent's default interface.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/agent_fixture.h"
#include "tests/support/proc_status.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";  // TestNetwork::kAgentInterface
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7000;
constexpr size_t kUdpHeaders = 14 + 20 + 8;  // Ethernet, IPv4 without options, UDP

class StreamTest : public AgentTest {};

// The same traffic captured by tcpdump (libpcap's own capture and dumper) and by capd → gRPC →
// capctl's pcapng writer: same packets, same bytes, same order, same lengths, same timestamps.
TEST_F(StreamTest, ByteIdenticalToTcpdump) {
  constexpr int kCount = 200;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> tcpdump;
  std::unique_ptr<Subprocess> capctl;
  // tcpdump stops by itself after kCount packets (-c): SIGINT makes it break out of its loop
  // without reading what is still in its ring, which would make the reference file racy.
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, File("ref.pcap"),
                                       {"-c", std::to_string(kCount), "udp"}, &tcpdump));
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl",
      {"-i", kIface, "-f", "udp", "-c", std::to_string(kCount), "-w", File("out.pcapng").string()},
      &capctl));
  const auto payloads = MakePayloads(kCount, "ref");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));

  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));
  const std::string summary = SummaryLine(capctl->Stderr());
  EXPECT_NE(summary.find(std::to_string(kCount) + " packets written"), std::string::npos)
      << capctl->Describe();

  const auto ref = ReadOrFail(File("ref.pcap"));
  const auto out = ReadOrFail(File("out.pcapng"));
  ASSERT_EQ(ref.size(), static_cast<size_t>(kCount));
  ASSERT_EQ(out.size(), static_cast<size_t>(kCount));
  // Timestamps: both captures read the same skb, and the kernel stamps an skb once (on veth,
  // in netif_rx for the receiving side) and copies that stamp into every packet socket's ring
  // (tpacket_get_timestamp, Linux 6.1). So they are not merely close: they are equal, to the
  // nanosecond, for every packet (measured: 0 ns difference in every run). Any difference means
  // capd or capctl rounds, shifts or reorders timestamps.
  for (size_t i = 0; i < ref.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(out[i].linktype, ref[i].linktype);
    EXPECT_EQ(out[i].len, ref[i].len);
    EXPECT_EQ(out[i].caplen, ref[i].caplen);
    EXPECT_TRUE(out[i].bytes == ref[i].bytes) << "bytes differ";
    EXPECT_EQ(out[i].ts_ns, ref[i].ts_ns)
        << "difference " << static_cast<int64_t>(out[i].ts_ns - ref[i].ts_ns) << " ns";
    if (HasFailure()) break;  // one packet's story is enough
  }
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(out, payloads, kPort));

  // pcapng with nanosecond timestamps: in the Interface Description Block itself, and as
  // Wireshark's reader sees the file.
  auto resolutions = PcapngTsresols(File("out.pcapng"));
  ASSERT_TRUE(resolutions.ok()) << resolutions.status().message();
  ASSERT_EQ(resolutions->size(), 1u);
  EXPECT_EQ((*resolutions)[0], 9) << "if_tsresol";
  ExpectCapinfos(File("out.pcapng"), kCount);
}

// --format pcap: the nanosecond pcap magic, and exactly the packets a concurrent pcapng stream
// of the same traffic holds.
TEST_F(StreamTest, PcapFormatHasNanosecondMagicAndSamePackets) {
  constexpr int kCount = 60;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> pcapng;
  std::unique_ptr<Subprocess> pcap;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "pcapng",
      {"-i", kIface, "-f", "udp", "-c", std::to_string(kCount), "-w", File("out.pcapng").string()},
      &pcapng));
  ASSERT_NO_FATAL_FAILURE(StartStream("pcap",
                                      {"-i", kIface, "-f", "udp", "-c", std::to_string(kCount),
                                       "--format", "pcap", "-w", File("out.pcap").string()},
                                      &pcap));
  const auto payloads = MakePayloads(kCount, "fmt");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*pcapng, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*pcap, 0));

  const auto magic = FileMagic(File("out.pcap"));
  ASSERT_TRUE(magic.has_value());
  EXPECT_EQ(*magic, 0xa1b23c4du) << std::hex << "magic 0x" << *magic;
  const auto a = ReadOrFail(File("out.pcapng"));
  const auto b = ReadOrFail(File("out.pcap"));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(b, payloads, kPort));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    EXPECT_EQ(b[i].linktype, a[i].linktype);
    EXPECT_EQ(b[i].ts_ns, a[i].ts_ns);
    EXPECT_EQ(b[i].len, a[i].len);
    EXPECT_TRUE(b[i].bytes == a[i].bytes);
  }
  ExpectCapinfos(File("out.pcap"), kCount);
}

// Two streams on the same interface at once, with different filters: each file holds exactly
// its own packets, none of the other's.
TEST_F(StreamTest, ConcurrentStreamsKeepTheirOwnPackets) {
  constexpr int kCount = 50;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink1 = AgentSocket(kDst, 7001);
  const UniqueFd sink2 = AgentSocket(kDst, 7002);
  std::unique_ptr<Subprocess> s1;
  std::unique_ptr<Subprocess> s2;
  ASSERT_NO_FATAL_FAILURE(StartStream("s7001",
                                      {"-i", kIface, "-f", "udp port 7001", "-c",
                                       std::to_string(kCount), "-w", File("7001.pcapng").string()},
                                      &s1));
  ASSERT_NO_FATAL_FAILURE(StartStream("s7002",
                                      {"-i", kIface, "-f", "udp port 7002", "-c",
                                       std::to_string(kCount), "-w", File("7002.pcapng").string()},
                                      &s2));
  const auto p1 = MakePayloads(kCount, "p7001");
  const auto p2 = MakePayloads(kCount, "p7002");
  const UniqueFd peer = PeerSocket();
  for (int i = 0; i < kCount; ++i) {  // interleaved
    ASSERT_TRUE(SendUdp(peer.get(), kDst, 7001, p1[i]).ok());
    ASSERT_TRUE(SendUdp(peer.get(), kDst, 7002, p2[i]).ok());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*s1, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*s2, 0));
  ExpectUdpPayloads(ReadOrFail(File("7001.pcapng")), p1, 7001);
  ExpectUdpPayloads(ReadOrFail(File("7002.pcapng")), p2, 7002);
}

// capd serves every method with gRPC's async API, so while a stream runs the threads waiting in
// gRPC are capd's own (its accepting thread, the stream's): gRPC's callback threads
// ("nexting_thread"), which woke for every message of a stream (docs/performance.md, sessions 13
// and 14), are not started at all.
TEST_F(StreamTest, AStreamRunsWithoutGrpcCallbackThreads) {
  constexpr int kCount = 20;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> stream;
  ASSERT_NO_FATAL_FAILURE(StartStream("s",
                                      {"-i", kIface, "-f", "udp port 7000", "-c",
                                       std::to_string(kCount), "-w", File("s.pcapng").string()},
                                      &stream));
  auto threads = ThreadIds(agent().pid());
  ASSERT_TRUE(threads.ok()) << threads.status().message();
  std::multiset<std::string> names;
  for (const pid_t tid : *threads) names.insert(ThreadName(agent().pid(), tid));
  std::string listed;
  for (const std::string& name : names) listed += " " + name;
  EXPECT_EQ(names.count("nexting_thread"), 0u) << "capd's threads:" << listed;
  EXPECT_EQ(names.count("capd-accept"), 1u) << "capd's threads:" << listed;
  // And the stream works: every packet arrives.
  const auto payloads = MakePayloads(kCount, "async");
  const UniqueFd peer = PeerSocket();
  for (const std::string& payload : payloads) {
    ASSERT_TRUE(SendUdp(peer.get(), kDst, kPort, payload).ok());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*stream, 0));
  ExpectUdpPayloads(ReadOrFail(File("s.pcapng")), payloads, kPort);
}

// -s 100: each packet keeps its first 100 bytes (all of a shorter one) and its original length.
TEST_F(StreamTest, SnaplenTruncatesButKeepsOriginalLength) {
  constexpr int kCount = 24;
  constexpr uint32_t kSnaplen = 100;
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartStream("capctl",
                  {"-i", kIface, "-f", "udp", "-c", std::to_string(kCount), "-s",
                   std::to_string(kSnaplen), "-w", File("out.pcapng").string()},
                  &capctl));
  const auto payloads = MakePayloads(kCount, "snap");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  const auto packets = ReadOrFail(File("out.pcapng"));
  ASSERT_EQ(packets.size(), payloads.size());
  size_t truncated = 0;
  for (size_t i = 0; i < packets.size(); ++i) {
    SCOPED_TRACE("packet " + std::to_string(i));
    const uint32_t len = static_cast<uint32_t>(kUdpHeaders + payloads[i].size());
    EXPECT_EQ(packets[i].len, len);
    EXPECT_EQ(packets[i].caplen, std::min(len, kSnaplen));
    ASSERT_GE(packets[i].bytes.size(), kUdpHeaders);
    EXPECT_TRUE(packets[i].bytes.substr(kUdpHeaders) ==
                payloads[i].substr(0, packets[i].caplen - kUdpHeaders));
    if (len > kSnaplen) ++truncated;
  }
  EXPECT_GT(truncated, 0u) << "the test sent nothing longer than the snaplen";
}

// Without -i, the agent captures on its default-route interface, and capctl says which.
TEST_F(StreamTest, DefaultInterfaceIsTheDefaultRouteOne) {
  constexpr int kCount = 5;
  const Status route = network_->AddDefaultRoute();
  ASSERT_TRUE(route.ok()) << route.message();
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  const UniqueFd sink = AgentSocket(kDst, kPort);
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream(
      "capctl", {"-f", "udp", "-c", std::to_string(kCount), "-w", File("out.pcapng").string()},
      &capctl));
  EXPECT_NE(capctl->Stderr().find(std::string("capctl: capturing on ") + kIface), std::string::npos)
      << capctl->Describe();
  const auto payloads = MakePayloads(kCount, "default");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ExpectUdpPayloads(ReadOrFail(File("out.pcapng")), payloads, kPort);
}

// `capctl interfaces` lists the agent namespace's interfaces (not the host's).
TEST_F(StreamTest, InterfacesListsTheAgentsInterfaces) {
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      Spawn("interfaces", {kCapctlPath, "interfaces", "--agent", kAgentTarget}, &capctl));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  const std::string out = capctl->Stdout();
  EXPECT_NE(out.find(kIface), std::string::npos) << out;
  EXPECT_NE(out.find("lo"), std::string::npos) << out;
  EXPECT_NE(out.find(kDst), std::string::npos) << "veth0's address is missing:\n" << out;
  // The state column starts at the same place on every line, however long the names (libpcap
  // lists pseudo-devices such as bluetooth-monitor, 17 characters).
  std::istringstream lines(out);
  std::set<size_t> state_columns;
  size_t listed = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("* ", 0) != 0 && line.rfind("  ", 0) != 0) continue;
    ++listed;
    for (const char* state : {" up", " no-link", " down"}) {
      const size_t at = line.find(state, 2);
      if (at != std::string::npos && line.substr(2, at - 2).find(' ') != std::string::npos) {
        state_columns.insert(at + 1);
        break;
      }
    }
  }
  EXPECT_GE(listed, 2u) << out;
  EXPECT_EQ(state_columns.size(), 1u) << "the state column moves:\n" << out;
}

}  // namespace
}  // namespace capd::test
