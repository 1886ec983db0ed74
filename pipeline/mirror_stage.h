#pragma once
// Mirror-target mode's pipeline stage: tunnel packet in, inner frame out.
//
// How data flows: a captured tunnel packet -> decap::Decapsulate (VXLAN / Geneve / both) ->
// keep only the selected VNIs -> the inner BPF filter (user space, compiled for the inner link
// type) -> the inner frame, filed under one output interface per (encapsulation, VNI, inner link
// type), created on its first packet. Every packet that does not come out is counted by reason.
//
// Anyone who can send UDP to the tunnel port can invent sessions (a VXLAN packet per VNI), so
// the interfaces are capped (MirrorOptions::max_interfaces): once the cap is reached, inner
// frames of a session without an interface are dropped and counted as "interface_limit" (never
// filed under another interface: an interface stands for one session). Sessions selected with
// --vni pass the selection before the cap is consulted, so naming them keeps them safe from a
// flood of invented VNIs that comes before them. Lookup is a hash of (encapsulation, VNI, link
// type): constant time however many sessions arrive.
// Shared by the agent's capture loop and `capctl decap` (one implementation, not two).
//
// Contract: Process() never allocates once warm (the first packet of a new interface does),
// never throws and never logs. The returned InnerPacket points into the caller's buffer (and the
// stage's comment buffer) and is valid until the next call. Not thread-safe: one per capture.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "decap/decapsulator.h"
#include "filters/bpf_filter.h"

namespace capd::pipeline {

// The snaplen inner filters are compiled for.
inline constexpr int kInnerSnaplen = 262144;

// Compiles an inner filter for one inner link type (a DLT_ value) and kInnerSnaplen.
using InnerFilterCompiler =
    std::function<StatusOr<filters::CompiledFilter>(const std::string& expression, int link_type)>;

struct MirrorOptions {
  decap::Config decap;
  std::vector<uint32_t> vnis;  // empty: every VNI
  std::string inner_filter;    // empty: every inner frame
  // Most output interfaces the stage creates; 0: no limit (capctl decap on the user's own file).
  size_t max_interfaces = 0;
  // Unset: filters::Compile, in this process and unbounded (capctl decap, a user's own filter).
  // capd passes programs its filter sandbox compiled (agent/capture/filter_sandbox.h).
  InnerFilterCompiler compile;
};

// An output interface discovered by the stage.
struct InnerInterface {
  uint32_t index = 0;  // output interface index (first_index + order of discovery)
  decap::Encapsulation encapsulation{};
  uint32_t vni = 0;
  uint16_t link_type = 1;
  std::string name;         // "vxlan-4242", "geneve-10", "geneve_vxlan-7"; "-raw" if ambiguous
  std::string description;  // encapsulation, VNI, first outer source, capture interface
  uint64_t packets = 0;     // inner frames filed under it
};

struct InnerPacket {
  const uint8_t* data = nullptr;
  uint32_t captured_length = 0;
  uint32_t original_length = 0;
  const InnerInterface* interface = nullptr;
  bool new_interface = false;  // first packet of `interface`: announce it before this packet
  std::string_view comment;    // AWS Geneve options, when present
};

enum class Verdict { kContinue, kDrop };

// Reasons beyond decap::Outcome for which an inner frame is not output.
// kInterfaceLimit: the frame's session would need an interface beyond max_interfaces.
enum class SelectionDrop { kVniNotSelected, kInnerFilter, kInterfaceLimit, kCount };

class MirrorStage {
 public:
  // kInvalidArgument when inner_filter does not compile (for Ethernet or raw IP inner frames).
  static StatusOr<std::unique_ptr<MirrorStage>> Create(const MirrorOptions& options,
                                                       uint16_t outer_link_type,
                                                       std::string capture_interface,
                                                       uint32_t first_index);

  Verdict Process(const uint8_t* data, uint32_t captured_length, uint32_t original_length,
                  InnerPacket& out);

  // Counts by reason: decap outcomes ("decapsulated", "truncated", ...) and the selection drops
  // ("vni_not_selected", "inner_filter", "interface_limit"); zero counts left out.
  std::map<std::string, uint64_t> Counters() const;
  const std::vector<std::unique_ptr<InnerInterface>>& interfaces() const { return interfaces_; }
  // Frames dropped because max_interfaces was reached (the "interface_limit" counter).
  uint64_t interface_limit_drops() const {
    return selection_drops_[static_cast<size_t>(SelectionDrop::kInterfaceLimit)];
  }

  // The kernel filter scope for the configured tunnel ports, e.g. "udp dst port 4789".
  static std::string TunnelScope(const decap::Config& config);

 private:
  MirrorStage(const MirrorOptions& options, uint16_t outer_link_type, std::string capture_interface,
              uint32_t first_index);
  // Null when the session is new and max_interfaces is reached. May allocate.
  InnerInterface* FindOrAdd(const decap::Result& result, bool& added);
  bool VniSelected(uint32_t vni) const;

  const MirrorOptions options_;
  const std::unordered_set<uint32_t> selected_vnis_;  // options_.vnis, for a lookup per packet
  const uint16_t outer_link_type_;
  const std::string capture_interface_;
  const uint32_t first_index_;
  filters::CompiledFilter inner_ethernet_;
  filters::CompiledFilter inner_raw_;
  bool inner_filter_compiled_ethernet_ = false;
  bool inner_filter_compiled_raw_ = false;
  std::vector<std::unique_ptr<InnerInterface>> interfaces_;
  std::unordered_map<uint64_t, InnerInterface*> by_session_;  // by SessionKey
  std::array<uint64_t, static_cast<size_t>(decap::Outcome::kCount)> outcomes_{};
  std::array<uint64_t, static_cast<size_t>(SelectionDrop::kCount)> selection_drops_{};
  char comment_[decap::kAwsOptionsTextSize] = {};  // reused for every packet's AWS options
};

}  // namespace capd::pipeline
