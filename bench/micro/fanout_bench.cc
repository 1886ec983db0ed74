// capctl serve's fan-out end to end on loopback: WritePacket for each packet through the pcap
// fan-out writer (client/serve/fanout_writer.h), Flush every 64 packets (about one agent batch,
// a round of the session at a modest rate), PcapFanout queueing each hand-over for two TCP
// clients that read and discard as fast as they can. Items are packets the writer took (it waits
// only when the fan-out thread falls 4 MiB behind); `delivered/s` is what each client received
// per second, from the first packet until the last client has everything (the end to end rate);
// `dropped` counts packets the clients lost to a full queue (64 MiB each), summed.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/serve/fanout_writer.h"
#include "client/serve/pcap_fanout.h"

namespace {

using capd::client::PcapFanout;

constexpr int kPacketsPerFlush = 64;
constexpr int kClients = 2;

// A client that reads and discards; ready once the file header has arrived (it is accepted).
class DrainingClient {
 public:
  explicit DrainingClient(const std::string& address) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return;
    thread_ = std::thread([this] {
      static thread_local char buffer[1 << 16];
      for (ssize_t n; (n = recv(fd_, buffer, sizeof buffer, 0)) > 0;) {
        received_ += static_cast<uint64_t>(n);
      }
    });
  }
  ~DrainingClient() {
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  bool ready() const { return received_ >= 24; }

 private:
  int fd_ = -1;
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

void BM_ServeFanout(benchmark::State& state) {
  const std::vector<uint8_t> frame(static_cast<size_t>(state.range(0)), 0x5a);
  auto listening = PcapFanout::Listen("127.0.0.1:0", 64 << 20);
  if (!listening.ok()) {
    state.SkipWithError(listening.status().message().c_str());
    return;
  }
  PcapFanout& fanout = *listening.value();
  fanout.Start(std::chrono::seconds(30));
  auto writer = capd::client::MakePcapFanoutWriter(fanout);
  capd::capfile::InterfaceInfo info;
  info.name = "eth0";
  (void)writer->AddInterface(info);
  (void)writer->Flush();
  std::vector<std::unique_ptr<DrainingClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<DrainingClient>(fanout.address()));
    while (!clients.back()->ready()) std::this_thread::yield();
  }

  uint64_t timestamp = 1'700'000'000'000'000'000;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    for (int i = 0; i < kPacketsPerFlush; ++i) {
      benchmark::DoNotOptimize(
          writer->WritePacket(0, ++timestamp, static_cast<uint32_t>(frame.size()), frame));
    }
    benchmark::DoNotOptimize(writer->Flush());
  }
  // After the timed loop: the end of the stream and the clients' last reads are not measured.
  (void)writer->Close();
  const PcapFanout::Totals totals = fanout.Wait();
  clients.clear();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  state.counters["delivered/s"] =
      static_cast<double>(totals.packets_sent) / kClients / elapsed.count();
  state.SetItemsProcessed(state.iterations() * kPacketsPerFlush);
  state.SetBytesProcessed(state.iterations() * kPacketsPerFlush *
                          static_cast<int64_t>(frame.size()));
  state.counters["dropped"] = static_cast<double>(totals.packets_dropped);
}
BENCHMARK(BM_ServeFanout)->Arg(64)->Arg(512)->Arg(1500)->UseRealTime();

}  // namespace
