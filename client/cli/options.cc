#include "client/cli/options.h"

#include <getopt.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace capd::client {

const char kUsage[] =
    "usage: capctl interfaces [--agent A] [connection options]\n"
    "       capctl stream [--agent A] [connection options] [-i IFACE] [-f FILTER] [-c COUNT] "
    "[--duration SEC]\n"
    "                     [-s SNAPLEN] [-p] [-w FILE|-] [--fifo PATH] [--format pcapng|pcap]\n"
    "                     [--decap vxlan|geneve|auto] [--vxlan-port N] [--geneve-port N]\n"
    "                     [--vni N[,N...]] [--inner-filter FILTER] [FILTER WORDS...]\n"
    "       capctl decap IN.pcap[ng] -w OUT|- [--decap vxlan|geneve|auto] [--vxlan-port N]\n"
    "                     [--geneve-port N] [--vni N[,N...]] [--inner-filter FILTER]\n"
    "       capctl serve [--listen HOST:PORT] [--client-queue BYTES] [stream options without\n"
    "                     -w/--fifo/--format]: PCAP-over-IP (Wireshark -i TCP@HOST:PORT)\n"
    "       capctl extcap install [--dir DIR] [--copy]: make capctl a Wireshark extcap\n"
    "       capctl stream ... -w PATH [--rotate-size SIZE] [--rotate-seconds SEC]\n"
    "                     [--rotate-files N] [--post-rotate CMD] [--min-free SIZE]\n"
    "       capctl record start --name NAME [-i IFACE] [-f FILTER] [--decap ...]\n"
    "                     [--rotate-size SIZE] [--rotate-seconds SEC] [--rotate-files N]\n"
    "       capctl record stop NAME | record list | record fetch NAME [--out DIR]\n"
    "  --agent A       HOST:PORT[/IFACE], ssh://[user@]host[:port][/IFACE] or\n"
    "                  ssm://i-xxxx[/IFACE] (default $CAPD_AGENT or 127.0.0.1:50051)\n"
    "  -i IFACE        interface to capture on (default: the agent's default-route interface)\n"
    "  -f FILTER       capture filter in BPF syntax, as for tcpdump\n"
    "  -c COUNT        stop after COUNT packets\n"
    "  --duration SEC  stop after SEC seconds\n"
    "  -s SNAPLEN      bytes kept per packet (1..262144; 0 = 262144)\n"
    "  -p              do not put the interface into promiscuous mode\n"
    "  -w FILE|-       write to FILE, or to stdout with '-' (e.g. | wireshark -k -i -)\n"
    "  --fifo PATH     create the FIFO PATH if needed and write to it (Wireshark: -k -i PATH)\n"
    "  --wireshark     start Wireshark ($WIRESHARK or wireshark) on a private FIFO\n"
    "  --format F      pcapng (default) or pcap (nanosecond timestamps)\n"
    "  --decap MODE    mirror target: strip VXLAN (UDP 4789), Geneve (UDP 6081) or both; the\n"
    "                  output has one interface per VNI; -f then filters the outer packets\n"
    "  --vni LIST      keep only these VNIs (mirror sessions)\n"
    "  --inner-filter F  BPF filter on the decapsulated frames\n"
    "  --rotate-size SIZE  start a new file before one would exceed SIZE bytes (k, M, G:\n"
    "                  powers of 1000); files are PATH_NNNNN_YYYYmmddHHMMSS.pcapng\n"
    "  --rotate-seconds SEC  start a new file every SEC seconds since midnight UTC\n"
    "  --rotate-files N  keep only the newest N files\n"
    "  --post-rotate CMD run CMD FILE for each finished file (e.g. an upload)\n"
    "  --min-free SIZE delete the oldest file when the disk has less than SIZE free; stop\n"
    "                  writing when none is left\n"
    "  --tls-ca F      verify the agent's TLS certificate with this CA (enables TLS)\n"
    "  --tls-cert F --tls-key F  client certificate for mutual TLS\n"
    "  --tls-server-name N  the name in the agent's certificate, if not the address\n"
    "  --token-file F  send the bearer token in F (capd --auth-token-file)\n"
    "  --remote-port N ssh:// and ssm://: the agent's port on the instance (default 50051)\n"
    "exit status: 0 done, 2 bad arguments or a request the agent refused, 1 anything else\n";

namespace {

Status Bad(const std::string& message) { return InvalidArgument(message); }

template <typename T>
bool ParseUnsigned(const char* text, T& out) {
  const char* end = text + std::strlen(text);
  auto [ptr, error] = std::from_chars(text, end, out);
  return error == std::errc() && ptr == end && end != text;
}

StatusOr<AgentAddress> DefaultAgent() {
  const char* env = std::getenv("CAPD_AGENT");
  return ParseAgentAddress(env != nullptr && *env != '\0' ? env : kDefaultAgent);
}

enum DecapFlag { kDecap = 2000, kVxlanPort, kGenevePort, kVni, kInnerFilter };
#define CAPD_DECAP_LONG_OPTIONS                                 \
  {"decap", required_argument, nullptr, kDecap},                \
      {"vxlan-port", required_argument, nullptr, kVxlanPort},   \
      {"geneve-port", required_argument, nullptr, kGenevePort}, \
      {"vni", required_argument, nullptr, kVni}, {              \
    "inner-filter", required_argument, nullptr, kInnerFilter    \
  }

Status ParsePort(const char* flag, const char* text, uint16_t& out) {
  uint32_t port = 0;
  if (!ParseUnsigned(text, port) || port == 0 || port > 65535) {
    return Bad(std::string(flag) + " takes a UDP port 1..65535, not '" + text + "'");
  }
  out = static_cast<uint16_t>(port);
  return Status::Ok();
}

// Handles one of the --decap family of flags; false if `c` is not one of them.
bool ParseDecapFlag(int c, const char* arg, DecapOptions& out, Status& status) {
  switch (c) {
    case kDecap:
      if (std::strcmp(arg, "vxlan") == 0) {
        out.mode = DecapOptions::Mode::kVxlan;
      } else if (std::strcmp(arg, "geneve") == 0) {
        out.mode = DecapOptions::Mode::kGeneve;
      } else if (std::strcmp(arg, "auto") == 0) {
        out.mode = DecapOptions::Mode::kAuto;
      } else {
        status = Bad(std::string("--decap takes vxlan, geneve or auto, not '") + arg + "'");
      }
      return true;
    case kVxlanPort:
      status = ParsePort("--vxlan-port", arg, out.vxlan_port);
      return true;
    case kGenevePort:
      status = ParsePort("--geneve-port", arg, out.geneve_port);
      return true;
    case kVni: {
      std::string list = arg;
      size_t start = 0;
      while (start <= list.size()) {
        const size_t comma = std::min(list.find(',', start), list.size());
        const std::string item = list.substr(start, comma - start);
        uint32_t vni = 0;
        if (!ParseUnsigned(item.c_str(), vni) || vni > 0xFFFFFF) {
          status = Bad("--vni takes VNIs 0..16777215 separated by commas, not '" + item + "'");
          return true;
        }
        out.vnis.push_back(vni);
        start = comma + 1;
      }
      return true;
    }
    case kInnerFilter:
      out.inner_filter = arg;
      return true;
    default:
      return false;
  }
}

enum RotationFlag { kRotateSize = 4000, kRotateSeconds, kRotateFiles, kPostRotate, kMinFree };
#define CAPD_ROTATION_LONG_OPTIONS                                    \
  {"rotate-size", required_argument, nullptr, kRotateSize},           \
      {"rotate-seconds", required_argument, nullptr, kRotateSeconds}, \
      {"rotate-files", required_argument, nullptr, kRotateFiles}, {   \
    "post-rotate", required_argument, nullptr, kPostRotate            \
  }

// Handles one of the rotation flags; false if `c` is not one of them.
bool ParseRotationFlag(int c, const char* arg, RotationOptions& out, Status& status) {
  switch (c) {
    case kRotateSize:
    case kMinFree: {
      auto size = capfile::ParseByteSize(arg);
      const char* flag = c == kRotateSize ? "--rotate-size" : "--min-free";
      if (!size.ok() || size.value() == 0) {
        status = Bad(std::string(flag) + " takes a size in bytes with an optional k, M or G " +
                     "(powers of 1000), not '" + arg + "'");
      } else {
        (c == kRotateSize ? out.max_bytes : out.min_free_bytes) = size.value();
      }
      return true;
    }
    case kRotateSeconds:
      if (!ParseUnsigned(arg, out.seconds) || out.seconds == 0 || out.seconds > 86400) {
        status = Bad(std::string("--rotate-seconds takes 1..86400 seconds, not '") + arg + "'");
      }
      return true;
    case kRotateFiles:
      if (!ParseUnsigned(arg, out.max_files) || out.max_files == 0) {
        status =
            Bad(std::string("--rotate-files takes a positive number of files, not '") + arg + "'");
      }
      return true;
    case kPostRotate:
      if (*arg == '\0') status = Bad("--post-rotate takes a command");
      out.post_rotate_command = arg;
      return true;
    default:
      return false;
  }
}

enum ConnectionFlag { kTlsCa = 3000, kTlsCert, kTlsKey, kTlsServerName, kTokenFile, kRemotePort };
#define CAPD_CONNECTION_LONG_OPTIONS                                   \
  {"tls-ca", required_argument, nullptr, kTlsCa},                      \
      {"tls-cert", required_argument, nullptr, kTlsCert},              \
      {"tls-key", required_argument, nullptr, kTlsKey},                \
      {"tls-server-name", required_argument, nullptr, kTlsServerName}, \
      {"remote-port", required_argument, nullptr, kRemotePort}, {      \
    "token-file", required_argument, nullptr, kTokenFile               \
  }

// Handles one of the connection flags; false if `c` is not one of them.
bool ParseConnectionFlag(int c, const char* arg, ConnectionOptions& out, Status& status) {
  switch (c) {
    case kRemotePort:
      status = ParsePort("--remote-port", arg, out.remote_port);
      return true;
    case kTlsCa:
      out.tls_ca_file = arg;
      return true;
    case kTlsCert:
      out.tls_cert_file = arg;
      return true;
    case kTlsKey:
      out.tls_key_file = arg;
      return true;
    case kTlsServerName:
      out.tls_server_name = arg;
      return true;
    case kTokenFile:
      out.token_file = arg;
      return true;
    default:
      return false;
  }
}

Status CheckConnection(const ConnectionOptions& c) {
  if (c.tls_cert_file.empty() != c.tls_key_file.empty()) {
    return Bad("--tls-cert and --tls-key go together");
  }
  return Status::Ok();
}

// --vni and --inner-filter mean nothing without decapsulation: say so rather than ignore them.
Status CheckDecap(const DecapOptions& decap) {
  if (decap.mode == DecapOptions::Mode::kNone &&
      (!decap.vnis.empty() || !decap.inner_filter.empty())) {
    return Bad(
        "--vni and --inner-filter select decapsulated frames: add --decap vxlan|geneve|auto");
  }
  return Status::Ok();
}

// `serve` takes the same flags plus its own (nullptr for `stream`).
Status ParseStream(int argc, char** argv, StreamOptions& out, ServeOptions* serve = nullptr) {
  enum { kAgent = 1000, kDuration, kFifo, kFormat, kWireshark, kListen, kClientQueue };
  static const option kOptions[] = {{"agent", required_argument, nullptr, kAgent},
                                    {"interface", required_argument, nullptr, 'i'},
                                    {"filter", required_argument, nullptr, 'f'},
                                    {"count", required_argument, nullptr, 'c'},
                                    {"duration", required_argument, nullptr, kDuration},
                                    {"snaplen", required_argument, nullptr, 's'},
                                    {"no-promiscuous-mode", no_argument, nullptr, 'p'},
                                    {"write", required_argument, nullptr, 'w'},
                                    {"fifo", required_argument, nullptr, kFifo},
                                    {"wireshark", no_argument, nullptr, kWireshark},
                                    {"format", required_argument, nullptr, kFormat},
                                    {"listen", required_argument, nullptr, kListen},
                                    {"client-queue", required_argument, nullptr, kClientQueue},
                                    CAPD_DECAP_LONG_OPTIONS,
                                    CAPD_CONNECTION_LONG_OPTIONS,
                                    CAPD_ROTATION_LONG_OPTIONS,
                                    {"min-free", required_argument, nullptr, kMinFree},
                                    {nullptr, 0, nullptr, 0}};
  bool filter_given = false;
  RotationOptions rotation;
  bool rotating = false;
  int c;
  // '+': stop at the first non-option, so filter words like "not port 22" stay together.
  while ((c = getopt_long(argc, argv, "+i:f:c:s:pw:", kOptions, nullptr)) != -1) {
    switch (c) {
      case kAgent: {
        auto agent = ParseAgentAddress(optarg);
        if (!agent.ok()) return agent.status();
        out.agents.push_back(std::move(agent.value()));
        break;
      }
      case 'i':
        out.interface = optarg;
        break;
      case 'f':
        out.filter = optarg;
        filter_given = true;
        break;
      case 'c':
        if (!ParseUnsigned(optarg, out.count) || out.count == 0) {
          return Bad(std::string("-c takes a positive packet count, not '") + optarg + "'");
        }
        break;
      case kDuration: {
        char* end = nullptr;
        const double seconds = std::strtod(optarg, &end);
        if (end == optarg || *end != '\0' || !(seconds > 0) || seconds > 1e9) {
          return Bad(std::string("--duration takes a positive number of seconds, not '") + optarg +
                     "'");
        }
        out.duration_ms = static_cast<uint64_t>(std::ceil(seconds * 1000));
        break;
      }
      case 's':
        if (!ParseUnsigned(optarg, out.snaplen) || out.snaplen > 262144) {
          return Bad(std::string("-s takes a snaplen of 1..262144 (0 = 262144), not '") + optarg +
                     "'");
        }
        break;
      case 'p':
        out.promiscuous = false;
        break;
      case 'w':
        out.write_path = optarg;
        break;
      case kFifo:
        out.fifo_path = optarg;
        break;
      case kWireshark:
        out.wireshark = true;
        break;
      case kListen:
        if (serve == nullptr) return Bad("--listen is an option of capctl serve");
        serve->listen = optarg;
        break;
      case kClientQueue:
        if (serve == nullptr) return Bad("--client-queue is an option of capctl serve");
        if (!ParseUnsigned(optarg, serve->client_queue_bytes) ||
            serve->client_queue_bytes < 65536) {
          return Bad(std::string("--client-queue takes a number of bytes >= 65536, not '") +
                     optarg + "'");
        }
        break;
      case kFormat:
        if (serve != nullptr) {
          return Bad("serve always sends pcap with nanosecond timestamps: drop --format");
        }
        if (std::strcmp(optarg, "pcapng") == 0) {
          out.format = FileFormat::kPcapng;
        } else if (std::strcmp(optarg, "pcap") == 0) {
          out.format = FileFormat::kPcap;
        } else {
          return Bad(std::string("--format takes pcapng or pcap, not '") + optarg + "'");
        }
        break;
      default: {
        Status decap_status;
        if (ParseDecapFlag(c, optarg, out.decap, decap_status)) {
          CAPD_RETURN_IF_ERROR(decap_status);
          break;
        }
        if (ParseConnectionFlag(c, optarg, out.connection, decap_status)) {
          CAPD_RETURN_IF_ERROR(decap_status);
          break;
        }
        if (ParseRotationFlag(c, optarg, rotation, decap_status)) {
          CAPD_RETURN_IF_ERROR(decap_status);
          rotating = true;
          break;
        }
        return Bad(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
      }
    }
  }
  if (rotating) {
    // A ring is files in a folder: stdout, a FIFO and Wireshark have nowhere to rotate to.
    if (out.write_path.empty() || out.write_path == "-" || !out.fifo_path.empty() ||
        out.wireshark) {
      return Bad(
          "--rotate-size, --rotate-seconds, --rotate-files, --post-rotate and --min-free need "
          "-w PATH (a file, not - or --fifo)");
    }
    if (out.format != FileFormat::kPcapng) return Bad("rotating files are pcapng only");
    rotation.path = out.write_path;
    out.rotation = std::move(rotation);
  }
  CAPD_RETURN_IF_ERROR(CheckDecap(out.decap));
  CAPD_RETURN_IF_ERROR(CheckConnection(out.connection));
  if (optind < argc) {
    if (filter_given) return Bad("give the filter either with -f or as words, not both");
    for (int i = optind; i < argc; ++i) {
      if (!out.filter.empty()) out.filter += ' ';
      out.filter += argv[i];
    }
  }
  if ((!out.write_path.empty()) + (!out.fifo_path.empty()) + out.wireshark > 1) {
    return Bad("-w, --fifo and --wireshark are alternatives: give one");
  }
  if (out.agents.empty()) {
    auto agent = DefaultAgent();
    if (!agent.ok()) return agent.status();
    out.agents.push_back(std::move(agent.value()));
  }
  // With one agent its /IFACE is the interface; with several, each agent keeps its own.
  if (out.interface.empty() && out.agents.size() == 1) out.interface = out.agents[0].interface;
  return Status::Ok();
}

Status ParseServe(int argc, char** argv, ServeOptions& out) {
  CAPD_RETURN_IF_ERROR(ParseStream(argc, argv, out.stream, &out));
  if (!out.stream.write_path.empty() || !out.stream.fifo_path.empty() || out.stream.wireshark) {
    return Bad(
        "serve sends the capture to its TCP clients: -w, --fifo and --wireshark do not apply");
  }
  out.stream.format = FileFormat::kPcap;
  return Status::Ok();
}

Status ParseDecapFile(int argc, char** argv, DecapFileOptions& out) {
  enum { kFormat = 1000 };
  static const option kOptions[] = {{"write", required_argument, nullptr, 'w'},
                                    {"format", required_argument, nullptr, kFormat},
                                    CAPD_DECAP_LONG_OPTIONS,
                                    {nullptr, 0, nullptr, 0}};
  out.decap.mode = DecapOptions::Mode::kAuto;
  int c;
  while ((c = getopt_long(argc, argv, "w:", kOptions, nullptr)) != -1) {
    Status status;
    if (c == 'w') {
      out.write_path = optarg;
    } else if (c == kFormat && std::strcmp(optarg, "pcapng") == 0) {
      out.format = FileFormat::kPcapng;
    } else if (c == kFormat && std::strcmp(optarg, "pcap") == 0) {
      out.format = FileFormat::kPcap;
    } else if (c == kFormat) {
      return Bad(std::string("--format takes pcapng or pcap, not '") + optarg + "'");
    } else if (ParseDecapFlag(c, optarg, out.decap, status)) {
      CAPD_RETURN_IF_ERROR(status);
    } else {
      return Bad(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
  }
  if (optind != argc - 1) return Bad("decap takes one input file: capctl decap IN.pcap -w OUT");
  out.input = argv[optind];
  if (out.write_path.empty()) return Bad("decap needs -w OUT (or -w - for stdout)");
  return Status::Ok();
}

Status ParseInterfaces(int argc, char** argv, InterfacesOptions& out) {
  static const option kOptions[] = {{"agent", required_argument, nullptr, 'a'},
                                    CAPD_CONNECTION_LONG_OPTIONS,
                                    {nullptr, 0, nullptr, 0}};
  bool given = false;
  int c;
  while ((c = getopt_long(argc, argv, "+", kOptions, nullptr)) != -1) {
    Status status;
    if (ParseConnectionFlag(c, optarg, out.connection, status)) {
      CAPD_RETURN_IF_ERROR(status);
      continue;
    }
    if (c != 'a') {
      return Bad(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
    auto agent = ParseAgentAddress(optarg);
    if (!agent.ok()) return agent.status();
    out.agent = std::move(agent.value());
    given = true;
  }
  if (optind < argc) return Bad(std::string("unexpected argument '") + argv[optind] + "'");
  CAPD_RETURN_IF_ERROR(CheckConnection(out.connection));
  if (!given) {
    auto agent = DefaultAgent();
    if (!agent.ok()) return agent.status();
    out.agent = std::move(agent.value());
  }
  return Status::Ok();
}

// capctl record start|stop|list|fetch ...; argv[0] is "record".
Status ParseRecord(int argc, char** argv, RecordOptions& out) {
  if (argc < 2) return Bad("record takes start, stop, list or fetch");
  const std::string action = argv[1];
  if (action == "start") {
    out.action = RecordOptions::Action::kStart;
  } else if (action == "stop") {
    out.action = RecordOptions::Action::kStop;
  } else if (action == "list") {
    out.action = RecordOptions::Action::kList;
  } else if (action == "fetch") {
    out.action = RecordOptions::Action::kFetch;
  } else {
    return Bad("record takes start, stop, list or fetch, not '" + action + "'");
  }
  enum { kAgent = 1000, kName, kOut };
  static const option kOptions[] = {{"agent", required_argument, nullptr, kAgent},
                                    {"name", required_argument, nullptr, kName},
                                    {"out", required_argument, nullptr, kOut},
                                    {"interface", required_argument, nullptr, 'i'},
                                    {"filter", required_argument, nullptr, 'f'},
                                    CAPD_DECAP_LONG_OPTIONS,
                                    CAPD_CONNECTION_LONG_OPTIONS,
                                    CAPD_ROTATION_LONG_OPTIONS,
                                    {nullptr, 0, nullptr, 0}};
  const bool start = out.action == RecordOptions::Action::kStart;
  bool agent_given = false;
  RotationOptions rotation;
  // Parse argv[1..] as if the action were the program name. 0, not 1: glibc then resets its
  // permutation state, which lets options come after NAME (record fetch NAME --out DIR).
  optind = 0;
  int c;
  while ((c = getopt_long(argc - 1, argv + 1, "i:f:", kOptions, nullptr)) != -1) {
    Status status;
    if (c == kAgent) {
      auto agent = ParseAgentAddress(optarg);
      if (!agent.ok()) return agent.status();
      out.agent = std::move(agent.value());
      agent_given = true;
    } else if (ParseConnectionFlag(c, optarg, out.connection, status)) {
      CAPD_RETURN_IF_ERROR(status);
    } else if (c == kName) {
      out.name = optarg;
    } else if (c == kOut && out.action == RecordOptions::Action::kFetch) {
      out.out_dir = optarg;
    } else if (start && c == 'i') {
      out.interface = optarg;
    } else if (start && c == 'f') {
      out.filter = optarg;
    } else if (start && ParseDecapFlag(c, optarg, out.decap, status)) {
      CAPD_RETURN_IF_ERROR(status);
    } else if (start && c != kPostRotate && ParseRotationFlag(c, optarg, rotation, status)) {
      CAPD_RETURN_IF_ERROR(status);
    } else {
      return Bad("record " + action + ": unknown or incomplete option '" +
                 std::string(argv[optind]) + "'");
    }
  }
  // optind counts within argv + 1.
  int next = optind + 1;
  if ((out.action == RecordOptions::Action::kStop || out.action == RecordOptions::Action::kFetch) &&
      out.name.empty() && next < argc) {
    out.name = argv[next++];
  }
  if (next < argc) return Bad(std::string("unexpected argument '") + argv[next] + "'");
  if (out.action != RecordOptions::Action::kList && out.name.empty()) {
    return Bad(start ? "record start needs --name NAME" : "record " + action + " needs a NAME");
  }
  CAPD_RETURN_IF_ERROR(CheckDecap(out.decap));
  CAPD_RETURN_IF_ERROR(CheckConnection(out.connection));
  out.rotate_bytes = rotation.max_bytes;
  out.rotate_seconds = rotation.seconds;
  out.rotate_files = rotation.max_files;
  if (!agent_given) {
    auto agent = DefaultAgent();
    if (!agent.ok()) return agent.status();
    out.agent = std::move(agent.value());
  }
  if (start && out.interface.empty()) out.interface = out.agent.interface;
  return Status::Ok();
}

}  // namespace

StatusOr<CommandLine> ParseCommandLine(int argc, char** argv) {
  CommandLine line;
  if (argc < 2) return Bad("no command given");
  const std::string command = argv[1];
  opterr = 0;
  optind = 1;  // parse argv[1..] as if argv[1] were the program name
  if (command == "-h" || command == "--help" || command == "help") {
    line.command = CommandLine::Command::kHelp;
  } else if (command == "--version" || command == "version") {
    line.command = CommandLine::Command::kVersion;
  } else if (command == "interfaces") {
    line.command = CommandLine::Command::kInterfaces;
    CAPD_RETURN_IF_ERROR(ParseInterfaces(argc - 1, argv + 1, line.interfaces));
  } else if (command == "stream") {
    line.command = CommandLine::Command::kStream;
    CAPD_RETURN_IF_ERROR(ParseStream(argc - 1, argv + 1, line.stream));
  } else if (command == "serve") {
    line.command = CommandLine::Command::kServe;
    CAPD_RETURN_IF_ERROR(ParseServe(argc - 1, argv + 1, line.serve));
  } else if (command == "record") {
    line.command = CommandLine::Command::kRecord;
    CAPD_RETURN_IF_ERROR(ParseRecord(argc - 1, argv + 1, line.record));
  } else if (command == "decap") {
    line.command = CommandLine::Command::kDecapFile;
    CAPD_RETURN_IF_ERROR(ParseDecapFile(argc - 1, argv + 1, line.decap_file));
  } else {
    return Bad("unknown command '" + command + "'");
  }
  return line;
}

}  // namespace capd::client
