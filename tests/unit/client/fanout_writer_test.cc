// capctl serve's output without an agent: the fan-out writer (client/serve/fanout_writer.h) and
// PcapFanout on loopback, read by two TCP clients with libpcap (pcap_fopen_offline on the
// socket's FILE*), one of which reads nothing until the capture has ended.

#include "client/serve/fanout_writer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/output/capture_files.h"
#include "client/serve/pcap_fanout.h"
#include "tests/support/pcapng_file.h"

namespace capd::client {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapCloser>;

// A client of the fan-out: a TCP connection read as a pcap file by libpcap.
struct Client {
  PcapHandle pcap;
  std::string error;
};

// Connects to "127.0.0.1:PORT" and opens the stream with libpcap, which reads the file header:
// once this returns, the fan-out has accepted the client (the header is queued at accept).
Client Connect(const std::string& address, int receive_buffer) {
  Client client;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    client.error = "socket failed";
    return client;
  }
  // Set before connect, so that the window stays small: the slow client's backlog then stays in
  // the fan-out's queue, where it is bounded and counted.
  if (receive_buffer > 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    close(fd);
    client.error = "connect failed";
    return client;
  }
  FILE* file = fdopen(fd, "rb");  // pcap_close closes it
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  client.pcap.reset(
      pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (client.pcap == nullptr) {
    fclose(file);
    client.error = std::string("pcap_fopen_offline: ") + errbuf;
  }
  return client;
}

struct Read {
  std::vector<uint64_t> timestamps_ns;
  std::vector<std::string> payloads;
  std::string error;
};

// Reads records until the end of the capture (the fan-out closes the connection). `each` is
// called after every record.
Read ReadAll(pcap_t* pcap, const std::function<void(size_t)>& each = {}) {
  Read read;
  while (true) {
    pcap_pkthdr* header = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(pcap, &header, &data);
    if (rc == PCAP_ERROR_BREAK) break;
    if (rc != 1) {
      read.error = pcap_geterr(pcap);
      break;
    }
    read.timestamps_ns.push_back(static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000 +
                                 static_cast<uint64_t>(header->ts.tv_usec));
    read.payloads.emplace_back(reinterpret_cast<const char*>(data), header->caplen);
    if (each) each(read.payloads.size());
  }
  return read;
}

std::string Payload(size_t i) {
  std::string bytes(1000, static_cast<char>('a' + i % 26));
  std::memcpy(bytes.data(), &i, sizeof i);
  return bytes;
}

// Two clients: one reads as the packets come and gets every one, in order; the other reads
// nothing until the end and gets the header, then the packets its bounded queue kept, in order,
// the rest dropped for it alone and counted.
TEST(PcapFanoutWriterTest, FastClientGetsEverythingSlowClientDropsAlone) {
  constexpr size_t kQueueBytes = 64 * 1024;
  // 40 kB a round, within a client's queue; 2.4 MB in all, several times what the slow client
  // can hold (its queue, the socket's send buffer of 512 KiB and its small receive buffer).
  constexpr size_t kRounds = 60;
  constexpr size_t kPerRound = 40;
  constexpr size_t kTotal = kRounds * kPerRound;
  auto listening = PcapFanout::Listen("127.0.0.1:0", kQueueBytes);
  ASSERT_TRUE(listening.ok()) << listening.status().message();
  PcapFanout& fanout = *listening.value();
  EXPECT_TRUE(fanout.loopback());
  // The slow client reads right after the end: a generous drain keeps its queue whole.
  fanout.Start(std::chrono::seconds(60));
  std::unique_ptr<CaptureWriter> writer = MakePcapFanoutWriter(fanout);

  InterfaceInfo info;
  info.name = "eth0";
  info.link_type = 1;
  info.snaplen = 262144;
  ASSERT_TRUE(writer->AddInterface(info).ok());
  ASSERT_TRUE(writer->Flush().ok());  // the header, before any client connects
  InterfaceInfo other = info;
  other.link_type = 113;
  EXPECT_EQ(writer->AddInterface(other).code(), StatusCode::kInvalidArgument)
      << "a pcap stream holds one link type";

  Client fast = Connect(fanout.address(), 0);
  ASSERT_EQ(fast.error, "");
  Client slow = Connect(fanout.address(), 4096);
  ASSERT_EQ(slow.error, "");
  EXPECT_EQ(pcap_datalink(fast.pcap.get()), 1);
  EXPECT_EQ(pcap_datalink(slow.pcap.get()), 1);

  // The fast client's reader says how far it got; each round is written once it has read the
  // one before (so the fast client's queue never fills, whatever the machine's speed).
  std::mutex mu;
  std::condition_variable progressed;
  size_t fast_read = 0;
  Read fast_result;
  std::thread reader([&] {
    fast_result = ReadAll(fast.pcap.get(), [&](size_t n) {
      std::lock_guard lock(mu);
      fast_read = n;
      progressed.notify_all();
    });
    std::lock_guard lock(mu);
    fast_read = SIZE_MAX;  // ended (or failed): do not wait for it any longer
    progressed.notify_all();
  });
  for (size_t round = 0; round < kRounds; ++round) {
    for (size_t i = round * kPerRound; i < (round + 1) * kPerRound; ++i) {
      const std::string payload = Payload(i);
      ASSERT_TRUE(writer
                      ->WritePacket(0, 1'700'000'000'000'000'000 + i, 1000,
                                    {reinterpret_cast<const uint8_t*>(payload.data()), 1000})
                      .ok());
    }
    ASSERT_TRUE(writer->Flush().ok());
    std::unique_lock lock(mu);
    // A safety net, not the synchronisation: a fast client that lost a packet never gets there.
    ASSERT_TRUE(progressed.wait_for(lock, std::chrono::seconds(60),
                                    [&] { return fast_read >= (round + 1) * kPerRound; }))
        << "the fast client stopped at " << fast_read;
  }
  ASSERT_TRUE(writer->Close().ok());
  const Read slow_result = ReadAll(slow.pcap.get());
  reader.join();
  const PcapFanout::Totals totals = fanout.Wait();

  ASSERT_EQ(fast_result.error, "");
  ASSERT_EQ(fast_result.payloads.size(), kTotal);
  for (size_t i = 0; i < kTotal; ++i) {
    ASSERT_EQ(fast_result.payloads[i], Payload(i)) << "packet " << i;
    ASSERT_EQ(fast_result.timestamps_ns[i], 1'700'000'000'000'000'000 + i);
  }
  ASSERT_EQ(slow_result.error, "");
  ASSERT_GT(slow_result.payloads.size(), 0u);
  ASSERT_LT(slow_result.payloads.size(), kTotal) << "the slow client's queue is bounded";
  // What the slow client got is whole packets, in order, none twice, from the first one on;
  // those that came while its queue was full are missing (gaps), not cut or reordered.
  size_t previous = 0;
  for (size_t i = 0; i < slow_result.payloads.size(); ++i) {
    const std::string& got = slow_result.payloads[i];
    ASSERT_EQ(got.size(), 1000u);
    size_t index;
    std::memcpy(&index, got.data(), sizeof index);
    ASSERT_LT(index, kTotal);
    ASSERT_EQ(got, Payload(index)) << "packet " << i;
    if (i == 0) {
      EXPECT_EQ(index, 0u) << "the queue was empty when the first packet came";
    } else {
      ASSERT_GT(index, previous) << "packet " << i << " out of order or repeated";
    }
    EXPECT_EQ(slow_result.timestamps_ns[i], 1'700'000'000'000'000'000 + index);
    previous = index;
  }
  EXPECT_EQ(totals.clients, 2u);
  EXPECT_EQ(totals.packets_in, kTotal);
  EXPECT_EQ(totals.packets_sent, kTotal + slow_result.payloads.size());
  EXPECT_EQ(totals.packets_dropped, kTotal - slow_result.payloads.size());
}

// A capture that ends without a packet: the client gets the header (with the interface's link
// type and snaplen) and then the end of the capture, not a hang.
TEST(PcapFanoutWriterTest, CaptureWithoutPacketsEndsTheClientsStream) {
  auto listening = PcapFanout::Listen("127.0.0.1:0", 1 << 20);
  ASSERT_TRUE(listening.ok()) << listening.status().message();
  PcapFanout& fanout = *listening.value();
  fanout.Start(std::chrono::seconds(60));
  std::unique_ptr<CaptureWriter> writer = MakePcapFanoutWriter(fanout);
  InterfaceInfo info;
  info.name = "any";
  info.link_type = 113;
  info.snaplen = 65535;
  ASSERT_TRUE(writer->AddInterface(info).ok());
  ASSERT_TRUE(writer->Flush().ok());

  Client client = Connect(fanout.address(), 0);
  ASSERT_EQ(client.error, "");
  EXPECT_EQ(pcap_datalink(client.pcap.get()), 113);
  EXPECT_EQ(pcap_snapshot(client.pcap.get()), 65535);
  ASSERT_TRUE(writer->Close().ok());
  const Read read = ReadAll(client.pcap.get());
  EXPECT_EQ(read.error, "");
  EXPECT_TRUE(read.payloads.empty());
  const PcapFanout::Totals totals = fanout.Wait();
  EXPECT_EQ(totals.clients, 1u);
  EXPECT_EQ(totals.packets_in, 0u);
}

// A raw TCP client of the fan-out: what it received, kept whole for an independent pcapng reader.
struct RawClient {
  int fd = -1;
  std::string bytes;
  ~RawClient() {
    if (fd >= 0) close(fd);
  }
  // Reads until `blocks` whole pcapng blocks have arrived (then the fan-out has accepted this
  // client and sent its header), or the connection ends. False on an error or an early end.
  bool ReadBlocks(size_t blocks) {
    while (true) {
      size_t at = 0, whole = 0;
      while (at + 8 <= bytes.size()) {
        uint32_t length;
        std::memcpy(&length, bytes.data() + at + 4, sizeof length);
        if (length < 12 || at + length > bytes.size()) break;
        at += length;
        ++whole;
      }
      if (whole >= blocks) return true;
      char buffer[65536];
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      bytes.append(buffer, static_cast<size_t>(n));
    }
  }
  // Reads to the end of the capture (the fan-out closes the connection).
  void ReadToEnd() {
    char buffer[65536];
    for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) {
      bytes.append(buffer, static_cast<size_t>(n));
    }
  }
};

bool ConnectRaw(const std::string& address, RawClient* client) {
  client->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return client->fd >= 0 && connect(client->fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0;
}

StatusOr<test::PcapngFile> ReadBack(const std::string& bytes, const std::string& name) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("capd-fanout-" + std::to_string(getpid()) + "-" + name + ".pcapng");
  std::ofstream(path, std::ios::binary) << bytes;
  auto file = test::ReadPcapng(path);
  std::filesystem::remove(path);
  return file;
}

// pcapng for the readers that take it: interfaces with different link types in one stream (what
// --decap gives, here Ethernet and raw IP), an interface that appears mid-stream reaches the
// client already connected before the packets that need it, and a client that joins late gets the
// section header and every interface so far, then the packets from when it joined. Read back
// with an independent pcapng reader (libpcap refuses mixed link types).
TEST(PcapngFanoutWriterTest, EveryClientGetsEveryInterfaceLateJoinerToo) {
  auto listening = PcapFanout::Listen("127.0.0.1:0", 1 << 20);
  ASSERT_TRUE(listening.ok()) << listening.status().message();
  PcapFanout& fanout = *listening.value();
  fanout.Start(std::chrono::seconds(60));
  std::unique_ptr<CaptureWriter> writer = MakePcapngFanoutWriter(fanout, "capctl test");
  const auto write = [&](uint32_t interface, size_t i) {
    const std::string payload = Payload(i);
    return writer->WritePacket(interface, 1'700'000'000'000'000'000 + i, 1000,
                               {reinterpret_cast<const uint8_t*>(payload.data()), 1000},
                               i == 3 ? "a comment" : "");
  };

  InterfaceInfo ethernet;
  ethernet.name = "eth0";
  ethernet.link_type = 1;
  ASSERT_TRUE(writer->AddInterface(ethernet).ok());
  ASSERT_TRUE(writer->Flush().ok());
  RawClient early;
  ASSERT_TRUE(ConnectRaw(fanout.address(), &early));
  ASSERT_TRUE(early.ReadBlocks(2)) << "section header and the first interface";
  for (size_t i = 0; i < 5; ++i) ASSERT_TRUE(write(0, i).ok());
  ASSERT_TRUE(writer->Flush().ok());

  // A packet before the new interface in the same round, as the merger may have it.
  ASSERT_TRUE(write(0, 5).ok());
  InterfaceInfo raw;
  raw.name = "veth0 vni 7";
  raw.link_type = 101;
  ASSERT_TRUE(writer->AddInterface(raw).ok());
  ASSERT_TRUE(writer->Flush().ok());
  for (size_t i = 6; i < 10; ++i) ASSERT_TRUE(write(1, i).ok());
  ASSERT_TRUE(writer->Flush().ok());

  // Once the early client has packet 9, the fan-out has queued it: the late client joins after.
  ASSERT_TRUE(early.ReadBlocks(2 + 6 + 1 + 4)) << "the header, packets 0-5, the new interface, 6-9";
  RawClient late;
  ASSERT_TRUE(ConnectRaw(fanout.address(), &late));
  ASSERT_TRUE(late.ReadBlocks(3)) << "section header and both interfaces";
  for (size_t i = 10; i < 16; ++i) ASSERT_TRUE(write(static_cast<uint32_t>(i % 2), i).ok());
  ASSERT_TRUE(writer->Close().ok());
  early.ReadToEnd();
  late.ReadToEnd();
  const PcapFanout::Totals totals = fanout.Wait();
  EXPECT_EQ(totals.clients, 2u);
  EXPECT_EQ(totals.packets_in, 16u);
  EXPECT_EQ(totals.packets_dropped, 0u);

  auto early_file = ReadBack(early.bytes, "early");
  ASSERT_TRUE(early_file.ok()) << early_file.status().message();
  ASSERT_EQ(early_file->interfaces.size(), 2u);
  EXPECT_EQ(early_file->interfaces[0].link_type, 1);
  EXPECT_EQ(early_file->interfaces[1].link_type, 101);
  EXPECT_EQ(early_file->interfaces[1].name, "veth0 vni 7");
  ASSERT_EQ(early_file->packets.size(), 16u);
  for (size_t i = 0; i < 16; ++i) {
    const test::PcapngPacket& p = early_file->packets[i];
    EXPECT_EQ(p.bytes, Payload(i)) << i;
    EXPECT_EQ(p.ts_ns, 1'700'000'000'000'000'000 + i) << i;
    EXPECT_EQ(p.interface_id, i < 6 ? 0u : (i < 10 ? 1u : i % 2)) << i;
  }
  ASSERT_EQ(early_file->packets[3].comments.size(), 1u);
  EXPECT_EQ(early_file->packets[3].comments[0], "a comment");

  auto late_file = ReadBack(late.bytes, "late");
  ASSERT_TRUE(late_file.ok()) << late_file.status().message();
  ASSERT_EQ(late_file->interfaces.size(), 2u);
  EXPECT_EQ(late_file->interfaces[1].link_type, 101);
  ASSERT_EQ(late_file->packets.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(late_file->packets[i].bytes, Payload(10 + i));
    EXPECT_EQ(late_file->packets[i].interface_id, (10 + i) % 2);
  }
  EXPECT_TRUE(late_file->statistics.empty());
}

}  // namespace
}  // namespace capd::client
