#include "agent/stream/stream_request.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "agent/trigger/stream_trigger.h"
#include "common/utf8.h"

namespace capd::agent {

Status ValidateStreamRequest(const v1::StreamRequest& request) {
  // The text fields are `bytes` on the wire (capture.proto, "Text in requests"): checked here,
  // before anything reads them.
  if (!IsValidUtf8(request.interface())) return InvalidArgument("interface is not UTF-8");
  if (!IsValidUtf8(request.filter())) return InvalidArgument("filter is not UTF-8");
  if (!IsValidUtf8(request.decap().inner_filter())) {
    return InvalidArgument("decap.inner_filter is not UTF-8");
  }
  if (request.has_snaplen() && (request.snaplen() == 0 || request.snaplen() > kDefaultSnaplen)) {
    return InvalidArgument("snaplen " + std::to_string(request.snaplen()) +
                           " is out of range: 1..262144");
  }
  if (request.filter().size() > kMaxFilterBytes) {
    return InvalidArgument("filter is " + std::to_string(request.filter().size()) +
                           " bytes: at most 16 KiB");
  }
  if (request.decap().inner_filter().size() > kMaxFilterBytes) {
    return InvalidArgument("inner filter is over 16 KiB");
  }
  if (request.duration_ms() > kMaxDurationMs) {
    return InvalidArgument("duration " + std::to_string(request.duration_ms() / 1000) +
                           " s is over the limit of 30 days");
  }
  if (request.max_packets() > kMaxPackets) {
    return InvalidArgument("count " + std::to_string(request.max_packets()) + " is over 2^48");
  }
  const std::string& name = request.interface();
  const bool name_ok =
      name.size() < kInterfaceNameBytes && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
               c == ':' || c == '@';
      });
  if (!name_ok) {
    return InvalidArgument(
        "interface name is not valid: at most 15 characters of A-Z a-z 0-9 - _ . : @");
  }
  if (request.decap().vnis_size() > static_cast<int>(kMaxVnis)) {
    return InvalidArgument("at most " + std::to_string(kMaxVnis) + " VNIs can be selected");
  }
  for (uint32_t vni : request.decap().vnis()) {
    if (vni > 0xFFFFFF) return InvalidArgument("VNI " + std::to_string(vni) + " is not 24-bit");
  }
  CAPD_RETURN_IF_ERROR(
      trigger::ValidateTriggers(request, kMaxFilterBytes, kMaxDurationMs, kMaxPackets));
  return Status::Ok();
}

StatusOr<v1::StreamRequest> ApplyChange(const v1::StreamRequest& running,
                                        const v1::ChangeStreamRequest& change) {
  v1::StreamRequest request = running;
  const bool mirror = request.decap().mode() != v1::Decapsulation::NONE;
  if (!mirror && (change.has_vnis() || change.has_inner_filter())) {
    return InvalidArgument("VNIs and an inner filter apply only to a mirror-target stream");
  }
  request.set_filter(change.filter());
  if (change.has_vnis()) {
    request.mutable_decap()->mutable_vnis()->Assign(change.vnis().vnis().begin(),
                                                    change.vnis().vnis().end());
  }
  if (change.has_inner_filter()) request.mutable_decap()->set_inner_filter(change.inner_filter());
  CAPD_RETURN_IF_ERROR(ValidateStreamRequest(request));
  return request;
}

}  // namespace capd::agent
