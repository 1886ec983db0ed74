// Decapsulate() as capd's mirror stage calls it for every captured tunnel packet, on real
// captures from tests/data/real (tcpdump's test suite): vxlan.pcap (VXLAN, inner ICMP/ARP) and
// geneve.pcap (Geneve, some packets with options). One iteration decapsulates one frame; the
// frames of the file are taken in turn. Items are packets, bytes are outer frame bytes.

#include <benchmark/benchmark.h>
#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decap/decapsulator.h"

namespace {

struct Frame {
  std::vector<uint8_t> bytes;
  uint32_t original_length = 0;
};

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

// Every frame of a capture file, with the file's link type; empty with an error text on failure.
std::vector<Frame> ReadFrames(const std::string& path, uint16_t& link_type, std::string& error) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> handle(pcap_open_offline(path.c_str(), errbuf));
  std::vector<Frame> frames;
  if (!handle) {
    error = "pcap_open_offline(" + path + "): " + errbuf;
    return frames;
  }
  link_type = static_cast<uint16_t>(pcap_datalink(handle.get()));
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(handle.get(), &header, &data) == 1) {
    frames.push_back({std::vector<uint8_t>(data, data + header->caplen), header->len});
  }
  if (frames.empty()) error = path + ": no packets";
  return frames;
}

void BM_Decapsulate(benchmark::State& state, const char* file, capd::decap::Mode mode) {
  uint16_t link_type = 0;
  std::string error;
  const std::vector<Frame> frames =
      ReadFrames(std::string(CAPD_MICRO_DATA_DIR) + "/" + file, link_type, error);
  if (frames.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  capd::decap::Config config;
  config.mode = mode;
  // Every frame of these files is a tunnel packet: anything else means the benchmark measures
  // an early exit, not decapsulation.
  for (const Frame& f : frames) {
    const auto r =
        capd::decap::Decapsulate(config, link_type, f.bytes.data(),
                                 static_cast<uint32_t>(f.bytes.size()), f.original_length);
    if (r.outcome != capd::decap::Outcome::kDecapsulated) {
      state.SkipWithError("a frame does not decapsulate");
      return;
    }
  }
  size_t next = 0;
  int64_t bytes = 0;
  for (auto _ : state) {
    const Frame& f = frames[next];
    next = next + 1 == frames.size() ? 0 : next + 1;
    const auto r =
        capd::decap::Decapsulate(config, link_type, f.bytes.data(),
                                 static_cast<uint32_t>(f.bytes.size()), f.original_length);
    benchmark::DoNotOptimize(r);
    bytes += static_cast<int64_t>(f.bytes.size());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(bytes);
  state.counters["frames"] = static_cast<double>(frames.size());
}
BENCHMARK_CAPTURE(BM_Decapsulate, vxlan, "vxlan.pcap", capd::decap::Mode::kVxlan);
BENCHMARK_CAPTURE(BM_Decapsulate, geneve, "geneve.pcap", capd::decap::Mode::kGeneve);
BENCHMARK_CAPTURE(BM_Decapsulate, auto_vxlan, "vxlan.pcap", capd::decap::Mode::kAuto);

}  // namespace
