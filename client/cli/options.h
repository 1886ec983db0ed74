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

// Mirror-target mode (--decap), shared by `stream` and the offline `decap` command.
struct DecapOptions {
  enum class Mode { kNone, kVxlan, kGeneve, kAuto };
  Mode mode = Mode::kNone;
  uint16_t vxlan_port = 4789;
  uint16_t geneve_port = 6081;
  std::vector<uint32_t> vnis;  // empty: all
  std::string inner_filter;
};

// `capctl decap IN -w OUT`: the same decapsulation on a capture file someone already has.
struct DecapFileOptions {
  std::string input;
  std::string write_path;  // "-" for stdout
  DecapOptions decap;      // mode defaults to auto here
  FileFormat format = FileFormat::kPcapng;
};

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
  DecapOptions decap;
};

struct InterfacesOptions {
  AgentAddress agent;
};

struct CommandLine {
  enum class Command { kHelp, kVersion, kInterfaces, kStream, kDecapFile };
  Command command = Command::kHelp;
  StreamOptions stream;
  DecapFileOptions decap_file;
  InterfacesOptions interfaces;
};

// kInvalidArgument with a one-line message for anything wrong; the caller exits 2.
StatusOr<CommandLine> ParseCommandLine(int argc, char** argv);

extern const char kUsage[];

}  // namespace capd::client
