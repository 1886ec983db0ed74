#pragma once
// capctl's command line: `capctl interfaces ...`, `capctl stream ...`, `capctl record ...` (the
// README's "capctl" section), parsed by CLI11 into the option structs below. The option groups
// (connection, decap, rotation) are declared once and shared by the subcommands that take them;
// sizes follow common/byte_size.h; `capctl SUBCOMMAND --help` is generated from the same
// declarations.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "capfile/capture_writer.h"
#include "client/cli/rotation_options.h"
#include "client/transport/agent_address.h"
#include "client/transport/fleet_selection.h"
#include "common/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace capd::client {

using capfile::FileFormat;

// How to reach an agent securely (capd --tls-cert/--tls-client-ca/--auth-token-file).
struct ConnectionOptions {
  std::string tls_ca_file;    // verify the agent's certificate with this CA; enables TLS
  std::string tls_cert_file;  // present this client certificate (mutual TLS); enables TLS
  std::string tls_key_file;
  std::string tls_server_name;   // the name in the agent's certificate, when it differs from the
                                 // address (e.g. through an ssh -L forward to 127.0.0.1)
  std::string token_file;        // send "authorization: Bearer <token>"
  uint16_t remote_port = 50051;  // ssh:// and ssm://: the agent's port on the instance's loopback
  bool tls() const { return !tls_ca_file.empty() || !tls_cert_file.empty(); }
};

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
  ConnectionOptions connection;
  std::string interface;     // -i, or the one agent's /IFACE (an --agent naming another
                             // interface than -i is an error); empty: the agent's default
  std::string filter;        // -f, or the words after the options (as tcpdump takes them)
  uint64_t count = 0;        // -c; 0: no limit
  uint64_t duration_ms = 0;  // --duration SEC (decimals allowed)
  uint32_t snaplen = 0;      // -s; 0: the agent's default (262144)
  bool promiscuous = true;   // -p turns it off, as in tcpdump
  std::string write_path;    // -w FILE, or "-" for stdout
  std::string fifo_path;     // --fifo PATH
  bool wireshark = false;    // --wireshark: a private FIFO read by a Wireshark capctl starts
  FileFormat format = FileFormat::kPcapng;
  DecapOptions decap;
  // Set when --rotate-size/--rotate-seconds/--rotate-files/--post-rotate/--min-free is given:
  // write_path becomes a ring of pcapng files (rotation->path == write_path, never "-").
  std::optional<RotationOptions> rotation;
  // Set when --upload is given without rotation: -w FILE is uploaded once complete, at the end
  // (its path, the upload and the --handoff-* settings; no rotation).
  std::optional<RotationOptions> single_file_handoff;
  // --compress / --no-compress: ask the agents for compressed batches; unset: CompressionFor.
  std::optional<bool> compress;
  // --tls-keylog PATH (stream only, pcapng only): StreamRequest.tls_keylog; its lines become
  // Decryption Secrets Blocks.
  std::string tls_keylog;
  // --max-agents: ssm://tag: and ssm://asg: selections open at most this many instances in all.
  size_t max_agents = kDefaultMaxAgents;
  // --start-on FILTER [--before SEC], --stop-on FILTER [--after SEC | --after-count N] (stream
  // only): StreamRequest start_on, before_ms, stop_on, after_ms, after_count.
  std::string start_on;
  uint32_t before_ms = 10'000;
  std::string stop_on;
  uint32_t after_ms = 0;
  uint64_t after_count = 0;
  // --since WHEN (stream only): StreamRequest.since_ns, Unix epoch ns; 0: live only.
  uint64_t since_ns = 0;
};

// --since's grammar: a time back from `now_ns` ("5m", "90s", "1.5h", "2d"), an RFC 3339 time
// ("2026-12-07T10:00:00Z", "2026-12-07T10:00:00.250+01:00"), or nanoseconds since the Unix epoch
// (digits only, at least 19 of them). kInvalidArgument with the grammar otherwise.
StatusOr<uint64_t> ParseSince(const std::string& text, uint64_t now_ns);

// Whether to ask `agent` for compressed batches: as --compress/--no-compress say, else on through
// a tunnel (ssh://, ssm://: a few MB/s, where compression delivers more packets) and off for a
// direct address (loopback or a LAN, where it would cost CPU for nothing).
bool CompressionFor(const StreamOptions& options, const AgentAddress& agent);

// `capctl record start|stop|list|fetch|delete`: recordings kept by the agent (capd --record-dir).
struct RecordOptions {
  enum class Action { kStart, kStop, kList, kFetch, kDelete };
  Action action = Action::kList;
  AgentAddress agent;
  ConnectionOptions connection;
  std::string name;             // start: --name; stop and fetch: the argument
  std::string interface;        // start: -i; empty: the agent's default-route interface
  std::string filter;           // start: -f
  DecapOptions decap;           // start: --decap ...
  uint64_t rotate_bytes = 0;    // start: --rotate-size (0: the agent's default)
  uint32_t rotate_seconds = 0;  // start: --rotate-seconds
  uint32_t rotate_files = 0;    // start: --rotate-files
  // start: --start-on FILTER [--before SEC], --stop-on FILTER [--after SEC | --after-count N]:
  // StartRecordingRequest fields 8-12, as StreamOptions' triggers.
  std::string start_on;
  uint32_t before_ms = 10'000;
  std::string stop_on;
  uint32_t after_ms = 0;
  uint64_t after_count = 0;
  std::string out_dir = ".";  // fetch: --out DIR
  std::string upload;         // start: --upload s3://BUCKET[/PREFIX] (capd-upload sends files)
};

// `capctl serve`: the stream of `capctl stream` (the same flags, without an output), served as
// PCAP-over-IP to every TCP client that connects.
struct ServeOptions {
  StreamOptions stream;                    // pcap unless --format; no -w, --fifo, --wireshark
  std::string listen = "127.0.0.1:57012";  // --listen HOST:PORT (port 0: any free port)
  size_t client_queue_bytes = 4 << 20;     // --client-queue BYTES: per client, then drops
};

// `capctl paths FILE|-`: the path report of a capture (client/paths/paths_command.h).
struct PathsOptions {
  std::string input;           // a pcapng or pcap file, or "-" for stdin
  bool json = false;           // --json: JSON lines, one object per flow
  double grace_seconds = 1.0;  // --grace SEC: packets this close to the end may be in flight
  size_t max_flows = 100000;   // --max-flows N: flows tracked, then only counted
};

struct InterfacesOptions {
  AgentAddress agent;  // or a selection of instances (ssm://tag:, ssm://asg:), each listed
  ConnectionOptions connection;
  size_t max_agents = kDefaultMaxAgents;  // --max-agents, as for stream
};

struct CommandLine {
  enum class Command { kHelp, kVersion, kInterfaces, kStream, kDecapFile, kRecord, kServe, kPaths };
  Command command = Command::kHelp;
  std::string help;  // kHelp: the text to print (`capctl --help`, `capctl stream --help`, ...)
  StreamOptions stream;
  DecapFileOptions decap_file;
  InterfacesOptions interfaces;
  RecordOptions record;
  ServeOptions serve;
  PathsOptions paths;
};

// kInvalidArgument with a one-line message for anything wrong, ending with where the help is
// ("...; see `capctl stream --help`"); the caller prints it and exits 2. --help anywhere gives
// kHelp with that subcommand's help.
StatusOr<CommandLine> ParseCommandLine(int argc, char** argv);

// For another CLI11 parser of the same settings (the Wireshark extcap's): the connection and
// decap option groups as the subcommands declare them (--decap also takes "none" there), and
// the checks that complete stream options once their fields are set.
void AddConnectionOptions(CLI::App& app, ConnectionOptions& out);
void AddDecapOptions(CLI::App& app, DecapOptions& out);
// Fills out.agents from `agent_texts` (none: $CAPD_AGENT, else kDefaultAgent), takes the one
// agent's /IFACE as the interface, and refuses what `capctl stream` refuses: an -i naming
// another interface than an --agent HOST/IFACE, --vni without --decap, --tls-cert without
// --tls-key. kInvalidArgument with one line.
Status CompleteStreamOptions(const std::vector<std::string>& agent_texts, StreamOptions& out);
// Which of the trigger modifiers were given: --before, --after, --after-count.
struct TriggerModifiers {
  bool before = false;
  bool after = false;
  bool after_count = false;
};
// The checks of the trigger flags together, as `capctl stream` and `record start` make them:
// "--before needs --start-on" and the like. Ok when they fit; kInvalidArgument with one line.
Status CheckTriggers(const TriggerModifiers& given, const std::string& start_on,
                     const std::string& stop_on, const DecapOptions& decap);

}  // namespace capd::client
