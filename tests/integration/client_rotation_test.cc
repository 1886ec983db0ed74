// `capctl stream -w PATH --rotate-*` end to end on a real veth, the client side of rotation
// (capfile/rotating_writer.h, with client/output/rotation.h's post-rotate command, through
// client/stream/stream_command.cc): the files of one capture hold exactly the packets sent, in
// order and byte for byte as tcpdump saw them; each file is within its size bound and a complete
// capture for capinfos; --rotate-files keeps the newest N; --rotate-seconds files sit on wall-clock
// slots; kill -9 leaves every finished file valid and the current one readable; --post-rotate runs
// once per finished file and its failure does not stop the capture (handoff_test.cc: its retries).

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/agent_fixture.h"

namespace capd::test {
namespace {

constexpr char kIface[] = "veth0";
constexpr char kDst[] = "10.200.0.1";
constexpr uint16_t kPort = 7200;
constexpr char kFilter[] = "udp port 7200";
constexpr uint32_t kPcapngMagic = 0x0a0d0d0a;

// What libpcap reads of a file that may end in the middle of a block (the current file of a ring
// after kill -9): the packets up to the first error, and that error ("" when the file ends
// cleanly).
struct LenientRead {
  std::vector<CapturedPacket> packets;
  std::string error;
  bool opened = false;
};

LenientRead ReadUpToError(const std::filesystem::path& path) {
  LenientRead read;
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pcap =
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (pcap == nullptr) {
    read.error = errbuf;
    return read;
  }
  read.opened = true;
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(pcap, &header, &data)) == 1) {
    CapturedPacket p;
    p.ts_ns = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
              static_cast<uint64_t>(header->ts.tv_usec);
    p.caplen = header->caplen;
    p.len = header->len;
    p.bytes.assign(reinterpret_cast<const char*>(data), header->caplen);
    p.linktype = pcap_datalink(pcap);
    read.packets.push_back(std::move(p));
  }
  if (rc == PCAP_ERROR) read.error = pcap_geterr(pcap);
  pcap_close(pcap);
  return read;
}

// The size of the Enhanced Packet Block that holds a packet of `caplen` bytes without options
// (pcapng draft 4.3: 28 bytes of fields, the data padded to 4, the trailing length).
uint64_t EpbBytes(uint32_t caplen) { return 32 + (caplen + 3u) / 4u * 4u; }

class ClientRotationTest : public AgentTest {
 protected:
  std::filesystem::path Ring() const { return File("ring"); }
  // -w DIR/cap.pcapng: files DIR/cap_NNNNN_YYYYmmddHHMMSS.pcapng.
  std::string RingPath() const { return (Ring() / "cap.pcapng").string(); }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AgentTest::SetUp());
    if (IsSkipped()) return;
    std::filesystem::create_directories(Ring());
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    sink_ = AgentSocket(kDst, kPort);
  }

  // `capctl stream -i veth0 -f 'udp port 7200' -w DIR/cap.pcapng ARGS...`, ready to capture.
  void StartRing(const std::vector<std::string>& args, std::unique_ptr<Subprocess>* out) {
    std::vector<std::string> all = {"-i", kIface, "-f", kFilter, "-w", RingPath()};
    all.insert(all.end(), args.begin(), args.end());
    ASSERT_NO_FATAL_FAILURE(StartStream("capctl", all, out));
  }

  // The ring's files, oldest first; fails on any other file in the folder (a stray name, a
  // temporary file left behind).
  std::vector<std::filesystem::path> Files() const {
    std::vector<std::filesystem::path> files;
    const std::regex pattern(R"(cap_\d{5}_\d{14}\.pcapng)");
    for (const auto& e : std::filesystem::directory_iterator(Ring())) {
      const std::string name = e.path().filename().string();
      EXPECT_TRUE(std::regex_match(name, pattern)) << "unexpected file in the ring: " << name;
      if (std::regex_match(name, pattern)) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
  }

  static int Number(const std::filesystem::path& file) {
    return std::stoi(file.filename().string().substr(4, 5));
  }
  // The UTC time in the file's name, as Unix seconds.
  static int64_t NameSeconds(const std::filesystem::path& file) {
    const std::string name = file.filename().string();
    struct tm utc = {};
    strptime(name.substr(10, 14).c_str(), "%Y%m%d%H%M%S", &utc);
    return static_cast<int64_t>(timegm(&utc));
  }

  UniqueFd sink_;
};

// 300 datagrams of varied sizes (1..1400 bytes) through --rotate-size 20k: files numbered from
// 00001 without a gap, each a pcapng within 20000 bytes plus at most its largest packet's block,
// each complete for capinfos; together exactly the 300 packets, in order, byte-identical to
// tcpdump's capture of the same traffic and carrying the payloads sent.
TEST_F(ClientRotationTest, SizeRotationKeepsEveryPacketOnceWithinTheBound) {
  constexpr int kCount = 300;
  constexpr uint64_t kMax = 20000;
  std::unique_ptr<Subprocess> tcpdump;
  ASSERT_NO_FATAL_FAILURE(StartTcpdump("tcpdump", kIface, File("reference.pcap"),
                                       {"-c", std::to_string(kCount), kFilter}, &tcpdump));
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartRing({"-c", std::to_string(kCount), "--rotate-size", "20k"}, &capctl));
  const auto payloads = MakePayloads(kCount, "size");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*tcpdump, 0));
  EXPECT_NE(SummaryLine(capctl->Stderr()).find("300 packets written"), std::string::npos)
      << capctl->Stderr();

  const auto files = Files();
  // About 170 kB of frames: at least 8 files of 20 kB.
  ASSERT_GE(files.size(), 8u);
  std::vector<CapturedPacket> all;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    EXPECT_EQ(Number(f), static_cast<int>(i + 1)) << f;
    EXPECT_EQ(FileMagic(f), std::optional<uint32_t>(kPcapngMagic)) << f;
    const auto packets = ReadOrFail(f);
    ASSERT_FALSE(packets.empty()) << f << " holds no packet";
    uint64_t largest = 0;
    for (const auto& p : packets) largest = std::max(largest, EpbBytes(p.caplen));
    EXPECT_LE(std::filesystem::file_size(f), kMax + largest) << f;
    ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(f, packets.size()));
    all.insert(all.end(), packets.begin(), packets.end());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, payloads, kPort));
  const auto reference = ReadOrFail(File("reference.pcap"));
  ASSERT_EQ(reference.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(all[i].bytes == reference[i].bytes) << "packet " << i << " differs from tcpdump's";
    EXPECT_EQ(all[i].len, reference[i].len) << "packet " << i;
  }
  // In order across the files: timestamps never go backwards.
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_LE(all[i - 1].ts_ns, all[i].ts_ns) << "packet " << i;
  }
}

// --rotate-files 3 with files of 10 kB: exactly the three newest files remain (the highest
// numbers, consecutive), holding the tail of what was sent, the very last packet in the newest.
TEST_F(ClientRotationTest, RingKeepsTheNewestFilesWithTheLastPacket) {
  constexpr int kCount = 300;
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing(
      {"-c", std::to_string(kCount), "--rotate-size", "10k", "--rotate-files", "3"}, &capctl));
  const auto payloads = MakePayloads(kCount, "ring");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  const auto files = Files();
  ASSERT_EQ(files.size(), 3u);
  // ~170 kB in 10 kB files: many were deleted, the kept ones are the last three numbers.
  EXPECT_GT(Number(files[0]), 10) << files[0];
  EXPECT_EQ(Number(files[1]), Number(files[0]) + 1);
  EXPECT_EQ(Number(files[2]), Number(files[0]) + 2);
  for (const auto& f : files) {
    ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(f, ReadOrFail(f).size()));
  }
  const auto kept = ReadAllOrFail(files);
  ASSERT_FALSE(kept.empty());
  const std::vector<std::string> tail(payloads.end() - static_cast<long>(kept.size()),
                                      payloads.end());
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(kept, tail, kPort));
  const auto newest = ReadOrFail(files.back());
  ASSERT_FALSE(newest.empty());
  uint16_t port = 0;
  const auto last = UdpPayload(newest.back(), &port);
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(*last == payloads.back()) << "the newest file does not end with the last packet";
}

// --rotate-seconds 2 over ~5 s of traffic (a packet every 250 ms): every file after the first is
// named after an even second UTC (a boundary counted from midnight, not from the first packet),
// every file's packets lie within its own 2-second slot, the slots only grow, and together the
// files hold every packet once, in order.
TEST_F(ClientRotationTest, TimeRotationLandsOnWallClockBoundaries) {
  constexpr int kCount = 20;
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(
      StartRing({"-c", std::to_string(kCount), "--rotate-seconds", "2"}, &capctl));
  const UniqueFd peer = PeerSocket();
  std::vector<std::string> sent;
  for (int i = 0; i < kCount; ++i) {
    sent.push_back("tick-" + std::to_string(i));
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, {sent.back()}));
    // Pacing the traffic over time is the point of this test, not a synchronisation.
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  const auto files = Files();
  ASSERT_GE(files.size(), 3u);
  int64_t previous_slot = -1;
  for (size_t i = 0; i < files.size(); ++i) {
    const int64_t named = NameSeconds(files[i]);
    // The first file is named when it was opened (before any packet); the others at their slot.
    const int64_t slot = named - named % 2;
    if (i > 0) {
      EXPECT_EQ(named % 2, 0) << files[i];
    }
    EXPECT_GT(slot, previous_slot) << files[i];
    previous_slot = slot;
    const auto packets = ReadOrFail(files[i]);
    ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(files[i], packets.size()));
    for (const auto& p : packets) {
      const auto seconds = static_cast<int64_t>(p.ts_ns / 1'000'000'000);
      EXPECT_GE(seconds, slot) << files[i];
      EXPECT_LT(seconds, slot + 2) << files[i];
    }
  }
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), sent, kPort));
}

// Two `capctl stream` runs one after the other with the same -w PREFIX, as a dumpcap user does:
// the second run's files are numbered after the first run's highest (never a second 00001 beside
// them), the first run's files are left byte for byte as they were, and each run's files hold
// exactly that run's packets.
TEST_F(ClientRotationTest, ASecondRunWithTheSamePrefixContinuesTheNumbering) {
  constexpr int kCount = 100;
  std::vector<std::filesystem::path> first_files;
  std::vector<std::string> first_bytes;
  for (int run = 0; run < 2; ++run) {
    std::unique_ptr<Subprocess> capctl;
    ASSERT_NO_FATAL_FAILURE(
        StartRing({"-c", std::to_string(kCount), "--rotate-size", "10k"}, &capctl));
    const auto payloads = MakePayloads(kCount, run == 0 ? "first" : "second");
    const UniqueFd peer = PeerSocket();
    ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
    ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));
    const auto files = Files();
    if (run == 0) {
      ASSERT_GE(files.size(), 2u);
      first_files = files;
      for (const auto& f : files) first_bytes.push_back(ReadFileToString(f));
      ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), payloads, kPort));
      continue;
    }
    ASSERT_GT(files.size(), first_files.size());
    for (size_t i = 0; i < first_files.size(); ++i) {
      EXPECT_EQ(files[i], first_files[i]);
      EXPECT_TRUE(ReadFileToString(files[i]) == first_bytes[i]) << files[i] << " changed";
    }
    const std::vector<std::filesystem::path> second(files.begin() + first_files.size(),
                                                    files.end());
    for (size_t i = 0; i < second.size(); ++i) {
      EXPECT_EQ(Number(second[i]), Number(first_files.back()) + 1 + static_cast<int>(i))
          << second[i];
      ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(second[i], ReadOrFail(second[i]).size()));
    }
    ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(second), payloads, kPort));
  }
}

// kill -9 of capctl while traffic flows: every file but the newest is finished and complete for
// capinfos; the newest is readable by libpcap, at most its very end cut short; and the files
// together hold a prefix of what was sent, in order, no packet twice.
TEST_F(ClientRotationTest, KillNineLeavesFinishedFilesValid) {
  constexpr int kMaxCount = 4000;
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"--rotate-size", "10k"}, &capctl));
  const auto payloads = MakePayloads(kMaxCount, "kill");
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  UniqueFd peer = PeerSocket();
  ASSERT_TRUE(peer.valid());
  std::thread sender([&] {
    // Paced (1 packet per ms) so the agent drops nothing and the prefix check below is exact.
    for (int i = 0; i < kMaxCount && !stop.load(); ++i) {
      if (!SendUdp(peer.get(), kDst, kPort, payloads[static_cast<size_t>(i)]).ok()) break;
      sent.store(i + 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // Mid-capture: four files finished and packets already in the fifth.
  auto enough = [&] {
    const auto files = Files();
    return files.size() >= 5 && std::filesystem::file_size(files.back()) > 2000;
  };
  while (std::chrono::steady_clock::now() < deadline && !enough()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const bool reached = enough();
  capctl->Signal(SIGKILL);
  const auto status = capctl->WaitFor(kExitTimeout);
  stop.store(true);
  sender.join();
  ASSERT_TRUE(reached) << "the ring did not reach 5 files: " << capctl->Describe();
  ASSERT_TRUE(status.has_value());
  EXPECT_FALSE(status->exited);
  EXPECT_EQ(status->signal, SIGKILL);

  const auto files = Files();
  ASSERT_GE(files.size(), 5u);
  std::vector<CapturedPacket> all;
  for (size_t i = 0; i + 1 < files.size(); ++i) {
    const auto packets = ReadOrFail(files[i]);
    ASSERT_NO_FATAL_FAILURE(ExpectCapinfos(files[i], packets.size()));
    all.insert(all.end(), packets.begin(), packets.end());
  }
  // A ring file gets its name only once its header is written (O_TMPFILE + link), so even a
  // kill between creating the next file and writing its header leaves none empty.
  const LenientRead current = ReadUpToError(files.back());
  ASSERT_TRUE(current.opened) << files.back() << ": " << current.error;
  // A truncated last block is the only error allowed, and only at the end (pcap_next_ex stops
  // at the first error, so everything before it was read): report it for the record.
  if (!current.error.empty()) {
    EXPECT_NE(current.error.find("truncated"), std::string::npos)
        << files.back() << ": " << current.error;
    std::fprintf(stderr, "note: the current file ends cut short: %s\n", current.error.c_str());
  }
  all.insert(all.end(), current.packets.begin(), current.packets.end());
  ASSERT_FALSE(all.empty());
  ASSERT_LE(all.size(), static_cast<size_t>(sent.load()));
  const std::vector<std::string> prefix(payloads.begin(),
                                        payloads.begin() + static_cast<long>(all.size()));
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(all, prefix, kPort));
}

// --post-rotate with a command that records its argument and then fails (exit 1), tried once
// (--handoff-attempts 1): it runs once for every finished file, the last one included, with that
// file's path; the failures are logged, the capture still writes every packet, and capctl exits 1
// because no file was handed off (handoff_test.cc has the retries).
TEST_F(ClientRotationTest, PostRotateRunsOncePerFileAndItsFailureDoesNotStopTheCapture) {
  constexpr int kCount = 300;
  const auto list = File("rotated.list");
  const std::string command = "sh -c 'echo \"$1\" >> " + list.string() + "; exit 1' post";
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"-c", std::to_string(kCount), "--rotate-size", "20k",
                                     "--handoff-attempts", "1", "--post-rotate", command},
                                    &capctl));
  const auto payloads = MakePayloads(kCount, "post");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1));

  const auto files = Files();
  ASSERT_GE(files.size(), 8u);
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(ReadAllOrFail(files), payloads, kPort));
  // capctl waited for every command before it exited.
  std::multiset<std::string> called;
  std::istringstream in(ReadFileToString(list));
  for (std::string line; std::getline(in, line);) called.insert(line);
  std::multiset<std::string> expected;
  for (const auto& f : files) expected.insert(f.string());
  EXPECT_EQ(called, expected) << ReadFileToString(list);
  EXPECT_NE(capctl->Stderr().find("post-rotate command for " + files.front().string() +
                                  " failed: exit status 1"),
            std::string::npos)
      << capctl->Stderr();
}

// --min-free larger than any disk: no older file to delete, so capctl stops with a clear message
// naming the limit, exit 1, and leaves no file behind.
TEST_F(ClientRotationTest, MinFreeWithNothingToDeleteStopsWithAClearMessage) {
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartStream("capctl",
                                      {"-i", kIface, "-f", kFilter, "-w", RingPath(),
                                       "--rotate-size", "20k", "--min-free", "1000000G"},
                                      &capctl, -1, /*wait_ready=*/false));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 1));
  const std::string err = capctl->Stderr();
  EXPECT_NE(err.find("below --min-free 1000000000000000"), std::string::npos) << err;
  EXPECT_NE(err.find("no older file of the ring is left to delete: stopped writing"),
            std::string::npos)
      << err;
  EXPECT_TRUE(Files().empty());
}

// --min-free on a 1 MiB tmpfs, with --rotate-files far above what fits: the ring deletes its
// oldest files (none is held: no hand-off) as it goes, each named in a line, even though it is
// within --rotate-files; the capture runs to its count; the files left are the newest,
// consecutive, holding the tail of what was sent with the last packet; free space stays near the
// floor (at most about a file and a batch below it).
TEST_F(ClientRotationTest, MinFreeDeletesTheOldestFilesWithinTheRingAndRecordsOn) {
  constexpr int kCount = 1000;
  constexpr uint64_t kMinFree = 600 * 1024;
  constexpr uint64_t kRotate = 50 * 1000;
  ASSERT_EQ(::mount("tmpfs", Ring().c_str(), "tmpfs", 0, "size=1m,mode=0755"), 0)
      << std::strerror(errno);
  const std::shared_ptr<void> unmount(nullptr, [ring = Ring()](void*) {
    ::umount2(ring.c_str(), MNT_DETACH);
  });
  std::unique_ptr<Subprocess> capctl;
  ASSERT_NO_FATAL_FAILURE(StartRing({"-c", std::to_string(kCount), "--rotate-size", "50k",
                                     "--rotate-files", "1000", "--min-free",
                                     std::to_string(kMinFree)},
                                    &capctl));
  const auto payloads = MakePayloads(kCount, "free");
  const UniqueFd peer = PeerSocket();
  ASSERT_NO_FATAL_FAILURE(SendAll(peer.get(), kDst, kPort, payloads));
  ASSERT_NO_FATAL_FAILURE(ExpectExit(*capctl, 0));

  const std::string err = capctl->Stderr();
  const auto files = Files();
  ASSERT_FALSE(files.empty());
  EXPECT_GT(Number(files.front()), 1) << err;
  EXPECT_NE(err.find(" bytes, below --min-free " + std::to_string(kMinFree) + ": deleting " +
                     Ring().string() + "/cap_00001_"),
            std::string::npos)
      << err;
  for (size_t i = 1; i < files.size(); ++i) {
    EXPECT_EQ(Number(files[i]), Number(files[0]) + static_cast<int>(i)) << files[i];
  }
  const auto kept = ReadAllOrFail(files);
  ASSERT_FALSE(kept.empty());
  const std::vector<std::string> tail(payloads.end() - static_cast<long>(kept.size()),
                                      payloads.end());
  ASSERT_NO_FATAL_FAILURE(ExpectUdpPayloads(kept, tail, kPort));
  struct statvfs fs {};
  ASSERT_EQ(::statvfs(Ring().c_str(), &fs), 0);
  const uint64_t free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  EXPECT_GE(free + 2 * kRotate, kMinFree) << "free space went to " << free << " bytes; " << err;
}

}  // namespace
}  // namespace capd::test
