#pragma once
// Batches as capd builds them (agent/stream BatchBuilder) from the real captures in
// tests/data/real, for the compression tests.

#include <pcap/pcap.h>

#include <memory>
#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "proto/capture.pb.h"

namespace capd::test {

// Every packet of the real captures, `per_batch` packets to a batch (the last may hold fewer).
inline std::vector<v1::PacketBatch> RealBatches(size_t per_batch) {
  std::vector<v1::PacketBatch> batches;
  agent::BatchBuilder builder;
  char error[PCAP_ERRBUF_SIZE];
  for (const char* name : {"vxlan.pcap", "geneve.pcap", "gso-ipv4-vxlan-ipv4.pcap",
                           "bigtcp-ipv6-geneve-ipv6.pcap", "geneve-gcp.pcap"}) {
    pcap_t* p = pcap_open_offline((std::string(CAPD_TEST_DATA_DIR) + "/" + name).c_str(), error);
    if (p == nullptr) continue;
    pcap_pkthdr* h;
    const u_char* d;
    while (pcap_next_ex(p, &h, &d) == 1) {
      if (!builder.started()) builder.Start(std::make_unique<v1::StreamResponse>());
      const uint64_t ts = static_cast<uint64_t>(h->ts.tv_sec) * 1'000'000'000 +
                          static_cast<uint64_t>(h->ts.tv_usec) * 1000;
      builder.Append(0, ts, h->len, d, h->caplen);
      if (builder.packet_count() >= per_batch || builder.full()) {
        batches.push_back(builder.Finish()->packets());
      }
    }
    pcap_close(p);
  }
  if (builder.started() && !builder.empty()) batches.push_back(builder.Finish()->packets());
  return batches;
}

}  // namespace capd::test
