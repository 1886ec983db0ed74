#pragma once
// capctl's command line: `capctl interfaces ...` and `capctl stream ...` (see DESIGN.md).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/cli/agent_address.h"
#include "client/output/capture_writer.h"
#include "common/status.h"

namespace capd::client {

struct StreamOptions {
  std::vector<AgentAddress> agents;
  std::string interface;     // -i; overrides the agent address's /IFACE
  std::string filter;        // -f, or the words after the options (as tcpdump takes them)
  uint64_t count = 0;        // -c; 0: no limit
  uint64_t duration_ms = 0;  // --duration SEC (decimals allowed)
  uint32_t snaplen = 0;      // -s; 0: the agent's default (262144)
  bool promiscuous = true;   // -p turns it off, as in tcpdump
  std::string write_path;    // -w FILE, or "-" for stdout
  std::string fifo_path;     // --fifo PATH
  FileFormat format = FileFormat::kPcapng;
};

struct InterfacesOptions {
  AgentAddress agent;
};

struct CommandLine {
  enum class Command { kHelp, kVersion, kInterfaces, kStream };
  Command command = Command::kHelp;
  StreamOptions stream;
  InterfacesOptions interfaces;
};

// kInvalidArgument with a one-line message for anything wrong; the caller exits 2.
StatusOr<CommandLine> ParseCommandLine(int argc, char** argv);

extern const char kUsage[];

}  // namespace capd::client
