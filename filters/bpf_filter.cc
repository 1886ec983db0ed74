#include "filters/bpf_filter.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

namespace capd::filters {
namespace {

struct DeadHandleCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

}  // namespace

std::string QuoteFilter(const std::string& text) {
  constexpr size_t kWhole = 256;
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a known false positive in
  // char_traits' memcpy) about an inlined `"'" + std::string`.
  std::string quoted = "'";
  if (text.size() <= kWhole) {
    quoted += text;
    quoted += '\'';
    return quoted;
  }
  quoted.append(text, 0, 200);
  quoted += "...' (";
  quoted += std::to_string(text.size());
  quoted += " bytes)";
  return quoted;
}

CompiledFilter::CompiledFilter(CompiledFilter&& other) noexcept
    : program_(std::exchange(other.program_, bpf_program{0, nullptr})) {}

CompiledFilter& CompiledFilter::operator=(CompiledFilter&& other) noexcept {
  if (this != &other) {
    pcap_freecode(&program_);
    program_ = std::exchange(other.program_, bpf_program{0, nullptr});
  }
  return *this;
}

CompiledFilter::~CompiledFilter() { pcap_freecode(&program_); }

CompiledFilter CompiledFilter::FromInstructions(const bpf_insn* instructions, size_t count) {
  CompiledFilter filter;
  if (count == 0) return filter;
  // malloc, as libpcap's own programs: pcap_freecode() frees bf_insns with free().
  auto* copy = static_cast<bpf_insn*>(std::malloc(count * sizeof(bpf_insn)));
  if (copy == nullptr) return filter;
  std::memcpy(copy, instructions, count * sizeof(bpf_insn));
  filter.program_.bf_len = static_cast<u_int>(count);
  filter.program_.bf_insns = copy;
  return filter;
}

bool CompiledFilter::Matches(const uint8_t* data, uint32_t captured_length,
                             uint32_t original_length) const {
  if (program_.bf_insns == nullptr) return true;
  return bpf_filter(program_.bf_insns, data, original_length, captured_length) != 0;
}

StatusOr<CompiledFilter> Compile(std::string_view expression, int link_type, int snaplen,
                                 bool optimize) {
  std::unique_ptr<pcap_t, DeadHandleCloser> dead(pcap_open_dead(link_type, snaplen));
  if (!dead) return Internal("pcap_open_dead(link type " + std::to_string(link_type) + ") failed");
  const std::string text(expression);
  CompiledFilter filter;
  if (pcap_compile(dead.get(), filter.mutable_program(), text.c_str(), optimize ? 1 : 0,
                   PCAP_NETMASK_UNKNOWN) != 0) {
    return InvalidArgument("filter " + QuoteFilter(text) + ": " + pcap_geterr(dead.get()));
  }
  return filter;
}

std::string OwnTrafficExpression(const OwnTraffic& own) {
  std::string out;
  for (uint16_t port : own.tcp_ports) {
    if (!out.empty()) out += " or ";
    out += "tcp port " + std::to_string(port);
  }
  if (!own.carriers.empty()) out += (out.empty() ? "(" : " or (") + own.carriers + ")";
  return out;
}

StatusOr<ComposedFilter> ComposeCaptureFilter(std::string_view user_filter, const OwnTraffic& own,
                                              int link_type, int snaplen, std::string_view scope) {
  // The parts alone are only parsed and checked (no optimizer: it is what costs, and the
  // composition's compile below runs it once for the whole).
  if (!user_filter.empty()) {
    auto user = Compile(user_filter, link_type, snaplen, /*optimize=*/false);
    if (!user.ok()) return user.status();
  }
  const std::string exclusion = OwnTrafficExpression(own);
  // A link type without TCP/IP (e.g. usbmon) cannot carry the agent's traffic: nothing to exclude.
  const bool can_exclude =
      !exclusion.empty() && Compile(exclusion, link_type, snaplen, /*optimize=*/false).ok();
  ComposedFilter composed;
  composed.excludes_own_traffic = can_exclude;
  composed.link_type = link_type;
  composed.snaplen = snaplen;
  auto add = [&composed](std::string_view part, bool negate) {
    if (part.empty()) return;
    if (!composed.expression.empty()) composed.expression += " and ";
    composed.expression += (negate ? "not (" : "(") + std::string(part) + ")";
  };
  if (can_exclude) add(exclusion, /*negate=*/true);
  add(scope, false);
  add(user_filter, false);
  // A lone user filter stays as written (what tcpdump users expect to see in if_filter).
  if (!can_exclude && scope.empty()) composed.expression = std::string(user_filter);
  // Both parts compiled alone; the composition must compile too, but check rather than assume.
  // Its program is the one the kernel gets: the only optimized compile of the request.
  auto whole = Compile(composed.expression, link_type, snaplen);
  if (!whole.ok()) return whole.status();
  composed.program = std::move(whole.value());
  return composed;
}

Status PrecheckFilter(std::string_view user_filter) {
  if (user_filter.empty() || user_filter.size() > kPrecheckedFilterBytes) return Status::Ok();
  static constexpr int kCommonLinkTypes[] = {DLT_EN10MB, DLT_LINUX_SLL2,       DLT_LINUX_SLL,
                                             DLT_RAW,    DLT_IEEE802_11_RADIO, DLT_NULL};
  Status first_error;
  for (int link_type : kCommonLinkTypes) {
    auto compiled = Compile(user_filter, link_type, 262144, /*optimize=*/false);
    if (compiled.ok()) return Status::Ok();
    if (first_error.ok()) first_error = compiled.status();
  }
  return first_error;
}

}  // namespace capd::filters
