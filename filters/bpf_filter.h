#pragma once
// BPF composition and validation, shared by capd and capctl.
//
// How data flows: the agent receives a user filter, compiles it on its own against the capture's
// link type (refusing it with libpcap's message if it does not compile), then composes the kernel
// filter `not (<own traffic>) and (<user filter>)`. Because the user text compiled on its own, it
// cannot escape its parentheses. The exclusion comes first on purpose: libpcap's `vlan`, `mpls`
// and `pppoes` keywords shift the offsets of every test that follows them, so an exclusion placed
// after a user's `vlan` would look for TCP ports at the wrong offsets.
//
// Cost: libpcap's compiler, and its optimizer most, is super-linear in the expression: 200
// `port N or` terms take over a second of CPU, 1,344 terms (16 KiB) minutes and gigabytes. These
// functions are unbounded; capd compiles requests' filters in a sandbox with a CPU, memory and
// time budget (agent/capture/filter_sandbox.h). capctl compiles its user's own filters here.

#include <pcap/pcap.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace capd::filters {

// A compiled BPF program; move-only owner of the bpf_program's instructions.
class CompiledFilter {
 public:
  CompiledFilter() = default;
  CompiledFilter(CompiledFilter&& other) noexcept;
  CompiledFilter& operator=(CompiledFilter&& other) noexcept;
  CompiledFilter(const CompiledFilter&) = delete;
  CompiledFilter& operator=(const CompiledFilter&) = delete;
  ~CompiledFilter();

  // A copy of `count` instructions (a program compiled elsewhere, e.g. in capd's sandbox).
  static CompiledFilter FromInstructions(const bpf_insn* instructions, size_t count);

  const bpf_program* program() const { return &program_; }
  bpf_program* mutable_program() { return &program_; }
  size_t instruction_count() const { return program_.bf_len; }
  // True if the packet (captured bytes, original length) passes the filter.
  bool Matches(const uint8_t* data, uint32_t captured_length, uint32_t original_length) const;

 private:
  bpf_program program_{0, nullptr};
};

// A filter as quoted in errors and logs: whole up to 256 bytes, else its first 200 bytes and its
// size. Errors travel back as gRPC's grpc-message, and clients refuse metadata over 8 KiB (gRPC
// 1.51's default): echoing a 16 KiB filter turned "syntax error" into RESOURCE_EXHAUSTED
// "received initial metadata size exceeds limit", and cost the client its connection.
std::string QuoteFilter(const std::string& text);

// Compiles `expression` for `link_type` (a DLT_ value) without a live handle. Thread-safe:
// libpcap's parser is reentrant since 1.8 (Debian 12 ships 1.10.3), so there is no lock and
// compiles on several threads run in parallel. An expression that does not compile is
// kInvalidArgument: "filter '<text>': <libpcap's message>" (a text over 256 bytes is quoted by its
// first 200 and its size). Without `optimize`, libpcap's
// optimizer does not run (a check that the text parses, about half the CPU of a full compile).
StatusOr<CompiledFilter> Compile(std::string_view expression, int link_type, int snaplen,
                                 bool optimize = true);

// The traffic the agent must never capture: its own control connections.
struct OwnTraffic {
  std::vector<uint16_t> tcp_ports;  // the agent's listening ports: every connection to or from them
  std::string carriers;             // BPF for the relays' connections (agent/carrier/), or empty
};

// "tcp port 50051 or tcp port 50052 or (<carriers>)"; empty when there is nothing to exclude.
std::string OwnTrafficExpression(const OwnTraffic& own);

struct ComposedFilter {
  std::string expression;             // what goes to the kernel; empty means capture everything
  bool excludes_own_traffic = false;  // false when the link type carries no TCP/IP
  int link_type = 0;                  // the DLT_ value and snaplen `program` was compiled for
  int snaplen = 0;
  CompiledFilter program;  // `expression` compiled (optimized) for a pcap_open_dead handle
};

// Validates user_filter alone, then composes it with the exclusion of `own`:
// `not (own) and (scope) and (user)`. scope is the agent's own restriction (in mirror-target
// mode, the tunnel's UDP ports); empty parts are left out. The composition is compiled once with
// the optimizer (the parts alone without), and its program comes with it.
StatusOr<ComposedFilter> ComposeCaptureFilter(std::string_view user_filter, const OwnTraffic& own,
                                              int link_type, int snaplen,
                                              std::string_view scope = {});

// For a client that does not know the capture's link type yet: kInvalidArgument only when the
// filter compiles for none of the link types a capd capture commonly has (Ethernet, Linux cooked
// v1/v2, raw IP, 802.11 radiotap, BSD loopback). Never stricter than the agent's own check.
// Checked without the optimizer, and only up to kPrecheckedFilterBytes: libpcap's cost grows
// faster than the text (1,200 `port N or` terms took capctl 7.5 minutes), and the agent, which
// compiles within a budget, judges longer filters.
inline constexpr size_t kPrecheckedFilterBytes = 4096;
Status PrecheckFilter(std::string_view user_filter);

}  // namespace capd::filters
