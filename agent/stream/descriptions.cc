#include "agent/stream/descriptions.h"

#include "agent/capture/interfaces.h"
#include "decap/decapsulator.h"

namespace capd::agent {

v1::StreamResponse CaptureInterfaceDescription(const CaptureSource& capture,
                                               const AgentIdentity& identity,
                                               const std::string& filter, bool mirror_mode,
                                               uint64_t capture_start_ns) {
  v1::StreamResponse message;
  v1::InterfaceDescription* d = message.mutable_interface();
  d->set_index(0);
  d->set_name(capture.interface());
  // Appended piece by piece: at -O3, GCC 12 warns (-Wrestrict, a known false positive) about an
  // inlined `" " + std::string`.
  std::string description = capture.interface() + " on capd agent " + identity.name;
  if (identity.metadata) {
    description += ' ';
    description += identity.metadata->Describe(InterfaceMac(capture.interface()));
  }
  if (mirror_mode) description += " (tunnel packets; inner frames on the decap interfaces)";
  d->set_description(std::move(description));
  d->set_link_type(capture.linktype());
  d->set_snaplen(static_cast<uint32_t>(capture.snaplen()));
  d->set_filter(filter);
  d->set_agent_name(identity.name);
  d->set_os(identity.os);
  d->set_capture_start_ns(capture_start_ns);
  return message;
}

v1::StreamResponse InnerInterfaceDescription(const pipeline::InnerInterface& inner,
                                             const AgentIdentity& identity, int snaplen,
                                             const std::string& inner_filter,
                                             uint64_t capture_start_ns) {
  v1::StreamResponse message;
  v1::InterfaceDescription* d = message.mutable_interface();
  d->set_index(inner.index);
  d->set_name(inner.name);
  d->set_description(inner.description + " (capd agent " + identity.name + ")");
  d->set_link_type(inner.link_type);
  d->set_snaplen(static_cast<uint32_t>(snaplen));
  d->set_filter(inner_filter);
  d->set_agent_name(identity.name);
  d->set_os(identity.os);
  d->set_capture_start_ns(capture_start_ns);
  d->set_encapsulation(decap::EncapsulationName(inner.encapsulation));
  d->set_vni(inner.vni);
  d->set_capture_interface_index(0);
  return message;
}

}  // namespace capd::agent
