#include "pipeline/mirror_stage.h"

#include <algorithm>

namespace capd::pipeline {
namespace {

constexpr uint16_t kLinktypeEthernet = 1;
constexpr uint16_t kLinktypeRaw = 101;

const char* SelectionDropName(SelectionDrop d) {
  switch (d) {
    case SelectionDrop::kVniNotSelected:
      return "vni_not_selected";
    case SelectionDrop::kInnerFilter:
      return "inner_filter";
    default:
      return "interface_limit";
  }
}

// (encapsulation, VNI, inner link type) in one word: VNIs are 24-bit.
uint64_t SessionKey(decap::Encapsulation encapsulation, uint32_t vni, uint16_t link_type) {
  return static_cast<uint64_t>(link_type) << 40 |
         static_cast<uint64_t>(static_cast<uint8_t>(encapsulation)) << 32 | vni;
}

}  // namespace

std::string MirrorStage::TunnelScope(const decap::Config& config) {
  const std::string vxlan = "udp dst port " + std::to_string(config.vxlan_port);
  const std::string geneve = "udp dst port " + std::to_string(config.geneve_port);
  switch (config.mode) {
    case decap::Mode::kVxlan:
      return vxlan;
    case decap::Mode::kGeneve:
      return geneve;
    case decap::Mode::kAuto:
      return vxlan + " or " + geneve;
  }
  return vxlan + " or " + geneve;
}

StatusOr<std::unique_ptr<MirrorStage>> MirrorStage::Create(const MirrorOptions& options,
                                                           uint16_t outer_link_type,
                                                           std::string capture_interface,
                                                           uint32_t first_index) {
  std::unique_ptr<MirrorStage> stage(
      new MirrorStage(options, outer_link_type, std::move(capture_interface), first_index));
  if (!options.inner_filter.empty()) {
    // Inner frames are Ethernet (VXLAN, Geneve 0x6558) or bare IP (Geneve 0x0800/0x86DD): the
    // filter must make sense for at least one of them. Where it does not compile (an "ether"
    // test on raw IP), frames of that kind never match.
    const InnerFilterCompiler compile =
        options.compile ? options.compile : [](const std::string& expression, int link_type) {
          return filters::Compile(expression, link_type, kInnerSnaplen);
        };
    auto ethernet = compile(options.inner_filter, DLT_EN10MB);
    auto raw = compile(options.inner_filter, DLT_RAW);
    if (!ethernet.ok() && !raw.ok()) {
      return InvalidArgument("inner " + ethernet.status().message());
    }
    if (ethernet.ok()) stage->inner_ethernet_ = std::move(ethernet.value());
    if (raw.ok()) stage->inner_raw_ = std::move(raw.value());
    stage->inner_filter_compiled_ethernet_ = ethernet.ok();
    stage->inner_filter_compiled_raw_ = raw.ok();
  }
  return stage;
}

MirrorStage::MirrorStage(const MirrorOptions& options, uint16_t outer_link_type,
                         std::string capture_interface, uint32_t first_index)
    : options_(options),
      selected_vnis_(options.vnis.begin(), options.vnis.end()),
      outer_link_type_(outer_link_type),
      capture_interface_(std::move(capture_interface)),
      first_index_(first_index) {}

bool MirrorStage::VniSelected(uint32_t vni) const {
  return selected_vnis_.empty() || selected_vnis_.count(vni) != 0;
}

InnerInterface* MirrorStage::FindOrAdd(const decap::Result& result, bool& added) {
  added = false;
  const auto found =
      by_session_.find(SessionKey(result.encapsulation, result.vni, result.inner_link_type));
  if (found != by_session_.end()) return found->second;
  if (options_.max_interfaces != 0 && interfaces_.size() >= options_.max_interfaces) return nullptr;
  auto i = std::make_unique<InnerInterface>();
  i->index = first_index_ + static_cast<uint32_t>(interfaces_.size());
  i->encapsulation = result.encapsulation;
  i->vni = result.vni;
  i->link_type = result.inner_link_type;
  i->name = std::string(decap::EncapsulationName(result.encapsulation)) + "-" +
            std::to_string(result.vni);
  // Only the same session with the other inner link type has the same name.
  const uint16_t other_link_type =
      result.inner_link_type == kLinktypeRaw ? kLinktypeEthernet : kLinktypeRaw;
  if (by_session_.count(SessionKey(result.encapsulation, result.vni, other_link_type)) != 0) {
    i->name += result.inner_link_type == kLinktypeRaw ? "-raw" : "-eth";
  }
  std::string kind = decap::EncapsulationName(result.encapsulation);
  std::transform(kind.begin(), kind.end(), kind.begin(), ::toupper);
  i->description = kind + " VNI " + std::to_string(result.vni) + " from " +
                   decap::OuterSourceText(result) + " captured on " + capture_interface_ +
                   (result.inner_link_type == kLinktypeRaw ? " (inner raw IP)" : "");
  added = true;
  by_session_.emplace(SessionKey(result.encapsulation, result.vni, result.inner_link_type),
                      i.get());
  interfaces_.push_back(std::move(i));
  return interfaces_.back().get();
}

Verdict MirrorStage::Process(const uint8_t* data, uint32_t captured_length,
                             uint32_t original_length, InnerPacket& out) {
  const decap::Result result =
      decap::Decapsulate(options_.decap, outer_link_type_, data, captured_length, original_length);
  ++outcomes_[static_cast<size_t>(result.outcome)];
  if (result.outcome != decap::Outcome::kDecapsulated) return Verdict::kDrop;
  if (!VniSelected(result.vni)) {
    ++selection_drops_[static_cast<size_t>(SelectionDrop::kVniNotSelected)];
    return Verdict::kDrop;
  }
  out.data = data + result.inner_offset;
  out.captured_length = result.inner_length;
  out.original_length = std::max(result.inner_original_length, out.captured_length);
  if (!options_.inner_filter.empty()) {
    const bool ethernet = result.inner_link_type == kLinktypeEthernet;
    const bool compiled = ethernet ? inner_filter_compiled_ethernet_ : inner_filter_compiled_raw_;
    const filters::CompiledFilter& filter = ethernet ? inner_ethernet_ : inner_raw_;
    if (!compiled || !filter.Matches(out.data, out.captured_length, out.original_length)) {
      ++selection_drops_[static_cast<size_t>(SelectionDrop::kInnerFilter)];
      return Verdict::kDrop;
    }
  }
  InnerInterface* interface = FindOrAdd(result, out.new_interface);
  if (interface == nullptr) {
    ++selection_drops_[static_cast<size_t>(SelectionDrop::kInterfaceLimit)];
    return Verdict::kDrop;
  }
  ++interface->packets;
  out.interface = interface;
  out.comment =
      std::string_view(comment_, decap::FormatAwsOptions(result.aws, comment_, sizeof comment_));
  return Verdict::kContinue;
}

std::map<std::string, uint64_t> MirrorStage::Counters() const {
  std::map<std::string, uint64_t> counters;
  for (size_t i = 0; i < outcomes_.size(); ++i) {
    if (outcomes_[i] != 0)
      counters[decap::OutcomeName(static_cast<decap::Outcome>(i))] = outcomes_[i];
  }
  for (size_t i = 0; i < selection_drops_.size(); ++i) {
    if (selection_drops_[i] != 0) {
      counters[SelectionDropName(static_cast<SelectionDrop>(i))] = selection_drops_[i];
    }
  }
  return counters;
}

}  // namespace capd::pipeline
