// libFuzzer target for capd::decap::Decapsulate.
//
// Input: byte 0 chooses the outer link type and mode, byte 1 the ports and how much of the packet
// counts as captured; the rest is the packet. The packet is copied into a buffer of exactly the
// captured size so that AddressSanitizer catches any read past the captured bytes.
// Invariants checked on top of "no crash, no sanitizer report": a decapsulated inner frame lies
// inside the captured bytes, its original length is at least its captured length, the VNIs fit
// in 24 bits, and the text helpers stay inside their buffers.

#include <sys/socket.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "decap/decapsulator.h"

namespace {

using capd::decap::Config;
using capd::decap::Mode;
using capd::decap::Outcome;
using capd::decap::Result;

constexpr uint16_t kLinkTypes[] = {capd::decap::kLinkTypeEthernet, capd::decap::kLinkTypeRaw,
                                   capd::decap::kLinkTypeLinuxSll, capd::decap::kLinkTypeLinuxSll2,
                                   capd::decap::kDltRaw,           105 /* unsupported */};
constexpr Mode kModes[] = {Mode::kAuto, Mode::kVxlan, Mode::kGeneve};
constexpr uint16_t kVxlanPorts[] = {4789, 8472, 4790, 6081};

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size < 2) return 0;
  const uint8_t selector = input[0];
  const uint8_t lengths = input[1];
  const std::vector<uint8_t> packet(input + 2, input + size);

  const uint16_t link_type = kLinkTypes[(selector & 0x0f) % std::size(kLinkTypes)];
  Config config;
  config.mode = kModes[(selector >> 4 & 0x03) % std::size(kModes)];
  config.vxlan_port = kVxlanPorts[lengths & 0x03];
  if ((selector & 0x40) != 0) config.geneve_port = 0;

  // Original length: the packet as is, or claimed longer (snaplen cut), or shorter (bogus).
  const auto captured = static_cast<uint32_t>(packet.size());
  uint32_t original = captured;
  switch (lengths >> 2 & 0x03) {
    case 1:
      original = captured + 1 + (lengths >> 4) * 1000u;
      break;
    case 2:
      original = captured / 2;
      break;
    case 3:
      original = UINT32_MAX;
      break;
    default:
      break;
  }

  // An exact-size heap copy: reading one byte past it is an ASan report.
  uint8_t* data = captured == 0 ? nullptr : new uint8_t[captured];
  if (captured != 0) std::memcpy(data, packet.data(), captured);
  const Result result = capd::decap::Decapsulate(config, link_type, data, captured, original);

  Check(static_cast<uint8_t>(result.outcome) < static_cast<uint8_t>(Outcome::kCount));
  Check(capd::decap::OutcomeName(result.outcome) != nullptr);
  if (result.outcome == Outcome::kDecapsulated) {
    Check(result.inner_offset <= captured);
    Check(static_cast<uint64_t>(result.inner_offset) + result.inner_length <= captured);
    Check(result.inner_original_length >= result.inner_length);
    Check(result.vni <= 0xffffff && result.outer_vni <= 0xffffff);
    Check(result.inner_link_type == capd::decap::kLinkTypeEthernet ||
          result.inner_link_type == capd::decap::kLinkTypeRaw);
    Check(result.outer_source_family == AF_INET || result.outer_source_family == AF_INET6);
    // Touch every inner byte so ASan checks the range.
    uint8_t sum = 0;
    for (uint32_t i = 0; i < result.inner_length; ++i) sum ^= data[result.inner_offset + i];
    volatile uint8_t sink = sum;
    (void)sink;
    char text[capd::decap::kOuterSourceTextSize];
    Check(capd::decap::FormatOuterSource(result, text, sizeof(text)) > 0);
    char comment[capd::decap::kAwsOptionsTextSize];
    const size_t length = capd::decap::FormatAwsOptions(result.aws, comment, sizeof(comment));
    Check(length < sizeof(comment) && std::strlen(comment) == length);
  }
  delete[] data;
  return 0;
}
