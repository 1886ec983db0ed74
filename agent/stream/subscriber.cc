#include "agent/stream/subscriber.h"

namespace capd::agent {

void Subscriber::MarkJoined(const StatusOr<CaptureCounters>& counters, uint64_t captured,
                            const pipeline::MirrorStage* mirror) {
  if (counters.ok()) kernel_at_join = counters.value();
  captured_at_join = captured;
  if (mirror != nullptr) {
    outcomes_at_join = mirror->Counters();
    for (const auto& inner : mirror->interfaces())
      inner_packets_at_join[inner->index] = inner->packets;
  }
}

void Subscriber::FillStatistics(const StatusOr<CaptureCounters>& counters, uint64_t captured,
                                const pipeline::MirrorStage* mirror,
                                const CarrierSnapshot* carriers, uint64_t timestamp_ns,
                                v1::Statistics& s) const {
  s.set_timestamp_ns(timestamp_ns);
  v1::InterfaceStatistics* i = s.add_interfaces();
  i->set_interface_index(0);
  if (counters.ok()) {
    i->set_packets_received(counters.value().received - kernel_at_join.received);
    i->set_kernel_drops(counters.value().kernel_drops - kernel_at_join.kernel_drops);
    i->set_interface_drops(counters.value().interface_drops - kernel_at_join.interface_drops);
  }
  if (carriers != nullptr) {
    for (const CarrierConnection& c : carriers->connections) s.add_excluded_carriers(c.Describe());
  }
  i->set_packets_captured(captured - captured_at_join);
  i->set_agent_drops(agent_drops);
  i->set_packets_sent(sent);
  if (mirror == nullptr) return;
  for (const auto& [reason, count] : mirror->Counters()) {
    auto base = outcomes_at_join.find(reason);
    (*i->mutable_decap_outcomes())[reason] =
        count - (base == outcomes_at_join.end() ? 0 : base->second);
  }
  for (const auto& inner : mirror->interfaces()) {
    auto base = inner_packets_at_join.find(inner->index);
    const uint64_t packets =
        inner->packets - (base == inner_packets_at_join.end() ? 0 : base->second);
    v1::InterfaceStatistics* v = s.add_interfaces();
    v->set_interface_index(inner->index);
    v->set_packets_received(packets);
    v->set_packets_captured(packets);
  }
}

}  // namespace capd::agent
