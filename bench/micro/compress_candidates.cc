// Which compressor for capd's batches (issue 19): ratio and CPU of each candidate on batches as
// capd builds them (BatchBuilder: one blob plus packed arrays, serialized as gRPC sends them).
// Run by hand, not in CI (figures depend on the machine):
//   build/bench/micro/capd_compress_candidates [tests/data/real/*.pcap]
// Traffic: the real captures given (their packets repeated in turn), and synthetic mixes:
//   tls-bulk  TCP bulk of encrypted payload (random bytes: TLS, SSH), 1514 B segments with every
//             other one acknowledged by a 66 B ACK; timestamps 12 us apart
//   udp-small DNS-like queries and answers, 70-180 B
//   mix       1/2 tls-bulk, 1/4 udp-small, 1/4 plain-text HTTP responses
//   64B       bench/run.sh's trafgen frames (64 B UDP, zero payload)
// Batch shapes: full (BatchBuilder's 512 KiB / 8192 packets: a busy link), 16 packets and 1
// packet (a quiet link, where a batch leaves every 3 ms block).
// Candidates: zstd 1 and 3 one frame per batch; zstd 1 and 3 one stream per call flushed per batch
// (compress/batch_codec, what capd uses); lz4 and lz4 HC 4 per batch; gzip 6 per batch (zlib's
// deflate with the gzip wrapper, what gRPC's own message compression does); and zstd 1 streamed
// on `data` alone, to see whether the arrays matter.
// Output: per traffic, batch shape and candidate: input MB, ratio (in/out), compress and
// decompress CPU in ms per MB of input (thread CPU time).

#include <lz4.h>
#include <lz4hc.h>
#include <pcap/pcap.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "agent/stream/batch_builder.h"
#include "compress/batch_codec.h"
#include "proto/capture.pb.h"

namespace {

using capd::agent::BatchBuilder;

struct Frame {
  std::string bytes;
  uint64_t gap_ns;
};

double ThreadSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

std::string Ethernet(uint16_t type) {
  std::string f = std::string("\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
  f += static_cast<char>(type >> 8);
  f += static_cast<char>(type & 0xff);
  return f;
}

void Put16(std::string& s, size_t at, uint16_t v) {
  s[at] = static_cast<char>(v >> 8);
  s[at + 1] = static_cast<char>(v & 0xff);
}
void Put32(std::string& s, size_t at, uint32_t v) {
  Put16(s, at, static_cast<uint16_t>(v >> 16));
  Put16(s, at + 2, static_cast<uint16_t>(v));
}

// Ethernet + IPv4 + (TCP with timestamps | UDP) + payload; ids and sequence numbers advance as a
// real flow's do.
std::string Ipv4(uint8_t proto, uint32_t src, uint32_t dst, uint16_t id, const std::string& l4) {
  std::string ip(20, '\0');
  ip[0] = 0x45;
  Put16(ip, 2, static_cast<uint16_t>(20 + l4.size()));
  Put16(ip, 4, id);
  ip[6] = 0x40;
  ip[8] = 64;
  ip[9] = static_cast<char>(proto);
  Put16(ip, 10, static_cast<uint16_t>(id * 7919));  // a checksum-like value that changes
  Put32(ip, 12, src);
  Put32(ip, 16, dst);
  return Ethernet(0x0800) + ip + l4;
}

std::string Tcp(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint32_t tsval,
                const std::string& payload) {
  std::string t(32, '\0');
  Put16(t, 0, sport);
  Put16(t, 2, dport);
  Put32(t, 4, seq);
  Put32(t, 8, ack);
  t[12] = static_cast<char>(8 << 4);
  t[13] = payload.empty() ? 0x10 : 0x18;
  Put16(t, 14, 502);
  Put16(t, 16, static_cast<uint16_t>(seq ^ ack));
  t[20] = 1;
  t[21] = 1;
  t[22] = 8;
  t[23] = 10;
  Put32(t, 24, tsval);
  Put32(t, 28, tsval - 3);
  return t + payload;
}

std::string Udp(uint16_t sport, uint16_t dport, const std::string& payload) {
  std::string u(8, '\0');
  Put16(u, 0, sport);
  Put16(u, 2, dport);
  Put16(u, 4, static_cast<uint16_t>(8 + payload.size()));
  Put16(u, 6, static_cast<uint16_t>(payload.size() * 31));
  return u + payload;
}

struct Generator {
  std::mt19937_64 rng{42};
  uint32_t seq = 1000, ack = 5000, ts = 100000;
  uint16_t id = 1, dns_id = 1;

  std::string Random(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i += 8) {
      const uint64_t r = rng();
      std::memcpy(&s[i], &r, std::min<size_t>(8, n - i));
    }
    return s;
  }
  void TlsBulk(std::vector<Frame>& out) {
    const std::string payload = Random(1448);
    out.push_back(
        {Ipv4(6, 0x0a000005, 0x0a000009, id++, Tcp(443, 51234, seq, ack, ts, payload)), 12000});
    seq += 1448;
    if (seq / 1448 % 2 == 0) {
      out.push_back(
          {Ipv4(6, 0x0a000009, 0x0a000005, id++, Tcp(51234, 443, ack, seq, ts + 1, "")), 3000});
    }
    ++ts;
  }
  void UdpSmall(std::vector<Frame>& out) {
    static const char* const kNames[] = {"api.example.com", "s3.eu-west-1.amazonaws.com",
                                         "ssm.eu-west-1.amazonaws.com", "time.aws.com",
                                         "ec2messages.eu-west-1.amazonaws.com"};
    const std::string name = kNames[rng() % 5];
    std::string q(12, '\0');
    Put16(q, 0, dns_id++);
    q[2] = 0x01;
    q[5] = 1;
    q += name + std::string("\0\0\x01\0\x01", 5);
    const auto sport = static_cast<uint16_t>(30000 + rng() % 30000);
    out.push_back({Ipv4(17, 0x0a000005, 0x0a000002, id++, Udp(sport, 53, q)), 40000});
    std::string a = q;
    a[2] = static_cast<char>(0x81);
    a[7] = 1;
    a += std::string("\xc0\x0c\0\x01\0\x01\0\0\x01\x2c\0\x04", 12) + Random(4);
    out.push_back({Ipv4(17, 0x0a000002, 0x0a000005, id++, Udp(53, sport, a)), 300000});
  }
  void HttpText(std::vector<Frame>& out) {
    std::string body =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nServer: nginx/1.22.1\r\nDate: Mon, "
        "07 Dec 2026 06:14:19 GMT\r\nContent-Length: 1200\r\n\r\n";
    while (body.size() < 1448) {
      body += "{\"id\":" + std::to_string(rng() % 100000) +
              ",\"state\":\"running\",\"zone\":\"eu-" + "west-1a\",\"ip\":\"10.0." +
              std::to_string(rng() % 255) + "." + std::to_string(rng() % 255) + "\"},";
    }
    body.resize(1448);
    out.push_back(
        {Ipv4(6, 0x0a000007, 0x0a000005, id++, Tcp(80, 41000, seq, ack, ts, body)), 20000});
    seq += 1448;
  }
};

std::vector<Frame> Synthetic(const std::string& kind, size_t count) {
  Generator g;
  std::vector<Frame> out;
  while (out.size() < count) {
    if (kind == "tls-bulk") {
      g.TlsBulk(out);
    } else if (kind == "udp-small") {
      g.UdpSmall(out);
    } else if (kind == "64B") {
      out.push_back({Ipv4(17, 0x0a000001, 0x0a000002, 0, Udp(9, 9, std::string(18, '\0'))), 3500});
    } else {  // mix
      const uint64_t r = g.rng() % 4;
      if (r < 2) {
        g.TlsBulk(out);
      } else if (r == 2) {
        g.UdpSmall(out);
      } else {
        g.HttpText(out);
      }
    }
  }
  return out;
}

std::vector<Frame> FromFiles(const std::vector<std::string>& paths) {
  std::vector<Frame> out;
  char error[PCAP_ERRBUF_SIZE];
  for (const std::string& path : paths) {
    pcap_t* p = pcap_open_offline(path.c_str(), error);
    if (p == nullptr) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), error);
      continue;
    }
    pcap_pkthdr* h;
    const u_char* d;
    while (pcap_next_ex(p, &h, &d) == 1) {
      out.push_back({std::string(reinterpret_cast<const char*>(d), h->caplen), 20000});
    }
    pcap_close(p);
  }
  return out;
}

// Serialized batches of at most `per_batch` packets (0: full, as BatchBuilder cuts them), and
// the `data` fields alone, covering `total_bytes` of frames.
struct Batches {
  std::vector<std::string> serialized;
  std::vector<std::string> data;
  size_t bytes = 0;
};

Batches MakeBatches(const std::vector<Frame>& frames, size_t per_batch, size_t total_bytes) {
  Batches b;
  BatchBuilder builder;
  uint64_t ts = 1'765'000'000'000'000'000;
  size_t i = 0;
  while (b.bytes < total_bytes) {
    builder.Start(std::make_unique<capd::v1::StreamResponse>());
    while (!builder.full() && (per_batch == 0 || builder.packet_count() < per_batch)) {
      const Frame& f = frames[i++ % frames.size()];
      ts += f.gap_ns;
      builder.Append(0, ts, static_cast<uint32_t>(f.bytes.size()),
                     reinterpret_cast<const uint8_t*>(f.bytes.data()),
                     static_cast<uint32_t>(f.bytes.size()));
    }
    auto message = builder.Finish();
    b.serialized.push_back(message->packets().SerializeAsString());
    b.data.push_back(message->packets().data());
    b.bytes += b.serialized.back().size();
  }
  return b;
}

struct Result {
  size_t in = 0, out = 0;
  double compress_s = 0, decompress_s = 0;
};

// One call per batch; `compress` returns the compressed form, `decompress` checks it.
using CompressFn = std::function<std::string(const std::string&)>;
using DecompressFn = std::function<bool(const std::string&, const std::string&)>;

Result Run(const std::vector<std::string>& batches, const CompressFn& compress,
           const DecompressFn& decompress) {
  Result r;
  std::vector<std::string> parts;
  parts.reserve(batches.size());
  double t0 = ThreadSeconds();
  for (const std::string& batch : batches) parts.push_back(compress(batch));
  r.compress_s = ThreadSeconds() - t0;
  t0 = ThreadSeconds();
  for (size_t i = 0; i < batches.size(); ++i) {
    if (!decompress(parts[i], batches[i])) {
      std::fprintf(stderr, "round trip failed\n");
      std::exit(1);
    }
  }
  r.decompress_s = ThreadSeconds() - t0;
  for (size_t i = 0; i < batches.size(); ++i) {
    r.in += batches[i].size();
    r.out += parts[i].size();
  }
  return r;
}

void Print(const std::string& traffic, const std::string& shape, const std::string& name,
           const Result& r) {
  const double mb = static_cast<double>(r.in) / 1e6;
  std::printf("%-10s %-6s %-22s %8.1f %7.2f %9.2f %9.2f\n", traffic.c_str(), shape.c_str(),
              name.c_str(), mb, static_cast<double>(r.in) / static_cast<double>(r.out),
              r.compress_s * 1000 / mb, r.decompress_s * 1000 / mb);
}

void Candidates(const std::string& traffic, const std::string& shape, const Batches& b) {
  std::string scratch;
  for (int level : {1, 3}) {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_DCtx* d = ZSTD_createDCtx();
    Print(
        traffic, shape, "zstd-" + std::to_string(level) + " per batch",
        Run(
            b.serialized,
            [&](const std::string& in) {
              std::string out(ZSTD_compressBound(in.size()), '\0');
              out.resize(ZSTD_compressCCtx(c, out.data(), out.size(), in.data(), in.size(), level));
              return out;
            },
            [&](const std::string& part, const std::string& in) {
              scratch.resize(in.size());
              return ZSTD_decompressDCtx(d, scratch.data(), scratch.size(), part.data(),
                                         part.size()) == in.size() &&
                     scratch == in;
            }));
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
    for (bool data_only : {false, true}) {
      if (data_only && level != 1) continue;
      auto compressor = capd::compress::BatchCompressor::Create(level);
      auto decompressor = capd::compress::BatchDecompressor::Create();
      if (!compressor.ok() || !decompressor.ok()) std::exit(1);
      Print(
          traffic, shape, "zstd-" + std::to_string(level) + " stream" + (data_only ? " data" : ""),
          Run(
              data_only ? b.data : b.serialized,
              [&](const std::string& in) {
                std::string out;
                if (!(*compressor)->Compress(in, out).ok()) std::exit(1);
                return out;
              },
              [&](const std::string& part, const std::string& in) {
                return (*decompressor)->Decompress(part, in.size(), scratch).ok() && scratch == in;
              }));
    }
  }
  for (int hc : {0, 4}) {
    Print(traffic, shape, hc == 0 ? "lz4 per batch" : "lz4hc-4 per batch",
          Run(
              b.serialized,
              [&](const std::string& in) {
                std::string out(LZ4_compressBound(static_cast<int>(in.size())), '\0');
                const int n =
                    hc == 0
                        ? LZ4_compress_default(in.data(), out.data(), static_cast<int>(in.size()),
                                               static_cast<int>(out.size()))
                        : LZ4_compress_HC(in.data(), out.data(), static_cast<int>(in.size()),
                                          static_cast<int>(out.size()), hc);
                out.resize(static_cast<size_t>(n));
                return out;
              },
              [&](const std::string& part, const std::string& in) {
                scratch.resize(in.size());
                return LZ4_decompress_safe(
                           part.data(), scratch.data(), static_cast<int>(part.size()),
                           static_cast<int>(scratch.size())) == static_cast<int>(in.size()) &&
                       scratch == in;
              }));
  }
  Print(traffic, shape, "gzip-6 per batch (gRPC)",
        Run(
            b.serialized,
            [&](const std::string& in) {
              z_stream z{};
              deflateInit2(&z, 6, Z_DEFLATED, 15 | 16, 8, Z_DEFAULT_STRATEGY);
              std::string out(deflateBound(&z, in.size()) + 32, '\0');
              z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
              z.avail_in = static_cast<uInt>(in.size());
              z.next_out = reinterpret_cast<Bytef*>(out.data());
              z.avail_out = static_cast<uInt>(out.size());
              deflate(&z, Z_FINISH);
              out.resize(z.total_out);
              deflateEnd(&z);
              return out;
            },
            [&](const std::string& part, const std::string& in) {
              z_stream z{};
              inflateInit2(&z, 15 | 16);
              scratch.resize(in.size() + 1);
              z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
              z.avail_in = static_cast<uInt>(part.size());
              z.next_out = reinterpret_cast<Bytef*>(scratch.data());
              z.avail_out = static_cast<uInt>(scratch.size());
              inflate(&z, Z_FINISH);
              scratch.resize(z.total_out);
              inflateEnd(&z);
              return scratch == in;
            }));
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::pair<std::string, std::vector<Frame>>> traffic;
  if (argc > 1) traffic.emplace_back("real", FromFiles({argv + 1, argv + argc}));
  for (const char* kind : {"tls-bulk", "udp-small", "mix", "64B"}) {
    traffic.emplace_back(kind, Synthetic(kind, 20000));
  }
  std::printf("%-10s %-6s %-22s %8s %7s %9s %9s\n", "traffic", "batch", "candidate", "MB", "ratio",
              "comp ms/MB", "dec ms/MB");
  for (const auto& [name, frames] : traffic) {
    if (frames.empty()) continue;
    for (size_t per_batch : {0, 16, 1}) {
      const size_t total = per_batch == 0 ? 32u << 20 : per_batch == 16 ? 8u << 20 : 2u << 20;
      const Batches b = MakeBatches(frames, per_batch, total);
      Candidates(name, per_batch == 0 ? "full" : std::to_string(per_batch), b);
    }
  }
  return 0;
}
