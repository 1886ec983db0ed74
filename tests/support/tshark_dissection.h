#pragma once
// Wireshark's dissection of a capture file, as an independent oracle for tunnel decapsulation.
//
// `tshark -T pdml` prints every protocol layer of every packet with its byte position and size in
// the frame (`<proto name="vxlan" ... size="8" pos="42">`). The inner frame of a tunnel packet, as
// Wireshark sees it, starts at the layer that follows the last vxlan/geneve layer and ends where
// the UDP datagram carrying that tunnel ends (the UDP dissector hands on only udp.length bytes).
// Positions are compared, not display text, so tshark's formats do not matter.
//
// Needs tshark (Wireshark 4.0 on Debian 12) in PATH.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace capd::test {

struct TsharkLayer {
  std::string name;  // "eth", "ip", "udp", "vxlan", "geneve", ...
  int64_t pos = -1;
  int64_t size = -1;
  int64_t udp_length = -1;  // udp.length, for udp layers
  int64_t vni = -1;         // vxlan.vni / geneve.vni, for tunnel layers
};
using TsharkPacket = std::vector<TsharkLayer>;  // the layers of one packet, outermost first

// Runs `tshark -n -r FILE EXTRA_ARGS... -T pdml`; one entry per packet. Fails when tshark fails
// (its stderr in the message).
StatusOr<std::vector<TsharkPacket>> TsharkDissect(const std::filesystem::path& file,
                                                  const std::vector<std::string>& extra_args = {});

// What Wireshark says the inner frame of one packet is.
struct TsharkInnerFrame {
  std::string tunnel;        // "vxlan" or "geneve" (the outermost tunnel layer)
  std::string inner_tunnel;  // the last tunnel layer ("vxlan" for VXLAN inside Geneve)
  int64_t vni = -1;          // of the last tunnel layer
  std::string first_layer;   // "eth", "ip", "ipv6", "nsh", ...
  uint32_t offset = 0;       // the inner frame is bytes [offset, end) of the packet
  uint32_t end = 0;
};
// nullopt when the packet has no tunnel layer followed by another layer.
std::optional<TsharkInnerFrame> TsharkInner(const TsharkPacket& packet);

// Whether tshark is installed (runs `tshark --version`).
bool HaveTshark();

}  // namespace capd::test
