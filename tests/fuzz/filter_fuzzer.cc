// libFuzzer target for capd::filters::ComposeCaptureFilter.
//
// Input: the whole input is the user's filter text (raw bytes: NULs and invalid UTF-8 included,
// which a gRPC string field can carry). Own traffic is {tcp port 50051} on DLT_EN10MB, as for an
// agent listening on 50051 and capturing on an Ethernet interface.
// Property on top of "no crash, no sanitizer report": whenever composition succeeds, the composed
// expression (compiled as the agent compiles it: optimised, netmask unknown) rejects TCP packets
// to and from port 50051 over IPv4 and IPv6. No user text may let the agent's own traffic through.
//
// Coverage: libpcap (Debian's, not instrumented) does all the parsing, so libFuzzer would see
// almost no new edges. The target therefore feeds libFuzzer extra counters describing what
// libpcap produced: the shape of the compiled program and the kind of
// error message (coarse: see CountProgram). New kinds of programs and errors count as new
// coverage, so the corpus grows along libpcap's grammar instead of staying at the seeds.
//
// Host names: libpcap resolves `host NAME`, `net NAME` and `gateway NAME` through the resolver.
// Random text must not become DNS queries (slow, and traffic to whatever server the machine
// uses), so this binary defines gethostbyname() and getaddrinfo(): numeric addresses, service
// names and "localhost" go to the C library, every other name is "not found".

#include <dlfcn.h>
#include <netdb.h>
#include <pcap/pcap.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "filters/bpf_filter.h"

// libFuzzer (Linux) treats every byte of this section as an 8-bit coverage counter.
__attribute__((used, section("__libfuzzer_extra_counters"))) uint8_t capd_filter_features[1 << 16];

extern "C" {

struct hostent* gethostbyname(const char* name) {
  using Real = struct hostent* (*)(const char*);
  static const auto real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "gethostbyname"));
  if (name != nullptr && std::strcmp(name, "localhost") == 0 && real != nullptr) {
    return real(name);
  }
  h_errno = HOST_NOT_FOUND;
  return nullptr;
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                struct addrinfo** res) {
  using Real = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
  static const auto real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
  if (real == nullptr) return EAI_FAIL;
  const bool numeric = hints != nullptr && (hints->ai_flags & AI_NUMERICHOST) != 0;
  if (node == nullptr || numeric || std::strcmp(node, "localhost") == 0) {
    return real(node, service, hints, res);
  }
  // Numeric forms without AI_NUMERICHOST: ask again with it, so nothing reaches DNS.
  struct addrinfo numeric_hints = {};
  if (hints != nullptr) numeric_hints = *hints;
  numeric_hints.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &numeric_hints, res);
}

}  // extern "C"

namespace {

constexpr uint16_t kOwnPort = 50051;
constexpr int kSnaplen = 262144;

void Check(bool condition) {
  if (!condition) std::abort();
}

uint32_t Mix(uint32_t h, uint32_t v) {
  h ^= v + 0x9e3779b9u + (h << 6) + (h >> 2);
  return h;
}

// Presence only: hit counts would make every repetition of a keyword a new feature.
void Count(uint32_t feature) { capd_filter_features[feature % sizeof(capd_filter_features)] = 1; }

// Program features, coarse on purpose (constants from the input, such as port numbers, would
// make every input new): each pair of consecutive opcodes, the offsets of absolute loads within
// the first 64 bytes, and the program's length in powers of two.
void CountProgram(const bpf_program& program) {
  Count(Mix(1, 32 - __builtin_clz(program.bf_len | 1)));
  uint16_t previous = 0xffff;
  for (u_int i = 0; i < program.bf_len; ++i) {
    const bpf_insn& insn = program.bf_insns[i];
    Count(Mix(Mix(2, previous), insn.code));
    if (BPF_CLASS(insn.code) == BPF_LD && BPF_MODE(insn.code) == BPF_ABS && insn.k < 64) {
      Count(Mix(Mix(3, insn.code), insn.k));
    }
    previous = insn.code;
  }
}

// Error features: the kind of libpcap's message, i.e. its first two words, cut at the first
// colon, quote or digit. Messages quote the input ("bogus ethernet address f:f:", "illegal token:
// x"), and names and numbers from the input would make every input "new".
void CountError(const std::string& message) {
  // The status message is "filter '<expression>': <libpcap's message>"; the expression may be
  // the user's text or the composition, so libpcap's part is found from the end.
  std::string_view libpcap(message);
  const size_t separator = libpcap.rfind("': ");
  if (separator != std::string_view::npos) libpcap.remove_prefix(separator + 3);
  constexpr std::string_view kParse = "can't parse filter expression: ";
  if (libpcap.starts_with(kParse)) libpcap.remove_prefix(kParse.size());
  uint32_t h = 4;
  int words = 0;
  for (char c : libpcap) {
    if (c == '\'' || c == '"' || (c >= '0' && c <= '9')) break;
    if (c == ':' || (c == ' ' && ++words == 2)) break;
    h = Mix(h, static_cast<uint8_t>(c));
  }
  Count(h);
}

void PutU16(std::vector<uint8_t>& frame, size_t offset, uint16_t value) {
  frame[offset] = static_cast<uint8_t>(value >> 8);
  frame[offset + 1] = static_cast<uint8_t>(value);
}

// An Ethernet frame carrying a TCP segment (ACK|PSH, 8 bytes of payload) from source_port to
// destination_port, over IPv4 (20-byte header, DF) or IPv6 (no extension headers).
std::vector<uint8_t> TcpFrame(bool ipv6, uint16_t source_port, uint16_t destination_port) {
  constexpr size_t kEthernet = 14, kIpv4 = 20, kIpv6 = 40, kTcp = 20, kPayload = 8;
  const size_t ip_length = ipv6 ? kIpv6 : kIpv4;
  std::vector<uint8_t> frame(kEthernet + ip_length + kTcp + kPayload, 0);
  const uint8_t macs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(frame.data(), macs, sizeof(macs));
  PutU16(frame, 12, ipv6 ? 0x86dd : 0x0800);
  uint8_t* ip = frame.data() + kEthernet;
  if (ipv6) {
    ip[0] = 0x60;
    PutU16(frame, kEthernet + 4, kTcp + kPayload);
    ip[6] = 6;  // next header: TCP
    ip[7] = 64;
    ip[8] = 0xfd;  // fd00::1 -> fd00::2
    ip[23] = 1;
    ip[24] = 0xfd;
    ip[39] = 2;
  } else {
    ip[0] = 0x45;
    PutU16(frame, kEthernet + 2, kIpv4 + kTcp + kPayload);
    ip[6] = 0x40;  // DF, fragment offset 0
    ip[8] = 64;
    ip[9] = 6;  // TCP
    const uint8_t addresses[8] = {10, 0, 0, 1, 10, 0, 0, 2};
    std::memcpy(ip + 12, addresses, sizeof(addresses));
  }
  const size_t tcp = kEthernet + ip_length;
  PutU16(frame, tcp, source_port);
  PutU16(frame, tcp + 2, destination_port);
  frame[tcp + 12] = 0x50;  // data offset 5
  frame[tcp + 13] = 0x18;  // ACK|PSH
  PutU16(frame, tcp + 14, 0xffff);
  return frame;
}

struct OwnFrames {
  std::array<std::vector<uint8_t>, 4> frames = {
      TcpFrame(false, 40000, kOwnPort), TcpFrame(false, kOwnPort, 40000),
      TcpFrame(true, 40000, kOwnPort), TcpFrame(true, kOwnPort, 40000)};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  static const OwnFrames own_frames;
  static const capd::filters::OwnTraffic own{.tcp_ports = {kOwnPort}, .carriers = {}};
  // The agent refuses filters over 16 KiB; a little more keeps the limit itself in range.
  if (size > 20000) return 0;
  const std::string_view user_filter(reinterpret_cast<const char*>(input), size);

  auto composed = capd::filters::ComposeCaptureFilter(user_filter, own, DLT_EN10MB, kSnaplen);
  if (!composed.ok()) {
    Check(composed.status().code() == capd::StatusCode::kInvalidArgument);
    CountError(composed.status().message());
    return 0;
  }
  // Ethernet carries TCP/IP: the exclusion must always be there.
  Check(composed->excludes_own_traffic);
  auto program = capd::filters::Compile(composed->expression, DLT_EN10MB, kSnaplen);
  Check(program.ok());
  CountProgram(*program->program());
  for (const std::vector<uint8_t>& frame : own_frames.frames) {
    const auto length = static_cast<uint32_t>(frame.size());
    if (program->Matches(frame.data(), length, length)) {
      // Print what let the agent's traffic through before aborting: the crash input alone does
      // not show the composed text.
      std::fprintf(stderr, "own traffic passes the composed filter: %s\n",
                   composed->expression.c_str());
      std::abort();
    }
  }
  return 0;
}
