// agent/rewind without root: the seam rule, the reader on files written here, and a whole
// rewind (held live messages, the past from the files, the seam) against a sink in memory.
#include "agent/rewind/rewind.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/rewind/recording_reader.h"
#include "agent/rewind/seam.h"

namespace capd::agent::rewind {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSecond = 1'000'000'000ULL;
constexpr uint64_t kBase = 1'800'000'000ULL * kSecond;

// A 60-byte Ethernet frame carrying `seq` (UDP to port 9000 from 10.0.0.1, enough for a filter).
std::string Frame(uint32_t seq, uint16_t port = 9000) {
  std::string f(60, '\0');
  f[12] = 0x08;  // IPv4
  f[14] = 0x45;
  f[16] = 0;
  f[17] = 46;
  f[22] = 64;
  f[23] = 17;  // UDP
  f[26] = 10, f[29] = 1;
  f[30] = 10, f[33] = 2;
  f[36] = static_cast<char>(port >> 8);
  f[37] = static_cast<char>(port & 0xff);
  f[42] = static_cast<char>(seq >> 24);
  f[43] = static_cast<char>(seq >> 16);
  f[44] = static_cast<char>(seq >> 8);
  f[45] = static_cast<char>(seq);
  return f;
}

uint32_t SeqOf(std::string_view frame) {
  return (static_cast<uint8_t>(frame[42]) << 24) | (static_cast<uint8_t>(frame[43]) << 16) |
         (static_cast<uint8_t>(frame[44]) << 8) | static_cast<uint8_t>(frame[45]);
}

struct Written {
  uint64_t ts;
  uint32_t seq;
  uint16_t port = 9000;
};

// A pcap file with nanosecond times (the reader takes pcap as it takes pcapng).
void WriteFile(const std::string& path, const std::vector<Written>& packets) {
  pcap_t* dead =
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  ASSERT_NE(dumper, nullptr) << pcap_geterr(dead);
  for (const Written& w : packets) {
    const std::string f = Frame(w.seq, w.port);
    pcap_pkthdr header{};
    header.ts.tv_sec = static_cast<time_t>(w.ts / kSecond);
    header.ts.tv_usec = static_cast<suseconds_t>(w.ts % kSecond);
    header.caplen = header.len = static_cast<uint32_t>(f.size());
    pcap_dump(reinterpret_cast<u_char*>(dumper), &header,
              reinterpret_cast<const u_char*>(f.data()));
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/rewind_test.XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(Seam, CutsBeforeTheRecordedCopyOfTheFirstLivePacket) {
  const std::string a = Frame(1), b = Frame(2), c = Frame(3);
  // The recording's clock reads the same packet 3 µs later than the live ring's.
  std::vector<PacketKey> candidates = {{kBase, 60, a}, {kBase + 10, 60, b}, {kBase + 23, 60, c}};
  const PacketKey live{kBase + 7, 60, b};
  EXPECT_EQ(PastCount(candidates, &live, live.timestamp_ns), 1u);
}

TEST(Seam, IdenticalPacketsAreToldApartByTime) {
  const std::string same = Frame(7);
  std::vector<PacketKey> candidates = {{kBase, 60, same}, {kBase + kSecond / 2, 60, same}};
  const PacketKey live{kBase + kSecond / 2, 60, same};
  EXPECT_EQ(PastCount(candidates, &live, live.timestamp_ns), 1u);
}

TEST(Seam, WithoutACopyTheSeamIsByTime) {
  const std::string a = Frame(1), b = Frame(2);
  std::vector<PacketKey> candidates = {{kBase, 60, a}, {kBase + 10, 60, a}, {kBase + 30, 60, a}};
  const PacketKey live{kBase + 20, 60, b};  // the recording's filter left it out
  EXPECT_EQ(PastCount(candidates, &live, live.timestamp_ns), 2u);
  // A quiet link: no live packet, the capture's start.
  EXPECT_EQ(PastCount(candidates, nullptr, kBase + 5), 1u);
}

TEST(Seam, ComparesTheShorterCapture) {
  const std::string whole = Frame(5);
  const PacketKey recorded{kBase, 60, whole};
  const PacketKey truncated{kBase, 60, std::string_view(whole).substr(0, 20)};
  EXPECT_TRUE(SamePacket(recorded, truncated));
  const PacketKey other_length{kBase, 61, std::string_view(whole).substr(0, 20)};
  EXPECT_FALSE(SamePacket(recorded, other_length));
  const PacketKey too_far{kBase + 2 * kMatchWindowNs, 60, whole};
  EXPECT_FALSE(SamePacket(recorded, too_far));
}

TEST(RecordingReader, ReadsEveryFileFromATimeWithTheFilter) {
  TempDir dir;
  WriteFile(dir / "r_00001.pcap", {{kBase, 1}, {kBase + 1, 2, 53}, {kBase + 2, 3}});
  WriteFile(dir / "r_00002.pcap", {{kBase + 3, 4}, {kBase + 4, 5, 53}, {kBase + 5, 6}});
  auto filter = filters::ComposeCaptureFilter("udp port 9000", {}, DLT_EN10MB, 262144);
  ASSERT_TRUE(filter.ok()) << filter.status().message();
  auto reader =
      RecordingReader::Open({dir / "r_00001.pcap", dir / "gone.pcap", dir / "r_00002.pcap"},
                            kBase + 2, &filter->program, DLT_EN10MB);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  std::vector<uint32_t> seqs;
  RecordedPacket p;
  while ((*reader)->Next(p)) seqs.push_back(SeqOf(p.bytes));
  EXPECT_EQ(seqs, (std::vector<uint32_t>{3, 4, 6}));
  EXPECT_EQ((*reader)->earliest_ns(), kBase);
  ASSERT_EQ((*reader)->warnings().size(), 1u);  // the file that was gone
  EXPECT_NE((*reader)->warnings()[0].find("gone.pcap"), std::string::npos);
}

size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A ring of 1,000 tiny files (as `--rotate-files 100000` at a high rate leaves): the reader holds
// at most kMaxOpenFiles descriptors at any time, yet reads every packet of every file, in order.
// Without the bound each --since stream held a descriptor per file: 16 streams (--max-streams)
// on a 100,000-file ring would ask for 1.6 million, far past capd's 65,536.
TEST(RecordingReader, HoldsABoundedNumberOfFilesOpenOnALongRing) {
  TempDir dir;
  constexpr uint32_t kFiles = 1000;
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < kFiles; ++i) {
    paths.push_back(dir / ("r_" + std::to_string(100000 + i) + ".pcap"));
    WriteFile(paths.back(), {{kBase + 2 * i, 2 * i}, {kBase + 2 * i + 1, 2 * i + 1}});
  }
  const size_t before = OpenDescriptors();
  auto reader = RecordingReader::Open(paths, 0, nullptr, DLT_EN10MB);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  size_t most = OpenDescriptors() - before;
  uint32_t expected = 0;
  RecordedPacket p;
  while ((*reader)->Next(p)) {
    ASSERT_EQ(SeqOf(p.bytes), expected);
    ++expected;
    most = std::max(most, OpenDescriptors() - before);
  }
  EXPECT_EQ(expected, 2 * kFiles);
  EXPECT_LE(most, kMaxOpenFiles);
  EXPECT_TRUE((*reader)->warnings().empty());
  std::printf("%u files read holding at most %zu descriptors\n", kFiles, most);
}

// Files replaced by garbage, emptied, or cut in the middle of a packet, in the middle of the
// ring: each is left out or ends where it breaks, named in a warning; the others are read whole.
TEST(RecordingReader, DamagedFilesAreWarnedAboutAndTheRestRead) {
  TempDir dir;
  WriteFile(dir / "r_1.pcap", {{kBase, 1}, {kBase + 1, 2}});
  {
    std::ofstream garbage(dir / "r_2.pcap", std::ios::binary);
    garbage << std::string(4096, '\x5a');
  }
  { std::ofstream empty(dir / "r_3.pcap", std::ios::binary); }
  WriteFile(dir / "r_4.pcap", {{kBase + 2, 3}, {kBase + 3, 4}});
  fs::resize_file(dir / "r_4.pcap", fs::file_size(dir / "r_4.pcap") - 10);  // mid-packet
  WriteFile(dir / "r_5.pcap", {{kBase + 4, 5}});
  auto reader = RecordingReader::Open(
      {dir / "r_1.pcap", dir / "r_2.pcap", dir / "r_3.pcap", dir / "r_4.pcap", dir / "r_5.pcap"}, 0,
      nullptr, DLT_EN10MB, /*max_open=*/2);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  std::vector<uint32_t> seqs;
  RecordedPacket p;
  while ((*reader)->Next(p)) seqs.push_back(SeqOf(p.bytes));
  EXPECT_EQ(seqs, (std::vector<uint32_t>{1, 2, 3, 5}));
  const std::vector<std::string>& w = (*reader)->warnings();
  ASSERT_EQ(w.size(), 3u);
  EXPECT_NE(w[0].find("r_2.pcap left out"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("r_3.pcap left out"), std::string::npos) << w[1];
  EXPECT_NE(w[2].find("r_4.pcap cut short"), std::string::npos) << w[2];
}

// Messages the rewind gives the client, in order.
struct Client final : StreamSink {
  bool Send(std::unique_ptr<v1::StreamResponse> m, bool) override {
    std::lock_guard lock(mu);
    got.push_back(std::move(m));
    return true;
  }
  std::unique_ptr<v1::StreamResponse> NewMessage() override {
    return std::make_unique<v1::StreamResponse>();
  }
  std::mutex mu;
  std::vector<std::unique_ptr<v1::StreamResponse>> got;
};

std::unique_ptr<v1::StreamResponse> Description() {
  auto m = std::make_unique<v1::StreamResponse>();
  m->mutable_interface()->set_index(0);
  m->mutable_interface()->set_name("veth0");
  m->mutable_interface()->set_link_type(DLT_EN10MB);
  m->mutable_interface()->set_snaplen(262144);
  m->mutable_interface()->set_capture_start_ns(kBase + 50);
  return m;
}

std::unique_ptr<v1::StreamResponse> LiveBatch(const std::vector<Written>& packets) {
  auto m = std::make_unique<v1::StreamResponse>();
  for (const Written& w : packets) {
    const std::string f = Frame(w.seq, w.port);
    m->mutable_packets()->mutable_data()->append(f);
    m->mutable_packets()->add_interface_index(0);
    m->mutable_packets()->add_timestamp_ns(w.ts);
    m->mutable_packets()->add_original_length(60);
    m->mutable_packets()->add_captured_length(60);
  }
  return m;
}

TEST(Rewind, PastThenHeldLiveWithEverySequenceOnce) {
  TempDir dir;
  // The recording holds 1..100 (one a ms); the live capture started at 61 and its clock reads
  // each packet 2 µs later.
  std::vector<Written> recorded;
  for (uint32_t s = 1; s <= 100; ++s) recorded.push_back({kBase + s * 1'000'000ULL, s});
  recorded[40].port = 53;  // seq 41: not the stream's filter
  WriteFile(dir / "r_00001.pcap", std::vector<Written>(recorded.begin(), recorded.begin() + 50));
  WriteFile(dir / "r_00002.pcap", std::vector<Written>(recorded.begin() + 50, recorded.end()));

  RecordingSource source;
  source.name = "ring";
  source.filter = "";
  source.files = [&] {
    return std::vector<std::string>{dir / "r_00001.pcap", dir / "r_00002.pcap"};
  };
  source.written_through_ns = [] { return kBase + 100 * 1'000'000ULL; };
  v1::StreamRequest request;
  request.set_filter("udp port 9000");
  request.set_since_ns(kBase + 20 * 1'000'000ULL);  // from seq 20 on
  Rewind rewind({source}, request, "veth0", nullptr);
  Client client;
  rewind.SetDownstream(&client);

  std::unique_ptr<v1::StreamResponse> end;
  std::thread runner([&] {
    end = rewind.Run([&](std::unique_ptr<v1::StreamResponse>& m) {
      client.Send(std::move(m), false);
      return true;
    });
  });
  ASSERT_TRUE(rewind.Send(Description(), false));
  std::vector<Written> live;
  for (uint32_t s = 61; s <= 100; ++s) live.push_back({kBase + s * 1'000'000ULL + 2000, s});
  ASSERT_TRUE(rewind.Send(LiveBatch(live), true));
  runner.join();
  EXPECT_EQ(end, nullptr);
  // Straight through now.
  ASSERT_TRUE(rewind.Send(LiveBatch({{kBase + 101 * 1'000'000ULL, 101}}), true));

  ASSERT_FALSE(client.got.empty());
  ASSERT_TRUE(client.got[0]->has_rewind()) << "the acknowledgement comes first";
  EXPECT_EQ(client.got[0]->rewind().recording(), "ring");
  EXPECT_EQ(client.got[0]->rewind().first_ns(), kBase + 20 * 1'000'000ULL);
  EXPECT_TRUE(client.got[0]->rewind().warnings().empty());
  ASSERT_TRUE(client.got[1]->has_interface());
  std::vector<uint32_t> seqs;
  uint64_t last_ts = 0;
  for (auto& m : client.got) {
    if (!m->has_packets()) continue;
    const auto& b = m->packets();
    size_t offset = 0;
    for (int i = 0; i < b.timestamp_ns_size(); ++i) {
      seqs.push_back(SeqOf(std::string_view(b.data()).substr(offset, b.captured_length(i))));
      offset += b.captured_length(i);
      EXPECT_GE(b.timestamp_ns(i), last_ts);
      last_ts = b.timestamp_ns(i);
    }
  }
  std::vector<uint32_t> expected;
  for (uint32_t s = 20; s <= 101; ++s) {
    if (s != 41) expected.push_back(s);
  }
  EXPECT_EQ(seqs, expected);
}

TEST(Rewind, SaysWhenTheRecordingStartsAfterSince) {
  TempDir dir;
  WriteFile(dir / "r_00001.pcap", {{kBase + 10, 1}, {kBase + 20, 2}});
  RecordingSource source{"ring", "udp",
                         [&] { return std::vector<std::string>{dir / "r_00001.pcap"}; },
                         [] { return kBase + 1000; }};
  v1::StreamRequest request;
  request.set_since_ns(kBase - 300 * kSecond);
  Rewind rewind({source}, request, "veth0", nullptr);
  Client client;
  rewind.SetDownstream(&client);
  std::thread runner([&] {
    rewind.Run([&](std::unique_ptr<v1::StreamResponse>& m) {
      client.Send(std::move(m), false);
      return true;
    });
  });
  ASSERT_TRUE(rewind.Send(Description(), false));
  ASSERT_TRUE(rewind.Send(LiveBatch({{kBase + 100, 3}}), true));
  runner.join();
  ASSERT_TRUE(client.got[0]->has_rewind());
  const auto& warnings = client.got[0]->rewind().warnings();
  ASSERT_EQ(warnings.size(), 2);
  EXPECT_NE(warnings[0].find("the recording on veth0 starts at "), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("; streaming from there"), std::string::npos);
  EXPECT_NE(warnings[1].find("captures with its own filter 'udp'"), std::string::npos)
      << warnings[1];
}

// A quiet link: no live packet within a second, so the seam is the live capture's start.
TEST(Rewind, OnAQuietLinkTheSeamIsTheCapturesStart) {
  TempDir dir;
  // Description() says the live capture started at kBase + 50.
  WriteFile(dir / "r_00001.pcap", {{kBase + 10, 1}, {kBase + 20, 2}, {kBase + 60, 3}});
  RecordingSource source{"ring", "", [&] { return std::vector<std::string>{dir / "r_00001.pcap"}; },
                         [] { return kBase + 60; }};
  v1::StreamRequest request;
  request.set_since_ns(kBase);
  Rewind rewind({source}, request, "veth0", nullptr);
  Client client;
  rewind.SetDownstream(&client);
  std::thread runner([&] {
    rewind.Run([&](std::unique_ptr<v1::StreamResponse>& m) {
      client.Send(std::move(m), false);
      return true;
    });
  });
  ASSERT_TRUE(rewind.Send(Description(), false));
  runner.join();
  std::vector<uint32_t> seqs;
  for (auto& m : client.got) {
    if (!m->has_packets()) continue;
    size_t offset = 0;
    for (int i = 0; i < m->packets().timestamp_ns_size(); ++i) {
      seqs.push_back(SeqOf(std::string_view(m->packets().data()).substr(offset, 60)));
      offset += 60;
    }
  }
  EXPECT_EQ(seqs, (std::vector<uint32_t>{1, 2}));  // 3 came after the live capture started
}

TEST(Rewind, HoldsLiveMessagesWithinItsBoundAndCountsTheRest) {
  v1::StreamRequest request;
  request.set_since_ns(kBase);
  RecordingSource source{"ring", "", [] { return std::vector<std::string>{}; },
                         [] { return 0ULL; }};
  Rewind rewind({source}, request, "veth0", nullptr);
  Client client;
  rewind.SetDownstream(&client);
  auto big = std::make_unique<v1::StreamResponse>();
  big->mutable_packets()->mutable_data()->assign(kMaxHeldBytes - 100, 'x');
  big->mutable_packets()->add_timestamp_ns(kBase);
  big->mutable_packets()->add_captured_length(kMaxHeldBytes - 100);
  big->mutable_packets()->add_original_length(kMaxHeldBytes - 100);
  big->mutable_packets()->add_interface_index(0);
  EXPECT_TRUE(rewind.Send(std::move(big), true));
  EXPECT_FALSE(rewind.Send(LiveBatch({{kBase + 1, 1}, {kBase + 2, 2}}), true));
  // Control messages are never dropped.
  auto statistics = std::make_unique<v1::StreamResponse>();
  statistics->mutable_statistics()->set_timestamp_ns(kBase);
  EXPECT_TRUE(rewind.Send(std::move(statistics), false));
  rewind.Stop();
}

TEST(Rewind, NamesTheRecordingsThatRunWhenNoneFits) {
  EXPECT_EQ(NoRecordingMessage("eth1", {{"ring", "eth0"}}),
            "--since needs a recording running on interface 'eth1' (capctl record start "
            "--interface eth1 ...); recordings running: ring on 'eth0'");
  EXPECT_NE(NoRecordingMessage("eth1", {}).find("no recording runs on this agent"),
            std::string::npos);
}

}  // namespace
}  // namespace capd::agent::rewind
