// The peer helper's wire format (agent/peers/relay_protocol.h): the privileged helper decodes
// queries from capd, capd decodes answers and the ready message from the helper. Any bytes: the
// decoders must not crash or read out of bounds (AddressSanitizer), and whatever one accepts must
// be exactly the encoding of the value it returns, so that no two byte strings mean the same
// message and nothing is ignored. A crash input becomes a byte-array case in
// tests/unit/agent/relay_protocol_test.cc.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agent/peers/relay_protocol.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "relay_protocol_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace capd::agent;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (const auto query = DecodeQuery(bytes)) {
    Check(EncodeQuery(*query) == bytes, "an accepted query does not re-encode to its bytes");
    Check(query->peer.port != 0 && query->agent_port != 0, "a query with port 0 was accepted");
  }
  if (const auto answer = DecodeAnswer(bytes)) {
    Check(EncodeAnswer(*answer) == bytes, "an accepted answer does not re-encode to its bytes");
    Check(answer->connections.size() <= kMaxRelayConnections &&
              answer->connections.size() <= answer->total_connections &&
              answer->command.size() <= 16,
          "an accepted answer breaks its limits");
  }
  if (const auto ready = DecodeReady(bytes)) {
    Check(EncodeReady(*ready) == bytes,
          "an accepted ready message does not re-encode to its bytes");
  }
  // What capd shows of a process name: nothing a terminal would act on.
  for (const char c : EscapeProcessName(bytes)) {
    const auto byte = static_cast<unsigned char>(c);
    Check(byte >= 0x20 && byte < 0x7f, "EscapeProcessName left a control character");
  }
  return 0;
}
