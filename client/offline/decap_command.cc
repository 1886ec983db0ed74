#include "client/offline/decap_command.h"

#include <pcap/pcap.h>

#include <cstdio>
#include <memory>
#include <span>

#include "client/output/capture_files.h"
#include "pipeline/mirror_stage.h"

#ifndef CAPD_VERSION
#define CAPD_VERSION "0.0.0"
#endif

namespace capd::client {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

decap::Config ToDecapConfig(const DecapOptions& options) {
  decap::Config config;
  config.mode = options.mode == DecapOptions::Mode::kVxlan    ? decap::Mode::kVxlan
                : options.mode == DecapOptions::Mode::kGeneve ? decap::Mode::kGeneve
                                                              : decap::Mode::kAuto;
  config.vxlan_port = options.vxlan_port;
  config.geneve_port = options.geneve_port;
  return config;
}

int Fail(const std::string& message, int code) {
  std::fprintf(stderr, "capctl: %s\n", message.c_str());
  return code;
}

}  // namespace

int RunDecapFileCommand(const DecapFileOptions& options) {
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> input(pcap_open_offline_with_tstamp_precision(
      options.input.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!input) {
    // libpcap names the file in some messages ("PATH: No such file or directory") and not in
    // others ("unknown file format"): name it once either way.
    const std::string error(errbuf);
    return Fail(
        error.find(options.input) == std::string::npos ? options.input + ": " + error : error, 2);
  }

  pipeline::MirrorOptions mirror_options;
  mirror_options.decap = ToDecapConfig(options.decap);
  mirror_options.vnis = options.decap.vnis;
  mirror_options.inner_filter = options.decap.inner_filter;
  const int link_type = pcap_datalink(input.get());
  auto stage = pipeline::MirrorStage::Create(
      mirror_options, static_cast<uint16_t>(link_type == DLT_RAW ? 101 : link_type), options.input,
      /*first_index=*/0);
  if (!stage.ok()) return Fail(stage.status().message(), 2);

  std::unique_ptr<ByteSink> sink;
  if (options.write_path == "-") {
    sink = FdSink::Stdout();
  } else {
    auto file = FdSink::OpenFile(options.write_path);
    if (!file.ok()) return Fail(file.status().message(), 2);
    sink = std::move(file.value());
  }
  std::unique_ptr<CaptureWriter> writer =
      options.format == FileFormat::kPcap
          ? MakePcapWriter(std::move(sink))
          : MakePcapngWriter(std::move(sink), "capctl " CAPD_VERSION);
  const uint32_t snaplen = static_cast<uint32_t>(pcap_snapshot(input.get()));

  uint64_t read = 0, written = 0;
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int rc;
  while ((rc = pcap_next_ex(input.get(), &header, &data)) == 1) {
    ++read;
    pipeline::InnerPacket inner;
    if (stage.value()->Process(data, header->caplen, header->len, inner) !=
        pipeline::Verdict::kContinue) {
      continue;
    }
    if (inner.new_interface) {
      InterfaceInfo info;
      info.name = inner.interface->name;
      info.description = inner.interface->description;
      info.filter = options.decap.inner_filter;
      info.link_type = inner.interface->link_type;
      info.snaplen = snaplen;
      if (Status added = writer->AddInterface(info); !added.ok()) return Fail(added.message(), 1);
    }
    const uint64_t ts = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
                        static_cast<uint64_t>(header->ts.tv_usec);
    Status status = writer->WritePacket(inner.interface->index, ts, inner.original_length,
                                        std::span<const uint8_t>(inner.data, inner.captured_length),
                                        inner.comment);
    if (status.ok()) status = writer->Flush();
    if (!status.ok()) {
      if (status.code() == StatusCode::kUnavailable) break;  // the reader of stdout is gone
      return Fail(status.message(), 1);
    }
    ++written;
  }
  if (rc == PCAP_ERROR) {
    std::fprintf(stderr, "capctl: %s: %s (stopped after %llu packets)\n", options.input.c_str(),
                 pcap_geterr(input.get()), static_cast<unsigned long long>(read));
  }
  (void)writer->Flush();
  std::string outcomes;
  for (const auto& [reason, count] : stage.value()->Counters()) {
    outcomes += (outcomes.empty() ? "" : ", ") + std::to_string(count) + " " + reason;
  }
  std::fprintf(stderr, "capctl: %llu inner frames written to %s from %llu packets (%s)\n",
               static_cast<unsigned long long>(written), options.write_path.c_str(),
               static_cast<unsigned long long>(read), outcomes.empty() ? "none" : outcomes.c_str());
  return rc == PCAP_ERROR ? 1 : 0;
}

}  // namespace capd::client
