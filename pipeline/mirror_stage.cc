#include "pipeline/mirror_stage.h"

#include <algorithm>

namespace capd::pipeline {
namespace {

constexpr uint16_t kLinktypeEthernet = 1;
constexpr uint16_t kLinktypeRaw = 101;

const char* SelectionDropName(SelectionDrop d) {
  return d == SelectionDrop::kVniNotSelected ? "vni_not_selected" : "inner_filter";
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
      outer_link_type_(outer_link_type),
      capture_interface_(std::move(capture_interface)),
      first_index_(first_index) {}

bool MirrorStage::VniSelected(uint32_t vni) const {
  return options_.vnis.empty() ||
         std::find(options_.vnis.begin(), options_.vnis.end(), vni) != options_.vnis.end();
}

InnerInterface* MirrorStage::FindOrAdd(const decap::Result& result, bool& added) {
  // Few interfaces (one per mirror session): a linear scan beats a map here.
  for (const auto& i : interfaces_) {
    if (i->vni == result.vni && i->encapsulation == result.encapsulation &&
        i->link_type == result.inner_link_type) {
      added = false;
      return i.get();
    }
  }
  auto i = std::make_unique<InnerInterface>();
  i->index = first_index_ + static_cast<uint32_t>(interfaces_.size());
  i->encapsulation = result.encapsulation;
  i->vni = result.vni;
  i->link_type = result.inner_link_type;
  i->name = std::string(decap::EncapsulationName(result.encapsulation)) + "-" +
            std::to_string(result.vni);
  for (const auto& other : interfaces_) {
    if (other->name == i->name) i->name += result.inner_link_type == kLinktypeRaw ? "-raw" : "-eth";
  }
  std::string kind = decap::EncapsulationName(result.encapsulation);
  std::transform(kind.begin(), kind.end(), kind.begin(), ::toupper);
  i->description = kind + " VNI " + std::to_string(result.vni) + " from " +
                   decap::OuterSourceText(result) + " captured on " + capture_interface_ +
                   (result.inner_link_type == kLinktypeRaw ? " (inner raw IP)" : "");
  added = true;
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
